#!/usr/bin/env bats
# Every error code is named once, in lib/errcodes.tsv (code, meaning, what
# to do), and the sources and man pages are checked against it: a code the
# C can emit is in the table, a code in the table is emitted somewhere,
# lc-records(5)'s ERROR CODES section is the table, and every code a
# tool's page names is in it.
load helpers/common

TABLE=$REPO/lib/errcodes.tsv

# The C files that make records.
sources() {
	printf '%s\n' "$REPO"/bin/*.c "$REPO"/lib/*.c "$REPO"/libexec/*.c
}

# The codes the C files can emit, one a line.
used_codes() {
	local -a files
	mapfile -t files < <(sources)
	perl "$REPO/tests/helpers/errcodes-used.pl" "${files[@]}"
}

@test "errcodes: each line of the table is a code, a meaning and what to do, codes once and sorted" {
	run -0 awk -F'\t' 'NF != 3 || $1 !~ /^[a-z][a-z0-9_]*$/ ||
	    $2 !~ /[.]$/ || $3 !~ /[.]$/ || $2 ~ /^[.\047]/ || $3 ~ /^[.\047]/ ||
	    /\\/ { print NR ": " $0 }' "$TABLE"
	[[ -z $output ]] || fail "malformed lines in lib/errcodes.tsv: $output"
	run -0 cut -f1 "$TABLE"
	[[ $output == "$(cut -f1 "$TABLE" | LC_ALL=C sort -u)" ]] ||
		fail "lib/errcodes.tsv: codes repeated or out of order"
	(( $(wc -l <"$TABLE") >= 60 ))
}

@test "errcodes: every code the tools can emit is in the table" {
	run -0 used_codes
	local unknown
	unknown=$(grep '^?' <<<"$output" || true)
	[[ -z $unknown ]] || fail "a code argument of a form the check does not know: $unknown"
	(( $(wc -l <<<"$output") >= 60 )) || fail "too few codes found: $output"
	local missing
	missing=$(LC_ALL=C comm -23 <(LC_ALL=C sort <<<"$output") \
	    <(cut -f1 "$TABLE" | LC_ALL=C sort))
	[[ -z $missing ]] || fail "emitted but not in lib/errcodes.tsv: $missing"
}

@test "errcodes: every code in the table is emitted somewhere" {
	run -0 used_codes
	local unused
	unused=$(LC_ALL=C comm -13 <(LC_ALL=C sort <<<"$output") \
	    <(cut -f1 "$TABLE" | LC_ALL=C sort))
	[[ -z $unused ]] || fail "in lib/errcodes.tsv but emitted nowhere: $unused"
}

@test "errcodes: the check sees literal, chosen and passed-on codes, and flags a new form" {
	cat >x.c <<-'EOT'
	static jv
	f(int a, const char *code)
	{
		if (a)
			return lc_errorf("lit_code", "%s", lc_str(r, "not_a_code"));
		if (a > 1)
			return lc_errorf(a > 2 ? "one_code" : "two_code", "x");
		if (a > 3)
			return lc_errorf(lc_error_code(e), "again");
		return lc_errorf(mystery(a), "%d", a);
	}
	EOT
	run -0 perl "$REPO/tests/helpers/errcodes-used.pl" x.c
	[[ $output == *"lit_code"* && $output == *"one_code"* &&
	    $output == *"two_code"* ]]
	[[ $output != *"not_a_code"* ]]
	[[ $output == *"? x.c: mystery(a)"* ]]
	[[ $output != *"? x.c: lc_error_code"* ]]
}

@test "errcodes: lc-records(5) lists the table as its ERROR CODES section" {
	local want have
	want=$("$REPO/tests/helpers/errcodes-mdoc" "$TABLE")
	have=$(awk '/^\.Sh ERROR CODES$/ { on = 1 } on && /^\.Sh / &&
	    !/ERROR CODES/ { exit } on' "$REPO/man/lc-records.5")
	[[ -n $have ]] || fail "man/lc-records.5 has no ERROR CODES section"
	[[ $have == "$want" ]] ||
		fail "man/lc-records.5's ERROR CODES differ from lib/errcodes.tsv: run make errcodes-man
$(diff <(echo "$want") <(echo "$have"))"
}

@test "errcodes: every code a tool's page names is in the table" {
	run -0 perl "$REPO/tests/helpers/errcodes-in-man.pl" "$REPO"/man/*.1 \
	    "$REPO"/man/lc.7
	(( $(wc -l <<<"$output") >= 40 )) || fail "too few codes found: $output"
	local loc word bad=
	while read -r loc word; do
		if [[ $word == *'*' ]]; then
			grep -q "^${word%\*}" "$TABLE" || bad+=" $loc $word"
		else
			cut -f1 "$TABLE" | grep -qx "$word" || bad+=" $loc $word"
		fi
	done <<<"$output"
	[[ -z $bad ]] || fail "named in a man page but not in lib/errcodes.tsv:$bad"
}

@test "errcodes: the man-page check finds a code in each kind of passage" {
	cat >x.1 <<-'EOT'
	.Sh OUTPUT
	.Cm not_seen
	Error codes:
	.Bl -tag
	.It Cm head_code
	body with
	.Cm a_field
	.El
	.Pp
	with one of the codes of
	.Xr lc-ssh 1 :
	.Cm flat_code , other_code ;
	.Pp
	.Cm after_pp
	.Sh DIAGNOSTICS
	.Bl -tag
	.It bare_code
	text
	.El
	EOT
	run -0 perl "$REPO/tests/helpers/errcodes-in-man.pl" x.1
	[[ $(cut -d' ' -f2 <<<"$output" | tr '\n' ' ') == \
	    "head_code flat_code other_code bare_code " ]] || fail "got: $output"
}
