#!/usr/bin/env bash
# A simulated day for lc-watch: 20 sessions with scripted activity (bursts,
# long streams, silence, a crash, an unreachable VM, a deadline and a
# budget under load, an extend, a VM that never gets ready) over a
# compressed clock, lc-watch --destroy every simulated minute (LC_NOW).
# The script and the accounting are in bench/simday.py; this starts the
# parts: the test sshd, the fake Linode API, one fake vLLM per session.
#
# Usage: bench/simday.sh [MINUTES] [SEED]   (after make; default 360, 7)
# Exit 0 when no minute was billed beyond the ideal stop plus one period
# and no session was destroyed while active.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export SIM_MINUTES=${1:-360} SIM_SEED=${2:-7}
export LC_FIXTURES=${LC_FIXTURES:-$REPO/../shared/fixtures}
[[ -d $LC_FIXTURES ]] || LC_FIXTURES=/work/shared/fixtures
tmp=$(mktemp -d)
BATS_FILE_TMPDIR=$tmp/vm
mkdir -p "$BATS_FILE_TMPDIR"
export HOME=$tmp/home XDG_STATE_HOME=$tmp/home/state XDG_CONFIG_HOME=$tmp/home/config
mkdir -p "$HOME" "$XDG_CONFIG_HOME"
cd "$HOME"
export PATH=$REPO/bin:$PATH
# shellcheck source=/dev/null
source "$REPO/tests/helpers/api.bash"
# shellcheck source=/dev/null
source "$REPO/tests/helpers/vm.bash"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	stop_vm
	stop_api_server
	rm -rf "$tmp"
}
trap cleanup EXIT

start_api_server >/dev/null
api_ctl clock '{"deleting_s": 0}' >/dev/null
start_vm >/dev/null
export STATE=$XDG_STATE_HOME/linode-coder
mkdir -p "$STATE/sessions" "$STATE/archive"
chmod 700 "$STATE" "$STATE/sessions" "$STATE/archive"

# One fake vLLM and one instance per session.
echo '{}' >"$tmp/sessions.json"
for i in $(seq -w 1 20); do
	name=d$i
	start_vllm
	pids+=("$VLLM_PID")
	id=$(api_ctl instance "{\"label\":\"lc-$name\",\"tags\":[\"linode-coder\",\"lc-session:$name\"]}" | jq .id)
	jq --arg n "$name" --arg u "$VLLM_URL" --argjson p "$VLLM_PORT" \
	    --argjson id "$id" '.[$n] = {vllm: $u, port: $p, linode_id: $id}' \
	    "$tmp/sessions.json" >"$tmp/s.json"
	mv "$tmp/s.json" "$tmp/sessions.json"
done
vm_session_json tmpl >"$tmp/template.json"
SIM_DEAD_PORT=$(_vm_free_port)
export SIM_SESSIONS=$tmp/sessions.json SIM_TEMPLATE=$tmp/template.json
export SIM_DEAD_PORT SIM_T0
SIM_T0=$(date +%s)
"$VM_PYTHON" "$REPO/bench/simday.py"
