/*
 * lc-sessions: the local ledger of sessions. Lists and shows session
 * records with live cost, and keeps them: use, extend, forget, cost.
 * cleanup and reconcile ask the Linode API: cleanup archives sessions
 * whose VM is gone, reconcile finds tagged VMs that no session knows.
 * Those two run in lc-sessions-api, which this program execs, so that a
 * listing never pays for loading libcurl.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "opts.h"
#include "session.h"
#include "rec.h"

static const struct lc_opt opts[] = {
	{ 'a', "all", NULL, "include archived (destroyed) sessions; cache rm: "
	  "every cache volume of this ledger's" },
	{ 'T', "table", NULL, "a table for people instead of records" },
	{ 'b', "by", "duration", "extend: move the hard deadline later by "
	  "this much" },
	{ 'd', "deadline", "duration", "extend: the hard deadline this long "
	  "from now" },
	{ 'y', "yes", NULL, "forget: really remove the record" },
	{ 's', "since", "date", "cost: only what accrued since that date" },
	{ 'A', "adopt", NULL, "reconcile: write orphan VMs into the ledger" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "more detail on stderr" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

/* One form a verb: a usage text of its own. */
static const struct lc_cmd cmd = {
	.name = "lc-sessions",
	.summary = "lc-sessions: the local ledger of linode-coder sessions",
	.usage = "usage: lc-sessions [-aqTv] [name ...]\n"
	    "       lc-sessions use name\n"
	    "       lc-sessions extend name [-b duration] [-d duration]\n"
	    "       lc-sessions forget name -y\n"
	    "       lc-sessions cost [-s date]\n"
	    "       lc-sessions cleanup [-q]\n"
	    "       lc-sessions reconcile [-Aq]\n"
	    "       lc-sessions cache [ls | rm label ... | rm -a]",
	.after = "Records are NDJSON on stdout; see lc-sessions(1), "
	    "lc-records(5).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

struct opts {
	int	 all, table, yes, adopt;
	long	 by_s, deadline_s;	/* -1: not given */
	const char *since;
};

static struct lc_ledger ledger;

/* The listing's threads: at most this many, each with this many files. */
#define LIST_THREADS_MAX	8
#define LIST_PER_THREAD_MIN	64

static void
open_ledger(void)
{
	jv err = jv_invalid();

	if (lc_ledger_open(&ledger, &err) == -1) 
		lc_fatal_err(err);
}

/* A stored record as shown: documented fields, live cost and uptime. */
static jv
show(jv rec, time_t now)
{
	const char *la;
	time_t t;

	if (!jv_is_valid(rec) || lc_str(rec, "error") != NULL ||
	    jv_object_has(jv_copy(rec), jv_string("error")))
		return rec;
	rec = lc_session_live(lc_session_fill(rec), now);
	la = lc_str(rec, "last_activity_at");
	if (la == NULL)
		la = lc_str(rec, "created_at");
	if (la != NULL && lc_time_parse(la, &t) == 0 &&
	    lc_str(rec, "destroyed_at") == NULL)
		rec = jv_object_set(rec, jv_string("idle_s"),
		    jv_number(now > t ? (double)(now - t) : 0));
	return rec;
}

/* "3h05m" until t, or "-" for none; "past" when gone by. */
static const char *
until(jv rec, const char *key, time_t now, char *buf, size_t len)
{
	const char *s = lc_str(rec, key);
	time_t t;

	if (s == NULL || lc_time_parse(s, &t) == -1)
		return "-";
	if (t <= now)
		return "past";
	return lc_duration_fmt((long)(t - now), buf, len);
}

/*
 * When the VM's own guard (lib/failsafe) would delete it if it stays idle:
 * the later of the time the VM last reported and the last activity pushed
 * to it since, plus its limit. 0 when unknown or gone by. Borrows rec.
 */
static time_t
vm_delete_at(jv rec, time_t now)
{
	jv g = lc_get(rec, "vm_guard");
	const char *d = lc_str(g, "delete_at"), *a = lc_str(rec,
	    "vm_activity_at");
	double lim = lc_num(g, "idle_limit_s", -1);
	time_t t = 0, pushed;

	if (d != NULL && lc_time_parse(d, &t) == -1)
		t = 0;
	if (a != NULL && lim >= 0 && lc_time_parse(a, &pushed) == 0 &&
	    pushed + (time_t)lim > t)
		t = pushed + (time_t)lim;
	jv_free(g);
	return t > now ? t : 0;
}

static void
table_row(FILE *out, jv rec, time_t now)
{
	char up[32] = "-", idle[32] = "-", dl[32], cost[32] = "-", wbuf[96],
	    dl2[32], mbuf[96], nbuf[112];
	const char *model = lc_str(rec, "model"), *preset, *base;
	const char *warn = "", *dls;
	double budget = lc_num(rec, "budget_usd", -1), c;
	time_t d;

	if (jv_object_has(jv_copy(rec), jv_string("error"))) {
		jv e = lc_get(rec, "error");

		fprintf(out, "%-16s %-12s %s\n", lc_subject(rec), "ERROR",
		    lc_str(e, "message") ? lc_str(e, "message") : "");
		jv_free(e);
		return;
	}
	/* The preset and the model it serves (the served name, "coder"
	 * for every preset, tells nothing apart). */
	preset = lc_str(rec, "preset");
	if (model == NULL)
		model = lc_str(rec, "served_model_name");
	base = model != NULL && strrchr(model, '/') != NULL ?
	    strrchr(model, '/') + 1 : model;
	if (preset != NULL)
		snprintf(mbuf, sizeof(mbuf), "%s (%s)", preset, base ? base :
		    "-");
	else
		snprintf(mbuf, sizeof(mbuf), "%s", base ? base : "-");
	model = mbuf;
	if (lc_num(rec, "nodes", 1) > 1) {	/* a group: its cost is all */
		snprintf(nbuf, sizeof(nbuf), "%.0f nodes: %s", lc_num(rec,
		    "nodes", 1), mbuf);
		model = nbuf;
	}
	if (lc_num(rec, "uptime_s", -1) >= 0)
		lc_duration_fmt((long)lc_num(rec, "uptime_s", 0), up,
		    sizeof(up));
	if (lc_num(rec, "idle_s", -1) >= 0)
		lc_duration_fmt((long)lc_num(rec, "idle_s", 0), idle,
		    sizeof(idle));
	c = lc_num(rec, "cost_usd", -1);
	if (c >= 0)
		snprintf(cost, sizeof(cost), "$%.2f", c);
	dls = until(rec, "deadline_at", now, dl, sizeof(dl));
	if (lc_str(rec, "deadline_at") != NULL &&
	    lc_time_parse(lc_str(rec, "deadline_at"), &d) == 0 &&
	    d - now < 600 && lc_str(rec, "destroyed_at") == NULL)
		warn = "  ! deadline soon";
	if (budget >= 0 && c >= 0 && budget - c <
	    lc_num(rec, "hourly_cost_usd", 0) / 6.0 + 0.005)
		warn = "  ! budget nearly spent";
	if (lc_str(rec, "watch_warning") != NULL &&
	    lc_str(rec, "destroyed_at") == NULL) {	/* lc-watch's words */
		snprintf(wbuf, sizeof(wbuf), "  ! %s",
		    lc_str(rec, "watch_warning"));
		warn = wbuf;
	}
	if (*warn == '\0' && lc_str(rec, "destroyed_at") == NULL &&
	    (d = vm_delete_at(rec, now)) != 0) {
		long left = (long)(d - now);

		if (left >= 3600)
			lc_duration_fmt(left, dl2, sizeof(dl2));
		else
			snprintf(dl2, sizeof(dl2), "%ld min", (left + 59) / 60);
		snprintf(wbuf, sizeof(wbuf), "  the VM deletes itself in %s if "
		    "idle", dl2);
		warn = wbuf;
	}
	fprintf(out, "%-16s %-12s %-44.44s %8s %8s %8s %9s%s\n",
	    lc_subject(rec),
	    lc_str(rec, "state") ? lc_str(rec, "state") : "-",
	    model ? model : "-", up, idle, dls, cost, warn);
}

/*
 * A run of the listing, rendered by one thread: its records read, shown
 * and written to out (stdout when there is one part, else a memory
 * stream), warnings for corrupt files kept for the main thread to print.
 */
struct part {
	const struct lc_ledger_file *files;
	size_t		 n;
	time_t		 now;
	int		 table, warn, failures, threaded;
	FILE		*out;
	char		*buf;
	size_t		 len;
	jv		 warnings;	/* array of lines */
	pthread_t	 thread;
};

static void
render(struct part *p, jv rec)
{
	if (p->warn && jv_object_has(jv_copy(rec), jv_string("error"))) {
		jv e = lc_get(rec, "error");

		p->warnings = jv_array_append(p->warnings, jv_string_fmt(
		    "%s: %s", lc_subject(rec), lc_str(e, "message") ?
		    lc_str(e, "message") : "unreadable"));
		jv_free(e);
	}
	rec = show(rec, p->now);
	if (p->table) {
		table_row(p->out, rec, p->now);
		p->failures += jv_object_has(jv_copy(rec), jv_string("error"));
		jv_free(rec);
	} else
		p->failures += lc_emit_to(p->out, rec);
}

static void *
render_files(void *arg)
{
	struct part *p = arg;
	size_t i;

	for (i = 0; i < p->n; i++)
		render(p, lc_ledger_read(&p->files[i]));
	return NULL;
}

/* The parts' output in order, their warnings, their failures. */
static void
finish_part(struct part *p)
{
	int i;

	if (p->buf != NULL) {
		fwrite(p->buf, 1, p->len, stdout);
		free(p->buf);
	}
	jv_array_foreach(p->warnings, k, w) {
		(void)k;
		lc_warnx("%s", jv_string_value(w));
		jv_free(w);
	}
	jv_free(p->warnings);
	for (i = 0; i < p->failures; i++)
		lc_note_failure();
}

/*
 * Every session: parsing and printing JSON is most of the work, so with
 * many sessions the files are split between one thread per processor,
 * each rendering into memory, and written out in order.
 */
static void
list_all(struct opts *o, time_t now)
{
	struct part parts[LIST_THREADS_MAX];
	struct lc_ledger_file *files;
	size_t n, np, i, at = 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	files = lc_ledger_files(&ledger, o->all, &n);
	np = cpus > 1 ? (size_t)cpus : 1;
	if (np > LIST_THREADS_MAX)
		np = LIST_THREADS_MAX;
	if (np > n / LIST_PER_THREAD_MIN)
		np = n / LIST_PER_THREAD_MIN;
	if (np < 2) {
		struct part one = { .files = files, .n = n, .now = now,
		    .table = o->table, .warn = 1, .out = stdout,
		    .warnings = jv_array() };

		render_files(&one);
		finish_part(&one);
		lc_ledger_files_free(files, n);
		return;
	}
	for (i = 0; i < np; i++) {
		struct part *p = &parts[i];

		memset(p, 0, sizeof(*p));
		p->files = files + at;
		p->n = n / np + (i < n % np);
		at += p->n;
		p->now = now;
		p->table = o->table;
		p->warn = 1;
		p->warnings = jv_array();
		if ((p->out = lc_memfile(&p->buf, &p->len)) == NULL)
			lc_fatal("out of memory");
		/* Every part gets a thread, even the last: measured, that is
		 * faster than this thread taking one itself. */
		p->threaded = pthread_create(&p->thread, NULL, render_files,
		    p) == 0;
		if (!p->threaded)
			render_files(p);	/* no thread: do it here */
	}
	for (i = 0; i < np; i++) {
		if (parts[i].threaded)
			pthread_join(parts[i].thread, NULL);
		if (fclose(parts[i].out) == EOF)
			lc_fatal("out of memory");
		finish_part(&parts[i]);
	}
	lc_ledger_files_free(files, n);
}

static int
list(struct opts *o, int argc, char **argv)
{
	time_t now = lc_now();
	struct part named = { .now = now, .table = o->table, .out = stdout,
	    .warnings = jv_array() };
	jv rec;
	int i;

	open_ledger();
	lc_stdout_unlocked();
	lc_emit_buffered(1);	/* a listing is ready at once */
	if (o->table)
		printf("%-16s %-12s %-44s %8s %8s %8s %9s\n", "NAME", "STATE",
		    "PRESET (MODEL)", "UPTIME", "IDLE", "DEADLINE", "COST");
	if (argc == 0) {
		jv_free(named.warnings);
		list_all(o, now);
		return lc_finish(NULL);
	}
	for (i = 0; i < argc; i++) {
		rec = lc_ledger_get(&ledger, argv[i]);
		if (!jv_is_valid(rec))
			rec = lc_attach_error(jv_object_set(jv_object(),
			    jv_string("name"), jv_string(argv[i])), rec);
		render(&named, rec);
	}
	finish_part(&named);
	return lc_finish(NULL);
}

/* Point ./.aider-env at the session's env file (a symlink). */
static int
link_aider_env(const char *name, jv *err)
{
	char *target = lc_session_path(&ledger, name, LC_SESSION_ENV);
	struct stat st;

	if (lstat(".aider-env", &st) == 0 && !S_ISLNK(st.st_mode)) {
		*err = lc_errorf("exists", "./.aider-env exists and is not a "
		    "symlink: move it away, then run this again");
		free(target);
		return -1;
	}
	unlink(".aider-env.tmp");
	if (symlink(target, ".aider-env.tmp") == -1 ||
	    rename(".aider-env.tmp", ".aider-env") == -1) {
		*err = lc_errorf("io", "cannot link ./.aider-env: %s",
		    strerror(errno));
		unlink(".aider-env.tmp");
		free(target);
		return -1;
	}
	free(target);
	return 0;
}

static int
use(int argc, char **argv)
{
	jv rec, err = jv_invalid();

	if (argc != 1)
		lc_usage(usage_str, "use takes one session name");
	open_ledger();
	rec = lc_ledger_get(&ledger, argv[0]);
	if (!jv_is_valid(rec) ||
	    lc_ledger_set_current(&ledger, argv[0], &err) == -1 ||
	    link_aider_env(argv[0], &err) == -1) {
		if (!jv_is_valid(rec)) {
			jv_free(err);
			err = rec;
		} else
			jv_free(rec);
		lc_emit(lc_attach_error(jv_object_set(jv_object(),
		    jv_string("name"), jv_string(argv[0])), err));
		return lc_finish(NULL);
	}
	jv_free(err);
	lc_emit(show(rec, lc_now()));
	return lc_finish(NULL);
}

struct extend_arg {
	struct opts	*o;
	long		 max_s;
	time_t		 now;
	int		 capped;
};

/* Reset the idle clock; move the deadline as asked, within the maximum. */
static jv
extend_fn(jv rec, void *argp)
{
	struct extend_arg *a = argp;
	time_t created, deadline = 0, cap;
	char ts[32];
	const char *d;

	if (!jv_is_valid(rec))
		return rec;
	rec = jv_object_set(rec, jv_string("last_activity_at"),
	    jv_string(lc_time_fmt(a->now, ts, sizeof(ts))));
	if (a->o->by_s < 0 && a->o->deadline_s < 0)
		return rec;
	if (lc_str(rec, "created_at") == NULL ||
	    lc_time_parse(lc_str(rec, "created_at"), &created) == -1)
		created = a->now;
	d = lc_str(rec, "deadline_at");
	if (d == NULL || lc_time_parse(d, &deadline) == -1)
		deadline = a->now;
	if (a->o->deadline_s >= 0)
		deadline = a->now + a->o->deadline_s;
	if (a->o->by_s >= 0)
		deadline += a->o->by_s;
	cap = created + a->max_s;
	if (a->max_s > 0 && deadline > cap) {
		deadline = cap;
		a->capped = 1;
	}
	return jv_object_set(rec, jv_string("deadline_at"),
	    jv_string(lc_time_fmt(deadline, ts, sizeof(ts))));
}

static int
extend(struct opts *o, int argc, char **argv)
{
	struct extend_arg a = { o, 0, lc_now(), 0 };
	struct lc_config *cfg;
	jv rec, err = jv_invalid();
	char m[32];

	if (argc != 1)
		lc_usage(usage_str, "extend takes one session name");
	if ((cfg = lc_config_load(&err)) == NULL ||
	    lc_config_duration(cfg, "LC_MAX_DEADLINE", &a.max_s, &err) == -1) 
		lc_fatal_err(err);
	lc_config_free(cfg);
	open_ledger();
	rec = lc_ledger_update(&ledger, argv[0], extend_fn, &a);
	if (!jv_is_valid(rec)) {
		lc_emit(lc_attach_error(jv_object_set(jv_object(),
		    jv_string("name"), jv_string(argv[0])), rec));
		return lc_finish(NULL);
	}
	if (a.capped)
		lc_warnx("%s: deadline capped at %s after creation "
		    "(LC_MAX_DEADLINE)", argv[0],
		    lc_duration_fmt(a.max_s, m, sizeof(m)));
	lc_session_event(&ledger, "extended", rec, jv_null(), &err);
	jv_free(err);
	lc_emit(show(rec, a.now));
	return lc_finish(NULL);
}

static int
forget(struct opts *o, int argc, char **argv)
{
	jv rec, err = jv_invalid();
	const char *state;
	char vm[32] = "";

	if (argc != 1)
		lc_usage(usage_str, "forget takes one session name");
	if (!o->yes)
		lc_usage(usage_str, "forget removes the record without "
		    "deleting the VM: add --yes if that is what you want "
		    "(lc-destroy %s deletes the VM)", argv[0]);
	open_ledger();
	rec = lc_ledger_get(&ledger, argv[0]);
	if (!jv_is_valid(rec) && strcmp(lc_error_code(rec),
	    "corrupt_record") != 0) {
		lc_emit(lc_attach_error(jv_object_set(jv_object(),
		    jv_string("name"), jv_string(argv[0])), rec));
		return lc_finish(NULL);
	}
	if (!jv_is_valid(rec)) {	/* corrupt: forget it all the same */
		jv_free(rec);
		rec = jv_object_set(jv_object(), jv_string("name"),
		    jv_string(argv[0]));
	}
	if (lc_ledger_remove(&ledger, argv[0], &err) == -1) {
		lc_emit(lc_attach_error(rec, err));
		return lc_finish(NULL);
	}
	state = lc_str(rec, "state");
	if (lc_num(rec, "linode_id", 0) > 0)
		snprintf(vm, sizeof(vm), " %.0f", lc_num(rec, "linode_id", 0));
	if (state == NULL || strcmp(state, "destroyed") != 0)
		lc_warnx("%s: WARNING: record forgotten, but its VM%s may "
		    "still be billing: find it with 'lc-sessions reconcile' "
		    "and delete it with 'lc-destroy'", argv[0], vm);
	lc_session_event(&ledger, "forgotten", rec, jv_null(), &err);
	jv_free(err);
	lc_emit(jv_object_set(rec, jv_string("state"),
	    jv_string("forgotten")));
	return lc_finish(NULL);
}

/*
 * Per-session cost from ledger.jsonl: each "created" event opens a
 * session (price, time), its "destroyed" event closes it.
 */
static int
cost(struct opts *o, int argc, char **argv)
{
	char *path, *data = NULL, ts[32];
	time_t since = 0, now = lc_now();
	jv events, open_s = jv_object(), rows = jv_array(), ev;
	jv err = jv_invalid();
	char *first = NULL;
	double total = 0;
	size_t len = 0;
	int i, n, bad = 0;

	(void)argv;
	if (argc != 0)
		lc_usage(usage_str, "cost takes no operands");
	if (o->since != NULL && lc_time_parse(o->since, &since) == -1) {
		char buf[40];

		snprintf(buf, sizeof(buf), "%.10sT00:00:00Z", o->since);
		if (strlen(o->since) != 10 || lc_time_parse(buf, &since) == -1)
			lc_usage(usage_str, "bad date '%s': write 2026-11-01 "
			    "or 2026-11-01T00:00:00Z", o->since);
	}
	open_ledger();
	path = lc_ledger_path(&ledger, "ledger.jsonl");
	if (lc_read_file(path, &data, &len) == -1 && errno != ENOENT)
		lc_fatal("cannot read %s: %s", path, strerror(errno));
	events = lc_parse_texts(data ? data : "", len);
	if (!jv_is_valid(events)) {
		char *m = lc_error_message(events);

		lc_warnx("%s is damaged: %s (each line must be one JSON "
		    "object)", path, m);
		free(m);
		jv_free(events);
		free(path);
		free(data);
		exit(LC_EXIT_FATAL);
	}
	free(data);
	free(path);
	n = jv_array_length(jv_copy(events));
	for (i = 0; i < n; i++) {
		const char *e, *name;
		char key[96];

		ev = jv_array_get(jv_copy(events), i);
		e = lc_str(ev, "event");
		name = lc_str(ev, "name");
		if (e == NULL || name == NULL) {
			jv_free(ev);
			continue;
		}
		if ((strcmp(e, "created") == 0 || strcmp(e, "adopted") == 0 ||
		    strcmp(e, "destroyed") == 0) &&
		    lc_session_event_check(ev, &err) == -1) {
			/* Counted and skipped: one bad line must not hide
			 * the cost of every other session. */
			if (bad++ == 0)
				first = lc_error_message(err);
			jv_free(err);
			err = jv_invalid();
			jv_free(ev);
			continue;
		}
		/* A name can be reused later: key by name and instance. */
		snprintf(key, sizeof(key), "%s/%.0f", name,
		    lc_num(ev, "linode_id", 0));
		if (strcmp(e, "created") == 0 || strcmp(e, "adopted") == 0)
			open_s = jv_object_set(open_s, jv_string(key),
			    jv_copy(ev));
		else if (strcmp(e, "destroyed") == 0 &&
		    jv_object_has(jv_copy(open_s), jv_string(key))) {
			jv s = jv_object_get(jv_copy(open_s), jv_string(key));

			s = jv_object_set(s, jv_string("destroyed_at"),
			    lc_get(ev, "at"));
			rows = jv_array_append(rows, s);
			open_s = jv_object_delete(open_s, jv_string(key));
		}
		jv_free(ev);
	}
	jv_free(events);
	if (bad > 0) {
		lc_warnx("ledger.jsonl: %d event%s do not match their kind's "
		    "fields and are left out of the cost (first: %s)", bad,
		    bad == 1 ? "" : "s", first);
		free(first);
	}
	jv_object_foreach(open_s, k, v) {
		rows = jv_array_append(rows, v);
		jv_free(k);
	}
	jv_free(open_s);
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv r = jv_array_get(jv_copy(rows), i), out;
		time_t start, end = now;
		double c;

		if (lc_str(r, "at") == NULL ||
		    lc_time_parse(lc_str(r, "at"), &start) == -1) {
			jv_free(r);
			continue;
		}
		if (lc_str(r, "destroyed_at") != NULL)
			lc_time_parse(lc_str(r, "destroyed_at"), &end);
		if (end <= since) {
			jv_free(r);
			continue;
		}
		c = lc_cost(lc_num(r, "hourly_cost_usd", 0),
		    lc_num(r, "monthly_cost_usd", 0),
		    start > since ? start : since, end);
		total += c;
		out = jv_object_set(jv_object(), jv_string("name"),
		    lc_get(r, "name"));
		out = jv_object_set(out, jv_string("linode_id"),
		    lc_get(r, "linode_id"));
		out = jv_object_set(out, jv_string("created_at"),
		    lc_get(r, "at"));
		out = jv_object_set(out, jv_string("destroyed_at"),
		    lc_get(r, "destroyed_at"));
		out = jv_object_set(out, jv_string("hourly_cost_usd"),
		    lc_get(r, "hourly_cost_usd"));
		out = jv_object_set(out, jv_string("cost_usd"), jv_number(c));
		lc_emit(out);
		jv_free(r);
	}
	jv_free(rows);
	ev = jv_object_set(jv_object(), jv_string("total_cost_usd"),
	    jv_number(lc_round_cents(total)));
	ev = jv_object_set(ev, jv_string("sessions"), jv_number(n));
	ev = jv_object_set(ev, jv_string("since"), since ?
	    jv_string(lc_time_fmt(since, ts, sizeof(ts))) : jv_null());
	lc_emit(ev);
	return lc_finish(NULL);
}

