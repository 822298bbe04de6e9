#!/usr/bin/env bash
# Benchmark: lc-watch sampling sessions far away, beside the system's own
# OpenSSH client doing the same on the same hosts in the same run.
#
# 200 sessions on the test sshd (tests/helpers/vm.bash; its sshd_config
# raises MaxStartups to 300:30:400, since the default 10:30:100 drops
# connections when 200 arrive at once), each reached through a loopback
# proxy that delays each direction by 150 ms (bench/delayproxy.py): a 300 ms
# round trip. The fake vLLM (tests/servers/vllm.py) answers /metrics, the
# fake Linode API the instance list.
#
#   baseline 1:   one `ssh ... curl -s http://127.0.0.1:PORT/metrics`
#   lc-watch 1:   lc-watch on one session          (goal: <= 1.1x baseline 1)
#   baseline 200: xargs -P 200 of that ssh line
#   lc-watch 200: lc-watch -j 200 on 200 sessions  (goal: <= 1.2x baseline 200)
#   lc-watch 200 at the default -j (every session at once; goal <= 1.0x)
#   LC_WATCH_BEFORE=path: an older lc-watch binary on the same sessions.
# RUNS tries each (default 5), alternating; medians and spread (min-max).
#
# Usage: bench/watch.sh [SESSIONS] [RUNS]   (after make; needs sshd, python3)
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/lib.bash"
N=${1:-200}
RUNS=${2:-5}

start_api_server >/dev/null
start_vm >/dev/null
start_vllm
"$VM_PYTHON" "$REPO/bench/delayproxy.py" --target "127.0.0.1:$VM_PORT" \
    --delay-ms 150 --port-file "$tmp/proxy.port" </dev/null >/dev/null 2>&1 &
bench_pids+=($!)
for _ in {1..50}; do [[ -s $tmp/proxy.port ]] && break; sleep 0.1; done
PPORT=$(<"$tmp/proxy.port")
KH=$tmp/known_hosts
printf '[127.0.0.1]:%s %s\n' "$PPORT" "$(cut -d' ' -f1,2 "$VM_HOST_KEY_PUB")" >"$KH"

# The instances and the sessions, all behind the proxy.
jq -nc --argjson n "$N" '[range(1; $n + 1) | "w\(.)" |
    {label: ("lc-" + .), tags: ["linode-coder", ("lc-session:" + .)]}]' |
    curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- \
    "$API_URL/__ctl/instance" >"$tmp/instances.json"
# shellcheck disable=SC2016 # jq's variables
base=$(vm_session_json tmpl --argjson p "$PPORT" --arg kh "$KH" \
    '.ssh.port = $p | .ssh.known_hosts = $kh')
jq -c --argjson base "$base" '.[] | $base + {name: (.label[3:]), linode_id: .id}' \
    "$tmp/instances.json" | while IFS= read -r rec; do
	name=$(jq -r .name <<<"$rec")
	printf '%s\n' "$rec" >"$STATE/sessions/$name.json"
done
chmod 600 "$STATE"/sessions/*.json

SSH=(ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes
	-o UserKnownHostsFile="$KH" -o GlobalKnownHostsFile=/dev/null
	-o IdentitiesOnly=yes -o IdentityAgent=none -o ConnectTimeout=60
	-o KexAlgorithms=curve25519-sha256 -o LogLevel=error
	-i "$VM_USER_KEY" -p "$PPORT" "$VM_USER@127.0.0.1"
	curl -s "http://127.0.0.1:$VLLM_PORT/metrics")
export SSH_CMD
SSH_CMD=$(printf '%q ' "${SSH[@]}")

ms() { date +%s%3N; }
# timed CMD...: one run's wall time in ms.
timed() {
	local t0 t1
	t0=$(ms)
	"$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; return 1; }
	t1=$(ms)
	echo $((t1 - t0))
}
one_ssh() { "${SSH[@]}" >/dev/null; }
many_ssh() {
	seq 1 "$N" | xargs -P "$N" -I{} bash -c "$SSH_CMD >/dev/null"
}
check_watch() {
	local n
	n=$(jq -s '[.[] | select(.decision == "keep" and (.reason | test("idle|active")))] | length' "$tmp/out")
	[[ $n -eq $1 ]] || { echo "lc-watch sampled only $n of $1:" >&2; head -3 "$tmp/out" >&2; exit 1; }
}

# median and spread of the runs given as arguments (ms)
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {
	print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
spread() { printf '%s\n' "$@" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {
	printf "%d-%d", lo, hi }'; }
declare -a b1 w1 bN wN wD wB
for ((r = 0; r < RUNS; r++)); do
	b1+=("$(timed one_ssh)")
	w1+=("$(timed lc-watch -q w1)"); check_watch 1
	bN+=("$(timed many_ssh)")
	wN+=("$(timed lc-watch -q -l -j "$N")"); check_watch "$N"
	if [[ -n ${BENCH_CPU:-} ]]; then
		( TIMEFORMAT='lc-watch -j N process: %R s wall, %U s user, %S s sys'
		  time lc-watch -q -l -j "$N" >/dev/null ) 2>&1 | tail -1
		( TIMEFORMAT='xargs ssh processes: %R s wall, %U s user, %S s sys'
		  time many_ssh ) 2>&1 | tail -1
	fi
	wD+=("$(timed lc-watch -q -l)"); check_watch "$N"
	# An older lc-watch (LC_WATCH_BEFORE=path), e.g. one built from a
	# commit before the account listing, on the same sessions.
	if [[ -n ${LC_WATCH_BEFORE:-} ]]; then
		wB+=("$(timed "$LC_WATCH_BEFORE" -q -l -j "$N")"); check_watch "$N"
	fi
done
row() {	# label, runs..., with the ratio to the baseline in $BASE
	local label=$1 m
	shift
	m=$(median "$@")
	printf '%-34s %6d ms  spread %-11s' "$label" "$m" "$(spread "$@")"
	if [[ -n ${BASE:-} ]]; then printf '  ratio %.2f' "$(bc -l <<<"$m / $BASE")"; fi
	printf '\n'
}
printf 'round trip 300 ms (150 ms each way), %d sessions, median of %d runs, %s CPUs\n' \
    "$N" "$RUNS" "$(nproc)"
BASE='' row 'one ssh + curl /metrics' "${b1[@]}"
BASE=$(median "${b1[@]}") row 'lc-watch, 1 session (goal <= 1.10)' "${w1[@]}"
BASE='' row "xargs -P $N ssh + curl" "${bN[@]}"
BASE=$(median "${bN[@]}")
row "lc-watch -j $N" "${wN[@]}"
row 'lc-watch, default -j (goal <= 1.0)' "${wD[@]}"
if ((${#wB[@]})); then row "before: $LC_WATCH_BEFORE -j $N" "${wB[@]}"; fi
