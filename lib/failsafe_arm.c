/*
 * failsafe_arm: the I/O half of lib/failsafe (see failsafe.h): make the
 * VM's token, push its files over SSH, re-arm it when the deadline moves,
 * read the VM's status, revoke the token. Apart from failsafe.c so that
 * tools without libcurl and libssh2 can use the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jv.h>

#include "failsafe.h"
#include "lc.h"
#include "lctime.h"
#include "linode.h"
#include "remote.h"
#include "session.h"
#include "vllm.h"

/*
 * Write the files on stdin, each "@file NAME" and its lines, as
 * etc/linode-coder/NAME: root-only, each by rename once all are written.
 */
static const char push_body[] =
    "umask 077\n"
    "d=\"${LC_REMOTE_ROOT%/}/etc/linode-coder\"\n"
    "mkdir -p \"$d\"\n"
    "names=$(awk -v d=\"$d\" '/^@file [a-z_.]+$/ { if (f != \"\") "
    "close(f); f = d \"/\" $2 \".tmp\"; printf \"\" >f; print $2; next }\n"
    "\tf != \"\" { print >f }')\n"
    "for n in $names; do mv \"$d/$n.tmp\" \"$d/$n\"; done\n";

/*
 * Push the client's activity time on stdin (when there is one and the
 * idle guard is on, and it is later than what the VM has), then print
 * the VM's status line.
 */
static const char sync_body[] =
    "d=\"${LC_REMOTE_ROOT%/}/etc/linode-coder\"\n"
    "v=\"${LC_REMOTE_ROOT%/}/var/lib/linode-coder\"\n"
    "IFS= read -r t || :\n"
    "old=$(head -n 1 \"$d/last_activity\" 2>/dev/null || :)\n"
    "case $old in ''|*[!0-9]*) old=0 ;; esac\n"
    "case $t in ''|*[!0-9]*) ;; *)\n"
    "\tif [ -f \"$d/idle\" ] && [ \"$t\" -gt \"$old\" ]; then\n"
    "\t\tumask 077\n"
    "\t\techo \"$t\" >\"$d/last_activity.tmp\"\n"
    "\t\tmv \"$d/last_activity.tmp\" \"$d/last_activity\"\n"
    "\tfi ;;\n"
    "esac\n"
    "cat \"$v/failsafe.status\" 2>/dev/null || :\n";

