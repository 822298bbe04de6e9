# The VM guards its own idleness (lib/failsafe): the script the VM's timer
# runs every minute reads vLLM's /metrics and the open SSH terminals, keeps
# its own idle clock, and deletes its own instance with the fail-safe token
# once idle for idle_timeout_s + the margin. The test VM (a real sshd) has
# the files lc_failsafe_arm pushes; the fake vLLM serves the metrics; the
# timer's minutes are played by libfaketime on the script alone.
# shellcheck disable=SC2016 # $names in single quotes are jq's
bats_require_minimum_version 1.5.0
load helpers/common
load helpers/failsafe

FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
# idle_timeout_s of vm_session_json, and the VM's margin (failsafe.h).
IDLE=1800
MARGIN=600
LIMIT=$((IDLE + MARGIN))

setup_file() {
	start_api_server
	start_vm
	build_failsafe_print
	print script >"$BATS_FILE_TMPDIR/guard.sh"
}

teardown_file() {
	stop_vm
	stop_api_server
}

setup() {
	common_setup
	api_ctl reset >/dev/null
	vm_reset
	# The VM's sshd, as Ubuntu's writes it: terminals are looked for
	# among its sessions only.
	mkdir -p "$VM_ROOT/run"
	cp "$VM_DIR/sshd.pid" "$VM_ROOT/run/sshd.pid"
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	bg_pids=()
}

teardown() {
	local p
	for p in "${bg_pids[@]}"; do stop_bg "$p"; done
	stop_vllm
}

# stop_bg PID: end a background vm_ssh (a subshell) and its ssh.
stop_bg() {
	pkill -TERM -P "$1" 2>/dev/null || true
	kill "$1" 2>/dev/null || true
	return 0
}

# arm [vllm.py args...]: a fresh fake vLLM, an instance on the fake API and
# a session record armed by the library (as lc-create arms it) and saved in
# the ledger; exports ID and T0 (the time it was armed).
arm() {
	local rec
	start_vllm "$@"
	ID=$(api_ctl instance '{"label":"lc-dev","tags":["linode-coder","lc-session:dev"]}' | jq .id)
	T0=$(date +%s)
	rec=$(vm_session_json dev --argjson id "$ID" '.linode_id = $id')
	run -0 --separate-stderr print arm <<<"$rec"
	jq -e '.rc == 0 and .vm_idle_guard == "on"' <<<"$output"
	put_session dev "$output"
	api_reset_log
}

# at T CMD...: CMD with its clock (libfaketime, on CMD alone) at epoch T.
# ASan (make asan) need not come first among the preloaded libraries.
at() {
	local t=$1
	shift
	env TZ=UTC LD_PRELOAD=$FAKETIME_LIB \
	    FAKETIME="@$(date -u -d "@$t" '+%F %T')" \
	    FAKETIME_DONT_FAKE_MONOTONIC=1 \
	    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	    "$@"
}

# guard_at T: the VM's timer fires at epoch T.
guard_at() {
	run --separate-stderr at "$1" sh "$BATS_FILE_TMPDIR/guard.sh"
}

# status_is [JQ ARGS...] FILTER: the VM's status line satisfies FILTER.
status_is() {
	jq -e "$@" "$VM_ROOT/var/lib/linode-coder/failsafe.status"
}

deletes() {
	api_count "DELETE /v4/linode/instances/$ID"
}

# has_session PATTERN: this VM's sshd has a session process whose title
# matches PATTERN (extended regex).
has_session() {
	pgrep -P "$(<"$VM_DIR/sshd.pid")" -f -- "$1" >/dev/null
}

# wait_for_session PATTERN: until ps shows an sshd session process of this
# VM whose title matches PATTERN (extended regex), for at most 20 s.
wait_for_session() {
	local i
	for ((i = 0; i < 200; i++)); do
		has_session "$1" && return 0
		sleep 0.1
	done
	echo "no sshd session matching $1" >&2
	return 1
}

@test "vm guard: the script is valid POSIX sh" {
	run -0 sh -n "$BATS_FILE_TMPDIR/guard.sh"
	run -0 shellcheck -s sh -e SC1091 "$BATS_FILE_TMPDIR/guard.sh"
}

