#!/usr/bin/env bats
# lc-heal on a session: over SSH to the test sshd "VM", whose docker and
# systemctl stand-ins fail with a fixture log until vllm.env holds the
# expected fix, then the fake vLLM answers /health.
# shellcheck disable=SC2016,SC2154 # jq and remote code in single quotes; bats sets $stderr
load helpers/common

OWN="$BATS_TEST_DIRNAME/fixtures/vllm-logs"
UNIT=linode-coder-vllm

# One VM and one fake vLLM for the file; each test resets their state.
setup_file() {
	start_vm
	start_vllm
}

teardown_file() {
	stop_vllm
	stop_vm
}

setup() {
	common_setup
	vm_reset
	vllm_ctl set '{"healthy": false, "fail_completions": false}' >/dev/null
	# Remote commands run with PATH=REMOTE_PATH: the stand-ins first.
	export REMOTE_PATH="$VM_DIR/bin:/usr/bin:/bin" LC_REMOTE_ROOT="$VM_ROOT"
	vm_set vllm_unit "$UNIT"
	vm_set "unit_state_$UNIT" failed
	# A restart leaves the unit failed unless the hook below sees the fix.
	vm_set unit_state_after_restart failed
}

# fail_with LOG WANT: the VM's vLLM fails with LOG until vllm.env contains
# the text WANT (for "stopped", until the container was removed); then
# the restart brings it up healthy.
fail_with() {
	vm_set docker_log "$1"
	vm_set_hook on_restart <<-EOF
	#!/bin/bash
	[[ \$1 == systemctl && \$2 == restart ]] || exit 0
	if [[ "$2" == stopped ]]; then
		grep -q '^docker rm -f vllm' "\$LC_VM_DIR/calls.log" || exit 0
	else
		grep -qF -- "$2" "\$LC_VM_ROOT/etc/linode-coder/vllm.env" || exit 0
	fi
	curl -fsS -m 5 -H 'Content-Type: application/json' \
	    --data '{"healthy": true}' "$VLLM_URL/__ctl/set" >/dev/null
	printf 'active\n' >"\$LC_VM_DIR/state/unit_state_$UNIT"
	printf '%s\n' "$OWN/healthy-uvicorn-timestamps.log" >"\$LC_VM_DIR/state/docker_log"
	EOF
}

# refute_call PATTERN: no stand-in call matched PATTERN (grep -E).
refute_call() {
	if vm_calls | grep -qE -- "$1"; then
		fail "unexpected call on the VM: $(vm_calls | grep -E -- "$1")"
	fi
}

# session [JQ]: put the session "dev" for this VM in the ledger.
session() {
	put_session dev "$(vm_session_json dev '.state = "failed" | .vllm.min_max_model_len = 8192 | .owner = "ana"' | jq -c "${1:-.}")"
}

@test "lc-heal: kv_cache is ready in two rounds: utilization, then max_model_len" {
	session
	fail_with "$OWN/kv_cache-v0-compose.log" "'--max-model-len' '20784'"
	run -0 --separate-stderr lc-heal -t 20 dev
	# It says plainly what it did.
	[[ $stderr == *"lc-heal: dev: kv_cache: gpu_memory_utilization 0.90 -> 0.95 (round 1)"* ]]
	[[ $stderr == *"lc-heal: dev: kv_cache: max_model_len 32768 -> 20784 (round 2)"* ]]
	[[ $stderr == *"lc-heal: dev: vLLM is up and answers after 2 rounds"* ]]
	assert_json '.state == "ready" and (has("error") | not) and .owner == "ana"'
	# Not /health alone: a real completion answered, and was timed.
	assert_json '.ttft_s > 0 and .tokens_per_s > 0'
	jq -e '.ttft_s > 0' "$STATE/sessions/dev.json"
	assert_json '[.heal[].result] == ["failed", "ready"] and [.heal[].round] == [1, 2]'
	assert_json '[.heal[].rung] == ["raise_utilization", "max_model_len"]'
	assert_json '.vllm.gpu_memory_utilization == 0.95 and .vllm.max_model_len == 20784'
	assert_json '.diagnosis.category == "kv_cache"'
	# What runs on the VM, and what the ledger keeps, is what the record says.
	vm_ssh 'cat "$LC_VM_ROOT/etc/linode-coder/vllm.env"' >"$BATS_TEST_TMPDIR/env"
	grep -qF "'--gpu-memory-utilization' '0.95' '--max-model-len' '20784'" "$BATS_TEST_TMPDIR/env"
	[[ ! -e $VM_ROOT/etc/linode-coder/.vllm.env.tmp ]]
	jq -e '.state == "ready" and .vllm.max_model_len == 20784 and (.heal | length) == 2' "$STATE/sessions/dev.json"
	[[ $(vm_calls | grep -c "^systemctl restart $UNIT") == 2 ]]
}

