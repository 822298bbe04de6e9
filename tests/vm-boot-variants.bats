#!/usr/bin/env bats
# shellcheck disable=SC2153 # VMB_DIR and VMB_ROOT come from vmb_new
# The VM for real, its variants (tests/helpers/vmboot.bash): the driver
# image with a cache volume and a public endpoint; the volume missing at a
# later boot; a driver that never answers.
load helpers/common
load helpers/vmboot

setup_file() {
	vmb_prepare
}

teardown() {
	[[ -z ${VMB_SKIP:-} ]] || return 0
	stop_api_server
	vmb_stop
	[[ -z ${VMB_LOOP:-} ]] || losetup -d "$VMB_LOOP" 2>/dev/null
	return 0
}

setup() {
	[[ -z ${VMB_SKIP:-} ]] || skip "$VMB_SKIP"
	common_setup
}

@test "vm boot: the driver image, a cache volume, public: no reboot, the cache on the volume, vLLM for the caller" {
	vmb_new img image
	export API_NETNS=$VMB_NETNS
	start_api_server
	truncate -s 64M "$BATS_TEST_TMPDIR/volume.img"
	VMB_LOOP=$(losetup -f --show "$BATS_TEST_TMPDIR/volume.img")
	export VMB_BIND=--bind=$VMB_LOOP:/dev/disk/by-id/scsi-0Linode_Volume_lccache
	vmb_up img --image linode/ubuntu24.04-nvidia --volume lccache --public
	cat "$VMB_DIR/up.err" >&2
	[[ $(cat "$VMB_DIR/up.rc") == 0 ]]
	jq -e 'select(.name == "img") | .state == "ready" and .public_allow == "127.0.0.1/32"' "$VMB_DIR/up.out"
	# No reboot: nspawn is still on its first boot.
	[[ ! -s $VMB_DIR/boots ]]
	grep -q ' driver (already in the image)$' "$VMB_ROOT/var/lib/linode-coder/phase.log"
	grep -q ' reboot (not needed)$' "$VMB_ROOT/var/lib/linode-coder/phase.log"
	# coder up may return before wait-serving's next poll marks it.
	wait_until 60 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]'
	[[ $(vmb_phases) == "packages driver reboot pull load serving" ]]
	run -0 vmb_sh findmnt -n -r -o SOURCE,FSTYPE,LABEL /var/lib/linode-coder/hf
	[[ $output == "/dev/disk/by-id/scsi-0Linode_Volume_lccache ext4 lc-hf" ]]
	run -0 vmb_sh ss -Hltn 'sport = :8000'
	[[ $output == *"0.0.0.0:8000"* ]]
	vmb_no_failed_units
	api_state | jq -e '.firewalls[0].rules.inbound | map(select(.ports == "8000")) |
		length == 1 and (.[0].addresses.ipv4 == ["127.0.0.1/32"])'

	# The volume gone at the next boot: the cache falls back to the root
	# disk, noted once, and vLLM serves again; no unit fails.
	vmb_sh systemctl poweroff
	wait_until 120 '! kill -0 "$(cat "$VMB_DIR/loop.pid")" 2>/dev/null'
	VMB_BIND=
	vmb_start
	wait_until 300 vmb_booted
	wait_until 300 'grep -q "scsi-0Linode_Volume_lccache missing: the cache is on the root disk" "$VMB_ROOT/var/lib/linode-coder/phase.log"' || {
		cat "$VMB_ROOT/var/lib/linode-coder/phase.log" "$VMB_DIR/boots" >&2
		vmb_sh journalctl -b --no-pager -u linode-coder-vllm.service -u 'var-lib-linode\x2dcoder-hf.mount' | tail -n 20 >&2
		vmb_sh systemctl list-jobs --no-pager >&2
		return 1
	}
	wait_until 120 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]'
	vmb_no_failed_units
	# mountpoint(1): 32, not a mount point.
	run -32 vmb_sh mountpoint -q /var/lib/linode-coder/hf
	[[ $(grep -c "missing: the cache is on the root disk" "$VMB_ROOT/var/lib/linode-coder/phase.log") == 1 ]]
}

