#!/usr/bin/env bash
# A simulated day for lc-watch: 20 sessions with scripted activity (bursts,
# long streams, silence, a crash, an unreachable VM, a deadline and a
# budget under load, an extend, a VM that never gets ready) over a
# compressed clock, lc-watch --destroy every simulated minute (its clock
# moved with libfaketime: tests/helpers/clock-at).
# The script and the accounting are in bench/simday.py; this starts the
# parts: the test sshd, the fake Linode API, one fake vLLM per session.
#
# Usage: bench/simday.sh [MINUTES] [SEED]   (after make; default 360, 7)
# Exit 0 when no minute was billed beyond the ideal stop plus one period
# and no session was destroyed while active.
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/lib.bash"
export SIM_MINUTES=${1:-360} SIM_SEED=${2:-7}

start_api_server >/dev/null
api_ctl clock '{"deleting_s": 0}' >/dev/null
start_vm >/dev/null

# One fake vLLM and one instance per session.
echo '{}' >"$tmp/sessions.json"
for i in $(seq -w 1 20); do
	name=d$i
	start_vllm
	bench_pids+=("$VLLM_PID")
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
rc=0
"$VM_PYTHON" "$REPO/bench/simday.py" || rc=$?
exit "$rc"
