/* linode: Linode API v4 calls, error messages, prices, safe create/delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "http.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "linode.h"
#include "session.h"
#include "rec.h"

int
lc_linode_opts(struct lc_config *c, int want_token, struct lc_http_opts *o,
    char **token, jv *err)
{
	const char *r = lc_config_get(c, "LC_HTTP_RETRIES");
	long t = 0;

	memset(o, 0, sizeof(*o));
	*token = NULL;
	o->base = lc_config_get(c, "LC_API_URL");
	if (o->base == NULL)
		o->base = "https://api.linode.com/v4";
	if (lc_config_duration(c, "LC_HTTP_TIMEOUT", &t, err) == -1)
		return -1;
	o->timeout_ms = t > 0 ? t * 1000 : 30000;
	o->connect_ms = o->timeout_ms < 10000 ? o->timeout_ms : 10000;
	o->retries = r != NULL ? atoi(r) : 5;
	if (o->retries < 0 || o->retries > 20)
		o->retries = 5;
	if (want_token && lc_config_token(c, token, NULL, err) == -1)
		return -1;
	o->token = *token;
	return 0;
}

void
lc_linode_token_free(char *token)
{
	if (token != NULL) {
		memset(token, 0, strlen(token));
		free(token);
	}
}

char *
lc_linode_label(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "lc-%s", name);
	return buf;
}

char *
lc_linode_session_tag(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", LC_LINODE_SESSION_TAG, name);
	return buf;
}

/* Firewall labels hold at most 32 characters: a long name is cut and
 * given a hash of the whole, so two long names never share a label. */
char *
lc_linode_fw_label(const char *name, char *buf, size_t len)
{
	unsigned long hash = 5381;
	const char *p;

	if (strlen(name) + 3 <= 32) {
		snprintf(buf, len, "lc-%s", name);
		return buf;
	}
	for (p = name; *p != '\0'; p++)
		hash = hash * 33 + (unsigned char)*p;
	snprintf(buf, len, "lc-%.21s-%06lx", name, hash & 0xffffff);
	return buf;
}

/* An error value with the HTTP status beside code and message. */
static jv
api_error(long status, const char *code, const char *msg)
{
	jv e = jv_object_set(jv_object(), jv_string("code"), jv_string(code));

	e = jv_object_set(e, jv_string("message"), jv_string(msg));
	e = jv_object_set(e, jv_string("status"), jv_number((double)status));
	return jv_invalid_with_msg(e);
}

/* "field: reason; reason" from {"errors":[...]} into b. Borrows. */
static void
reasons(jv body, struct lc_buf *b)
{
	jv errs = lc_get(body, "errors");
	int i, n;

	if (jv_get_kind(errs) != JV_KIND_ARRAY) {
		jv_free(errs);
		return;
	}
	n = jv_array_length(jv_copy(errs));
	for (i = 0; i < n && i < 8; i++) {
		jv e = jv_array_get(jv_copy(errs), i);
		const char *f = lc_str(e, "field"), *r = lc_str(e, "reason");

		if (r != NULL) {
			lc_buf_printf(b, "%s%s%s%s", b->len ? "; " : "",
			    f ? f : "", f ? ": " : "", r);
		}
		jv_free(e);
	}
	jv_free(errs);
}

jv
lc_linode_error(long status, const char *body)
{
	struct lc_buf b = LC_BUF_INIT;
	const char *code;
	char msg[1024];
	jv parsed = jv_parse(body ? body : "");

	reasons(parsed, &b);
	jv_free(parsed);
	code = status == 401 ? "api_auth" : status == 403 ? "api_forbidden" :
	    status == 404 ? "not_found" : status == 429 || status >= 500 ?
	    "api_unavailable" : "api_status";
	if (b.len == 0)
		lc_buf_addstr(&b, status == 401 ? "Invalid Token" :
		    status >= 500 ? "server error" : "request refused");
	if (status == 401)
		snprintf(msg, sizeof(msg), "Linode API 401: %s (check "
		    "LINODE_TOKEN: it is wrong, expired or revoked)", b.data);
	else if (status == 403)
		snprintf(msg, sizeof(msg), "Linode API 403: %s (the token "
		    "lacks a scope: it needs linodes and firewall read/write)",
		    b.data);
	else
		snprintf(msg, sizeof(msg), "Linode API %ld: %s", status, b.data);
	lc_buf_free(&b);
	return api_error(status, code, msg);
}

