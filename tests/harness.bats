#!/usr/bin/env bats
# tests/harness.bats: the test harness itself, so that a failing tool test
# means a broken tool, not a broken stand-in. Checks the loopback sshd that
# plays the VM (host-key pinning, stand-ins first on PATH, state and call
# log) and the fake vLLM (auth rules, streaming, live metrics, restarts).

bats_require_minimum_version 1.5.0
# common.bash (per-test HOME and friends) sources helpers/vm itself; without
# it this file still runs on the harness alone.
if [[ -f $BATS_TEST_DIRNAME/helpers/common.bash ]]; then
	load helpers/common
else
	load helpers/vm
fi

setup_file() {
	start_vm
	start_vllm --api-key sk-harness --token-ms 2
}

teardown_file() {
	stop_vllm
	stop_vm
}

setup() {
	if declare -F common_setup >/dev/null; then
		common_setup
	else
		REPO=${REPO:-$(cd "$BATS_TEST_DIRNAME/.." && pwd)}
		export HOME="$BATS_TEST_TMPDIR/home"
		mkdir -p "$HOME"
	fi
	FIXTURES=${LC_FIXTURES:-$REPO/../shared/fixtures}
	vm_reset
	vllm_ctl set '{"healthy": true, "ttft_ms": 0, "token_ms": 2}' >/dev/null
}

# metric NAME: the value of the fake vLLM's series NAME: a full series
# (name{labels}) or the first series of that name.
metric() {
	local text
	text=$(curl -fsS "$VLLM_URL/metrics") || return 1
	awk -v n="$1" '!done && ($1 == n || index($1, n "{") == 1) {
	    print $2 + 0; done = 1 }' <<<"$text"
}

# chat JSON-EXTRA: a chat completion request body for model "coder".
chat() {
	jq -nc --argjson extra "${1:-{\}}" \
	    '{model: "coder", messages: [{role: "user", content: "Write add(a, b)"}]} + $extra'
}

# post PATH BODY [CURL ARGS]: POST to the fake vLLM with the API key.
post() {
	curl -sS -H 'Authorization: Bearer sk-harness' \
	    -H 'Content-Type: application/json' --data-binary "$2" \
	    "${@:3}" "$VLLM_URL$1"
}

@test "vm: the pinned host key gets in and the stand-ins come first on PATH" {
	# shellcheck disable=SC2016 # expanded on the VM, by its shell
	run -0 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
	    -o UserKnownHostsFile="$VM_KNOWN_HOSTS" -o IdentityAgent=none \
	    -i "$VM_USER_KEY" -p "$VM_PORT" "$VM_USER@127.0.0.1" \
	    'command -v nvidia-smi docker systemctl; echo "$LC_VM_ROOT"; ls "$LC_VM_ROOT/etc"'
	[[ ${lines[0]} == "$VM_DIR/bin/nvidia-smi" ]]
	[[ ${lines[1]} == "$VM_DIR/bin/docker" ]]
	[[ ${lines[2]} == "$VM_DIR/bin/systemctl" ]]
	[[ ${lines[3]} == "$VM_ROOT" ]]
	[[ ${lines[4]} == linode-coder ]]
	grep -qF "[127.0.0.1]:$VM_PORT ssh-ed25519 AAAA" "$VM_KNOWN_HOSTS"
	[[ $LC_SSH_KEY == "$VM_USER_KEY" && -z ${SSH_AUTH_SOCK:-} ]]
}

@test "vm: a known_hosts without the VM's key is refused" {
	ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/other" </dev/null
	printf '[127.0.0.1]:%s %s\n' "$VM_PORT" \
	    "$(cut -d' ' -f1,2 "$BATS_TEST_TMPDIR/other.pub")" >"$BATS_TEST_TMPDIR/kh"
	run -255 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
	    -o UserKnownHostsFile="$BATS_TEST_TMPDIR/kh" -o IdentityAgent=none \
	    -i "$VM_USER_KEY" -p "$VM_PORT" "$VM_USER@127.0.0.1" true
	[[ $output == *"REMOTE HOST IDENTIFICATION HAS CHANGED"* ]]
	: >"$BATS_TEST_TMPDIR/kh"
	run -255 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
	    -o UserKnownHostsFile="$BATS_TEST_TMPDIR/kh" -o IdentityAgent=none \
	    -i "$VM_USER_KEY" -p "$VM_PORT" "$VM_USER@127.0.0.1" true
	[[ $output == *"Host key verification failed"* ]]
}

