/*
 * lc-sessions-api: the two lc-sessions verbs that ask the Linode API,
 * kept out of lc-sessions so that listing the ledger never loads libcurl.
 * lc-sessions checks the command line and execs this program as
 *
 *	lc-sessions-api cleanup [-qv]
 *	lc-sessions-api reconcile [-Aqv]
 *
 * cleanup archives sessions whose VM is gone; reconcile finds VMs tagged
 * linode-coder that no session knows, and with -A writes them into the
 * ledger. Messages carry the name lc-sessions: users never call this.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "cache.h"
#include "config.h"
#include "http.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "session.h"
#include "linode.h"
#include "rec.h"

static const char usage_str[] =
    "usage: lc-sessions cleanup [-q]\n"
    "       lc-sessions reconcile [-Aq]\n"
    "       lc-sessions cache [ls | rm label ... | rm -a]";

struct opts {
	int	 adopt, all;
};

static struct lc_ledger ledger;	/* opened by main */

static void	orphan_volumes(struct lc_http *, struct lc_config *);

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
	r = lc_session_archive(&ledger, lc_session_fill(jv_copy(rec)),
	    "vm_gone", NULL, &m);
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

/* obj's linode_id, when it has one, -> rec's name, into ids. Borrows. */
static jv
add_known(jv ids, jv obj, jv rec)
{
	char key[32];

	if (lc_num(obj, "linode_id", 0) <= 0)
		return ids;
	snprintf(key, sizeof(key), "%.0f", lc_num(obj, "linode_id", 0));
	return jv_object_set(ids, jv_string(key), jv_string(lc_subject(rec)));
}

/* A group's nodes (lc-create --nodes) are its session's too: their ids
 * into ids. Borrows rec. */
static jv
group_ids(jv ids, jv rec)
{
	jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes");

	if (jv_get_kind(nodes) == JV_KIND_ARRAY)
		jv_array_foreach(nodes, i, n) {
			(void)i;
			ids = add_known(ids, n, rec);
			jv_free(n);
		}
	jv_free(nodes);
	jv_free(g);
	return ids;
}

