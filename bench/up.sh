#!/usr/bin/env bash
# Benchmark: how long after the last readiness condition is met does
# `coder up` return? The fake vLLM turns healthy at a known instant T (the
# completion then answers at once); we measure the return time minus T.
# Goal: <= 1 s. Runs against the test servers (fake API, sshd VM, fake
# vLLM). Usage: bench/up.sh [runs]   (after make)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
runs=${1:-5}
export BATS_FILE_TMPDIR BATS_TEST_TMPDIR
BATS_FILE_TMPDIR=$(mktemp -d)
BATS_TEST_TMPDIR=$BATS_FILE_TMPDIR/t
mkdir -p "$BATS_TEST_TMPDIR"
trap 'stop_vllm; stop_vm bench; stop_api_server; rm -rf "$BATS_FILE_TMPDIR"' EXIT
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
results=()
for ((r = 1; r <= runs; r++)); do
	api_ctl reset '{}' >/dev/null
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2}' >/dev/null
	rm -rf "$XDG_STATE_HOME"
	vm_reset
	vm_set nvidia_smi_query "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv"
	vm_halt
	vllm_ctl set '{"healthy":false}' >/dev/null
	(cd "$HOME" && coder up dev >/dev/null 2>"$BATS_FILE_TMPDIR/err.$r") &
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
	results+=("$(echo "$d - $t" | bc)")
	printf 'run %d: coder up returned %.3f s after /health turned 200\n' "$r" "${results[-1]}"
done
printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.3f s over %d runs (goal <= 1 s)\n", a[int((NR+1)/2)], NR}'
