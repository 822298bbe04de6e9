/*
 * lc-heal: find out why vLLM failed to start on a session's VM, apply the
 * next fix from the ladder (lib/ladder.h), restart the unit and wait for
 * /health; at most 3 rounds, each recorded in the session's "heal" list.
 * With -d, only classify a log read on stdin (lib/diagnose.h). With -a,
 * put the record's own model and vllm settings on its VM (coder
 * switch-model), restart, and wait for /health and a real completion.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "diagnose.h"
#include "ladder.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "opts.h"
#include "session.h"
#include "ready.h"
#include "rec.h"
#include "remote.h"
#include "ssh.h"
#include "vllm.h"

static const struct lc_opt opts[] = {
	{ 'a', "apply", NULL, "put the record's model and vllm settings on "
	  "its VM, restart, wait for /health and a real completion (coder "
	  "switch-model)" },
	{ 'd', "diagnose", NULL, "classify a vLLM log read on stdin; no VM" },
	{ 'p', "plan", NULL, "apply the next fix to records that carry a "
	  "diagnosis, offline; no VM" },
	{ 'f', "if-failed", NULL, "do nothing to a VM whose vLLM answers "
	  "/health" },
	{ 'n', "dry-run", NULL, "show the fix it would apply; change nothing" },
	{ 'r', "rounds", "rounds", "at most this many fix rounds (1 to 3, "
	  "default 3)" },
	{ 't', "timeout", "seconds", "wait at most this long for /health "
	  "after a restart (default 900)" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "more detail on stderr" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-heal",
	.summary = "lc-heal: diagnose a failed vLLM start, fix it, restart it",
	.operands = "[name ...]",
	.after = "Categories: oom_load kv_cache nccl tp_mismatch dtype "
	    "model_access\nunsupported_arch port_in_use driver healthy "
	    "unknown.\nRecords are NDJSON on stdout; see lc-heal(1), "
	    "lc-records(5).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

#define LOG_LINES	1000	/* lines of the container log read */
#define STEP_MS		60000	/* time limit of one remote command */
#define RESTART_MS	600000	/* ... and of the restart (image pulls) */
#define LOG_BYTES	4000000	/* at most this much of the log is read */

struct opts {
	int	 if_failed, dry_run, plan, apply, rounds;
	long	 timeout_s;
};

static struct lc_config *cfg;
static struct lc_ledger ledger;
static int ledger_ok;

/* --- --diagnose ---------------------------------------------------------- */

/* Classify stdin as it streams; one record out. */
static int
diagnose_stdin(void)
{
	struct lc_diag *d = lc_diag_new();
	static char buf[65536];
	size_t n;
	jv rec;

	if (d == NULL)
		lc_fatal("out of memory");
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		lc_diag_feed(d, buf, n);
	if (ferror(stdin))
		lc_fatal("standard input: %s", strerror(errno));
	rec = jv_object_set(jv_object(), jv_string("diagnosis"),
	    lc_diag_result(d));
	lc_diag_free(d);
	lc_emit(rec);
	return lc_finish(NULL);
}

/* --- on the VM ----------------------------------------------------------- */

/* Run body (a shell fragment) through the remote builder. Returns the
 * captured stdout (malloc'd, maybe empty), or NULL with *err. */
static char *
vm_run(struct lc_ssh *s, jv rec, const char *const needs[], const char *body,
    const char *input, long timeout_ms, int *status, jv *err)
{
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	char *script = lc_remote_script(cfg, rec, needs, body, lc_verbose);
	char *out = NULL;

	if (lc_ssh_run(s, script, input, input ? strlen(input) : 0,
	    timeout_ms, &res, err) == 0) {
		if (res.status == LC_REMOTE_MISSING)
			*err = lc_errorf("remote_missing", "%s",
			    res.err.data ? res.err.data : "a program is "
			    "missing on the VM");
		else
			out = lc_xstrdup(res.out.data ? res.out.data : "");
		if (status != NULL)
			*status = res.status;
		if (lc_verbose && res.err.data != NULL)
			fputs(res.err.data, stderr);
	}
	lc_ssh_result_free(&res);
	free(script);
	return out;
}

