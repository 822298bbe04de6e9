# shellcheck shell=bash
#
# tests/helpers/vmboot.bash: boot the session's VM for real. A Debian 12
# root (debootstrap, built once and cached) runs under systemd-nspawn with
# systemd as PID 1 and Debian's cloud-init reading the cloud-config through
# the NoCloud datasource. Stand-ins (tests/vm) only for the GPU driver,
# docker/vLLM and the NVIDIA container toolkit, as Debian packages that the
# real apt installs from a flat repository inside the root.
#
# The container has a network namespace of its own (only "lo"). The test's
# client side (the fake Linode API, coder, lc-create) runs in the same
# namespace through vmb_net (and API_NETNS, the namespace's path), so 127.0.0.1:22 is the VM's sshd and the VM's
# fail-safe reaches the API server at the address lc-create pushes.
#
#   vmb_skip_reason        why this machine cannot boot it (empty: it can)
#   vmb_prepare            for setup_file: VMB_SKIP, or the cached root
#   vmb_base               build the cached root (flock; minutes, once)
#   vmb_new NAME [MODE]    a fresh copy, its netns; MODE: the driver
#                          stand-in's reboot (default), image or never
#   vmb_seed FILE          the NoCloud seed from a user-data file
#   vmb_start              boot in the background, again after each reboot
#   vmb_up NAME [OPTS...] coder up NAME in the VM's network, and the boot
#   vmb_phases             the phases of phase.log, in one line
#   vmb_sh CMD...          run CMD inside the booted container
#   vmb_net CMD...         run CMD on the host, in the container's network
#   vmb_stop               power off, wait, remove the copy and the netns
#
# A group of VMs (one current at a time, made so by vmb_use):
#   vmb_use NAME           make VM NAME (from vmb_new) the current one
#   vmb_link IF A ADDR_A B ADDR_B  a veth pair named IF in the networks
#                          of VMs A and B, with the addresses (/24)
#   vmb_group_up HEAD WORKER [OPTS...]  coder up HEAD --nodes 2 in the
#                          head's network, each VM booted from its user data

VMB_CACHE=${LC_VMROOT_CACHE:-/var/tmp/linode-coder-vmroot}
VMB_PACKAGES="systemd systemd-sysv cloud-init openssh-server dbus sudo curl
python3 locales iproute2 ca-certificates e2fsprogs procps kmod"

vmb_skip_reason() {
	local c
	[[ $(id -u) == 0 ]] || { echo "needs root (systemd-nspawn)"; return; }
	for c in systemd-nspawn debootstrap nsenter unshare ip dpkg-deb dpkg-scanpackages flock; do
		command -v "$c" >/dev/null || { echo "needs $c"; return; }
	done
	[[ -f $VMB_CACHE/base/.ok ]] && return
	_vmb_mirror >/dev/null || echo "no Debian mirror in the apt sources"
}

# vmb_prepare: for setup_file: VMB_SKIP (exported) says why this machine
# cannot boot the VM, else the cached root is built. Status 1 when the
# build fails.
vmb_prepare() {
	local why
	why=$(vmb_skip_reason)
	if [[ -n $why ]]; then
		export VMB_SKIP="the VM boot test $why"
		return 0
	fi
	vmb_base
}

_vmb_mirror() {
	local m
	m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
	[[ -n $m ]] || m=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
	[[ -n $m ]] && printf '%s\n' "$m"
}

# _vmb_build DIR LOG: debootstrap, then the packages with the root's apt.
_vmb_build() {
	local base=$1 log=$2 rc
	debootstrap --variant=minbase bookworm "$base" "$(_vmb_mirror)" >"$log" 2>&1 || return 1
	cp /etc/resolv.conf "$base/etc/resolv.conf" || return 1
	mount -t proc proc "$base/proc" || return 1
	# shellcheck disable=SC2086 # a list on purpose
	chroot "$base" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends $VMB_PACKAGES >>"$log" 2>&1
	rc=$?
	umount "$base/proc"
	((rc == 0)) || return 1
	# cloud-init's locale module fails without it.
	sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' "$base/etc/locale.gen" &&
		chroot "$base" locale-gen >>"$log" 2>&1 &&
		chroot "$base" apt-get clean &&
		rm -f "$base/etc/resolv.conf"
}

