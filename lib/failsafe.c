/* failsafe: the VM's own deadline guard: its files, its token, arming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "failsafe.h"
#include "lc.h"
#include "lctime.h"
#include "linode.h"
#include "remote.h"

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

/* Write stdin's first line to the deadline file and the rest, when any,
 * to failsafe.env: root-only, each by rename. */
static const char push_body[] =
    "umask 077\n"
    "d=\"${LC_REMOTE_ROOT%/}/etc/linode-coder\"\n"
    "mkdir -p \"$d\"\n"
    "IFS= read -r dl\n"
    "printf '%s\\n' \"$dl\" >\"$d/deadline.tmp\"\n"
    "if [ \"${1:-}\" = env ]; then\n"
    "\tcat >\"$d/failsafe.env.tmp\"\n"
    "\tchmod 600 \"$d/failsafe.env.tmp\"\n"
    "\tmv \"$d/failsafe.env.tmp\" \"$d/failsafe.env\"\n"
    "fi\n"
    "mv \"$d/deadline.tmp\" \"$d/deadline\"\n";

/* Run the push script with input; with_env: failsafe.env too. */
static int
push(struct lc_ssh *s, struct lc_config *cfg, jv rec, const char *input,
    int with_env, jv *err)
{
	static const char *const needs[] = { "mkdir", "cat", "mv", "chmod",
	    NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	struct lc_buf body = LC_BUF_INIT;
	char *script;
	int rc = -1;

	lc_buf_addstr(&body, with_env ? "set -- env\n" : "set --\n");
	lc_buf_addstr(&body, push_body);
	script = lc_remote_script(cfg, rec, needs, body.data, 0);
	if (lc_ssh_run(s, script, input, strlen(input), 30000, &res,
	    err) == 0) {
		if (res.status == 0)
			rc = 0;
		else
			*err = lc_errorf("failsafe", "pushing the fail-safe "
			    "files failed (exit %d): %.200s", res.status,
			    res.err.data ? res.err.data : "");
	}
	lc_ssh_result_free(&res);
	lc_buf_free(&body);
	free(script);
	return rc;
}

static time_t
tfield(jv rec, const char *key)
{
	const char *s = lc_str(rec, key);
	time_t t;

	return s != NULL && lc_time_parse(s, &t) == 0 ? t : 0;
}

int
lc_failsafe_push_deadline(struct lc_ssh *s, struct lc_config *cfg, jv rec,
    jv *err)
{
	char line[32];

	lc_failsafe_deadline(tfield(rec, "deadline_at"), line, sizeof(line));
	return push(s, cfg, rec, line, 0, err);
}

/* The token for the VM: POST /profile/tokens. Returns owned or error. */
static jv
mint(struct lc_http *h, struct lc_config *cfg, jv rec)
{
	time_t created = tfield(rec, "created_at"), dl = tfield(rec,
	    "deadline_at"), latest;
	long max_s = 0;
	jv e = jv_invalid();

	if (lc_config_duration(cfg, "LC_MAX_DEADLINE", &max_s, &e) == -1) {
		jv_free(e);
		max_s = 0;
	}
	latest = created != 0 && max_s > 0 ? created + max_s : dl;
	if (latest < dl)
		latest = dl;
	return lc_linode_call(h, "POST", "/profile/tokens", jv_null(),
	    lc_failsafe_token_body(lc_subject(rec), latest), LC_HTTP_ONCE);
}

/* Wipe a jv string's bytes (a token) before it is freed. Borrows. */
static void
wipe(jv obj, const char *key)
{
	const char *s = lc_str(obj, key);

	if (s != NULL)
		memset((char *)s, 0, strlen(s));
}

int
lc_failsafe_arm(struct lc_http *h, struct lc_config *cfg, jv *rec, jv *err)
{
	const char *code;
	struct lc_buf in = LC_BUF_INIT;
	struct lc_ssh *s = NULL;
	char line[32], *env = NULL;
	int rc = -1;
	jv tok;

	if (tfield(*rec, "deadline_at") == 0)
		return 1;
	tok = mint(h, cfg, *rec);
	if (!jv_is_valid(tok)) {
		code = lc_error_code(tok);
		if (strcmp(code, "api_forbidden") == 0 ||
		    strcmp(code, "api_auth") == 0) {
			jv_free(tok);
			*rec = jv_object_set(*rec, jv_string("failsafe"),
			    jv_string("unavailable"));
			return 1;
		}
		*err = tok;
		return -1;
	}
	env = lc_str(tok, "token") ? lc_failsafe_env(lc_str(tok, "token"),
	    lc_num(*rec, "linode_id", 0), lc_config_get(cfg, "LC_API_URL")) :
	    NULL;
	lc_failsafe_deadline(tfield(*rec, "deadline_at"), line, sizeof(line));
	if (env == NULL)
		*err = lc_errorf("failsafe", "the API's token cannot be "
		    "written to failsafe.env");
	else if (lc_buf_addstr(&in, line) == 0 && lc_buf_addstr(&in, env) ==
	    0 && (s = lc_ssh_open(cfg, *rec, 0, 60000, err)) != NULL &&
	    push(s, cfg, *rec, in.data, 1, err) == 0)
		rc = 0;
	if (rc == 0) {
		*rec = jv_object_set(*rec, jv_string("failsafe"),
		    jv_string("armed"));
		*rec = jv_object_set(*rec, jv_string("failsafe_token_id"),
		    lc_get(tok, "id"));
		*rec = jv_object_set(*rec, jv_string("failsafe_deadline_at"),
		    lc_get(*rec, "deadline_at"));
	} else if (lc_num(tok, "id", 0) > 0) {
		jv t = jv_object_set(jv_object(), jv_string("failsafe_token_id"),
		    lc_get(tok, "id")), e = jv_invalid();

		lc_failsafe_revoke(h, t, &e);	/* best effort */
		jv_free(e);
		jv_free(t);
	}
	lc_ssh_close(s);
	if (in.data != NULL)
		memset(in.data, 0, in.len);
	lc_buf_free(&in);
	if (env != NULL)
		memset(env, 0, strlen(env));
	free(env);
	wipe(tok, "token");
	jv_free(tok);
	return rc;
}

int
lc_failsafe_revoke(struct lc_http *h, jv rec, jv *err)
{
	double id = lc_num(rec, "failsafe_token_id", 0);
	char path[64];
	jv r;

	if (id <= 0)
		return 0;
	snprintf(path, sizeof(path), "/profile/tokens/%.0f", id);
	r = lc_linode_delete(h, path);
	if (!jv_is_valid(r)) {
		*err = r;
		return -1;
	}
	jv_free(r);
	return 0;
}