/* Whether the unit's state says vLLM is not running and not starting. */
static int
down(const char *st)
{
	return strcmp(st, "failed") == 0 || strcmp(st, "inactive") == 0 ||
	    strcmp(st, "auto-restart") == 0;
}

/* How much log a look at the VM brings back. */
enum { LOG_NONE, LOG_IF_DOWN, LOG_IF_NOT_OK };

/*
 * One look at the VM, one round trip: "ok" when /health answers, else the
 * unit's state ("failed", "activating", "auto-restart", ...). With logs
 * LOG_IF_DOWN (the unit is down) or LOG_IF_NOT_OK (/health does not answer),
 * the unit's status and the container's last lines (the unit's journal
 * when the container is gone, as after a --rm run or a docker error) come
 * too, diagnosed into *diag (else *diag is null). Returns malloc'd, or NULL
 * with *err.
 */
static char *
vm_look(struct lc_ssh *s, jv rec, int logs, jv *diag, jv *err)
{
	static const char *const needs[] = { "curl", "systemctl", "docker",
	    "tail", NULL };
	struct lc_buf b = LC_BUF_INIT;
	char *out, *st;
	size_t n;

	/* A unit that crash-loops under Restart= is "activating" in its
	 * auto-restart wait: that is down too. */
	lc_buf_printf(&b, "if curl -fsS -m 5 http://127.0.0.1:%d/health "
	    ">/dev/null 2>&1; then echo ok; exit 0; fi\n"
	    "u=%s\n"
	    "st=$(systemctl is-active \"$u\" 2>/dev/null || true)\n"
	    "if [ \"$st\" = activating ] && [ \"$(systemctl show -p SubState "
	    "--value \"$u\" 2>/dev/null || true)\" = auto-restart ]; then "
	    "st=auto-restart; fi\n"
	    "echo \"${st:-unknown}\"\n"
	    "case %d:$st in 1:failed|1:inactive|1:auto-restart|2:*) ;; "
	    "*) exit 0;; esac\n"
	    "systemctl status --no-pager -l -n 30 \"$u\" 2>&1 || true\n"
	    "if docker inspect %s >/dev/null 2>&1; then\n"
	    "docker logs --tail %d %s 2>&1 | tail -c %d || true\n"
	    "else journalctl -u \"$u\" -n %d --no-pager -o cat 2>&1 | "
	    "tail -c %d || true; fi",
	    lc_vllm_port(rec), LC_VLLM_UNIT, logs, LC_VLLM_CONTAINER,
	    LOG_LINES, LC_VLLM_CONTAINER, LOG_BYTES, LOG_LINES, LOG_BYTES);
	out = vm_run(s, rec, needs, b.data, NULL, STEP_MS, NULL, err);
	lc_buf_free(&b);
	*diag = jv_null();
	if (out == NULL)
		return NULL;
	n = strcspn(out, "\n");
	st = n > 0 ? strndup(out, n) : lc_xstrdup("unknown");
	if (st == NULL)
		lc_fatal("out of memory");
	if (out[n] == '\n') {
		jv_free(*diag);
		*diag = lc_diagnose_text(out + n + 1, strlen(out + n + 1));
	}
	free(out);
	return st;
}

/*
 * Write vllm.env for rec atomically (a temp file, then mv) when
 * write_env, remove the container (and any other that publishes vLLM's
 * port) when stale, then restart the unit: one round trip.
 */
static int
vm_apply(struct lc_ssh *s, jv rec, int write_env, int stale, jv *err)
{
	static const char *const needs[] = { "mkdir", "mv", "docker",
	    "systemctl", NULL };
	char *text = write_env ? lc_vllm_env_render(rec) : NULL;
	char *dir = lc_remote_path(cfg, "etc/linode-coder");
	char *body = lc_vllm_apply_body(rec, dir, write_env, stale);
	int status = 0;
	char *out;

	out = vm_run(s, rec, needs, body, text, RESTART_MS, &status, err);
	free(body);
	free(dir);
	free(text);
	if (out == NULL)
		return -1;
	free(out);
	if (status != 0) {
		*err = lc_errorf("restart_failed", "restarting %s on the VM "
		    "failed (exit status %d)", LC_VLLM_UNIT, status);
		return -1;
	}
	return 0;
}