@test "vm boot: a kept cache volume: never reformatted, its files kept across boots, the image and the model taken from it" {
	vmb_new warm image
	export API_NETNS=$VMB_NETNS
	start_api_server
	# A volume that already holds a filesystem (and a file of the user's).
	truncate -s 64M "$BATS_TEST_TMPDIR/volume.img"
	mkfs.ext4 -q -L kept "$BATS_TEST_TMPDIR/volume.img"
	debugfs -w -R 'mkdir mine' "$BATS_TEST_TMPDIR/volume.img" >/dev/null 2>&1
	uuid=$(blkid -s UUID -o value "$BATS_TEST_TMPDIR/volume.img")
	VMB_LOOP=$(losetup -f --show "$BATS_TEST_TMPDIR/volume.img")
	export VMB_BIND=--bind=$VMB_LOOP:/dev/disk/by-id/scsi-0Linode_Volume_lccache
	vmb_up warm --image linode/ubuntu24.04-nvidia --volume lccache
	cat "$VMB_DIR/up.err" >&2
	[[ $(cat "$VMB_DIR/up.rc") == 0 ]]
	wait_until 60 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]'
	run -0 vmb_sh findmnt -n -r -o SOURCE,FSTYPE,LABEL,UUID /var/lib/linode-coder/hf
	[[ $output == "/dev/disk/by-id/scsi-0Linode_Volume_lccache ext4 kept $uuid" ]]
	run -0 vmb_sh test -d /var/lib/linode-coder/hf/mine
	# Cold: the image pulled into Docker's data-root on the volume, the
	# model downloaded into its Hugging Face cache.
	run -0 vmb_sh python3 -c 'import json; print(json.load(open("/etc/docker/daemon.json"))["data-root"])'
	[[ $output == /var/lib/linode-coder/hf/docker ]]
	[[ $(grep -c '^pull \|^model ' "$VMB_ROOT/var/lib/lc-docker/downloads.log") == 2 ]]
	run ! grep -q 'from cache' "$VMB_ROOT/var/lib/linode-coder/phase.log"
	vmb_no_failed_units

	# The next VM on the same volume: a fresh root disk's view of it (no
	# "fetched" mark, no download log), the same volume attached.
	vmb_sh systemctl poweroff
	wait_until 120 '! kill -0 "$(cat "$VMB_DIR/loop.pid")" 2>/dev/null'
	rm -f "$VMB_ROOT/var/lib/linode-coder/fetched" "$VMB_ROOT"/var/lib/lc-docker/*.log
	: >"$VMB_ROOT/var/lib/linode-coder/phase.log"
	vmb_start
	wait_until 300 vmb_booted
	wait_until 300 'grep -q " note (model from cache: " "$VMB_ROOT/var/lib/linode-coder/phase.log"' || {
		cat "$VMB_ROOT/var/lib/linode-coder/phase.log" >&2
		vmb_sh journalctl -b --no-pager -u linode-coder-fetch.service | tail -n 20 >&2
		return 1
	}
	grep -q ' note (image from cache: ' "$VMB_ROOT/var/lib/linode-coder/phase.log"
	[[ ! -s $VMB_ROOT/var/lib/lc-docker/downloads.log ]]
	# The unit's vLLM found the model in the cache on the volume.
	wait_until 120 'grep -q "found in /var/lib/linode-coder/hf" "$VMB_ROOT/var/lib/lc-docker/vllm.log"'
	wait_until 120 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]' 
	run -0 vmb_sh findmnt -n -r -o LABEL,UUID /var/lib/linode-coder/hf
	[[ $output == "kept $uuid" ]]
	run -0 vmb_sh test -d /var/lib/linode-coder/hf/mine
	vmb_no_failed_units
}

@test "vm boot: a driver that never answers fails coder up within the driver's limit, naming the driver" {
	vmb_new never never
	export API_NETNS=$VMB_NETNS
	start_api_server
	# The driver's limit is 3 min (vm.env may set LC_DRIVER_WAIT_S): 20 s here.
	export VMB_USER_DATA_EDIT='
import re, sys
p = sys.argv[1]
s = open(p).read()
s, n = re.subn(r"(\n( +)LC_VOLUME_DEVICE=[^\n]*)", r"\1\n\2LC_DRIVER_WAIT_S=20", s, count=1)
assert n == 1
open(p, "w").write(s)'
	start=$SECONDS
	vmb_up never
	took=$((SECONDS - start))
	cat "$VMB_DIR/up.err" >&2
	[[ $(cat "$VMB_DIR/up.rc") != 0 ]]
	grep -q "the NVIDIA driver failed on the VM: no answer 20s into the boot: NVIDIA-SMI has failed" "$VMB_DIR/up.err"
	run ! grep -q "not done in time" "$VMB_DIR/up.err"
	# One reboot (the driver's), cloud-init done long before the stage's
	# 30 min: the failure came from the phase, at once.
	[[ $(paste -sd ' ' "$VMB_DIR/boots") == 133 ]]
	((took < 600))
	run -0 vmb_sh cloud-init status
	[[ $output == *"status: done"* ]]
	[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == driver_failed ]]
	[[ $(grep -c ' driver_failed ' "$VMB_ROOT/var/lib/linode-coder/phase.log") == 1 ]]
}
