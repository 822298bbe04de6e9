#!/usr/bin/env bash
# A simulated day for lc-watch: 20 sessions with scripted activity (bursts,
# long streams, silence, a crash, an unreachable VM, a deadline and a
# budget under load, an extend, a VM that never gets ready) over a
# compressed clock, lc-watch --destroy every simulated minute (its clock
# moved with libfaketime: tests/helpers/clock-at).
# The script and the accounting are in bench/simday.py; this starts the
# parts: the test sshd, the fake Linode API, one fake vLLM per session.
#
# Usage: bench/simday.sh [MINUTES] [SEED] [CLOSE]  (after make; 360, 7)
# Exit 0 when no minute was billed beyond the ideal stop plus one period
# and no session was destroyed while active.
#
# With CLOSE, the laptop closes at minute CLOSE (0: before the first
# session): no lc-watch from then on, and each session's VM runs its own
# guard (the fail-safe script lc-cloudinit ships) every simulated minute.
# The day is played twice, with the VM's idle guard and without it
# (LC_VM_IDLE_GUARD=off: the deadline only), and each run reports the
# minutes billed beyond the idle limit. Exit 0 when, with the guard, no
# session ran more than the margin (10 min) and a minute past it.
set -euo pipefail
if [[ -n ${3:-} && -z ${SIM_VM_GUARD:-} ]]; then
	rc=0
	SIM_VM_GUARD=on "$0" "$@" || rc=$?
	echo
	SIM_VM_GUARD=off "$0" "$@" || true
	exit "$rc"
fi
# shellcheck source=/dev/null
source "$(dirname "$0")/lib.bash"
export SIM_MINUTES=${1:-360} SIM_SEED=${2:-7} SIM_CLOSE=${3:-}

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
if [[ -n $SIM_CLOSE ]]; then
	# The script each VM runs, as lc-cloudinit ships it.
	mkdir -p "$HOME/.ssh" "$tmp/vmroots"
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519" </dev/null
	lc-cloudinit -r -N sim | "$VM_PYTHON" -c 'import sys, yaml
d = yaml.safe_load(sys.stdin)
sys.stdout.write(next(f["content"] for f in d["write_files"]
    if f["path"] == "/usr/local/sbin/linode-coder-failsafe"))' \
	    >"$tmp/failsafe.sh"
	export SIM_FAILSAFE=$tmp/failsafe.sh SIM_VMROOTS=$tmp/vmroots
	SIM_SSHD_PID=$(<"$VM_DIR/sshd.pid")
	export SIM_SSHD_PID SIM_VM_GUARD=${SIM_VM_GUARD:-on}
fi
SIM_T0=$(date +%s)
rc=0
"$VM_PYTHON" "$REPO/bench/simday.py" || rc=$?
exit "$rc"
