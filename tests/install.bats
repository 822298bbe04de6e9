#!/usr/bin/env bats
# make install / uninstall honour PREFIX and DESTDIR.
load helpers/common

@test "install: binaries, the lc-sessions helper, man pages, presets and completions under DESTDIR/PREFIX; uninstall removes them" {
	local d=$BATS_TEST_TMPDIR/root
	run -0 make -s -C "$REPO" install DESTDIR="$d" PREFIX=/opt/lc
	local t
	for t in "$REPO"/bin/*.c; do
		t=$(basename "$t" .c)
		[[ -x $d/opt/lc/bin/$t ]] || fail "no $t"
		[[ -f $d/opt/lc/share/man/man1/$t.1 ]] || fail "no $t.1"
		[[ -f $d/opt/lc/share/bash-completion/completions/$t ]] || fail "no bash completion for $t"
	done
	[[ -x $d/opt/lc/libexec/linode-coder/lc-sessions-api ]] || fail "no lc-sessions-api"
	# The installed lc-sessions finds its installed helper: without a
	# token the helper, not a missing program, is what complains.
	run -3 --separate-stderr env -u LINODE_TOKEN -u LINODE_CLI_TOKEN \
		"$d/opt/lc/bin/lc-sessions" reconcile
	[[ $stderr == *token* && $stderr != *"cannot run"* ]] || fail "$stderr"
	[[ -f $d/opt/lc/share/man/man7/lc.7 && -f $d/opt/lc/share/man/man5/lc-records.5 ]]
	[[ -f $d/opt/lc/share/zsh/site-functions/_coder && -f $d/opt/lc/share/fish/vendor_completions.d/coder.fish ]]
	run -0 make -s -C "$REPO" uninstall DESTDIR="$d" PREFIX=/opt/lc
	[[ -z $(find "$d" -type f) ]] || fail "left behind: $(find "$d" -type f)"
}
