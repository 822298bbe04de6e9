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
	for t in coder lc-account lc-cloudinit lc-create lc-destroy lc-gpuprobe \
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
