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
	if [[ -n ${TUNNEL_PID:-} ]]; then
		kill "$TUNNEL_PID" 2>/dev/null || true
		wait "$TUNNEL_PID" 2>/dev/null || true
	fi
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset '{}'
	vm_reset
	vllm_ctl set '{"healthy":true,"fail_completions":false}'
}

# A ready session on the test VM, with its env file, as lc-create leaves it;
# its tunnel's local port is PORT (default 18123).
ready_session() {
	vm_session_json dev --argjson p "${1:-18123}" \
		'. + {state:"ready", local_port:$p, served_model_name:"coder",
		      type:"g2-gpu-rtx4000a1-s", gpus:1, preset:"qwen-coder-7b",
		      model:"Qwen/Qwen2.5-Coder-7B-Instruct"}' >"$BATS_TEST_TMPDIR/rec"
	put_session dev "$(cat "$BATS_TEST_TMPDIR/rec")"
	cp "$VM_KNOWN_HOSTS" "$STATE/dev.known_hosts"
	printf 'OPENAI_API_BASE=http://127.0.0.1:%s/v1\nOPENAI_API_KEY=k3y-for-test\nAIDER_MODEL=openai/coder\n' \
		"${1:-18123}" >"$STATE/dev.env"
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
	# A temporary directory of this test's own: other files' plans run
	# meanwhile.
	mkdir -p "$BATS_TEST_TMPDIR/tmp"
	TMPDIR=$BATS_TEST_TMPDIR/tmp run -0 --separate-stderr coder up dev
	[[ $stderr == *"no Linode token: printing the plan only"* ]]
	[[ $stderr == *"throwaway key"* ]]
	[[ $output == *"#cloud-config"* ]]
	[[ $(api_count 'POST /v4/*') == 0 ]]
	# The throwaway key was made there, and removed.
	[[ $stderr == *"throwaway key"* && -z $(ls -A "$BATS_TEST_TMPDIR/tmp") ]]
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

# A stand-in aider on PATH: records its arguments, the OPENAI_API_BASE of
# the env file it was given, and what the base it was given answers.
stand_in_aider() {
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat >"$BATS_TEST_TMPDIR/bin/aider" <<-'EOT'
	#!/bin/bash
	printf '%s\n' "$@" >"$AIDER_LOG.args"
	base= env=
	while (($#)); do
		[[ $1 == --openai-api-base ]] && base=$2
		[[ $1 == --env-file ]] && env=$2
		shift
	done
	sed -n 's/^OPENAI_API_BASE=//p' "$env" >"$AIDER_LOG.envbase"
	printf '%s\n' "$base" >"$AIDER_LOG.base"
	curl -fsS -m 5 "$base/models" -H 'Authorization: Bearer k3y-for-test' >"$AIDER_LOG.models"
	EOT
	chmod +x "$BATS_TEST_TMPDIR/bin/aider"
	export AIDER_LOG=$BATS_TEST_TMPDIR/aider
}

@test "coder aider -p P: the tunnel listens on P, aider's env file names P, the record keeps P" {
	ready_session
	stand_in_aider
	local p
	p=$(_vm_free_port)
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 --separate-stderr coder aider dev -p "$p"
	[[ $(<"$AIDER_LOG.base") == "http://127.0.0.1:$p/v1" ]]
	[[ $(<"$AIDER_LOG.envbase") == "http://127.0.0.1:$p/v1" ]]
	jq -e '.data[0].id == "coder"' "$AIDER_LOG.models"
	run -1 grep -qx -- "$p" "$AIDER_LOG.args"
	jq -e --argjson p "$p" '.local_port == $p' "$STATE/sessions/dev.json"
	# The key and model lines are kept.
	grep -qx 'OPENAI_API_KEY=k3y-for-test' "$STATE/dev.env"
	grep -qx 'AIDER_MODEL=openai/coder' "$STATE/dev.env"
	[[ $(stat -c %a "$STATE/dev.env") == 600 ]]
}

@test "coder aider: a busy recorded port makes the tunnel take another, and the env file follows" {
	# The fake vLLM listens on VLLM_PORT: record that as the tunnel's port.
	ready_session "$VLLM_PORT"
	stand_in_aider
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 --separate-stderr coder aider dev
	[[ $stderr == *"local port $VLLM_PORT is in use: the tunnel takes "* ]]
	local base
	base=$(<"$AIDER_LOG.base")
	[[ $base == http://127.0.0.1:*/v1 && $base != *":$VLLM_PORT/"* ]]
	[[ $(<"$AIDER_LOG.envbase") == "$base" ]]
	jq -e '.data[0].id == "coder"' "$AIDER_LOG.models"
	local p=${base#http://127.0.0.1:}
	jq -e --argjson p "${p%/v1}" '.local_port == $p' "$STATE/sessions/dev.json"
}

@test "coder tunnel -p X: ./.aider-env then names X" {
	ready_session
	run -0 coder use dev
	[[ -L .aider-env ]]
	local p
	p=$(_vm_free_port)
	coder tunnel dev -p "$p" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	TUNNEL_PID=$!
	wait_until 30 'grep -q "^OPENAI_API_BASE=" "$BATS_TEST_TMPDIR/out"'
	grep -qx "OPENAI_API_BASE=http://127.0.0.1:$p/v1" .aider-env
	grep -qx 'OPENAI_API_KEY=k3y-for-test' .aider-env
	run -0 curl -fsS -m 5 "http://127.0.0.1:$p/v1/models"
	jq -e --argjson p "$p" '.local_port == $p' "$STATE/sessions/dev.json"
	kill -TERM "$TUNNEL_PID"
	wait "$TUNNEL_PID"
	TUNNEL_PID=
}

@test "coder tunnel and coder aider: a busy port given with -p is refused in one line" {
	ready_session
	stand_in_aider
	run -1 --separate-stderr coder tunnel dev -p "$VLLM_PORT"
	[[ $stderr == *"port $VLLM_PORT on 127.0.0.1 is in use: choose another with -p"* ]]
	[[ $(wc -l <<<"$stderr") == 1 ]]
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -1 --separate-stderr coder aider dev --port "$VLLM_PORT"
	[[ $stderr == *"port $VLLM_PORT on 127.0.0.1 is in use"* ]]
	[[ $(wc -l <<<"$stderr") == 1 ]]
	[[ ! -e $AIDER_LOG.args ]]
	grep -qx 'OPENAI_API_BASE=http://127.0.0.1:18123/v1' "$STATE/dev.env"
	jq -e '.local_port == 18123' "$STATE/sessions/dev.json"
	run -2 --separate-stderr coder aider dev -p 70000
	[[ $stderr == *"bad port '70000'"* ]]
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