@test "lc-heal: /health back but no completion answers: not healed, failed_stage completion, exit 1" {
	session
	fail_with "$OWN/kv_cache-v0-compose.log" "'--gpu-memory-utilization' '0.95'"
	vllm_ctl set '{"fail_completions": true}' >/dev/null
	run -1 --separate-stderr lc-heal -r 1 -t 20 dev
	[[ $stderr == *"checking that it answers a real completion"* ]]
	assert_json '.state == "failed" and .failed_stage == "completion" and
	    .error.code == "ready_completion" and [.heal[].result] == ["failed"]'
	jq -e '.state == "failed" and .failed_stage == "completion"' "$STATE/sessions/dev.json"
}

@test "lc-heal: dtype is fixed in one round with --dtype half" {
	session '.gpus = [{"compute_capability": "7.5"}]'
	fail_with "$OWN/dtype-compose-ansi.log" "'--dtype' 'half'"
	# Failed starts so far: the unit's back-off would wait before the next.
	mkdir -p "$VM_ROOT/var/lib/linode-coder"
	echo 4 >"$VM_ROOT/var/lib/linode-coder/starts"
	run -0 --separate-stderr lc-heal -q -t 20 dev
	assert_json '.state == "ready" and .vllm.dtype == "half" and (.heal | length) == 1'
	# A restart with the fix starts at once: the count is cleared.
	[[ ! -e $VM_ROOT/var/lib/linode-coder/starts ]]
	assert_json '.heal[0] | .diagnosis == "dtype" and .action == "dtype auto -> half" and .from.dtype == "auto"'
}

@test "lc-heal: nccl: NCCL_P2P_DISABLE=1 reaches the container's environment" {
	session '.vllm.tensor_parallel_size = 2 | .gpus = 2'
	fail_with "$OWN/nccl-ray-ansi.log" "VLLM_ENV=('NCCL_P2P_DISABLE=1')"
	run -0 --separate-stderr lc-heal -q -t 20 dev
	assert_json '.state == "ready" and .vllm.env.NCCL_P2P_DISABLE == "1" and (.heal | length) == 1'
}

@test "lc-heal: port_in_use removes the stale container, then restarts" {
	session
	fail_with "$OWN/port_in_use-startup-then-bind.log" stopped
	run -0 --separate-stderr lc-heal -q -t 20 dev
	assert_json '.state == "ready" and .heal[0].kind == "stop_container" and .heal[0].from == .heal[0].to'
	vm_calls | grep -q '^docker rm -f vllm'
}

@test "lc-heal: model_access is failed with a clear message, nothing restarted" {
	session
	fail_with "$OWN/model_access-gated-v1.log" never
	run -1 --separate-stderr lc-heal -q dev
	assert_json '.state == "failed" and .error.code == "no_fix" and .error.tool == "lc-heal"'
	assert_json '.error.message | test("HF_TOKEN") and test("licence")'
	assert_json '.heal == [.heal[0]] and .heal[0].result == "no_fix" and .heal[0].diagnosis == "model_access"'
	assert_json '.diagnosis.facts.model == "meta-llama/Llama-3.1-8B-Instruct"'
	[[ $stderr == *"lc-heal: dev: no automatic fix: the model cannot be downloaded"* ]]
	refute_call '^systemctl restart'
	jq -e '.state == "failed" and .error.code == "no_fix"' "$STATE/sessions/dev.json"
}