@test "vm guard: idle for idle_timeout_s + the margin, the VM deletes its own instance, once" {
	arm
	[[ $(<"$VM_ROOT/etc/linode-coder/idle") == *"IDLE_TIMEOUT_S=$IDLE"* ]]
	guard_at $((T0 + 60))		# vLLM answers: its clock starts
	status_is '.decision == "keep"'
	guard_at $((T0 + 60 + LIMIT - 60))
	[[ $(deletes) == 0 ]]
	status_is --arg d "$(date -u -d "@$((T0 + 60 + LIMIT))" +%FT%TZ)" \
	    '.decision == "keep" and .delete_at == $d and .idle_limit_s == 2400'
	guard_at $((T0 + 60 + LIMIT))
	[[ $status == 0 && $(deletes) == 1 ]]
	[[ $stderr == *"idle: idle 40m"*"limit 40m: idle timeout 30m + margin 10m"* ]]
	[[ $stderr == *"deleting instance $ID"* ]]
	status_is '.decision == "idle"'
	# Its own token, and no other instance.
	api_saw 'DELETE /v4/linode/instances/*' 1
	api_requests | jq -e -s '.[0].auth_ok == true'
	# The next minutes send nothing more.
	guard_at $((T0 + 60 + LIMIT + 60))
	guard_at $((T0 + 60 + LIMIT + 300))
	api_saw 'DELETE /v4/linode/instances/*' 1
}

@test "vm guard: traffic every few minutes keeps the VM for 3 simulated hours" {
	arm
	for ((m = 1; m <= 180; m++)); do
		if ((m % 25 == 0)); then
			vllm_ctl add_tokens '{"prompt": 120, "generation": 30}' >/dev/null
		fi
		guard_at $((T0 + m * 60))
		[[ $status == 0 ]]
	done
	[[ $(deletes) == 0 ]]
	status_is '.decision == "keep"'
	# The guard was on all along: silence after that ends it.
	guard_at $((T0 + 175 * 60 + LIMIT))
	[[ $(deletes) == 1 ]]
}

@test "vm guard: a drop of the token counters (vLLM restarted) counts as activity; V0 names too" {
	arm --metrics-style v0
	vllm_ctl add_tokens '{"prompt": 500, "generation": 100}' >/dev/null
	guard_at $((T0 + 60))
	vllm_ctl restart >/dev/null
	guard_at $((T0 + 60 + LIMIT - 120))
	[[ $stderr == *"token counters dropped from 600 to 0"* ]]
	guard_at $((T0 + 60 + LIMIT + 60))
	[[ $(deletes) == 0 ]]
	guard_at $((T0 + 60 + 2 * LIMIT - 120))
	[[ $(deletes) == 1 ]]
}

@test "vm guard: an SSH session with a terminal counts as activity, a tunnel does not" {
	arm
	guard_at $((T0 + 60))
	vm_ssh -tt 'sleep 300' </dev/null >/dev/null 2>&1 &
	bg_pids+=("$!")
	wait_for_session '@pts/'
	guard_at $((T0 + 60 + LIMIT))
	[[ $(deletes) == 0 ]]
	[[ $stderr == *"an SSH session with a terminal (pts/"* ]]
	stop_bg "${bg_pids[0]}"
	for ((i = 0; i < 200; i++)); do
		has_session '@pts/' || break
		sleep 0.1
	done
	run ! has_session '@pts/'
	port=$(_vm_free_port)
	vm_ssh -N -L "$port:127.0.0.1:$VLLM_PORT" </dev/null >/dev/null 2>&1 &
	bg_pids+=("$!")
	for ((i = 0; i < 200; i++)); do
		curl -fsS -m 5 "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS -m 5 "http://127.0.0.1:$port/health" >/dev/null	# the tunnel is up
	guard_at $((T0 + 60 + 2 * LIMIT))
	[[ $(deletes) == 1 ]]
}

