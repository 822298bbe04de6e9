#!/usr/bin/env bats
# lc-sessions: the ledger, its records and its bad inputs.
load helpers/common

@test "lc-sessions: empty ledger prints nothing and exits 0" {
	run -0 --separate-stderr lc-sessions
	[[ -z $output ]]
	[[ -d $STATE && $(stat -c %a "$STATE") == 700 ]]
}

@test "lc-sessions: lists records with every documented field and a live cost" {
	put_session dev "{\"state\":\"ready\",\"created_at\":\"$(now_rfc3339 -5400)\",\"hourly_cost_usd\":0.52,\"owner\":\"ana\"}"
	run -0 lc-sessions
	assert_ndjson
	assert_json '.name == "dev" and .owner == "ana" and .cost_usd == 1.04 and .uptime_s >= 5400'
	assert_json 'has("linode_id") and has("ssh") and has("vllm") and has("deadline_at") and .heal == []'
}

@test "lc-sessions: cost rounds each started hour up" {
	put_session a "{\"created_at\":\"$(now_rfc3339 -60)\",\"hourly_cost_usd\":1.5}"
	run -0 lc-sessions a
	assert_json '.cost_usd == 1.5'
}

@test "lc-sessions: cost is capped at the monthly price within a month" {
	put_session m '{"created_at":"2026-03-01T00:00:00Z","destroyed_at":"2026-03-31T00:00:00Z","hourly_cost_usd":1.5,"monthly_cost_usd":1000}'
	run -0 lc-sessions m
	assert_json '.cost_usd == 1000'
}

@test "lc-sessions: a month boundary bills each month's started hours" {
	put_session b '{"created_at":"2026-03-31T23:30:00Z","destroyed_at":"2026-04-01T00:30:00Z","hourly_cost_usd":1}'
	run -0 lc-sessions b
	assert_json '.cost_usd == 2'
}

@test "lc-sessions: NAME shows one; unknown name is a not_found error record, exit 1" {
	put_session dev '{"state":"ready"}'
	run -1 --separate-stderr lc-sessions dev nope
	[[ $(json_count) == 2 ]]
	assert_json_any '.name == "dev" and (has("error") | not)'
	assert_json_any '.name == "nope" and .error.code == "not_found" and .error.tool == "lc-sessions"'
	[[ $stderr == *"lc-sessions: nope: no session named 'nope'"* ]]
}

@test "lc-sessions: a truncated session file is a corrupt_record with its path; others still print" {
	put_session good '{"state":"ready"}'
	printf '{"name":"bad","state":"rea' >"$STATE/sessions/bad.json"
	run -1 --separate-stderr lc-sessions
	assert_json_any '.name == "good" and (has("error") | not)'
	assert_json_any '.name == "bad" and .error.code == "corrupt_record" and (.path | endswith("sessions/bad.json"))'
	[[ $stderr == *"bad.json is truncated"* ]]
	# Nothing was rewritten.
	[[ $(cat "$STATE/sessions/bad.json") == '{"name":"bad","state":"rea' ]]
}

@test "lc-sessions: 300 sessions, two corrupt and a FIFO among them: each once, in name order, exit 1" {
	local i
	mkdir -p "$STATE/sessions"
	for i in $(seq -w 1 300); do
		jq -nc --arg n "s$i" '{name: $n, state: "ready", created_at: "2026-01-01T00:00:00Z", hourly_cost_usd: 1}'
	done | awk -v d="$STATE/sessions" '{ f = d "/" substr($0, 10, 4) ".json"; print > f; close(f) }'
	printf '{"name":"s150","sta' >"$STATE/sessions/s150.json"
	printf '[1,2]' >"$STATE/sessions/s299.json"
	rm "$STATE/sessions/s007.json" && mkfifo "$STATE/sessions/s007.json"
	t=$(date -d 2026-01-01T02:30:00Z +%s)
	run -1 --separate-stderr timeout 20 "$REPO/tests/helpers/clock-at" "$t" lc-sessions
	[[ $(json_count) == 300 ]]
	[[ $(jq -r .name <<<"$output" | sort -c && jq -r .name <<<"$output" | uniq | wc -l) == 300 ]]
	[[ $(jq -r 'select(.error) | .name' <<<"$output" | tr '\n' ' ') == "s007 s150 s299 " ]]
	assert_json_any '.name == "s151" and .cost_usd == 3 and .uptime_s >= 9000 and .uptime_s < 9010'
	[[ $(grep -c "is truncated or not a JSON object" <<<"$stderr") == 3 ]]
	# The table has the same rows in the same order.
	run -1 --separate-stderr clock_at "$t" lc-sessions --table
	[[ $(sed 1d <<<"$output" | awk '{print $1}' | tr '\n' ' ') == "$(seq -f 's%03g' 1 300 | tr '\n' ' ')" ]]
	[[ $(grep -c ERROR <<<"$output") == 3 ]]
}

