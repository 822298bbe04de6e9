#!/usr/bin/env bats
# The VM for real: `coder up` against the fake Linode API, and the user data
# it sent booted under real systemd and cloud-init (tests/helpers/vmboot.bash)
# with the driver installed by provision (a reboot). lc-create pushes the
# secrets and the fail-safe over SSH into the container.
load helpers/common
load helpers/vmboot

setup_file() {
	vmb_prepare || return 1
	[[ -z ${VMB_SKIP:-} ]] || return 0
	vmb_new main reboot || return 1
	export API_NETNS=$VMB_NETNS
	start_api_server
	export HOME=$BATS_FILE_TMPDIR/home XDG_CONFIG_HOME=$BATS_FILE_TMPDIR/home/.config
	export XDG_STATE_HOME=$BATS_FILE_TMPDIR/home/.local/state
	vmb_up main
}

teardown_file() {
	stop_api_server
	vmb_stop
}

setup() {
	[[ -z ${VMB_SKIP:-} ]] || skip "$VMB_SKIP"
	common_setup
	export HOME=$BATS_FILE_TMPDIR/home XDG_CONFIG_HOME=$BATS_FILE_TMPDIR/home/.config
	export XDG_STATE_HOME=$BATS_FILE_TMPDIR/home/.local/state
	export STATE=$XDG_STATE_HOME/linode-coder
}

# deletes: DELETE requests for instances, so far.
deletes() {
	api_count 'DELETE /v4/linode/instances/*'
}

@test "vm boot: coder up is ready after exactly one reboot, the driver's" {
	cat "$VMB_DIR/up.err" >&2
	[[ $(cat "$VMB_DIR/up.rc") == 0 ]]
	jq -e 'select(.name == "main") | .state == "ready"' "$VMB_DIR/up.out"
	# nspawn ends with 133 on a reboot: one, then the running boot.
	[[ $(paste -sd ' ' "$VMB_DIR/boots") == 133 ]]
	grep -q "reboot-needed\|rebooting once" "$VMB_ROOT/var/log/cloud-init-output.log" ||
		grep -q "reboot" "$VMB_ROOT/var/log/cloud-init.log"
}

@test "vm boot: cloud-init is done, no unit failed, every unit verifies" {
	run -0 vmb_sh cloud-init status
	[[ $output == *"status: done"* ]]
	vmb_no_failed_units
	run -0 vmb_sh sh -c 'cd /etc/systemd/system && systemd-analyze verify linode-coder-*.service linode-coder-*.timer 2>&1'
	[[ -z $output ]]
	run -0 vmb_sh systemctl is-active linode-coder-vllm.service linode-coder-failsafe.timer
}

@test "vm boot: the phases come in order, each once" {
	# coder up may return before wait-serving's next poll marks it.
	wait_until 60 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]'
	[[ $(vmb_phases) == "packages driver reboot pull load serving" ]]
	[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]
}

@test "vm boot: vLLM listens on the VM's loopback only and answers with the key" {
	run -0 vmb_sh ss -Hltn 'sport = :8000'
	[[ $output == *"127.0.0.1:8000"* && $output != *"0.0.0.0:8000"* && $output != *"*:8000"* ]]
	key=$(jq -r 'select(.name == "main") | .api_key // empty' "$VMB_DIR/up.out")
	[[ -n $key ]] || key=$(sed -n 's/^VLLM_API_KEY=//p' "$VMB_ROOT/etc/linode-coder/secrets.env")
	body='{"model":"coder","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
	run -0 vmb_net curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary "$body" http://127.0.0.1:8000/v1/chat/completions
	[[ $output == 401 ]]
	run -0 vmb_net curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
		--data-binary "$body" http://127.0.0.1:8000/v1/chat/completions
	jq -e '.choices[0].message.content | length > 0' <<<"$output"
}

@test "vm boot: a cloud-init clean and a reboot leave the same state" {
	before=$(cat "$VMB_ROOT/var/lib/linode-coder/phase")
	run -0 vmb_sh cloud-init clean --logs
	vmb_sh systemctl reboot || true
	wait_until 120 '[[ $(paste -sd " " "$VMB_DIR/boots") == "133 133" ]]'
	wait_until 300 vmb_booted
	wait_until 300 '[[ $(vmb_sh cloud-init status 2>/dev/null) == *"status: done"* ]]'
	wait_until 120 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]'
	[[ $before == serving ]]
	# No second driver reboot: the driver answers after the clean.
	sleep 5
	[[ $(paste -sd ' ' "$VMB_DIR/boots") == "133 133" ]]
	vmb_no_failed_units
	run -0 vmb_sh ss -Hltn 'sport = :8000'
	[[ $output == *"127.0.0.1:8000"* ]]
	[[ ! -e $VMB_ROOT/var/lib/linode-coder/reboot-needed ]]
}

@test "vm boot: idle past its limit, the fail-safe timer deletes the instance" {
	api_reset_log
	(( $(deletes) == 0 ))
	[[ -s $VMB_ROOT/etc/linode-coder/idle ]]
	# The clock is set while no pass runs: a pass that read the state
	# before the write would put its own back. The state left from before
	# the last reboot does not count: after it vLLM's token counters start
	# again, which the first pass rightly takes as activity. So: a pass of
	# our own that sees vLLM, then the clock says last activity two days
	# ago, then the timer again.
	vmb_sh systemctl stop linode-coder-failsafe.timer
	wait_until 60 '[[ $(vmb_sh systemctl is-active linode-coder-failsafe.service) != activ* ]]'
	rm -f "$VMB_ROOT/var/lib/linode-coder/failsafe.state"
	wait_until 120 'vmb_sh systemctl start linode-coder-failsafe.service &&
		[[ $(awk "{ print \$3 }" "$VMB_ROOT/var/lib/linode-coder/failsafe.state" 2>/dev/null) == 1 ]] ||
		{ sleep 2; false; }'
	tokens=$(awk '{ print $2 }' "$VMB_ROOT/var/lib/linode-coder/failsafe.state")
	echo "$(($(date +%s) - 172800)) $tokens 1" >"$VMB_ROOT/var/lib/linode-coder/failsafe.state"
	rm -f "$VMB_ROOT/etc/linode-coder/last_activity"
	vmb_sh systemctl start linode-coder-failsafe.timer
	wait_until 150 '(( $(deletes) >= 1 ))' || {
		cat "$VMB_ROOT/var/lib/linode-coder/failsafe.status" >&2
		vmb_sh journalctl -u linode-coder-failsafe.service --no-pager -o cat | tail -n 5 >&2
		return 1
	}
	(( $(deletes) == 1 ))
	jq -e '.decision == "idle"' "$VMB_ROOT/var/lib/linode-coder/failsafe.status"
	run -0 vmb_sh journalctl -u linode-coder-failsafe.service --no-pager -o cat
	[[ $output == *"deleting instance"* ]]
}

@test "vm boot: at a past deadline, the fail-safe timer deletes the instance" {
	api_reset_log
	rm -f "$VMB_ROOT/var/lib/linode-coder/failsafe.deleted" "$VMB_ROOT/etc/linode-coder/idle"
	date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ >"$VMB_ROOT/etc/linode-coder/deadline"
	wait_until 150 '(( $(deletes) >= 1 ))'
	jq -e '.decision == "deadline"' "$VMB_ROOT/var/lib/linode-coder/failsafe.status"
}