@test "lc-heal: oom_load that nothing fixes ends heal_exhausted after 3 rounds" {
	session
	fail_with "$OWN/oom_load-torch-weights.log" never
	run -1 --separate-stderr lc-heal -q -t 20 dev
	assert_json '.state == "failed" and .error.code == "heal_exhausted"'
	assert_json '[.heal[].rung] == ["lower_utilization", "enforce_eager", "max_model_len"]'
	assert_json '[.heal[].result] == ["failed", "failed", "failed"]'
	assert_json '.error.message | test("after 3 rounds")'
	[[ $(vm_calls | grep -c "^systemctl restart $UNIT") == 3 ]]
}

@test "lc-heal -r 1: one round only" {
	session
	fail_with "$OWN/oom_load-torch-weights.log" never
	run -1 --separate-stderr lc-heal -q -r 1 -t 20 dev
	assert_json '.error.code == "heal_exhausted" and (.heal | length) == 1'
}

@test "lc-heal -t: a vLLM that never answers /health times the round out" {
	session
	fail_with "$OWN/oom_load-torch-weights.log" never
	vm_set unit_state_after_restart activating
	SECONDS=0
	run -1 --separate-stderr lc-heal -q -r 1 -t 2 dev
	((SECONDS < 15))
	assert_json '.error.code == "heal_exhausted" and .heal[0].result == "failed"'
}

@test "lc-heal -n: shows the fix, changes nothing" {
	session
	fail_with "$OWN/kv_cache-v0-compose.log" never
	run -0 --separate-stderr lc-heal -q -n dev
	assert_json '.heal[0].result == "dry_run" and .heal[0].to.gpu_memory_utilization == 0.95'
	assert_json '.vllm.gpu_memory_utilization == 0.9 and .state == "failed"'
	[[ ! -e $VM_ROOT/etc/linode-coder/vllm.env ]]
	refute_call '^systemctl restart'
	jq -e '.heal == []' "$STATE/sessions/dev.json"
}

@test "lc-heal -f: a healthy VM passes through untouched, its log unread" {
	session '.state = "ready"'
	vllm_ctl set '{"healthy": true}' >/dev/null
	vm_set "unit_state_$UNIT" active
	vm_session_json dev '.owner = "bo"' >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr lc-heal -f <"$BATS_TEST_TMPDIR/in"
	diff <(jq -S . <<<"$output") <(jq -S . "$BATS_TEST_TMPDIR/in")
	refute_call '^docker logs'
}

@test "lc-heal -f: a record made ready less than a minute ago passes through without a look; an older one is looked at" {
	session '.state = "ready"'
	vllm_ctl set '{"healthy": true}' >/dev/null
	vm_set "unit_state_$UNIT" active
	now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	vm_session_json dev ".ready_at = \"$now\"" >"$BATS_TEST_TMPDIR/in"
	logins() { grep -c 'Accepted publickey' "$VM_DIR/sshd.log" || true; }
	n=$(logins)
	run -0 --separate-stderr lc-heal -f <"$BATS_TEST_TMPDIR/in"
	diff <(jq -S . <<<"$output") <(jq -S . "$BATS_TEST_TMPDIR/in")
	[[ $(logins) == "$n" ]] || fail "lc-heal logged in to the VM"
	old=$(date -u -d '-2 min' +%Y-%m-%dT%H:%M:%SZ)
	vm_session_json dev ".ready_at = \"$old\"" >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr lc-heal -f <"$BATS_TEST_TMPDIR/in"
	(( $(logins) > n ))
}

@test "lc-heal: without -f a healthy VM gets a healthy diagnosis" {
	session '.state = "ready"'
	vllm_ctl set '{"healthy": true}' >/dev/null
	vm_set "unit_state_$UNIT" active
	vm_set docker_log "$OWN/healthy-v0-error-in-info.log"
	run -0 --separate-stderr lc-heal dev
	assert_json '.diagnosis.category == "healthy" and .heal == [] and .state == "ready"'
}

