# shellcheck shell=bash
#
# tests/helpers/failsafe.bash: the VM's own guard (lib/failsafe) as the tests
# drive it. build_failsafe_print (for setup_file) compiles a small program
# against lib/liblc.a that prints the library's script, units, token body
# and env file, and arms a session record (lc_failsafe_arm, as lc-create
# does); print runs it. What is tested is what lc-cloudinit ships.

build_failsafe_print() {
	# A small program that prints the library's files and token body.
	cat >"$BATS_FILE_TMPDIR/print.c" <<-'EOF'
	#include <stdio.h>
	#include <string.h>
	#include <stdlib.h>
	#include "failsafe.h"
	#include "linode.h"
	int
	main(int argc, char **argv)
	{
		if (argc < 2)
			return 2;
		if (strcmp(argv[1], "script") == 0)
			fputs(lc_failsafe_script, stdout);
		else if (strcmp(argv[1], "service") == 0)
			fputs(lc_failsafe_service, stdout);
		else if (strcmp(argv[1], "timer") == 0)
			fputs(lc_failsafe_timer, stdout);
		else if (strcmp(argv[1], "body") == 0) {
			jv b = lc_failsafe_token_body(argv[2], atol(argv[3]));
			jv s = jv_dump_string(b, 0);
			puts(jv_string_value(s));
			jv_free(s);
		} else if (strcmp(argv[1], "env") == 0) {
			char *e = lc_failsafe_env(argv[2], atof(argv[3]), argv[4]);
			if (e == NULL)
				return 1;
			fputs(e, stdout);
			free(e);
		} else if (strcmp(argv[1], "arm") == 0) {
			/* arm: a session record on stdin, armed on stdout. */
			char buf[65536];
			size_t n = fread(buf, 1, sizeof(buf) - 1, stdin);
			jv rec, err = jv_invalid();
			struct lc_config *cfg;
			struct lc_http_opts o;
			struct lc_http *h;
			char *tok;
			int rc;

			buf[n] = '\0';
			rec = jv_parse(buf);
			if ((cfg = lc_config_load(&err)) == NULL ||
			    lc_linode_opts(cfg, 1, &o, &tok, &err) == -1)
				return 3;
			lc_http_global_init();
			h = lc_http_new(&o);
			rc = lc_failsafe_arm(h, cfg, &rec, &err);
			if (rc == -1) {
				char *m = lc_error_message(err);
				fprintf(stderr, "%s\n", m);
				free(m);
			}
			jv_free(err);
			rec = jv_object_set(rec, jv_string("rc"), jv_number(rc));
			jv s = jv_dump_string(rec, 0);
			puts(jv_string_value(s));
			jv_free(s);
			lc_http_free(h);
			lc_linode_token_free(tok);
			lc_config_free(cfg);
		} else
			return 2;
		return 0;
	}
	EOF
	# Built like the library: with the sanitizers under `make asan`.
	local san=()
	if nm "$REPO/lib/liblc.a" 2>/dev/null | grep -q __asan_init; then
		san=("-fsanitize=address,undefined")
	fi
	"${CC:-cc}" -std=c11 "${san[@]}" -I"$REPO/lib" \
	    -o "$BATS_FILE_TMPDIR/print" "$BATS_FILE_TMPDIR/print.c" \
	    "$REPO/lib/liblc.a" -lcurl -ljq -lssh2 -lpthread -lm
}

print() {
	"$BATS_FILE_TMPDIR/print" "$@"
}
