# shellcheck shell=bash
#
# tests/helpers/vm.bash: the GPU VM and its vLLM, played by real local parts.
#
# A real OpenSSH sshd on 127.0.0.1 with throwaway keys plays the VM, so the
# C tools' libssh2 code does real key exchange, host-key pinning and exec.
# Commands run there find stand-in scripts (nvidia-smi, docker, systemctl,
# cloud-init, journalctl) first on PATH; those print what the test chose
# (state files) and log every call. tests/servers/vllm.py plays vLLM.
#
# Sourced by tests/helpers/common.bash (or `load helpers/vm`). Typical use:
#
#	setup_file()    { start_vm; }
#	teardown_file() { stop_vm; }
#	setup()         { vm_reset; start_vllm; }
#	teardown()      { stop_vllm; }
#	@test "..." {
#		vm_set_file nvidia_smi_fixture "$LC_FIXTURES/nvidia-smi/01-table-h200-table.txt"
#		vm_session_json dev | lc-gpuprobe
#		vm_calls | grep -q '^nvidia-smi'
#	}
#
# Every function prints its complaints on stderr and returns non-zero, so a
# failure in setup_file fails the file with the reason in bats' output.

# Where this file lives: vm-bin/ and ../servers/ are found from here, so the
# helpers work whether or not common.bash has set REPO.
_VM_HELPERS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The Python for the port picker and the fake vLLM (stdlib only, any 3.8+).
# On Linux the system one: a python3 found on PATH may be a pyenv shim that
# costs half a second a start. VM_PYTHON overrides.
if [[ -z ${VM_PYTHON:-} ]]; then
	VM_PYTHON=python3
	if [[ $OSTYPE == linux* && -x /usr/bin/python3 ]]; then
		VM_PYTHON=/usr/bin/python3
	fi
fi

