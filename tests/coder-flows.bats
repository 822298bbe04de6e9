#!/usr/bin/env bats
# coder's flows for people: the plan, aider, switch-model and Ctrl-C during
# up (the wizard has coder-wizard.bats); against the fake API, the sshd VM
# and the fake vLLM.
load helpers/common
load helpers/boot

setup_file() {
	start_api_server
	start_vm flows
	start_vllm
	export LC_SSH_PORT=$VM_PORT LC_VLLM_PORT=$VLLM_PORT
}

teardown_file() {
	stop_vllm
	stop_vm flows
	stop_api_server
}

teardown() {
	stop_up
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset '{}'
	vm_reset
	vllm_ctl set '{"healthy":true,"fail_completions":false}'
}

# A ready session on the test VM, with its env file, as lc-create leaves it.
ready_session() {
	vm_session_json dev --argjson p 18123 \
		'. + {state:"ready", local_port:$p, served_model_name:"coder",
		      type:"g2-gpu-rtx4000a1-s", gpus:1, preset:"qwen-coder-7b",
		      model:"Qwen/Qwen2.5-Coder-7B-Instruct"}' >"$BATS_TEST_TMPDIR/rec"
	put_session dev "$(cat "$BATS_TEST_TMPDIR/rec")"
	cp "$VM_KNOWN_HOSTS" "$STATE/dev.known_hosts"
	printf 'OPENAI_API_BASE=http://127.0.0.1:18123/v1\nOPENAI_API_KEY=k3y-for-test\nAIDER_MODEL=openai/coder\n' \
		>"$STATE/dev.env"
	chmod 600 "$STATE/dev.env"
}

@test "coder up -n: the plan (spec, cost, cloud-config) and nothing mutating sent" {
	mkdir -p "$HOME/.ssh" && ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	run -0 --separate-stderr coder up -n dev
	[[ $output == *'"dry_run":true'* && $output == *'"hourly_cost_usd":0.52'* ]]
	[[ $output == *'"daily_cost_usd":12.48'* ]]
	[[ $output == *"#cloud-config"* && $output == *"linode-coder-vllm"* ]]
	[[ $stderr == *'$0.52/hour'* ]]
	[[ $(api_count 'POST /v4/*') == 0 && $(api_count 'DELETE /v4/*') == 0 ]]
	[[ ! -e $STATE/sessions/dev.json ]]
}

@test "coder up without a token prints the plan and exits 0" {
	unset LINODE_TOKEN LC_SSH_KEY
	run -0 --separate-stderr coder up dev
	[[ $stderr == *"no Linode token: printing the plan only"* ]]
	[[ $stderr == *"throwaway key"* ]]
	[[ $output == *"#cloud-config"* ]]
	[[ $(api_count 'POST /v4/*') == 0 ]]
	[[ -z $(find /tmp -maxdepth 1 -name 'lc-plan-*' -newer "$BATS_TEST_TMPDIR" 2>/dev/null) ]]
}

