/*
 * lc-watch: the money guard. Samples each session's vLLM activity over
 * SSH, decides keep, idle, deadline, budget, unready, unhealthy or gone
 * (lib/watch.c holds the rules), writes what it saw back to the session,
 * appends every decision to watch.jsonl and, when asked, acts: deletes
 * the VM (--destroy), runs lc-heal (--heal), archives sessions whose VM
 * is gone. Built to run from cron every minute: a session is handled by
 * one run at a time (a lock per session), sessions are sampled in
 * parallel, and each has a time limit.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "failsafe.h"
#include "http.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "pool.h"
#include "session.h"
#include "linode.h"
#include "opts.h"
#include "rec.h"
#include "remote.h"
#include "ssh.h"
#include "vllm.h"
#include "watch.h"

static const struct lc_opt opts[] = {
	{ 'D', "destroy", NULL, "delete the VMs of idle, deadline, budget and "
	  "unready sessions" },
	{ 'H', "heal", NULL, "run lc-heal on unhealthy sessions" },
	{ 'l', "ledger", NULL, "watch every active session in the ledger, "
	  "whatever stdin holds (the cron line uses it)" },
	{ 'n', "dry-run", NULL, "say what would be done; change nothing" },
	{ 'j', "jobs", "jobs", "sessions sampled at once (LC_JOBS; default: "
	  "all, up to 256 and the open-file limit)" },
	{ 't', "timeout", "seconds", "time limit for sampling one session "
	  "(20)" },
	{ 'I', "install-cron", NULL, "add the cron line that runs lc-watch "
	  "every minute (once, however often it is asked)" },
	{ 'U', "uninstall-cron", NULL, "remove that line" },
	{ 'S', "cron-status", NULL, "whether it is installed; recent "
	  "decisions" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "more detail on stderr" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

/* Two forms, the cron one alone: a usage text of its own. */
static const struct lc_cmd cmd = {
	.name = "lc-watch",
	.summary = "lc-watch: stop the bill of idle, late or over-budget "
	    "sessions",
	.usage = "usage: lc-watch [-DHlnqv] [-j jobs] [-t seconds] "
	    "[name ...]\n"
	    "       lc-watch -I | -S | -U",
	.after = "With no names, the records on stdin; when stdin is a "
	    "terminal or\n/dev/null or holds no record, every active session "
	    "in the ledger.\nOne event record per session on stdout; see "
	    "lc-watch(1).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

/* How long deleting a VM may take, waiting for the API's 404. */
#define DESTROY_MS	(5 * 60 * 1000L)
/* lc-watch is meant to run once a minute. */
#define PERIOD_S	60
#define CRON_MARK	"# linode-coder: lc-watch"

static struct {
	int	 destroy, heal, dry, ledger;
	long	 timeout_s;
	int	 jobs;
} opt = { .timeout_s = 20 };

static struct lc_watch_limits limits = { .period_s = PERIOD_S };
static struct lc_http_opts http_opts;	/* .token NULL: no API */
static char *token;
static time_t now;
/* This ledger's owner id (empty: unknown, so no orphan is looked for),
 * how old an orphan may grow, and whether the state directory could only
 * be opened for reading (the guard acts all the same, and says so). */
static char owner[LC_OWNER_LEN + 1];
static int ledger_ro;

/*
 * The account's instances, fetched once per run by a thread of its own
 * while the sessions are sampled. Kept as plain C data: jv reference
 * counts are not atomic, so no jv is ever read by two threads.
 */
struct inst {
	double	 id;
	int	 ours;		/* label and session tag match label's name */
	int	 mine;		/* carries this ledger's owner tag */
	int	 worker;	/* a worker node of the group "name" */
	time_t	 created;
	char	 name[40];	/* the session the label names */
	char	 type[64], region[32], ipv4[48], image[64], status[24];
};
static struct {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 state;		/* 0 pending, 1 ok, -1 failed/none */
	struct inst	*v;
	size_t		 n;
} api = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, 0 };

/* The VM ids the session pass judged: never orphans in the same run,
 * even once a session is archived. Guarded by api.mu. */
static struct {
	double	*v;
	size_t	 n, cap;
} judged;

static void
note_judged(double id)
{
	if (id <= 0)
		return;
	pthread_mutex_lock(&api.mu);
	if (judged.n == judged.cap) {
		judged.cap = judged.cap ? judged.cap * 2 : 64;
		double *v = realloc(judged.v, judged.cap * sizeof(*v));

		if (v == NULL) {	/* at worst judged twice: harmless */
			pthread_mutex_unlock(&api.mu);
			return;
		}
		judged.v = v;
	}
	judged.v[judged.n++] = id;
	pthread_mutex_unlock(&api.mu);
}

/* Was id judged by the session pass? Called after it. */
static int
was_judged(double id)
{
	size_t i;

	for (i = 0; i < judged.n; i++)
		if (judged.v[i] == id)
			return 1;
	return 0;
}

/* A node of a group belongs to the session its group tag names (its
 * label is the head's, or "lc-<name>.w<i>" for a worker). Borrows. */
static void
group_fill(struct inst *d, jv inst, jv tags)
{
	size_t n = strlen(LC_LINODE_GROUP_TAG);
	const char *label = lc_str(inst, "label");

	if (jv_get_kind(tags) != JV_KIND_ARRAY)
		return;
	jv_array_foreach(tags, i, t) {
		const char *s = jv_get_kind(t) == JV_KIND_STRING ?
		    jv_string_value(t) : "";

		if (strncmp(s, LC_LINODE_GROUP_TAG, n) == 0 &&
		    strlen(s + n) < sizeof(d->name)) {
			snprintf(d->name, sizeof(d->name), "%s", s + n);
			d->ours = lc_linode_owns(inst, d->name);
			d->worker = label == NULL || strncmp(label, "lc-", 3) ||
			    strcmp(label + 3, d->name) != 0;
		}
		jv_free(t);
	}
}

/* The nodes of a group session are judged with it, as one. Borrows. */
static void
judged_group(jv rec)
{
	jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes");

	if (jv_get_kind(nodes) == JV_KIND_ARRAY)
		jv_array_foreach(nodes, i, n) {
			(void)i;
			if (lc_num(n, "linode_id", 0) > 0)
				note_judged(lc_num(n, "linode_id", 0));
			jv_free(n);
		}
	jv_free(nodes);
	jv_free(g);
}

/* One instance into C data. Borrows inst. */
static void
inst_fill(struct inst *d, jv inst)
{
	const char *label = lc_str(inst, "label");

	jv tags = lc_get(inst, "tags"), ip = lc_get(inst, "ipv4");
	char tag[64];

	memset(d, 0, sizeof(*d));
	d->id = lc_num(inst, "id", 0);
	if (label != NULL && strncmp(label, "lc-", 3) == 0 &&
	    strlen(label + 3) < sizeof(d->name)) {
		snprintf(d->name, sizeof(d->name), "%s", label + 3);
		d->ours = lc_linode_owns(inst, d->name);
	}
	lc_session_owner_tag(owner, tag, sizeof(tag));
	if (*owner != '\0' && jv_get_kind(tags) == JV_KIND_ARRAY)
		jv_array_foreach(tags, i, t) {
			if (jv_get_kind(t) == JV_KIND_STRING &&
			    strcmp(jv_string_value(t), tag) == 0)
				d->mine = 1;
			jv_free(t);
		}
	group_fill(d, inst, tags);
	if (lc_str(inst, "created") == NULL ||
	    lc_time_parse(lc_str(inst, "created"), &d->created) == -1)
		d->created = now;
	snprintf(d->type, sizeof(d->type), "%s", lc_str(inst, "type") ?
	    lc_str(inst, "type") : "");
	snprintf(d->region, sizeof(d->region), "%s", lc_str(inst, "region") ?
	    lc_str(inst, "region") : "");
	snprintf(d->image, sizeof(d->image), "%s", lc_str(inst, "image") ?
	    lc_str(inst, "image") : "");
	snprintf(d->status, sizeof(d->status), "%s", lc_str(inst, "status") ?
	    lc_str(inst, "status") : "");
	if (jv_get_kind(ip) == JV_KIND_ARRAY && jv_array_length(jv_copy(ip)) >
	    0) {
		jv a = jv_array_get(jv_copy(ip), 0);

		if (jv_get_kind(a) == JV_KIND_STRING)
			snprintf(d->ipv4, sizeof(d->ipv4), "%s",
			    jv_string_value(a));
		jv_free(a);
	}
	jv_free(ip);
	jv_free(tags);
}

/* Fetch the instances tagged linode-coder: one filtered, paginated
 * call. A VM missing from it is taken for gone only once a GET of its
 * id answers 404, so one whose tags were changed never reads as gone. */
