/*
 * lc-sessions: the local ledger of sessions. Lists and shows session
 * records with live cost, and keeps them: use, extend, forget, cost.
 * cleanup and reconcile ask the Linode API: cleanup archives sessions
 * whose VM is gone, reconcile finds tagged VMs that no session knows.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "http.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "linode.h"
#include "rec.h"

static const char usage_str[] =
    "usage: lc-sessions [-aqTv] [name ...]\n"
    "       lc-sessions use name\n"
    "       lc-sessions extend name [-b duration] [-d duration]\n"
    "       lc-sessions forget name -y\n"
    "       lc-sessions cost [-s date]\n"
    "       lc-sessions cleanup [-q]\n"
    "       lc-sessions reconcile [-Aq]";

static const char help_str[] =
    "lc-sessions: the local ledger of linode-coder sessions\n\n"
    "usage: lc-sessions [-aqTv] [name ...]\n"
    "       lc-sessions use name\n"
    "       lc-sessions extend name [-b duration] [-d duration]\n"
    "       lc-sessions forget name -y\n"
    "       lc-sessions cost [-s date]\n"
    "       lc-sessions cleanup [-q]\n"
    "       lc-sessions reconcile [-Aq]\n\n"
    "  -a, --all           include archived (destroyed) sessions\n"
    "  -T, --table         a table for people instead of records\n"
    "  -b, --by DUR        extend: move the hard deadline later by DUR\n"
    "  -d, --deadline DUR  extend: hard deadline DUR from now\n"
    "  -y, --yes           forget: really remove the record\n"
    "  -s, --since DATE    cost: only what accrued since DATE\n"
    "  -A, --adopt         reconcile: write orphan VMs into the ledger\n"
    "  -q, --quiet         no progress lines\n"
    "  -v, --verbose       more detail on stderr\n"
    "  -h, --help          this help\n\n"
    "Records are NDJSON on stdout; see lc-sessions(1), lc-records(5).\n";

static const struct option longopts[] = {
	{ "all", no_argument, NULL, 'a' },
	{ "adopt", no_argument, NULL, 'A' },
	{ "by", required_argument, NULL, 'b' },
	{ "deadline", required_argument, NULL, 'd' },
	{ "help", no_argument, NULL, 'h' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "since", required_argument, NULL, 's' },
	{ "table", no_argument, NULL, 'T' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "yes", no_argument, NULL, 'y' },
	{ NULL, 0, NULL, 0 }
};

struct opts {
	int	 all, table, yes, adopt;
	long	 by_s, deadline_s;	/* -1: not given */
	const char *since;
};

static struct lc_ledger ledger;

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

static void
table_row(jv rec, time_t now)
{
	char up[32] = "-", idle[32] = "-", dl[32], cost[32] = "-", wbuf[96];
	const char *model = lc_str(rec, "served_model_name");
	const char *warn = "";
	double budget = lc_num(rec, "budget_usd", -1), c;
	time_t d;

	if (jv_object_has(jv_copy(rec), jv_string("error"))) {
		jv e = lc_get(rec, "error");

		printf("%-16s %-12s %s\n", lc_subject(rec), "ERROR",
		    lc_str(e, "message") ? lc_str(e, "message") : "");
		jv_free(e);
		return;
	}
	if (model == NULL)
		model = lc_str(rec, "model");
	if (lc_num(rec, "uptime_s", -1) >= 0)
		lc_duration_fmt((long)lc_num(rec, "uptime_s", 0), up,
		    sizeof(up));
	if (lc_num(rec, "idle_s", -1) >= 0)
		lc_duration_fmt((long)lc_num(rec, "idle_s", 0), idle,
		    sizeof(idle));
	c = lc_num(rec, "cost_usd", -1);
	if (c >= 0)
		snprintf(cost, sizeof(cost), "$%.2f", c);
	until(rec, "deadline_at", now, dl, sizeof(dl));
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
	printf("%-16s %-12s %-24.24s %8s %8s %8s %9s%s\n", lc_subject(rec),
	    lc_str(rec, "state") ? lc_str(rec, "state") : "-",
	    model ? model : "-", up, idle, dl, cost, warn);
}

