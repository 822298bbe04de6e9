# lc-watch: acting safely (gone, mismatch, locks, two runs at once, heal),
# its input, its usage, and the cron line (helpers/watch).
# shellcheck disable=SC2016 # $names in single quotes are jq's, not the shell's
bats_require_minimum_version 1.5.0
load helpers/common
load helpers/watch

@test "lc-watch: a VM gone from the API is archived without a delete" {
	session dev '.linode_id = 12345' >/dev/null
	at 60
	run -0 lc-watch --destroy
	assert_json '.decision == "gone" and .action == "archived"'
	api_saw 'DELETE /v4/linode/instances/12345' 0
	[[ ! -e $STATE/sessions/dev.json ]]
	jq -e '.state == "destroyed"' "$STATE"/archive/dev-*.json
}

@test "lc-watch: refuses to delete an instance that does not carry our tags" {
	id=$(api_ctl instance '{"label": "lc-dev", "tags": ["prod"]}' | jq .id)
	put_session dev "$(vm_session_json dev --argjson id "$id" \
	    --arg t "$(date -u -d "@$T0" +%FT%TZ)" \
	    '.linode_id = $id | .created_at = $t | .ready_at = $t | .last_activity_at = $t')"
	at 4000
	run -1 --separate-stderr lc-watch --destroy
	assert_json '.decision == "idle" and .action == "refused" and .error.code == "mismatch"'
	[[ $stderr == *"lc-watch: dev: "* ]]
	api_saw "DELETE /v4/linode/instances/$id" 0
	[[ -e $STATE/sessions/dev.json ]]
}

