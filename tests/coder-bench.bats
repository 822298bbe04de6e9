#!/usr/bin/env bats
# coder bench and coder validate-perf: lc-bench over a session reached
# through a real sshd playing the VM, tests/servers/vllm.py serving at
# known rates, shown for people on a terminal and as records in a pipe.
# shellcheck disable=SC2016 # $ in single quotes is for jq
load helpers/common

setup_file() {
	start_vm
}

teardown_file() {
	stop_vm
}

setup() {
	common_setup
	vm_reset
	unset VLLM_API_KEY OPENAI_API_KEY
}

teardown() {
	stop_vllm
}

# session EXPECTED_JQ: the session dev, current, with its key in its env
# file and the expected figures EXPECTED_JQ sets.
session() {
	mkdir -p "$STATE"
	printf 'OPENAI_API_BASE=http://127.0.0.1:1/v1\nOPENAI_API_KEY=bench-key-9\n' \
	    >"$STATE/dev.env"
	chmod 600 "$STATE/dev.env"
	put_session dev "$(vm_session_json dev "$1")"
	run -0 coder use dev
}

# pty COMMAND: run COMMAND under script(1), a terminal; CRs dropped.
pty() {
	run script -qec "$1" /dev/null
	output=${output//$'\r'/}
}

@test "coder bench through a pipe: lc-bench's records, a level each and the summary" {
	start_vllm --api-key bench-key-9 --ttft-ms 100 --token-ms 10
	session '.expected = {tokens_per_s: 90, ttft_ms: 110}'
	run -0 --separate-stderr coder bench -c 1,4 -N 4 -M 8
	assert_ndjson
	[[ $(json_count) == 3 ]]
	jq -se '.[0].concurrency == 1 and .[0].errors == 0 and .[0].output_tokens == 32 and
	    .[1].concurrency == 4 and .[1].requests == 4 and
	    .[2].name == "dev" and .[2].bench.verdict == "ok"' <<<"$output"
	[[ $output != *bench-key-9* && $stderr != *bench-key-9* ]]
}

@test "coder bench on a terminal: a table, a chart in Unicode blocks and the verdict, no JSON" {
	command -v script >/dev/null || skip "script(1) missing"
	start_vllm --api-key bench-key-9 --ttft-ms 100 --token-ms 10
	session '.expected = {tokens_per_s: 90, ttft_ms: 110}'
	pty "coder bench dev -c 1,4 -N 4 -M 8"
	[[ $status == 0 ]]
	[[ $output == *LEVEL*REQS*ERRS*TOKENS/S*"TTFT p50"*"TTFT p90"* ]]
	[[ $output == *"output tokens/s, all streams"*"p90 TTFT"* ]]
	# The busiest level's bar is the full width.
	[[ $output == *"████████████████████████"* ]]
	[[ $output == *"one stream:"*"the preset expects 90 tokens/s, TTFT 110 ms: ok"* ]]
	run grep -c '^[[:space:]]*[{[]' <<<"$output"
	[[ $output == 0 ]]
}

@test "coder bench: a server slower than the preset is slow; one that fails is failed, exit 1" {
	start_vllm --api-key bench-key-9 --ttft-ms 100 --token-ms 40
	session '.expected = {tokens_per_s: 100, ttft_ms: 100}'
	run -0 --separate-stderr coder bench -c 1 -N 3 -M 6
	jq -se '.[-1].bench.verdict == "slow" and .[-1].bench.ratio.tokens_per_s < 0.8' <<<"$output"
	stop_vllm
	start_vllm --api-key bench-key-9 --fail-every 2
	vm_set vllm_url "$VLLM_URL"
	session '.expected = {tokens_per_s: 100, ttft_ms: 100}'
	run -1 --separate-stderr coder bench -c 1 -N 4 -M 6
	jq -se '.[0].errors == 2 and .[0].error_kinds.http_500 == 2 and
	    .[-1].bench.verdict == "failed"' <<<"$output"
}

@test "coder bench --svg: the chart through gnuplot, or one line saying it is missing" {
	start_vllm --api-key bench-key-9 --ttft-ms 50 --token-ms 5
	session '.expected = {tokens_per_s: 100, ttft_ms: 100}'
	# Without gnuplot on PATH: the records still come, and one line says why
	# there is no SVG.
	local f nognuplot=$BATS_TEST_TMPDIR/bin
	mkdir -p "$nognuplot"
	for f in /usr/bin/* /usr/sbin/*; do
		[[ ${f##*/} == gnuplot* ]] || ln -sf "$f" "$nognuplot/"
	done
	PATH=$REPO/bin:$nognuplot run -0 --separate-stderr \
	    coder bench -c 1 -N 2 -M 4 -S "$BATS_TEST_TMPDIR/no.svg"
	[[ $stderr == *"no SVG: gnuplot is not installed"* ]]
	[[ ! -e $BATS_TEST_TMPDIR/no.svg ]]
	[[ $(json_count) == 2 ]]
	command -v gnuplot >/dev/null || skip "gnuplot is not installed"
	run -0 --separate-stderr coder bench -c 1,2 -N 2 -M 4 --svg "$BATS_TEST_TMPDIR/chart.svg"
	grep -q '<svg' "$BATS_TEST_TMPDIR/chart.svg"
	grep -q 'output tokens/s' "$BATS_TEST_TMPDIR/chart.svg"
	[[ $stderr == *"the chart is in $BATS_TEST_TMPDIR/chart.svg"* ]]
}

@test "coder validate-perf: healthy GPUs at the preset's speed pass, exit 0; a slow server fails, exit 1" {
	command -v script >/dev/null || skip "script(1) missing"
	vm_set_file nvidia_smi_fixture "$LC_FIXTURES/nvidia-smi/01-table-h200-table.txt"
	vm_set_file nvidia_smi_query "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv"
	start_vllm --api-key bench-key-9 --ttft-ms 50 --token-ms 5
	session '.expected = {tokens_per_s: 150, ttft_ms: 60}'
	pty "coder validate-perf dev"
	[[ $status == 0 ]]
	[[ $output == *"GPUs:  healthy"* && $output == *"speed: one stream:"*": ok"* ]]
	[[ $output == *"PASS: the VM delivers what the preset promised"* ]]
	run -0 --separate-stderr coder validate-perf dev
	jq -se '.[0].gpu_health.ok and .[-1].bench.verdict == "ok"' <<<"$output"

	session '.expected = {tokens_per_s: 1000, ttft_ms: 60}'
	pty "coder validate-perf dev"
	[[ $status == 1 ]]
	[[ $output == *": slow"* && $output == *"FAIL"* ]]
}

@test "coder validate-perf: GPUs that are not healthy fail it even at full speed" {
	vm_set_file nvidia_smi_fixture "$LC_FIXTURES/nvidia-smi/07-error-err-no-driver-gcp.txt"
	start_vllm --api-key bench-key-9 --ttft-ms 50 --token-ms 5
	session '.expected = {tokens_per_s: 150, ttft_ms: 60}'
	command -v script >/dev/null || skip "script(1) missing"
	pty "coder validate-perf dev"
	[[ $status == 1 ]]
	[[ $output == *"GPUs:  NOT healthy"* && $output == *"FAIL"* ]]
}
