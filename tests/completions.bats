#!/usr/bin/env bats
# Every long option a tool's --help shows is completed by bash, zsh and fish.
load helpers/common

# _files TOOL: the three completion files of a tool.
_files() {
	printf '%s\n' "$REPO/completions/bash/$1" "$REPO/completions/zsh/_$1" \
		"$REPO/completions/fish/$1.fish"
}

@test "completions: each tool has a bash, zsh and fish file" {
	local t f
	for t in "$REPO"/bin/*.c; do
		t=$(basename "$t" .c)
		while read -r f; do
			[[ -f $f ]] || fail "$t: missing $f"
		done < <(_files "$t")
	done
}

@test "completions: every long option in --help appears in all three" {
	local t opt f missing=()
	for t in "$REPO"/bin/*.c; do
		t=$(basename "$t" .c)
		[[ -x $REPO/bin/$t ]] || fail "$t is not built"
		while read -r opt; do
			while read -r f; do
				[[ -f $f ]] || continue
				if [[ $f == *.fish ]]; then
					grep -qE -- "(-l ${opt#--}\b|${opt}\b)" "$f" || missing+=("$t $opt ${f##*/}")
				else
					grep -qE -- "${opt}\b" "$f" || missing+=("$t $opt ${f##*/}")
				fi
			done < <(_files "$t")
		done < <("$REPO/bin/$t" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u)
	done
	((${#missing[@]} == 0)) || fail "not completed: ${missing[*]}"
}

@test "completions: bash completes live session names for coder" {
	put_session dev '{"state":"ready"}'
	put_session test2 '{"state":"ready"}'
	# shellcheck source=/dev/null
	source "$REPO/completions/bash/coder"
	COMP_WORDS=(coder down "")
	COMP_CWORD=2
	_coder
	[[ " ${COMPREPLY[*]} " == *" dev "* && " ${COMPREPLY[*]} " == *" test2 "* ]]
}

@test "completions: the bash files are valid bash" {
	local f
	for f in "$REPO"/completions/bash/*; do
		bash -n "$f" || fail "$f"
	done
}

# coder_verbs: the verbs coder help lists.
coder_verbs() {
	coder help | sed -nE 's/^  ([a-z][a-z-]+)( .*)?$/\1/p'
}

# verb_options VERB: the long options of coder VERB --help's option lines.
verb_options() {
	coder "$1" --help | sed -nE 's/^  -[A-Za-z], (--[a-z][a-z-]+).*/\1/p'
}

@test "completions: each coder verb's options complete after that verb (bash), and in fish and zsh" {
	local verb opt missing=()
	# shellcheck source=/dev/null
	source "$REPO/completions/bash/coder"
	[[ $(coder_verbs | wc -l) -ge 20 ]]
	while read -r verb; do
		COMP_WORDS=(coder "$verb" --)
		COMP_CWORD=2
		COMPREPLY=()
		_coder
		while read -r opt; do
			[[ " ${COMPREPLY[*]} " == *" $opt "* ]] || missing+=("bash:$verb:$opt")
			grep -E "__fish_seen_subcommand_from ([^\"]*\b$verb\b|\\\$verbs\").* -l ${opt#--}( |$)" \
				"$REPO/completions/fish/coder.fish" >/dev/null || missing+=("fish:$verb:$opt")
			grep -qE -- "'$opt\[" "$REPO/completions/zsh/_coder" || missing+=("zsh:$verb:$opt")
		done < <(verb_options "$verb")
	done < <(coder_verbs)
	((${#missing[@]} == 0)) || fail "not completed: ${missing[*]}"
}