/*
 * Poll with back-off until /health answers, the unit fails, or timeout_s
 * pass. 1: healthy; 0: not, with the new log's diagnosis in *diag; -1: an
 * SSH error in *err.
 */
static int
vm_wait(struct lc_ssh *s, jv rec, long timeout_s, jv *diag, jv *err)
{
	long long end = lc_mono_ms() + timeout_s * 1000;
	long delay = 500;
	char *st;

	for (;;) {
		int timed_out = lc_mono_ms() + delay > end;

		st = vm_look(s, rec, timed_out ? LOG_IF_NOT_OK : LOG_IF_DOWN,
		    diag, err);
		if (st == NULL)
			return -1;
		if (strcmp(st, "ok") == 0) {
			free(st);
			return 1;
		}
		lc_progress("%s: waiting for vLLM /health (unit %s)",
		    lc_subject(rec), st);
		free(st);
		if (jv_get_kind(*diag) == JV_KIND_OBJECT) {
			if (timed_out && lc_verbose)
				lc_warnx("%s: no answer on /health within "
				    "%lds", lc_subject(rec), timeout_s);
			return 0;
		}
		lc_sleep_ms(delay);
		delay = delay * 2 > 5000 ? 5000 : delay * 2;
	}
}

/* --- the record ---------------------------------------------------------- */

/* Copy what lc-heal owns from the healed record onto the stored one. */
static jv
merge_heal(jv stored, void *arg)
{
	static const char *const keys[] = { "vllm", "heal", "state",
	    "diagnosis", "ready_at", "failed_stage", "ttft_s", "tokens_per_s",
	    NULL };
	jv rec = *(jv *)arg;
	int i;

	if (!jv_is_valid(stored) || jv_get_kind(stored) != JV_KIND_OBJECT)
		return stored;	/* not in the ledger: nothing to write */
	for (i = 0; keys[i] != NULL; i++)
		if (jv_object_has(jv_copy(rec), jv_string(keys[i])))
			stored = jv_object_set(stored, jv_string(keys[i]),
			    lc_get(rec, keys[i]));
	if (jv_object_has(jv_copy(rec), jv_string("error")))
		stored = jv_object_set(stored, jv_string("error"),
		    lc_get(rec, "error"));
	else
		stored = jv_object_delete(stored, jv_string("error"));
	return stored;
}

/* Save rec's heal fields into the ledger, when the session is there. */
static void
save(jv rec)
{
	const char *name = lc_str(rec, "name");
	jv r;

	if (!ledger_ok || name == NULL)
		return;
	r = lc_ledger_update(&ledger, name, merge_heal, &rec);
	if (!jv_is_valid(r) && strcmp(lc_error_code(r), "not_found") != 0) {
		char *m = lc_error_message(r);

		lc_warnx("%s: ledger: %s", name, m);
		free(m);
	}
	jv_free(r);
}

static jv
set(jv rec, const char *key, jv v)
{
	return jv_object_set(rec, jv_string(key), v);
}

/* A heal round's entry. Borrows diag, step; consumes from. */
static jv
entry(int round, jv diag, jv step, jv from, const char *result)
{
	char at[32];
	jv e = jv_object();

	e = set(e, "round", jv_number(round));
	e = set(e, "diagnosis", lc_get(diag, "category"));
	e = set(e, "action", lc_get(step, "action"));
	e = set(e, "rung", lc_get(step, "rung"));
	e = set(e, "kind", lc_get(step, "kind"));
	e = set(e, "result", jv_string(result));
	e = set(e, "at", jv_string(lc_time_fmt(lc_now(), at, sizeof(at))));
	e = set(e, "from", from);
	return set(e, "to", lc_get(step, "vllm"));
}