static int
list(struct opts *o, int argc, char **argv)
{
	time_t now = lc_now();
	jv all, rec;
	int i, n;

	open_ledger();
	lc_stdout_unlocked();
	lc_emit_buffered(1);	/* a listing is ready at once */
	if (argc > 0) {
		all = jv_array();
		for (i = 0; i < argc; i++) {
			rec = lc_ledger_get(&ledger, argv[i]);
			if (!jv_is_valid(rec)) {
				jv r = jv_object_set(jv_object(),
				    jv_string("name"), jv_string(argv[i]));

				rec = lc_attach_error(r, rec);
			}
			all = jv_array_append(all, rec);
		}
	} else
		all = lc_ledger_list(&ledger, o->all);
	if (o->table)
		printf("%-16s %-12s %-24s %8s %8s %8s %9s\n", "NAME", "STATE",
		    "MODEL", "UPTIME", "IDLE", "DEADLINE", "COST");
	n = jv_array_length(jv_copy(all));
	for (i = 0; i < n; i++) {
		rec = jv_array_get(jv_copy(all), i);
		if (argc == 0 && jv_object_has(jv_copy(rec),
		    jv_string("error"))) {
			jv e = lc_get(rec, "error");

			lc_warnx("%s: %s", lc_subject(rec), lc_str(e,
			    "message"));
			jv_free(e);
		}
		rec = show(rec, now);
		if (o->table) {
			table_row(rec, now);
			if (jv_object_has(jv_copy(rec), jv_string("error")))
				lc_note_failure();
			jv_free(rec);
		} else
			lc_emit(rec);
	}
	jv_free(all);
	return lc_finish(NULL);
}

/* Point ./.aider-env at the session's env file (a symlink). */
static int
link_aider_env(const char *name, jv *err)
{
	char file[64], *target;
	struct stat st;

	snprintf(file, sizeof(file), "%s.env", name);
	target = lc_ledger_path(&ledger, file);
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
	lc_ledger_event(&ledger, "ledger.jsonl", jv_object_set(jv_object_set(
	    jv_object_set(jv_object(), jv_string("event"),
	    jv_string("extended")), jv_string("name"), jv_string(argv[0])),
	    jv_string("deadline_at"), lc_get(rec, "deadline_at")), &err);
	jv_free(err);
	lc_emit(show(rec, a.now));
	return lc_finish(NULL);
}