@test "lc-watch: two concurrent --destroy runs delete each VM exactly once" {
	local ids=()
	for n in a1 a2 a3 a4 a5 a6; do ids+=("$(session "$n")"); done
	at 4000
	lc-watch --destroy -j 3 >"$BATS_TEST_TMPDIR/1.out" 2>&1 &
	p1=$!
	lc-watch --destroy -j 3 >"$BATS_TEST_TMPDIR/2.out" 2>&1 &
	p2=$!
	wait "$p1" "$p2"
	for id in "${ids[@]}"; do
		api_saw "DELETE /v4/linode/instances/$id" 1
	done
	run cat "$BATS_TEST_TMPDIR/1.out" "$BATS_TEST_TMPDIR/2.out"
	[[ $(grep -c '"action":"destroyed"' <<<"$output") -eq 6 ]]
	archived=("$STATE"/archive/*.json)
	[[ ${#archived[@]} -eq 6 ]]
}

@test "lc-watch: a session another run holds is kept and not touched" {
	id=$(session dev)
	mkdir -p "$STATE/locks"
	at 4000
	exec {fd}>"$STATE/locks/dev.lock"
	flock -x "$fd"
	run -0 lc-watch --destroy
	exec {fd}>&-
	assert_json '.decision == "keep" and .reason == "another lc-watch run holds it"'
	api_saw "DELETE /v4/linode/instances/$id" 0
}

@test "lc-watch: /health failing is unhealthy; --heal runs lc-heal --if-failed" {
	session dev >/dev/null
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat >"$BATS_TEST_TMPDIR/bin/lc-heal" <<-EOF
	#!/bin/sh
	echo "\$*" >"$BATS_TEST_TMPDIR/heal.args"
	jq -c '.heal += [{round: 1, diagnosis: "unknown", result: "fixed"}]'
	EOF
	chmod +x "$BATS_TEST_TMPDIR/bin/lc-heal"
	vllm_ctl set '{"healthy": false}' >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.decision == "unhealthy" and .action == "none" and (.reason | test("503|500"))'
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 lc-watch --heal
	assert_json '.decision == "unhealthy" and .action == "healed"'
	[[ $(<"$BATS_TEST_TMPDIR/heal.args") == "--if-failed" ]]
	jq -e '.heal[0].result == "fixed"' "$STATE/sessions/dev.json"
}

@test "lc-watch --heal: the real lc-heal brings back a vLLM that died of KV cache on the VM" {
	session dev >/dev/null
	vm_set unit_state failed
	vllm_ctl set '{"healthy": false}' >/dev/null
	vm_kv_cache_until_more_memory
	at 60
	run -0 --separate-stderr lc-watch --heal
	assert_json '.name == "dev" and .decision == "unhealthy" and .action == "healed"'
	[[ $stderr == *"lc-heal: dev: kv_cache: gpu_memory_utilization 0.90 -> 0.95 (round 1)"* ]]
	# The record: one round, diagnosed and fixed, ready again, at the
	# watch's clock (lc-heal ran under it).
	jq -e --argjson t $((T0 + 60)) '.state == "ready" and (.heal | length) == 1 and
	    .heal[0].diagnosis == "kv_cache" and .heal[0].result == "ready" and
	    .vllm.gpu_memory_utilization == 0.95 and
	    (.heal[0].at | fromdate - $t | . >= 0 and . < 60)' "$STATE/sessions/dev.json"
	# What the VM saw: the new setting, one restart, and it serves again.
	grep -qF "'--gpu-memory-utilization' '0.95'" "$VM_ROOT/etc/linode-coder/vllm.env"
	[[ $(vm_calls | grep -c '^systemctl restart linode-coder-vllm') == 1 ]]
	[[ $(vm_state unit_state) == active ]]
	curl -fsS "$VLLM_URL/health"
	# The next run finds it healthy and leaves it alone.
	at 120
	run -0 lc-watch --heal
	assert_json '.decision == "keep" and .action == "none"'
	[[ $(vm_calls | grep -c '^systemctl restart') == 1 ]]
}

@test "lc-watch --heal: what the real lc-heal cannot fix is failed, heal_failed, and the session says so" {
	session dev >/dev/null
	vm_set unit_state failed
	vm_set unit_state_after_restart failed
	vllm_ctl set '{"healthy": false}' >/dev/null
	vm_set_file docker_log "$LC_FIXTURES/vllm-logs/01-kv_cache.log"
	at 60
	run -1 --separate-stderr lc-watch --heal
	assert_json '.decision == "unhealthy" and .action == "failed" and .error.code == "heal_failed"'
	[[ $stderr == *"lc-heal: dev: nothing left to try for the KV cache"* ]]
	[[ $stderr == *"lc-watch: dev: lc-heal could not fix it (exit status 1)"* ]]
	jq -e '.state == "failed" and [.heal[].result] == ["failed", "failed", "no_fix"] and
	    [.heal[].rung] == ["raise_utilization", "max_model_len", null]' "$STATE/sessions/dev.json"
	[[ $(vm_calls | grep -c '^systemctl restart linode-coder-vllm') == 2 ]]
	api_saw 'DELETE /v4/linode/instances/*' 0
}

@test "lc-watch: vLLM down on a reachable VM is unhealthy, not unreachable" {
	session dev --argjson p "$(_vm_free_port)" \
	    '.endpoint = "http://127.0.0.1:\($p)/v1"' >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.decision == "unhealthy" and (.reason | test("does not answer"))'
	jq -e '.unreachable_since == null' "$STATE/sessions/dev.json"
}

@test "lc-watch: an empty pipe or /dev/null on stdin means the whole ledger" {
	session dev >/dev/null
	at 60
	run -0 lc-watch </dev/null
	assert_json '.name == "dev"'
	run -0 bash -c ': | lc-watch'
	assert_json '.name == "dev"'
}

@test "lc-watch: records on stdin; destroyed ones pass as gone; names as operands" {
	session dev >/dev/null
	at 60
	run -0 lc-watch <<<'{"name":"old","state":"destroyed","destroyed_at":"2026-01-01T00:00:00Z"}'
	assert_json '.name == "old" and .decision == "gone" and .action == "none"'
	run -0 lc-watch dev
	assert_json '.name == "dev" and .decision == "keep"'
	run -1 lc-watch <<<'{"name":"x","error":{"code":"e","message":"m","tool":"lc-create"}}'
	assert_json '.error.tool == "lc-create"'
	run -1 --separate-stderr lc-watch <<<'{"name":"Bad Name"}'
	assert_json '.error.code == "bad_name"'
}

@test "lc-watch: usage errors exit 2" {
	run -2 lc-watch --bogus
	run -2 lc-watch -j 0
	run -2 lc-watch -t x
	run -2 lc-watch -I -U
	run -0 lc-watch --help
	assert_output --partial "usage: lc-watch [-DHlnqv] [-j jobs] [-t seconds] [name ...]"
}

@test "lc-watch: --install-cron adds one line however often it runs" {
	fake_crontab
	echo '0 5 * * * backup' >"$BATS_TEST_TMPDIR/crontab.txt"
	run -0 --separate-stderr lc-watch --install-cron
	assert_json '.installed == true and .changed == true'
	[[ $stderr == *"LINODE_TOKEN comes from the environment"* ]]
	run -0 --separate-stderr lc-watch -I
	assert_json '.installed == true and .changed == false'
	run -0 --separate-stderr lc-watch --install-cron
	run cat "$BATS_TEST_TMPDIR/crontab.txt"
	[[ $(grep -c 'lc-watch' <<<"$output") -eq 1 ]]
	assert_line '0 5 * * * backup'
	assert_line --regexp "^\* \* \* \* \* .*'$REPO/bin/lc-watch' --destroy --heal --ledger -q </dev/null >>'$STATE/watch.log' 2>&1 # linode-coder: lc-watch\$"
	run -0 lc-watch --cron-status
	assert_json '.installed == true and (.recent | type == "array")'
	run -0 lc-watch --uninstall-cron
	assert_json '.installed == false and .changed == true'
	run cat "$BATS_TEST_TMPDIR/crontab.txt"
	assert_output '0 5 * * * backup'
	run -0 lc-watch -S
	assert_json '.installed == false'
}

@test "lc-watch: the cron line does not cd; an older line that did is replaced" {
	fake_crontab
	printf '%s\n' '0 5 * * * backup' \
	    "* * * * * cd '/old/project' 2>/dev/null; PATH='/old/bin' exec '/old/bin/lc-watch' --destroy --heal --ledger -q </dev/null >>'/old/watch.log' 2>&1 # linode-coder: lc-watch" \
	    >"$BATS_TEST_TMPDIR/crontab.txt"
	run -0 --separate-stderr lc-watch --install-cron
	assert_json '.installed == true and .changed == true and (.line | test("\\bcd ") | not)'
	run cat "$BATS_TEST_TMPDIR/crontab.txt"
	[[ $(grep -c 'lc-watch' <<<"$output") -eq 1 ]]
	[[ $output != *"/old/"* && $output != *"cd "* ]]
	assert_line '0 5 * * * backup'
}

@test "lc-watch: --install-cron warns when cron would find no token (environment, or this folder's .env.secrets)" {
	fake_crontab
	mkdir -p "$HOME/project" && cd "$HOME/project"
	run -0 --separate-stderr lc-watch --install-cron
	[[ $stderr == *"LINODE_TOKEN comes from the environment, which cron does not have: put it in $XDG_CONFIG_HOME/linode-coder/secrets"* ]]
	printf 'LINODE_TOKEN=%s\n' "$LINODE_TOKEN" >.env.secrets
	chmod 600 .env.secrets
	tok=$LINODE_TOKEN
	unset LINODE_TOKEN
	run -0 --separate-stderr lc-watch --install-cron
	[[ $stderr == *"the token comes from .env.secrets, which cron does not read (it runs in your home folder)"* ]]
	# In the user's secrets file, cron finds it: no warning.
	rm .env.secrets
	printf 'LINODE_TOKEN=%s\n' "$tok" >"$XDG_CONFIG_HOME/linode-coder/secrets"
	chmod 600 "$XDG_CONFIG_HOME/linode-coder/secrets"
	run -0 --separate-stderr lc-watch --install-cron
	[[ $stderr != *warning* ]]
	LINODE_TOKEN=$tok run -0 --separate-stderr lc-watch --install-cron
	[[ $stderr != *warning* ]]
	[[ $(cat "$BATS_TEST_TMPDIR/crontab.txt") != *"$tok"* ]]
}

@test "lc-watch: --install-cron with no crontab yet, and the line runs" {
	fake_crontab
	session dev >/dev/null
	run -0 lc-watch -I
	line=$(sed 's/^\* \* \* \* \* //' "$BATS_TEST_TMPDIR/crontab.txt")
	env -i HOME="$HOME" LINODE_TOKEN="$LINODE_TOKEN" LC_API_URL="$LC_API_URL" \
	    XDG_STATE_HOME="$XDG_STATE_HOME" LC_SSH_KEY="$LC_SSH_KEY" \
	    sh -c "$line"
	jq -e -s 'length == 1 and .[0].name == "dev"' "$STATE/watch.jsonl"
	run -0 lc-watch -S
	assert_json '.recent[-1].name == "dev"'
}