static jv
heal_list(jv rec)
{
	jv h = lc_get(rec, "heal");

	if (jv_get_kind(h) != JV_KIND_ARRAY) {
		jv_free(h);
		h = jv_array();
	}
	return h;
}

/* The record left failed: state, error, saved. Consumes rec and err. */
static jv
fail(jv rec, jv err)
{
	rec = set(rec, "state", jv_string("failed"));
	rec = lc_attach_error(rec, err);
	save(rec);
	return rec;
}

/* One round: apply step, restart, wait. 1 ready, 0 not (the new log's
 * diagnosis in *diag), -1 SSH error. */
static int
apply(const struct opts *o, struct lc_ssh *s, jv *rec, jv step, jv *diag,
    jv *err)
{
	const char *kind = lc_str(step, "kind");
	int stale = kind != NULL && strcmp(kind, "stop_container") == 0;

	*rec = set(*rec, "vllm", lc_get(step, "vllm"));
	if (vm_apply(s, *rec, !stale, stale, err) == -1)
		return -1;
	return vm_wait(s, *rec, o->timeout_s, diag, err);
}

/*
 * /health says vLLM serves; a real one-token chat completion says the
 * model works (lib/ready's completion stage). 0, or -1 with *err and
 * failed_stage "completion" in *rec.
 */
static int
answers(jv *rec, jv *err)
{
	lc_info("%s: /health answers; checking that it answers a real "
	    "completion", lc_subject(*rec));
	if (lc_ready_completion(cfg, ledger_ok ? &ledger : NULL, rec, 0,
	    err) == 0)
		return 0;
	*rec = set(*rec, "failed_stage", jv_string("completion"));
	return -1;
}

/* Diagnose, fix, restart, wait (for /health, then a completion): up to
 * o->rounds rounds. Consumes rec. */
static jv
heal_loop(const struct opts *o, struct lc_ssh *s, jv rec, jv diag)
{
	jv gpu = lc_ladder_gpu_facts(rec), heal = heal_list(rec), err;
	int round;
	char at[32];

	for (round = 1;; round++) {
		jv step, next, from = lc_get(rec, "vllm");
		int r;

		rec = set(rec, "diagnosis", jv_copy(diag));
		if (round > o->rounds) {
			err = lc_errorf("heal_exhausted", "vLLM still fails "
			    "after %d rounds: %s", o->rounds,
			    lc_str(diag, "message"));
			jv_free(from);
			break;
		}
		step = lc_ladder_next(from, gpu, diag, heal);
		if (!jv_is_valid(step)) {
			jv e = entry(round, diag, jv_null(), jv_copy(from),
			    "no_fix");

			e = set(e, "action", jv_string("none"));
			heal = jv_array_append(heal, e);
			rec = set(rec, "heal", jv_copy(heal));
			err = step;
			jv_free(from);
			break;
		}
		lc_info("%s: %s: %s (round %d)", lc_subject(rec),
		    lc_str(diag, "category"), lc_str(step, "action"), round);
		if (o->dry_run) {
			heal = jv_array_append(heal, entry(round, diag, step,
			    from, "dry_run"));
			rec = set(rec, "heal", heal);
			jv_free(step);
			jv_free(gpu);
			jv_free(diag);
			return rec;
		}
		err = jv_invalid();
		next = jv_null();
		r = apply(o, s, &rec, step, &next, &err);
		if (r == 1 && answers(&rec, &err) == -1)
			r = -1;
		heal = jv_array_append(heal, entry(round, diag, step, from,
		    r == 1 ? "ready" : "failed"));
		jv_free(diag);
		diag = next;
		rec = set(rec, "heal", jv_copy(heal));
		jv_free(step);
		if (r == -1)
			break;
		jv_free(err);
		if (r == 1) {
			lc_info("%s: vLLM is up and answers after %d round%s",
			    lc_subject(rec), round, round == 1 ? "" : "s");
			rec = set(rec, "state", jv_string("ready"));
			if (lc_str(rec, "ready_at") == NULL)
				rec = set(rec, "ready_at", jv_string(
				    lc_time_fmt(lc_now(), at, sizeof(at))));
			rec = jv_object_delete(rec, jv_string("error"));
			if (jv_object_has(jv_copy(rec),
			    jv_string("failed_stage")))
				rec = set(rec, "failed_stage", jv_null());
			save(rec);
			jv_free(heal);
			jv_free(gpu);
			jv_free(diag);
			return rec;
		}
		save(rec);
	}
	jv_free(heal);
	jv_free(gpu);
	jv_free(diag);
	return fail(rec, err);
}