# _vm_free_port: print a loopback port that was free a moment ago. Binding
# port 0 lets the kernel choose; the port is released before sshd binds it,
# so start_vm retries when another process wins the race.
_vm_free_port() {
	"$VM_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# _vm_wait PID FILE PATTERN [TENTHS]: wait until FILE holds PATTERN (a fixed
# string) while PID lives, for at most TENTHS/10 seconds (default 10 s).
_vm_wait() {
	local pid=$1 file=$2 pattern=$3 i
	for ((i = 0; i < ${4:-100}; i++)); do
		[[ -f $file ]] && grep -qF -- "$pattern" "$file" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# _vm_sshd_config DIR PORT: write DIR/sshd_config for one try at PORT.
_vm_sshd_config() {
	local dir=$1 port=$2
	cat >"$dir/sshd_config" <<-EOF
	# Throwaway sshd playing a linode-coder VM; written by tests/helpers/vm.bash.
	ListenAddress ${VM_LISTEN:-127.0.0.1}
	Port $port
	HostKey "$dir/host_key"
	AuthorizedKeysFile "$dir/authorized_keys"
	PidFile "$dir/sshd_pidfile"
	# Keys only, as on the real VMs (DESIGN.md section 6).
	AuthenticationMethods publickey
	PubkeyAuthentication yes
	UsePAM no
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	PermitRootLogin prohibit-password
	AllowUsers $(id -un)
	# The key files live in a test temp dir, not ~/.ssh with its modes.
	StrictModes no
	# Tunnels to vLLM (coder tunnel, coder aider) must work.
	AllowTcpForwarding yes
	AllowStreamLocalForwarding no
	X11Forwarding no
	PermitTunnel no
	# Raised so benchmarks can open 200 connections at once (default
	# MaxStartups 10:30:100 drops new connections under load).
	MaxStartups 300:30:400
	MaxSessions 50
	PrintMotd no
	PrintLastLog no
	UseDNS no
	LoginGraceTime 30
	LogLevel VERBOSE
	# scp/sftp for tools that push files (secrets) that way.
	Subsystem sftp internal-sftp
	# No AcceptEnv: the client's LC_* variables (Debian's ssh_config sends
	# them) must not override these. PATH puts the stand-in scripts first;
	# LC_VM_DIR tells them where their state is; LC_VM_ROOT is the VM's "/"
	# for /etc/linode-coder and /var/lib/linode-coder. SHLVL=1 stops bash
	# from sourcing the host user's ~/.bashrc for ssh commands (it does so
	# only at shell level 1), which here would prepend pyenv and friends to
	# PATH and take most of a second; Ubuntu's root .bashrc returns early
	# for non-interactive shells, so a real VM behaves the same.
	SetEnv "PATH=$dir/bin:/usr/local/bin:/usr/bin:/bin" "LC_VM_DIR=$dir" "LC_VM_ROOT=$dir/root" "SHLVL=1"
	EOF
}

# VM_LISTEN and VM_FIXED_PORT, when set, give start_vm another loopback
# address (127.0.0.2, ...) and a port chosen beforehand: the nodes of a group
# (tests/lc-create-nodes-vm.bats), each its own address, one SSH port.
#
# start_vm [NAME]: start a VM called NAME (default vm) in
# $BATS_FILE_TMPDIR/vm-NAME and export VM_NAME, VM_DIR, VM_PORT, VM_USER,
# VM_HOST_KEY (private, path), VM_HOST_KEY_PUB (path), VM_USER_KEY (private,
# path), VM_KNOWN_HOSTS, VM_ROOT, LC_SSH_KEY, REMOTE_PATH, LC_REMOTE_ROOT; unsets SSH_AUTH_SOCK so no agent
# offers other keys. Call it from setup_file: tests see exported variables.
start_vm() {
	local name=${1:-vm} dir port pid try
	dir="${BATS_FILE_TMPDIR:?start_vm: BATS_FILE_TMPDIR is not set}/vm-$name"
	if [[ -f $dir/sshd.pid ]] && kill -0 "$(<"$dir/sshd.pid")" 2>/dev/null; then
		echo "start_vm: $name is already running (stop_vm $name first)" >&2
		return 1
	fi
	rm -rf "$dir"
	mkdir -p "$dir/bin" "$dir/state" "$dir/root/etc/linode-coder" \
	    "$dir/root/var/lib/linode-coder" || return 1
	: >"$dir/calls.log"
	cp "$_VM_HELPERS"/vm-bin/* "$dir/bin/" && chmod 755 "$dir"/bin/* || return 1
	ssh-keygen -q -t ed25519 -N '' -C "lc-test-host-$name" \
	    -f "$dir/host_key" </dev/null || return 1
	ssh-keygen -q -t ed25519 -N '' -C "lc-test-user-$name" \
	    -f "$dir/user_key" </dev/null || return 1
	cp "$dir/user_key.pub" "$dir/authorized_keys" || return 1
	# sshd refuses to start without its privilege-separation directory;
	# as non-root this fails and sshd runs without privsep, which is fine.
	mkdir -p /run/sshd 2>/dev/null || true

	for try in 1 2 3 4 5; do
		port=${VM_FIXED_PORT:-$(_vm_free_port)} || return 1
		_vm_sshd_config "$dir" "$port"
		: >"$dir/sshd.log"
		# Absolute path: sshd re-executes itself per connection. Our fds
		# closed (3 too): bats waits for them, and would hang on ours.
		/usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" \
		    </dev/null >/dev/null 2>&1 3>&- &
		pid=$!
		if _vm_wait "$pid" "$dir/sshd.log" \
		    "Server listening on ${VM_LISTEN:-127.0.0.1} port $port."; then
			break
		fi
		# Lost the port to someone else, most likely; try another.
		kill "$pid" 2>/dev/null
		pid=
	done
	if [[ -z $pid ]]; then
		echo "start_vm: sshd did not start after $try tries; its log:" >&2
		sed 's/^/  /' "$dir/sshd.log" >&2
		return 1
	fi
	echo "$pid" >"$dir/sshd.pid"
	printf '[%s]:%s %s\n' "${VM_LISTEN:-127.0.0.1}" "$port" \
	    "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"

	# Saved so vm_use can switch back to this VM when a file runs two.
	{
		printf 'export VM_NAME=%q VM_DIR=%q VM_PORT=%q VM_USER=%q\n' \
		    "$name" "$dir" "$port" "$(id -un)"
		printf 'export VM_ADDRESS=%q\n' "${VM_LISTEN:-127.0.0.1}"
		printf 'export VM_HOST_KEY=%q VM_HOST_KEY_PUB=%q\n' \
		    "$dir/host_key" "$dir/host_key.pub"
		printf 'export VM_USER_KEY=%q VM_KNOWN_HOSTS=%q VM_ROOT=%q\n' \
		    "$dir/user_key" "$dir/known_hosts" "$dir/root"
		# The C tools take the private key from config key LC_SSH_KEY.
		printf 'export LC_SSH_KEY=%q\n' "$dir/user_key"
		# Remote commands run with PATH=REMOTE_PATH (lib/remote): the
		# stand-ins first, as sshd's SetEnv has it; the VM's "/" for
		# /etc/linode-coder and /var/lib/linode-coder is LC_REMOTE_ROOT.
		printf 'export REMOTE_PATH=%q LC_REMOTE_ROOT=%q\n' \
		    "$dir/bin:/usr/local/bin:/usr/bin:/bin" "$dir/root"
	} >"$dir/env"
	vm_use "$name"
}

# vm_use NAME: make VM NAME (started earlier in this file) the current one,
# i.e. the one VM_* and the other vm_* functions refer to.
vm_use() {
	local env="${BATS_FILE_TMPDIR:?}/vm-${1:?usage: vm_use NAME}/env"
	if [[ ! -f $env ]]; then
		echo "vm_use: no VM called $1 in this file" >&2
		return 1
	fi
	# shellcheck source=/dev/null
	source "$env"
	unset SSH_AUTH_SOCK
}

# stop_vm [NAME]: stop that VM's sshd and the sessions it forked (open
# tunnels included). For teardown_file; safe to call twice.
stop_vm() {
	local dir="${BATS_FILE_TMPDIR:?}/vm-${1:-vm}" pid i
	[[ -f $dir/sshd.pid ]] || return 0
	pid=$(<"$dir/sshd.pid")
	rm -f "$dir/sshd.pid"
	# Only this sshd's own children: connections still open.
	pkill -TERM -P "$pid" 2>/dev/null
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

# vm_ssh [ARGS...]: the system ssh client, pinned to the current VM's host
# key exactly as the C tools must be (no trust on first use, no agent, no
# user config). E.g. `vm_ssh 'cat "$LC_VM_ROOT/etc/linode-coder/vllm.env"'`.
# The key exchange is libssh2's (curve25519): OpenSSH's default hybrid one
# adds 80 ms a connection here, for nothing the tests need.
vm_ssh() {
	ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
	    -o KexAlgorithms=curve25519-sha256 \
	    -o UserKnownHostsFile="${VM_KNOWN_HOSTS:?vm_ssh: no VM started}" \
	    -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes \
	    -o IdentityAgent=none -o ConnectTimeout=5 -o LogLevel=error \
	    -i "$VM_USER_KEY" -p "${VM_PORT:?}" "$VM_USER@127.0.0.1" "$@"
}

# vm_session_json NAME [JQ ARGS...]: print a compact session record called
# NAME that points at the current VM (and at the fake vLLM when started).
# Extra arguments go to a second jq that reads the record, e.g.
#	vm_session_json dev '.state = "failed"'
#	vm_session_json dev --arg m x '.model = $m | .vllm.max_model_len = 4096'
vm_session_json() {
	local name=${1:?usage: vm_session_json NAME [jq args...]}
	shift
	jq -nc --arg name "$name" --argjson port "${VM_PORT:?no VM started}" \
	    --arg user "$VM_USER" --arg kh "$VM_KNOWN_HOSTS" \
	    --arg key "$VM_USER_KEY" --argjson vport "${VLLM_PORT:-8000}" '
	(now | floor) as $t |
	{
		name: $name, state: "ready", linode_id: null,
		region: "us-ord", type: "g2-gpu-rtx4000a1-s",
		image: "linode/ubuntu24.04", gpus: 1, hourly_cost_usd: 0.52,
		ipv4: "127.0.0.1",
		ssh: {host: "127.0.0.1", port: $port, user: $user,
		      known_hosts: $kh, key: $key},
		model: "Qwen/Qwen2.5-Coder-7B-Instruct",
		served_model_name: "coder",
		vllm: {tensor_parallel_size: 1, gpu_memory_utilization: 0.9,
		       max_model_len: 32768, dtype: "auto", extra_args: [],
		       env: {}},
		endpoint: "http://127.0.0.1:\($vport)/v1",
		created_at: ($t | todate), ready_at: ($t | todate),
		last_activity_at: ($t | todate), destroyed_at: null,
		idle_timeout_s: 1800, deadline_at: ($t + 14400 | todate),
		budget_usd: null, cost_usd: 0, heal: []
	}' | if (($#)); then jq -c "$@"; else cat; fi
}

# _vm_key KEY: check KEY is a plain state name (it becomes a file name).
_vm_key() {
	if [[ ! ${1-} =~ ^[A-Za-z0-9_.-]+$ ]]; then
		echo "vm: bad state key '${1-}'" >&2
		return 1
	fi
	[[ -d ${VM_DIR:-}/state ]] || { echo "vm: no VM started" >&2; return 1; }
}

# vm_set KEY VALUE: set state KEY to VALUE (a line); VALUE "-" reads stdin.
# Written via a temp file and rename, so a stand-in running at that moment
# sees the old value or the new one, never half of one.
vm_set() {
	local key=${1-} tmp
	_vm_key "$key" || return 1
	[[ $# -ge 2 ]] || { echo "usage: vm_set KEY VALUE|-" >&2; return 1; }
	tmp="$VM_DIR/state/.$key.$$"
	if [[ $2 == - ]]; then
		cat >"$tmp"
	else
		printf '%s\n' "$2" >"$tmp"
	fi && mv -f "$tmp" "$VM_DIR/state/$key"
}

# vm_set_file KEY FILE: set state KEY to a copy of FILE (an executable FILE
# stays executable, for hooks). The copy is taken now: later changes to FILE
# do not show; call vm_set_file again.
vm_set_file() {
	local key=${1-} file=${2-} tmp
	_vm_key "$key" || return 1
	[[ -f $file ]] || { echo "vm_set_file: no file '$file'" >&2; return 1; }
	tmp="$VM_DIR/state/.$key.$$"
	cp "$file" "$tmp" || return 1
	if [[ -x $file ]]; then chmod 755 "$tmp"; fi
	mv -f "$tmp" "$VM_DIR/state/$key"
}

# vm_set_hook KEY: state KEY becomes an executable script read from stdin,
# e.g. `vm_set_hook on_restart <<EOF ... EOF`. Hooks run on the VM side with
# the ssh session's environment (LC_VM_DIR, LC_VM_ROOT, PATH), not the
# test's: write any value they need into the script.
vm_set_hook() {
	vm_set "${1-}" - && chmod 755 "$VM_DIR/state/$1"
}

# vm_kv_cache_until_more_memory: vLLM's start fails with the KV-cache
# fixture's log until vllm.env asks for 0.95 or 0.97 of GPU memory (lc-heal's
# fix for kv_cache); each restart sets the unit's state and the fake vLLM's
# health (VLLM_URL) to match.
vm_kv_cache_until_more_memory() {
	vm_set_file docker_log "$LC_FIXTURES/vllm-logs/01-kv_cache.log" || return 1
	vm_set_hook on_restart <<-EOT
	#!/bin/bash
	if grep -q "'--gpu-memory-utilization' '0.97'\|'--gpu-memory-utilization' '0.95'" "\$LC_VM_ROOT/etc/linode-coder/vllm.env"; then
		echo active >"$VM_DIR/state/unit_state"
		curl -fsS -X POST -d '{"healthy":true}' "$VLLM_URL/__ctl/set" >/dev/null
	else
		echo failed >"$VM_DIR/state/unit_state"
		curl -fsS -X POST -d '{"healthy":false}' "$VLLM_URL/__ctl/set" >/dev/null
	fi
	EOT
}

# vm_unset KEY: remove state KEY (back to the stand-in's default).
vm_unset() {
	_vm_key "${1-}" && rm -f "$VM_DIR/state/$1"
}

# vm_state KEY: print state KEY (stand-ins change some, e.g. docker_state).
vm_state() {
	_vm_key "${1-}" && cat "$VM_DIR/state/$1"
}

# vm_calls: print the stand-ins' call log, one line per call: the program's
# name and its arguments joined by spaces (e.g. `docker logs --tail 200 vllm`).
vm_calls() {
	cat "${VM_DIR:?vm_calls: no VM started}/calls.log"
}

# vm_reset: forget all state, calls and files under VM_ROOT, so each test
# starts from a fresh VM without paying for a new sshd. For setup().
vm_reset() {
	[[ -d ${VM_DIR:-}/state ]] || { echo "vm_reset: no VM started" >&2; return 1; }
	rm -rf "$VM_DIR/state" "$VM_DIR/root"
	mkdir -p "$VM_DIR/state" "$VM_ROOT/etc/linode-coder" \
	    "$VM_ROOT/var/lib/linode-coder"
	: >"$VM_DIR/calls.log"
	# A fake vLLM started before the reset stays reachable for restarts.
	if [[ -n ${VLLM_URL:-} ]]; then vm_set vllm_url "$VLLM_URL"; fi
}

# start_vllm [ARGS...]: start tests/servers/vllm.py on a free loopback port
# with ARGS (see its --help: --api-key, --model, --max-model-len,
# --ready-after-s, --ttft-ms, --token-ms, ...). Exports VLLM_DIR, VLLM_PORT,
# VLLM_URL (http://127.0.0.1:PORT) and VLLM_PID. With a VM running it also
# sets the VM's state vllm_url, so restarting the vllm unit or container
# there restarts this server's counters, as a real restart does.
start_vllm() {
	local base=${BATS_TEST_TMPDIR:-${BATS_FILE_TMPDIR:-${TMPDIR:-/tmp}}}
	local dir pid i
	dir=$(mktemp -d "$base/vllm.XXXXXX") || return 1
	"$VM_PYTHON" "$_VM_HELPERS/../servers/vllm.py" --dir "$dir" "$@" \
	    </dev/null >"$dir/server.log" 2>&1 3>&- &
	pid=$!
	# The port file appears once the port is bound (and listening, unless
	# --ready-after-s asked it to refuse connections for a while).
	for ((i = 0; i < 100; i++)); do
		[[ -s $dir/port ]] && break
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "start_vllm: vllm.py exited; its log:" >&2
			sed 's/^/  /' "$dir/server.log" >&2
			return 1
		fi
		sleep 0.1
	done
	if [[ ! -s $dir/port ]]; then
		echo "start_vllm: vllm.py wrote no port in 10 s" >&2
		kill "$pid" 2>/dev/null
		return 1
	fi
	export VLLM_DIR=$dir VLLM_PID=$pid
	VLLM_PORT=$(<"$dir/port")
	export VLLM_PORT VLLM_URL="http://127.0.0.1:$VLLM_PORT"
	if [[ -d ${VM_DIR:-}/state ]]; then vm_set vllm_url "$VLLM_URL"; fi
}

# stop_vllm: stop the server start_vllm started. Safe to call twice.
stop_vllm() {
	local pid=${VLLM_PID:-} i
	[[ -n $pid ]] || return 0
	unset VLLM_PID
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

# vllm_ctl NAME [JSON]: the fake vLLM's control API: set, restart,
# add_tokens (POST JSON, default {}), state (GET). Prints the server's state.
#	vllm_ctl set '{"healthy": false}'
#	vllm_ctl state | jq -e '.running == 1'
vllm_ctl() {
	local name=${1:?usage: vllm_ctl NAME [JSON]} body=${2-}
	if [[ $name == state && -z $body ]]; then
		curl -fsS --max-time 5 "${VLLM_URL:?no vllm started}/__ctl/state"
		return
	fi
	[[ -n $body ]] || body='{}'
	curl -fsS --max-time 5 -H 'Content-Type: application/json' \
	    --data-binary "$body" "${VLLM_URL:?no vllm started}/__ctl/$name"
}

# vllm_requests: print the fake vLLM's request log, one JSON object per
# request (method, path, status, model, stream, max_tokens, auth_ok,
# prompt_tokens, completion_tokens); control calls are not logged.
vllm_requests() {
	cat "${VLLM_DIR:?no vllm started}/requests.jsonl" 2>/dev/null || true
}