@test "vm guard: coder extend moves the VM's idle clock" {
	arm
	guard_at $((T0 + 60))
	# The user extends at minute 30: lc-watch pushes that time to the VM.
	run -0 --separate-stderr at $((T0 + 1800)) coder extend dev
	[[ -z $stderr ]]
	[[ $(<"$VM_ROOT/etc/linode-coder/last_activity") == $((T0 + 1800)) ]]
	jq -e --arg t "$(date -u -d "@$((T0 + 1800))" +%FT%TZ)" \
	    '.vm_activity_at == $t' "$STATE/sessions/dev.json"
	guard_at $((T0 + 60 + LIMIT))
	[[ $(deletes) == 0 ]]
	status_is --arg d "$(date -u -d "@$((T0 + 1800 + LIMIT))" +%FT%TZ)" '.delete_at == $d'
	guard_at $((T0 + 1800 + LIMIT))
	[[ $(deletes) == 1 ]]
}

@test "vm guard: lc-watch pushes activity only the client saw (lc-sessions extend); the VM takes the later time" {
	arm
	guard_at $((T0 + 60))
	# An extend recorded by lc-sessions alone, at minute 20.
	jq --arg t "$(date -u -d "@$((T0 + 1200))" +%FT%TZ)" '.last_activity_at = $t' \
	    "$STATE/sessions/dev.json" >"$BATS_TEST_TMPDIR/r"
	cat "$BATS_TEST_TMPDIR/r" >"$STATE/sessions/dev.json"
	run -0 lc-watch dev
	[[ $(<"$VM_ROOT/etc/linode-coder/last_activity") == $((T0 + 1200)) ]]
	# An older time never moves the VM's clock back.
	jq --arg t "$(date -u -d "@$T0" +%FT%TZ)" '.last_activity_at = $t | .vm_activity_at = null' \
	    "$STATE/sessions/dev.json" >"$BATS_TEST_TMPDIR/r"
	cat "$BATS_TEST_TMPDIR/r" >"$STATE/sessions/dev.json"
	run -0 lc-watch dev
	[[ $(<"$VM_ROOT/etc/linode-coder/last_activity") == $((T0 + 1200)) ]]
	guard_at $((T0 + 60 + LIMIT))
	[[ $(deletes) == 0 ]]
	guard_at $((T0 + 1200 + LIMIT))
	[[ $(deletes) == 1 ]]
}

@test "vm guard: an idle file that is not numbers turns the idle guard off, not the deadline" {
	arm
	echo 'IDLE_TIMEOUT_S=soon' >"$VM_ROOT/etc/linode-coder/idle"
	guard_at $((T0 + 3 * 3600))
	[[ $status == 0 && $(deletes) == 0 ]]
	status_is '.reason | contains("not a number")'
	guard_at $((T0 + 4 * 3600 + 60))
	[[ $(deletes) == 1 ]]
}

@test "vm guard: lc-watch records what the VM decided; the status table says when it deletes itself" {
	arm
	guard_at "$(date +%s)"
	run -0 --separate-stderr lc-watch dev
	assert_json '.vm_guard.decision == "keep" and (.vm_guard.delete_at | type) == "string"'
	tail -n 1 "$STATE/watch.jsonl" | jq -e '.vm_guard.decision == "keep"'
	jq -e '.vm_guard.idle_limit_s == 2400' "$STATE/sessions/dev.json"
	run -0 lc-sessions --table dev
	[[ $output =~ "the VM deletes itself in "(39|40)" min if idle" ]]
}

@test "vm guard: LC_VM_IDLE_GUARD=off leaves the deadline only" {
	start_vllm
	ID=$(api_ctl instance '{"label":"lc-dev","tags":["linode-coder","lc-session:dev"]}' | jq .id)
	T0=$(date +%s)
	rec=$(vm_session_json dev --argjson id "$ID" '.linode_id = $id')
	LC_VM_IDLE_GUARD=off run -0 --separate-stderr print arm <<<"$rec"
	assert_json '.rc == 0 and .failsafe == "armed" and .vm_idle_guard == "off"'
	[[ ! -e $VM_ROOT/etc/linode-coder/idle ]]
	api_reset_log
	guard_at $((T0 + 3 * 3600))
	[[ $(deletes) == 0 ]]
	status_is '.decision == "keep" and (.reason | contains("idle guard is off"))'
	guard_at $((T0 + 4 * 3600 + 60))
	[[ $(deletes) == 1 ]]
	status_is '.decision == "deadline"'
}
