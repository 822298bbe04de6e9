#!/usr/bin/env bats
# The README's walkthrough, as written, against the test servers: wizard,
# up, aider, status, down.
load helpers/common
load helpers/boot

setup_file() {
	start_api_server
	start_vm walk
	start_vllm
	export LC_SSH_PORT=$VM_PORT LC_VLLM_PORT=$VLLM_PORT
}

teardown_file() {
	stop_vllm
	stop_vm walk
	stop_api_server
}

@test "walkthrough: coder wizard, up, aider, status, down" {
	api_ctl reset '{}'
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2,"deleting_s":0.2}'
	vm_reset
	vm_set nvidia_smi_query "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv"
	vm_halt
	# The wizard: no Hugging Face token, the test VM's key (LC_SSH_KEY),
	# no cron.
	run -0 --separate-stderr coder wizard <<-EOT
	$TEST_TOKEN

	us-ord
	qwen-coder-7b
	30m
	8h
	$LC_SSH_KEY
	n
	EOT
	unset LINODE_TOKEN	# from here on, only what the wizard wrote
	vm_boot_when_created &
	run -0 --separate-stderr coder up dev --preset qwen-coder-7b
	wait
	assert_json '.state == "ready"'
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	printf '#!/bin/bash\necho "aider ran: $*" >"%s/aider.ran"\n' "$BATS_TEST_TMPDIR" \
		>"$BATS_TEST_TMPDIR/bin/aider"
	chmod +x "$BATS_TEST_TMPDIR/bin/aider"
	# up made dev the current session: no name needed from here.
	[[ $(readlink .aider-env) == "$STATE/dev.env" ]]
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 coder aider
	grep -q -- "--model openai/coder" "$BATS_TEST_TMPDIR/aider.ran"
	run -0 coder status --json
	assert_json '.name == "dev" and .state == "ready" and .cost_usd > 0'
	run -0 --separate-stderr coder down
	assert_json '.state == "destroyed" and .destroyed_at != null'
	api_state | jq -e '[.instances[] | select(.status != "deleting")] | length == 0'
	run -0 coder list
	[[ -z $output ]]
}