@test "coder aider: tunnel, metadata from /v1/models, aider with the session's env; tunnel closed after" {
	ready_session
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat >"$BATS_TEST_TMPDIR/bin/aider" <<-'EOT'
	#!/bin/bash
	# stand-in aider: what it was given, and whether the tunnel answers
	printf '%s\n' "$@" >"$AIDER_LOG.args"
	base=
	while (($#)); do [[ $1 == --openai-api-base ]] && base=$2; shift; done
	curl -fsS -m 5 "$base/models" -H 'Authorization: Bearer k3y-for-test' >"$AIDER_LOG.models"
	exit 7
	EOT
	chmod +x "$BATS_TEST_TMPDIR/bin/aider"
	export AIDER_LOG=$BATS_TEST_TMPDIR/aider
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -7 --separate-stderr coder aider dev -- --yes-always
	grep -qx -- "--env-file" "$AIDER_LOG.args"
	grep -qx -- "$STATE/dev.env" "$AIDER_LOG.args"
	grep -qx -- "openai/coder" "$AIDER_LOG.args"
	grep -qx -- "http://127.0.0.1:18123/v1" "$AIDER_LOG.args"
	grep -qx -- "--yes-always" "$AIDER_LOG.args"
	jq -e '.data[0].id == "coder"' "$AIDER_LOG.models"
	jq -e '."openai/coder".max_input_tokens == 32768 and ."openai/coder".litellm_provider == "openai"' \
		.aider.model.metadata.json
	# The tunnel is gone once aider exits.
	run ! curl -fsS -m 2 http://127.0.0.1:18123/v1/models
}

@test "coder aider: a missing aider says how to install it" {
	ready_session
	PATH="$REPO/bin:/usr/bin:/bin" run -127 --separate-stderr coder aider dev
	[[ $stderr == *"aider is not installed"*"pip install"* ]]
}

@test "coder switch-model: a model too large for the VM is refused before anything changes" {
	ready_session
	run -1 --separate-stderr coder switch-model dev --preset qwen-coder-32b-1gpu
	assert_json '.error.code == "vram_too_small"'
	[[ -z $(vm_calls) ]]
	jq -e '.model == "Qwen/Qwen2.5-Coder-7B-Instruct"' "$STATE/sessions/dev.json"
}

@test "coder switch-model: rewrites vllm.env, restarts, waits for a real completion" {
	ready_session
	run -0 --separate-stderr coder switch-model dev --model Qwen/Qwen2.5-Coder-7B-Instruct-AWQ
	assert_json '.state == "ready" and .model == "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ" and .tokens_per_s > 0'
	grep -q "VLLM_MODEL='Qwen/Qwen2.5-Coder-7B-Instruct-AWQ'" "$VM_ROOT/etc/linode-coder/vllm.env"
	vm_calls | grep -q "^systemctl restart linode-coder-vllm.service"
	jq -e '.model == "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"' "$STATE/sessions/dev.json"
}

@test "coder switch-model: a new model that fails to start is healed, then must answer a completion" {
	ready_session
	vm_kv_cache_until_more_memory
	run -0 --separate-stderr coder switch-model dev --model Qwen/Qwen2.5-Coder-7B-Instruct-AWQ
	[[ $stderr == *"did not come up; trying lc-heal"*"checking that it answers a real completion"* ]]
	jq -e '.state == "ready" and .model == "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ" and
	    .heal[0].diagnosis == "kv_cache" and .ttft_s > 0' "$STATE/sessions/dev.json"
}

@test "coder heal: fixes a failed start, then checks a real completion" {
	ready_session
	jq -c '.state = "failed"' "$STATE/sessions/dev.json" >"$BATS_TEST_TMPDIR/r" &&
		cat "$BATS_TEST_TMPDIR/r" >"$STATE/sessions/dev.json"
	vm_set unit_state failed
	vllm_ctl set '{"healthy":false}'
	vm_kv_cache_until_more_memory
	run -0 --separate-stderr coder heal dev
	[[ $stderr == *"kv_cache"*"checking that it answers a real completion"* ]]
	jq -e '.state == "ready" and .heal[0].diagnosis == "kv_cache" and .ttft_s > 0' "$STATE/sessions/dev.json"
	# Nothing to fix: no round, no completion check.
	run -0 --separate-stderr coder heal dev
	[[ $stderr != *"checking that it answers"* ]]
}

# up_interrupt_after STAGE CONDITION: start coder up, wait (60 s) until
# CONDITION shows it has reached STAGE, fail if it never does, then Ctrl-C
# (SIGINT to the process group, as a terminal sends it). Afterwards the
# account holds no instance and no firewall, and the ledger no session.
up_interrupt_after() {
	lc-cloudinit -N dev >/dev/null 2>&1 || true
	start_up
	wait_until 60 "$2" || fail "coder up never reached $1"
	kill -INT -- "-$UP_PID"
	wait "$UP_PID" || true
	grep -q "dev: interrupted (Ctrl-C)" "$BATS_TEST_TMPDIR/err"
	run -0 lc-sessions reconcile
	[[ -z $output ]] || fail "orphans: $output"
	wait_until 30 api_empty ||
		fail "left in the account: $(api_state | jq -c '{instances, firewalls}')"
	[[ -z $(ls "$STATE/sessions" 2>/dev/null) ]] || fail "session left: $(ls "$STATE/sessions")"
}

@test "coder up: Ctrl-C before the VM exists leaves nothing" {
	# The offer check (GET the type's price) hangs: nothing made yet.
	api_ctl stall '{"seconds":30,"match":"GET /linode/types"}'
	up_interrupt_after "the offer check" \
	    'api_state | jq -e ".faults.stall == 0" >/dev/null'
	[[ $(api_count 'POST /v4/*') == 0 ]]
	grep -q "no VM was created" "$BATS_TEST_TMPDIR/err"
}

@test "coder up: Ctrl-C after the create call destroys the VM" {
	api_ctl clock '{"provisioning_s":60}'
	up_interrupt_after "the instance's create" \
	    'jq -e ".linode_id > 0" "$STATE/sessions/dev.json" >/dev/null 2>&1'
	api_saw 'POST /v4/linode/instances' 1
	api_saw 'DELETE /v4/linode/instances/*' 1
}

@test "coder up: Ctrl-C during the readiness wait destroys the VM" {
	vm_halt
	up_interrupt_after "the readiness wait" \
	    'grep -q "stage 1/6 ssh: started" "$BATS_TEST_TMPDIR/err"'
	api_saw 'DELETE /v4/linode/instances/*' 1
	vm_restart_sshd
}
