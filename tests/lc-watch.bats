# lc-watch: the money guard, against the fake Linode API, a real sshd
# playing the VM and the fake vLLM's real /metrics. The clock is moved with
# LC_NOW instead of sleeping: T0 is when the session was made.
# shellcheck disable=SC2016 # $names in single quotes are jq's, not the shell's
bats_require_minimum_version 1.5.0
load helpers/common

# One fake vLLM for the file (starting one costs a third of a second);
# each test gets it back zeroed and healthy. A test that needs another
# starts its own, which teardown stops.
setup_file() {
	start_api_server
	start_vm
	start_vllm
	export FILE_VLLM_DIR=$VLLM_DIR FILE_VLLM_PID=$VLLM_PID
}

teardown_file() {
	VLLM_PID=$FILE_VLLM_PID stop_vllm
	stop_vm
	stop_api_server
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset >/dev/null
	api_ctl clock '{"deleting_s": 0}' >/dev/null
	vm_reset
	vllm_ctl restart >/dev/null
	vllm_ctl set '{"healthy": true, "token_ms": 0, "running": null,
	    "waiting": null}' >/dev/null
	T0=$(date +%s)
	export LC_NOW=$T0
}

teardown() {
	if [[ -n ${STREAM_PID:-} ]]; then kill "$STREAM_PID" 2>/dev/null; fi
	if [[ $VLLM_PID != "$FILE_VLLM_PID" ]]; then stop_vllm; fi
}

# at SECONDS: LC_NOW for T0 + SECONDS.
at() {
	export LC_NOW=$((T0 + $1))
}