/*
 * --plan: the next rung for the record's own diagnosis, applied to its
 * "vllm" and recorded in "heal" (result "planned"), as a round would.
 * Consumes rec.
 */
static jv
plan_one(jv rec)
{
	jv diag, gpu, heal, step, from;
	int round = 1;

	if (jv_get_kind(rec) != JV_KIND_OBJECT || jv_object_has(jv_copy(rec),
	    jv_string("error")))
		return rec;
	diag = lc_get(rec, "diagnosis");
	if (jv_get_kind(diag) != JV_KIND_OBJECT) {
		jv_free(diag);
		return lc_attach_error(rec, lc_errorf("no_diagnosis", "the "
		    "record has no diagnosis: lc-heal -d gives one for a log"));
	}
	gpu = lc_ladder_gpu_facts(rec);
	heal = heal_list(rec);
	from = lc_get(rec, "vllm");
	jv_array_foreach(heal, i, h) {
		const char *r = lc_str(h, "result");

		if (r != NULL && strcmp(r, "planned") == 0)
			round++;
		jv_free(h);
	}
	step = lc_ladder_next(from, gpu, diag, heal);
	if (!jv_is_valid(step))
		rec = lc_attach_error(rec, step);
	else {
		heal = jv_array_append(heal, entry(round, diag, step,
		    jv_copy(from), "planned"));
		rec = set(rec, "vllm", lc_get(step, "vllm"));
		rec = set(rec, "heal", jv_copy(heal));
		jv_free(step);
	}
	jv_free(from);
	jv_free(heal);
	jv_free(gpu);
	jv_free(diag);
	return rec;
}

/* The diagnosis of a VM whose vLLM answers /health. */
static jv
healthy(void)
{
	jv d = jv_object();

	d = set(d, "category", jv_string("healthy"));
	d = set(d, "evidence", jv_array_append(jv_array(),
	    jv_string("GET /health: 200")));
	d = set(d, "fix", lc_ladder_fix("healthy", jv_null()));
	d = set(d, "facts", jv_object());
	return set(d, "message", jv_string("vLLM answers /health"));
}

/* Whether the record is one lc-heal should look at. */
static int
actionable(jv rec)
{
	const char *st = lc_str(rec, "state");

	return st == NULL || (strcmp(st, "destroyed") != 0 &&
	    strcmp(st, "destroying") != 0 && strcmp(st, "creating") != 0);
}

/*
 * A record made ready less than a minute ago (lc-create --wait had a real
 * completion from its vLLM): -f need not look again. Borrows rec.
 */
static int
ready_now(jv rec)
{
	const char *st = lc_str(rec, "state"), *at = lc_str(rec, "ready_at");
	time_t t;

	return st != NULL && strcmp(st, "ready") == 0 && at != NULL &&
	    lc_time_parse(at, &t) == 0 && lc_now() - t >= 0 &&
	    lc_now() - t < 60;
}

/*
 * Look at one session's vLLM and heal it if it failed. Consumes rec.
 * A record that arrives with an "error" (lc-create --wait found vLLM down)
 * is healed like any other; when its VM cannot be reached it passes
 * through with its own error, not ours.
 */
