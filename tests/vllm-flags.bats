#!/usr/bin/env bats
# The vLLM flags linode-coder can emit (every preset's vllm.env, the heal
# ladder's settings, the flag table in lib/vllm.c) are exactly those of
# lc-cloudinit(1)'s VLLM FLAGS table, and the pinned image is named the
# same everywhere: LC_VLLM_IMAGE's default.
load helpers/common

ROOT="$BATS_TEST_DIRNAME/.."
MAN="$ROOT/man/lc-cloudinit.1"

setup() {
	common_setup
	unset LC_VLLM_IMAGE LC_PRESET LC_PRESETS
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
}

# The flags in the man page's table, one a line: its ".It Fl Fl NAME Ta" rows.
man_flags() {
	sed -n '/^\.Sh VLLM FLAGS/,/^\.Sh [^V]/p' "$MAN" |
	    sed -n 's/^\.It Fl Fl \([a-z0-9-]*\) Ta .*/--\1/p' | sort -u
}

# The vLLM flags of the vllm.env in the records on stdin.
env_flags() {
	jq -r .user_data | sed -n 's/^ *VLLM_ARGS=(//p' |
	    grep -o "'--[a-z0-9-]*'" | tr -d "'"
}

# Every flag the tools can emit, one a line.
emitted_flags() {
	local p
	for p in $(lc-cloudinit -L | jq -r .name); do
		lc-cloudinit -q -N t -p "$p" | env_flags
	done
	# What the heal ladder turns on (lib/ladder.h's rungs) on top of a preset.
	jq -nc '{name: "t", vllm: {enforce_eager: true,
	    disable_custom_all_reduce: true, dtype: "half",
	    tensor_parallel_size: 1, gpu_memory_utilization: 0.95,
	    max_model_len: 8192}}' | lc-cloudinit -q -p qwen-coder-32b | env_flags
	# The field-to-flag table, and the flags the ladder's steps name
	# (--ipc=host there is Docker's, not vLLM's).
	grep -o '"--[a-z0-9-]*"' "$ROOT/lib/vllm.c" | tr -d '"'
	grep -o -- '--[a-z][a-z0-9-]*' "$ROOT/lib/ladder.c" | grep -vx -- --ipc
}

@test "vllm flags: the man page's table lists every flag that can be emitted, and no other" {
	run -0 man_flags
	[[ ${#lines[@]} -ge 10 ]] || fail "no table found: $output"
	man=$output
	emitted_flags >"$BATS_TEST_TMPDIR/emitted"
	grep -q -- --enforce-eager "$BATS_TEST_TMPDIR/emitted"
	grep -q -- --tool-call-parser "$BATS_TEST_TMPDIR/emitted"
	emitted=$(sort -u "$BATS_TEST_TMPDIR/emitted")
	missing=$(comm -23 <(echo "$emitted") <(echo "$man"))
	[[ -z $missing ]] || fail "emitted but not in lc-cloudinit(1)'s VLLM FLAGS: $missing"
	stale=$(comm -13 <(echo "$emitted") <(echo "$man"))
	[[ -z $stale ]] || fail "in lc-cloudinit(1)'s VLLM FLAGS but never emitted: $stale"
}

@test "vllm flags: the pinned image in the man page and docs is LC_VLLM_IMAGE's default" {
	run -0 lc-cloudinit -q -N t
	def=$(jq -r .vllm_image <<<"$output")
	[[ $def == vllm/vllm-openai:v* ]] || fail "default: $def"
	pin=$(sed -n '/^\.Sh VLLM FLAGS/,/^\.Sh [^V]/p' "$MAN" |
	    sed -n 's/^\.Cm \(vllm\/vllm-openai:[^ ]*\).*/\1/p' | head -n 1)
	[[ $pin == "$def" ]] || fail "lc-cloudinit(1) pins '$pin', the default is '$def'"
	# Every pinned tag the docs name is the same one.
	others=$(grep -ho 'vllm/vllm-openai:v[0-9][0-9.a-z]*[0-9a-z]' \
	    "$ROOT"/man/* "$ROOT/README.md" | sort -u | grep -vxF "$def" || true)
	[[ -z $others ]] || fail "docs name another pin: $others"
	# The C code holds the pin once: LC_VLLM_IMAGE's default.
	run -0 grep -rl 'vllm/vllm-openai:v[0-9]' "$ROOT"/lib "$ROOT"/bin \
	    --include='*.c' --include='*.h'
	[[ $output == "$ROOT/lib/config.c" ]] || fail "pin held in: $output"
}
