#!/usr/bin/env bats
# lc-ssh: commands, logs, tunnels and the system ssh, against a real sshd
# playing the VM; host keys, user keys, refused and silent servers.
# shellcheck disable=SC2016,SC2030,SC2031 # $ in single quotes is for the VM or jq
load helpers/common

setup_file() {
	start_vm
	start_vllm
}

teardown_file() {
	stop_vllm
	stop_vm
}

setup() {
	common_setup
	vm_reset
	vm_session_json dev >"$BATS_TEST_TMPDIR/dev.json"
	DEV="$BATS_TEST_TMPDIR/dev.json"
}

teardown() {
	if [[ -n ${SSH_AGENT_PID:-} ]]; then ssh-agent -k >/dev/null; fi
	if [[ -n ${BG_PID:-} ]]; then
		kill "$BG_PID" 2>/dev/null || true
		wait "$BG_PID" 2>/dev/null || true
	fi
}

# session JQ...: write the session record dev changed by a jq filter.
session() {
	vm_session_json dev "$@" >"$DEV"
}

# tunnel_up: start lc-ssh --tunnel on the session in the background (BG_PID)
# and set BASE to the URL it prints.
tunnel_up() {
	lc-ssh --tunnel -p 0 <"$DEV" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	BG_PID=$!
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -s $BATS_TEST_TMPDIR/out ]] && break
		sleep 0.1
	done
	BASE=$(sed -n 's/^OPENAI_API_BASE=//p' "$BATS_TEST_TMPDIR/out")
	[[ $BASE == http://127.0.0.1:*/v1 ]]
}

# wait_err TEXT: until lc-ssh's stderr holds TEXT (10 s at most).
wait_err() {
	local i
	for ((i = 0; i < 100; i++)); do
		grep -q "$1" "$BATS_TEST_TMPDIR/err" && return 0
		sleep 0.1
	done
	cat "$BATS_TEST_TMPDIR/err" >&2
	return 1
}

@test "lc-ssh: arguments with spaces, quotes and \$ arrive unchanged" {
	run -0 --separate-stderr lc-ssh -- printf '<%s>\n' 'a b' "it's" '$HOME' \
	    '"q"' '`id`' '*' '' 'x\ny' <"$DEV"
	[[ $output == "<a b>
<it's>
<\$HOME>
<\"q\">
<\`id\`>
<*>
<>
<x\\ny>" ]]
	[[ -z $stderr ]]
}

@test "lc-ssh: the remote exit status comes back; stdout and stderr stay apart" {
	run -7 --separate-stderr lc-ssh -- sh -c 'echo out; echo err >&2; exit 7' <"$DEV"
	[[ $output == out && $stderr == err ]]
	run -0 lc-ssh -- true <"$DEV"
	run -1 lc-ssh -- false <"$DEV"
}

@test "lc-ssh: a named session reads its stdin as the command's" {
	put_session dev "$(cat "$DEV")"
	run -0 lc-ssh dev -- tr a-z A-Z <<<'hello vm'
	[[ $output == 'HELLO VM' ]]
	# ssh(1)'s form: the words after the name are the command.
	run -0 lc-ssh dev echo one two
	[[ $output == 'one two' ]]
}

@test "lc-ssh: megabytes each way arrive whole" {
	put_session dev "$(cat "$DEV")"
	head -c 2000000 /dev/urandom >"$BATS_TEST_TMPDIR/blob"
	run -0 lc-ssh dev -- sha256sum <"$BATS_TEST_TMPDIR/blob"
	[[ ${output%% *} == "$(sha256sum <"$BATS_TEST_TMPDIR/blob" | cut -d' ' -f1)" ]]
	run -0 bash -c 'lc-ssh dev -- head -c 5000000 /dev/zero | wc -c'
	[[ $output == 5000000 ]]
}

@test "lc-ssh: records on stdin: the command runs on each" {
	vm_session_json a >"$BATS_TEST_TMPDIR/two.json"
	vm_session_json b >>"$BATS_TEST_TMPDIR/two.json"
	run -0 lc-ssh -- echo hi <"$BATS_TEST_TMPDIR/two.json"
	[[ $output == $'hi\nhi' ]]
}

@test "lc-ssh: a missing program exits 127 with a clear message" {
	export REMOTE_PATH=/usr/bin:/bin
	run -127 --separate-stderr lc-ssh -- nvidia-smi <"$DEV"
	[[ $stderr == "lc: nvidia-smi not found on dev: is the driver installed?" ]]
	[[ -z $output && -z $(vm_calls) ]]
	run -127 --separate-stderr lc-ssh -- no-such-tool <"$DEV"
	[[ $stderr == "lc: no-such-tool not found on dev: is it installed, and on REMOTE_PATH?" ]]
}

@test "lc-ssh: REMOTE_PATH and REMOTE_ENV_* from config are what the VM sees" {
	# From the config file, not the environment, with a quote and a $.
	unset REMOTE_PATH
	printf "REMOTE_PATH=%s\nREMOTE_ENV_HF_HOME='/data/hf cache'\nREMOTE_ENV_ODD=\"it's \\\$x\"\n" \
	    "$VM_DIR/bin:/usr/bin:/bin" >"$XDG_CONFIG_HOME/linode-coder/config"
	run -0 --separate-stderr lc-ssh -- sh -c 'printf "%s|%s|%s" "$PATH" "$HF_HOME" "$ODD"' <"$DEV"
	[[ $output == "$VM_DIR/bin:/usr/bin:/bin|/data/hf cache|it's \$x" ]]
	[[ -z $stderr ]]
	# -v: the VM says what it ran with.
	run -0 --separate-stderr lc-ssh -v -- true <"$DEV"
	[[ $stderr == *"lc: on dev: PATH=$VM_DIR/bin:/usr/bin:/bin"* ]]
	[[ $stderr == *"lc: on dev: HF_HOME=/data/hf cache"* ]]
	[[ $stderr == *"lc: on dev: LC_REMOTE_ROOT=$VM_ROOT"* ]]
}

@test "lc-ssh: -n prints the script: set -eu, PATH, checks, quoted words" {
	run -0 lc-ssh -n -- nvidia-smi -L "a'b" <"$DEV"
	assert_line --index 0 'set -eu'
	assert_line --partial "PATH='$REMOTE_PATH'; export PATH"
	assert_line "command -v 'nvidia-smi' >/dev/null 2>&1 || { printf '%s\\n' 'lc: nvidia-smi not found on dev: is the driver installed?' >&2; exit 127; }"
	assert_line "exec 'nvidia-smi' '-L' 'a'\\''b'"
	[[ -z $(vm_calls) ]]
}

@test "lc-ssh: host key mismatch is refused and nothing runs" {
	ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/other" </dev/null
	printf '[127.0.0.1]:%s %s\n' "$VM_PORT" "$(cut -d' ' -f1,2 "$BATS_TEST_TMPDIR/other.pub")" >"$BATS_TEST_TMPDIR/kh"
	session --arg kh "$BATS_TEST_TMPDIR/kh" '.ssh.known_hosts = $kh'
	run -255 --separate-stderr lc-ssh -- touch "$VM_ROOT/ran" <"$DEV"
	[[ $stderr == "lc-ssh: dev: root@127.0.0.1:$VM_PORT: the VM's host key does not match the one pinned for this session in $BATS_TEST_TMPDIR/kh: this is not the VM linode-coder created (or it was rebuilt); nothing was run" ]] ||
	    [[ $stderr == *"does not match the one pinned for this session"* ]]
	[[ ! -e $VM_ROOT/ran ]]
	# The system ssh is pinned the same way.
	run -255 lc-ssh -i -- touch "$VM_ROOT/ran" <"$DEV"
	[[ ! -e $VM_ROOT/ran ]]
}

@test "lc-ssh: no pinned key for the host, or no known_hosts file: refused" {
	printf '[127.0.0.1]:1 %s\n' "$(cut -d' ' -f1,2 "$VM_HOST_KEY_PUB")" >"$BATS_TEST_TMPDIR/kh"
	session --arg kh "$BATS_TEST_TMPDIR/kh" '.ssh.known_hosts = $kh'
	run -255 --separate-stderr lc-ssh -- touch "$VM_ROOT/ran" <"$DEV"
	[[ $stderr == *"pins no host key for [127.0.0.1]:$VM_PORT: refusing to connect (no trust on first use)"* ]]
	session '.ssh.known_hosts = "/nonexistent/kh"'
	run -255 --separate-stderr lc-ssh -- touch "$VM_ROOT/ran" <"$DEV"
	[[ $stderr == *"cannot read the session's pinned host key from /nonexistent/kh"* ]]
	[[ ! -e $VM_ROOT/ran ]]
}

@test "lc-ssh: without ssh.known_hosts, the pin is <state>/<name>.known_hosts" {
	session 'del(.ssh.known_hosts)'
	run -255 --separate-stderr lc-ssh -- true <"$DEV"
	[[ $stderr == *"cannot read the session's pinned host key from $STATE/dev.known_hosts"* ]]
	cp "$VM_KNOWN_HOSTS" "$STATE/dev.known_hosts"
	run -0 lc-ssh -- echo pinned <"$DEV"
	[[ $output == pinned ]]
	run -0 lc-ssh -i -n <"$DEV"
	[[ $output == *"'UserKnownHostsFile=$STATE/dev.known_hosts'"* ]]
}

@test "lc-ssh: an unknown user key is refused" {
	ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/stranger" </dev/null
	session --arg k "$BATS_TEST_TMPDIR/stranger" '.ssh.key = $k'
	run -255 --separate-stderr lc-ssh -- touch "$VM_ROOT/ran" <"$DEV"
	[[ $stderr == *"the VM did not accept key $BATS_TEST_TMPDIR/stranger for user $VM_USER (publickey rejected)"* ]]
	[[ ! -e $VM_ROOT/ran ]]
	# No key at all: LC_SSH_KEY names a missing file.
	session 'del(.ssh.key)'
	LC_SSH_KEY=/nonexistent/key run -255 --separate-stderr lc-ssh -- true <"$DEV"
	[[ $stderr == *"the key file /nonexistent/key cannot be read"* ]]
}

@test "lc-ssh: the ssh-agent is used first" {
	eval "$(ssh-agent -s)" >/dev/null
	ssh-add -q "$VM_USER_KEY" 2>/dev/null
	session 'del(.ssh.key)'
	LC_SSH_KEY=/nonexistent/key run -0 lc-ssh -- echo via-agent <"$DEV"
	[[ $output == via-agent ]]
}

@test "lc-ssh: connection refused fails fast; -w retries within its bound" {
	local port
	port=$(_vm_free_port)
	session --argjson p "$port" '.ssh.port = $p'
	SECONDS=0
	run -255 --separate-stderr lc-ssh -- true <"$DEV"
	[[ $stderr == *"127.0.0.1 port $port: connection refused"* ]]
	((SECONDS <= 2))
	SECONDS=0
	run -255 --separate-stderr lc-ssh -w 2 -- true <"$DEV"
	((SECONDS >= 1 && SECONDS <= 5))
	[[ $stderr == *"connection refused"* ]]
}

@test "lc-ssh: -w waits for a VM that starts listening while it retries" {
	local port
	port=$(_vm_free_port)
	session --argjson p "$port" '.ssh.port = $p'
	# A forwarder appears on that port after a second, as sshd would.
	"$VM_PYTHON" - "$port" "$VM_PORT" <<-'EOF' &
	import socket, sys, threading, time
	time.sleep(1.2)
	l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
	c, _ = l.accept(); s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
	def pipe(a, b):
	    while (d := a.recv(65536)):
	        b.sendall(d)
	    b.shutdown(socket.SHUT_WR)
	t = threading.Thread(target=pipe, args=(s, c)); t.start(); pipe(c, s); t.join()
	EOF
	BG_PID=$!
	printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$VM_HOST_KEY_PUB")" >"$BATS_TEST_TMPDIR/kh"
	session --argjson p "$port" --arg kh "$BATS_TEST_TMPDIR/kh" '.ssh.port = $p | .ssh.known_hosts = $kh'
	run -0 lc-ssh -w 10 -- echo booted <"$DEV"
	[[ $output == booted ]]
}

@test "lc-ssh: a server that accepts and never speaks: the time limit holds" {
	local port
	port=$(_vm_free_port)
	"$VM_PYTHON" - "$port" <<-'EOF' &
	import socket, sys, time
	l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(4)
	conns = []
	while True:
	    c, _ = l.accept(); conns.append(c)
	EOF
	BG_PID=$!
	sleep 0.3
	printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$VM_HOST_KEY_PUB")" >"$BATS_TEST_TMPDIR/kh"
	session --argjson p "$port" --arg kh "$BATS_TEST_TMPDIR/kh" '.ssh.port = $p | .ssh.known_hosts = $kh'
	export LC_SSH_TIMEOUT=2s
	SECONDS=0
	run -255 --separate-stderr lc-ssh -- true <"$DEV"
	((SECONDS <= 5))
	[[ $stderr == *"the VM accepted the connection but did not complete the SSH handshake within 2s"* ]]
	# lc-gpuprobe says the same in its record.
	run -1 --separate-stderr lc-gpuprobe <"$DEV"
	assert_json '.error.code == "ssh_timeout"'
}

@test "lc-ssh: -t limits the command's time" {
	SECONDS=0
	run -255 --separate-stderr lc-ssh -t 1 -- sleep 20 <"$DEV"
	((SECONDS <= 6))
	[[ $stderr == *"the command did not finish in time"* ]]
}

@test "lc-ssh: --tunnel carries HTTP to the server on the VM side" {
	session --argjson p "$VLLM_PORT" '.endpoint = "http://127.0.0.1:\($p)/v1"'
	tunnel_up
	local base=$BASE
	run -0 curl -fsS -m 5 "$base/models"
	jq -e '.data[0].id' <<<"$output" >/dev/null
	# Two at once, then a third after they closed.
	curl -fsS -m 5 -o "$BATS_TEST_TMPDIR/a" "${base%/v1}/health" &
	curl -fsS -m 5 -o "$BATS_TEST_TMPDIR/b" "$base/models" &
	wait %2 %3
	run -0 curl -fsS -m 5 "$base/models"
	# A streamed completion comes through to its end.
	run -0 curl -fsSN -m 10 -H 'Content-Type: application/json' \
	    --data '{"model":"coder","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"hi"}]}' \
	    "$base/chat/completions"
	[[ $output == *"data: [DONE]"* ]]
	kill -TERM "$BG_PID"
	wait "$BG_PID"
	BG_PID=
	[[ $(wc -l <"$BATS_TEST_TMPDIR/out") == 1 ]]
}

@test "lc-ssh: --tunnel: nothing listening on the VM drops that client, not the tunnel" {
	local port
	port=$(_vm_free_port)
	session --argjson p "$port" '.endpoint = "http://127.0.0.1:\($p)/v1"'
	tunnel_up
	run curl -sS -m 5 "$BASE/models"
	((status != 0))
	kill -0 "$BG_PID"
	grep -q "the VM refused to forward to 127.0.0.1:$port" "$BATS_TEST_TMPDIR/err"
}

@test "lc-ssh: --tunnel: a broken connection is made again on the same local port" {
	session --argjson p "$VLLM_PORT" '.endpoint = "http://127.0.0.1:\($p)/v1"'
	tunnel_up
	run -0 curl -fsS -m 5 "$BASE/models"
	# The VM's end of the connection dies (sshd's per-connection process).
	pkill -TERM -P "$(<"$VM_DIR/sshd.pid")"
	wait_err "the connection to the VM closed; reconnecting"
	wait_err "tunnel: reconnected"
	run -0 curl -fsS -m 5 "$BASE/models"
	jq -e '.data[0].id' <<<"$output" >/dev/null
	kill -TERM "$BG_PID"
	wait "$BG_PID"
	BG_PID=
}

@test "lc-ssh: --tunnel: a reconnect that meets another host key gives up at once" {
	cp "$VM_KNOWN_HOSTS" "$BATS_TEST_TMPDIR/kh"
	session --argjson p "$VLLM_PORT" --arg kh "$BATS_TEST_TMPDIR/kh" \
	    '.endpoint = "http://127.0.0.1:\($p)/v1" | .ssh.known_hosts = $kh'
	tunnel_up
	# Now the pinned key is another one: as if the VM had been replaced.
	ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/other" </dev/null
	printf '[127.0.0.1]:%s %s\n' "$VM_PORT" "$(cut -d' ' -f1,2 "$BATS_TEST_TMPDIR/other.pub")" \
	    >"$BATS_TEST_TMPDIR/kh"
	SECONDS=0
	pkill -TERM -P "$(<"$VM_DIR/sshd.pid")"
	local st=0
	wait "$BG_PID" || st=$?
	BG_PID=
	[[ $st == 255 ]]
	((SECONDS <= 10))
	grep -q "the connection to the VM closed; reconnecting" "$BATS_TEST_TMPDIR/err"
	grep -qi "host key" "$BATS_TEST_TMPDIR/err"
}

@test "lc-ssh: --tunnel: a busy local port is a clear error" {
	session --argjson p "$VLLM_PORT" '.endpoint = "http://127.0.0.1:\($p)/v1"'
	run -1 --separate-stderr lc-ssh -L -p "$VLLM_PORT" <"$DEV"
	[[ $stderr == *"port $VLLM_PORT on 127.0.0.1 is in use: choose another with -p PORT, or -p 0"* ]]
	[[ $(wc -l <<<"$stderr") == 1 ]]
}

@test "lc-ssh: --tunnel without -p takes the recorded port when free; a public session's env file keeps the VM's address" {
	local p
	p=$(_vm_free_port)
	put_session dev "$(vm_session_json dev --argjson p "$p" \
	    '. + {local_port: $p, public: true}')"
	printf 'OPENAI_API_BASE=http://203.0.113.7:8000/v1\nOPENAI_API_KEY=k\n' >"$STATE/dev.env"
	lc-ssh --tunnel dev </dev/null >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	BG_PID=$!
	wait_until 30 '[[ -s $BATS_TEST_TMPDIR/out ]]'
	grep -qx "OPENAI_API_BASE=http://127.0.0.1:$p/v1" "$BATS_TEST_TMPDIR/out"
	grep -qx 'OPENAI_API_BASE=http://203.0.113.7:8000/v1' "$STATE/dev.env"
	jq -e --argjson p "$p" '.local_port == $p' "$STATE/sessions/dev.json"
	run ! grep -q "is in use" "$BATS_TEST_TMPDIR/err"
}

@test "lc-ssh: --logs shows the cloud-init log, then vLLM's" {
	mkdir -p "$VM_ROOT/var/log"
	printf 'Cloud-init v. 25.1 finished\n' >"$VM_ROOT/var/log/cloud-init-output.log"
	vm_set_file docker_log "$LC_FIXTURES/vllm-logs/09-healthy.log"
	run -0 lc-ssh --logs <"$DEV"
	assert_line "==> $VM_ROOT/var/log/cloud-init-output.log <=="
	assert_line 'Cloud-init v. 25.1 finished'
	assert_line '==> docker logs vllm <=='
	[[ $output == *"$(tail -n 1 "$LC_FIXTURES/vllm-logs/09-healthy.log")"* ]]
	run vm_calls
	assert_line 'docker logs vllm'
}

@test "lc-ssh: --logs -f follows the container; no container yet says so" {
	vm_set docker_log 'INFO: Started server process'
	run -0 lc-ssh --logs --follow <"$DEV"
	assert_line 'INFO: Started server process'
	run vm_calls
	assert_line 'docker logs -f --tail 100 vllm'
	vm_set docker_state absent
	run -0 --separate-stderr lc-ssh -l <"$DEV"
	[[ $stderr == *"lc: no vllm container yet"* ]]
}

@test "lc-ssh: -i runs the system ssh pinned to the session's known_hosts" {
	run -0 lc-ssh -i -n <"$DEV"
	[[ $output == "'ssh' '-o' 'UserKnownHostsFile=$VM_KNOWN_HOSTS' '-o' 'GlobalKnownHostsFile=/dev/null' '-o' 'StrictHostKeyChecking=yes' '-o' 'UpdateHostKeys=no' '-i' '$VM_USER_KEY' '-p' '$VM_PORT' '$VM_USER@127.0.0.1'" ]]
	run -0 lc-ssh -i -- echo '$LC_VM_DIR' <"$DEV"
	[[ $output == "$VM_DIR" ]]
}

@test "lc-ssh: a failed record or an unknown name is an error, exit 255" {
	run -255 --separate-stderr lc-ssh -- true <<<'{"name":"dev","error":{"code":"x","message":"boom"}}'
	[[ $stderr == "lc-ssh: dev: skipped: boom" ]]
	run -255 --separate-stderr lc-ssh nope -- true
	[[ $stderr == *"nope: no session named 'nope'"* ]]
}

@test "lc-ssh: usage errors exit 2" {
	run -2 lc-ssh --bogus
	run -2 lc-ssh -f dev
	run -2 lc-ssh -p 80 dev
	run -2 lc-ssh -l -L dev
	run -2 lc-ssh dev --
	run -0 lc-ssh --help
	[[ $output == *"usage: lc-ssh [-nqv] [-t seconds] [-w seconds] [name] [-- command ...]"* ]]
}