jv
lc_linode_call(struct lc_http *h, const char *method, const char *path,
    jv filter, jv body, int flags)
{
	struct lc_http_resp r;
	char *fs = NULL, *bs = NULL, msg[512];
	jv out;

	if (jv_get_kind(filter) != JV_KIND_NULL)
		fs = lc_json(filter);
	if (jv_get_kind(body) != JV_KIND_NULL)
		bs = lc_json(body);
	jv_free(filter);
	jv_free(body);
	if (lc_http_call(h, method, path, fs, bs, flags, &r) == -1) {
		snprintf(msg, sizeof(msg), "Linode API: %s %s: %s%s", method,
		    path, r.errbuf, r.tries > 1 ? " (after retries)" : "");
		out = api_error(0, r.timed_out ? "timeout" : "http_transport",
		    msg);
	} else if (r.status >= 400) {
		out = lc_linode_error(r.status, r.body.data);
	} else if (r.body.len == 0) {
		out = jv_object();
	} else {
		out = jv_parse_sized(r.body.data, (int)r.body.len);
		if (!jv_is_valid(out) || jv_get_kind(out) != JV_KIND_OBJECT) {
			jv_free(out);
			snprintf(msg, sizeof(msg), "Linode API %ld: %s %s: the "
			    "answer is not a JSON object", r.status, method,
			    path);
			out = api_error(r.status, "bad_reply", msg);
		}
	}
	free(fs);
	free(bs);
	lc_http_resp_free(&r);
	return out;
}

jv
lc_linode_list(struct lc_http *h, const char *path, jv filter)
{
	jv all = jv_array(), page, data;
	int p = 1, pages = 1;
	char url[512];

	do {
		snprintf(url, sizeof(url), "%s%cpage=%d&page_size=500", path,
		    strchr(path, '?') ? '&' : '?', p);
		page = lc_linode_call(h, "GET", url, jv_copy(filter), jv_null(),
		    0);
		if (!jv_is_valid(page)) {
			jv_free(all);
			all = page;
			break;
		}
		data = lc_get(page, "data");
		pages = (int)lc_num(page, "pages", 1);
		jv_free(page);
		if (jv_get_kind(data) != JV_KIND_ARRAY) {
			jv_free(data);
			jv_free(all);
			all = api_error(200, "bad_reply", "Linode API: a list "
			    "answer without \"data\"");
			break;
		}
		all = jv_array_concat(all, data);
	} while (++p <= pages && p <= 1000);
	jv_free(filter);
	return all;
}

void
lc_linode_price(jv type, const char *region, double *hourly, double *monthly)
{
	jv rp = lc_get(type, "region_prices"), price = lc_get(type, "price");

	*hourly = lc_num(price, "hourly", 0);
	*monthly = lc_num(price, "monthly", 0);
	jv_free(price);
	if (jv_get_kind(rp) == JV_KIND_ARRAY && region != NULL) {
		jv_array_foreach(rp, i, p) {
			const char *id = lc_str(p, "id");

			(void)i;
			if (id != NULL && strcmp(id, region) == 0) {
				*hourly = lc_num(p, "hourly", 0);
				*monthly = lc_num(p, "monthly", 0);
			}
			jv_free(p);
		}
	}
	jv_free(rp);
	if (*hourly < 0)
		*hourly = 0;
	if (*monthly < 0)
		*monthly = 0;
}

const char *
lc_linode_state(const char *status)
{
	static const char *map[][2] = {
		{ "provisioning", "creating" }, { "booting", "booting" },
		{ "rebooting", "booting" }, { "running", "provisioning" },
		{ "offline", "failed" }, { "stopped", "failed" },
		{ "billing_suspension", "failed" },
		{ "deleting", "destroying" }, { "shutting_down", "destroying" },
		{ NULL, NULL }
	};
	int i;

	for (i = 0; status != NULL && map[i][0] != NULL; i++)
		if (strcmp(status, map[i][0]) == 0)
			return map[i][1];
	return "creating";	/* busy, migrating, ...: not up yet */
}