/* linode_id -> name of every active session, as an object. */
static jv
known_ids(void)
{
	jv all = lc_ledger_list(&ledger, 0), ids = jv_object();

	jv_array_foreach(all, i, rec) {
		(void)i;
		ids = group_ids(add_known(ids, rec, rec), rec);
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
	char name[64], label[80], tag[80], path[64], ts[32], *kh;
	double id = lc_num(inst, "id", 0);
	jv cur, fws, err = jv_invalid(), rec;
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
	kh = lc_session_path(&ledger, name, LC_SESSION_KNOWN_HOSTS);
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
	if (lc_session_event(&ledger, "adopted", rec, jv_null(), &err) == -1) {
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
	char key[32], tname[64], mine[LC_OWNER_LEN + 1] = "", theirs[64];
	jv err = jv_invalid();

	(void)argv;
	if (argc != 0)
		lc_usage(usage_str, "reconcile takes no operands");
	h = api(&cfg);
	if (lc_session_owner(&ledger, 0, mine, sizeof(mine), &err) == -1)
		jv_free(err);	/* none yet: every owner tag is another's */
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
		if (lc_session_owner_of(inst, theirs, sizeof(theirs)) &&
		    strcmp(theirs, mine) != 0) {
			orph = jv_object_set(orph, jv_string("state"),
			    jv_string("foreign"));
			orph = jv_object_set(orph, jv_string("owner_id"),
			    jv_string(theirs));
			if (!o->adopt)
				lc_warnx("%s: VM %s (%s) belongs to another "
				    "machine's ledger (owner %s): its lc-watch "
				    "guards it, and nothing here deletes it; "
				    "it bills $%.2f/hour (--adopt takes it in)",
				    *tname ? tname : "-", key,
				    lc_str(inst, "label") ? lc_str(inst,
				    "label") : "?", theirs, hourly);
		} else if (!o->adopt)
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
	orphan_volumes(h, cfg);
	lc_http_free(h);
	lc_config_free(cfg);
	return lc_finish(NULL);
}

/* What the cache verb and reconcile print for a volume. Borrows v. */
static jv
volume_rec(jv v, double gb_month)
{
	jv r = jv_object(), owner;
	char theirs[64];

	r = jv_object_set(r, jv_string("label"), lc_get(v, "label"));
	r = jv_object_set(r, jv_string("volume_id"), lc_get(v, "id"));
	r = jv_object_set(r, jv_string("region"), lc_get(v, "region"));
	r = jv_object_set(r, jv_string("size_gb"), lc_get(v, "size"));
	r = jv_object_set(r, jv_string("monthly_cost_usd"), gb_month > 0 ?
	    jv_number(lc_round_cents(gb_month * lc_num(v, "size", 0))) :
	    jv_null());
	r = jv_object_set(r, jv_string("linode_id"), lc_get(v, "linode_id"));
	r = jv_object_set(r, jv_string("attached_to"), lc_get(v,
	    "linode_label"));
	owner = lc_session_owner_of(v, theirs, sizeof(theirs)) ?
	    jv_string(theirs) : jv_null();
	r = jv_object_set(r, jv_string("owner_id"), owner);
	return jv_object_set(r, jv_string("created_at"), lc_get(v,
	    "created"));
}

/* Volume labels the ledger's sessions (archived too) and LC_VOLUME name. */
static jv
known_volumes(struct lc_config *cfg)
{
	jv all = lc_ledger_list(&ledger, 1), labels = jv_object();
	const char *conf = lc_config_get(cfg, "LC_VOLUME");

	jv_array_foreach(all, i, rec) {
		(void)i;
		if (lc_str(rec, "volume") != NULL)
			labels = jv_object_set(labels, jv_string(lc_str(rec,
			    "volume")), jv_true());
		jv_free(rec);
	}
	jv_free(all);
	if (conf != NULL)
		labels = jv_object_set(labels, jv_string(conf), jv_true());
	return labels;
}

/* reconcile: volumes tagged linode-coder that no session or config knows. */
static void
orphan_volumes(struct lc_http *h, struct lc_config *cfg)
{
	jv vols = lc_cache_list(h), known = known_volumes(cfg), r;

	if (!jv_is_valid(vols)) {
		lc_emit(lc_attach_error(jv_object(), vols));
		jv_free(known);
		return;
	}
	jv_array_foreach(vols, i, v) {
		(void)i;
		if (lc_str(v, "label") != NULL && !jv_object_has(jv_copy(known),
		    jv_string(lc_str(v, "label")))) {
			r = volume_rec(v, lc_cache_gb_month(h, lc_str(v,
			    "region")));
			r = jv_object_set(r, jv_string("state"),
			    jv_string("orphan_volume"));
			lc_warnx("%s: volume %.0f is tagged " LC_LINODE_TAG " but "
			    "no session or config knows it: it bills $%.2f/month "
			    "('coder cache rm %s' deletes it)", lc_str(v, "label"),
			    lc_num(v, "id", 0), lc_num(r, "monthly_cost_usd", 0),
			    lc_str(v, "label"));
			lc_emit(r);
		}
		jv_free(v);
	}
	jv_free(vols);
	jv_free(known);
}

/*
 * cache [ls]: this account's volumes tagged linode-coder, with size and
 * monthly price. cache rm label...: delete them (refused while attached:
 * deleting the VM detaches it). cache rm -a: every one of this owner's.
 */
static int
cache(struct opts *o, int argc, char **argv)
{
	struct lc_config *cfg;
	struct lc_http *h;
	const char *verb = argc > 0 ? argv[0] : "ls";
	char mine[LC_OWNER_LEN + 1] = "", theirs[64], path[64];
	jv vols, err = jv_invalid(), r, d;
	int rm, i, hit;

	rm = strcmp(verb, "rm") == 0;
	if (!rm && strcmp(verb, "ls") != 0)
		lc_usage(usage_str, "cache takes ls or rm, not '%s'", verb);
	if (argc > 0) {
		argc--;
		argv++;
	}
	if (!rm && (argc > 0 || o->all))
		lc_usage(usage_str, "cache ls takes no operands");
	if (rm && (argc > 0) == o->all)
		lc_usage(usage_str, "cache rm takes labels, or -a for all");
	h = api(&cfg);
	if (lc_session_owner(&ledger, 0, mine, sizeof(mine), &err) == -1)
		jv_free(err);
	vols = lc_cache_list(h);
	if (!jv_is_valid(vols))
		lc_fatal_err(vols);
	jv_array_foreach(vols, k, v) {
		(void)k;
		hit = !rm;
		for (i = 0; i < argc; i++)
			if (lc_str(v, "label") && strcmp(argv[i],
			    lc_str(v, "label")) == 0)
				hit = 1;
		if (rm && o->all && (!lc_session_owner_of(v, theirs,
		    sizeof(theirs)) || strcmp(theirs, mine) == 0))
			hit = 1;
		if (!hit) {
			jv_free(v);
			continue;
		}
		r = volume_rec(v, lc_cache_gb_month(h, lc_str(v, "region")));
		if (rm && lc_num(v, "linode_id", 0) != 0)
			r = lc_attach_error(r, lc_errorf("cache_attached", "%s is "
			    "attached to %s: 'coder down' that session first",
			    lc_str(v, "label"), lc_str(v, "linode_label") ?
			    lc_str(v, "linode_label") : "a VM"));
		else if (rm) {
			snprintf(path, sizeof(path), "/volumes/%.0f",
			    lc_num(v, "id", 0));
			d = lc_linode_delete(h, path);
			if (!jv_is_valid(d))
				r = lc_attach_error(r, d);
			else {
				jv_free(d);
				lc_info("%s: deleted; it no longer costs "
				    "$%.2f/month", lc_str(v, "label"),
				    lc_num(r, "monthly_cost_usd", 0));
				r = jv_object_set(r, jv_string("state"),
				    jv_string("deleted"));
			}
		}
		lc_emit(r);
		jv_free(v);
	}
	for (i = 0; i < argc; i++) {
		d = lc_cache_find(vols, argv[i]);
		if (jv_get_kind(d) == JV_KIND_NULL)
			lc_emit(lc_attach_error(jv_object_set(jv_object(),
			    jv_string("label"), jv_string(argv[i])),
			    lc_errorf("not_found", "no volume %s tagged "
			    LC_LINODE_TAG, argv[i])));
		jv_free(d);
	}
	jv_free(vols);
	lc_http_free(h);
	lc_config_free(cfg);
	return lc_finish(NULL);
}


int
main(int argc, char *argv[])
{
	struct opts o = { 0 };
	jv err = jv_invalid();
	int ch;

	lc_init("lc-sessions");
	if (argc < 2 || (strcmp(argv[1], "cleanup") != 0 &&
	    strcmp(argv[1], "reconcile") != 0 && strcmp(argv[1],
	    "cache") != 0))
		lc_usage(usage_str, "this helper of lc-sessions(1) takes "
		    "cleanup or reconcile: run 'lc-sessions cleanup' instead");
	while ((ch = getopt_long(argc - 1, argv + 1, "aAqv", NULL,
	    NULL)) != -1) {
		switch (ch) {
		case 'a': o.all = 1; break;
		case 'A': o.adopt = 1; break;
		case 'q': lc_quiet = 1; break;
		case 'v': lc_verbose = 1; break;
		default: lc_bad_option(usage_str, argv + 1);
		}
	}
	if (lc_ledger_open(&ledger, &err) == -1)
		lc_fatal_err(err);
	if (strcmp(argv[1], "cleanup") == 0)
		return cleanup(argc - 1 - optind, argv + 1 + optind);
	if (strcmp(argv[1], "cache") == 0)
		return cache(&o, argc - 1 - optind, argv + 1 + optind);
	return reconcile(&o, argc - 1 - optind, argv + 1 + optind);
}
