/*
 * lc-destroy: delete the VMs of the sessions named on stdin (or as
 * operands), their firewalls too, check that each VM is really gone, then
 * archive the session with its final cost. A VM that cannot be deleted
 * keeps its session, with the error: nothing is archived while it may
 * still bill. Sessions are handled concurrently (-j).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "config.h"
#include "failsafe.h"
#include "http.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "session.h"
#include "linode.h"
#include "opts.h"
#include "pool.h"
#include "rec.h"

static const struct lc_opt opts[] = {
	{ 'n', "dry-run", NULL, "check what would be deleted; delete nothing" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "more detail on stderr" },
	{ 'j', "jobs", "jobs", "API requests at once (default LC_JOBS)" },
	{ 't', "timeout", "seconds", "how long to wait for each VM to be gone "
	  "(300)" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-destroy",
	.summary = "lc-destroy: delete sessions' VMs and archive the sessions",
	.operands = "[name ...]",
	.after = "Session records (NDJSON) come on stdin, or names as "
	    "operands;\narchived records go to stdout. See lc-destroy(1).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

struct opts {
	struct lc_http_opts http;
	int	 dry, jobs;
	long	 timeout_s;
	int	 done, failed;
};

/* What each worker thread keeps: its own HTTP handle and ledger lock. */
struct worker {
	struct lc_http	*http;
	struct lc_ledger ledger;
};

static void
worker_free(void *p)
{
	struct worker *w = p;

	lc_http_free(w->http);
	lc_ledger_close(&w->ledger);
	free(w);
}

static struct worker *
worker_get(struct opts *o, void **ctx, jv *err)
{
	struct worker *w = *ctx;

	if (w != NULL)
		return w;
	w = calloc(1, sizeof(*w));
	if (w == NULL || (w->http = lc_http_new(&o->http)) == NULL) {
		free(w);
		*err = lc_errorf("nomem", "out of memory");
		return NULL;
	}
	if (lc_ledger_open(&w->ledger, err) == -1) {
		lc_http_free(w->http);
		free(w);
		return NULL;
	}
	*ctx = w;
	return w;
}

/*
 * A worker's answer: [record, error (its message object) or null,
 * warning or null]. (An error value cannot sit in an array.)
 * The output (and every stderr line) is written by done(), under the
 * pool's lock, so lines never mix.
 */
static jv
result(jv rec, jv err, jv warning)
{
	return jv_array_append(jv_array_append(jv_array_append(jv_array(),
	    rec), jv_is_valid(err) ? jv_null() : jv_invalid_get_msg(err)),
	    warning);
}

/* Keep the session, in its old state, with what went wrong. */
static jv
keep(struct worker *w, jv rec, jv err)
{
	jv e = jv_invalid_get_msg(jv_copy(err)), f;
	char ts[32];

	e = jv_object_delete(e, jv_string("status"));
	e = jv_object_set(e, jv_string("at"), jv_string(lc_time_fmt(lc_now(),
	    ts, sizeof(ts))));
	f = jv_object_set(jv_object(), jv_string("last_error"), e);
	f = jv_object_set(f, jv_string("state"), lc_get(rec, "state"));
	jv_free(lc_session_merge(&w->ledger, lc_str(rec, "name"), f));
	return result(rec, err, jv_null());
}

/* Archive the session as destroyed with its final cost; log the event. */
static jv
archive(struct worker *w, jv rec, jv info)
{
	jv warn = lc_get(info, "firewall_error"), r;
	char *m = NULL;

	jv_free(info);
	r = lc_session_archive(&w->ledger, jv_copy(rec), NULL, NULL, &m);
	if (!jv_is_valid(r)) {
		jv_free(warn);
		return result(rec, r, jv_null());
	}
	jv_free(rec);
	rec = r;
	if (m != NULL) {
		jv_free(warn);
		warn = jv_string(m);
		free(m);
	}
	return result(rec, jv_invalid(), warn);
}

/* --dry-run: the checks lc-destroy would make, and nothing else. */
static jv
dry_one(struct worker *w, jv rec)
{
	double id = lc_num(rec, "linode_id", 0);
	const char *name = lc_str(rec, "name");
	jv inst;

	rec = jv_object_set(rec, jv_string("dry_run"), jv_true());
	if (id <= 0)
		return result(rec, jv_invalid(), jv_null());
	inst = lc_linode_instance_get(w->http, id);
	if (!jv_is_valid(inst) && strcmp(lc_error_code(inst), "not_found")) {
		return result(rec, inst, jv_null());
	}
	if (jv_is_valid(inst) && !lc_linode_owns(inst, name)) {
		jv_free(inst);
		return result(rec, lc_errorf("mismatch", "VM %.0f is not this "
		    "session's VM (its label or tags differ): it would not be "
		    "deleted", id), jv_null());
	}
	rec = jv_object_set(rec, jv_string("linode_status"), jv_is_valid(inst) ?
	    lc_get(inst, "status") : jv_string("gone"));
	jv_free(inst);
	return result(rec, jv_invalid(), jv_null());
}