/*
 * cleanup and reconcile: exec lc-sessions-api, found as
 * ../libexec/linode-coder/ beside this binary (the source tree and an
 * installed prefix alike), else in the directory it was installed to.
 */
static _Noreturn void
run_api(struct opts *o, const char *verb, int argc, char **argv)
{
	char self[PATH_MAX], helper[PATH_MAX + 64], *slash;
	char **args = lc_xmalloc((size_t)(argc + 9) * sizeof(*args));
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int i = 0, cache = strcmp(verb, "cache") == 0;

	if (argc != 0 && !cache)
		lc_usage(usage_str, "%s takes no operands", verb);
	if (o->adopt && strcmp(verb, "reconcile") != 0)
		lc_usage(usage_str, "--adopt goes with reconcile only");
	if (o->all && !cache)
		lc_usage(usage_str, "--all goes with listing or cache rm");
	args[i++] = "lc-sessions-api";
	args[i++] = (char *)verb;
	if (o->adopt)
		args[i++] = "-A";
	if (o->all)
		args[i++] = "-a";
	if (lc_quiet)
		args[i++] = "-q";
	if (lc_verbose)
		args[i++] = "-v";
	if (cache)
		args[i++] = "--";
	while (argc-- > 0)
		args[i++] = *argv++;
	args[i] = NULL;
	fflush(stdout);
	if (n > 0 && (size_t)n < sizeof(self)) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			snprintf(helper, sizeof(helper),
			    "%s/../libexec/linode-coder/lc-sessions-api", self);
			if (access(helper, X_OK) == 0)
				execv(helper, args);
		}
	}
	snprintf(helper, sizeof(helper), "%s/lc-sessions-api", LC_LIBEXECDIR);
	execv(helper, args);
	lc_fatal("cannot run %s: %s: reinstall linode-coder (make install)",
	    helper, strerror(errno));
}

