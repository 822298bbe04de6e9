#!/usr/bin/env bats
# Every tool's --help starts with the same synopsis as its man page.
load helpers/common

# usage_of TOOL: the usage lines of TOOL --help, one form a line, with
# continuation lines joined and runs of blanks squeezed.
usage_of() {
	local -a cmd
	read -ra cmd <<<"$1"
	"${cmd[@]}" --help | awk -v t="$1" '
		/^usage: / { sub(/^usage: /, ""); form = $0; on = 1; next }
		on && /^ *$/ { exit }
		on && $1 == t { print form; form = $0; sub(/^ +/, "", form); next }
		on { sub(/^ +/, " "); form = form $0 }
		END { if (form != "") print form }' | tr -s ' '
}

# synopsis_of PAGE: the SYNOPSIS of a man page, one form a line.
synopsis_of() {
	mandoc -Tascii -Owidth=400 "$1" | sed 's/.\x08//g' | awk '
		/^SYNOPSIS/ { on = 1; next }
		/^[A-Z]/ { on = 0 }
		on && NF { sub(/^ +/, ""); print }' | tr -s ' '
}

@test "every tool's --help usage is its man page's SYNOPSIS" {
	local t bad=0
	for t in coder lc-account lc-bench lc-cloudinit lc-create lc-destroy lc-gpuprobe \
		lc-heal lc-sessions lc-ssh lc-watch; do
		[[ -f $REPO/man/$t.1 ]] || fail "no man page for $t"
		if [[ $(usage_of "$t") != "$(synopsis_of "$REPO/man/$t.1")" ]]; then
			echo "# $t --help:" >&3
			usage_of "$t" | sed 's/^/#   /' >&3
			echo "# man/$t.1:" >&3
			synopsis_of "$REPO/man/$t.1" | sed 's/^/#   /' >&3
			bad=$((bad + 1))
		fi
	done
	((bad == 0))
}

# usage_letters TOOL: the option letters its --help usage names, -h left
# out, sorted, as one word.
usage_letters() {
	"$1" --help | sed -n '/^usage:/,/^$/p' | tr ' []|()' '\n' |
		grep -E '^-[A-Za-z]+$' | sed 's/^-//' | fold -w1 | grep -v '^h$' |
		sort -u | tr -d '\n'
}

# option_lines TOOL: "letter name" for each option line of --help; with
# FLAGS as $2, only the options that take no value.
option_lines() {
	if [[ ${2:-} == FLAGS ]]; then
		"$1" --help | sed -nE 's/^ +-([A-Za-z]), --([a-z0-9-]+)( {2,}.*)?$/\1 \2/p'
	else
		"$1" --help | sed -nE 's/^ +-([A-Za-z]), --([a-z0-9-]+).*/\1 \2/p'
	fi
}

@test "every tool's --help describes each option letter its usage names, and no other" {
	local t bad=0 u h
	for t in lc-account lc-bench lc-cloudinit lc-create lc-destroy lc-gpuprobe \
		lc-heal lc-sessions lc-ssh lc-watch; do
		u=$(usage_letters "$t")
		h=$(option_lines "$t" | cut -d' ' -f1 | grep -v '^h$' | sort -u | tr -d '\n')
		if [[ $u != "$h" ]]; then
			echo "# $t: usage names -$u, the option lines -$h" >&3
			bad=$((bad + 1))
		fi
	done
	((bad == 0))
}

@test "every option without a value that --help shows is taken by letter and by name" {
	local t x name bad=0
	for t in coder lc-account lc-bench lc-cloudinit lc-create lc-destroy lc-gpuprobe \
		lc-heal lc-sessions lc-ssh lc-watch; do
		while read -r x name; do
			# The option, then -h: help, exit 0, whatever it would do.
			if ! "$t" "-$x" -h >/dev/null 2>&1; then
				echo "# $t: -$x is refused" >&3
				bad=$((bad + 1))
			fi
			if ! "$t" "--$name" -h >/dev/null 2>&1; then
				echo "# $t: --$name is refused" >&3
				bad=$((bad + 1))
			fi
		done < <(option_lines "$t" FLAGS)
	done
	((bad == 0))
}

# verb_items: "coder VERB ..." for each verb's item in coder(1), one a
# line: the .It lines of its DESCRIPTION, each rendered on a line of its own.
verb_items() {
	{
		printf '.Dd\n.Dt T 1\n.Os\n.Sh D\n.Bl -ohang\n'
		sed -n '/^\.Sh DESCRIPTION/,/^\.Sh /p' "$REPO/man/coder.1" |
			grep '^\.It Cm ' | sed 's/$/\n-/'
		printf '.El\n'
	} | mandoc -Tascii -Owidth=400 | sed 's/.\x08//g' |
		awk '/^ +[a-z][a-z-]*( |$)/ { sub(/^ +/, ""); print "coder " $0 }' |
		tr -s ' '
}

@test "each coder verb's --help usage is its item in coder(1), and both list the same verbs" {
	local v bad=0 verbs
	verbs=$(coder help | sed -nE 's/^  ([a-z][a-z-]+)( .*)?$/\1/p')
	[[ $(wc -w <<<"$verbs") -ge 20 ]]
	[[ $(verb_items | awk '{print $2}' | sort) == "$(sort <<<"$verbs")" ]] ||
		fail "coder(1) items: $(verb_items | awk '{print $2}' | tr '\n' ' ')"
	for v in $verbs; do
		if [[ $(usage_of "coder $v" 2>/dev/null) != "$(verb_items | grep "^coder $v\( \|$\)")" ]]; then
			echo "# coder $v --help: $(usage_of "coder $v")" >&3
			echo "# coder(1): $(verb_items | grep "^coder $v\( \|$\)")" >&3
			bad=$((bad + 1))
		fi
	done
	((bad == 0))
}

@test "each coder verb's --help describes the option letters its usage names, and each is taken" {
	local v bad=0 u h x name
	for v in $(coder help | sed -nE 's/^  ([a-z][a-z-]+)( .*)?$/\1/p'); do
		u=$(coder "$v" --help | sed -n '/^usage:/,/^$/p' | tr ' []|()' '\n' |
			grep -E '^-[A-Za-z]+$' | sed 's/^-//' | fold -w1 | sort -u | tr -d '\n')
		h=$(coder "$v" --help | sed -nE 's/^ +-([A-Za-z]), --.*/\1/p' | grep -v '^h$' | sort -u | tr -d '\n')
		[[ $u == "$h" ]] || { echo "# coder $v: usage -$u, option lines -$h" >&3; bad=$((bad + 1)); }
		while read -r x name; do
			coder "$v" "-$x" -h >/dev/null 2>&1 || { echo "# coder $v -$x refused" >&3; bad=$((bad + 1)); }
			coder "$v" "--$name" -h >/dev/null 2>&1 || { echo "# coder $v --$name refused" >&3; bad=$((bad + 1)); }
		done < <(coder "$v" --help | sed -nE 's/^ +-([A-Za-z]), --([a-z0-9-]+)( {2,}.*)?$/\1 \2/p')
	done
	((bad == 0))
}