/* rec[key] = v unless rec has a non-null key already. Consumes v. */
static jv
set_default(jv rec, const char *key, jv v)
{
	jv old = lc_get(rec, key);

	if (jv_get_kind(old) == JV_KIND_NULL)
		rec = jv_object_set(rec, jv_string(key), v);
	else
		jv_free(v);
	jv_free(old);
	return rec;
}

jv
lc_linode_session(jv rec, jv inst, double hourly, double monthly,
    time_t created, struct lc_config *c, const char *known_hosts)
{
	jv ipv4 = lc_get(inst, "ipv4"), specs = lc_get(inst, "specs"), ssh;
	jv ip = jv_null(), err = jv_invalid();
	const char *port = lc_config_get(c, "LC_SSH_PORT");
	const char *user = lc_config_get(c, "LC_SSH_USER");
	long deadline = 0, idle = 0;
	double budget = -1;
	char ts[32];

	if (jv_get_kind(ipv4) == JV_KIND_ARRAY &&
	    jv_array_length(jv_copy(ipv4)) > 0)
		ip = jv_array_get(jv_copy(ipv4), 0);
	jv_free(ipv4);
	if (jv_get_kind(ip) != JV_KIND_STRING) {
		jv_free(ip);
		ip = jv_null();
	}
	rec = jv_object_set(rec, jv_string("state"), jv_string(
	    lc_linode_state(lc_str(inst, "status"))));
	rec = jv_object_set(rec, jv_string("linode_id"), lc_get(inst, "id"));
	rec = jv_object_set(rec, jv_string("label"), lc_get(inst, "label"));
	rec = jv_object_set(rec, jv_string("tags"), lc_get(inst, "tags"));
	rec = jv_object_set(rec, jv_string("region"), lc_get(inst, "region"));
	rec = jv_object_set(rec, jv_string("type"), lc_get(inst, "type"));
	rec = set_default(rec, "image", lc_get(inst, "image"));
	rec = jv_object_set(rec, jv_string("gpus"), lc_get(specs, "gpus"));
	jv_free(specs);
	rec = jv_object_set(rec, jv_string("hourly_cost_usd"), hourly > 0 ?
	    jv_number(hourly) : jv_null());
	rec = jv_object_set(rec, jv_string("monthly_cost_usd"), monthly > 0 ?
	    jv_number(monthly) : jv_null());
	rec = jv_object_set(rec, jv_string("ipv4"), jv_copy(ip));
	ssh = jv_object_set(jv_object(), jv_string("host"), ip);
	ssh = jv_object_set(ssh, jv_string("port"), jv_number(port ?
	    atoi(port) : 22));
	ssh = jv_object_set(ssh, jv_string("user"), jv_string(user ? user :
	    "root"));
	ssh = jv_object_set(ssh, jv_string("known_hosts"),
	    jv_string(known_hosts));
	rec = jv_object_set(rec, jv_string("ssh"), ssh);
	rec = set_default(rec, "endpoint",
	    jv_string("http://127.0.0.1:8000/v1"));
	rec = jv_object_set(rec, jv_string("created_at"),
	    jv_string(lc_time_fmt(created, ts, sizeof(ts))));
	rec = set_default(rec, "last_activity_at", jv_string(ts));
	if (lc_config_duration(c, "LC_DEADLINE", &deadline, &err) == 0 &&
	    deadline > 0)
		rec = jv_object_set(rec, jv_string("deadline_at"), jv_string(
		    lc_time_fmt(created + deadline, ts, sizeof(ts))));
	jv_free(err);
	err = jv_invalid();
	if (lc_config_duration(c, "LC_IDLE_TIMEOUT", &idle, &err) == 0)
		rec = jv_object_set(rec, jv_string("idle_timeout_s"),
		    jv_number((double)idle));
	jv_free(err);
	err = jv_invalid();
	if (lc_config_number(c, "LC_BUDGET_USD", &budget, &err) == 0 &&
	    budget >= 0)
		rec = set_default(rec, "budget_usd", jv_number(budget));
	jv_free(err);
	rec = set_default(rec, "heal", jv_array());
	return lc_session_fill(rec);
}