static void *
api_fetch(void *unused)
{
	struct lc_http *h = lc_http_new(&http_opts);
	jv list = h ? lc_linode_instances_tagged(h, LC_LINODE_TAG) :
	    lc_errorf("nomem", "out of memory");
	struct inst *v = NULL;
	int i, n = 0, state = -1;

	(void)unused;
	if (jv_is_valid(list)) {
		n = jv_array_length(jv_copy(list));
		v = lc_xmalloc(sizeof(*v) * (size_t)(n > 0 ? n : 1));
		for (i = 0; i < n; i++) {
			jv inst = jv_array_get(jv_copy(list), i);

			inst_fill(&v[i], inst);
			jv_free(inst);
		}
		state = 1;
	} else {
		char *m = lc_error_message(list);

		lc_warnx("cannot list instances, so no session is taken for "
		    "gone this run: %s", m);
		free(m);
	}
	jv_free(list);
	lc_http_free(h);
	pthread_mutex_lock(&api.mu);
	api.v = v;
	api.n = (size_t)n;
	api.state = state;
	pthread_cond_broadcast(&api.cv);
	pthread_mutex_unlock(&api.mu);
	return NULL;
}

/* The instance with this id: 1 found (*out), 0 absent, -1 unknown. */
static int
api_find(double id, struct inst *out)
{
	size_t i;
	int rc;

	pthread_mutex_lock(&api.mu);
	while (api.state == 0)
		pthread_cond_wait(&api.cv, &api.mu);
	rc = api.state == 1 ? 0 : -1;
	for (i = 0; rc == 0 && i < api.n; i++)
		if (api.v[i].id == id) {
			*out = api.v[i];
			rc = 1;
		}
	pthread_mutex_unlock(&api.mu);
	return rc;
}

/* What a worker thread keeps: its own config, ledger and HTTP handle. */
struct worker {
	struct lc_config *cfg;
	struct lc_ledger  ledger;
	struct lc_http	 *http;
};

static int
worker_open(struct worker *w)
{
	jv err = jv_invalid();

	memset(w, 0, sizeof(*w));
	w->ledger.lockfd = -1;
	if ((w->cfg = lc_config_load(&err)) == NULL ||
	    (ledger_ro ? lc_ledger_open_ro(&w->ledger, &err) :
	    lc_ledger_open(&w->ledger, &err)) == -1) {
		char *m = lc_error_message(err);

		lc_warnx("%s", m);
		free(m);
		lc_config_free(w->cfg);
		return -1;
	}
	jv_free(err);
	if (http_opts.token != NULL)
		w->http = lc_http_new(&http_opts);
	return 0;
}

static void
worker_close(struct worker *w)
{
	lc_http_free(w->http);
	lc_ledger_close(&w->ledger);
	lc_config_free(w->cfg);
}

/*
 * The per-session lock: locks/<name>.lock, held by one run at a time.
 * Returns the fd, -2 when another process holds it, -3 when the state
 * directory cannot hold a lock (read-only, full: the guard goes on
 * without one; a second DELETE of a VM is harmless), -1 on error.
 */
static int
session_lock(struct worker *w, const char *name)
{
	char *path;
	int fd;

	path = lc_session_path(&w->ledger, name, LC_SESSION_LOCK);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1 &&
	    errno == ENOENT) {
		char *dir = lc_ledger_path(&w->ledger, "locks");

		lc_mkdirs(dir, 0700);
		free(dir);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	free(path);
	if (fd == -1)
		return errno == EROFS || errno == EACCES || errno == ENOSPC ||
		    errno == ENOENT || errno == EPERM ? -3 : -1;
	if (lc_lock_fd(fd, 1, 1) == -1) {
		close(fd);
		return errno == EWOULDBLOCK ? -2 : -1;
	}
	return fd;
}

/* The marker curl writes after each URL's body: code and URL. */
#define MARK "\n@lc-watch "

/*
 * Split curl's output for /health then /metrics: each body is followed
 * by MARK "<code> <url>\n". Fills the health code and the metrics.
 */
static void
parse_curl(struct lc_buf *out, struct lc_watch_sample *s)
{
	char *p = out->data, *m1, *m2;

	if (p == NULL || (m1 = strstr(p, MARK)) == NULL)
		return;
	s->health = atoi(m1 + strlen(MARK));
	if ((p = strchr(m1 + 1, '\n')) == NULL ||
	    (m2 = strstr(p, MARK)) == NULL)
		return;
	if (atoi(m2 + strlen(MARK)) == 200 &&
	    lc_watch_parse_metrics(p + 1, (size_t)(m2 - p - 1), &s->m) == 0)
		s->have_metrics = 1;
}

/* lc_ledger_update's callback: merge the watch's fields. */
static jv
merge_fn(jv stored, void *arg)
{
	if (!jv_is_valid(stored))
		return stored;
	return lc_watch_merge(stored, jv_copy(*(jv *)arg));
}

/* Merge the fields of f (consumed) into *upd. */
static void
add_fields(jv *upd, jv f)
{
	jv_object_foreach(f, k, v)
		*upd = jv_object_set(*upd, k, v);
	jv_free(f);
}

/*
 * The VM's own guard (lib/failsafe), while the connection is open. When
 * an extend moved deadline_at since the VM's token and deadline were
 * made: a new token for the new deadline, pushed with it, the old one
 * revoked. Then the client's activity time for the VM's idle clock, and
 * the VM's status line. What changed goes into the record; failures are
 * tried again next run. Borrows rec; returns the VM's status (owned, null
 * when none).
 */
static jv
sync_failsafe(struct lc_ssh *ssh, struct worker *w, jv rec)
{
	const char *want = lc_str(rec, "deadline_at"), *name = lc_str(rec,
	    "name"), *have = lc_str(rec, "failsafe_deadline_at"),
	    *fs = lc_str(rec, "failsafe");
	jv upd, f, st = jv_null();
	char *warn = NULL, *m;

	if (opt.dry || fs == NULL || strcmp(fs, "armed") != 0)
		return st;
	upd = jv_object();
	if (want != NULL && have != NULL && strcmp(want, have) != 0 &&
	    w->http != NULL) {
		f = lc_failsafe_rearm(w->http, ssh, w->cfg, rec, &warn);
		if (jv_is_valid(f))
			add_fields(&upd, f);
		else {
			m = lc_error_message(f);
			lc_warnx("%s: the VM's own deadline is still %s (the "
			    "next run tries again): %s", name, have, m);
			free(m);
			jv_free(f);
		}
		if (warn != NULL)
			lc_warnx("%s: the old fail-safe token was not revoked "
			    "(it expires by itself): %s", name, warn);
		free(warn);
	}
	f = lc_failsafe_sync(ssh, w->cfg, rec);
	if (jv_is_valid(f)) {
		jv_free(st);
		st = lc_get(f, "vm_guard");
		add_fields(&upd, f);
	} else
		jv_free(f);
	if (jv_object_length(jv_copy(upd)) > 0)
		jv_free(lc_ledger_update(&w->ledger, name, merge_fn, &upd));
	jv_free(upd);
	return st;
}

/*
 * Sample the session's vLLM over SSH: one connection, one curl on the
 * VM's loopback that fetches /health and /metrics. why (a buffer the
 * caller frees) says what failed. deadline: lc_mono_ms() limit. *vm: the
 * VM's own guard's status (owned; stays as it was when none is read).
 */
