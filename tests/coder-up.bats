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

# A test that failed before putting the VM back leaves it to this
# (vm_ssh_connection, below).
teardown() {
	stop_up
	if [[ -f $BATS_TEST_TMPDIR/sshd_config ]]; then
		vm_ssh_connection_restore
	fi
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

@test "lc-create --wait: the phase driver_failed fails at once with ready_gpu, naming the driver and the VM's reason" {
	mkdir -p "$VM_ROOT/var/lib/linode-coder"
	echo "2026-12-02T10:00:00Z driver_failed (no answer 180s into the boot: NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.)" \
		>"$VM_ROOT/var/lib/linode-coder/phase.log"
	lc-cloudinit -N dev >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created packages driver driver_failed &
	SECONDS=0
	run -1 --separate-stderr lc-create --wait -t 120 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "failed" and .error.code == "ready_gpu" and .phase == "driver_failed"'
	jq -e '.error.message | contains("the NVIDIA driver failed on the VM: no answer 180s into the boot: NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.: ")' <<<"$output"
	[[ $stderr == *"cloud-init: phase driver_failed"* ]]
	# Not the cloud-init stage's 30 minutes, nor the test's 120 s.
	((SECONDS < 30))
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

@test "coder up --cache: one volume made and attached before the readiness wait; the next session in the region takes it" {
	vm_boot_when_created &
	run -0 --separate-stderr coder up dev --cache --region us-ord
	wait
	assert_json '.state == "ready" and .volume == "lc-cache-us-ord" and .cache_volume.state == "new"'
	[[ $stderr == *"cache volume lc-cache-us-ord attached (new, "* ]]
	# POST /volumes and its ready volume came before the instance's first
	# poll of the readiness wait.
	api_requests | jq -se '
		(map(.method + " " + .path) | index("POST /v4/volumes")) as $v |
		(map(.method + " " + .path) | map(test("^GET /v4/linode/instances/[0-9]+$")) | index(true)) as $w |
		$v != null and $w != null and $v < $w'
	api_state | jq -e --argjson id "$(jq .linode_id "$STATE/sessions/dev.json")" \
		'.volumes | length == 1 and .[0].linode_id == $id and .[0].io_ready'
	run -0 --separate-stderr coder down dev
	[[ $stderr == *"still costs \$"*"/month"* ]]
	vm_halt
	vm_boot_when_created &
	run -0 --separate-stderr coder up two --cache --region us-ord
	wait
	assert_json '.state == "ready" and .cache_volume.state == "kept"'
	api_saw 'POST /v4/volumes' 1
	api_state | jq -e --argjson id "$(jq .linode_id "$STATE/sessions/two.json")" \
		'.volumes | length == 1 and .[0].linode_id == $id'
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

# fw_inbound: the first firewall's inbound rules, as the fake API holds them.
fw_inbound() {
	api_state | jq -c '.firewalls[0].rules.inbound'
}

# vm_ssh_connection VALUE: from the VM's next (re)start on, commands run
# with SSH_CONNECTION=VALUE, as if the connection came from elsewhere.
# vm_ssh_connection_restore puts the VM back as it was.
vm_ssh_connection() {
	cp "$VM_DIR/sshd_config" "$BATS_TEST_TMPDIR/sshd_config"
	printf 'ForceCommand env SSH_CONNECTION=%q /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n' \
		"$1" >>"$VM_DIR/sshd_config"
}

vm_ssh_connection_restore() {
	mv "$BATS_TEST_TMPDIR/sshd_config" "$VM_DIR/sshd_config"
	vm_restart_sshd
}

# public_seen_from NAME VALUE: run (bats) lc-create --wait --public for a
# new session NAME through the secrets stage, the VM seeing SSH_CONNECTION
# as VALUE.
public_seen_from() {
	vm_ssh_connection "$2"
	lc-cloudinit -N "$1" --public >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	run --separate-stderr lc-create --wait --public -u secrets -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	vm_ssh_connection_restore
}

@test "lc-create --wait --public: port 8000 opens to the address the VM sees us at, before ready; the SSH rule stays" {
	lc-cloudinit -N dev --public >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	run -0 --separate-stderr lc-create --wait --public -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "ready" and .public == true and .public_allow == "127.0.0.1/32"'
	jq -e '.public_allow == "127.0.0.1/32" and .state == "ready"' "$STATE/sessions/dev.json"
	# sshd saw the connection come from 127.0.0.1: exactly that, and the
	# SSH rule as it was made.
	fw_inbound | jq -e 'length == 2
		and (map(select(.ports == "22")) == [{protocol: "TCP", ports: "22", action: "ACCEPT",
			addresses: {ipv4: ["0.0.0.0/0"], ipv6: ["::/0"]}, label: "lc-ssh"}])
		and (map(select(.ports == "8000")) == [{protocol: "TCP", ports: "8000", action: "ACCEPT",
			addresses: {ipv4: ["127.0.0.1/32"]}, label: "lc-vllm"}])'
	api_state | jq -e '.firewalls[0].rules.inbound_policy == "DROP" and .firewalls[0].rules.version == 2'
	api_saw "PUT /v4/networking/firewalls/$(jq -r .firewall_id <<<"$output")/rules" 1
	# Said on stderr, after the SSH stage and before the rest.
	[[ $stderr == *"stage 1/6 ssh: started"*"dev: public: port 8000 (vLLM, behind its API key) is open to 127.0.0.1/32"*"stage 2/6 secrets: started"* ]]
	grep -qx "OPENAI_API_BASE=http://127.0.0.1:$VLLM_PORT/v1" "$STATE/dev.env"
}

@test "lc-create --wait --public --allow: the given address wins; nothing is read or changed" {
	lc-cloudinit -N dev --public >"$BATS_TEST_TMPDIR/spec"
	vm_boot_when_created &
	run -0 --separate-stderr lc-create --wait --public --allow 198.51.100.9 -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "ready" and .public_allow == "198.51.100.9"'
	fw_inbound | jq -e 'map(select(.ports == "8000") | .addresses) == [{ipv4: ["198.51.100.9/32"]}]
		and any(.[]; .ports == "22" and .label == "lc-ssh")'
	api_saw 'PUT /v4/networking/firewalls/*' 0
	[[ $stderr == *"is open to 198.51.100.9"* && $stderr != *"127.0.0.1/32"* ]]
}

@test "lc-create --wait --public: no address from the VM fails the ssh stage, port 8000 stays closed" {
	# The VM's sshd hands the command an SSH_CONNECTION that names no address.
	public_seen_from dev unknown
	[[ $status == 1 ]]
	assert_json '.state == "failed" and .failed_stage == "ssh" and .error.code == "ready_ssh" and .public_allow == null'
	[[ $stderr == *"dev: ssh: public, but the VM does not tell which address this machine connects from (SSH_CONNECTION 'unknown'), so port 8000 stays closed: give --allow ADDRESS"* ]]
	fw_inbound | jq -e 'map(.ports) == ["22"]'
	api_saw 'PUT /v4/networking/firewalls/*' 0
	[[ ! -e $STATE/dev.env ]]
	jq -e '.state == "failed" and .public_allow == null' "$STATE/sessions/dev.json"
}

@test "coder up --public: a firewall rule for exactly this machine's address, the SSH rule intact" {
	vm_boot_when_created &
	run -0 --separate-stderr coder up dev --public
	wait
	assert_json '.state == "ready" and .public == true and .public_allow == "127.0.0.1/32"'
	fw_inbound | jq -e 'map(select(.ports == "8000") | .addresses) == [{ipv4: ["127.0.0.1/32"]}]
		and any(.[]; .ports == "22" and .addresses == {ipv4: ["0.0.0.0/0"], ipv6: ["::/0"]})'
	[[ $stderr == *"port 8000 (vLLM, behind its API key) is open to 127.0.0.1/32"*"dev is ready"* ]]
	jq -e '.public_allow == "127.0.0.1/32"' "$STATE/sessions/dev.json"
}

@test "coder up --public --allow: the given address wins over the one the VM sees" {
	vm_boot_when_created &
	run -0 --separate-stderr coder up dev2 --public --allow 2001:db8::7
	wait
	assert_json '.state == "ready" and .public_allow == "2001:db8::7"'
	fw_inbound | jq -e 'map(select(.ports == "8000") | .addresses) == [{ipv6: ["2001:db8::7/128"]}]'
	api_saw 'PUT /v4/networking/firewalls/*' 0
	jq -e '.public_allow == "2001:db8::7"' "$STATE/sessions/dev2.json"
}

@test "coder up: --allow without --public is a usage error" {
	run -2 --separate-stderr coder up dev --allow 203.0.113.7
	[[ $stderr == *"--allow goes with --public"* ]]
	[[ -z $output ]]
	api_saw 'POST /v4/linode/instances' 0
}

@test "coder up --public: no address from the VM: not ready, exit 1, port 8000 closed" {
	vm_ssh_connection ''
	vm_boot_when_created &
	run --separate-stderr coder up dev --public
	wait
	vm_ssh_connection_restore
	[[ $status == 1 ]]
	[[ $stderr == *"dev: ssh: public, but the VM does not tell which address this machine connects from (SSH_CONNECTION ''), so port 8000 stays closed"* ]]
	[[ $stderr == *"not ready"* && $stderr != *"dev is ready"* ]]
	fw_inbound | jq -e 'map(.ports) == ["22"]'
	jq -e '.state == "failed" and .failed_stage == "ssh" and .public_allow == null' "$STATE/sessions/dev.json"
}

@test "lc-create --wait --public: a client seen over IPv6 is admitted as its /128; an IPv4-mapped one as its /32" {
	public_seen_from dev '2001:DB8:0:0::5 50022 2001:db8::1 22'
	[[ $status == 0 ]]
	assert_json '.public_allow == "2001:db8::5/128"'
	fw_inbound | jq -e 'map(select(.ports == "8000") | .addresses) == [{ipv6: ["2001:db8::5/128"]}]
		and any(.[]; .ports == "22" and .label == "lc-ssh")'
	[[ $stderr == *"is open to 2001:db8::5/128"* ]]

	api_ctl reset '{}'
	vm_halt
	public_seen_from dev2 '::ffff:192.0.2.44 50022 ::ffff:127.0.0.1 22'
	[[ $status == 0 ]]
	assert_json '.public_allow == "192.0.2.44/32"'
	fw_inbound | jq -e 'map(select(.ports == "8000") | .addresses) == [{ipv4: ["192.0.2.44/32"]}]'
}

@test "coder up -n --public --allow: the plan's firewall admits that address to port 8000" {
	run -0 --separate-stderr coder up -n dev --public --allow 203.0.113.7
	head -n1 <<<"$output" | jq -e '.dry_run and .public
		and (.request.firewall.rules.inbound | map(select(.ports == "8000") | .addresses)) == [{ipv4: ["203.0.113.7/32"]}]'
	[[ $stderr == *"dev: public: port 8000 (vLLM, behind its API key) would be open to 203.0.113.7/32"* ]]
	[[ $(api_count 'POST /v4/*') == 0 && $(api_count 'PUT /v4/*') == 0 ]]
}