jv
lc_linode_instance_get(struct lc_http *h, double id)
{
	char path[64];

	snprintf(path, sizeof(path), "/linode/instances/%.0f", id);
	return lc_linode_call(h, "GET", path, jv_null(), jv_null(), 0);
}

jv
lc_linode_instances_tagged(struct lc_http *h, const char *tag)
{
	return lc_linode_list(h, "/linode/instances", jv_object_set(
	    jv_object(), jv_string("tags"), jv_string(tag)));
}

/* The first item of a list with filter, null for none, or an error. */
static jv
find_one(struct lc_http *h, const char *path, jv filter)
{
	jv l = lc_linode_list(h, path, filter), v;

	if (!jv_is_valid(l))
		return l;
	v = jv_array_length(jv_copy(l)) > 0 ? jv_array_get(jv_copy(l), 0) :
	    jv_null();
	jv_free(l);
	return v;
}

jv
lc_linode_instance_find(struct lc_http *h, const char *name)
{
	char label[64], tag[64];
	jv f;

	lc_linode_label(name, label, sizeof(label));
	lc_linode_session_tag(name, tag, sizeof(tag));
	f = jv_object_set(jv_object(), jv_string("label"), jv_string(label));
	f = jv_object_set(f, jv_string("tags"), jv_string(tag));
	return find_one(h, "/linode/instances", f);
}

/* Does list (borrowed) hold the string s? */
static int
has_string(jv list, const char *s)
{
	int found = 0;

	if (jv_get_kind(list) != JV_KIND_ARRAY)
		return 0;
	jv_array_foreach(list, i, v) {
		(void)i;
		if (jv_get_kind(v) == JV_KIND_STRING &&
		    strcmp(jv_string_value(v), s) == 0)
			found = 1;
		jv_free(v);
	}
	return found;
}

int
lc_linode_owns(jv inst, const char *name)
{
	char label[64], tag[64], gtag[80];
	const char *l = lc_str(inst, "label");
	jv tags = lc_get(inst, "tags");
	int ok;

	lc_linode_label(name, label, sizeof(label));
	lc_linode_session_tag(name, tag, sizeof(tag));
	lc_linode_group_tag(name, gtag, sizeof(gtag));
	ok = l != NULL && has_string(tags, tag) && (strcmp(l, label) == 0 ||
	    has_string(tags, gtag));
	jv_free(tags);
	return ok;
}

char *
lc_linode_group_tag(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", LC_LINODE_GROUP_TAG, name);
	return buf;
}

char *
lc_linode_node_label(const char *name, int i, char *buf, size_t len)
{
	if (i == 0)
		return lc_linode_label(name, buf, len);
	snprintf(buf, len, "lc-%s.w%d", name, i);
	return buf;
}

char *
lc_linode_node_address(int i, char *buf, size_t len)
{
	snprintf(buf, len, LC_VPC_PREFIX "%d", 2 + i);
	return buf;
}

/* The node whose label is "lc-" key, with key's session tag (key is
 * "<name>.w<i>"; the head's key is the name). */
static jv
node_find(struct lc_http *h, const char *key)
{
	char label[80], tag[80], name[64];
	const char *dot = strrchr(key, '.');
	jv f;

	snprintf(name, sizeof(name), "%.*s", dot ? (int)(dot - key) :
	    (int)strlen(key), key);
	snprintf(label, sizeof(label), "lc-%s", key);
	lc_linode_session_tag(name, tag, sizeof(tag));
	f = jv_object_set(jv_object(), jv_string("label"), jv_string(label));
	f = jv_object_set(f, jv_string("tags"), jv_string(tag));
	return find_one(h, "/linode/instances", f);
}

/* After this error, may the create have happened all the same? */
static int
ambiguous(jv err)
{
	const char *c = lc_error_code(err);

	return strcmp(c, "timeout") == 0 || strcmp(c, "http_transport") == 0 ||
	    strcmp(c, "api_unavailable") == 0 || strcmp(c, "bad_reply") == 0;
}

/* Is err the API saying the label is taken? */
static int
label_taken(jv err)
{
	char *m = lc_error_message(err);
	int taken = strstr(m, "must be unique") != NULL;

	free(m);
	return taken;
}

