# shellcheck shell=bash
# tests/helpers/watch.bash: set-up for the lc-watch tests (load
# helpers/watch after helpers/common). The fake Linode API, the test sshd
# playing the VM and one fake vLLM serve the whole file; the clock is moved
# with libfaketime instead of sleeping: T0 is when the test's sessions were
# made, `at` sets the tools' clock, and lc-watch and lc-sessions below are
# functions that run bin/ under it (clock_at, helpers/common). The clock
# they see moves on from there, so a test allows a few seconds where it
# checks a time.
# jq's $names are in single quotes on purpose:
# shellcheck disable=SC2016

# One fake vLLM for the file (starting one costs a third of a second);
# each test gets it back zeroed and healthy. A test that needs another
# starts its own, which teardown stops.
setup_file() {
	start_api_server
	start_vm
	start_vllm
	export FILE_VLLM_DIR=$VLLM_DIR FILE_VLLM_PID=$VLLM_PID
}

teardown_file() {
	VLLM_PID=$FILE_VLLM_PID stop_vllm
	stop_vm
	stop_api_server
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset >/dev/null
	api_ctl clock '{"deleting_s": 0}' >/dev/null
	vm_reset
	vllm_ctl restart >/dev/null
	vllm_ctl set '{"healthy": true, "token_ms": 0, "running": null,
	    "waiting": null}' >/dev/null
	T0=$(date +%s)
	at 0
}

teardown() {
	if [[ -n ${STREAM_PID:-} ]]; then kill "$STREAM_PID" 2>/dev/null; fi
	if [[ $VLLM_PID != "$FILE_VLLM_PID" ]]; then stop_vllm; fi
}

# at SECONDS: the tools' clock starts at T0 + SECONDS from now on.
at() {
	AT=$((T0 + $1))
}

lc-watch() {
	clock_at "$AT" "$REPO/bin/lc-watch" "$@"
}

lc-sessions() {
	clock_at "$AT" "$REPO/bin/lc-sessions" "$@"
}

# session NAME [JQ ARGS...]: an instance of ours on the fake API and a
# ready session record for it in the ledger, made at T0 (deadline T0 + 4h)
# and pointing at the test VM and its vLLM; JQ ARGS change the record.
# Prints the instance id.
session() {
	local name=$1 id
	shift
	id=$(api_ctl instance "$(jq -nc --arg n "$name" \
	    '{label: ("lc-" + $n), tags: ["linode-coder", ("lc-session:" + $n)]}')" |
	    jq .id) || return 1
	put_session "$name" "$(vm_session_json "$name" --argjson id "$id" \
	    --arg t "$(date -u -d "@$T0" +%FT%TZ)" \
	    --arg d "$(date -u -d "@$((T0 + 14400))" +%FT%TZ)" \
	    '.linode_id = $id | .created_at = $t | .ready_at = $t |
	     .last_activity_at = $t | .deadline_at = $d' |
	    if (($#)); then jq -c "$@"; else cat; fi)"
	echo "$id"
}

# stream SECONDS: one streaming completion that lasts about SECONDS.
stream() {
	vllm_ctl set '{"token_ms": 100}' >/dev/null
	curl -sN --max-time $(($1 + 10)) "$VLLM_URL/v1/completions" \
	    -H 'Content-Type: application/json' \
	    -d "{\"prompt\":\"hi\",\"max_tokens\":$(($1 * 10)),\"stream\":true}" \
	    >/dev/null 2>&1 3>&- &
	STREAM_PID=$!
	for _ in {1..50}; do
		vllm_ctl state | jq -e '.running == 1' >/dev/null && return 0
		sleep 0.1
	done
	return 1
}
