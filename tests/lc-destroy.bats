#!/usr/bin/env bats
# lc-destroy against the fake Linode API: delete, verify, archive; faults.
load helpers/common
load helpers/lc-api

# make_sessions NAME...: real sessions made by lc-create.
make_sessions() {
	local n
	for n in "$@"; do
		jq -nc --arg n "$n" '{name: $n, type: "g2-gpu-rtx4000a1-s", owner: "ana"}'
	done | lc-create -q >/dev/null
	api_reset_log
}

live_count() {
	api_state | jq '.instances | length'
}

@test "lc-destroy: deletes the VM and its firewall, waits until gone, archives with the cost" {
	make_sessions dev
	id=$(jq .linode_id "$STATE/sessions/dev.json")
	fw=$(jq .firewall_id "$STATE/sessions/dev.json")
	run -0 --separate-stderr lc-destroy dev
	assert_ndjson
	assert_json '.name == "dev" and .state == "destroyed" and .owner == "ana"'
	assert_json '(.destroyed_at | test("Z$")) and .cost_usd == 0.52'
	api_saw "DELETE /v4/linode/instances/$id" 1
	api_saw "DELETE /v4/networking/firewalls/$fw" 1
	# It checked the VM was really gone (a 404) before archiving.
	api_requests | jq -se --arg p "/v4/linode/instances/$id" \
		'[.[] | select(.method == "GET" and .path == $p)] | last | .status == 404'
	[[ $(live_count) == 0 ]]
	[[ ! -e $STATE/sessions/dev.json ]]
	jq -e '.state == "destroyed" and .cost_usd == 0.52' "$STATE"/archive/dev-*.json
	jq -se '.[-1] | .event == "destroyed" and .name == "dev" and .cost_usd == 0.52' "$STATE/ledger.jsonl"
	[[ $stderr == *"dev: VM $id deleted"* ]]
}

@test "lc-destroy: a VM already gone (404) is success; the session is archived" {
	make_sessions dev
	id=$(jq .linode_id "$STATE/sessions/dev.json")
	curl -fsS -X DELETE -H "Authorization: Bearer $TEST_TOKEN" "$LC_API_URL/linode/instances/$id" >/dev/null
	sleep 0.4
	api_reset_log
	run -0 --separate-stderr lc-destroy dev
	assert_json '.state == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 0
	[[ ! -e $STATE/sessions/dev.json ]]
}

@test "lc-destroy: a delete that keeps failing leaves the session with the error, exit 1" {
	make_sessions dev
	api_ctl delete_fails '{"status":500,"count":-1}' >/dev/null
	run -1 --separate-stderr lc-destroy dev
	assert_json '.error.code == "delete_failed" and .error.tool == "lc-destroy" and .state == "creating"'
	[[ $stderr == "lc-destroy: dev: cannot delete VM "*"Linode API 500"* ]]
	jq -e '.state == "creating" and .last_error.code == "delete_failed"' "$STATE/sessions/dev.json"
	[[ -z $(ls "$STATE/archive") ]]
	run ! jq -se 'any(.[]; .event == "destroyed")' "$STATE/ledger.jsonl"
	[[ $(live_count) == 1 ]]
	# Once the API works again, the same command finishes the job.
	api_ctl reset >/dev/null
	api_ctl instance "{\"id\":$(jq .linode_id "$STATE/sessions/dev.json"),\"label\":\"lc-dev\",\"tags\":[\"linode-coder\",\"lc-session:dev\"]}" >/dev/null
	run -0 --separate-stderr lc-destroy dev
	assert_json '.state == "destroyed" and (has("last_error") | not)'
}

@test "lc-destroy: a VM whose label or tag differs is not deleted (mismatch)" {
	id=$(api_ctl instance '{"label":"someone-else","tags":["linode-coder"]}' | jq .id)
	put_session dev "{\"state\":\"ready\",\"linode_id\":$id,\"created_at\":\"$(now_rfc3339 -60)\"}"
	run -1 --separate-stderr lc-destroy dev
	assert_json '.error.code == "mismatch"'
	api_saw "DELETE /v4/linode/instances/$id" 0
	[[ -f $STATE/sessions/dev.json && $(live_count) == 1 ]]
}

@test "lc-destroy: -n checks and deletes nothing" {
	make_sessions dev
	run -0 --separate-stderr lc-destroy -n dev
	assert_json '.dry_run == true and .state == "creating"'
	api_requests | jq -se 'all(.[]; .method == "GET")'
	[[ -f $STATE/sessions/dev.json ]]
}

@test "lc-destroy: a VM that does not go away in --timeout keeps its session" {
	make_sessions dev
	api_ctl clock '{"deleting_s":30}' >/dev/null
	run -1 --separate-stderr lc-destroy -t 1 dev
	assert_json '.error.code == "timeout"'
	[[ -f $STATE/sessions/dev.json ]]
}

@test "lc-destroy: unknown names and error records; foreign fields kept" {
	make_sessions a
	run -1 --separate-stderr lc-destroy <<'EOF'
{"name":"nope"}
{"name":"x","error":{"code":"ssh_auth","message":"m","tool":"lc-gpuprobe"}}
{"name":"a","note":"keep me"}
EOF
	[[ $(json_count) == 3 ]]
	assert_json_any '.name == "nope" and .error.code == "not_found"'
	assert_json_any '.name == "x" and .error.tool == "lc-gpuprobe"'
	assert_json_any '.name == "a" and .state == "destroyed" and .note == "keep me"'
	run -2 lc-destroy -j 0 a
	run -2 lc-destroy --nope
}

@test "lc-destroy: many sessions at once (-j), each a whole line; the pipeline from lc-sessions" {
	make_sessions s1 s2 s3 s4 s5 s6 s7 s8
	api_ctl latency '{"ms":100}' >/dev/null
	start=$(date +%s%N)
	run -0 --separate-stderr bash -c 'lc-sessions | lc-destroy -j 8'
	elapsed=$((($(date +%s%N) - start) / 1000000))
	api_ctl latency '{"ms":0}' >/dev/null
	assert_ndjson
	[[ $(json_count) == 8 ]]
	assert_json '.state == "destroyed"'
	[[ $(live_count) == 0 && -z $(ls "$STATE/sessions") ]]
	# One destroy is ~5 requests (0.5 s here); eight in series would be 4 s.
	((elapsed < 3000))
}

@test "lc-destroy: no token is fatal (exit 3) and names the fix" {
	unset LINODE_TOKEN
	run -3 --separate-stderr lc-destroy dev
	[[ $stderr == *"LINODE_TOKEN"* ]]
}

@test "lc-destroy: a 400 \"Linode busy.\" is retried, then the delete goes through" {
	make_sessions dev
	id=$(jq .linode_id "$STATE/sessions/dev.json")
	api_ctl fail '{"status":400,"body":"linode_busy","match":"DELETE /linode/instances/"}' >/dev/null
	run -0 --separate-stderr lc-destroy dev
	assert_json '.state == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 2
}

@test "lc-destroy: with 30% of requests failing 5xx, every session is still destroyed" {
	make_sessions s1 s2 s3 s4
	api_ctl fail_rate '{"rate":0.3,"statuses":[500,502,503],"seed":11}' >/dev/null
	LC_HTTP_RETRIES=8 run -0 --separate-stderr lc-destroy -j 1 s1 s2 s3 s4
	api_ctl fail_rate '{"rate":0}' >/dev/null
	assert_json '.state == "destroyed"'
	[[ $(json_count) == 4 && $(live_count) == 0 ]]
	api_requests | jq -se '[.[] | select(.status >= 500)] | length > 0'
}