@test "lc-sessions: a session file that is a symlink elsewhere is refused, not followed" {
	put_session good '{"state":"ready"}'
	echo '{"name":"evil","state":"ready"}' >"$BATS_TEST_TMPDIR/elsewhere.json"
	ln -s "$BATS_TEST_TMPDIR/elsewhere.json" "$STATE/sessions/evil.json"
	run -1 --separate-stderr lc-sessions evil
	assert_json '.error.code == "unsafe_file"'
	[[ $stderr == *"symbolic link"* ]]
	run -1 --separate-stderr lc-sessions extend evil
	assert_json '.error.code == "unsafe_file"'
	[[ $(cat "$BATS_TEST_TMPDIR/elsewhere.json") == '{"name":"evil","state":"ready"}' ]]
}

@test "lc-sessions: names with / or .. are refused as bad_name" {
	run -1 --separate-stderr lc-sessions ../etc/passwd
	assert_json '.error.code == "bad_name"'
	run -1 --separate-stderr lc-sessions 'a/b'
	assert_json '.error.code == "bad_name"'
	[[ $stderr == *"lowercase letters, digits and '-'"* ]]
}

@test "lc-sessions: verbs are reserved and cannot name a session" {
	run -1 --separate-stderr lc-sessions extend cleanup
	assert_json '.error.code == "bad_name"'
	[[ $stderr == *"command name"* ]]
}

@test "lc-sessions: an unknown flag is a usage error, exit 2, nothing on stdout" {
	run -2 --separate-stderr lc-sessions --frobnicate
	[[ -z $output ]]
	[[ $stderr == "lc-sessions: unknown option or missing value: --frobnicate"* ]]
}

@test "lc-sessions: a state directory that is not a directory is fatal, exit 3" {
	mkdir -p "$XDG_STATE_HOME"
	echo x >"$XDG_STATE_HOME/linode-coder"
	run -3 --separate-stderr lc-sessions
	[[ $stderr == *"state directory"*"XDG_STATE_HOME"* ]]
}

@test "lc-sessions: a state directory that is not writable is fatal, exit 3" {
	command -v setpriv >/dev/null || skip "setpriv missing"
	[[ $(id -u) == 0 ]] || skip "needs root to switch to an unprivileged user"
	mkdir -p "$STATE/sessions"
	chmod 755 "$HOME" "$HOME/.local" "$XDG_STATE_HOME"
	chmod 555 "$STATE"
	chmod 711 "$BATS_TEST_TMPDIR" "$(dirname "$BATS_TEST_TMPDIR")" || true
	run -3 --separate-stderr setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env HOME="$HOME" XDG_STATE_HOME="$XDG_STATE_HOME" "$REPO/bin/lc-sessions" extend dev
	[[ $stderr == *"not writable"*"chmod 700"* ]] || [[ $stderr == *"state directory"* ]]
}

@test "lc-sessions use: moves current and links ./.aider-env to the session's env file" {
	put_session dev '{"state":"ready"}'
	run -0 lc-sessions use dev
	assert_json '.name == "dev"'
	[[ $(readlink "$STATE/current") == sessions/dev.json ]]
	[[ $(readlink .aider-env) == "$STATE/dev.env" ]]
}

@test "lc-sessions use: refuses to replace a real ./.aider-env file" {
	put_session dev '{"state":"ready"}'
	echo 'OPENAI_API_KEY=mine' >.aider-env
	run -1 --separate-stderr lc-sessions use dev
	assert_json '.error.code == "exists"'
	[[ $(cat .aider-env) == 'OPENAI_API_KEY=mine' ]]
}

@test "lc-sessions extend: resets the idle clock and logs an event" {
	put_session dev "{\"created_at\":\"$(now_rfc3339 -7200)\",\"last_activity_at\":\"$(now_rfc3339 -3600)\"}"
	run -0 lc-sessions extend dev
	assert_json '.idle_s < 5'
	run -0 jq -c 'select(.event == "extended")' "$STATE/ledger.jsonl"
	assert_json '.name == "dev"'
}

@test "lc-sessions extend --deadline: moves the deadline but never past LC_MAX_DEADLINE" {
	put_session dev "{\"created_at\":\"$(now_rfc3339 -3600)\",\"deadline_at\":\"$(now_rfc3339 60)\"}"
	run -0 lc-sessions extend dev --deadline 2h
	local want
	want=$(date -u -d "@$(($(date +%s) + 7200))" +%s)
	assert_json "(.deadline_at | fromdateiso8601) - $want | fabs < 5"
	LC_MAX_DEADLINE=3h run -0 --separate-stderr lc-sessions extend dev --by 10h
	want=$(($(date +%s) - 3600 + 3 * 3600))
	assert_json "(.deadline_at | fromdateiso8601) - $want | fabs < 5"
	[[ $stderr == *"capped"* ]]
}

@test "lc-sessions extend: a bad duration is a usage error" {
	run -2 --separate-stderr lc-sessions extend dev --by soon
	[[ $stderr == *"bad duration 'soon'"* ]]
}

