#!/usr/bin/env bats
# Every tool's --help starts with the same synopsis as its man page.
load helpers/common

# usage_of TOOL: the usage lines of TOOL --help, one form a line, with
# continuation lines joined and runs of blanks squeezed.
usage_of() {
	"$1" --help | awk -v t="$1" '
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