# vmb_base: the cached root; a second caller waits on the lock.
vmb_base() {
	local base=$VMB_CACHE/base log=$VMB_CACHE/build.log lk rc=0
	mkdir -p "$VMB_CACHE"
	exec {lk}>"$VMB_CACHE/lock"
	flock "$lk"
	if [[ ! -f $base/.ok ]]; then
		rm -rf --one-file-system "$base"
		echo "# building the VM root in $base (once; minutes)" >&3
		if _vmb_build "$base" "$log"; then
			touch "$base/.ok"
		else
			echo "vmb_base: building the root failed; the end of $log:" >&2
			tail -n 5 "$log" >&2
			rc=1
		fi
	fi
	exec {lk}>&-
	return "$rc"
}

# _vmb_driver_outputs DIR: what the stand-in nvidia-smi prints, under DIR.
_vmb_driver_outputs() {
	mkdir -p "$1/usr/lib/lc-standin"
	cp "$REPO/tests/fixtures/nvidia-smi/table-h100x4.txt" "$1/usr/lib/lc-standin/table.txt"
	cp "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv" "$1/usr/lib/lc-standin/query.csv"
}

# _vmb_repo ROOT: the stand-in packages, as a flat repository apt reads
# (and nothing else: the VM has no internet), plus curl for the NVIDIA
# key download.
_vmb_repo() {
	local root=$1 dir=$1/var/lib/lc-standin-repo src pkg stage
	mkdir -p "$dir"
	for src in "$REPO"/tests/vm/*/; do
		pkg=$(basename "$src")
		stage=$BATS_FILE_TMPDIR/pkg-$pkg
		rm -rf "$stage"
		mkdir -p "$stage/DEBIAN"
		cp -a "$src/." "$stage/"
		mv "$stage/DEBIAN-control" "$stage/DEBIAN/control"
		case $pkg in
		docker.io)
			install -D -m 0755 "$REPO/tests/servers/vllm.py" \
				"$stage/usr/lib/lc-standin/vllm.py" ;;
		ubuntu-drivers-common)
			_vmb_driver_outputs "$stage" ;;
		esac
		dpkg-deb --root-owner-group -Zgzip --build "$stage" "$dir/$pkg.deb" >/dev/null || return 1
	done
	(cd "$dir" && dpkg-scanpackages -m . /dev/null >Packages 2>/dev/null) || return 1
	echo "deb [trusted=yes] file:/var/lib/lc-standin-repo ./" >"$root/etc/apt/sources.list"
	# provision adds NVIDIA's apt source; there is no internet to read it.
	mkdir -p "$root/etc/apt/lc-standin-parts.d"
	echo 'Dir::Etc::SourceParts "/etc/apt/lc-standin-parts.d";' \
		>"$root/etc/apt/apt.conf.d/99lc-standin"
	cat >"$root/usr/local/bin/curl" <<-'EOF'
	#!/bin/sh
	# Stand-in for downloads from the internet: NVIDIA's apt key.
	case "$*" in
	*nvidia.github.io*)
		out=
		while [ $# -gt 0 ]; do
			[ "$1" = -o ] && out=$2
			shift
		done
		echo "stand-in key" >"${out:-/dev/stdout}"
		exit 0 ;;
	esac
	exec /usr/bin/curl "$@"
	EOF
	chmod 755 "$root/usr/local/bin/curl"
}

# vmb_new NAME [MODE]: VMB_DIR, VMB_ROOT, VMB_NETNS (the namespace's path)
# and VMB_NETNS_PID (exported).
vmb_new() {
	local mode=${2:-reboot} i
	VMB_DIR=$BATS_FILE_TMPDIR/vm-$1
	VMB_ROOT=$VMB_DIR/root
	export VMB_DIR VMB_ROOT
	rm -rf --one-file-system "$VMB_DIR"
	mkdir -p "$VMB_DIR"
	cp -a "$VMB_CACHE/base" "$VMB_ROOT" || return 1
	# Remounting the root has no work in a container (its fstab names no
	# root), and with two containers booting at once it has failed before
	# running, status 219/CGROUP: nspawn's cgroup set-up, not the VM's.
	ln -sf /dev/null "$VMB_ROOT/etc/systemd/system/systemd-remount-fs.service"
	_vmb_repo "$VMB_ROOT" || return 1
	mkdir -p "$VMB_ROOT/etc/lc-standin"
	echo "$mode" >"$VMB_ROOT/etc/lc-standin/driver"
	if [[ $mode == image ]]; then
		# The driver image: nvidia-smi answers from the first boot.
		install -m 0755 "$REPO/tests/vm/ubuntu-drivers-common/usr/lib/lc-standin/nvidia-smi" \
			"$VMB_ROOT/usr/bin/nvidia-smi"
		_vmb_driver_outputs "$VMB_ROOT"
	fi
	# The network namespace, held by a process of its own rather than
	# "ip netns add", which needs mount operations a chroot refuses.
	unshare --net sleep infinity </dev/null >/dev/null 2>&1 3>&- &
	VMB_NETNS_PID=$!
	VMB_NETNS=/proc/$VMB_NETNS_PID/ns/net
	echo "$VMB_NETNS_PID" >"$VMB_DIR/netns.pid"
	export VMB_NETNS VMB_NETNS_PID
	for ((i = 0; i < 100; i++)); do
		[[ $(readlink "$VMB_NETNS" 2>/dev/null) != "$(readlink /proc/self/ns/net)" ]] && break
		sleep 0.05
	done
	nsenter --net="$VMB_NETNS" -- ip link set lo up
}

# vmb_seed USER_DATA: NoCloud, as Linode's metadata service would serve it.
vmb_seed() {
	local seed=$VMB_ROOT/var/lib/cloud/seed/nocloud
	mkdir -p "$seed"
	cp "$1" "$seed/user-data"
	printf 'instance-id: lc-test-%s\nlocal-hostname: lc-test\n' "$$" >"$seed/meta-data"
	printf '%s\n' 'datasource_list: [NoCloud, None]' 'network: {config: disabled}' \
		>"$VMB_ROOT/etc/cloud/cloud.cfg.d/99-lc-test.cfg"
}

# vmb_start: boot (with VMB_BIND, an nspawn --bind=, if set); a reboot
# inside ends systemd-nspawn with 133, and the loop boots again.
# VMB_DIR/boots gets each exit status.
vmb_start() {
	local in=()
	: >"$VMB_DIR/boots"
	# In a chroot (fresh-ci), "/" is no mount point and nspawn cannot make
	# it a slave mount: run it in a mount namespace of its own, chrooted
	# into a bind mount of the same tree.
	# (unshare cannot make "/" private there: it keeps the propagation,
	# and the bind mount is made private at once.)
	if ! mountpoint -q /; then
		in=(unshare -m --propagation unchanged sh -c 'mkdir -p "$1" &&
			mount --rbind / "$1" && mount --make-rprivate "$1" &&
			cd "$1" && shift && exec chroot . "$@"' sh "$VMB_DIR/slash")
	fi
	(
		while :; do
			SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 "${in[@]}" systemd-nspawn --quiet \
				--register=no --keep-unit --console=pipe \
				--network-namespace-path="$VMB_NETNS" \
				-D "$VMB_ROOT" ${VMB_BIND:+"$VMB_BIND"} -b </dev/null >>"$VMB_DIR/console.log" 2>&1 &
			echo $! >"$VMB_DIR/nspawn.pid"
			# (bats runs this with errexit: a reboot's 133 is no error.)
			rc=0
			wait $! || rc=$?
			echo "$rc" >>"$VMB_DIR/boots"
			[[ $rc == 133 ]] || break
		done
		rm -f "$VMB_DIR/nspawn.pid"
	) 3>&- &
	echo $! >"$VMB_DIR/loop.pid"
}

# _vmb_leader: PID 1 of the running container, or fail.
_vmb_leader() {
	local np
	np=$(cat "$VMB_DIR/nspawn.pid" 2>/dev/null) || return 1
	pgrep -P "$np" -x systemd | head -n 1 | grep .
}

vmb_sh() {
	local l
	l=$(_vmb_leader) || { echo "vmb_sh: the VM is not running" >&2; return 1; }
	nsenter -t "$l" -m -u -i -n -p -r -w -- "$@"
}

vmb_net() {
	nsenter --net="$VMB_NETNS" -- "$@"
}

# vmb_no_failed_units: no unit failed in the container; else say which,
# with the end of each one's journal, and fail.
vmb_no_failed_units() {
	local units u
	units=$(vmb_sh systemctl --failed --no-legend --plain | awk '{ print $1 }') || return 1
	[[ -z $units ]] && return 0
	for u in $units; do
		echo "failed unit: $u" >&2
		vmb_sh systemctl status --no-pager -n 0 "$u" >&2
		vmb_sh journalctl -b --no-pager -o cat -u "$u" | tail -n 8 >&2
	done
	return 1
}

# vmb_booted: the running container's systemd has finished starting.
vmb_booted() {
	local s
	s=$(vmb_sh systemctl is-system-running 2>/dev/null) || [[ -n $s ]] || return 1
	[[ $s == running || $s == degraded ]]
}

vmb_stop() {
	local i
	[[ -n ${VMB_DIR:-} ]] || return 0
	if [[ -s $VMB_DIR/loop.pid ]]; then
		# A poweroff ends the loop (exit 0, not 133).
		vmb_sh systemctl poweroff >/dev/null 2>&1
		for ((i = 0; i < 120; i++)); do
			kill -0 "$(cat "$VMB_DIR/loop.pid")" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$(cat "$VMB_DIR/loop.pid")" 2>/dev/null
		[[ -s $VMB_DIR/nspawn.pid ]] && kill -KILL "$(cat "$VMB_DIR/nspawn.pid")" 2>/dev/null
		rm -f "$VMB_DIR/loop.pid"
	fi
	[[ -z ${VMB_NETNS_PID:-} ]] || kill "$VMB_NETNS_PID" 2>/dev/null
	umount -R "$VMB_DIR/slash" 2>/dev/null
	rm -rf --one-file-system "$VMB_ROOT"
	return 0
}

# vmb_up NAME [coder up options]: coder up in the VM's network with the
# caller's HOME, the VM booted from the user data the API got (first edited
# by the Python code in VMB_USER_DATA_EDIT, if set). Waits for up to end
# (15 min); its output is left in VMB_DIR/up.{out,err,rc}.
vmb_up() {
	local name=$1 i ud=$VMB_DIR/user-data
	shift
	export LC_FAILSAFE=on
	_vmb_coder_up "$name" "$@" || return 1
	for ((i = 0; i < 300; i++)); do
		api_state | jq -er '.instances[0].user_data // empty' >"$ud" 2>/dev/null &&
			[[ -s $ud ]] && break
		sleep 0.2
	done
	[[ -s $ud ]] || { echo "no instance was created" >&2; cat "$VMB_DIR/up.err" >&2; return 1; }
	if [[ -n ${VMB_USER_DATA_EDIT:-} ]]; then
		python3 -c "$VMB_USER_DATA_EDIT" "$ud" || return 1
	fi
	vmb_seed "$ud"
	vmb_start
	# Two boots, the driver's reboot between, then the whole model start.
	_vmb_wait_up
}

# _vmb_coder_up NAME [coder up options]: coder up NAME in the current VM's
# network, in the background, with a new key in the caller's HOME; its
# output and status go to VMB_DIR/up.{out,err,rc}.
_vmb_coder_up() {
	local name=$1
	shift
	export LINODE_TOKEN=$TEST_TOKEN
	mkdir -p "$HOME/.ssh" "$HOME/work"
	cd "$HOME/work" || return 1
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	export LC_SSH_KEY=$HOME/.ssh/id_ed25519 LC_SSH_PORT=22
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2,"deleting_s":0.2}' >/dev/null
	(
		rc=0
		vmb_net coder up "$name" --preset qwen-coder-7b "$@" \
			>"$VMB_DIR/up.out" 2>"$VMB_DIR/up.err" || rc=$?
		echo "$rc" >"$VMB_DIR/up.rc"
	) 3>&- &
}

# _vmb_wait_up: until coder up ends (15 min).
_vmb_wait_up() {
	local i
	for ((i = 0; i < 900; i++)); do
		[[ -s $VMB_DIR/up.rc ]] && break
		sleep 1
	done
	[[ -s $VMB_DIR/up.rc ]] || { echo "coder up did not end in 15 min" >&2; return 1; }
}

# vmb_phases: the phase words of phase.log, in order, one line (notes,
# such as the cache's hits, left out).
vmb_phases() {
	awk '$2 != "note" { print $2 }' "$VMB_ROOT/var/lib/linode-coder/phase.log" | paste -sd ' '
}

# vmb_use NAME: the VM that vmb_new NAME made is the current one (VMB_DIR,
# VMB_ROOT, VMB_NETNS, VMB_NETNS_PID).
vmb_use() {
	VMB_DIR=$BATS_FILE_TMPDIR/vm-$1
	VMB_ROOT=$VMB_DIR/root
	VMB_NETNS_PID=$(cat "$VMB_DIR/netns.pid") || return 1
	VMB_NETNS=/proc/$VMB_NETNS_PID/ns/net
	export VMB_DIR VMB_ROOT VMB_NETNS VMB_NETNS_PID
}

# vmb_link IF A ADDR_A B ADDR_B: a veth pair between the networks of VMs A
# and B, named IF on both sides, up, with ADDR_A/24 and ADDR_B/24: the
# network interfaces Linode gives each VM.
vmb_link() {
	local ifn=$1 na nb
	na=/proc/$(cat "$BATS_FILE_TMPDIR/vm-$2/netns.pid")/ns/net || return 1
	nb=$(cat "$BATS_FILE_TMPDIR/vm-$4/netns.pid") || return 1
	nsenter --net="$na" -- ip link add "$ifn" type veth peer name lc-peer netns "$nb" || return 1
	nsenter --net="/proc/$nb/ns/net" -- ip link set lc-peer name "$ifn" || return 1
	nsenter --net="$na" -- ip addr add "$3/24" dev "$ifn" &&
		nsenter --net="$na" -- ip link set "$ifn" up &&
		nsenter --net="/proc/$nb/ns/net" -- ip addr add "$5/24" dev "$ifn" &&
		nsenter --net="/proc/$nb/ns/net" -- ip link set "$ifn" up
}

# vmb_group_up HEAD WORKER [coder up options]: coder up HEAD --nodes 2 in
# the head's network with the caller's HOME; once the API has both
# instances, the head boots from the head's user data and the worker from
# the worker's (label HEAD.w1). Waits for up to end (15 min); its output is
# left in the head's VMB_DIR/up.{out,err,rc}. The head is current after.
vmb_group_up() {
	local head=$1 worker=$2 i st=$BATS_FILE_TMPDIR/group-state.json n
	local both='[.instances[] | select(.user_data != null)] | length == 2'
	shift 2
	vmb_use "$head"
	_vmb_coder_up "$head" --nodes 2 "$@" || return 1
	for ((i = 0; i < 300; i++)); do
		api_state >"$st" 2>/dev/null && jq -e "$both" "$st" >/dev/null && break
		sleep 0.2
	done
	jq -e "$both" "$st" >/dev/null || {
		echo "the group's two instances were not created" >&2
		cat "$VMB_DIR/up.err" >&2
		return 1
	}
	for n in "$worker" "$head"; do
		vmb_use "$n"
		jq -r --arg w "$([[ $n == "$worker" ]] && echo true)" '.instances[] |
			select((.label | endswith(".w1")) == ($w == "true")) | .user_data' \
			"$st" >"$VMB_DIR/user-data"
		vmb_seed "$VMB_DIR/user-data"
		vmb_start
	done
	_vmb_wait_up
}
