# lc-watch: activity and decisions, against the fake Linode API, a real
# sshd playing the VM and the fake vLLM's real /metrics (helpers/watch).
# shellcheck disable=SC2016 # $names in single quotes are jq's, not the shell's
bats_require_minimum_version 1.5.0
load helpers/common
load helpers/watch

@test "lc-watch: keeps an idle session before the timeout and records the sample" {
	session dev >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.name == "dev" and .decision == "keep" and .action == "none"'
	assert_json '.idle_s >= 60 and .idle_s < 70 and (.reason | test("idle 1m"))'
	jq -e '.activity_sample.tokens == 0 and .unreachable_since == null and
	    .watch_warning == null' "$STATE/sessions/dev.json"
	jq -e -s 'length == 1 and .[0].decision == "keep"' "$STATE/watch.jsonl"
}

@test "lc-watch: an idle session is destroyed after the timeout and not before" {
	id=$(session dev)
	at 1780
	run -0 lc-watch --destroy
	assert_json '.decision == "keep" and .action == "none" and .idle_s >= 1780'
	api_saw "DELETE /v4/linode/instances/$id" 0
	at 1801
	run -0 lc-watch --destroy
	assert_json '.decision == "idle" and .action == "destroyed" and .idle_s >= 1801'
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
	jq -e --argjson t $((T0 + 7300)) \
	    '.last_activity_at | fromdate - $t | . >= 0 and . < 10' \
	    "$STATE/sessions/dev.json"
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
	assert_json '.decision == "keep" and .idle_s > 1690 and .idle_s < 1710'
	at 3320
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
	assert_json '.decision == "keep" and (.warning | test("^deadline in 8m[0-2][0-9]s$"))'
	w=$(jq -r .watch_warning "$STATE/sessions/dev.json")
	[[ $w == "deadline in 8m"* ]]
	run -0 lc-sessions -T
	assert_output --partial "$w"
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
	at 2820
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

@test "lc-watch: lc-sessions extend counts as activity" {
	session dev >/dev/null
	at 1700
	lc-sessions extend dev >/dev/null
	at 1900
	run -0 lc-watch
	assert_json '.decision == "keep" and .idle_s > 190 and .idle_s < 210'
}

@test "lc-watch: reads V0 metric names" {
	start_vllm --metrics-style v0
	session dev >/dev/null
	vllm_ctl add_tokens '{"generation": 7}' >/dev/null
	at 60
	run -0 lc-watch
	assert_json '.decision == "keep" and (.reason | test("first sample, 7 tokens"))'
}