int
main(int argc, char *argv[])
{
	struct opts o = { .by_s = -1, .deadline_s = -1 };
	const char *verb = NULL;
	int ch;

	lc_init("lc-sessions");
	usage_str = lc_opts_usage(&cmd);
	/* The verb comes first; options may follow it (getopt permutes). */
	if (argc > 1 && argv[1][0] != '-') {
		static const char *verbs[] = { "use", "extend", "forget",
		    "cost", "cleanup", "reconcile", "cache", NULL };

		for (int i = 0; verbs[i] != NULL; i++)
			if (strcmp(argv[1], verbs[i]) == 0) {
				verb = verbs[i];
				argv++;
				argc--;
				break;
			}
	}
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'a': o.all = 1; break;
		case 'A': o.adopt = 1; break;
		case 'b':
			if (lc_parse_duration(optarg, &o.by_s) == -1)
				lc_usage(usage_str, "bad duration '%s': write "
				    "e.g. 30m, 2h or 1d", optarg);
			break;
		case 'd':
			if (lc_parse_duration(optarg, &o.deadline_s) == -1)
				lc_usage(usage_str, "bad duration '%s': write "
				    "e.g. 30m, 2h or 1d", optarg);
			break;
		case 'h': lc_opts_help(&cmd);
		case 'q': lc_quiet = 1; break;
		case 's': o.since = optarg; break;
		case 'T': o.table = 1; break;
		case 'v': lc_verbose = 1; break;
		case 'y': o.yes = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if (verb == NULL)
		return list(&o, argc, argv);
	if (strcmp(verb, "use") == 0)
		return use(argc, argv);
	if (strcmp(verb, "extend") == 0)
		return extend(&o, argc, argv);
	if (strcmp(verb, "forget") == 0)
		return forget(&o, argc, argv);
	if (strcmp(verb, "cost") == 0)
		return cost(&o, argc, argv);
	run_api(&o, verb, argc, argv);
}