static int
forget(struct opts *o, int argc, char **argv)
{
	jv rec, err = jv_invalid(), ev;
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
	ev = jv_object_set(jv_object(), jv_string("event"),
	    jv_string("forgotten"));
	ev = jv_object_set(ev, jv_string("name"), jv_string(argv[0]));
	ev = jv_object_set(ev, jv_string("linode_id"), lc_get(rec,
	    "linode_id"));
	lc_ledger_event(&ledger, "ledger.jsonl", ev, &err);
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
	double total = 0;
	size_t len = 0;
	int i, n;

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

/* The configuration and an API handle with the token; fatal without. */
static struct lc_http *
api(struct lc_config **cfgp)
{
	struct lc_http_opts o;
	struct lc_http *h;
	char *token = NULL;
	jv err = jv_invalid();

	if ((*cfgp = lc_config_load(&err)) == NULL ||
	    lc_linode_opts(*cfgp, 1, &o, &token, &err) == -1)
		lc_fatal_err(err);
	if (lc_http_global_init() == -1 || (h = lc_http_new(&o)) == NULL)
		lc_fatal("cannot set up libcurl");
	lc_linode_token_free(token);
	return h;
}

/* A session whose VM is gone: archive it with its cost, log the event. */
static jv
archive_gone(jv rec)
{
	char name[64], *m = NULL;
	double id = lc_num(rec, "linode_id", 0);
	jv r;

	snprintf(name, sizeof(name), "%s", lc_subject(rec));
	r = lc_linode_archive(&ledger, lc_session_fill(jv_copy(rec)),
	    "vm_gone", &m);
	if (!jv_is_valid(r))
		return lc_attach_error(rec, r);
	jv_free(rec);
	if (m != NULL) {
		lc_warnx("%s: %s", name, m);
		free(m);
	}
	lc_info("%s: VM %.0f no longer exists: session archived", name, id);
	return r;
}

/* Is the session's VM gone? 1 yes, 0 no, -1 with *err: cannot tell. */
static int
vm_gone(struct lc_http *h, jv rec, jv *err)
{
	double id = lc_num(rec, "linode_id", 0);
	jv inst;

	inst = id > 0 ? lc_linode_instance_get(h, id) :
	    lc_linode_instance_find(h, lc_subject(rec));
	if (!jv_is_valid(inst)) {
		if (strcmp(lc_error_code(inst), "not_found") == 0) {
			jv_free(inst);
			return 1;
		}
		*err = inst;
		return -1;
	}
	if (jv_get_kind(inst) == JV_KIND_NULL)
		return 1;
	jv_free(inst);
	return 0;
}

static int
cleanup(int argc, char **argv)
{
	struct lc_config *cfg;
	struct lc_http *h;
	jv all, rec, err;
	int i, n;

	(void)argv;
	if (argc != 0)
		lc_usage(usage_str, "cleanup takes no operands");
	open_ledger();
	h = api(&cfg);
	all = lc_ledger_list(&ledger, 0);
	n = jv_array_length(jv_copy(all));
	for (i = 0; i < n; i++) {
		rec = jv_array_get(jv_copy(all), i);
		lc_progress("checking %d/%d: %s", i + 1, n, lc_subject(rec));
		if (jv_object_has(jv_copy(rec), jv_string("error"))) {
			jv_free(rec);	/* corrupt: lc-sessions shows it */
			continue;
		}
		err = jv_invalid();
		switch (vm_gone(h, rec, &err)) {
		case 1:
			lc_emit(archive_gone(rec));
			break;
		case 0:
			jv_free(rec);
			break;
		default:
			lc_emit(lc_attach_error(rec, err));
		}
	}
	lc_progress_done();
	jv_free(all);
	lc_http_free(h);
	lc_config_free(cfg);
	return lc_finish(NULL);
}

/* linode_id -> name of every active session, as an object. */
static jv
known_ids(void)
{
	jv all = lc_ledger_list(&ledger, 0), ids = jv_object();
	char key[32];

	jv_array_foreach(all, i, rec) {
		(void)i;
		if (lc_num(rec, "linode_id", 0) > 0) {
			snprintf(key, sizeof(key), "%.0f",
			    lc_num(rec, "linode_id", 0));
			ids = jv_object_set(ids, jv_string(key),
			    jv_string(lc_subject(rec)));
		}
		jv_free(rec);
	}
	jv_free(all);
	return ids;
}

/* Price of a type in a region, each type fetched once (cache). */
static void
price(struct lc_http *h, jv *cache, const char *type, const char *region,
    double *hourly, double *monthly)
{
	char path[160];
	jv t;

	*hourly = *monthly = 0;
	if (type == NULL)
		return;
	t = jv_object_get(jv_copy(*cache), jv_string(type));
	if (!jv_is_valid(t)) {
		jv_free(t);
		snprintf(path, sizeof(path), "/linode/types/%s", type);
		t = lc_linode_call(h, "GET", path, jv_null(), jv_null(), 0);
		if (!jv_is_valid(t)) {
			jv_free(t);
			t = jv_object();
		}
		*cache = jv_object_set(*cache, jv_string(type), jv_copy(t));
	}
	lc_linode_price(t, region, hourly, monthly);
	jv_free(t);
}

/* The session name an orphan carries in its lc-session: tag, if any. */
static void
tag_name(jv inst, char *buf, size_t len)
{
	jv tags = lc_get(inst, "tags");
	size_t n = strlen(LC_LINODE_SESSION_TAG);
	jv err = jv_invalid();

	*buf = '\0';
	if (jv_get_kind(tags) == JV_KIND_ARRAY)
		jv_array_foreach(tags, i, t) {
			(void)i;
			if (jv_get_kind(t) == JV_KIND_STRING && strncmp(
			    jv_string_value(t), LC_LINODE_SESSION_TAG, n) == 0)
				snprintf(buf, len, "%s",
				    jv_string_value(t) + n);
			jv_free(t);
		}
	jv_free(tags);
	if (*buf != '\0' && lc_name_check(buf, &err) == -1)
		*buf = '\0';
	jv_free(err);
}

/* What reconcile prints for an orphan VM. Borrows inst. */
static jv
orphan(jv inst, const char *name, double hourly, double monthly, time_t now)
{
	const char *cr = lc_str(inst, "created");
	time_t t = now;
	char ts[32];
	jv r = jv_object_set(jv_object(), jv_string("name"), *name ?
	    jv_string(name) : jv_null()), ip = lc_get(inst, "ipv4");

	if (cr != NULL)
		lc_time_parse(cr, &t);
	r = jv_object_set(r, jv_string("state"), jv_string("orphan"));
	r = jv_object_set(r, jv_string("linode_id"), lc_get(inst, "id"));
	r = jv_object_set(r, jv_string("label"), lc_get(inst, "label"));
	r = jv_object_set(r, jv_string("tags"), lc_get(inst, "tags"));
	r = jv_object_set(r, jv_string("linode_status"), lc_get(inst,
	    "status"));
	r = jv_object_set(r, jv_string("region"), lc_get(inst, "region"));
	r = jv_object_set(r, jv_string("type"), lc_get(inst, "type"));
	r = jv_object_set(r, jv_string("ipv4"), jv_get_kind(ip) ==
	    JV_KIND_ARRAY && jv_array_length(jv_copy(ip)) > 0 ?
	    jv_array_get(jv_copy(ip), 0) : jv_null());
	jv_free(ip);
	r = jv_object_set(r, jv_string("hourly_cost_usd"), hourly > 0 ?
	    jv_number(hourly) : jv_null());
	r = jv_object_set(r, jv_string("monthly_cost_usd"), monthly > 0 ?
	    jv_number(monthly) : jv_null());
	r = jv_object_set(r, jv_string("created_at"),
	    jv_string(lc_time_fmt(t, ts, sizeof(ts))));
	r = jv_object_set(r, jv_string("age_s"), jv_number(now > t ?
	    (double)(now - t) : 0));
	return jv_object_set(r, jv_string("cost_usd"), jv_number(
	    lc_cost(hourly, monthly, t, now)));
}

/*
 * Give an orphan a session: its tag's name when the label matches and
 * the name is free, else "orphan-<id>" with the label and tag set to
 * match (so lc-destroy's safety check accepts it). Consumes orph.
 */
static jv
adopt(struct lc_http *h, struct lc_config *cfg, jv inst, jv orph,
    const char *tname)
{
	char name[64], label[80], tag[80], path[64], file[96], ts[32], *kh;
	double id = lc_num(inst, "id", 0);
	jv cur, fws, ev, err = jv_invalid(), rec;
	time_t t = lc_now();

	snprintf(name, sizeof(name), "%s", tname);
	cur = *name ? lc_ledger_get(&ledger, name) : jv_invalid();
	if (*name == '\0' || jv_is_valid(cur) || strcmp(lc_error_code(cur),
	    "not_found") != 0 || !lc_linode_owns(inst, name))
		snprintf(name, sizeof(name), "orphan-%.0f", id);
	jv_free(cur);
	inst = jv_copy(inst);
	if (!lc_linode_owns(inst, name)) {
		jv tags = lc_get(inst, "tags"), body;

		if (jv_get_kind(tags) != JV_KIND_ARRAY) {
			jv_free(tags);
			tags = jv_array();
		}
		tags = jv_array_append(tags, jv_string(lc_linode_session_tag(
		    name, tag, sizeof(tag))));
		body = jv_object_set(jv_object(), jv_string("label"),
		    jv_string(lc_linode_label(name, label, sizeof(label))));
		body = jv_object_set(body, jv_string("tags"), tags);
		snprintf(path, sizeof(path), "/linode/instances/%.0f", id);
		jv_free(inst);
		inst = lc_linode_call(h, "PUT", path, jv_null(), body, 0);
		if (!jv_is_valid(inst))
			return lc_attach_error(orph, inst);
	}
	snprintf(path, sizeof(path), "/linode/instances/%.0f/firewalls", id);
	fws = lc_linode_list(h, path, jv_null());
	snprintf(file, sizeof(file), "%s.known_hosts", name);
	kh = lc_ledger_path(&ledger, file);
	if (lc_str(orph, "created_at") != NULL)
		lc_time_parse(lc_str(orph, "created_at"), &t);
	rec = jv_object_set(jv_object(), jv_string("name"), jv_string(name));
	rec = jv_object_set(rec, jv_string("adopted_at"), jv_string(
	    lc_time_fmt(lc_now(), ts, sizeof(ts))));
	rec = lc_linode_session(rec, inst, lc_num(orph, "hourly_cost_usd", 0),
	    lc_num(orph, "monthly_cost_usd", 0), t, cfg, kh);
	free(kh);
	jv_free(inst);
	if (jv_is_valid(fws) && jv_array_length(jv_copy(fws)) > 0) {
		jv fw = jv_array_get(jv_copy(fws), 0);

		rec = jv_object_set(rec, jv_string("firewall_id"),
		    lc_get(fw, "id"));
		jv_free(fw);
	}
	jv_free(fws);
	rec = lc_ledger_put(&ledger, rec);
	if (!jv_is_valid(rec))
		return lc_attach_error(orph, rec);
	jv_free(orph);
	ev = jv_object_set(jv_object(), jv_string("event"),
	    jv_string("adopted"));
	ev = jv_object_set(ev, jv_string("name"), jv_string(name));
	ev = jv_object_set(ev, jv_string("linode_id"), jv_number(id));
	ev = jv_object_set(ev, jv_string("type"), lc_get(rec, "type"));
	ev = jv_object_set(ev, jv_string("region"), lc_get(rec, "region"));
	ev = jv_object_set(ev, jv_string("hourly_cost_usd"), lc_get(rec,
	    "hourly_cost_usd"));
	ev = jv_object_set(ev, jv_string("monthly_cost_usd"), lc_get(rec,
	    "monthly_cost_usd"));
	ev = jv_object_set(ev, jv_string("adopted_at"), jv_string(ts));
	ev = jv_object_set(ev, jv_string("at"), lc_get(rec, "created_at"));
	if (lc_ledger_event(&ledger, "ledger.jsonl", ev, &err) == -1) {
		char *m = lc_error_message(err);

		lc_warnx("%s: %s", name, m);
		free(m);
	}
	jv_free(err);
	lc_info("%s: adopted VM %.0f", name, id);
	return lc_session_live(rec, lc_now());
}

static int
reconcile(struct opts *o, int argc, char **argv)
{
	struct lc_config *cfg;
	struct lc_http *h;
	time_t now = lc_now();
	jv insts, ids, cache = jv_object();
	char key[32], tname[64];

	(void)argv;
	if (argc != 0)
		lc_usage(usage_str, "reconcile takes no operands");
	open_ledger();
	h = api(&cfg);
	insts = lc_linode_instances_tagged(h, LC_LINODE_TAG);
	if (!jv_is_valid(insts)) {
		lc_emit(lc_attach_error(jv_object(), insts));
		insts = jv_array();
	}
	ids = known_ids();
	jv_array_foreach(insts, i, inst) {
		double hourly, monthly;
		jv orph;

		(void)i;
		snprintf(key, sizeof(key), "%.0f", lc_num(inst, "id", 0));
		if (jv_object_has(jv_copy(ids), jv_string(key))) {
			jv_free(inst);
			continue;
		}
		price(h, &cache, lc_str(inst, "type"), lc_str(inst, "region"),
		    &hourly, &monthly);
		tag_name(inst, tname, sizeof(tname));
		orph = orphan(inst, tname, hourly, monthly, now);
		if (!o->adopt)
			lc_warnx("%s: VM %s (%s) is tagged " LC_LINODE_TAG
			    " but no session knows it: it bills $%.2f/hour "
			    "(--adopt takes it in)", *tname ? tname : "-", key,
			    lc_str(inst, "label") ? lc_str(inst, "label") : "?",
			    hourly);
		lc_emit(o->adopt ? adopt(h, cfg, inst, orph, tname) : orph);
		jv_free(inst);
	}
	jv_free(insts);
	jv_free(ids);
	jv_free(cache);
	lc_http_free(h);
	lc_config_free(cfg);
	return lc_finish(NULL);
}

int
main(int argc, char *argv[])
{
	struct opts o = { .by_s = -1, .deadline_s = -1 };
	const char *verb = NULL;
	int ch;

	lc_init("lc-sessions");
	/* The verb comes first; options may follow it (getopt permutes). */
	if (argc > 1 && argv[1][0] != '-') {
		static const char *verbs[] = { "use", "extend", "forget",
		    "cost", "cleanup", "reconcile", NULL };

		for (int i = 0; verbs[i] != NULL; i++)
			if (strcmp(argv[1], verbs[i]) == 0) {
				verb = verbs[i];
				argv++;
				argc--;
				break;
			}
	}
	while ((ch = getopt_long(argc, argv, "aAb:d:hqs:Tvy", longopts,
	    NULL)) != -1) {
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
		case 'h': lc_help(help_str);
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
	if (strcmp(verb, "cleanup") == 0)
		return cleanup(argc, argv);
	return reconcile(&o, argc, argv);
}