static jv
heal_one(const struct opts *o, jv rec)
{
	struct lc_ssh *s = NULL;
	jv err = jv_invalid(), diag = jv_null(), orig;
	char *st = NULL;
	const char *cat;
	int had_error = jv_object_has(jv_copy(rec), jv_string("error"));

	if (lc_str(rec, "name") == NULL && !jv_object_has(jv_copy(rec),
	    jv_string("ssh")))
		return rec;	/* an error record from upstream */
	if (had_error && !jv_object_has(jv_copy(rec), jv_string("ssh")) &&
	    !jv_object_has(jv_copy(rec), jv_string("ipv4")))
		return rec;	/* failed before there was a VM */
	if (o->if_failed && !had_error && ready_now(rec))
		return rec;	/* lc-create --wait just had an answer */
	orig = jv_copy(rec);
	rec = lc_remote_session(rec);
	if (!jv_is_valid(rec)) {
		if (!had_error)
			return lc_attach_error(orig, rec);
		jv_free(rec);
		return orig;
	}
	if (actionable(rec) && (s = lc_ssh_open(cfg, rec, 0, 0,
	    &err)) != NULL)
		st = vm_look(s, rec, LOG_IF_NOT_OK, &diag, &err);
	if (st == NULL) {
		/* Not ours to touch, or unreachable: an upstream error
		 * stays as it was. */
		lc_ssh_close(s);
		if (!actionable(rec)) {
			jv_free(err);
			jv_free(orig);
			return rec;
		}
		if (had_error) {
			jv_free(err);
			jv_free(rec);
			return orig;
		}
		jv_free(orig);
		return lc_attach_error(rec, err);
	}
	jv_free(orig);
	jv_free(err);
	if (strcmp(st, "ok") == 0) {
		/* Serving: -f leaves the record alone. */
		free(st);
		lc_ssh_close(s);
		jv_free(diag);
		if (o->if_failed)
			return rec;
		return set(rec, "diagnosis", healthy());
	}
	cat = lc_str(diag, "category");
	if (!down(st) &&
	    (cat == NULL || strcmp(cat, "healthy") == 0 ||
	    strcmp(cat, "unknown") == 0)) {
		/* Still starting, with no failure in its log yet. */
		rec = set(rec, "diagnosis", diag);
		free(st);
		lc_ssh_close(s);
		return rec;
	}
	free(st);
	{
		/* Held while vLLM restarts: lc-watch must not take the
		 * session for an abandoned start meanwhile (lib/session). */
		const char *nm = lc_str(rec, "name");
		jv e2 = jv_invalid();
		int fd = -1;

		if (ledger_ok && nm != NULL && lc_name_check(nm, &e2) == 0)
			fd = lc_session_hold(&ledger, nm);
		jv_free(e2);
		rec = heal_loop(o, s, rec, diag);
		if (fd != -1)
			close(fd);
	}
	lc_ssh_close(s);
	return rec;
}

/* --- --apply ------------------------------------------------------------ */

/* Push rec's vllm.env and restart the unit (the file written atomically
 * on the VM). 0, or -1 with *err. */
