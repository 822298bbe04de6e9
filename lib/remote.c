/* remote: the one builder of commands run on a VM (see remote.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "config.h"
#include "lc.h"
#include "ledger.h"
#include "session.h"
#include "remote.h"
#include "ssh.h"

/* What to check when a program is missing: data, one line each. */
static const struct {
	const char *prog, *hint;
} hints[] = {
	{ "nvidia-smi", "is the driver installed?" },
	{ "docker", "is Docker installed? (cloud-init may still be "
	    "installing it)" },
	{ "systemctl", "is this a systemd machine?" },
	{ "journalctl", "is this a systemd machine?" },
	{ "cloud-init", "is this a cloud-init image?" },
	{ "curl", "is curl installed?" },
	{ NULL, NULL }
};

const char *
lc_remote_hint(const char *prog)
{
	int i;

	for (i = 0; hints[i].prog != NULL; i++)
		if (strcmp(hints[i].prog, prog) == 0)
			return hints[i].hint;
	return "is it installed, and on REMOTE_PATH?";
}

int
lc_remote_quote(struct lc_buf *b, const char *s)
{
	return lc_shquote(b, s);
}

/* A shell variable name? (Others cannot be exported; they are skipped.) */
static int
is_name(const char *name)
{
	const char *p;

	if (!(*name == '_' || (*name >= 'A' && *name <= 'Z') ||
	    (*name >= 'a' && *name <= 'z')))
		return 0;
	for (p = name; *p != '\0'; p++)
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return 0;
	return 1;
}

/* NAME='value'; export NAME */
static void
export_var(struct lc_buf *b, const char *name, const char *val)
{
	if (!is_name(name))
		return;
	lc_buf_printf(b, "%s=", name);
	lc_remote_quote(b, val);
	lc_buf_printf(b, "; export %s\n", name);
}

/* printf 'prefix%s\n' "$VAR" >&2: what the VM has, said on the VM. */
static void
say(struct lc_buf *b, const char *prefix, const char *var)
{
	if (!is_name(var))
		return;
	lc_buf_addstr(b, "printf '%s%s\\n' ");
	lc_remote_quote(b, prefix);
	lc_buf_printf(b, " \"${%s-}\" >&2\n", var);
}

char *
lc_remote_script(struct lc_config *cfg, jv session, const char *const needs[],
    const char *body, int verbose)
{
	struct lc_buf b = LC_BUF_INIT;
	const char *path = lc_config_get(cfg, "REMOTE_PATH");
	const char *root = lc_config_get(cfg, "LC_REMOTE_ROOT");
	const char *name = lc_subject(session);
	jv env = lc_config_remote_env(cfg);
	char line[512];
	int i;

	lc_buf_addstr(&b, "set -eu\n");
	if (path != NULL)
		export_var(&b, "PATH", path);
	export_var(&b, "LC_REMOTE_ROOT", root != NULL ? root : "/");
	jv_object_foreach(env, k, v) {
		if (jv_get_kind(v) == JV_KIND_STRING)
			export_var(&b, jv_string_value(k), jv_string_value(v));
		jv_free(k);
		jv_free(v);
	}
	if (verbose) {
		snprintf(line, sizeof(line), "lc: on %s: PATH=", name);
		say(&b, line, "PATH");
		snprintf(line, sizeof(line), "lc: on %s: LC_REMOTE_ROOT=",
		    name);
		say(&b, line, "LC_REMOTE_ROOT");
		jv_object_foreach(env, k, v) {
			snprintf(line, sizeof(line), "lc: on %s: %s=", name,
			    jv_string_value(k));
			say(&b, line, jv_string_value(k));
			jv_free(k);
			jv_free(v);
		}
	}
	jv_free(env);
	for (i = 0; needs != NULL && needs[i] != NULL; i++) {
		lc_buf_addstr(&b, "command -v ");
		lc_remote_quote(&b, needs[i]);
		lc_buf_addstr(&b, " >/dev/null 2>&1 || { printf '%s\\n' ");
		snprintf(line, sizeof(line), "lc: %s not found on %s: %s",
		    needs[i], name, lc_remote_hint(needs[i]));
		lc_remote_quote(&b, line);
		lc_buf_printf(&b, " >&2; exit %d; }\n", LC_REMOTE_MISSING);
	}
	lc_buf_addstr(&b, body);
	lc_buf_addstr(&b, "\n");
	if (b.data == NULL)
		lc_fatal("out of memory");
	return b.data;
}

char *
lc_remote_argv(struct lc_config *cfg, jv session, const char *const needs[],
    const char *const argv[], int verbose)
{
	struct lc_buf body = LC_BUF_INIT;
	char *script;
	int i;

	lc_buf_addstr(&body, "exec");
	for (i = 0; argv[i] != NULL; i++) {
		lc_buf_addstr(&body, " ");
		lc_remote_quote(&body, argv[i]);
	}
	script = lc_remote_script(cfg, session, needs, body.data, verbose);
	lc_buf_free(&body);
	return script;
}

int
lc_remote_run(struct lc_ssh *s, struct lc_config *cfg, jv session,
    const char *const needs[], const char *const argv[], long timeout_ms,
    struct lc_ssh_result *res, jv *err)
{
	char *script = lc_remote_argv(cfg, session, needs, argv, lc_verbose);
	int rc;

	rc = lc_ssh_run(s, script, NULL, 0, timeout_ms, res, err);
	free(script);
	return rc;
}

char *
lc_remote_path(struct lc_config *cfg, const char *rel)
{
	const char *root = lc_config_get(cfg, "LC_REMOTE_ROOT");
	struct lc_buf b = LC_BUF_INIT;
	size_t n;

	if (root == NULL)
		root = "/";
	while (*rel == '/')
		rel++;
	lc_buf_addstr(&b, root);
	n = b.len;
	while (n > 1 && b.data[n - 1] == '/')
		b.data[--n] = '\0';
	b.len = n;
	if (b.data[n - 1] != '/')
		lc_buf_addstr(&b, "/");
	lc_buf_addstr(&b, rel);
	return b.data;
}

jv
lc_remote_session(jv rec)
{
	struct lc_ledger l = { NULL, -1 };
	const char *name = lc_str(rec, "name");
	jv err = jv_invalid(), stored;

	if (jv_get_kind(rec) != JV_KIND_OBJECT ||
	    jv_object_has(jv_copy(rec), jv_string("ssh")) ||
	    jv_object_has(jv_copy(rec), jv_string("ipv4")))
		return rec;
	if (name == NULL) {
		jv_free(rec);
		return lc_errorf("no_session", "the record has no name, ssh "
		    "or ipv4: which VM is meant?");
	}
	if (lc_name_check(name, &err) == -1 ||
	    lc_ledger_open(&l, &err) == -1) {
		jv_free(rec);
		return err;
	}
	jv_free(err);
	stored = lc_ledger_get(&l, name);
	lc_ledger_close(&l);
	if (!jv_is_valid(stored)) {
		jv_free(rec);
		return stored;
	}
	return jv_object_merge(stored, rec);
}