/*
 * POST path body, and on an ambiguous failure or a taken label look the
 * thing up with find(h, name) before trying again. Consumes body.
 */
static jv
create_once(struct lc_http *h, const char *name, const char *path, jv body,
    jv (*find)(struct lc_http *, const char *), const char *what)
{
	jv r = jv_invalid(), found;
	int n;

	for (n = 0; n < 4; n++) {
		jv_free(r);
		r = lc_linode_call(h, "POST", path, jv_null(), jv_copy(body),
		    LC_HTTP_ONCE);
		if (jv_is_valid(r) || !(ambiguous(r) || label_taken(r)))
			break;
		found = find(h, name);
		if (jv_get_kind(found) == JV_KIND_OBJECT) {
			jv_free(r);
			r = found;
			break;
		}
		if (!jv_is_valid(found)) {	/* cannot tell: stop here */
			char *m = lc_error_message(r), *fm;
			char msg[1024];

			fm = lc_error_message(found);
			snprintf(msg, sizeof(msg), "%s: %s; and the look-up "
			    "that would tell whether it was made failed too: "
			    "%s (run 'lc-sessions reconcile' to find it)",
			    what, m, fm);
			jv_free(found);
			jv_free(r);
			r = api_error(0, "create_unknown", msg);
			free(m);
			free(fm);
			break;
		}
		jv_free(found);
		if (label_taken(r) && !ambiguous(r))
			break;	/* someone else's thing has the label */
		lc_sleep_ms(lc_http_backoff_ms(n));
	}
	jv_free(body);
	return r;
}

jv
lc_linode_instance_create(struct lc_http *h, const char *name, jv body)
{
	return create_once(h, name, "/linode/instances", body,
	    lc_linode_instance_find, "creating the VM");
}

jv
lc_linode_node_create(struct lc_http *h, const char *name, int i, jv body)
{
	char key[80];

	if (i == 0)
		snprintf(key, sizeof(key), "%s", name);
	else
		snprintf(key, sizeof(key), "%s.w%d", name, i);
	return create_once(h, key, "/linode/instances", body, node_find,
	    i == 0 ? "creating the head node" : "creating a worker node");
}

/* The session's VPC: label "lc-<name>", its session tag in the
 * description (VPCs carry no tags). */
static jv
vpc_find(struct lc_http *h, const char *name)
{
	char label[64], tag[64];
	jv v;
	const char *d;

	lc_linode_label(name, label, sizeof(label));
	lc_linode_session_tag(name, tag, sizeof(tag));
	v = find_one(h, "/vpcs", jv_object_set(jv_object(),
	    jv_string("label"), jv_string(label)));
	if (jv_get_kind(v) != JV_KIND_OBJECT)
		return v;
	d = lc_str(v, "description");
	if (d == NULL || strstr(d, tag) == NULL) {
		jv_free(v);
		v = jv_null();
	}
	return v;
}

jv
lc_linode_vpc_create(struct lc_http *h, const char *name, jv body)
{
	return create_once(h, name, "/vpcs", body, vpc_find,
	    "creating the VPC");
}

/* Our firewall for the session: its label and our session tag. */
static jv
firewall_find(struct lc_http *h, const char *name)
{
	char label[64], tag[64];
	jv fw, tags;

	lc_linode_fw_label(name, label, sizeof(label));
	lc_linode_session_tag(name, tag, sizeof(tag));
	fw = find_one(h, "/networking/firewalls", jv_object_set(jv_object(),
	    jv_string("label"), jv_string(label)));
	if (jv_get_kind(fw) != JV_KIND_OBJECT)
		return fw;
	tags = lc_get(fw, "tags");
	if (!has_string(tags, tag)) {
		jv_free(fw);
		fw = jv_null();
	}
	jv_free(tags);
	return fw;
}

jv
lc_linode_firewall_create(struct lc_http *h, const char *name, jv body)
{
	return create_once(h, name, "/networking/firewalls", body,
	    firewall_find, "creating the firewall");
}