@test "vm: nvidia-smi prints the chosen fixture byte for byte and logs the call" {
	local fx=$FIXTURES/nvidia-smi/06-table-h100x8-table.txt
	[[ -f $fx ]] || skip "no shared fixtures at $FIXTURES"
	vm_set_file nvidia_smi_fixture "$fx"
	vm_ssh nvidia-smi >"$BATS_TEST_TMPDIR/out"
	cmp "$fx" "$BATS_TEST_TMPDIR/out"
	# A fixture's path works as well as a copy.
	vm_set nvidia_smi_fixture "$FIXTURES/nvidia-smi/01-table-h200-table.txt"
	vm_ssh nvidia-smi >"$BATS_TEST_TMPDIR/out"
	cmp "$FIXTURES/nvidia-smi/01-table-h200-table.txt" "$BATS_TEST_TMPDIR/out"
	# Queries print only what the test chose, with the chosen status.
	vm_set nvidia_smi_rc 9
	vm_set_file nvidia_smi_apps "$FIXTURES/nvidia-smi/09-csv-tesla-p100.csv"
	# shellcheck disable=SC2016 # expanded on the VM, by its shell
	run -0 vm_ssh 'nvidia-smi --query-gpu=name --format=csv; echo "rc=$?"
	    nvidia-smi --query-compute-apps=pid --format=csv | head -n 1'
	[[ ${lines[0]} == rc=9 && ${lines[1]} == name* ]]
	run -0 vm_calls
	[[ ${lines[0]} == nvidia-smi && ${lines[2]} == "nvidia-smi --query-gpu=name --format=csv" ]]
}

@test "vm: docker logs --tail, and systemctl restart changes state, restarts vLLM, runs on_restart" {
	local log=$FIXTURES/vllm-logs/01-kv_cache.log
	[[ -f $log ]] || skip "no shared fixtures at $FIXTURES"
	vm_set_file docker_log "$log"
	run -0 vm_ssh docker logs --tail 2 vllm
	[[ $output == "$(tail -n 2 "$log")" ]]
	run -1 vm_ssh docker logs other
	[[ $output == *"No such container: other"* ]]

	vllm_ctl add_tokens '{"prompt": 5, "generation": 7}' >/dev/null
	vm_set unit_state failed
	vm_set_hook on_restart <<-'EOF'
	#!/bin/bash
	echo "$*" >"$LC_VM_DIR/restarted"
	EOF
	run -3 vm_ssh systemctl is-active vllm
	[[ $output == failed ]]
	run -0 vm_ssh systemctl restart vllm.service
	[[ $(<"$VM_DIR/restarted") == "systemctl restart vllm" ]]
	run -0 vm_ssh systemctl is-active vllm
	[[ $output == active ]]
	vllm_ctl state | jq -e '.restarts >= 1 and .prompt_tokens_total == 0'
	vm_calls | grep -qx 'systemctl restart vllm.service'
}

@test "vllm: /health and /metrics skip the API key, /v1 requires it" {
	run -0 curl -fsS -o /dev/null -w '%{http_code}' "$VLLM_URL/health"
	[[ $output == 200 ]]
	run -0 curl -fsS "$VLLM_URL/metrics"
	[[ $output == *'vllm:num_requests_running{model_name="coder",engine="0"} 0.0'* ]]
	run -0 curl -sS -w '\n%{http_code}' "$VLLM_URL/v1/models"
	[[ ${lines[1]} == 401 ]]
	run -0 curl -fsS -H 'Authorization: Bearer sk-harness' "$VLLM_URL/v1/models"
	jq -e '.data[0].id == "coder" and .data[0].max_model_len == 32768' <<<"$output"
	vllm_ctl set '{"healthy": false}' >/dev/null
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$VLLM_URL/health"
	[[ $output == 503 ]]
}

