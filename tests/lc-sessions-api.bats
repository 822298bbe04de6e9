#!/usr/bin/env bats
# lc-sessions cleanup and reconcile against the fake Linode API, and what
# a killed lc-create leaves behind.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup '{"provisioning_s":0.1,"booting_s":0.1,"deleting_s":0.1}'
}

spec() {
	jq -nc --arg n "$1" '{name: $n, type: "g2-gpu-rtx4000a1-s"}'
}

# orphan LABEL TAGS-JSON: a VM made behind the tools' back; prints its id.
orphan() {
	api_ctl instance "{\"label\":\"$1\",\"tags\":$2}" | jq .id
}

# Every live VM is known to the ledger or reported by reconcile, and
# none is both. Runs reconcile; leaves its output in $output.
assert_reconciled() {
	local live known reported
	run -0 --separate-stderr lc-sessions reconcile
	live=$(api_state | jq -c '[.instances[].id] | sort')
	known=$(cat "$STATE"/sessions/*.json 2>/dev/null | jq -sc '[.[].linode_id | select(. != null)] | sort')
	reported=$(jq -sc '[.[].linode_id] | sort' <<<"$output")
	jq -ne --argjson l "$live" --argjson k "$known" --argjson r "$reported" \
		'(($k + $r) | sort) == $l and ([$r[] | select(. as $x | $k | index($x))] == [])' ||
		fail "live $live, ledger $known, reconcile $reported"
}

@test "cleanup: archives sessions whose VM is gone, keeps the rest" {
	spec alive | lc-create -q >/dev/null
	spec gone | lc-create -q >/dev/null
	gid=$(jq .linode_id "$STATE/sessions/gone.json")
	curl -fsS -X DELETE -H "Authorization: Bearer $TEST_TOKEN" "$LC_API_URL/linode/instances/$gid" >/dev/null
	put_session noid "{\"state\":\"creating\",\"created_at\":\"$(now_rfc3339 -9000)\",\"hourly_cost_usd\":1.5}"
	# 2.5 hours ago: three started hours, whatever second the test runs in.
	sleep 0.3
	run -0 --separate-stderr lc-sessions cleanup
	[[ $(json_count) == 2 ]]
	assert_json '.state == "destroyed" and (.destroyed_at | test("Z$"))'
	assert_json_any '.name == "gone" and .linode_id == '"$gid"
	assert_json_any '.name == "noid" and .cost_usd == 4.5'
	[[ -f $STATE/sessions/alive.json && ! -e $STATE/sessions/gone.json && ! -e $STATE/sessions/noid.json ]]
	[[ $(find "$STATE/archive" -name '*.json' | wc -l) == 2 ]]
	jq -se '[.[] | select(.event == "destroyed")] | length == 2' "$STATE/ledger.jsonl"
	[[ $stderr == *"gone: VM $gid no longer exists"* ]]
}

@test "cleanup: an API failure is an error record and the session stays" {
	put_session dev '{"state":"ready","linode_id":123}'
	api_ctl fail '{"status":500,"count":-1,"match":"GET /linode/instances"}' >/dev/null
	LC_HTTP_RETRIES=1 run -1 --separate-stderr lc-sessions cleanup
	assert_json '.name == "dev" and .error.code == "api_unavailable"'
	[[ -f $STATE/sessions/dev.json ]]
}

@test "reconcile: lists tagged VMs the ledger lacks, with price and age" {
	spec known | lc-create -q >/dev/null
	a=$(orphan lc-lost '["linode-coder","lc-session:lost"]')
	b=$(orphan handmade '["linode-coder"]')
	orphan untracked '[]' >/dev/null
	run -0 --separate-stderr lc-sessions reconcile
	[[ $(json_count) == 2 ]]
	assert_json '.state == "orphan" and .hourly_cost_usd == 0.52 and .age_s >= 0 and .region == "us-ord"'
	assert_json_any ".linode_id == $a and .name == \"lost\" and .label == \"lc-lost\""
	assert_json_any ".linode_id == $b and .name == null"
	[[ $stderr == *"VM $a (lc-lost) is tagged linode-coder but no session knows it"* ]]
	api_saw 'PUT /v4/linode/instances/*' 0
}

@test "reconcile --adopt: orphans become sessions that lc-destroy can delete" {
	a=$(orphan lc-lost '["linode-coder","lc-session:lost"]')
	b=$(orphan handmade '["linode-coder"]')
	run -0 --separate-stderr lc-sessions reconcile --adopt
	[[ $(json_count) == 2 ]]
	assert_json_any ".name == \"lost\" and .linode_id == $a and .state == \"provisioning\""
	assert_json_any ".name == \"orphan-$b\" and .label == \"lc-orphan-$b\""
	jq -se '[.[] | select(.event == "adopted")] | length == 2' "$STATE/ledger.jsonl"
	api_state | jq -e --argjson b "$b" '.instances[] | select(.id == $b) |
		.label == "lc-orphan-\($b)" and (.tags | index("lc-session:orphan-\($b)"))'
	run -0 --separate-stderr lc-sessions reconcile
	[[ -z $output ]]
	run -0 --separate-stderr lc-destroy lost "orphan-$b"
	assert_json '.state == "destroyed"'
	[[ $(api_state | jq '.instances | length') == 0 ]]
}

@test "reconcile: follows pages past 500 VMs" {
	api_ctl instance "$(jq -nc '[range(520) | {label: "o\(.)", tags: ["linode-coder"]}]')" >/dev/null
	run -0 --separate-stderr lc-sessions reconcile
	[[ $(json_count) == 520 ]]
	api_saw 'GET /v4/linode/instances' 2
}

@test "reconcile: no token is fatal" {
	unset LINODE_TOKEN
	run -3 --separate-stderr lc-sessions reconcile
	[[ $stderr == *"no Linode token"* ]]
}

@test "kill -9 of lc-create before the create call: no VM to report" {
	api_ctl stall '{"seconds":1,"match":"POST /networking/firewalls"}' >/dev/null
	spec dev >"$BATS_TEST_TMPDIR/spec"
	lc-create -q <"$BATS_TEST_TMPDIR/spec" >/dev/null 2>&1 &
	pid=$!
	sleep 0.4
	kill -9 "$pid"
	wait "$pid" || true
	sleep 1
	assert_reconciled
	[[ $(json_count) == 0 ]]
}

@test "kill -9 of lc-create while the create call is in flight: reconcile reports the VM" {
	api_ctl stall '{"seconds":1,"match":"POST /linode/instances"}' >/dev/null
	spec dev >"$BATS_TEST_TMPDIR/spec"
	lc-create -q <"$BATS_TEST_TMPDIR/spec" >/dev/null 2>&1 &
	pid=$!
	sleep 0.5
	kill -9 "$pid"
	wait "$pid" || true
	sleep 1
	[[ $(api_state | jq '.instances | length') == 1 ]]
	assert_reconciled
	assert_json '.name == "dev" and .state == "orphan"'
}

@test "kill -9 of lc-create after the create call, before its answer: reconcile reports the VM" {
	api_ctl create_then_timeout '{"seconds":3}' >/dev/null
	spec dev >"$BATS_TEST_TMPDIR/spec"
	lc-create -q <"$BATS_TEST_TMPDIR/spec" >/dev/null 2>&1 &
	pid=$!
	for _ in {1..40}; do
		[[ $(api_state | jq '.instances | length') == 1 ]] && break
		sleep 0.05
	done
	kill -9 "$pid"
	wait "$pid" || true
	# The record was written before the POST: it names the VM to come.
	jq -e '.state == "creating" and .linode_id == null and .label == "lc-dev" and (.tags | index("linode-coder"))' "$STATE/sessions/dev.json"
	assert_reconciled
	[[ $(json_count) == 1 ]]
	# And lc-create run again takes that VM instead of making another.
	run -0 --separate-stderr lc-create < <(spec dev)
	[[ $(api_state | jq '.instances | length') == 1 ]]
	assert_reconciled
}

@test "kill -9 of lc-create during --wait: the ledger has it, nothing is orphaned" {
	api_ctl clock '{"provisioning_s":5}' >/dev/null
	spec dev >"$BATS_TEST_TMPDIR/spec"
	lc-create -q -w -u running <"$BATS_TEST_TMPDIR/spec" >/dev/null 2>&1 &
	pid=$!
	# During --wait: once the ledger holds the VM's id (the record itself
	# is written before the POST, and a kill before the id lands leaves a
	# VM that reconcile rightly reports).
	for _ in {1..300}; do
		jq -e '.linode_id != null' "$STATE/sessions/dev.json" >/dev/null 2>&1 && break
		sleep 0.1
	done
	kill -9 "$pid"
	wait "$pid" || true
	jq -e '.linode_id != null' "$STATE/sessions/dev.json"
	assert_reconciled
	[[ $(json_count) == 0 ]]
}

@test "kill -9 at every step, many times over: reconcile always accounts for every VM" {
	api_ctl clock '{"provisioning_s":2}' >/dev/null
	local delays=(0 0.05 0.12 0.2 0.3 0.6)
	for i in 0 1 2 3 4 5; do
		spec "k$i" >"$BATS_TEST_TMPDIR/spec"
		lc-create -q -w -u running <"$BATS_TEST_TMPDIR/spec" >/dev/null 2>&1 &
		pid=$!
		sleep "${delays[i]}"
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" || true
	done
	sleep 0.5
	assert_reconciled
}

@test "cleanup and reconcile run lc-sessions-api; the listing tool itself never loads libcurl" {
	run -0 ldd "$(command -v lc-sessions)"
	refute_output --partial libcurl
	run -0 ldd "$REPO/libexec/linode-coder/lc-sessions-api"
	assert_output --partial libcurl
	run -2 --separate-stderr lc-sessions cleanup extra
	[[ $stderr == *"cleanup takes no operands"* && -z $output ]]
	run -2 --separate-stderr lc-sessions cleanup --adopt
	[[ $stderr == *"--adopt goes with reconcile only"* ]]
	# The helper's own options and errors carry lc-sessions' name.
	run -2 --separate-stderr "$REPO/libexec/linode-coder/lc-sessions-api" list
	[[ $stderr == "lc-sessions: "*"run 'lc-sessions cleanup' instead"* ]]
}

@test "lc-sessions cleanup without its helper: one line naming the missing program, exit 3" {
	[[ ! -e /usr/local/libexec/linode-coder/lc-sessions-api ]] ||
		skip "an installed helper would be found"
	mkdir -p "$BATS_TEST_TMPDIR/alone"
	cp "$(command -v lc-sessions)" "$BATS_TEST_TMPDIR/alone/"
	run -3 --separate-stderr "$BATS_TEST_TMPDIR/alone/lc-sessions" cleanup
	[[ $stderr == *"cannot run /usr/local/libexec/linode-coder/lc-sessions-api"*"reinstall linode-coder"* ]]
	[[ $(wc -l <<<"$stderr") == 1 && -z $output ]]
}
