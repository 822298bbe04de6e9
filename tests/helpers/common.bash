# Shared set-up for every bats file: `load helpers/common`.
# Each test gets its own HOME, config and state directories and working
# directory, so no test sees another's sessions or the user's real files.
# shellcheck shell=bash

bats_require_minimum_version 1.5.0
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
export REPO
export LC_FIXTURES="${LC_FIXTURES:-$REPO/../shared/fixtures}"
PATH="$REPO/bin:$PATH"

# Helpers for the fake Linode API and the sshd "VM", when present.
# shellcheck source=/dev/null
[[ -f $REPO/tests/helpers/api.bash ]] && source "$REPO/tests/helpers/api.bash"
# shellcheck source=/dev/null
[[ -f $REPO/tests/helpers/vm.bash ]] && source "$REPO/tests/helpers/vm.bash"

common_setup() {
	export HOME="$BATS_TEST_TMPDIR/home"
	export XDG_CONFIG_HOME="$HOME/.config"
	export XDG_STATE_HOME="$HOME/.local/state"
	mkdir -p "$HOME/work" "$XDG_CONFIG_HOME/linode-coder"
	cd "$HOME/work" || return 1
	STATE="$XDG_STATE_HOME/linode-coder"
	export STATE
	unset LINODE_CLI_TOKEN HF_TOKEN SSH_AUTH_SOCK FAKETIME
	# With the fake API server running (start_api_server exported
	# TEST_TOKEN), each test has its token; otherwise none, unless a file
	# asks to keep the caller's (KEEP_TOKEN=1).
	if [[ -n ${API_PORT:-} && -n ${TEST_TOKEN:-} ]]; then
		export LINODE_TOKEN=$TEST_TOKEN
	elif [[ -z ${KEEP_TOKEN:-} ]]; then
		unset LINODE_TOKEN
	fi
}

# Default per-test set-up; a file that needs more defines its own setup()
# and calls common_setup first.
setup() {
	common_setup
}

# assert_json FILTER: jq -e FILTER holds for every line of $output.
assert_json() {
	local line n=0
	[[ -n $output ]] || fail "assert_json: no output (expected: $1)"
	while IFS= read -r line; do
		[[ -z $line ]] && continue
		n=$((n + 1))
		jq -e "$1" >/dev/null <<<"$line" ||
			fail "assert_json: line $n fails '$1': $line"
	done <<<"$output"
}

# assert_json_any FILTER: some line of $output satisfies FILTER.
assert_json_any() {
	jq -e -s "any(.[]; $1)" >/dev/null <<<"$output" ||
		fail "assert_json_any: no line satisfies '$1': $output"
}

# json_count: the number of records in $output.
json_count() {
	jq -s length <<<"$output"
}

# assert_ndjson: every line of $output is one compact JSON object.
assert_ndjson() {
	local line
	while IFS= read -r line; do
		[[ -z $line ]] && continue
		jq -e 'type == "object"' >/dev/null <<<"$line" ||
			fail "not an NDJSON object line: $line"
	done <<<"$output"
}

# put_session NAME JSON: write a session record straight into the ledger.
put_session() {
	mkdir -p "$STATE/sessions" "$STATE/archive"
	chmod 700 "$STATE" "$STATE/sessions"
	jq --arg n "$1" '. + {name: $n}' <<<"$2" >"$STATE/sessions/$1.json"
	chmod 600 "$STATE/sessions/$1.json"
}

# wait_until SECONDS COMMAND: poll COMMAND (eval'd) until it holds; fail
# the test when it still does not after SECONDS.
wait_until() {
	local end=$((SECONDS + $1))
	until eval "$2"; do
		if ((SECONDS >= end)); then
			fail "not within $1 s: $2"
			return 1
		fi
		sleep 0.2
	done
}

# start_up: `coder up dev` in the background, in its own session and
# process group as a terminal runs it, its stdout and stderr in
# $BATS_TEST_TMPDIR/out and err. Sets UP_PID. stop_up (for teardown) ends
# what a failed test left of it, tools included.
start_up() {
	setsid coder up dev >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" </dev/null 3>&- &
	UP_PID=$!
}

stop_up() {
	if [[ -n ${UP_PID:-} ]]; then kill -KILL -- "-$UP_PID" 2>/dev/null || true; fi
}

# clock_at EPOCH PROGRAM [ARG...]: run the tool under test with its clock
# at EPOCH, through libfaketime (helpers/clock-at).
clock_at() {
	"$REPO/tests/helpers/clock-at" "$@"
}

# now_rfc3339 [OFFSET_SECONDS]
now_rfc3339() {
	date -u -d "@$(($(date +%s) + ${1:-0}))" +%Y-%m-%dT%H:%M:%SZ
}

# fake_crontab: a stand-in crontab first on PATH that keeps the table in
# $BATS_TEST_TMPDIR/crontab.txt, so the user's real one is never touched.
fake_crontab() {
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat >"$BATS_TEST_TMPDIR/bin/crontab" <<-EOF
	#!/bin/sh
	t="$BATS_TEST_TMPDIR/crontab.txt"
	case "\$1" in
	-l) [ -f "\$t" ] || { echo "no crontab for \$(id -un)" >&2; exit 1; }; cat "\$t" ;;
	-) cat >"\$t" ;;
	*) exit 2 ;;
	esac
	EOF
	chmod +x "$BATS_TEST_TMPDIR/bin/crontab"
	PATH="$BATS_TEST_TMPDIR/bin:$PATH"
}