@test "vllm: streaming chat sends deltas, usage and [DONE]; counters grow by its tokens" {
	local p0 g0
	p0=$(metric vllm:prompt_tokens_total)
	g0=$(metric vllm:generation_tokens_total)
	run -0 post /v1/chat/completions \
	    "$(chat '{"stream": true, "max_tokens": 5, "stream_options": {"include_usage": true}}')" -N
	[[ ${lines[-1]} == "data: [DONE]" ]]
	local events
	events=$(sed -n 's/^data: \({.*\)$/\1/p' <<<"$output")
	jq -se '[.[].choices[]?.delta.content // empty] | length == 6' <<<"$events"
	jq -se '.[-2].choices[0].finish_reason == "length"' <<<"$events"
	jq -se '.[-1].usage.completion_tokens == 5' <<<"$events"
	[[ $(metric vllm:generation_tokens_total) == $((g0 + 5)) ]]
	(($(metric vllm:prompt_tokens_total) > p0))
	(($(metric 'vllm:request_success_total{model_name="coder",engine="0",finished_reason="length"}') >= 1))
	# Non-streaming, for lc-create's one-token check.
	run -0 post /v1/chat/completions "$(chat '{"max_tokens": 1}')"
	jq -e '.usage.completion_tokens == 1 and .choices[0].message.role == "assistant"' <<<"$output"
}

@test "vllm: a stream in flight shows in num_requests_running; a dropped client is an abort" {
	vllm_ctl set '{"token_ms": 20}' >/dev/null
	post /v1/chat/completions "$(chat '{"stream": true, "max_tokens": 30}')" \
	    -N -o /dev/null 3>&- &
	local i running=0
	for ((i = 0; i < 40; i++)); do
		running=$(metric vllm:num_requests_running)
		[[ $running == 1 ]] && break
		sleep 0.05
	done
	[[ $running == 1 ]]
	wait
	[[ $(metric vllm:num_requests_running) == 0 ]]
	# The client gives up mid-stream; the server carries on serving.
	run -28 post /v1/chat/completions "$(chat '{"stream": true, "max_tokens": 100}')" \
	    -N -o /dev/null --max-time 0.3
	for _ in {1..100}; do
		vllm_ctl state | jq -e '.running == 0 and .request_success_total.abort >= 1' >/dev/null && break
		sleep 0.1
	done
	vllm_ctl state | jq -e '.running == 0 and .request_success_total.abort >= 1'
	run -0 curl -fsS "$VLLM_URL/health"
}

@test "vllm: not ready means connections fail, then it answers" {
	# Seconds, so a loaded machine still sees the "not ready" part.
	vllm_ctl set '{"ready_after_s": 4}' >/dev/null
	run curl -sS --max-time 2 "$VLLM_URL/health"
	((status != 0))
	for _ in {1..300}; do
		curl -fsS "$VLLM_URL/health" >/dev/null 2>&1 && break
		sleep 0.1
	done
	run -0 curl -fsS "$VLLM_URL/health"
}

@test "vm_session_json: a record pointing at this VM and vLLM, adjustable with jq" {
	run -0 vm_session_json dev
	jq -e --argjson p "$VM_PORT" --arg kh "$VM_KNOWN_HOSTS" '
	    .name == "dev" and .state == "ready" and .ssh.port == $p and
	    .ssh.host == "127.0.0.1" and .ssh.known_hosts == $kh and
	    .endpoint == "http://127.0.0.1:\(env.VLLM_PORT)/v1"' <<<"$output"
	[[ $output != *$'\n'* ]]
	# shellcheck disable=SC2016 # $s is jq's, not the shell's
	run -0 vm_session_json dev --arg s failed '.state = $s'
	jq -e '.state == "failed"' <<<"$output"
}

@test "clock-at: the tool's clock starts at the time given and moves on; ours does not" {
	put_session dev "$(jq -nc --arg t "$(now_rfc3339)" \
	    '{state: "ready", created_at: $t, hourly_cost_usd: 1}')"
	run -0 clock_at $((EPOCHSECONDS + 7200)) lc-sessions dev
	assert_json '.uptime_s >= 7200 and .uptime_s < 7210'
	# A clock that keeps moving: a child's sleep ends and time goes on.
	run -0 clock_at $((EPOCHSECONDS - 86400)) sh -c 'a=$(date +%s); sleep 1.1; b=$(date +%s); echo $((b - a)) $a'
	[[ ${output% *} -ge 1 && ${output% *} -le 5 ]]
	((${output#* } < EPOCHSECONDS - 86000))
	run -0 lc-sessions dev
	assert_json '.uptime_s < 60'
	run -2 clock_at soon lc-sessions
	# No libfaketime: the test fails rather than run on the real clock.
	FAKETIME_LIB=$BATS_TEST_TMPDIR/none run -127 --separate-stderr clock_at 0 lc-sessions dev
	[[ $stderr == *"libfaketime not found"* && -z $output ]]
}
