#!/usr/bin/env bash
# Benchmark: lc-destroy of 20 sessions in one stream against the fake
# Linode API with 200 ms latency per request, beside lc-destroy of one
# (goal: 20 take at most twice as long as one; destroys run concurrently,
# bounded by -j). Medians over a few rounds, each on freshly made sessions.
# Usage: bench/destroy.sh [rounds]   (after make; needs ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export REPO LC_FIXTURES=${LC_FIXTURES:-$REPO/../shared/fixtures}
rounds=${1:-3}
tmp=$(mktemp -d)
# shellcheck source=/dev/null
source tests/helpers/api.bash
export API_DIR=$tmp/api
start_api_server
trap 'stop_api_server; rm -rf "$tmp"' EXIT
export HOME=$tmp XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/config
mkdir -p "$HOME/.ssh"
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKey bench@lc" >"$HOME/.ssh/id_ed25519.pub"
PATH=$REPO/bin:$PATH

# make N: N sessions, made with no latency so only the destroy is timed.
make_sessions() {
	api_ctl latency '{"ms":0}' >/dev/null
	for i in $(seq 1 "$1"); do
		jq -nc --arg n "b$i" '{name: $n, type: "g2-gpu-rtx4000a1-s"}'
	done | lc-create -q >/dev/null
	api_ctl latency '{"ms":200}' >/dev/null
}

# destroy_ms N [lc-destroy args]: milliseconds to destroy N sessions.
destroy_ms() {
	local n=$1 t0 t1
	shift
	make_sessions "$n"
	t0=$(date +%s%N)
	lc-sessions | lc-destroy -q "$@" >"$tmp/out"
	t1=$(date +%s%N)
	[[ $(jq -s 'map(select(.state == "destroyed")) | length' "$tmp/out") == "$n" ]] ||
		{ echo "bench: not every session was destroyed" >&2; exit 1; }
	echo $(((t1 - t0) / 1000000))
}

median() {
	sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

api_ctl clock '{"provisioning_s":0.1,"booting_s":0.1,"deleting_s":0.3}' >/dev/null
one=$(for _ in $(seq "$rounds"); do destroy_ms 1; done | median)
twenty=$(for _ in $(seq "$rounds"); do destroy_ms 20; done | median)
twenty_j20=$(for _ in $(seq "$rounds"); do destroy_ms 20 -j 20; done | median)
twenty_j1=$(destroy_ms 20 -j 1)
printf 'lc-destroy, 200 ms API latency, median of %d\n' "$rounds"
printf '  1 session             %6d ms\n' "$one"
printf '  20 sessions (-j 16)   %6d ms  (%s x one)\n' "$twenty" \
	"$(awk -v a="$twenty" -v b="$one" 'BEGIN {printf "%.2f", a / b}')"
printf '  20 sessions (-j 20)   %6d ms  (%s x one)\n' "$twenty_j20" \
	"$(awk -v a="$twenty_j20" -v b="$one" 'BEGIN {printf "%.2f", a / b}')"
printf '  20 sessions (-j 1)    %6d ms  (one run, for scale)\n' "$twenty_j1"