/* Run body on the VM with input; its stdout into *out when not NULL. */
static int
run_body(struct lc_ssh *s, struct lc_config *cfg, jv rec, const char *body,
    const char *input, struct lc_buf *out, jv *err)
{
	static const char *const needs[] = { "mkdir", "mv", "awk", "head",
	    NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	char *script = lc_remote_script(cfg, rec, needs, body, 0);
	int rc = -1;

	if (lc_ssh_run(s, script, input, strlen(input), 30000, &res,
	    err) == 0) {
		if (res.status == 0) {
			rc = 0;
			if (out != NULL && res.out.data != NULL)
				lc_buf_add(out, res.out.data, res.out.len);
		} else
			*err = lc_errorf("failsafe", "the fail-safe files on "
			    "the VM: exit %d: %.200s", res.status,
			    res.err.data ? res.err.data : "");
	}
	lc_ssh_result_free(&res);
	free(script);
	return rc;
}

/* One file for push_body. -1: memory. */
static int
add_file(struct lc_buf *b, const char *name, const char *text)
{
	return lc_buf_printf(b, "@file %s\n", name) == -1 ||
	    lc_buf_addstr(b, text) == -1 ? -1 : 0;
}

static time_t
tfield(jv rec, const char *key)
{
	const char *s = lc_str(rec, key);
	time_t t;

	return s != NULL && lc_time_parse(s, &t) == 0 ? t : 0;
}

/* A duration: the record's own key, else the config's. */
static long
limit_s(struct lc_config *cfg, jv rec, const char *key, const char *cfgkey)
{
	long v = (long)lc_num(rec, key, -1);
	jv e = jv_invalid();

	if (v < 0 && lc_config_duration(cfg, cfgkey, &v, &e) == -1)
		v = 1800;
	jv_free(e);
	return v;
}

/* Is config key (on by default) turned off? Only a clear "off" (or no,
 * false, 0) is: a typo must not take the guard away. */
static int
turned_off(struct lc_config *cfg, const char *key)
{
	static const char *const no[] = { "off", "no", "false", "0", NULL };
	const char *v = lc_config_get(cfg, key);
	int i;

	for (i = 0; v != NULL && no[i] != NULL; i++)
		if (strcasecmp(v, no[i]) == 0)
			return 1;
	return 0;
}

/* Wipe a jv string's bytes (a token) before it is freed. Borrows. */
static void
wipe(jv obj, const char *key)
{
	const char *s = lc_str(obj, key);

	if (s != NULL)
		memset((char *)s, 0, strlen(s));
}

/* Revoke token id, best effort. */
static void
revoke_id(struct lc_http *h, jv id)
{
	jv t = jv_object_set(jv_object(), jv_string("failsafe_token_id"), id),
	    e = jv_invalid();

	lc_failsafe_revoke(h, t, &e);
	jv_free(e);
	jv_free(t);
}

/*
 * Make a token that expires with rec's deadline_at and push it, the
 * deadline and extra (more "@file" sections, or "") on s. Returns the
 * fields for the record (failsafe_token_id, failsafe_deadline_at,
 * failsafe_expires_at), or an error value; a token made before a failed
 * push is revoked again. Borrows.
 */
/*
 * A group's head (lc-create --nodes) deletes its workers too at the
 * deadline: their ids in LC_GROUP_IDS after env (consumed, malloc'd).
 * Returns the new text, or NULL.
 */
static char *
group_ids(char *env, jv rec)
{
	jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes");
	struct lc_buf b = LC_BUF_INIT;
	int n = 0;

	if (env == NULL || jv_get_kind(nodes) != JV_KIND_ARRAY) {
		jv_free(nodes);
		jv_free(g);
		return env;
	}
	lc_buf_addstr(&b, env);
	lc_buf_addstr(&b, "LC_GROUP_IDS='");
	jv_array_foreach(nodes, i, node) {
		if (i > 0 && lc_num(node, "linode_id", 0) > 0)
			lc_buf_printf(&b, "%s%.0f", n++ ? " " : "",
			    lc_num(node, "linode_id", 0));
		jv_free(node);
	}
	lc_buf_addstr(&b, "'\n");
	jv_free(nodes);
	jv_free(g);
	memset(env, 0, strlen(env));
	free(env);
	return b.data;
}

/* Wipe and free what a push held: its input and the env text (a token). */
static void
wipe_push(struct lc_buf *in, char *env)
{
	if (in->data != NULL)
		memset(in->data, 0, in->len);
	lc_buf_free(in);
	if (env != NULL)
		memset(env, 0, strlen(env));
	free(env);
}

/*
 * Each worker of a group carries the deadline too, with its own
 * LINODE_ID and the same token, so that a worker whose head is gone
 * still deletes itself then. No idle guard there: activity is the head's
 * (its /metrics), and the head takes its workers when idle. Best effort:
 * a worker that cannot be reached is named, and the head's guard and
 * lc-watch still delete it.
 */
static void
arm_workers(struct lc_config *cfg, jv rec, const char *token,
    const char *line)
{
	int i, n = (int)lc_num(rec, "nodes", 1);

	for (i = 1; i < n && token != NULL; i++) {
		jv node = lc_session_node(rec, i), err = jv_invalid();
		struct lc_buf in = LC_BUF_INIT;
		struct lc_ssh *s = NULL;
		char *env = NULL;
		int rc = -1;

		if (jv_get_kind(node) != JV_KIND_OBJECT)
			err = lc_errorf("failsafe", "it has no address");
		else if ((env = lc_failsafe_env(token, lc_num(node,
		    "linode_id", 0), lc_config_get(cfg, "LC_API_URL"))) ==
		    NULL)
			err = lc_errorf("failsafe", "the API's token cannot be "
			    "written to failsafe.env");
		else if (add_file(&in, "failsafe.env", env) == -1 ||
		    add_file(&in, "deadline", line) == -1)
			err = lc_errorf("nomem", "out of memory");
		else if ((s = lc_ssh_open(cfg, node, 0, 60000, &err)) != NULL)
			rc = run_body(s, cfg, node, push_body, in.data, NULL,
			    &err);
		if (rc == -1) {
			char *m = lc_error_message(err);

			lc_warnx("%s: node %d (VM %.0f) does not carry the "
			    "deadline itself (%s): the head's guard and lc-watch "
			    "still delete it", lc_subject(rec), i + 1,
			    lc_num(node, "linode_id", 0), m);
			free(m);
		}
		lc_ssh_close(s);
		wipe_push(&in, env);
		jv_free(err);
		jv_free(node);
	}
}

static jv
install(struct lc_http *h, struct lc_ssh *s, struct lc_config *cfg, jv rec,
    const char *extra)
{
	time_t dl = tfield(rec, "deadline_at");
	struct lc_buf in = LC_BUF_INIT;
	char line[32], ts[32], *env = NULL;
	jv tok, err = jv_invalid(), out;

	tok = lc_linode_call(h, "POST", "/profile/tokens", jv_null(),
	    lc_failsafe_token_body(lc_subject(rec), dl), LC_HTTP_ONCE);
	if (!jv_is_valid(tok))
		return tok;
	if (lc_str(tok, "token") != NULL)
		env = group_ids(lc_failsafe_env(lc_str(tok, "token"),
		    lc_num(rec, "linode_id", 0), lc_config_get(cfg,
		    "LC_API_URL")), rec);
	lc_failsafe_deadline(dl, line, sizeof(line));
	if (env == NULL)
		err = lc_errorf("failsafe", "the API's token cannot be "
		    "written to failsafe.env");
	else if (add_file(&in, "failsafe.env", env) == -1 ||
	    lc_buf_addstr(&in, extra) == -1 ||
	    add_file(&in, "deadline", line) == -1)
		err = lc_errorf("nomem", "out of memory");
	else if (run_body(s, cfg, rec, push_body, in.data, NULL, &err) == 0)
		err = jv_null();
	if (jv_get_kind(err) == JV_KIND_NULL)
		arm_workers(cfg, rec, lc_str(tok, "token"), line);
	if (jv_get_kind(err) == JV_KIND_NULL)
		out = JV_OBJECT(jv_string("failsafe_token_id"),
		    lc_get(tok, "id"), jv_string("failsafe_deadline_at"),
		    lc_get(rec, "deadline_at"), jv_string("failsafe_expires_at"),
		    jv_string(lc_time_fmt(dl + LC_FAILSAFE_GRACE_S, ts,
		    sizeof(ts))));
	else {
		if (lc_num(tok, "id", 0) > 0)
			revoke_id(h, lc_get(tok, "id"));
		out = err;
	}
	wipe_push(&in, env);
	wipe(tok, "token");
	jv_free(tok);
	return out;
}

/* The idle guard's files for the VM, into b; 1 when the guard is on. */
static int
idle_files(struct lc_config *cfg, jv rec, time_t now, struct lc_buf *b)
{
	char text[160], t[32];
	time_t act = lc_failsafe_activity(rec);

	if (turned_off(cfg, "LC_VM_IDLE_GUARD"))
		return 0;
	lc_failsafe_idle(limit_s(cfg, rec, "idle_timeout_s",
	    "LC_IDLE_TIMEOUT"), limit_s(cfg, rec, "ready_timeout_s",
	    "LC_READY_TIMEOUT"), lc_vllm_port(rec), text, sizeof(text));
	snprintf(t, sizeof(t), "%lld\n", (long long)(act > now ? act : now));
	add_file(b, "idle", text);
	add_file(b, "last_activity", t);
	return 1;
}

int
lc_failsafe_arm(struct lc_http *h, struct lc_config *cfg, jv *rec, jv *err)
{
	struct lc_buf extra = LC_BUF_INIT;
	struct lc_ssh *s = NULL;
	time_t now = lc_now(), act = lc_failsafe_activity(*rec);
	int guard;
	const char *code;
	char ts[32];
	jv f;

	if (turned_off(cfg, "LC_FAILSAFE")) {
		*rec = jv_object_set(*rec, jv_string("failsafe"),
		    jv_string("off"));
		*rec = jv_object_set(*rec, jv_string("vm_idle_guard"),
		    jv_string("off"));
		return 1;
	}
	if (tfield(*rec, "deadline_at") == 0)
		return 1;
	guard = idle_files(cfg, *rec, now, &extra);
	if ((s = lc_ssh_open(cfg, *rec, 0, 60000, err)) == NULL) {
		lc_buf_free(&extra);
		return -1;
	}
	f = install(h, s, cfg, *rec, extra.data ? extra.data : "");
	lc_ssh_close(s);
	lc_buf_free(&extra);
	if (!jv_is_valid(f)) {
		code = lc_error_code(f);
		if (strcmp(code, "api_forbidden") == 0 ||
		    strcmp(code, "api_auth") == 0) {
			jv_free(f);
			*rec = jv_object_set(*rec, jv_string("failsafe"),
			    jv_string("unavailable"));
			return 1;
		}
		*err = f;
		return -1;
	}
	f = jv_object_set(f, jv_string("failsafe"), jv_string("armed"));
	f = jv_object_set(f, jv_string("vm_idle_guard"),
	    jv_string(guard ? "on" : "off"));
	if (guard)
		f = jv_object_set(f, jv_string("vm_activity_at"),
		    jv_string(lc_time_fmt(act > now ? act : now, ts,
		    sizeof(ts))));
	jv_object_foreach(f, k, v)
		*rec = jv_object_set(*rec, k, v);
	jv_free(f);
	return 0;
}

jv
lc_failsafe_rearm(struct lc_http *h, struct lc_ssh *s, struct lc_config *cfg,
    jv rec, char **warn)
{
	jv f = install(h, s, cfg, rec, ""), e = jv_invalid();

	*warn = NULL;
	if (jv_is_valid(f) && lc_failsafe_revoke(h, rec, &e) == -1) {
		char *m = lc_error_message(e);

		*warn = lc_xstrdup(m);
		free(m);
	}
	jv_free(e);
	return f;
}

jv
lc_failsafe_sync(struct lc_ssh *s, struct lc_config *cfg, jv rec)
{
	const char *g = lc_str(rec, "vm_idle_guard");
	struct lc_buf out = LC_BUF_INIT;
	time_t act = lc_failsafe_activity(rec);
	char line[32] = "\n", ts[32];
	jv err = jv_invalid(), f, st;
	int push = g != NULL && strcmp(g, "on") == 0 && act > tfield(rec,
	    "vm_activity_at");

	if (push)
		snprintf(line, sizeof(line), "%lld\n", (long long)act);
	if (run_body(s, cfg, rec, sync_body, line, &out, &err) == -1) {
		lc_buf_free(&out);
		return err;
	}
	jv_free(err);
	st = out.len > 0 ? jv_parse_sized(out.data, (int)out.len) : jv_null();
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		jv_free(st);
		st = jv_null();
	}
	lc_buf_free(&out);
	f = jv_object_set(jv_object(), jv_string("vm_guard"), st);
	if (push)
		f = jv_object_set(f, jv_string("vm_activity_at"),
		    jv_string(lc_time_fmt(act, ts, sizeof(ts))));
	return f;
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