jv
lc_linode_delete(struct lc_http *h, const char *path)
{
	jv r = lc_linode_call(h, "DELETE", path, jv_null(), jv_null(), 0);

	if (jv_is_valid(r)) {
		jv_free(r);
		return jv_true();
	}
	if (strcmp(lc_error_code(r), "not_found") == 0) {
		jv_free(r);
		return jv_false();	/* already gone */
	}
	return r;
}

/* Poll until the instance answers 404. Returns true or an error. */
static jv
wait_gone(struct lc_http *h, double id, long timeout_ms)
{
	long long end = lc_mono_ms() + timeout_ms;
	long pause = 300;
	char msg[256];
	jv r;

	for (;;) {
		r = lc_linode_instance_get(h, id);
		if (!jv_is_valid(r) && strcmp(lc_error_code(r),
		    "not_found") == 0) {
			jv_free(r);
			return jv_true();
		}
		if (!jv_is_valid(r))
			return r;
		jv_free(r);
		if (lc_mono_ms() + pause > end)
			break;
		lc_sleep_ms(pause);
		pause = pause * 3 / 2 > 5000 ? 5000 : pause * 3 / 2;
	}
	snprintf(msg, sizeof(msg), "VM %.0f still exists %lds after its "
	    "delete: it may still bill (run lc-destroy again)", id,
	    timeout_ms / 1000);
	return api_error(0, "timeout", msg);
}

/* The VM's part of a session delete: check, delete, wait. */
static jv
delete_vm(struct lc_http *h, const char *name, double id, long timeout_ms,
    int *gone, int *group)
{
	char path[64], msg[1024], gtag[80];
	jv inst, r, tags;

	inst = lc_linode_instance_get(h, id);
	if (!jv_is_valid(inst)) {
		if (strcmp(lc_error_code(inst), "not_found") != 0)
			return inst;
		jv_free(inst);
		*gone = 1;
		return jv_true();
	}
	if (!lc_linode_owns(inst, name)) {
		snprintf(msg, sizeof(msg), "VM %.0f is labelled '%s' and lacks "
		    "the tag " LC_LINODE_SESSION_TAG "%s: it is not this "
		    "session's VM, so it was not deleted", id,
		    lc_str(inst, "label") ? lc_str(inst, "label") : "?", name);
		jv_free(inst);
		return api_error(0, "mismatch", msg);
	}
	tags = lc_get(inst, "tags");
	*group = has_string(tags, lc_linode_group_tag(name, gtag,
	    sizeof(gtag)));
	jv_free(tags);
	jv_free(inst);
	snprintf(path, sizeof(path), "/linode/instances/%.0f", id);
	r = lc_linode_delete(h, path);
	if (!jv_is_valid(r)) {
		char *m = lc_error_message(r);

		snprintf(msg, sizeof(msg), "cannot delete VM %.0f, so it may "
		    "still bill: %s", id, m);
		free(m);
		jv_free(r);
		return api_error(0, "delete_failed", msg);
	}
	*gone = jv_get_kind(r) == JV_KIND_FALSE;
	jv_free(r);
	return wait_gone(h, id, timeout_ms);
}

/* DELETE path, a failure kept as a message in out[key]. */
static jv
delete_noted(struct lc_http *h, const char *path, jv out, const char *key,
    const char *ok_key)
{
	jv r = lc_linode_delete(h, path), note = jv_null();

	if (!jv_is_valid(r)) {
		char *m = lc_error_message(r);

		note = jv_string(m);
		free(m);
	}
	jv_free(r);
	out = jv_object_set(out, jv_string(ok_key),
	    jv_bool(jv_get_kind(note) == JV_KIND_NULL));
	return jv_object_set(out, jv_string(key), note);
}