/* Does the instance (borrowed) carry the tag? */
static int
tagged(jv inst, const char *tag)
{
	jv tags = lc_get(inst, "tags");
	int found = 0;

	if (jv_get_kind(tags) == JV_KIND_ARRAY)
		jv_array_foreach(tags, i, t) {
			(void)i;
			found |= jv_get_kind(t) == JV_KIND_STRING &&
			    strcmp(jv_string_value(t), tag) == 0;
			jv_free(t);
		}
	jv_free(tags);
	return found;
}

/*
 * The record cannot be read (damaged, a symlink): the account still says
 * which VM is the session's, by its label, session tag and this ledger's
 * owner tag. That VM is deleted and a record rebuilt from it is archived
 * in place of the damaged one. Consumes in and why (the read error).
 */
static jv
damaged(struct worker *w, const struct opts *o, jv in, const char *name,
    jv why)
{
	char owner[LC_OWNER_LEN + 1], tag[64], *m;
	jv e = jv_invalid(), inst, info, rec;

	if (lc_session_owner(&w->ledger, 0, owner, sizeof(owner), &e) == -1) {
		jv_free(e);
		return result(in, why, jv_null());
	}
	inst = lc_linode_instance_find(w->http, name);
	if (!jv_is_valid(inst)) {
		jv_free(why);
		return result(in, inst, jv_null());
	}
	if (jv_get_kind(inst) != JV_KIND_OBJECT ||
	    !tagged(inst, lc_session_owner_tag(owner, tag, sizeof(tag)))) {
		jv_free(inst);	/* no VM of this ledger: the damage stands */
		return result(in, why, jv_null());
	}
	m = lc_error_message(why);
	jv_free(why);
	lc_warnx("%s: the session's record cannot be read (%s): deleting VM "
	    "%.0f, found in the account by its label and this ledger's owner "
	    "tag", name, m, lc_num(inst, "id", 0));
	rec = JV_OBJECT(jv_string("name"), jv_string(name),
	    jv_string("linode_id"), lc_get(inst, "id"),
	    jv_string("label"), lc_get(inst, "label"),
	    jv_string("tags"), lc_get(inst, "tags"),
	    jv_string("region"), lc_get(inst, "region"),
	    jv_string("type"), lc_get(inst, "type"),
	    jv_string("created_at"), jv_string(lc_str(inst, "created") ?
	    lc_str(inst, "created") : ""),
	    jv_string("damaged_record"), jv_string(m));
	free(m);
	jv_free(inst);
	jv_free(in);
	info = lc_linode_session_delete(w->http, name, lc_num(rec, "linode_id",
	    0), 0, o->timeout_s * 1000);
	if (!jv_is_valid(info))
		return result(rec, info, jv_null());
	return archive(w, rec, info);
}

/*
 * A group's record: whatever of it the account still has goes too, even
 * when its head was gone already (deleted by hand), and every node is
 * checked gone. Consumes info; returns it with the group's counts.
 */
static jv
group_gone(struct worker *w, const char *name, const struct opts *o,
    jv info)
{
	jv g = lc_linode_group_delete(w->http, name, 0, o->timeout_s * 1000);

	if (!jv_is_valid(g)) {
		jv_free(info);
		return g;
	}
	jv_object_foreach(g, k, v) {
		if (strcmp(jv_string_value(k), "nodes_deleted") == 0 &&
		    lc_num(info, "nodes_deleted", 0) > jv_number_value(v)) {
			jv_free(k);	/* the first pass counted them */
			jv_free(v);
		} else if (jv_get_kind(v) != JV_KIND_NULL ||
		    !jv_object_has(jv_copy(info), jv_copy(k)))
			info = jv_object_set(info, k, v);
		else {
			jv_free(k);
			jv_free(v);
		}
	}
	jv_free(g);
	return info;
}

static jv
destroy_one(jv in, void *arg, void **ctx)
{
	struct opts *o = arg;
	struct worker *w;
	jv err = jv_invalid(), rec, info;
	char name[64];

	if (jv_object_has(jv_copy(in), jv_string("error")))
		return result(in, jv_invalid(), jv_null());
	/* A copy: in is consumed below, and its strings with it. */
	snprintf(name, sizeof(name), "%s", lc_str(in, "name") ?
	    lc_str(in, "name") : "");
	if (*name == '\0')
		return result(in, lc_errorf("bad_record", "the record has no "
		    "\"name\""), jv_null());
	if ((w = worker_get(o, ctx, &err)) == NULL)
		return result(in, err, jv_null());
	rec = lc_ledger_get(&w->ledger, name);
	if (!jv_is_valid(rec)) {
		if (strcmp(lc_error_code(rec), "not_found") == 0) {
			jv_free(rec);
			rec = lc_errorf("not_found", "no session named '%s' "
			    "(already destroyed? lc-sessions --all shows "
			    "archived ones)", name);
		} else if (!o->dry && (strcmp(lc_error_code(rec),
		    "corrupt_record") == 0 || strcmp(lc_error_code(rec),
		    "unsafe_file") == 0))
			return damaged(w, o, in, name, rec);
		return result(in, rec, jv_null());
	}
	rec = jv_object_merge(in, rec);	/* the ledger's fields win */
	if (o->dry)
		return dry_one(w, rec);
	jv_free(lc_session_merge(&w->ledger, name, jv_object_set(jv_object(),
	    jv_string("state"), jv_string("destroying"))));
	info = lc_linode_session_delete(w->http, name,
	    lc_num(rec, "linode_id", 0), lc_num(rec, "firewall_id", 0),
	    o->timeout_s * 1000);
	if (jv_is_valid(info) && lc_num(rec, "nodes", 1) > 1)
		info = group_gone(w, name, o, info);
	if (!jv_is_valid(info))
		return keep(w, rec, info);
	if (lc_failsafe_revoke(w->http, rec, &err) == -1) {	/* lib/failsafe */
		char *m = lc_error_message(err);

		lc_warnx("%s: the fail-safe token was not revoked (it expires "
		    "by itself): %s", name, m);
		free(m);
		jv_free(err);
	}
	return archive(w, rec, info);
}

