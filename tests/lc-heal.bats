#!/usr/bin/env bats
# lc-heal -d: the classifier on real and made-up vLLM logs; lc-heal -p: the
# fix ladder, round by round, without a VM.
# shellcheck disable=SC2016,SC2154 # jq and remote code in single quotes; bats sets $stderr
load helpers/common

SHARED="$LC_FIXTURES/vllm-logs"
OWN="$BATS_TEST_DIRNAME/fixtures/vllm-logs"

# diag FILE: classify FILE; $output is the diagnosis record.
diag() {
	run -0 --separate-stderr lc-heal -d <"$1"
	assert_ndjson
	[[ $(json_count) == 1 ]]
}

# category_of FILE: print the category lc-heal gives FILE.
category_of() {
	lc-heal -d <"$1" | jq -r .diagnosis.category
}

@test "lc-heal -d: 01-kv_cache: kv_cache with the max seq len and what the cache holds" {
	diag "$SHARED/01-kv_cache.log"
	assert_json '.diagnosis.category == "kv_cache"'
	assert_json '.diagnosis.facts.max_seq_len == 29000 and .diagnosis.facts.kv_cache_tokens == 23648'
	assert_json '.diagnosis.evidence[0] | startswith("The model'"'"'s max seq len (29000)")'
	assert_json '.diagnosis.fix.automatic and (.diagnosis.fix.steps | any(test("23648")))'
}

@test "lc-heal -d: 02-nccl: nccl from the RuntimeError, not the raise line" {
	diag "$SHARED/02-nccl.log"
	assert_json '.diagnosis.category == "nccl" and .diagnosis.facts.nccl_error == "unhandled cuda error"'
	assert_json '.diagnosis.evidence | all(startswith("RuntimeError"))'
}

@test "lc-heal -d: 03-tp_mismatch: more GPUs required than the placement group has" {
	diag "$SHARED/03-tp_mismatch.log"
	assert_json '.diagnosis.category == "tp_mismatch"'
	assert_json '.diagnosis.evidence[0] | test("required GPUs exceeds")'
}

@test "lc-heal -d: 04-dtype: the compute capability and the GPU's name" {
	diag "$SHARED/04-dtype.log"
	assert_json '.diagnosis.category == "dtype" and .diagnosis.facts.compute_capability == "7.0"'
	assert_json '.diagnosis.facts.gpu_name == "Tesla V100-SXM2-32GB"'
}

@test "lc-heal -d: 05-model_access: the model id and the HTTP status" {
	diag "$SHARED/05-model_access.log"
	assert_json '.diagnosis.category == "model_access" and .diagnosis.facts.http_status == 401'
	assert_json '.diagnosis.facts.model == "LLM-Research/Meta-Llama-3.1-8B-Instruct"'
	assert_json '.diagnosis.fix.automatic == false'
}

@test "lc-heal -d: 06-unsupported_arch: the architecture that failed inspection" {
	diag "$SHARED/06-unsupported_arch.log"
	assert_json '.diagnosis.category == "unsupported_arch" and .diagnosis.facts.architecture == "LlamaForCausalLM"'
}

@test "lc-heal -d: 07-port_in_use: both address-in-use errors are evidence" {
	diag "$SHARED/07-port_in_use.log"
	assert_json '.diagnosis.category == "port_in_use" and (.diagnosis.evidence | length) == 2'
}

@test "lc-heal -d: 08-driver: no platform detected, and the vLLM version" {
	diag "$SHARED/08-driver.log"
	assert_json '.diagnosis.category == "driver" and .diagnosis.facts.vllm_version == "0.8.4"'
}

@test "lc-heal -d: 09-healthy and 10-healthy: served requests, listed routes" {
	diag "$SHARED/09-healthy.log"
	assert_json '.diagnosis.category == "healthy" and .diagnosis.fix.steps == []'
	diag "$SHARED/10-healthy.log"
	assert_json '.diagnosis.category == "healthy"'
}

