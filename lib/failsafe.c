/*
 * failsafe: the VM's own deadline guard: its files and its token's body.
 * No I/O here, so lc-cloudinit links it without libcurl or libssh2;
 * arming and revoking are in failsafe_arm.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "failsafe.h"
#include "lc.h"
#include "lctime.h"

const char lc_failsafe_script[] =
    "#!/bin/sh\n"
    "# linode-coder fail-safe: delete this VM once its deadline has passed.\n"
    "# Run every minute by " LC_FAILSAFE_TIMER " (from lc-cloudinit).\n"
    "# Reads etc/linode-coder/deadline and failsafe.env under LC_REMOTE_ROOT\n"
    "# (default /), both root-only; does nothing until both exist.\n"
    "# See lc-watch(1), THE ON-VM DEADLINE.\n"
    "set -u\n"
    "dir=${LC_REMOTE_ROOT:-/}\n"
    "dir=${dir%/}/etc/linode-coder\n"
    "me=linode-coder-failsafe\n"
    "[ -r \"$dir/deadline\" ] && [ -r \"$dir/failsafe.env\" ] || exit 0\n"
    "deadline=$(head -n 1 \"$dir/deadline\")\n"
    "case $deadline in\n"
    "'') exit 0 ;;\n"
    "*[!0-9]*)\n"
    "\tdeadline=$(date -u -d \"$deadline\" +%s 2>/dev/null) || {\n"
    "\t\techo \"$me: bad time in $dir/deadline\" >&2\n"
    "\t\texit 1\n"
    "\t} ;;\n"
    "esac\n"
    "[ \"$(date -u +%s)\" -ge \"$deadline\" ] || exit 0\n"
    "LINODE_TOKEN= LINODE_ID= LC_API_URL=\n"
    ". \"$dir/failsafe.env\"\n"
    "if [ -z \"$LINODE_TOKEN\" ] || [ -z \"$LINODE_ID\" ]; then\n"
    "\techo \"$me: $dir/failsafe.env lacks LINODE_TOKEN or LINODE_ID\" >&2\n"
    "\texit 1\n"
    "fi\n"
    "echo \"$me: the deadline has passed: deleting instance $LINODE_ID\" >&2\n"
    "# The token goes to curl on stdin (printf is built in), never in argv.\n"
    "code=$(printf 'header = \"Authorization: Bearer %s\"\\n' "
    "\"$LINODE_TOKEN\" |\n"
    "    curl -sS -K - -o /dev/null -w '%{http_code}' -m 30 -X DELETE \\\n"
    "    \"${LC_API_URL:-https://api.linode.com/v4}/linode/instances/"
    "$LINODE_ID\")\n"
    "case $code in\n"
    "200|204|404) exit 0 ;;\n"
    "esac\n"
    "echo \"$me: the API answered HTTP $code; trying again in a minute\" >&2\n"
    "exit 1\n";

const char lc_failsafe_service[] =
    "[Unit]\n"
    "Description=linode-coder fail-safe: delete this VM at its deadline\n"
    "Wants=network-online.target\n"
    "After=network-online.target\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    "ExecStart=" LC_FAILSAFE_SCRIPT "\n";

const char lc_failsafe_timer[] =
    "[Unit]\n"
    "Description=linode-coder fail-safe: check the deadline every minute\n"
    "\n"
    "[Timer]\n"
    "OnBootSec=30s\n"
    "OnCalendar=*-*-* *:*:00\n"
    "AccuracySec=5s\n"
    "Persistent=true\n"
    "\n"
    "[Install]\n"
    "WantedBy=timers.target\n";

jv
lc_failsafe_token_body(const char *name, time_t deadline)
{
	char label[64], ts[32];

	snprintf(label, sizeof(label), "lc-failsafe-%s", name);
	lc_time_fmt(deadline + LC_FAILSAFE_GRACE_S, ts, sizeof(ts));
	return jv_object_set(jv_object_set(jv_object_set(jv_object(),
	    jv_string("label"), jv_string(label)), jv_string("scopes"),
	    jv_string("linodes:read_write")), jv_string("expiry"),
	    jv_string(ts));
}

/* One NAME='value' line; values with a quote or a newline are refused. */
static int
env_line(struct lc_buf *b, const char *key, const char *val)
{
	if (strpbrk(val, "'\n\r") != NULL)
		return -1;
	return lc_buf_printf(b, "%s='%s'\n", key, val);
}

char *
lc_failsafe_env(const char *token, double linode_id, const char *api_url)
{
	struct lc_buf b = LC_BUF_INIT;
	char id[32];

	snprintf(id, sizeof(id), "%.0f", linode_id);
	if (lc_buf_addstr(&b, "# linode-coder fail-safe (root only)\n") ==
	    -1 || env_line(&b, "LINODE_TOKEN", token) == -1 ||
	    env_line(&b, "LINODE_ID", id) == -1 ||
	    (api_url != NULL && env_line(&b, "LC_API_URL", api_url) == -1)) {
		if (b.data != NULL)
			memset(b.data, 0, b.cap);
		lc_buf_free(&b);
		return NULL;
	}
	return b.data;
}

char *
lc_failsafe_deadline(time_t deadline, char *buf, size_t len)
{
	snprintf(buf, len, "%lld\n", (long long)deadline);
	return buf;
}
