#!/usr/bin/env bats
# The record protocol every tool shares (lc-records(5)): lenient input,
# NDJSON output, errors kept in the stream, exit codes.
load helpers/common

setup() {
	common_setup
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
}

@test "records: NDJSON, pretty objects and arrays are all read; output is one object a line" {
	run -0 --separate-stderr lc-cloudinit <<-'EOT'
	{"name":"a"}
	{
	  "name": "b"
	}
	[{"name":"c"},{"name":"d"}]
	EOT
	[[ $(json_count) == 4 ]]
	assert_ndjson
	[[ $(wc -l <<<"$output") == 4 ]]
	jq -se 'map(.name) == ["a","b","c","d"]' <<<"$output"
}

@test "records: malformed JSON on stdin names the byte offset and exits 3" {
	run -3 --separate-stderr lc-cloudinit <<<'{"name":"a"} {"name": }'
	[[ $stderr == *"malformed JSON on standard input at byte "* ]]
	local off
	off=$(sed -n 's/.*at byte \([0-9]*\).*/\1/p' <<<"$stderr")
	((off >= 20 && off <= 25)) || fail "offset $off is not near the error"
	run -3 --separate-stderr lc-heal <<<'{"name":"dev"'
	[[ $stderr == *"malformed JSON"* ]]
}

@test "records: a value that is not an object becomes a not_object error record, exit 1" {
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"ok"} 42 "dev"'
	[[ $(json_count) == 3 ]]
	assert_json_any '.name == "ok" and (has("error") | not)'
	assert_json_any '.error.code == "not_object" and .error.tool == "lc-cloudinit"'
	[[ $stderr == *"is not an object"* ]]
}

@test "records: a failed record passes through later tools untouched" {
	local bad='{"name":"dev","error":{"code":"ssh_auth","message":"publickey rejected","tool":"lc-gpuprobe"},"owner":"ana"}'
	run -1 lc-cloudinit <<<"$bad"
	assert_json '.error.code == "ssh_auth" and .error.tool == "lc-gpuprobe" and .owner == "ana"'
}

@test "records: operands are shorthand for {\"name\": operand}" {
	run -0 lc-cloudinit dev
	assert_json '.name == "dev" and (.user_data | startswith("#cloud-config"))'
}

@test "records: an unknown flag is exit 2 on every tool" {
	local t
	for t in coder lc-sessions lc-create lc-destroy lc-cloudinit lc-gpuprobe lc-heal lc-watch lc-ssh; do
		run -2 --separate-stderr "$t" --no-such-flag
		[[ -z $output ]] || fail "$t printed on stdout"
		[[ $stderr == *"$t: "* ]] || fail "$t: $stderr"
	done
}

@test "records: --help is exit 0 on stdout for every tool" {
	local t
	for t in coder lc-sessions lc-create lc-destroy lc-cloudinit lc-gpuprobe lc-heal lc-watch lc-ssh; do
		run -0 --separate-stderr "$t" --help
		[[ $output == *"usage: $t"* ]] || fail "$t --help: $output"
	done
}

@test "records: a closed stdout is an error, not a false success" {
	run bash -c 'lc-cloudinit a 2>/dev/null >/dev/full; echo $?'
	[[ $output == 3 ]]
}
