#!/usr/bin/env bash
# Benchmark: how long after the last readiness condition is met does
# `coder up` return? The fake vLLM turns healthy at a known instant T (the
# completion then answers at once); we measure the return time minus T.
# Goal: <= 0.2 s in every run. Runs against the test servers (fake API,
# sshd VM, fake vLLM). Usage: bench/up.sh [runs] [bin-dir]   (after make;
# bin-dir: another build's bin/, to compare in the same run, alternating)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
runs=${1:-10}
other=${2:-}
export BATS_FILE_TMPDIR BATS_TEST_TMPDIR
BATS_FILE_TMPDIR=$(mktemp -d)
BATS_TEST_TMPDIR=$BATS_FILE_TMPDIR/t
mkdir -p "$BATS_TEST_TMPDIR"
# Each step on its own: under errexit one failing stop would skip the rest.
trap 'stop_vllm || true; stop_vm bench || true; stop_api_server || true; rm -rf "$BATS_FILE_TMPDIR"' EXIT
trap 'exit 1' INT TERM
export LC_FIXTURES="${LC_FIXTURES:-$REPO/../shared/fixtures}"
export PATH="$REPO/bin:$PATH"
# shellcheck source=/dev/null
source tests/helpers/api.bash
# shellcheck source=/dev/null
source tests/helpers/vm.bash
# shellcheck source=/dev/null
source tests/helpers/boot.bash
start_api_server >/dev/null
start_vm bench >/dev/null
start_vllm >/dev/null
export LC_SSH_PORT=$VM_PORT LC_VLLM_PORT=$VLLM_PORT
export HOME=$BATS_FILE_TMPDIR/home XDG_STATE_HOME=$BATS_FILE_TMPDIR/home/state
mkdir -p "$HOME"
results=() oresults=() n=$runs
if [[ -n $other ]]; then n=$((runs * 2)); fi
for ((i = 1; i <= n; i++)); do
	r=$i bin=$REPO/bin
	if [[ -n $other ]] && ((i % 2 == 0)); then bin=$other; fi
	api_ctl reset '{}' >/dev/null
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2}' >/dev/null
	rm -rf "$XDG_STATE_HOME"
	vm_reset
	vm_set nvidia_smi_query "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv"
	vm_halt
	vllm_ctl set '{"healthy":false}' >/dev/null
	(cd "$HOME" && PATH="$bin:$PATH" coder up dev >/dev/null 2>"$BATS_FILE_TMPDIR/err.$r") &
	pid=$!
	vm_boot_when_created >/dev/null
	# Let the tools settle into waiting on /health, then meet it at T.
	until grep -q "stage 5/6 health: started" "$BATS_FILE_TMPDIR/err.$r"; do
		kill -0 "$pid" 2>/dev/null || { cat "$BATS_FILE_TMPDIR/err.$r" >&2; exit 1; }
		sleep 0.05
	done
	sleep 2
	t=$(date +%s.%N)
	vllm_ctl set '{"healthy":true}' >/dev/null
	wait "$pid" || { echo "coder up failed:" >&2; tail -5 "$BATS_FILE_TMPDIR/err.$r" >&2; exit 1; }
	d=$(date +%s.%N)
	x=$(echo "$d - $t" | bc)
	if [[ $bin == "$REPO/bin" ]]; then results+=("$x"); else oresults+=("$x"); fi
	printf 'run %d (%s): coder up returned %.3f s after /health turned 200\n' "$r" "$bin" "$x"
done
summary() {
	printf '%s\n' "${@:2}" | sort -n | awk -v w="$1" '{a[NR]=$1} END {
		printf "%s: median %.3f s, best %.3f, worst %.3f over %d runs (goal: <= 0.2 s in every run)\n",
		    w, a[int((NR+1)/2)], a[1], a[NR], NR }'
}
summary "$REPO/bin" "${results[@]}"
if [[ -n $other ]]; then summary "$other" "${oresults[@]}"; fi