@test "lc-heal -d: every labelled fixture log gets its label" {
	local f want got bad=()
	for f in "$SHARED"/*.log; do
		want=$(jq -r --arg f "${f##*/}" '.[] | select(.file == $f) | .category' "$SHARED/labels.json")
		got=$(category_of "$f")
		[[ $got == "$want" ]] || bad+=("${f##*/}: $got, labelled $want")
	done
	((${#bad[@]} == 0)) || fail "$(printf '%s\n' "${bad[@]}")"
}

@test "lc-heal -d: every own case gets the category in its name, at least three each" {
	local f want got c bad=()
	for f in "$OWN"/*.log; do
		want=${f##*/}
		want=${want%%-*}
		got=$(category_of "$f")
		[[ $got == "$want" ]] || bad+=("${f##*/}: $got")
	done
	((${#bad[@]} == 0)) || fail "$(printf '%s\n' "${bad[@]}")"
	for c in oom_load kv_cache nccl tp_mismatch dtype model_access \
	    unsupported_arch port_in_use driver healthy unknown; do
		f=("$OWN/$c"-*.log)
		((${#f[@]} >= 3)) || fail "only ${#f[@]} cases for $c"
	done
}

@test "lc-heal -d: kv_cache V1 wording gives the estimated maximum model length" {
	diag "$OWN/kv_cache-v1-enginecore.log"
	assert_json '.diagnosis.facts | .max_seq_len == 131072 and .estimated_max_model_len == 38400 and .kv_cache_available_gib == 9.38 and .kv_cache_needed_gib == 32'
	assert_json '.diagnosis.facts.model == "Qwen/Qwen2.5-Coder-32B-Instruct-AWQ" and .diagnosis.facts.vllm_version == "0.10.0"'
	# The API server's generic "Engine core initialization failed" comes
	# last but names no cause: the ValueError decides.
	assert_json '.diagnosis.evidence | length == 1'
}

@test "lc-heal -d: kv_cache through compose prefixes, docker timestamps and [rank0]" {
	diag "$OWN/kv_cache-v0-compose.log"
	assert_json '.diagnosis.facts | .max_seq_len == 32768 and .kv_cache_tokens == 20784 and .tensor_parallel_size == 1'
	assert_json '.diagnosis.evidence[0] | startswith("ValueError: The model")'
	diag "$OWN/kv_cache-docker-timestamps.log"
	assert_json '.diagnosis.facts | .max_seq_len == 65536 and .kv_cache_tokens == 38336'
	assert_json '.diagnosis.evidence[0] | startswith("ValueError:")'
}

@test "lc-heal -d: ANSI colour codes are gone from the evidence" {
	diag "$OWN/kv_cache-no-blocks-ansi.log"
	assert_json '.diagnosis.category == "kv_cache"'
	assert_json '.diagnosis.evidence | all(test("\u001b|\\[0;") | not)'
	diag "$OWN/nccl-ray-ansi.log"
	assert_json '.diagnosis.evidence == ["RuntimeError: NCCL error: unhandled cuda error (run with NCCL_DEBUG=INFO for details)"]'
}

@test "lc-heal -d: Ray worker prefixes and repeat suffixes are stripped" {
	diag "$OWN/oom_load-ray-repeated.log"
	assert_json '.diagnosis.category == "oom_load" and .diagnosis.facts.tried_to_allocate_mib == 1792'
	assert_json '.diagnosis.evidence[0] | startswith("torch.OutOfMemoryError") and (test("repeated") | not)'
}

@test "lc-heal -d: oom_load facts: what it tried to allocate, and what was free" {
	diag "$OWN/oom_load-torch-weights.log"
	assert_json '.diagnosis.facts | .tried_to_allocate_mib == 448 and .gpu_memory_free_mib == 102.31'
	diag "$OWN/oom_load-v1-free-memory.log"
	assert_json '.diagnosis.facts | .gpu_memory_utilization == 0.9 and (.gpu_memory_free_mib / .gpu_memory_total_mib * 100 | floor) == 42'
}

@test "lc-heal -d: a failure no fix mends decides unknown, over an earlier fixable line" {
	diag "$OWN/unknown-p100-below-7.log"
	assert_json '.diagnosis.category == "unknown" and .diagnosis.fix.automatic == false'
	assert_json '.diagnosis.evidence == ["RuntimeError: GPUs with compute capability below 7.0 are not supported."]'
	assert_json '.diagnosis.message | test("none of lc-heal.s fixes")'
	diag "$OWN/unknown-v1-no-kernel-image-rtx50.log"
	assert_json '.diagnosis.category == "unknown" and (.diagnosis.evidence[0] | test("no kernel image"))'
}

@test "lc-heal -d: wrappers (FastChat, TorchServe, pydantic's Value error) are seen through" {
	diag "$OWN/dtype-fastchat-stderr-frames.log"
	assert_json '.diagnosis.category == "dtype" and (.diagnosis.evidence | all(startswith(" ")))'
	diag "$OWN/model_access-torchserve-frames.log"
	assert_json '.diagnosis.category == "model_access" and .diagnosis.evidence == ["    hf_raise_for_status(response)"]'
	diag "$OWN/unsupported_arch-pydantic-then-abort.log"
	assert_json '.diagnosis.category == "unsupported_arch" and .diagnosis.facts.architecture == "Qwen3ForCausalLM"'
	assert_json '.diagnosis.evidence[0] | startswith("Value error, Model architectures")'
}

@test "lc-heal -d: a traceback that mentions memory in passing is not an OOM" {
	diag "$OWN/healthy-v0-error-in-info.log"
	assert_json '.diagnosis.category == "healthy"'
	printf '%s\n' 'Traceback (most recent call last):' \
	    '  File "/x/vllm/worker/worker.py", line 131, in determine_num_available_blocks' \
	    '    torch.cuda.empty_cache()  # free memory, avoid out of memory later' \
	    'ValueError: max_num_seqs (512) exceeds available Mamba cache blocks (256)' >"$BATS_TEST_TMPDIR/m.log"
	diag "$BATS_TEST_TMPDIR/m.log"
	assert_json '.diagnosis.category == "unknown"'
	assert_json '.diagnosis.evidence[-1] | startswith("ValueError: max_num_seqs")'
}

@test "lc-heal -d: tp_mismatch facts: attention heads, TP size, GPU count" {
	diag "$OWN/tp_mismatch-heads-v0.log"
	assert_json '.diagnosis.facts | .num_attention_heads == 28 and .tensor_parallel_size == 8'
	diag "$OWN/tp_mismatch-heads-v1-apiserver.log"
	assert_json '.diagnosis.facts | .num_attention_heads == 40 and .tensor_parallel_size == 3'
	diag "$OWN/tp_mismatch-gpu-count.log"
	assert_json '.diagnosis.facts | .tensor_parallel_size == 4 and .gpu_count == 2'
}

@test "lc-heal -d: port: Application startup complete, then a bind failure" {
	diag "$OWN/port_in_use-startup-then-bind.log"
	assert_json '.diagnosis.category == "port_in_use" and .diagnosis.facts.port == 8000'
	diag "$OWN/port_in_use-v1-ansi.log"
	assert_json '.diagnosis.category == "port_in_use" and .diagnosis.facts.port == 8001'
	diag "$OWN/port_in_use-docker-allocated.log"
	assert_json '.diagnosis.facts.port == 8000'
}

@test "lc-heal -d: model_access facts from gated, forbidden and missing repos" {
	diag "$OWN/model_access-gated-v1.log"
	assert_json '.diagnosis.facts | .model == "meta-llama/Llama-3.1-8B-Instruct" and .http_status == 401'
	diag "$OWN/model_access-403-compose.log"
	assert_json '.diagnosis.facts | .model == "mistralai/Mistral-7B-Instruct-v0.3" and .http_status == 403'
	diag "$OWN/model_access-not-found.log"
	assert_json '.diagnosis.facts | .model == "Qwen/Qwen2.5-Coder-32B-Instruct-AWQQ" and .http_status == 404'
	assert_json '.diagnosis.message | test("Qwen/Qwen2.5-Coder-32B-Instruct-AWQQ")'
	# A URL that ends the line, and the sentence.
	printf '%s\n' 'OSError: You are trying to access a gated repo. Make sure to have access to it at https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct.' >"$BATS_TEST_TMPDIR/g.log"
	diag "$BATS_TEST_TMPDIR/g.log"
	assert_json '.diagnosis.facts.model == "meta-llama/Meta-Llama-3-8B-Instruct"'
}

@test "lc-heal -d: a log cut inside a traceback is judged from its frames, and says so" {
	diag "$OWN/model_access-frames-only.log"
	assert_json '.diagnosis.category == "model_access" and (.diagnosis.message | test("frames"))'
	diag "$OWN/nccl-frames-only.log"
	assert_json '.diagnosis.category == "nccl"'
}

@test "lc-heal -d: healthy needs the server listening with nothing fatal after it" {
	diag "$OWN/healthy-restart-after-failure.log"
	assert_json '.diagnosis.category == "healthy" and (.diagnosis.evidence[0] | test("Uvicorn running"))'
	diag "$OWN/healthy-v1-request-error.log"
	assert_json '.diagnosis.category == "healthy"'
	diag "$OWN/unknown-engine-died.log"
	assert_json '.diagnosis.category == "unknown" and (.diagnosis.evidence | any(test("EngineDeadError")))'
}

@test "lc-heal -d: the last fatal failure wins when several appear" {
	cat "$OWN/dtype-t4-v0.log" "$OWN/kv_cache-v0-compose.log" >"$BATS_TEST_TMPDIR/two.log"
	diag "$BATS_TEST_TMPDIR/two.log"
	assert_json '.diagnosis.category == "kv_cache"'
	cat "$OWN/kv_cache-v0-compose.log" "$OWN/dtype-t4-v0.log" >"$BATS_TEST_TMPDIR/two.log"
	diag "$BATS_TEST_TMPDIR/two.log"
	assert_json '.diagnosis.category == "dtype"'
}

@test "lc-heal -d: unknown keeps the last error lines, and never guesses" {
	diag "$OWN/unknown-other-error.log"
	assert_json '.diagnosis.category == "unknown" and .diagnosis.fix.automatic == false'
	assert_json '.diagnosis.evidence == ["ValueError: max_num_batched_tokens (2048) is smaller than max_model_len (32768). This effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences. Please increase max_num_batched_tokens or decrease max_model_len."]'
	diag "$OWN/unknown-still-loading.log"
	assert_json '.diagnosis.category == "unknown" and (.diagnosis.message | test("still be starting"))'
}

@test "lc-heal -d: an empty log is unknown, with no evidence" {
	run -0 --separate-stderr lc-heal -d </dev/null
	assert_json '.diagnosis.category == "unknown" and .diagnosis.evidence == [] and .diagnosis.lines == 0'
	assert_json '.diagnosis.message == "The log is empty"'
}

@test "lc-heal -d: NUL bytes and invalid UTF-8 give valid JSON and the right category" {
	{
		printf 'INFO 01-01 00:00:00 x.py:1] \000\000 binary \377\376 junk\n'
		printf 'ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla \377T4 GPU has compute capability 7.5.\000\n'
	} >"$BATS_TEST_TMPDIR/bad.log"
	diag "$BATS_TEST_TMPDIR/bad.log"
	assert_json '.diagnosis.category == "dtype" and .diagnosis.facts.compute_capability == "7.5"'
	assert_json '.diagnosis.evidence[0] | test("\u0000") | not'
	jq -e . <<<"$output" >/dev/null
}

@test "lc-heal -d: 10,000-character lines are cut, not fatal" {
	{
		printf 'INFO 01-01 00:00:00 x.py:1] '
		head -c 10000 /dev/zero | tr '\0' 'a'
		printf '\n'
		printf 'RuntimeError: NCCL error: unhandled system error '
		head -c 10000 /dev/zero | tr '\0' 'b'
		printf '\n'
	} >"$BATS_TEST_TMPDIR/long.log"
	diag "$BATS_TEST_TMPDIR/long.log"
	assert_json '.diagnosis.category == "nccl" and (.diagnosis.evidence[0] | length) < 600'
}

@test "lc-heal -d: a 50 MB log streams in bounded memory" {
	local kb
	awk 'BEGIN { for (i = 0; i < 400000; i++)
		printf "(VllmWorkerProcess pid=%d) INFO 01-01 00:00:00 metrics.py:1] Avg prompt throughput: %d tokens/s, GPU KV cache usage: 0.1%%, error_count=0\n", i, i }' >"$BATS_TEST_TMPDIR/big.log"
	cat "$OWN/kv_cache-v1-enginecore.log" >>"$BATS_TEST_TMPDIR/big.log"
	(($(stat -c %s "$BATS_TEST_TMPDIR/big.log") > 50000000))
	run -0 --separate-stderr /usr/bin/time -f '%M' lc-heal -d <"$BATS_TEST_TMPDIR/big.log"
	assert_json '.diagnosis.category == "kv_cache" and .diagnosis.lines > 400000'
	kb=${stderr##*$'\n'}
	# Independent of the log's size; ASan builds carry their shadow.
	((kb < 200000)) || fail "peak RSS $kb KiB"
}

@test "lc-heal -d: reads only stdin; names are a usage error" {
	run -2 --separate-stderr lc-heal -d dev
	[[ $stderr == *"usage: lc-heal"* ]]
}

# --- the ladder, round by round (lc-heal -p) ------------------------------

# session FILE [JQ]: a record with FILE's diagnosis and typical settings.
session() {
	lc-heal -d <"$1" | jq -c '. + {name: "dev", gpus: 2, heal: [],
	    vllm: {tensor_parallel_size: 1, gpu_memory_utilization: 0.9,
	    max_model_len: 32768, min_max_model_len: 8192, dtype: "auto",
	    extra_args: [], env: {}}}' | jq -c "${2:-.}"
}

@test "lc-heal -p: kv_cache raises utilization to 0.95, then lowers max_model_len to what fits, then stops" {
	session "$OWN/kv_cache-v1-enginecore.log" '.vllm.max_model_len = 131072' |
	    lc-heal -p | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '[.heal[].rung] == ["raise_utilization", "max_model_len"]'
	assert_json '.heal[0].action == "gpu_memory_utilization 0.90 -> 0.95"'
	assert_json '.heal[1].action == "max_model_len 131072 -> 38400"'
	assert_json '.vllm.gpu_memory_utilization == 0.95 and .vllm.max_model_len == 38400'
	run -1 --separate-stderr lc-heal -p <"$BATS_TEST_TMPDIR/out"
	assert_json '.error.code == "no_fix" and .vllm.max_model_len == 38400'
}

@test "lc-heal -p: kv_cache never raises utilization above 0.95 and never goes below the minimum" {
	session "$OWN/kv_cache-v1-enginecore.log" '.vllm.max_model_len = 131072 | .vllm.gpu_memory_utilization = 0.93' |
	    lc-heal -p | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '[.heal[].to.gpu_memory_utilization] == [0.95, 0.95]'
	assert_json '[.heal[].to.max_model_len] == [131072, 38400]'
	# What fits is below the user's minimum: nothing to try.
	run -1 --separate-stderr lc-heal -p < <(session "$OWN/kv_cache-v1-enginecore.log" '.vllm.gpu_memory_utilization = 0.95 | .vllm.min_max_model_len = 65536 | .vllm.max_model_len = 131072')
	assert_json '.error.code == "no_fix" and (.error.message | test("minimum is 65536"))'
	assert_json '.vllm.max_model_len == 131072'
	# No minimum of the user's: the message does not invent one.
	run -1 --separate-stderr lc-heal -p < <(session "$OWN/kv_cache-v1-enginecore.log" '.vllm.gpu_memory_utilization = 0.95 | del(.vllm.min_max_model_len) | .vllm.max_model_len = 256')
	assert_json '.error.code == "no_fix" and (.error.message | test("cannot go lower;")) and (.error.message | test("minimum") | not)'
}

@test "lc-heal -p: kv_cache without a number halves max_model_len, not below the minimum" {
	session "$OWN/kv_cache-no-blocks-ansi.log" '.vllm.gpu_memory_utilization = 0.95' |
	    lc-heal -p | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '[.heal[].to.max_model_len] == [16384, 8192]'
	run -1 --separate-stderr lc-heal -p <"$BATS_TEST_TMPDIR/out"
	assert_json '.error.code == "no_fix" and .vllm.max_model_len == 8192'
}

@test "lc-heal -p: oom_load lowers utilization once, then enforce_eager, then a smaller max_model_len" {
	session "$OWN/oom_load-torch-weights.log" | lc-heal -p | lc-heal -p | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '[.heal[].rung] == ["lower_utilization", "enforce_eager", "max_model_len"]'
	assert_json '[.heal[].round] == [1, 2, 3]'
	assert_json '.vllm | .gpu_memory_utilization == 0.85 and .enforce_eager == true and .max_model_len == 16384'
	assert_json '.heal | all(.diagnosis == "oom_load" and .result == "planned" and (.at | test("Z$")))'
}

@test "lc-heal -p: oom_load fits utilization to the free memory the log reports" {
	run -0 --separate-stderr lc-heal -p < <(session "$OWN/oom_load-v1-free-memory.log")
	assert_json '.vllm.gpu_memory_utilization == 0.41'
}

@test "lc-heal -p: nccl sets NCCL_P2P_DISABLE=1, then disables custom all-reduce, then stops" {
	session "$OWN/nccl-distbackend.log" '.vllm.tensor_parallel_size = 2 | .vllm.env = {"HF_HUB_OFFLINE": "1"}' |
	    lc-heal -p | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '.heal[0].to.env == {"HF_HUB_OFFLINE": "1", "NCCL_P2P_DISABLE": "1"}'
	assert_json '.heal[1].to.disable_custom_all_reduce == true and .heal[1].to.env.NCCL_P2P_DISABLE == "1"'
	run -1 --separate-stderr lc-heal -p <"$BATS_TEST_TMPDIR/out"
	assert_json '.error.code == "no_fix" and (.error.message | test("NCCL"))'
}

@test "lc-heal -p: tp_mismatch picks the largest TP that divides the heads and fits the GPUs" {
	run -0 --separate-stderr lc-heal -p < <(session "$OWN/tp_mismatch-heads-v1-apiserver.log" '.gpus = 3 | .vllm.tensor_parallel_size = 3')
	assert_json '.vllm.tensor_parallel_size == 2'
	run -0 --separate-stderr lc-heal -p < <(session "$OWN/tp_mismatch-heads-v0.log" '.gpus = [{}, {}, {}, {}, {}, {}, {}, {}] | .vllm.tensor_parallel_size = 8')
	assert_json '.vllm.tensor_parallel_size == 7'
	run -0 --separate-stderr lc-heal -p < <(session "$OWN/tp_mismatch-gpu-count.log" '.gpus = null | .vllm.tensor_parallel_size = 4')
	assert_json '.vllm.tensor_parallel_size == 2'
	# One GPU and TP already 1: nothing to try.
	run -1 --separate-stderr lc-heal -p < <(session "$OWN/tp_mismatch-heads-v0.log" '.gpus = 1')
	assert_json '.error.code == "no_fix"'
}

@test "lc-heal -p: dtype half below compute capability 8.0, and only once" {
	session "$OWN/dtype-t4-v0.log" '.gpus = [{"compute_capability": "7.5"}]' | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '.vllm.dtype == "half" and .heal[0].action == "dtype auto -> half"'
	run -1 --separate-stderr lc-heal -p <"$BATS_TEST_TMPDIR/out"
	assert_json '.error.code == "no_fix"'
}

@test "lc-heal -p: port_in_use stops the stale container once, settings unchanged" {
	session "$OWN/port_in_use-startup-then-bind.log" | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '.heal[0].kind == "stop_container" and .heal[0].from == .heal[0].to'
	run -1 --separate-stderr lc-heal -p <"$BATS_TEST_TMPDIR/out"
	assert_json '.error.code == "no_fix" and (.error.message | test("ss -ltnp"))'
}

@test "lc-heal -p: model_access, unsupported_arch, driver and unknown: no automatic fix, a clear message" {
	local f
	for f in model_access-gated-v1 unsupported_arch-v0-not-supported driver-docker-gpu unknown-other-error; do
		run -1 --separate-stderr lc-heal -p < <(session "$OWN/$f.log")
		assert_json '.error.code == "no_fix" and .error.tool == "lc-heal" and .heal == []'
		assert_json '.vllm.gpu_memory_utilization == 0.9'
	done
	run -1 --separate-stderr lc-heal -p < <(session "$OWN/model_access-gated-v1.log")
	assert_json '.error.message | test("HF_TOKEN")'
	[[ $stderr == "lc-heal: dev: no automatic fix: the model cannot be downloaded"* ]]
}

@test "lc-heal -p: never the same settings twice across rounds" {
	session "$OWN/tp_mismatch-heads-v0.log" '.gpus = 8 | .vllm.tensor_parallel_size = 8' |
	    lc-heal -p | lc-heal -p | lc-heal -p >"$BATS_TEST_TMPDIR/out"
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '[.heal[].to] | length == (unique | length)'
	assert_json '[.heal[].to.tensor_parallel_size] == [7, 4, 2]'
}

@test "lc-heal -p: a record without a diagnosis is an error; foreign fields pass through" {
	run -1 --separate-stderr lc-heal -p <<<'{"name":"dev","owner":"ana"}'
	assert_json '.error.code == "no_diagnosis" and .owner == "ana"'
	run -0 --separate-stderr lc-heal -p < <(session "$OWN/dtype-t4-v0.log" '.owner = "ana"')
	assert_json '.owner == "ana" and .diagnosis.category == "dtype"'
}

@test "lc-heal: bad options and bad rounds are usage errors" {
	run -2 --separate-stderr lc-heal --bogus
	[[ $stderr == *"usage: lc-heal [-adfnpqv] [-r rounds] [-t seconds] [name ...]"* ]]
	run -2 --separate-stderr lc-heal -r 4 dev
	[[ $stderr == *"bad rounds"* ]]
	run -2 --separate-stderr lc-heal -t soon dev
	run -0 lc-heal --help
	[[ $output == *"--if-failed"* ]]
}

@test "lc-heal: bash completion offers options and live session names" {
	put_session dev '{"state":"ready"}'
	put_session gpu-2 '{"state":"failed"}'
	# shellcheck source=/dev/null
	source "$REPO/completions/bash/lc-heal"
	COMP_WORDS=(lc-heal '')
	COMP_CWORD=1
	_lc_heal
	[[ " ${COMPREPLY[*]} " == *" dev "* && " ${COMPREPLY[*]} " == *" gpu-2 "* ]]
	COMP_WORDS=(lc-heal --if)
	_lc_heal
	[[ ${COMPREPLY[*]} == --if-failed ]]
	# Every long option in --help is offered by all three shells.
	local o
	for o in $(lc-heal --help | grep -o -- '--[a-z-]*' | sort -u); do
		grep -q -- "$o" "$REPO/completions/bash/lc-heal" || fail "bash lacks $o"
		grep -q -- "${o#--}" "$REPO/completions/zsh/_lc-heal" || fail "zsh lacks $o"
		grep -q -- "-l ${o#--}" "$REPO/completions/fish/lc-heal.fish" || fail "fish lacks $o"
	done
}

@test "lc-heal -d: newer wordings: fp8 on an old GPU, TP above the GPU count, no config format" {
	diag "$OWN/dtype-fp8-quantization.log"
	assert_json '.diagnosis.category == "dtype" and .diagnosis.facts.compute_capability == "7.5" and .diagnosis.facts.quantization_refused == "fp8"'
	run -1 --separate-stderr lc-heal -p < <(session "$OWN/dtype-fp8-quantization.log")
	assert_json '.error.code == "no_fix" and (.error.message | test("fp8 quantization"))'
	printf '%s\n' 'ValueError: Tensor parallel size (4) cannot be larger than the number of available GPUs (2).' >"$BATS_TEST_TMPDIR/tp.log"
	diag "$BATS_TEST_TMPDIR/tp.log"
	assert_json '.diagnosis.category == "tp_mismatch" and .diagnosis.facts.tensor_parallel_size == 4 and .diagnosis.facts.gpu_count == 2'
	diag "$OWN/model_access-no-config-format.log"
	assert_json '.diagnosis.facts.model == "meta-llama/Llama-3.2-1B-Instruct"'
}

@test "lc-heal -d: a log cut before the KV-cache error is judged from the lines before it" {
	diag "$OWN/kv_cache-cut-before-error.log"
	assert_json '.diagnosis.category == "kv_cache" and (.diagnosis.message | test("ends before"))'
	assert_json '.diagnosis.facts.max_seq_len == 32768'
	# Frames that point somewhere, then an exception nobody knows: unknown.
	diag "$OWN/unknown-frames-then-other-error.log"
	assert_json '.diagnosis.category == "unknown" and (.diagnosis.evidence[-1] | startswith("safetensors_rust"))'
}

@test "lc-heal -a -n: says what it would write on the VM and changes nothing" {
	local rec='{"name":"dev","state":"ready","model":"Qwen/Qwen2.5-Coder-7B-Instruct-AWQ","ipv4":"192.0.2.1","ssh":{"host":"192.0.2.1","port":22,"user":"root"}}'
	run -0 --separate-stderr lc-heal -a -n <<<"$rec"
	assert_json '.state == "ready" and .model == "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"'
	[[ $stderr == *"dev: would write vllm.env for Qwen/Qwen2.5-Coder-7B-Instruct-AWQ and restart vLLM"* ]]
	# A record that failed upstream passes untouched (and counts: exit 1).
	run -1 --separate-stderr lc-heal -a <<<'{"name":"dev","error":{"code":"x","message":"y"}}'
	assert_json '.error.code == "x"'
	run -2 --separate-stderr lc-heal -a -d
	[[ $stderr == *"-a, -d and -p exclude each other"* ]]
}

@test "lc-heal --diagnose: a group's Ray and NCCL failures between nodes, each with its cause" {
	local f want cat mn
	for f in "$BATS_TEST_DIRNAME"/fixtures/vllm-logs-multinode/*.log; do
		want=$(basename "$f" .log)
		want=${want%%-*}
		case $want in
		nccl_interface) cat=nccl ;;
		*) cat=unknown ;;
		esac
		run -0 --separate-stderr lc-heal --diagnose <"$f"
		mn=$(jq -r '.diagnosis.facts.multinode' <<<"$output")
		[[ $mn == "$want" ]] || fail "$f: multinode $mn, want $want"
		jq -e --arg c "$cat" '.diagnosis.category == $c' <<<"$output" >/dev/null ||
			fail "$f: $(jq -c .diagnosis <<<"$output")"
	done
	run -0 --separate-stderr lc-heal --diagnose <"$BATS_TEST_DIRNAME/fixtures/vllm-logs-multinode/node_missing-run-ray.log"
	jq -e '.diagnosis.message | test("missing from the Ray cluster \\(1 of 2 joined\\)")' <<<"$output"
	run -0 --separate-stderr lc-heal --diagnose <"$BATS_TEST_DIRNAME/fixtures/vllm-logs-multinode/nccl_interface-socket.log"
	jq -e '.diagnosis.message | test("VPC interface eth1, not eth0")' <<<"$output"
	run -0 --separate-stderr lc-heal --diagnose <"$BATS_TEST_DIRNAME/fixtures/vllm-logs-multinode/version_mismatch-ray.log"
	jq -e '.diagnosis.message | test("same vllm_image")' <<<"$output"
	# NCCL between nodes: no P2P rung (it cannot help), the interface to check.
	run -0 --separate-stderr lc-heal --diagnose <"$BATS_TEST_DIRNAME/fixtures/vllm-logs-multinode/nccl_interface-socket.log"
	jq -e '.diagnosis.fix.automatic == false and (.diagnosis.fix.steps[0] | test("eth1"))' <<<"$output"
	diag=$(jq -c .diagnosis <<<"$output")
	run -1 --separate-stderr lc-heal --plan <<<"{\"name\":\"x\",\"vllm\":{},\"diagnosis\":$diag}"
	[[ $stderr == *"NCCL between the nodes of a group failed"* ]] || fail "$stderr"
}
