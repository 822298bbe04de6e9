#!/usr/bin/env bats
# coder: the front end's dispatch, help and the ledger verbs it runs.
load helpers/common

@test "coder: no verb is a usage error; help lists the verbs" {
	run -2 --separate-stderr coder
	[[ $stderr == *"no verb given"* ]]
	run -0 coder help
	[[ $output == *"up [name]"* && $output == *"validate"* && $output == *"watch"* ]]
	run -0 coder --help
	[[ $output == *"usage: coder verb"* ]]
}

@test "coder: an unknown verb is exit 2 with a hint" {
	run -2 --separate-stderr coder frobnicate
	[[ $stderr == *"unknown verb 'frobnicate' ('coder help' lists them)"* ]]
}

@test "coder: VERB --help and help VERB describe the verb" {
	run -0 coder extend --help
	[[ $output == *"reset the idle clock"* ]]
	run -0 coder help down
	[[ $output == *"delete the session's VM"* ]]
	run -2 coder help nope
}

@test "coder: a verb's options come in any order, by letter or by name; a wrong one names itself and the verb's usage" {
	put_session dev "{\"state\":\"ready\",\"last_activity_at\":\"$(now_rfc3339 -900)\"}"
	put_session old '{"state":"ready"}'
	run -0 coder extend -j dev -b 1h
	assert_json '.name == "dev" and .idle_s < 5'
	run -0 coder extend --by=2h dev --json
	assert_json '.name == "dev"'
	run -0 coder list -aj
	[[ $(json_count) == 2 ]]
	run -2 --separate-stderr coder status --bogus
	[[ $stderr == *"--bogus"* && $stderr == *"usage: coder status [-j] [name]"* ]]
	run -2 --separate-stderr coder down dev extra
	[[ $stderr == *"unexpected argument: extra"* ]]
	run -2 --separate-stderr coder tunnel -p 70000 dev
	[[ $stderr == *"bad port '70000'"* ]]
	run -2 --separate-stderr coder use
	[[ $stderr == *"name the session"* ]]
	run -2 --separate-stderr coder watch -i -u
	run -2 --separate-stderr coder switch-model dev
	[[ $stderr == *"give --preset or --model"* ]]
	# After the name (ssh) or after -- (exec, aider) the words are the
	# command's: its -h and --help are not coder's.
	run --separate-stderr coder ssh dev ls --help
	[[ $stderr == *"lc-ssh: dev:"* && $stderr != *"usage: coder ssh"* ]]
	run --separate-stderr coder exec dev -- ls -h
	[[ $stderr == *"lc-ssh: dev:"* && $stderr != *"usage: coder exec"* ]]
	run -0 coder ssh -h
	[[ $output == *"usage: coder ssh [name] [command ...]"* ]]
}

@test "coder list runs lc-sessions and passes its records and status through" {
	put_session dev '{"state":"ready"}'
	run -0 coder list
	assert_json '.name == "dev"'
	printf '{"name":' >"$STATE/sessions/bad.json"
	run -1 --separate-stderr coder list
	assert_json_any '.error.code == "corrupt_record"'
}

@test "coder status: the current session; --json gives records; a table otherwise" {
	put_session dev "{\"state\":\"ready\",\"created_at\":\"$(now_rfc3339 -600)\",\"hourly_cost_usd\":1,\"served_model_name\":\"coder\",\"preset\":\"qwen-coder-7b\",\"model\":\"Qwen/Qwen2.5-Coder-7B-Instruct\",\"deadline_at\":\"$(now_rfc3339 300)\"}"
	put_session other '{"state":"ready"}'
	run -0 coder use dev
	run -0 coder status --json
	assert_json '.name == "dev" and .cost_usd == 1'
	[[ $(json_count) == 1 ]]
	# A terminal gets the table (script(1) gives coder a tty).
	command -v script >/dev/null || skip "script(1) missing"
	run -0 script -qec "coder status" /dev/null
	[[ $output == *NAME*STATE*"PRESET (MODEL)"*UPTIME*IDLE*DEADLINE*COST* ]]
	[[ $output == *dev*ready*"qwen-coder-7b (Qwen2.5-Coder-7B-Instruct)"*"deadline soon"* ]]
}

@test "coder list: a group's row says how many nodes its cost is for" {
	put_session big "{\"state\":\"ready\",\"created_at\":\"$(now_rfc3339 -600)\",\"hourly_cost_usd\":5.92,\"nodes\":2,\"preset\":\"qwen3-235b-2node\",\"model\":\"Qwen/Qwen3-235B-A22B-GPTQ-Int4\"}"
	put_session dev '{"state":"ready","preset":"qwen-coder-7b","model":"Qwen/Qwen2.5-Coder-7B-Instruct"}'
	command -v script >/dev/null || skip "script(1) missing"
	run -0 script -qec "coder list" /dev/null
	[[ $output == *big*ready*"2 nodes: qwen3-235b-2node (Qwen3-235B"*'$5.92'* ]] || fail "$output"
	[[ $output == *dev*ready*"qwen-coder-7b (Qwen2.5-Coder-7B-Instruct)"* ]]
	[[ $output != *"nodes: qwen-coder-7b"* ]]
}

@test "coder status: with no current session shows every session" {
	put_session a '{"state":"ready"}'
	put_session b '{"state":"ready"}'
	run -0 coder status --json
	[[ $(json_count) == 2 ]]
}

@test "coder extend: the current session when no name is given" {
	put_session dev "{\"state\":\"ready\",\"last_activity_at\":\"$(now_rfc3339 -900)\"}"
	run -0 coder use dev
	run -0 coder extend
	assert_json '.name == "dev" and .idle_s < 5'
	run -2 --separate-stderr coder extend --by never
}

@test "coder extend: no name and no current session says how to pick one" {
	run -2 --separate-stderr coder extend
	[[ $stderr == *"no current session"*"coder use NAME"* ]]
}

@test "coder: a missing tool is exit 127 with the tool's name" {
	local d
	d=$(mktemp -d)
	cp "$REPO/bin/coder" "$d/"
	PATH="$d:/usr/bin:/bin" run -127 --separate-stderr "$d/coder" list
	[[ $stderr == *"cannot run lc-sessions"* ]]
}

# The shared libraries a binary names (its NEEDED entries), one a line.
needed_libs() {
	readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'
}

@test "coder links libjq alone: no libcurl, libssh2 or libyaml" {
	local libs
	libs=$(needed_libs "$REPO/bin/coder")
	grep -q '^libjq\.so' <<<"$libs" || fail "no libjq in: $libs"
	if grep -E '^lib(curl|ssh2|yaml)' <<<"$libs"; then
		fail "coder links what its tools should: $libs"
	fi
	# The tools that do that work still name theirs, so the check can tell.
	needed_libs "$REPO/bin/lc-account" | grep -q '^libcurl'
	needed_libs "$REPO/bin/lc-heal" | grep -q '^libssh2'
	needed_libs "$REPO/bin/lc-cloudinit" | grep -q '^libyaml'
}