static void
done(jv r, void *arg)
{
	struct opts *o = arg;
	jv rec = jv_array_get(jv_copy(r), 0), err = jv_array_get(jv_copy(r), 1);
	jv warn = jv_array_get(r, 2);

	if (jv_get_kind(err) == JV_KIND_OBJECT) {
		rec = lc_attach_error(rec, jv_invalid_with_msg(jv_copy(err)));
		o->failed++;
	} else if (lc_str(rec, "destroyed_at") != NULL && !o->dry) {
		jv cv = lc_get(rec, "cache_volume");

		lc_info("%s: VM %.0f deleted; $%.2f in all", lc_subject(rec),
		    lc_num(rec, "linode_id", 0), lc_num(rec, "cost_usd", 0));
		/* Deleting the VM detached the volume; it bills on. */
		if (lc_num(cv, "id", 0) > 0)
			lc_info("%s: the cache volume %s (%.0f GB) is kept for "
			    "the next session: it still costs $%.2f/month "
			    "until deleted ('coder cache rm %s')",
			    lc_subject(rec), lc_str(cv, "label"),
			    lc_num(cv, "size_gb", 0), lc_num(cv,
			    "monthly_cost_usd", 0), lc_str(cv, "label"));
		jv_free(cv);
	}
	if (jv_get_kind(warn) == JV_KIND_STRING)
		lc_warnx("%s: the VM is gone, but: %s", lc_subject(rec),
		    jv_string_value(warn));
	jv_free(err);
	jv_free(warn);
	o->done++;
	lc_emit(rec);
}

int
main(int argc, char *argv[])
{
	struct opts o = { .jobs = 0, .timeout_s = 300 };
	struct lc_pool_ops ops = { destroy_one, done, worker_free, &o };
	struct lc_config *cfg;
	struct lc_reader *in;
	struct lc_pool *pool;
	char *token = NULL, *end;
	jv rec, err = jv_invalid();
	int ch, rc;

	lc_init("lc-destroy");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'h': lc_opts_help(&cmd);
		case 'j':
			o.jobs = (int)strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || o.jobs < 1 ||
			    o.jobs > 256)
				lc_usage(usage_str, "bad job count '%s': write "
				    "1 to 256", optarg);
			break;
		case 'n': o.dry = 1; break;
		case 'q': lc_quiet = 1; break;
		case 't':
			if (lc_parse_duration(optarg, &o.timeout_s) == -1 ||
			    o.timeout_s == 0)
				lc_usage(usage_str, "bad timeout '%s': write "
				    "seconds, or e.g. 5m", optarg);
			break;
		case 'v': lc_verbose = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if ((in = lc_reader_open(argc, argv, "name")) == NULL)
		lc_usage(usage_str, NULL);
	if ((cfg = lc_config_load(&err)) == NULL ||
	    lc_linode_opts(cfg, 1, &o.http, &token, &err) == -1)
		lc_fatal_err(err);
	if (o.jobs == 0) {
		const char *j = lc_config_get(cfg, "LC_JOBS");

		o.jobs = j != NULL && atoi(j) > 0 ? atoi(j) : 16;
	}
	if (lc_http_global_init() == -1)
		lc_fatal("cannot set up libcurl");
	/*
	 * -j bounds the requests in flight. Most of a destroy is waiting for
	 * the VM to go, which holds no request: up to four sessions per job
	 * are under way at once, so a second wave rarely has to wait.
	 */
	if ((o.http.gate = lc_http_gate_new(o.jobs)) == NULL)
		lc_fatal("out of memory");
	pool = lc_pool_start(o.jobs == 1 ? 1 : o.jobs * 4 > 256 ? 256 :
	    o.jobs * 4, &ops);
	while (lc_reader_next(in, &rec))
		lc_pool_add(pool, rec);
	lc_pool_finish(pool);
	lc_http_gate_free(o.http.gate);
	lc_linode_token_free(token);
	rc = lc_finish(in);
	lc_config_free(cfg);
	return rc;
}
