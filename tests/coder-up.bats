#!/usr/bin/env bats
# coder up end to end, and stopped by SIGTERM and SIGHUP: the fake Linode
# API, a real sshd that boots with the session's pinned host key, stand-in
# nvidia-smi/systemctl, a fake vLLM.
load helpers/common
load helpers/boot

setup_file() {
	start_api_server
	start_vm up
	start_vllm
	export LC_SSH_PORT=$VM_PORT LC_VLLM_PORT=$VLLM_PORT
}

teardown_file() {
	stop_vllm
	stop_vm up
	stop_api_server
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset '{}'
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2}'
	vm_reset
	vm_set nvidia_smi_query "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv"
	vllm_ctl set '{"healthy":true,"fail_completions":false}'
	vm_halt
}

@test "lc-create --wait: every readiness stage, then ready with TTFT and tokens/s" {
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	run -0 --separate-stderr lc-create --wait -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "ready" and (.ready_at | type) == "string"'
	assert_json '.ttft_s > 0 and .tokens_per_s > 0'
	local s
	for s in ssh secrets cloud-init gpu health completion; do
		[[ $stderr == *"stage "?"/6 $s: started"* ]] || fail "no start line for $s"
		[[ $stderr == *"stage "?"/6 $s: done"* ]] || fail "no end line for $s"
	done
	# The ledger has it, with a ready event.
	jq -e '.state == "ready"' "$STATE/sessions/dev.json"
	jq -se 'any(.[]; .event == "ready" and .name == "dev")' "$STATE/ledger.jsonl"
	# Secrets: on the VM in a 0600 file, locally in the env file, never in
	# the record.
	local key
	key=$(sed -n 's/^OPENAI_API_KEY=//p' "$STATE/dev.env")
	[[ ${#key} -ge 32 ]]
	[[ $(stat -c %a "$STATE/dev.env") == 600 ]]
	grep -qx "VLLM_API_KEY=$key" "$VM_ROOT/etc/linode-coder/secrets.env"
	[[ $(stat -c %a "$VM_ROOT/etc/linode-coder/secrets.env") == 600 ]]
	if grep -q "$key" "$STATE/sessions/dev.json"; then
		fail "the API key is in the session record"
	fi
	[[ $output != *"$key"* && $stderr != *"$key"* ]]
	grep -qx 'AIDER_MODEL=openai/coder' "$STATE/dev.env"
}

@test "lc-create --wait: a key the VM refuses fails the ssh stage at once with ssh_auth" {
	# A key of our own that the VM's authorized_keys does not hold.
	ssh-keygen -q -t ed25519 -N '' -C other -f "$BATS_TEST_TMPDIR/other_key" </dev/null
	export LC_SSH_KEY=$BATS_TEST_TMPDIR/other_key
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	local t0=$SECONDS
	run -1 --separate-stderr lc-create --wait -t 120 <"$BATS_TEST_TMPDIR/spec"
	local took=$((SECONDS - t0))
	wait
	assert_json '.state == "failed" and .error.code == "ssh_auth" and .failed_stage == "ssh"'
	jq -e --arg k "$LC_SSH_KEY" '.error.message | contains($k) and contains("coder ssh dev")' <<<"$output"
	[[ $stderr == *"dev: ssh: "*"did not accept key $LC_SSH_KEY"* ]]
	# The stage allows 10 minutes; a refused key must not wait them out.
	((took < 10)) || fail "took ${took}s"
	# sshd really saw the key and refused it.
	grep -q "Connection closed by authenticating user\|Failed publickey\|authenticating user" "$VM_DIR/sshd.log"
	jq -e '.state == "failed" and .failed_stage == "ssh"' "$STATE/sessions/dev.json"
}

@test "lc-create --wait: a cloud-init error fails ready_cloudinit and keeps the session" {
	vm_set cloud_init_status 'status: error'
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created packages &
	run -1 --separate-stderr lc-create --wait -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "failed" and .error.code == "ready_cloudinit" and .failed_stage == "cloud-init"'
	[[ $stderr == *"cloud-init failed on the VM"* ]]
	jq -e '.state == "failed"' "$STATE/sessions/dev.json"
}

@test "lc-create --wait: no healthy GPU fails ready_gpu within its limit" {
	vm_set nvidia_smi_rc 9
	vm_set_file nvidia_smi_query "$LC_FIXTURES/nvidia-smi/07-error-err-no-driver-gcp.txt"
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	run -1 --separate-stderr lc-create --wait -t 12 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "failed" and (.error.code == "ready_gpu")'
}

@test "lc-create --wait: a vLLM unit that failed ends the health stage at once" {
	vm_set unit_state failed
	vllm_ctl set '{"healthy":false}'
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	SECONDS=0
	run -1 --separate-stderr lc-create --wait -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.error.code == "ready_health" and .failed_stage == "health"'
	[[ $stderr == *"the vLLM unit failed to start"* ]]
	((SECONDS < 30))
}

@test "lc-create --wait: a model that does not answer fails ready_completion" {
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	# /health answers, but the model errors on every request.
	vllm_ctl set '{"healthy":true,"fail_completions":true}'
	run -1 --separate-stderr lc-create --wait -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.error.code == "ready_completion"'
}

@test "lc-create --wait: a VM with another host key is refused at the ssh stage" {
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	# The VM comes up with its own host key, not the pinned one.
	vm_restart_sshd
	run -1 --separate-stderr lc-create --wait -t 30 <"$BATS_TEST_TMPDIR/spec"
	assert_json '.error.code == "ready_ssh"'
	[[ $stderr == *"host key"* ]]
	[[ -z $(vm_calls) ]]
}

@test "coder up: the whole pipeline reaches ready and says how to use it" {
	# A stand-in crontab with no table: the user's real one is not read.
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	printf '#!/bin/sh\necho "no crontab for $(id -un)" >&2\nexit 1\n' >"$BATS_TEST_TMPDIR/bin/crontab"
	chmod +x "$BATS_TEST_TMPDIR/bin/crontab"
	vm_boot_when_created &
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 --separate-stderr coder up dev
	wait
	assert_json '.name == "dev" and .state == "ready" and .ttft_s > 0 and .tokens_per_s > 0'
	[[ $stderr == *"dev is ready"*"coder aider dev"*"coder down dev"* ]]
	# No cron guard in this test's world: up says so.
	[[ $stderr == *"no cron job runs lc-watch"* ]]
	[[ -f $STATE/dev.env ]]
	run -0 coder status --json dev
	assert_json '.state == "ready" and (.ready_at | type) == "string"'
}

@test "coder up: a start that fails is healed by lc-heal in the same pipeline" {
	# vLLM dies with a KV-cache error until vllm.env asks for more memory.
	vllm_ctl set '{"healthy":false}'
	vm_set unit_state failed
	vm_kv_cache_until_more_memory
	vm_boot_when_created &
	run --separate-stderr coder up dev
	wait
	[[ $status == 0 ]]
	assert_json '.state == "ready" and (.heal | length) >= 1 and .heal[0].diagnosis == "kv_cache"'
	[[ $stderr == *"kv_cache"* ]]
	# lc-heal waited for /health, then for a real completion.
	[[ $stderr == *"checking that it answers a real completion"*"dev is ready"* ]]
	jq -e '.state == "ready" and .ttft_s > 0 and .tokens_per_s > 0' "$STATE/sessions/dev.json"
}

@test "coder up: healed to /health but no completion answers: not ready, exit 1, the VM kept" {
	vllm_ctl set '{"healthy":false}'
	vm_set unit_state failed
	vm_set_file docker_log "$LC_FIXTURES/vllm-logs/01-kv_cache.log"
	# The restart brings /health back, but every completion fails.
	vm_set_hook on_restart <<-EOT
	#!/bin/bash
	echo active >"$VM_DIR/state/unit_state"
	curl -fsS -X POST -d '{"healthy":true,"fail_completions":true}' "$VLLM_URL/__ctl/set" >/dev/null
	EOT
	vm_boot_when_created &
	run -1 --separate-stderr coder up dev
	wait
	[[ $stderr == *"the model did not answer"* && $stderr == *"not ready"*"coder down dev"* ]]
	[[ $stderr != *"dev is ready"* ]]
	jq -e '.state == "failed" and .failed_stage == "completion"' "$STATE/sessions/dev.json"
	api_state | jq -e '.instances | length == 1'
}

teardown() {
	stop_up
}

# up_stopped_waiting SIG: coder up waits for a VM that never boots; once
# its readiness wait has begun, SIG goes to coder alone (as kill(1) sends
# it, or a shell passes on a closed terminal's hang-up), not to the tools.
# Within 10 s the VM and its firewall must be gone from the account. Sets
# UP_RC, coder's exit status.
up_stopped_waiting() {
	start_up
	wait_until 60 'grep -q "ssh: started" "$BATS_TEST_TMPDIR/err"'
	jq -e '.state == "provisioning" or .state == "booting"' "$STATE/sessions/dev.json"
	api_state | jq -e '(.instances | length) == 1 and (.firewalls | length) == 1'
	pgrep -g "$UP_PID" -x lc-create >/dev/null
	kill "-$1" "$UP_PID"
	wait_until 10 api_empty
	UP_RC=0
	wait "$UP_PID" || UP_RC=$?
}

@test "coder up: SIGTERM during the readiness wait deletes the VM and its firewall, exit 143" {
	up_stopped_waiting TERM
	[[ $UP_RC == 143 ]]
	grep -q "dev: interrupted (terminated)" "$BATS_TEST_TMPDIR/err"
	api_saw 'DELETE /v4/linode/instances/*' 1
	[[ ! -e $STATE/sessions/dev.json ]]
	jq -e '.state == "destroyed"' "$STATE"/archive/dev-*.json
	# lc-create got the signal too: nothing of coder's is left waiting.
	run ! pgrep -g "$UP_PID"
}

@test "coder up: SIGHUP during the readiness wait deletes the VM and its firewall, exit 129" {
	up_stopped_waiting HUP
	[[ $UP_RC == 129 ]]
	grep -q "dev: interrupted (hang-up)" "$BATS_TEST_TMPDIR/err"
	[[ ! -e $STATE/sessions/dev.json ]]
	run ! pgrep -g "$UP_PID"
}

@test "coder up: the terminal closing during the clean-up after SIGTERM does not stop it" {
	local rc=0
	# lc-destroy's DELETE hangs for a while, long enough for the hang-up.
	api_ctl stall '{"seconds":5,"match":"DELETE /linode/instances"}'
	start_up
	wait_until 60 'grep -q "ssh: started" "$BATS_TEST_TMPDIR/err"'
	kill -TERM "$UP_PID"
	wait_until 30 'api_state | jq -e ".faults.stall == 0" >/dev/null'
	# SIGHUP to the whole process group, lc-destroy included.
	kill -HUP -- "-$UP_PID"
	wait "$UP_PID" || rc=$?
	[[ $rc == 143 ]]
	api_empty
	[[ ! -e $STATE/sessions/dev.json ]]
	jq -e '.state == "destroyed"' "$STATE"/archive/dev-*.json
}

@test "coder up: SIGTERM once the session is ready leaves it running, exit 143" {
	local rc=0
	vm_boot_when_created 3>&- &
	start_up
	# coder stops (its tools run on) until the ready record has come
	# through the pipeline; then SIGTERM, and on.
	wait_until 60 'grep -q "ssh: started" "$BATS_TEST_TMPDIR/err"'
	kill -STOP "$UP_PID"
	wait_until 60 'jq -se "any(.[]; .state == \"ready\")" "$BATS_TEST_TMPDIR/out" >/dev/null'
	kill -TERM "$UP_PID"
	kill -CONT "$UP_PID"
	wait "$UP_PID" || rc=$?
	wait
	[[ $rc == 143 ]]
	grep -q "dev: interrupted; the session is ready and stays" "$BATS_TEST_TMPDIR/err"
	jq -e '.state == "ready"' "$STATE/sessions/dev.json"
	api_saw 'DELETE /v4/linode/instances/*' 0
	api_state | jq -e '.instances | length == 1'
}

@test "coder up: a failure before any VM says nothing bills, not 'coder down'" {
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	LC_MAX_HOURLY=0.01 run --separate-stderr coder up dev
	((status != 0)) || fail "coder up succeeded over the price limit"
	[[ $stderr == *"LC_MAX_HOURLY"* ]]
	[[ $stderr == *"stopped before any VM was made"*"nothing bills"* ]]
	[[ $stderr != *"coder down"* ]]
	api_saw 'POST /v4/linode/instances' 0
}
