#!/usr/bin/env bats
# coder on a terminal reads like a CLI (tables and one-line summaries, no
# JSON); through a pipe the same verbs print NDJSON records.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup
	spec() { jq -nc --arg n "$1" '{name: $n, type: "g2-gpu-rtx4000a1-s"}'; }
	spec dev | lc-create -q >/dev/null
	spec two | lc-create -q >/dev/null
}

# on_tty CMD...: run CMD on a pseudo-terminal (script(1)); its output.
on_tty() {
	run -0 script -qec "$(printf '%q ' "$@")" /dev/null
	output=${output//$'\r'/}
}

refute_json() {
	[[ $output != *'{"'* ]] || fail "JSON on a terminal: $output"
}

@test "coder verbs on a terminal print no JSON" {
	on_tty coder list
	refute_json
	[[ $output == *dev* && $output == *two* ]]
	on_tty coder use dev
	refute_json
	[[ $output == "dev:"* ]]
	on_tty coder extend dev --by 1h
	refute_json
	[[ $output == "dev:"*"deadline"* ]]
	on_tty coder status
	refute_json
	on_tty coder cleanup
	refute_json
	on_tty coder down two
	refute_json
	[[ $output == *"two: destroyed"*"VM "* ]] || fail "down: $output"
	[[ ! -e $STATE/sessions/two.json ]]
}

@test "the same verbs through a pipe, or with --json on a terminal, print NDJSON" {
	local v
	for v in "list" "use dev" "extend dev --by 1h" "status dev" "down two"; do
		# shellcheck disable=SC2086 # the verb and its words
		run -0 --separate-stderr coder $v
		[[ -n $output ]] || fail "coder $v printed nothing"
		jq -e . <<<"$output" >/dev/null || fail "coder $v: not JSON: $output"
	done
	on_tty coder use dev --json
	jq -e '.name == "dev"' <<<"$output"
}