@test "lc-heal: a VM still starting (no failure yet) is left alone" {
	session '.state = "provisioning"'
	vm_set "unit_state_$UNIT" active
	vm_set docker_log "$OWN/unknown-still-loading.log"
	run -0 --separate-stderr lc-heal dev
	assert_json '.state == "provisioning" and .diagnosis.category == "unknown" and .heal == []'
	refute_call '^systemctl restart'
}

@test "lc-heal: a wrong host key is an ssh error on the record, exit 1" {
	session
	ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/other" </dev/null
	printf '[127.0.0.1]:%s %s\n' "$VM_PORT" "$(cut -d' ' -f1,2 "$BATS_TEST_TMPDIR/other.pub")" >"$BATS_TEST_TMPDIR/kh"
	vm_session_json dev --arg kh "$BATS_TEST_TMPDIR/kh" '.ssh.known_hosts = $kh' >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr lc-heal <"$BATS_TEST_TMPDIR/in"
	assert_json '.error.code == "ssh_hostkey" and .name == "dev"'
}

@test "lc-heal: an unknown session name is a not_found error record" {
	run -1 --separate-stderr lc-heal nope
	assert_json '.name == "nope" and (.error.code | test("not_found"))'
}

@test "lc-heal: destroyed sessions and upstream error records pass through" {
	run -1 --separate-stderr lc-heal <<<'{"name":"old","state":"destroyed","owner":"ana"}
{"error":{"code":"not_object","message":"x","tool":"lc-create"}}'
	[[ $(json_count) == 2 ]]
	assert_json_any '.name == "old" and .owner == "ana" and (has("diagnosis") | not)'
}

@test "lc-heal -f after lc-create --wait: a start failure is healed and its error removed" {
	session
	fail_with "$OWN/dtype-t4-v0.log" "'--dtype' 'half'"
	vm_session_json dev '.state = "failed" | .failed_stage = "health" | .error = {"code": "ready_health", "message": "health: vLLM did not answer", "tool": "lc-create"}' >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr lc-heal -q -f -t 20 <"$BATS_TEST_TMPDIR/in"
	assert_json '.state == "ready" and (has("error") | not) and .vllm.dtype == "half" and .failed_stage == null'
}

@test "lc-heal: an upstream error stays when there is no VM, or it cannot be reached" {
	run -1 --separate-stderr lc-heal -f <<<'{"name":"ghost","error":{"code":"http_status","message":"HTTP 500","tool":"lc-create"}}'
	assert_json '.error.code == "http_status" and .error.tool == "lc-create"'
	vm_session_json dev '.ssh.port = 1 | .error = {"code": "ssh_timeout", "message": "no ssh", "tool": "lc-create"}' >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr lc-heal -f <"$BATS_TEST_TMPDIR/in"
	assert_json '.error.code == "ssh_timeout" and .error.tool == "lc-create" and (has("diagnosis") | not)'
}

@test "lc-heal: a failure it does not know is failed with the evidence, nothing restarted" {
	session
	fail_with "$OWN/unknown-other-error.log" never
	run -1 --separate-stderr lc-heal -q dev
	assert_json '.state == "failed" and .error.code == "no_fix" and .diagnosis.category == "unknown"'
	assert_json '.diagnosis.evidence[-1] | startswith("ValueError: max_num_batched_tokens")'
	refute_call '^systemctl restart'
}

@test "lc-heal: no container left: the unit's journal is diagnosed (driver, no fix)" {
	session
	vm_set docker_state absent
	vm_set "journal_$UNIT" "$OWN/driver-docker-gpu.log"
	run -1 --separate-stderr lc-heal -q dev
	assert_json '.state == "failed" and .diagnosis.category == "driver" and .error.code == "no_fix"'
	assert_json '.error.message | test("nvidia-smi")'
	vm_calls | grep -q "^journalctl -u $UNIT"
}
