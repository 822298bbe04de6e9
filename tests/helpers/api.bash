# shellcheck shell=bash
#
# Drive the fake Linode API (tests/servers/api.py) from bats.
#
#   setup_file()    { start_api_server; }
#   teardown_file() { stop_api_server; }
#   setup()         { api_reset_log; api_ctl reset; }
#
#   api_ctl fail '{"status":503,"count":2,"match":"POST /linode/instances"}'
#   api_saw 'POST /v4/linode/instances' 1
#   api_state | jq -e '.instances[0].user_data | startswith("#cloud-config")'
#
# Sourced by helpers/common.bash, or loaded directly (`load helpers/api`).
# Needs curl and jq.  REPO is the repository root; when unset it is derived
# from this file's location.

: "${REPO:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# The token the server accepts; tools under test read LINODE_TOKEN.
TEST_TOKEN=test-token-0123456789abcdef

# Print a message to stderr and fail the current test.
_api_fail() {
	printf 'api.bash: %s\n' "$*" >&2
	return 1
}

# _api_in CMD...: CMD in the network namespace at path API_NETNS (for the
# VM boot test), else here.
_api_in() {
	if [[ -n ${API_NETNS:-} ]]; then
		nsenter --net="$API_NETNS" -- "$@"
	else
		"$@"
	fi
}

# start_api_server [api.py args...]
# Start the server in the background and wait (at most ~5 s) for it to
# listen.  Exports API_DIR, API_PORT, API_PID, API_URL (the server root),
# LC_API_URL (.../v4), LINODE_TOKEN and TEST_TOKEN.  For setup_file.
start_api_server() {
	local i
	API_DIR=${API_DIR:-${BATS_FILE_TMPDIR:-${BATS_TMPDIR:-/tmp}}/api}
	mkdir -p "$API_DIR"
	rm -f "$API_DIR/port" "$API_DIR/pid"
	# The server's own stderr (tracebacks, if any) goes beside its log;
	# fd 3 is closed so bats does not wait for the background process.
	# (The server's default token is TEST_TOKEN; it is not put in argv.)
	local in=()
	[[ -z ${API_NETNS:-} ]] || in=(nsenter --net="$API_NETNS" --)
	"${in[@]}" python3 "$REPO/tests/servers/api.py" --dir "$API_DIR" "$@" \
		>"$API_DIR/server.log" 2>&1 3>&- &
	API_PID=$!
	for ((i = 0; i < 100; i++)); do
		[[ -s $API_DIR/port ]] && break
		if ! kill -0 "$API_PID" 2>/dev/null; then
			cat "$API_DIR/server.log" >&2
			_api_fail "api.py exited before listening"
			return 1
		fi
		sleep 0.05
	done
	if [[ ! -s $API_DIR/port ]]; then
		kill "$API_PID" 2>/dev/null
		_api_fail "api.py did not write $API_DIR/port within 5 s"
		return 1
	fi
	API_PORT=$(<"$API_DIR/port")
	API_URL="http://127.0.0.1:$API_PORT"
	LC_API_URL="$API_URL/v4"
	LINODE_TOKEN=$TEST_TOKEN
	export API_DIR API_PORT API_PID API_URL LC_API_URL LINODE_TOKEN TEST_TOKEN
}

# stop_api_server: stop the server started by start_api_server.
# For teardown_file.
stop_api_server() {
	local pid=${API_PID:-}
	if [[ -z $pid && -n ${API_DIR:-} && -s $API_DIR/pid ]]; then
		pid=$(<"$API_DIR/pid")
	fi
	[[ -n $pid ]] || return 0
	kill "$pid" 2>/dev/null || return 0
	for _ in {1..40}; do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

# api_ctl NAME [JSON]: POST JSON (default {}) to /__ctl/NAME, print the
# answer; fail the test when the server refuses.
api_ctl() {
	local name=$1 json=${2:-"{}"} out code
	# Not curl -f: the server's error body says what was wrong.
	if ! out=$(_api_in curl -sS --max-time 10 -X POST -w '\n%{http_code}' \
		-H 'Content-Type: application/json' --data-binary "$json" \
		"$API_URL/__ctl/$name" 2>&1); then
		_api_fail "api_ctl $name: $out"
		return 1
	fi
	code=${out##*$'\n'}
	out=${out%$'\n'*}
	if [[ $code != 200 ]]; then
		_api_fail "api_ctl $name $json: HTTP $code: $out"
		return 1
	fi
	printf '%s\n' "$out"
}

# api_state: the server's whole state as JSON (instances with decoded
# user_data and their create body, deleted_instances, firewalls, volumes,
# tokens, config, faults).
api_state() {
	_api_in curl -fsS --max-time 10 "$API_URL/__ctl/state"
}

# api_empty: the account holds no instance, no firewall and no VPC (for
# wait_until after a clean-up).
api_empty() {
	api_state | jq -e '(.instances | length) == 0 and (.firewalls | length) == 0 and
		((.vpcs // []) | length) == 0' >/dev/null
}

# api_requests: print requests.jsonl, one JSON request per line.
api_requests() {
	cat "$API_DIR/requests.jsonl" 2>/dev/null || true
}

# api_reset_log: forget the requests seen so far (for setup).
api_reset_log() {
	: >"$API_DIR/requests.jsonl"
}

# api_count 'METHOD /v4/path': print how many such requests were logged.
# The path matches exactly, or as a prefix when the pattern ends with *.
api_count() {
	local method=${1%% *} path=${1#* }
	api_requests | jq -s --arg m "$method" --arg p "$path" '
		[ .[] | select(.method == $m and
			(if ($p | endswith("*"))
			 then (.path | startswith($p[:-1]))
			 else .path == $p end)) ] | length'
}

# api_saw 'METHOD /v4/path' [count]: fail unless such a request was logged
# (with count: exactly count times).  On failure, print what was seen.
api_saw() {
	local want=$1 count=${2:-} n
	n=$(api_count "$want") || return 1
	if [[ -n $count && $n -eq $count ]] || [[ -z $count && $n -gt 0 ]]; then
		return 0
	fi
	{
		printf 'api_saw: expected %s %s, saw it %s time(s). Requests:\n' \
			"$want" "${count:+exactly $count times}" "$n"
		api_requests | jq -r '"  \(.method) \(.path)" +
			(if .query != "" then "?\(.query)" else "" end) +
			" -> \(.status)" + (if .fault then " (\(.fault))" else "" end)'
	} >&2
	return 1
}

# api_fail_next STATUS [MATCH]: the next request (matching MATCH, e.g.
# 'POST /linode/instances') fails with STATUS.  Shorthand for api_ctl fail.
api_fail_next() {
	local status=$1 match=${2:-}
	api_ctl fail "$(jq -nc --argjson s "$status" --arg m "$match" \
		'{status: $s, count: 1} + (if $m != "" then {match: $m} else {} end)')" \
		>/dev/null
}