# session NAME [JQ ARGS...]: an instance of ours on the fake API and a
# ready session record for it in the ledger, made at T0 (deadline T0 + 4h)
# and pointing at the test VM and its vLLM; JQ ARGS change the record.
# Prints the instance id.
session() {
	local name=$1 id
	shift
	id=$(api_ctl instance "$(jq -nc --arg n "$name" \
	    '{label: ("lc-" + $n), tags: ["linode-coder", ("lc-session:" + $n)]}')" |
	    jq .id) || return 1
	put_session "$name" "$(vm_session_json "$name" --argjson id "$id" \
	    --arg t "$(date -u -d "@$T0" +%FT%TZ)" \
	    --arg d "$(date -u -d "@$((T0 + 14400))" +%FT%TZ)" \
	    '.linode_id = $id | .created_at = $t | .ready_at = $t |
	     .last_activity_at = $t | .deadline_at = $d' |
	    if (($#)); then jq -c "$@"; else cat; fi)"
	echo "$id"
}

# stream SECONDS: one streaming completion that lasts about SECONDS.
stream() {
	vllm_ctl set '{"token_ms": 100}' >/dev/null
	curl -sN --max-time $(($1 + 10)) "$VLLM_URL/v1/completions" \
	    -H 'Content-Type: application/json' \
	    -d "{\"prompt\":\"hi\",\"max_tokens\":$(($1 * 10)),\"stream\":true}" \
	    >/dev/null 2>&1 3>&- &
	STREAM_PID=$!
	for _ in {1..50}; do
		vllm_ctl state | jq -e '.running == 1' >/dev/null && return 0
		sleep 0.1
	done
	return 1
}

@test "lc-watch: keeps an idle session before the timeout and records the sample" {
	session dev >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.name == "dev" and .decision == "keep" and .action == "none"'
	assert_json '.idle_s == 60 and (.reason | test("idle 1m"))'
	jq -e '.activity_sample.tokens == 0 and .unreachable_since == null and
	    .watch_warning == null' "$STATE/sessions/dev.json"
	jq -e -s 'length == 1 and .[0].decision == "keep"' "$STATE/watch.jsonl"
}

@test "lc-watch: an idle session is destroyed after the timeout and not before" {
	id=$(session dev)
	at 1799
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and .action == "none"'
	api_saw "DELETE /v4/linode/instances/$id" 0
	at 1801
	run -0 lc-watch --destroy
	assert_json '.decision == "idle" and .action == "destroyed" and .idle_s == 1801'
	api_saw "DELETE /v4/linode/instances/$id" 1
	[[ ! -e $STATE/sessions/dev.json ]]
	jq -e '.state == "destroyed" and .destroyed_at != null' "$STATE"/archive/dev-*.json
	grep -q '"event":"destroyed"' "$STATE/ledger.jsonl"
}

@test "lc-watch: without --destroy an idle session is only reported" {
	id=$(session dev)
	at 4000
	run -0 lc-watch
	assert_json '.decision == "idle" and .action == "none"'
	api_saw "DELETE /v4/linode/instances/$id" 0
	[[ -e $STATE/sessions/dev.json ]]
}

@test "lc-watch: -n says what it would do and changes nothing" {
	id=$(session dev)
	before=$(<"$STATE/sessions/dev.json")
	at 4000
	run -0 lc-watch -n --destroy
	assert_json '.decision == "idle" and .action == "would_destroy"'
	api_saw "DELETE /v4/linode/instances/$id" 0
	[[ $(<"$STATE/sessions/dev.json") == "$before" ]]
	[[ ! -e $STATE/watch.jsonl ]]
}

@test "lc-watch: a streaming request longer than the timeout keeps the session" {
	id=$(session dev)
	stream 20
	for t in 60 1900 3700 7300; do
		at $t
		run -0 lc-watch --destroy
		assert_json '.decision == "keep" and (.reason | test("1 running"))'
	done
	api_saw "DELETE /v4/linode/instances/$id" 0
	jq -e --arg t "$(date -u -d "@$((T0 + 7300))" +%FT%TZ)" \
	    '.last_activity_at == $t' "$STATE/sessions/dev.json"
}

@test "lc-watch: short requests between two samples count as activity" {
	id=$(session dev)
	at 60
	run -0 lc-watch --destroy
	run curl -fsS "$VLLM_URL/v1/completions" -H 'Content-Type: application/json' \
	    -d '{"prompt":"hello there","max_tokens":5}'
	at 1500
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and (.reason | test("tokens since"))'
	at 3200
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and .idle_s == 1700'
	at 3301
	run -0 lc-watch --destroy
	assert_json '.decision == "idle" and .action == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 1
}

@test "lc-watch: a container restart (counters drop) counts as activity" {
	session dev >/dev/null
	vllm_ctl add_tokens '{"prompt": 500, "generation": 100}' >/dev/null
	at 60
	run -0 lc-watch
	vllm_ctl restart >/dev/null
	at 1850
	run -0 lc-watch
	assert_json '.decision == "keep" and (.reason | test("dropped from 600 to 0"))'
}

@test "lc-watch: the deadline fires even under load" {
	id=$(session dev)
	stream 20
	at 14401
	run -0 lc-watch --destroy
	assert_json '.decision == "deadline" and .action == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 1
}

@test "lc-watch: the budget fires even under load, before the hour that passes it" {
	id=$(session dev '.budget_usd = 1.00')
	stream 20
	at 3500
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and (.warning | test("budget"))'
	at 3560
	run -0 lc-watch --destroy
	assert_json '.decision == "budget" and .action == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 1
}

@test "lc-watch: warns within 10 minutes of the deadline; lc-sessions shows it" {
	session dev '.idle_timeout_s = 86400' >/dev/null
	at 13900
	run -0 lc-watch
	assert_json '.decision == "keep" and .warning == "deadline in 8m20s"'
	jq -e '.watch_warning == "deadline in 8m20s"' "$STATE/sessions/dev.json"
	run -0 lc-sessions -T
	assert_output --partial "deadline in 8m20s"
}

@test "lc-watch: an unreachable VM counts as idle only after unreachable_timeout_s" {
	port=$(_vm_free_port)
	id=$(session dev --argjson p "$port" '.ssh.port = $p')
	at 1900
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and (.reason | test("unreachable for 0s"))'
	jq -e '.unreachable_since != null' "$STATE/sessions/dev.json"
	at 2700
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and (.reason | test("unreachable for 13m"))'
	at 2801
	run -0 lc-watch --destroy
	assert_json '.decision == "idle" and .action == "destroyed" and
	    (.reason | test("unreachable for 15m"))'
	api_saw "DELETE /v4/linode/instances/$id" 1
}

@test "lc-watch: a VM that comes back clears unreachable_since" {
	session dev '.unreachable_since = "2020-01-01T00:00:00Z"' >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.decision == "keep"'
	jq -e '.unreachable_since == null' "$STATE/sessions/dev.json"
}

@test "lc-watch: a session not ready after ready_timeout_s is unready" {
	id=$(session dev '.state = "booting" | .ready_at = null')
	at 1700
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and (.reason | test("starting"))'
	at 1801
	run -0 lc-watch --destroy
	assert_json '.decision == "unready" and .action == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 1
}

@test "lc-watch: a heal round under way holds off unready" {
	session dev --arg t "$(date -u -d "@$((T0 + 1700))" +%FT%TZ)" \
	    '.state = "failed" | .heal = [{round: 1, result: "running", at: $t}]' >/dev/null
	at 1850
	run -0 lc-watch
	assert_json '.decision == "keep" and (.reason | test("lc-heal round 1"))'
}

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

@test "lc-watch: lc-sessions extend counts as activity" {
	session dev >/dev/null
	at 1700
	lc-sessions extend dev >/dev/null
	at 1900
	run -0 lc-watch
	assert_json '.decision == "keep" and .idle_s == 200'
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

@test "lc-watch: vLLM down on a reachable VM is unhealthy, not unreachable" {
	session dev --argjson p "$(_vm_free_port)" \
	    '.endpoint = "http://127.0.0.1:\($p)/v1"' >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.decision == "unhealthy" and (.reason | test("does not answer"))'
	jq -e '.unreachable_since == null' "$STATE/sessions/dev.json"
}

@test "lc-watch: reads V0 metric names" {
	start_vllm --metrics-style v0
	session dev >/dev/null
	vllm_ctl add_tokens '{"generation": 7}' >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.decision == "keep" and (.reason | test("first sample, 7 tokens"))'
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

# A stand-in crontab that keeps the table in a file.
fake_crontab() {
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat >"$BATS_TEST_TMPDIR/bin/crontab" <<-EOF
	#!/bin/sh
	t="$BATS_TEST_TMPDIR/crontab.txt"
	case "\$1" in
	-l) [ -f "\$t" ] || { echo "no crontab for \$(id -un)" >&2; exit 1; }; cat "\$t" ;;
	-) cat >"\$t" ;;
	*) exit 2 ;;
	esac
	EOF
	chmod +x "$BATS_TEST_TMPDIR/bin/crontab"
	PATH="$BATS_TEST_TMPDIR/bin:$PATH"
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

@test "lc-watch: --install-cron with no crontab yet, and the line runs" {
	fake_crontab
	session dev >/dev/null
	run -0 lc-watch -I
	line=$(sed 's/^\* \* \* \* \* //' "$BATS_TEST_TMPDIR/crontab.txt")
	at 60
	env -i HOME="$HOME" LINODE_TOKEN="$LINODE_TOKEN" LC_API_URL="$LC_API_URL" \
	    LC_NOW="$LC_NOW" XDG_STATE_HOME="$XDG_STATE_HOME" LC_SSH_KEY="$LC_SSH_KEY" \
	    sh -c "$line"
	jq -e -s 'length == 1 and .[0].name == "dev"' "$STATE/watch.jsonl"
	run -0 lc-watch -S
	assert_json '.recent[-1].name == "dev"'
}