static void
sample(struct worker *w, jv rec, long long deadline,
    struct lc_watch_sample *s, struct lc_buf *why, jv *vm)
{
	static const char *const needs[] = { "curl", NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	char health[96], metrics[96], tmo[24];
	const char *argv[] = { "curl", "-sS", "-m", tmo, "-w",
	    MARK "%{http_code} %{url_effective}\\n", health, metrics, NULL };
	long left = (long)(deadline - lc_mono_ms());
	struct lc_ssh *ssh;
	jv err = jv_invalid();
	int port = lc_vllm_port(rec);
	char *m;

	memset(s, 0, sizeof(*s));
	snprintf(health, sizeof(health), "http://127.0.0.1:%d/health", port);
	snprintf(metrics, sizeof(metrics), "http://127.0.0.1:%d/metrics",
	    port);
	snprintf(tmo, sizeof(tmo), "%ld", opt.timeout_s < 5 ? opt.timeout_s :
	    5);
	if (left < 1)
		left = 1;
	if ((ssh = lc_ssh_open(w->cfg, rec, left, 0, &err)) == NULL)
		goto fail;
	s->reached = 1;
	left = (long)(deadline - lc_mono_ms());
	if (lc_remote_run(ssh, w->cfg, rec, needs, argv, left > 1 ? left : 1,
	    &res, &err) == -1) {
		s->reached = 0;
		goto fail;
	}
	parse_curl(&res.out, s);
	*vm = sync_failsafe(ssh, w, rec);
	if (!s->have_metrics) {
		size_t n = res.err.len;

		while (n > 0 && (res.err.data[n - 1] == '\n'))
			n--;
		if (n > 0)
			lc_buf_printf(why, "%.*s", (int)(n > 200 ? 200 : n),
			    res.err.data);
		else
			lc_buf_printf(why, "no vLLM metrics on port %d", port);
	}
	jv_free(err);
	lc_ssh_result_free(&res);
	lc_ssh_close(ssh);
	return;
fail:
	m = lc_error_message(err);
	lc_buf_printf(why, "%s: %s", lc_error_code(err), m);
	free(m);
	jv_free(err);
	lc_ssh_result_free(&res);
	lc_ssh_close(ssh);
}

/* The event record: what was decided about one session, and done. */
static jv
event(const char *name, jv rec, jv verdict, const char *action)
{
	char ts[32];
	jv ev = jv_object_set(jv_object(), jv_string("name"), jv_string(name));

	ev = jv_object_set(ev, jv_string("linode_id"), lc_get(rec,
	    "linode_id"));
	ev = jv_object_set(ev, jv_string("decision"), lc_get(verdict,
	    "decision"));
	ev = jv_object_set(ev, jv_string("reason"), lc_get(verdict,
	    "reason"));
	ev = jv_object_set(ev, jv_string("idle_s"), lc_get(verdict, "idle_s"));
	ev = jv_object_set(ev, jv_string("cost_usd"), lc_get(verdict,
	    "cost_usd"));
	ev = jv_object_set(ev, jv_string("warning"), lc_get(verdict,
	    "warning"));
	jv_free(verdict);
	ev = jv_object_set(ev, jv_string("action"), jv_string(action));
	return jv_object_set(ev, jv_string("at"), jv_string(lc_time_fmt(now,
	    ts, sizeof(ts))));
}

/* A verdict made here rather than by lc_watch_decide. */
static jv
verdict_of(const char *decision, const char *reason, jv rec)
{
	jv v = jv_object_set(jv_object(), jv_string("decision"),
	    jv_string(decision));

	v = jv_object_set(v, jv_string("reason"), jv_string(reason));
	v = jv_object_set(v, jv_string("idle_s"), jv_null());
	v = jv_object_set(v, jv_string("cost_usd"), lc_get(rec, "cost_usd"));
	return jv_object_set(v, jv_string("warning"), jv_null());
}

/*
 * Archive a session whose VM is gone (deleted here, or found deleted),
 * by lib/session. Consumes rec. 0, or -1 with *err (ledger_write: the
 * VM is gone all the same, and the next run tidies the ledger).
 */
static int
archive(struct worker *w, jv rec, const char *why, jv *err)
{
	char *warn = NULL, *m;
	jv r = lc_session_archive(&w->ledger, rec, why, "lc-watch", &warn);

	free(warn);	/* the archive stands; the log line is lost */
	if (jv_is_valid(r)) {
		jv_free(r);
		return 0;
	}
	m = lc_error_message(r);
	jv_free(r);
	*err = lc_errorf("ledger_write", "the VM is gone, but the ledger "
	    "could not be written (%s): the next lc-watch run records it "
	    "once the state directory can be written", m);
	free(m);
	return -1;
}

/*
 * Delete the session's VM the way lc-destroy does (lib/linode checks the
 * id, label and tags first and refuses a VM that is not this session's),
 * revoke its fail-safe token, archive it. Borrows rec. 0; 1 when the VM
 * is deleted but the ledger could not record it (*err: ledger_write);
 * -1 with *err when the VM was not deleted.
 */
static int
destroy(struct worker *w, jv rec, const char *why, jv *err)
{
	const char *name = lc_str(rec, "name");
	jv r;

	if (w->http == NULL) {
		*err = lc_errorf("no_token", "no Linode token to delete with");
		return -1;
	}
	/* Delete first: a ledger that cannot be written must not keep a
	 * VM billing. */
	r = lc_linode_session_delete(w->http, name, lc_num(rec, "linode_id",
	    0), lc_num(rec, "firewall_id", 0), DESTROY_MS);
	if (!jv_is_valid(r)) {
		*err = r;
		return -1;
	}
	if (lc_str(r, "firewall_error") != NULL)
		lc_warnx("%s: firewall: %s", name, lc_str(r, "firewall_error"));
	jv_free(r);
	/* A group: what is left of it, even with its head gone already. */
	if (lc_num(rec, "nodes", 1) > 1) {
		r = lc_linode_group_delete(w->http, name, 0, DESTROY_MS);
		if (!jv_is_valid(r)) {
			*err = r;
			return -1;
		}
		jv_free(r);
	}
	r = jv_invalid();
	if (lc_failsafe_revoke(w->http, rec, &r) == -1) {
		char *m = lc_error_message(r);

		lc_warnx("%s: the fail-safe token was not revoked (it expires "
		    "by itself): %s", name, m);
		free(m);
	}
	jv_free(r);
	if (archive(w, jv_copy(rec), why, err) == 0)
		return 0;
	{
		char *m = lc_error_message(*err);

		lc_warnx("%s: VM %.0f deleted: %s", name,
		    lc_num(rec, "linode_id", 0), m);
		free(m);
	}
	return 1;
}

/*
 * Run `lc-heal --if-failed` with the record on its stdin; what it writes
 * back (the record with its heal rounds) goes into the ledger. Borrows
 * rec. 0, or -1 with *err (heal_failed).
 */
static int
heal(struct worker *w, jv rec, jv *err)
{
	char *const argv[] = { "lc-heal", "--if-failed", NULL };
	extern char **environ;
	posix_spawn_file_actions_t fa;
	struct lc_buf out = LC_BUF_INIT;
	char *text = lc_json(rec), buf[4096];
	int p[2] = { -1, -1 }, status = -1, rc = -1;
	FILE *in = tmpfile();
	pid_t pid;
	ssize_t n;
	jv back;

	if (in == NULL || fputs(text, in) == EOF || fflush(in) == EOF ||
	    fseek(in, 0, SEEK_SET) == -1 || pipe(p) == -1 ||
	    fcntl(p[0], F_SETFD, FD_CLOEXEC) == -1 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) == -1 ||
	    fcntl(fileno(in), F_SETFD, FD_CLOEXEC) == -1) {
		*err = lc_errorf("heal_failed", "cannot start lc-heal: %s",
		    strerror(errno));
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fileno(in), 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	errno = posix_spawnp(&pid, "lc-heal", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	p[1] = -1;
	if (errno != 0) {
		*err = lc_errorf("heal_failed", "cannot run lc-heal: %s",
		    strerror(errno));
		goto out;
	}
	while ((n = read(p[0], buf, sizeof(buf))) > 0 ||
	    (n == -1 && errno == EINTR))
		if (n > 0)
			lc_buf_add(&out, buf, (size_t)n);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	back = lc_parse_texts(out.data ? out.data : "", out.len);
	if (jv_is_valid(back) && jv_array_length(jv_copy(back)) == 1) {
		jv r = jv_array_get(jv_copy(back), 0);

		if (jv_get_kind(r) == JV_KIND_OBJECT &&
		    !jv_object_has(jv_copy(r), jv_string("error")))
			jv_free(lc_session_merge(&w->ledger, lc_str(rec,
			    "name"), r));
		else
			jv_free(r);
	}
	jv_free(back);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = 0;
	else
		*err = lc_errorf("heal_failed", "lc-heal could not fix it "
		    "(exit status %d)", WIFEXITED(status) ?
		    WEXITSTATUS(status) : 128 + WTERMSIG(status));
out:
	if (in != NULL)
		fclose(in);
	if (p[0] != -1)
		close(p[0]);
	if (p[1] != -1)
		close(p[1]);
	lc_buf_free(&out);
	free(text);
	return rc;
}

/* One session to watch: its input record. */
struct job {
	jv	 in;
	int	 from_ledger;	/* listed from the ledger, not given */
};

/*
 * An error value as the record's "error" member, without the stderr
 * line: workers run at once, so main prints it when it emits the record.
 * Consumes both.
 */
static jv
quiet_error(jv rec, jv err)
{
	jv msg = jv_invalid_get_msg(lc_error_from_invalid(err, "error")), e;

	e = jv_object_set(jv_object(), jv_string("code"), lc_get(msg, "code"));
	e = jv_object_set(e, jv_string("message"), lc_get(msg, "message"));
	e = jv_object_set(e, jv_string("tool"), jv_string("lc-watch"));
	jv_free(msg);
	return jv_object_set(rec, jv_string("error"), e);
}

/* Has the API finished listing (without waiting)? */
static int
api_known(void)
{
	int k;

	pthread_mutex_lock(&api.mu);
	k = api.state != 0;
	pthread_mutex_unlock(&api.mu);
	return k;
}

/*
 * Is the session's VM gone? Only when the list lacks its id and a GET
 * of that id answers 404: a failed list or any other answer is "not
 * known to be gone". Borrows rec.
 */
static int
vm_gone(struct worker *w, jv rec)
{
	double id = lc_num(rec, "linode_id", 0);
	struct inst i;
	int gone;
	jv g;

	if (id <= 0 || w->http == NULL || api_find(id, &i) != 0)
		return 0;
	g = lc_linode_instance_get(w->http, id);
	gone = !jv_is_valid(g) && strcmp(lc_error_code(g), "not_found") == 0;
	jv_free(g);
	return gone;
}

/*
 * The stored record of the job's session (the freshest, read under the
 * session lock), else the given record when the ledger has none.
 * Consumes job->in. *stored: 1 when it came from the ledger. Returns the
 * record, null when a ledger-listed session has been archived since, or
 * an error value.
 */
static jv
current(struct worker *w, struct job *job, const char *name, int *stored)
{
	jv rec = lc_ledger_get(&w->ledger, name);

	*stored = jv_is_valid(rec);
	if (*stored) {
		jv_free(job->in);
		return rec;
	}
	if (strcmp(lc_error_code(rec), "not_found") != 0) {
		jv_free(job->in);
		return rec;
	}
	jv_free(rec);
	if (job->from_ledger) {
		jv_free(job->in);
		return jv_null();
	}
	return job->in;
}

/* Do what the decision asks for, as far as the flags allow. Borrows rec;
 * returns the action's name, with *err set when it failed. */
static const char *
act(struct worker *w, jv rec, const char *d, jv *err)
{
	if (strcmp(d, "gone") == 0) {
		if (opt.dry)
			return "would_archive";
		return archive(w, jv_copy(rec), "gone", err) == 0 ?
		    "archived" : "failed";
	}
	if (lc_watch_destroys(d) && opt.destroy) {
		if (opt.dry)
			return "would_destroy";
		if (destroy(w, rec, d, err) >= 0)
			return "destroyed";
		return strcmp(lc_error_code(*err), "mismatch") == 0 ?
		    "refused" : "failed";
	}
	if (strcmp(d, "unhealthy") == 0 && opt.heal) {
		if (opt.dry)
			return "would_heal";
		return heal(w, rec, err) == 0 ? "healed" : "failed";
	}
	return "none";
}

/* A time field, or 0. Borrows rec. */
static time_t
when(jv rec, const char *key)
{
	const char *s = lc_str(rec, key);
	time_t t;

	return s != NULL && lc_time_parse(s, &t) == 0 ? t : 0;
}

/*
 * Write the watch's fields back (consumes rec and update; returns the
 * stored record). A command that recorded activity since the record was
 * read (lc-sessions extend) overrules an idle verdict.
 */
static jv
write_back(struct worker *w, jv rec, jv *verdict, jv update)
{
	jv r = lc_ledger_update(&w->ledger, lc_str(rec, "name"), merge_fn,
	    &update);

	jv_free(update);
	if (!jv_is_valid(r)) {
		jv_free(r);
		return rec;
	}
	if (strcmp(lc_str(*verdict, "decision"), "idle") == 0 &&
	    when(r, "last_activity_at") > when(rec, "last_activity_at")) {
		jv_free(*verdict);
		*verdict = verdict_of("keep", "activity recorded meanwhile "
		    "(lc-sessions extend)", r);
	}
	jv_free(rec);
	return r;
}

/* Sample, decide, record; rec is the session (consumed). */
static jv
judge(struct worker *w, jv rec, int stored, long long deadline, jv *err)
{
	const char *state = lc_str(rec, "state");
	int ready = state != NULL && strcmp(state, "ready") == 0, gone = 0;
	int checked;
	struct lc_buf why = LC_BUF_INIT;
	struct lc_watch_sample s;
	jv verdict, update, r, vm = jv_null();
	const char *action;

	note_judged(lc_num(rec, "linode_id", 0));
	judged_group(rec);
	/* The listing runs beside the sampling: ask first only when it is
	 * in already, so a deleted VM costs no SSH time-out. */
	if ((checked = api_known()))
		gone = vm_gone(w, rec);
	if (!gone && ready) {
		sample(w, rec, deadline, &s, &why, &vm);
		s.why = why.data;
	}
	if (!checked)
		gone = vm_gone(w, rec);
	if (gone) {
		verdict = verdict_of("gone", "the VM no longer exists (the "
		    "Linode API answers 404 for its id)", rec);
		r = lc_session_live(jv_copy(rec), now);
		verdict = jv_object_set(verdict, jv_string("cost_usd"),
		    lc_get(r, "cost_usd"));
		jv_free(r);
	} else {
		struct lc_watch_limits lim = limits;

		int held = !ready && lc_session_held(&w->ledger,
		    lc_str(rec, "name"));

		lim.unattended = !ready && !held;
		lim.attended = held;
		verdict = lc_watch_decide(rec, ready ? &s : NULL, now, &lim);
		update = lc_get(verdict, "update");
		verdict = jv_object_delete(verdict, jv_string("update"));
		if (!opt.dry && stored)
			rec = write_back(w, rec, &verdict, update);
		else
			jv_free(update);
	}
	lc_buf_free(&why);
	action = act(w, rec, lc_str(verdict, "decision"), err);
	r = event(lc_str(rec, "name"), rec, verdict, action);
	if (jv_get_kind(vm) == JV_KIND_OBJECT)	/* what the VM itself says */
		r = jv_object_set(r, jv_string("vm_guard"), vm);
	else
		jv_free(vm);
	jv_free(rec);
	return r;
}

static jv
watch_one(struct worker *w, struct job *job)
{
	long long deadline = lc_mono_ms() + opt.timeout_s * 1000;
	const char *name = lc_str(job->in, "name"), *state;
	jv rec, ev, err = jv_invalid();
	char nm[40], why[128];
	int fd, stored;

	if (jv_object_has(jv_copy(job->in), jv_string("error")))
		return job->in;		/* failed upstream: pass it on */
	if (name == NULL)
		return quiet_error(job->in, lc_errorf("bad_record", "record "
		    "has no \"name\""));
	if (lc_name_check(name, &err) == -1)
		return quiet_error(job->in, err);
	snprintf(nm, sizeof(nm), "%s", name);
	if ((fd = session_lock(w, nm)) < 0 && fd != -3) {
		if (fd == -1)
			return quiet_error(job->in, lc_errorf("locked",
			    "cannot open the lock of %s: %s", nm,
			    strerror(errno)));
		ev = event(nm, job->in, verdict_of("keep", "another lc-watch "
		    "run holds it", job->in), "none");
		jv_free(job->in);
		return ev;
	}
	rec = current(w, job, nm, &stored);
	state = lc_str(rec, "state");
	if (stored && jv_is_valid(rec) && state != NULL &&
	    strcmp(state, "creating") == 0 && lc_num(rec, "linode_id", 0) <= 0) {
		/* A create that has not saved its VM yet, or was killed:
		 * settled from the account after the run (orphans()). */
		jv_free(rec);
		ev = jv_null();
	} else if (!jv_is_valid(rec))
		ev = quiet_error(jv_object_set(jv_object(), jv_string("name"),
		    jv_string(nm)), rec);
	else if (jv_get_kind(rec) == JV_KIND_NULL ||
	    (state != NULL && strcmp(state, "destroyed") == 0)) {
		snprintf(why, sizeof(why), "session already destroyed%s%s",
		    lc_str(rec, "destroyed_at") ? " at " : "",
		    lc_str(rec, "destroyed_at") ? lc_str(rec, "destroyed_at") :
		    " (archived by another command)");
		ev = event(nm, rec, verdict_of("gone", why, rec), "none");
		jv_free(rec);
	} else {
		ev = judge(w, rec, stored, deadline, &err);
		if (jv_invalid_has_msg(jv_copy(err)))
			ev = quiet_error(ev, err);
		else
			jv_free(err);
		err = jv_invalid();
		if (!opt.dry && lc_ledger_event(&w->ledger, "watch.jsonl",
		    jv_copy(ev), &err) == -1) {
			if (jv_object_has(jv_copy(ev), jv_string("error")))
				jv_free(err);	/* the first error says more */
			else
				ev = quiet_error(ev, err);
		}
	}
	if (fd >= 0)
		close(fd);
	return ev;
}

/* ---- the account is the truth: what the ledger cannot see ---- */

/* The events of the orphan pass, emitted after the sessions'. */
static jv orphan_events;

/* Log and keep an event of the orphan pass. Consumes ev and err. */
static void
orphan_event(struct worker *w, jv ev, jv err)
{
	jv e2 = jv_invalid();

	if (jv_invalid_has_msg(jv_copy(err)))
		ev = quiet_error(ev, err);
	else
		jv_free(err);
	if (!opt.dry && lc_ledger_event(&w->ledger, "watch.jsonl", jv_copy(ev),
	    &e2) == -1) {
		if (jv_object_has(jv_copy(ev), jv_string("error")))
			jv_free(e2);
		else
			ev = quiet_error(ev, e2);
	} else
		jv_free(e2);
	orphan_events = jv_array_append(orphan_events, ev);
}

/*
 * A session record rebuilt from an instance of this ledger (borrowed):
 * id, label, tags, region, type, image, address, created, the price from
 * /linode/types, and the session's known_hosts when it is still there
 * (then the VM can be sampled). Returns owned.
 */
static jv
rebuild(struct worker *w, const struct inst *in)
{
	char *kh = lc_session_path(&w->ledger, in->name,
	    LC_SESSION_KNOWN_HOSTS), path[128];
	double hourly = 0, monthly = 0;
	jv inst, type, rec;

	inst = JV_OBJECT(jv_string("id"), jv_number(in->id),
	    jv_string("label"), jv_string_fmt("lc-%s", in->name),
	    jv_string("status"), jv_string(in->status),
	    jv_string("region"), jv_string(in->region),
	    jv_string("type"), jv_string(in->type),
	    jv_string("image"), jv_string(in->image),
	    jv_string("ipv4"), *in->ipv4 ? JV_ARRAY(jv_string(in->ipv4)) :
	    jv_array());
	snprintf(path, sizeof(path), "/linode/types/%s", in->type);
	type = lc_linode_call(w->http, "GET", path, jv_null(), jv_null(), 0);
	if (jv_is_valid(type))
		lc_linode_price(type, in->region, &hourly, &monthly);
	jv_free(type);
	rec = JV_OBJECT(jv_string("name"), jv_string(in->name),
	    jv_string("orphan"), jv_true());
	rec = lc_linode_session(rec, inst, hourly, monthly, in->created,
	    w->cfg, kh);
	if (access(kh, R_OK) == 0)	/* the host key pinned: sample it */
		rec = jv_object_set(rec, jv_string("state"),
		    jv_string("ready"));
	free(kh);
	jv_free(inst);
	return lc_session_live(rec, now);
}

/*
 * An instance of this ledger with no readable session: sample it when
 * its host key is known, decide (lib/watch), and delete it once it is
 * older than LC_ORPHAN_GRACE and serves nothing.
 */
static void
orphan_one(struct worker *w, const struct inst *in)
{
	struct lc_watch_sample s;
	struct lc_buf why = LC_BUF_INIT;
	jv rec = rebuild(w, in), verdict, err = jv_invalid(), r, vm = jv_null();
	const char *action = "none", *state = lc_str(rec, "state");
	int sampled = 0;

	if (state != NULL && strcmp(state, "ready") == 0 &&
	    now - in->created >= limits.orphan_grace_s) {
		sample(w, rec, lc_mono_ms() + opt.timeout_s * 1000, &s, &why,
		    &vm);
		sampled = 1;
	}
	verdict = lc_watch_decide_orphan(in->id, in->created, now,
	    limits.orphan_grace_s, sampled ? &s : NULL);
	verdict = jv_object_set(verdict, jv_string("cost_usd"),
	    lc_get(rec, "cost_usd"));
	if (strcmp(lc_str(verdict, "decision"), "orphan") == 0) {
		if (!opt.destroy)
			action = "none";
		else if (opt.dry)
			action = "would_destroy";
		else {
			r = lc_linode_session_delete(w->http, in->name, in->id,
			    0, DESTROY_MS);
			if (jv_is_valid(r)) {
				action = "destroyed";
				jv_free(r);
				lc_info("%s: deleted VM %.0f, which had no "
				    "readable session", in->name, in->id);
			} else {
				action = strcmp(lc_error_code(r), "mismatch") ==
				    0 ? "refused" : "failed";
				err = r;
			}
		}
	}
	r = event(in->name, rec, verdict, action);
	r = jv_object_set(r, jv_string("orphan"), jv_true());
	orphan_event(w, r, err);
	lc_buf_free(&why);
	jv_free(vm);
	jv_free(rec);
}

/*
 * A record left "creating" with no VM id: a create that stopped between
 * writing its record and saving the answer. When the account has the VM
 * (by label and owner tag), the record takes it; when it has none and
 * the record is older than LC_ORPHAN_GRACE, the create never made one:
 * the record is archived (its firewall goes with the firewall pass).
 * Consumes rec. Returns the id of the VM it took, or 0.
 */
static double
settle_creating(struct worker *w, jv rec)
{
	char name[40], *kh;
	const char *c = lc_str(rec, "created_at");
	time_t created = now;
	jv ev, err = jv_invalid(), r, inst;
	size_t i;

	snprintf(name, sizeof(name), "%s", lc_subject(rec));
	if (lc_session_held(&w->ledger, name)) {
		/* A create under way: it saves its VM itself. */
		jv_free(rec);
		for (i = 0; i < api.n; i++)
			if (api.v[i].mine && api.v[i].ours &&
			    !api.v[i].worker && strcmp(api.v[i].name, name) == 0)
				return api.v[i].id;
		return 0;
	}
	if (c != NULL)
		lc_time_parse(c, &created);
	for (i = 0; i < api.n; i++) {
		const struct inst *in = &api.v[i];

		if (!in->mine || !in->ours || in->worker ||
		    strcmp(in->name, name) != 0)
			continue;
		kh = lc_session_path(&w->ledger, name, LC_SESSION_KNOWN_HOSTS);
		inst = JV_OBJECT(jv_string("id"), jv_number(in->id),
		    jv_string("label"), jv_string_fmt("lc-%s", name),
		    jv_string("status"), jv_string(in->status),
		    jv_string("region"), jv_string(in->region),
		    jv_string("type"), jv_string(in->type),
		    jv_string("ipv4"), *in->ipv4 ?
		    JV_ARRAY(jv_string(in->ipv4)) : jv_array());
		r = lc_linode_session(jv_copy(rec), inst, lc_num(rec,
		    "hourly_cost_usd", 0), lc_num(rec, "monthly_cost_usd", 0),
		    in->created, w->cfg, kh);
		free(kh);
		jv_free(inst);
		ev = event(name, r, verdict_of("keep", "its VM was made by a "
		    "create that stopped before saving it: the session now "
		    "records it and it is judged at once", r),
		    opt.dry ? "would_record" : "recorded");
		ev = jv_object_set(ev, jv_string("orphan"), jv_true());
		if (!opt.dry) {
			r = lc_ledger_put(&w->ledger, r);
			if (!jv_is_valid(r)) {
				err = r;
				r = jv_null();
			}
		}
		orphan_event(w, ev, err);
		if (jv_get_kind(r) == JV_KIND_OBJECT) {
			/* Judged now like any session: nothing brings it up
			 * any more, so it goes once the grace has passed. */
			err = jv_invalid();
			ev = judge(w, r, 1, lc_mono_ms() + opt.timeout_s * 1000,
			    &err);
			orphan_event(w, ev, err);
		} else
			jv_free(r);
		jv_free(rec);
		return in->id;
	}
	if (now - created >= limits.orphan_grace_s) {
		ev = event(name, rec, verdict_of("gone", "the create stopped "
		    "before any VM was made (none has its label in the "
		    "account)", rec), opt.dry ? "would_archive" : "archived");
		ev = jv_object_set(ev, jv_string("orphan"), jv_true());
		if (!opt.dry && archive(w, jv_copy(rec), "create_interrupted",
		    &err) == -1)
			ev = jv_object_set(ev, jv_string("action"),
			    jv_string("failed"));
		orphan_event(w, ev, err);
	}
	jv_free(rec);
	return 0;
}

/* An orphan pass's delete of the free thing at path (with --destroy, not
 * -n), its event ev (consumed) completed with the action and emitted. */
static void
orphan_delete(struct worker *w, jv ev, const char *path)
{
	jv err = jv_invalid(), r;
	char ts[32];

	if (opt.dry || !opt.destroy)
		ev = jv_object_set(ev, jv_string("action"), jv_string(
		    opt.destroy ? "would_destroy" : "none"));
	else {
		r = lc_linode_delete(w->http, path);
		ev = jv_object_set(ev, jv_string("action"), jv_string(
		    jv_is_valid(r) ? "destroyed" : "failed"));
		if (!jv_is_valid(r))
			err = r;
		else
			jv_free(r);
	}
	ev = jv_object_set(ev, jv_string("at"), jv_string(lc_time_fmt(now, ts,
	    sizeof(ts))));
	orphan_event(w, ev, err);
}

/* Firewalls of this ledger that no VM uses, once older than the grace:
 * free, but left over by a create that stopped. */
static void
orphan_firewalls(struct worker *w)
{
	char tag[64], path[64];
	jv list, fw, ev;
	int i, n;

	list = lc_linode_list(w->http, "/networking/firewalls", JV_OBJECT(
	    jv_string("tags"), jv_string(lc_session_owner_tag(owner, tag,
	    sizeof(tag)))));
	if (!jv_is_valid(list)) {
		char *m = lc_error_message(list);

		lc_warnx("cannot list firewalls: %s", m);
		free(m);
		jv_free(list);
		return;
	}
	n = jv_array_length(jv_copy(list));
	for (i = 0; i < n; i++) {
		const char *label, *c;
		time_t created = now;
		jv ent;

		fw = jv_array_get(jv_copy(list), i);
		ent = lc_get(fw, "entities");
		label = lc_str(fw, "label");
		c = lc_str(fw, "created");
		if (c != NULL)
			lc_time_parse(c, &created);
		if ((jv_get_kind(ent) == JV_KIND_ARRAY &&
		    jv_array_length(jv_copy(ent)) > 0) ||
		    now - created < limits.orphan_grace_s) {
			jv_free(ent);
			jv_free(fw);
			continue;
		}
		jv_free(ent);
		ev = JV_OBJECT(jv_string("name"), jv_string(label &&
		    strncmp(label, "lc-", 3) == 0 ? label + 3 : "?"),
		    jv_string("firewall_id"), lc_get(fw, "id"),
		    jv_string("decision"), jv_string("orphan"),
		    jv_string("reason"), jv_string("a firewall of this ledger "
		    "that no VM uses"), jv_string("orphan"), jv_true());
		snprintf(path, sizeof(path), "/networking/firewalls/%.0f",
		    lc_num(fw, "id", 0));
		orphan_delete(w, ev, path);
		jv_free(fw);
	}
	jv_free(list);
}

/* Does any subnet of vpc (borrowed) still hold a node? */
static int
vpc_in_use(jv vpc)
{
	jv subs = lc_get(vpc, "subnets");
	int used = 0;

	if (jv_get_kind(subs) == JV_KIND_ARRAY)
		jv_array_foreach(subs, i, sub) {
			jv l = lc_get(sub, "linodes");

			(void)i;
			used |= jv_get_kind(l) == JV_KIND_ARRAY &&
			    jv_array_length(jv_copy(l)) > 0;
			jv_free(l);
			jv_free(sub);
		}
	jv_free(subs);
	return used;
}

/* VPCs of this ledger's groups (its owner tag in their description) with
 * no node left, once older than the grace and not being brought up: free,
 * but left over by a group create that stopped. */
static void
orphan_vpcs(struct worker *w)
{
	char tag[64], path[64];
	jv list, ev;
	int i, n;

	lc_session_owner_tag(owner, tag, sizeof(tag));
	list = lc_linode_list(w->http, "/vpcs", jv_null());
	if (!jv_is_valid(list)) {
		char *m = lc_error_message(list);

		lc_warnx("cannot list VPCs: %s", m);
		free(m);
		jv_free(list);
		return;
	}
	n = jv_array_length(jv_copy(list));
	for (i = 0; i < n; i++) {
		jv vpc = jv_array_get(jv_copy(list), i);
		const char *label = lc_str(vpc, "label");
		const char *d = lc_str(vpc, "description"), *c;
		time_t created = now;

		if ((c = lc_str(vpc, "created")) != NULL)
			lc_time_parse(c, &created);
		if (d == NULL || strstr(d, tag) == NULL || label == NULL ||
		    strncmp(label, "lc-", 3) != 0 || vpc_in_use(vpc) ||
		    now - created < limits.orphan_grace_s ||
		    lc_session_held(&w->ledger, label + 3)) {
			jv_free(vpc);
			continue;
		}
		ev = JV_OBJECT(jv_string("name"), jv_string(label + 3),
		    jv_string("vpc_id"), lc_get(vpc, "id"),
		    jv_string("decision"), jv_string("orphan"),
		    jv_string("reason"), jv_string("a VPC of this ledger that "
		    "no node uses"), jv_string("orphan"), jv_true());
		snprintf(path, sizeof(path), "/vpcs/%.0f", lc_num(vpc, "id", 0));
		orphan_delete(w, ev, path);
		jv_free(vpc);
	}
	jv_free(list);
}

/* Is in the VM of a readable record in the list (borrowed), or a worker
 * node of a recorded group? */
static int
claimed(jv records, const struct inst *in)
{
	int found = 0;

	jv_array_foreach(records, i, r) {
		(void)i;
		if (!found && jv_get_kind(r) == JV_KIND_OBJECT &&
		    !jv_object_has(jv_copy(r), jv_string("error")) &&
		    (lc_num(r, "linode_id", 0) == in->id || (in->worker &&
		    in->ours && lc_str(r, "name") != NULL &&
		    strcmp(lc_str(r, "name"), in->name) == 0)))
			found = 1;
		jv_free(r);
	}
	return found;
}

/*
 * After the sessions: every instance with this ledger's owner tag is
 * guarded, whatever the ledger holds. Records still "creating" are
 * settled from the account, instances no readable record claims are
 * orphans, then unused firewalls go. Runs on the main thread.
 */
static void
orphans(struct lc_ledger *l)
{
	struct worker w;
	jv records, taken;
	size_t i;

	orphan_events = jv_array();
	if (*owner == '\0' || api.state != 1 || http_opts.token == NULL ||
	    worker_open(&w) == -1)
		return;
	taken = jv_array();
	records = lc_ledger_list(l, 0);
	jv_array_foreach(records, k, r) {
		const char *st = lc_str(r, "state");

		(void)k;
		if (jv_get_kind(r) == JV_KIND_OBJECT && st != NULL &&
		    strcmp(st, "creating") == 0 &&
		    lc_num(r, "linode_id", 0) <= 0 &&
		    !jv_object_has(jv_copy(r), jv_string("error")))
			taken = jv_array_append(taken, jv_number(
			    settle_creating(&w, r)));
		else
			jv_free(r);
	}
	for (i = 0; i < api.n; i++) {
		int t = 0;

		if (!api.v[i].mine || claimed(records, &api.v[i]) ||
		    was_judged(api.v[i].id))
			continue;
		jv_array_foreach(taken, k, x) {
			(void)k;
			t |= jv_number_value(x) == api.v[i].id;
			jv_free(x);
		}
		if (!t)
			orphan_one(&w, &api.v[i]);
	}
	if (opt.destroy) {
		orphan_firewalls(&w);
		orphan_vpcs(&w);
	}
	jv_free(taken);
	jv_free(records);
	worker_close(&w);
}

/* ---- cron: one line in the user's crontab ---- */

/* p made absolute against the working directory. malloc'd. */
static char *
absolute(const char *p)
{
	char cwd[PATH_MAX];

	if (*p == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return lc_xstrdup(p);
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	return lc_path_join(cwd, p);
}

/* The absolute path of this program, from argv[0] and PATH. malloc'd. */
static char *
self_path(const char *argv0)
{
	char *path, *dir, *save = NULL, *p;

	if (strchr(argv0, '/') != NULL)
		return absolute(argv0);
	path = lc_xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	for (dir = strtok_r(path, ":", &save); dir != NULL;
	    dir = strtok_r(NULL, ":", &save)) {
		p = lc_path_join(dir, argv0);
		if (access(p, X_OK) == 0) {
			char *a = absolute(p);

			free(p);
			free(path);
			return a;
		}
		free(p);
	}
	free(path);
	return NULL;
}

/* Append a shell word for a cron line: single-quoted, '%' escaped. */
static void
cron_word(struct lc_buf *b, const char *s)
{
	struct lc_buf q = LC_BUF_INIT;
	const char *p;

	lc_shquote(&q, s);
	for (p = q.data; p != NULL && *p != '\0'; p++) {
		if (*p == '%')
			lc_buf_addstr(b, "\\");
		lc_buf_add(b, p, 1);
	}
	lc_buf_free(&q);
}

/*
 * The line: every minute, logging to watch.log. No cd: the tools find the
 * token in the user's secrets file from any folder, and cron starts in
 * the home directory. An older line (one that cd'd to a project folder)
 * carries the same mark, so installing replaces it.
 */
static char *
cron_line(const char *self, const char *log)
{
	static const char *const keep[] = { "XDG_STATE_HOME", "XDG_CONFIG_HOME",
	    NULL };
	struct lc_buf b = LC_BUF_INIT;
	char *dir = lc_xstrdup(self), *slash;
	int i;

	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	lc_buf_addstr(&b, "* * * * * ");
	lc_buf_addstr(&b, "PATH=");
	cron_word(&b, dir);
	lc_buf_addstr(&b, ":/usr/local/bin:/usr/bin:/bin ");
	for (i = 0; keep[i] != NULL; i++)
		if (getenv(keep[i]) != NULL && *getenv(keep[i]) == '/') {
			lc_buf_printf(&b, "%s=", keep[i]);
			cron_word(&b, getenv(keep[i]));
			lc_buf_addstr(&b, " ");
		}
	lc_buf_addstr(&b, "exec ");
	cron_word(&b, self);
	lc_buf_addstr(&b, " --destroy --heal --ledger -q </dev/null >>");
	cron_word(&b, log);
	lc_buf_addstr(&b, " 2>&1 " CRON_MARK);
	free(dir);
	return b.data;
}

/* crontab -l into *out (empty when the user has none). 0, or -1. */
static int
crontab_read(struct lc_buf *out)
{
	FILE *fp = popen("crontab -l 2>/dev/null", "r");
	char buf[4096];
	size_t n;
	int st;

	if (fp == NULL)
		return -1;
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
		lc_buf_add(out, buf, n);
	st = pclose(fp);
	if (st == -1 || (WIFEXITED(st) && WEXITSTATUS(st) == 127))
		return -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		lc_buf_reset(out);	/* "no crontab for user" */
	return 0;
}

static int
crontab_write(const char *text)
{
	FILE *fp = popen("crontab -", "w");
	int st;

	if (fp == NULL)
		return -1;
	fputs(text, fp);
	st = pclose(fp);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The table without our line; *found: our line as it was, or NULL. */
static char *
cron_without(const char *table, char **found)
{
	struct lc_buf b = LC_BUF_INIT;
	const char *p = table, *eol;

	*found = NULL;
	lc_buf_add(&b, "", 0);
	while (*p != '\0') {
		size_t n;

		eol = strchr(p, '\n');
		n = eol ? (size_t)(eol - p) : strlen(p);
		if (n >= strlen(CRON_MARK) && memcmp(p + n - strlen(CRON_MARK),
		    CRON_MARK, strlen(CRON_MARK)) == 0) {
			if (*found == NULL)
				*found = strndup(p, n);
		} else {
			lc_buf_add(&b, p, n);
			lc_buf_add(&b, "\n", 1);
		}
		p += n + (eol != NULL);
	}
	return b.data;
}

/* The last n decisions from watch.jsonl, oldest first. */
static jv
recent(struct lc_ledger *l, int n)
{
	char *path = lc_ledger_path(l, "watch.jsonl"), *data = NULL;
	size_t len = 0, off;
	int lines = 0;
	jv all;

	if (lc_read_file(path, &data, &len) == -1) {
		free(path);
		return jv_array();
	}
	free(path);
	off = len > 0 && data[len - 1] == '\n' ? len - 1 : len;
	for (; off > 0; off--)
		if (data[off - 1] == '\n' && ++lines == n)
			break;
	all = lc_parse_texts(data + off, len - off);
	free(data);
	if (!jv_is_valid(all)) {
		jv_free(all);
		return jv_array();
	}
	return all;
}

/*
 * The configuration as cron's run sees it: from the home directory,
 * without the token variables of this shell. NULL with *err when it
 * cannot be loaded there.
 */
static struct lc_config *
cron_config(jv *err)
{
	static const char *const vars[] = { "LINODE_TOKEN", "LINODE_CLI_TOKEN" };
	struct lc_config *cfg;
	char *saved[2] = { NULL, NULL };
	int here = open(".", O_RDONLY | O_CLOEXEC), i;

	for (i = 0; i < 2; i++)
		if (getenv(vars[i]) != NULL) {
			saved[i] = lc_xstrdup(getenv(vars[i]));
			unsetenv(vars[i]);
		}
	if (here == -1 || chdir(lc_home()) == -1)
		cfg = NULL, *err = lc_errorf("io", "cannot enter %s: %s",
		    lc_home(), strerror(errno));
	else
		cfg = lc_config_load(err);
	if (here != -1) {
		if (fchdir(here) == -1)
			lc_fatal("cannot return to the working directory: %s",
			    strerror(errno));
		close(here);
	}
	for (i = 0; i < 2; i++)
		if (saved[i] != NULL) {
			setenv(vars[i], saved[i], 1);
			lc_linode_token_free(saved[i]);
		}
	return cfg;
}

/* Cron runs in the home directory without the shell's environment: say
 * so if the token is only there, or only in this folder's files. */
static void
token_warning(struct lc_config *cfg)
{
	struct lc_config *cron = NULL;
	const char *src = NULL, *csrc = NULL;
	char *tok = NULL, *ctok = NULL, *path = lc_config_file("secrets"), *m;
	jv err = jv_invalid();
	int env;

	if (lc_config_token(cfg, &tok, &src, &err) == -1) {
		m = lc_error_message(err);
		lc_warnx("warning: %s; cron runs cannot delete VMs without it",
		    m);
		free(m);
		goto out;
	}
	if ((cron = cron_config(&err)) == NULL) {
		m = lc_error_message(err);
		lc_warnx("warning: cron runs will not load the configuration: "
		    "%s", m);
		free(m);
		goto out;
	}
	env = strncmp(src, "LINODE_", 7) == 0;
	if (lc_config_token(cron, &ctok, &csrc, &err) == -1)
		lc_warnx("warning: %s comes from %s, which cron %s: put it "
		    "in %s (chmod 600; 'coder wizard' does)", env ? src :
		    "the token", env ? "the environment" : src, env ?
		    "does not have" : "does not read (it runs in your home "
		    "folder)", path);
out:
	jv_free(err);
	lc_config_free(cron);
	lc_linode_token_free(tok);
	lc_linode_token_free(ctok);
	free(path);
}

/* --install-cron, --uninstall-cron, --cron-status. */
static int
cron_main(int mode, const char *argv0, struct lc_ledger *l)
{
	struct lc_buf table = LC_BUF_INIT;
	char *self = NULL, *log = lc_ledger_path(l, "watch.log"), *line = NULL;
	char *found = NULL, *rest;
	int changed = 0;
	jv out;

	if (crontab_read(&table) == -1)
		lc_fatal("cannot run 'crontab -l': is cron installed?");
	rest = cron_without(table.data ? table.data : "", &found);
	if (mode == 'I') {
		if ((self = self_path(argv0)) == NULL)
			lc_fatal("cannot find my own path (%s): run lc-watch "
			    "by its full path", argv0);
		line = cron_line(self, log);
		if (found == NULL || strcmp(found, line) != 0) {
			lc_buf_reset(&table);
			lc_buf_addstr(&table, rest);
			lc_buf_addstr(&table, line);
			lc_buf_addstr(&table, "\n");
			if (crontab_write(table.data) == -1)
				lc_fatal("'crontab -' refused the new table");
			changed = 1;
		}
	} else if (mode == 'U' && found != NULL) {
		if (crontab_write(rest) == -1)
			lc_fatal("'crontab -' refused the new table");
		changed = 1;
	} else
		line = found ? lc_xstrdup(found) : NULL;
	out = jv_object_set(jv_object(), jv_string("installed"),
	    jv_bool(mode == 'I' || (mode == 'S' && found != NULL)));
	out = jv_object_set(out, jv_string("line"), line ? jv_string(line) :
	    jv_null());
	out = jv_object_set(out, jv_string("changed"), jv_bool(changed));
	out = jv_object_set(out, jv_string("log"), jv_string(log));
	if (mode == 'S')
		out = jv_object_set(out, jv_string("recent"), recent(l, 20));
	lc_emit(out);
	free(rest);
	free(found);
	free(line);
	free(self);
	free(log);
	lc_buf_free(&table);
	return lc_finish(NULL);
}

/* ---- the run: sessions in, sampled by -j threads (lib/pool), events out ---- */

/* The sessions to watch, gathered before the run: each item is
 * [record, from_ledger]. */
static struct {
	jv	*v;
	size_t	 n, cap;
} work;

/* A worker's own SSH, HTTP and ledger handles (the pool's context). */
static void
worker_free(void *ctx)
{
	struct worker *w = ctx;

	if (w != NULL) {
		worker_close(w);
		free(w);
	}
}

static jv
work_one(jv item, void *unused, void **ctx)
{
	struct job job;
	struct worker *w = *ctx;

	(void)unused;
	job.in = jv_array_get(jv_copy(item), 0);
	job.from_ledger = jv_get_kind(jv_array_get(jv_copy(item), 1)) ==
	    JV_KIND_TRUE;
	jv_free(item);
	if (w == NULL) {
		w = lc_xmalloc(sizeof(*w));
		if (worker_open(w) == -1) {
			free(w);
			return quiet_error(job.in, lc_errorf("state_dir",
			    "cannot open the configuration or the ledger"));
		}
		*ctx = w;
	}
	return watch_one(w, &job);
}

/* One event out, as it is decided (under the pool's output lock). */
static void
work_done(jv ev, void *unused)
{
	jv e = lc_get(ev, "error");

	(void)unused;
	if (lc_str(e, "tool") != NULL && strcmp(lc_str(e, "tool"),
	    "lc-watch") == 0)
		lc_warnx("%s: %s", lc_subject(ev), lc_str(e, "message") ?
		    lc_str(e, "message") : "failed");
	jv_free(e);
	if (jv_get_kind(ev) == JV_KIND_NULL)
		jv_free(ev);
	else
		lc_emit(ev);
}

static void
add_job(jv rec, int from_ledger)
{
	if (work.n == work.cap) {
		work.cap = work.cap ? work.cap * 2 : 64;
		if ((work.v = realloc(work.v, work.cap *
		    sizeof(*work.v))) == NULL)
			lc_fatal("out of memory");
	}
	work.v[work.n++] = JV_ARRAY(rec, jv_bool(from_ledger));
}

/* Every active session in the ledger, each a record of its own (no jv
 * is shared: the threads must not touch one reference count twice). */
static void
jobs_from_ledger(struct lc_ledger *l)
{
	jv all = lc_ledger_list(l, 0);
	int i, n = jv_array_length(jv_copy(all));

	for (i = 0; i < n; i++) {
		jv r = jv_array_get(jv_copy(all), i);
		char *text = lc_json(r);

		add_job(jv_parse(text), 1);
		free(text);
		jv_free(r);
	}
	jv_free(all);
}

/* Run the jobs on up to jobs threads (here when jobs <= 1). */
static void
run_jobs(int jobs)
{
	const struct lc_pool_ops ops = { work_one, work_done, worker_free,
	    NULL };
	struct lc_pool *pool;
	size_t i;

	if (jobs > (int)work.n)
		jobs = (int)work.n;
	pool = lc_pool_start(jobs, &ops);
	for (i = 0; i < work.n; i++)
		lc_pool_add(pool, work.v[i]);
	lc_pool_finish(pool);
	work.n = 0;
}

/*
 * The default -j: every session at once. The work is waiting on far-away
 * VMs, not CPU, so waves of a few threads only add round trips. Capped
 * at 256 threads, and by the open-file limit (a connection, a pipe and a
 * lock file each, with room to spare).
 */
static int
all_at_once(void)
{
	struct rlimit rl;
	long cap = 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (long)(rl.rlim_cur - 32) / 4 < cap)
		cap = (long)(rl.rlim_cur - 32) / 4;
	if (cap < 1)
		cap = 1;
	return work.n < (size_t)cap ? (int)(work.n > 0 ? work.n : 1) :
	    (int)cap;
}

/* The limits and the API options from the configuration. */
static void
configure(struct lc_config *cfg, int *jobs)
{
	jv err = jv_invalid();
	const char *j = lc_config_get(cfg, "LC_JOBS");

	if (lc_config_duration(cfg, "LC_IDLE_TIMEOUT", &limits.idle_timeout_s,
	    &err) == -1 || lc_config_duration(cfg, "LC_READY_TIMEOUT",
	    &limits.ready_timeout_s, &err) == -1 ||
	    lc_config_duration(cfg, "LC_UNREACHABLE_TIMEOUT",
	    &limits.unreachable_timeout_s, &err) == -1 ||
	    lc_config_number(cfg, "LC_BUDGET_USD", &limits.budget_usd,
	    &err) == -1)
		lc_fatal_err(err);
	/* An empty setting must not mean "destroy at once". */
	if (limits.idle_timeout_s <= 0)
		limits.idle_timeout_s = 1800;
	if (limits.ready_timeout_s <= 0)
		limits.ready_timeout_s = 1800;
	if (limits.unreachable_timeout_s <= 0)
		limits.unreachable_timeout_s = 900;
	if (lc_config_duration(cfg, "LC_ORPHAN_GRACE", &limits.orphan_grace_s,
	    &err) == -1)
		lc_fatal_err(err);
	if (lc_config_get(cfg, "LC_ORPHAN_GRACE") == NULL ||
	    *lc_config_get(cfg, "LC_ORPHAN_GRACE") == '\0')
		limits.orphan_grace_s = limits.idle_timeout_s;
	if (*jobs <= 0)
		*jobs = j != NULL && atoi(j) > 0 ? atoi(j) : 0;
	if (lc_linode_opts(cfg, 1, &http_opts, &token, &err) == -1) {
		char *m;

		if (opt.destroy && !opt.dry)
			lc_fatal_err(err);
		m = lc_error_message(err);
		lc_warnx("%s; without it no session is found gone", m);
		free(m);
		jv_free(err);
		http_opts.token = NULL;
	}
}

/* Should the sessions come from the ledger rather than stdin? */
static int
use_ledger(int argc)
{
	struct stat st;

	if (opt.ledger)
		return 1;
	if (argc > 0)
		return 0;
	/* A terminal, /dev/null or a closed stdin: nothing is piped in. */
	return isatty(STDIN_FILENO) || fstat(STDIN_FILENO, &st) == -1 ||
	    S_ISCHR(st.st_mode);
}

int
main(int argc, char *argv[])
{
	struct lc_reader *in = NULL;
	struct lc_ledger ledger = { NULL, -1 };
	struct lc_config *cfg;
	jv err = jv_invalid(), rec;
	pthread_t api_thread;
	int ch, jobs = 0, cron = 0, api_started = 0, whole = 0;

	lc_init("lc-watch");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'D': opt.destroy = 1; break;
		case 'H': opt.heal = 1; break;
		case 'h': lc_opts_help(&cmd);
		case 'I': case 'S': case 'U':
			if (cron != 0 && cron != ch)
				lc_usage(usage_str, "-I, -S and -U go alone");
			cron = ch;
			break;
		case 'j':
			if ((jobs = atoi(optarg)) < 1 || jobs > 1024)
				lc_usage(usage_str, "bad jobs: %s (1 to 1024)",
				    optarg);
			break;
		case 'l': opt.ledger = 1; break;
		case 'n': opt.dry = 1; break;
		case 'q': lc_quiet = 1; break;
		case 't':
			if (lc_parse_duration(optarg, &opt.timeout_s) == -1 ||
			    opt.timeout_s < 1)
				lc_usage(usage_str, "bad timeout: %s", optarg);
			break;
		case 'v': lc_verbose = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	if (cron != 0 && optind < argc)
		lc_usage(usage_str, "-I, -S and -U take no names");
	if ((cfg = lc_config_load(&err)) == NULL)
		lc_fatal_err(err);
	if (lc_ledger_open(&ledger, &err) == -1) {
		jv e2 = jv_invalid();
		char *m;

		/* A guard that cannot write still deletes what must go: it
		 * reads, acts, and reports what it could not record. */
		if (cron != 0 || lc_ledger_open_ro(&ledger, &e2) == -1) {
			jv_free(e2);
			lc_fatal_err(err);
		}
		m = lc_error_message(err);
		lc_warnx("%s: deciding and deleting all the same; what is done "
		    "cannot be recorded until it is fixed", m);
		free(m);
		jv_free(err);
		err = jv_invalid();
		ledger_ro = 1;
	}
	if (cron == 0 && lc_session_owner(&ledger, !ledger_ro, owner,
	    sizeof(owner), &err) == -1) {
		char *m = lc_error_message(err);

		lc_warnx("%s: VMs whose session is lost are not looked for", m);
		free(m);
		jv_free(err);
		err = jv_invalid();
		*owner = '\0';
	}
	if (cron != 0) {
		if (cron == 'I')
			token_warning(cfg);
		lc_config_free(cfg);
		ch = cron_main(cron, argv[0], &ledger);
		lc_ledger_close(&ledger);
		return ch;
	}
	now = lc_now();
	configure(cfg, &jobs);	/* http_opts borrows from cfg */
	argc -= optind;
	argv += optind;
	if ((whole = use_ledger(argc)))
		jobs_from_ledger(&ledger);
	else {
		in = lc_reader_open(argc, argv, "name");
		while (lc_reader_next(in, &rec))
			add_job(rec, 0);
		/* cron hands its jobs an empty pipe: a guard that watched
		 * nothing then would let every VM bill on. */
		if (work.n == 0 && argc == 0) {
			jobs_from_ledger(&ledger);
			whole = 1;
		}
	}
	if (jobs <= 0)
		jobs = all_at_once();
	/* A run over the whole ledger also guards what the ledger cannot
	 * see: this owner's VMs in the account (orphans()). */
	if (!whole)
		*owner = '\0';
	if (lc_ssh_init() == -1 || lc_http_global_init() == -1)
		lc_fatal("cannot initialise libssh2 or libcurl");
	if (http_opts.token == NULL || (work.n == 0 && *owner == '\0'))
		api.state = -1;
	else if (pthread_create(&api_thread, NULL, api_fetch, NULL) == 0)
		api_started = 1;
	else
		api_fetch(NULL);
	run_jobs(jobs);
	if (api_started)
		pthread_join(api_thread, NULL);
	orphans(&ledger);
	jv_array_foreach(orphan_events, k, ev) {
		jv e = lc_get(ev, "error");

		(void)k;
		if (lc_str(e, "message") != NULL)
			lc_warnx("%s: %s", lc_subject(ev), lc_str(e, "message"));
		jv_free(e);
		lc_emit(ev);
	}
	jv_free(orphan_events);
	free(work.v);
	free(api.v);
	lc_linode_token_free(token);
	lc_config_free(cfg);
	lc_ledger_close(&ledger);
	return lc_finish(in);
}