static int
push_env(struct lc_ssh *s, jv rec, jv *err)
{
	static const char *const needs[] = { "mkdir", "cat", "mv", "docker",
	    "systemctl", NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	char *env = lc_vllm_env_render(rec), *script, *body;
	char *dir = lc_remote_path(cfg, "etc/linode-coder");
	int rc = -1;

	body = lc_vllm_apply_body(rec, dir, 1, 0);
	script = lc_remote_script(cfg, rec, needs, body, lc_verbose);
	if (lc_ssh_run(s, script, env, strlen(env), RESTART_MS, &res,
	    err) == 0) {
		if (res.status == 0)
			rc = 0;
		else
			*err = lc_errorf("switch_failed", "rewriting vllm.env "
			    "failed on the VM (exit %d): %.200s", res.status,
			    res.err.data ? res.err.data : "");
	}
	lc_ssh_result_free(&res);
	free(body);
	free(script);
	free(dir);
	free(env);
	return rc;
}

/*
 * Put the record's model and vllm settings on its VM: vllm.env rewritten,
 * the unit restarted, the session's env file updated, then the readiness
 * stages from /health on (lib/ready, which saves the record). A failed
 * wait leaves state "failed" and "failed_stage" set; a failed push leaves
 * the record as it came, with the error. Consumes rec.
 */
static jv
apply_one(const struct opts *o, jv rec)
{
	struct lc_ready_opts ro = { .first = LC_STAGE_HEALTH };
	struct lc_ledger *l = ledger_ok ? &ledger : NULL;
	jv err = jv_invalid(), full;
	struct lc_ssh *s;
	char *key;

	if (jv_get_kind(rec) != JV_KIND_OBJECT || jv_object_has(jv_copy(rec),
	    jv_string("error")))
		return rec;
	full = lc_remote_session(jv_copy(rec));
	if (!jv_is_valid(full))
		return lc_attach_error(rec, full);
	jv_free(rec);
	rec = full;
	if (o->dry_run) {
		lc_info("%s: would write vllm.env for %s and restart vLLM",
		    lc_subject(rec), lc_str(rec, "model") ? lc_str(rec,
		    "model") : "?");
		return rec;
	}
	if ((s = lc_ssh_open(cfg, rec, 0, 0, &err)) == NULL)
		return lc_attach_error(rec, err);
	if (push_env(s, rec, &err) == -1) {
		lc_ssh_close(s);
		return lc_attach_error(rec, err);
	}
	lc_ssh_close(s);
	key = lc_ready_api_key(l, lc_subject(rec));
	if (key != NULL && lc_ready_env_write(l, &rec, key, &err) == -1) {
		lc_warnx("%s: env file not updated", lc_subject(rec));
		jv_free(err);
		err = jv_invalid();
	}
	if (key != NULL)
		memset(key, 0, strlen(key));
	free(key);
	if (lc_ready_wait(cfg, l, &rec, &ro, &err) == -1)
		return lc_attach_error(rec, err);
	return rec;
}

int
main(int argc, char *argv[])
{
	struct opts o = { .rounds = LC_LADDER_ROUNDS, .timeout_s = 900 };
	struct lc_reader *in;
	int ch, diagnose = 0;
	jv rec, err = jv_invalid();
	long n;

	lc_init("lc-heal");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'a': o.apply = 1; break;
		case 'd': diagnose = 1; break;
		case 'f': o.if_failed = 1; break;
		case 'h': lc_opts_help(&cmd);
		case 'n': o.dry_run = 1; break;
		case 'p': o.plan = 1; break;
		case 'q': lc_quiet = 1; break;
		case 'r':
			n = strtol(optarg, NULL, 10);
			if (strspn(optarg, "0123456789") != strlen(optarg) ||
			    n < 1 || n > LC_LADDER_ROUNDS)
				lc_usage(usage_str, "bad rounds '%s': 1 to %d",
				    optarg, LC_LADDER_ROUNDS);
			o.rounds = (int)n;
			break;
		case 't':
			if (lc_parse_duration(optarg, &o.timeout_s) == -1 ||
			    o.timeout_s < 1)
				lc_usage(usage_str, "bad timeout '%s': write "
				    "e.g. 600, 10m or 1h", optarg);
			break;
		case 'v': lc_verbose = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if (o.apply + o.plan + diagnose > 1)
		lc_usage(usage_str, "-a, -d and -p exclude each other");
	if (diagnose) {
		if (argc > 0)
			lc_usage(usage_str, "-d reads the log on standard "
			    "input; it takes no names");
		return diagnose_stdin();
	}
	if ((in = lc_reader_open(argc, argv, "name")) == NULL)
		lc_usage(usage_str, NULL);
	if (o.plan) {
		while (lc_reader_next(in, &rec))
			lc_emit(plan_one(rec));
		return lc_finish(in);
	}
	if ((cfg = lc_config_load(&err)) == NULL) {
		char *m = lc_error_message(err);

		lc_fatal("%s", m);
	}
	jv_free(err);
	err = jv_invalid();
	ledger_ok = !o.dry_run && lc_ledger_open(&ledger, &err) == 0;
	jv_free(err);
	while (lc_reader_next(in, &rec))
		lc_emit(o.apply ? apply_one(&o, rec) : heal_one(&o, rec));
	if (ledger_ok)
		lc_ledger_close(&ledger);
	lc_config_free(cfg);
	return lc_finish(in);
}
