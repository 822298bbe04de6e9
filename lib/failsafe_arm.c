/*
 * failsafe_arm: the I/O half of lib/failsafe (see failsafe.h): make the
 * VM's token, push its files over SSH, revoke the token. Apart from
 * failsafe.c so that tools without libcurl and libssh2 can use the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "failsafe.h"
#include "lc.h"
#include "lctime.h"
#include "linode.h"
#include "remote.h"

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