@test "lc-sessions forget: needs --yes, then removes the record and warns the VM may bill" {
	put_session dev '{"state":"ready","linode_id":4242,"hourly_cost_usd":0.52}'
	run -2 --separate-stderr lc-sessions forget dev
	[[ -f $STATE/sessions/dev.json ]]
	[[ $stderr == *"--yes"* ]]
	run -0 --separate-stderr lc-sessions forget dev --yes
	[[ ! -e $STATE/sessions/dev.json ]]
	[[ $stderr == *"WARNING"*"4242"*"may still be billing"* ]]
	assert_json '.state == "forgotten"'
}

@test "lc-sessions forget: a corrupt record can still be forgotten; others untouched" {
	put_session keep '{"state":"ready"}'
	echo '{"name":' >"$STATE/sessions/broken.json"
	run -0 --separate-stderr lc-sessions forget broken --yes
	[[ ! -e $STATE/sessions/broken.json ]]
	run -0 lc-sessions
	assert_json '.name == "keep"'
}

@test "lc-sessions forget: a writer's temp file left by a kill goes with the record; another session's stays" {
	put_session dev '{"state":"ready"}'
	put_session devx '{"state":"ready"}'
	echo '{"name":"dev","sta' >"$STATE/sessions/dev.json.tmp.Ab12Cd"
	echo '{"name":"devx"' >"$STATE/sessions/devx.json.tmp.Zz99Yy"
	run -0 --separate-stderr lc-sessions forget dev --yes
	[[ ! -e $STATE/sessions/dev.json.tmp.Ab12Cd ]]
	[[ -e $STATE/sessions/devx.json.tmp.Zz99Yy ]]
	run -0 lc-sessions
	assert_json '.name == "devx"'
}

@test "lc-sessions cost: per-session and total from ledger.jsonl, with --since" {
	mkdir -p "$STATE"
	cat >"$STATE/ledger.jsonl" <<-'EOT'
	{"event":"created","name":"a","linode_id":1,"hourly_cost_usd":1,"at":"2026-01-01T00:00:00Z"}
	{"event":"destroyed","name":"a","linode_id":1,"at":"2026-01-01T02:30:00Z"}
	{"event":"created","name":"b","linode_id":2,"hourly_cost_usd":0.5,"at":"2026-02-01T00:00:00Z"}
	{"event":"destroyed","name":"b","linode_id":2,"at":"2026-02-01T01:00:00Z"}
	EOT
	run -0 lc-sessions cost
	assert_json_any '.name == "a" and .cost_usd == 3'
	assert_json_any '.name == "b" and .cost_usd == 0.5'
	assert_json_any '.total_cost_usd == 3.5 and .sessions == 2'
	run -0 lc-sessions cost --since 2026-01-15
	assert_json_any '.total_cost_usd == 0.5'
	run -2 lc-sessions cost --since yesterday
}

@test "lc-sessions cost: an event with a field of the wrong type is left out and named" {
	mkdir -p "$STATE"
	cat >"$STATE/ledger.jsonl" <<-'EOT'
	{"event":"created","name":"a","linode_id":1,"hourly_cost_usd":1,"at":"2026-01-01T00:00:00Z"}
	{"event":"created","name":"b","linode_id":"2","hourly_cost_usd":0.5,"at":"2026-02-01T00:00:00Z"}
	{"event":"destroyed","name":"a","linode_id":1,"at":"2026-01-01T02:30:00Z"}
	{"event":"destroyed","name":"b","linode_id":2,"cost_usd":"lots","at":"2026-02-01T01:00:00Z"}
	EOT
	run -0 --separate-stderr lc-sessions cost
	assert_json_any '.name == "a" and .cost_usd == 3'
	assert_json_any '.total_cost_usd == 3 and .sessions == 1'
	[[ $stderr == *"2 events do not match"*'"created" event has a bad "linode_id"'* ]]
}

@test "lc-sessions: --help prints usage on stdout and exits 0" {
	run -0 lc-sessions --help
	[[ $output == *"usage: lc-sessions"* ]]
}

@test "lc-sessions: 20 concurrent extends while another writer rewrites: valid JSON, one ledger line each" {
	put_session dev "{\"state\":\"ready\",\"created_at\":\"$(now_rfc3339 -60)\"}"
	local i pids=()
	for i in $(seq 1 20); do
		lc-sessions extend dev >/dev/null 2>&1 &
		pids+=($!)
	done
	# A second writer rewrites the record through the same locked path.
	for i in $(seq 1 10); do
		lc-sessions extend dev --deadline "$i"h >/dev/null 2>&1 &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i"; done
	jq -e '.name == "dev"' "$STATE/sessions/dev.json"
	[[ $(wc -l <"$STATE/ledger.jsonl") == 30 ]]
	jq -e -s 'length == 30 and all(.[]; .event == "extended")' "$STATE/ledger.jsonl"
	[[ -z $(find "$STATE/sessions" -name '*.tmp.*') ]]
}