jv
lc_linode_group_delete(struct lc_http *h, const char *name,
    double firewall_id, long timeout_ms)
{
	char tag[80], path[64], msg[512];
	jv nodes, out = jv_object(), vpc;
	int n = 0, failed = 0;

	nodes = lc_linode_instances_tagged(h, lc_linode_group_tag(name, tag,
	    sizeof(tag)));
	if (!jv_is_valid(nodes)) {
		jv_free(out);
		return nodes;
	}
	/* Every node's delete first, then the waits: they go together. */
	jv_array_foreach(nodes, i, inst) {
		(void)i;
		if (lc_linode_owns(inst, name) && !failed) {
			jv r;

			snprintf(path, sizeof(path), "/linode/instances/%.0f",
			    lc_num(inst, "id", 0));
			r = lc_linode_delete(h, path);
			if (!jv_is_valid(r)) {
				char *m = lc_error_message(r);

				snprintf(msg, sizeof(msg), "cannot delete node "
				    "%.0f (%s) of the group, so it may still "
				    "bill: %s", lc_num(inst, "id", 0),
				    lc_str(inst, "label"), m);
				free(m);
				failed = 1;
			}
			jv_free(r);
			n++;
		}
		jv_free(inst);
	}
	if (failed) {
		jv_free(nodes);
		jv_free(out);
		return api_error(0, "delete_failed", msg);
	}
	jv_array_foreach(nodes, i, inst) {
		(void)i;
		if (lc_linode_owns(inst, name) && !failed) {
			jv r = wait_gone(h, lc_num(inst, "id", 0), timeout_ms);

			if (!jv_is_valid(r)) {
				jv_free(out);
				out = r;
				failed = 1;
			} else
				jv_free(r);
		}
		jv_free(inst);
	}
	jv_free(nodes);
	if (failed)
		return out;
	out = jv_object_set(out, jv_string("nodes_deleted"), jv_number(n));
	if (firewall_id <= 0) {
		jv f = firewall_find(h, name);

		firewall_id = lc_num(f, "id", 0);
		jv_free(f);
	}
	if (firewall_id > 0) {
		snprintf(path, sizeof(path), "/networking/firewalls/%.0f",
		    firewall_id);
		out = delete_noted(h, path, out, "firewall_error",
		    "firewall_deleted");
	}
	vpc = vpc_find(h, name);
	if (jv_get_kind(vpc) == JV_KIND_OBJECT) {
		snprintf(path, sizeof(path), "/vpcs/%.0f", lc_num(vpc, "id",
		    0));
		out = delete_noted(h, path, out, "vpc_error", "vpc_deleted");
	} else if (!jv_is_valid(vpc)) {
		char *m = lc_error_message(vpc);

		out = jv_object_set(out, jv_string("vpc_error"),
		    jv_string(m));
		free(m);
	}
	jv_free(vpc);
	return out;
}

jv
lc_linode_session_delete(struct lc_http *h, const char *name,
    double linode_id, double firewall_id, long timeout_ms)
{
	jv r, out, fw = jv_null();
	int gone = 0, group = 0;
	char path[64];

	if (linode_id <= 0) {	/* never saved: look for it by label */
		jv inst = lc_linode_instance_find(h, name);

		if (!jv_is_valid(inst))
			return inst;
		linode_id = lc_num(inst, "id", 0);
		jv_free(inst);
		gone = linode_id <= 0;
	}
	if (linode_id > 0) {
		r = delete_vm(h, name, linode_id, timeout_ms, &gone, &group);
		if (!jv_is_valid(r))
			return r;
		jv_free(r);
	}
	if (group) {	/* a node of a group: all of it goes */
		r = lc_linode_group_delete(h, name, firewall_id, timeout_ms);
		if (!jv_is_valid(r))
			return r;
		return jv_object_set(r, jv_string("already_gone"),
		    jv_bool(gone));
	}
	if (firewall_id <= 0) {
		jv f = firewall_find(h, name);

		firewall_id = lc_num(f, "id", 0);
		jv_free(f);
	}
	out = jv_object_set(jv_object(), jv_string("already_gone"),
	    jv_bool(gone));
	if (firewall_id > 0) {
		snprintf(path, sizeof(path), "/networking/firewalls/%.0f",
		    firewall_id);
		r = lc_linode_delete(h, path);
		if (!jv_is_valid(r)) {
			char *m = lc_error_message(r);

			fw = jv_string(m);
			free(m);
		}
		jv_free(r);
	}
	out = jv_object_set(out, jv_string("firewall_deleted"),
	    jv_bool(firewall_id > 0 && jv_get_kind(fw) == JV_KIND_NULL));
	return jv_object_set(out, jv_string("firewall_error"), fw);
}
