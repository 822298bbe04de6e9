/* session: a session's files, record checks, merge, events and archive. */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "session.h"

char *
lc_session_path(struct lc_ledger *l, const char *name, enum lc_session_file f)
{
	static const char *const pre[] = { "sessions/", "", "", "locks/",
	    "locks/" };
	static const char *const suf[] = { ".json", ".known_hosts", ".env",
	    ".lock", ".up" };
	char file[128];

	snprintf(file, sizeof(file), "%s%s%s", pre[f], name, suf[f]);
	return lc_ledger_path(l, file);
}

int
lc_session_hold(struct lc_ledger *l, const char *name)
{
	char *path = lc_session_path(l, name, LC_SESSION_UP), *dir;
	int fd;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1 &&
	    errno == ENOENT) {
		dir = lc_ledger_path(l, "locks");
		lc_mkdirs(dir, 0700);
		free(dir);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	free(path);
	if (fd != -1 && lc_lock_fd(fd, 0, 0) == -1) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int
lc_session_held(struct lc_ledger *l, const char *name)
{
	char *path = lc_session_path(l, name, LC_SESSION_UP);
	int fd = open(path, O_RDONLY | O_CLOEXEC), held = 0;

	free(path);
	if (fd == -1)
		return 0;
	if (lc_lock_fd(fd, 1, 1) == -1)
		held = errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* Is s LC_OWNER_LEN lowercase hex digits? */
static int
owner_ok(const char *s, size_t n)
{
	return n == LC_OWNER_LEN && strspn(s, "0123456789abcdef") == n;
}

int
lc_session_owner(struct lc_ledger *l, int create, char *buf, size_t len,
    jv *err)
{
	char *path = lc_ledger_path(l, "owner"), *text = NULL, id[32];
	size_t n = 0;
	int rc = -1;

	if (len < LC_OWNER_LEN + 1) {
		*err = lc_errorf("nomem", "owner id buffer too small");
		goto out;
	}
	if (lc_read_file(path, &text, &n) == 0) {
		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
			n--;
		if (!owner_ok(text, n)) {
			*err = lc_errorf("state_dir", "%s is damaged (not %d "
			    "hex digits): restore it from a backup, or remove "
			    "it to start a new owner (the old owner's VMs are "
			    "then listed by 'lc-sessions reconcile' as "
			    "another's)", path, LC_OWNER_LEN);
			goto out;
		}
		memcpy(buf, text, LC_OWNER_LEN);
		buf[LC_OWNER_LEN] = '\0';
		rc = 0;
		goto out;
	}
	if (errno != ENOENT || !create) {
		*err = errno == ENOENT ? lc_errorf("state_dir", "this ledger "
		    "has no owner id yet (%s)", path) : lc_errorf("state_dir",
		    "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (lc_random_string(id, LC_OWNER_LEN, "0123456789abcdef") == -1) {
		*err = lc_errorf("random", "no random bytes for the owner id");
		goto out;
	}
	id[LC_OWNER_LEN] = '\n';
	/* Two first runs at once: a link() that fails on EEXIST loses, and
	 * the winner's id is read back. */
	{
		char *tmp = lc_ledger_path(l, "owner.new");
		char suffix[24];
		char *t;

		snprintf(suffix, sizeof(suffix), ".%ld", (long)getpid());
		t = malloc(strlen(tmp) + sizeof(suffix));
		if (t == NULL)
			lc_fatal("out of memory");
		strcpy(t, tmp);
		strcat(t, suffix);
		free(tmp);
		if (lc_write_file_atomic(t, id, LC_OWNER_LEN + 1, 0600) == -1 ||
		    (link(t, path) == -1 && errno != EEXIST)) {
			*err = lc_errorf("state_dir", "cannot write %s: %s",
			    path, strerror(errno));
			unlink(t);
			free(t);
			goto out;
		}
		unlink(t);
		free(t);
	}
	free(text);
	free(path);
	return lc_session_owner(l, 0, buf, len, err);
out:
	free(text);
	free(path);
	return rc;
}

char *
lc_session_owner_tag(const char *owner, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", LC_OWNER_TAG, owner);
	return buf;
}

int
lc_session_owner_of(jv obj, char *buf, size_t len)
{
	jv tags = lc_get(obj, "tags");
	size_t n = strlen(LC_OWNER_TAG);

	*buf = '\0';
	if (jv_get_kind(tags) == JV_KIND_ARRAY)
		jv_array_foreach(tags, i, t) {
			const char *s;

			(void)i;
			if (jv_get_kind(t) == JV_KIND_STRING &&
			    strncmp(s = jv_string_value(t), LC_OWNER_TAG,
			    n) == 0 && owner_ok(s + n, strlen(s + n)))
				snprintf(buf, len, "%s", s + n);
			jv_free(t);
		}
	jv_free(tags);
	return *buf != '\0';
}

/* ---- the record's types ---- */

#define T_NULL	(1u << JV_KIND_NULL)
#define T_STR	(1u << JV_KIND_STRING)
#define T_NUM	(1u << JV_KIND_NUMBER)
#define T_OBJ	(1u << JV_KIND_OBJECT)
#define T_ARR	(1u << JV_KIND_ARRAY)
#define T_BOOL	((1u << JV_KIND_TRUE) | (1u << JV_KIND_FALSE))

/* Every field a tool reads from a stored record, with the kinds it may
 * have (lc-records(5)). Others are kept and not checked. */
static const struct field_type {
	const char	*key;
	unsigned	 kinds;
} types[] = {
	{ "state", T_STR }, { "linode_id", T_NUM }, { "firewall_id", T_NUM },
	{ "label", T_STR }, { "tags", T_ARR }, { "owner_id", T_STR },
	{ "region", T_STR }, { "type", T_STR }, { "image", T_STR },
	{ "gpus", T_NUM | T_ARR }, { "gpus_expected", T_NUM },
	{ "hourly_cost_usd", T_NUM }, { "monthly_cost_usd", T_NUM },
	{ "ipv4", T_STR }, { "ssh", T_OBJ }, { "model", T_STR },
	{ "served_model_name", T_STR }, { "vllm", T_OBJ },
	{ "endpoint", T_STR }, { "created_at", T_STR }, { "ready_at", T_STR },
	{ "last_activity_at", T_STR }, { "destroyed_at", T_STR },
	{ "idle_timeout_s", T_NUM }, { "deadline_at", T_STR },
	{ "budget_usd", T_NUM }, { "cost_usd", T_NUM }, { "heal", T_ARR },
	{ "public", T_BOOL }, { "public_allow", T_STR },
	{ "local_port", T_NUM }, { "failsafe", T_STR },
	{ "failsafe_token_id", T_NUM }, { "failsafe_deadline_at", T_STR },
	{ "failsafe_expires_at", T_STR }, { "vm_idle_guard", T_STR },
	{ "vm_activity_at", T_STR }, { "vm_guard", T_OBJ },
	{ "host_key", T_OBJ }, { "activity_sample", T_OBJ },
	{ NULL, 0 }
}, ssh_types[] = {
	{ "host", T_STR }, { "port", T_NUM }, { "user", T_STR },
	{ "known_hosts", T_STR }, { NULL, 0 }
};

static const char *
kind_name(jv v)
{
	return jv_kind_name(jv_get_kind(v));
}

/* Check obj's (borrowed) members named in t. 0, or -1 with *err. */
static int
check_types(jv obj, const struct field_type *t, const char *where,
    const char *name, jv *err)
{
	int rc = 0;

	jv_object_foreach(obj, k, v) {
		const char *key = jv_string_value(k);
		int i;

		for (i = 0; rc == 0 && t[i].key != NULL; i++) {
			if (key[0] != t[i].key[0] || strcmp(key, t[i].key) != 0)
				continue;
			if (jv_get_kind(v) != JV_KIND_NULL &&
			    !(t[i].kinds & (1u << jv_get_kind(v)))) {
				*err = lc_errorf("corrupt_record", "session "
				    "'%s': %s%s is %s %s, which no tool wrote: "
				    "restore the file, or remove it with "
				    "'lc-sessions forget %s --yes' (lc-watch "
				    "guards its VM as an orphan meanwhile)",
				    name, where, key, jv_get_kind(v) ==
				    JV_KIND_ARRAY || jv_get_kind(v) ==
				    JV_KIND_OBJECT ? "an" : "a", kind_name(v),
				    name);
				rc = -1;
			}
			break;
		}
		jv_free(k);
		jv_free(v);
	}
	return rc;
}

int
lc_session_check(jv rec, const char *name, jv *err)
{
	jv n, ssh;
	int rc;

	if (jv_get_kind(rec) != JV_KIND_OBJECT) {
		*err = lc_errorf("corrupt_record", "session '%s' is %s, not a "
		    "JSON object", name, kind_name(rec));
		return -1;
	}
	n = jv_object_get(jv_copy(rec), jv_string("name"));
	if (jv_get_kind(n) != JV_KIND_STRING ||
	    strcmp(jv_string_value(n), name) != 0) {
		*err = lc_errorf("corrupt_record", "session '%s': its \"name\" "
		    "is %s%s%s, not \"%s\": restore the file, or remove it with "
		    "'lc-sessions forget %s --yes' (lc-watch guards its VM as "
		    "an orphan meanwhile)", name, jv_get_kind(n) ==
		    JV_KIND_STRING ? "\"" : "", jv_get_kind(n) ==
		    JV_KIND_STRING ? jv_string_value(n) : kind_name(n),
		    jv_get_kind(n) == JV_KIND_STRING ? "\"" : "", name, name);
		jv_free(n);
		return -1;
	}
	jv_free(n);
	if (check_types(rec, types, "", name, err) == -1)
		return -1;
	ssh = jv_object_get(jv_copy(rec), jv_string("ssh"));
	rc = jv_get_kind(ssh) == JV_KIND_OBJECT ?
	    check_types(ssh, ssh_types, "ssh.", name, err) : 0;
	jv_free(ssh);
	return rc;
}

static const char *documented[] = {
	"name", "state", "linode_id", "region", "type", "image", "gpus",
	"hourly_cost_usd", "ipv4", "ssh", "model", "served_model_name", "vllm",
	"endpoint", "created_at", "ready_at", "last_activity_at", "destroyed_at",
	"idle_timeout_s", "deadline_at", "budget_usd", "cost_usd", "heal", NULL
};
_Static_assert(sizeof(documented) / sizeof(documented[0]) <= 8 * sizeof(unsigned long),
    "lc_session_fill marks the fields it saw in one unsigned long");


jv
lc_session_fill(jv rec)
{
	unsigned long seen = 0;
	int i;

	/* One pass over the record's keys, not a lookup per field: no key
	 * strings are made, and threads may fill records at once. */
	if (jv_get_kind(rec) != JV_KIND_OBJECT)
		return rec;
	jv_object_foreach(rec, k, v) {
		const char *key = jv_string_value(k);

		for (i = 0; documented[i] != NULL; i++)
			if (key[0] == documented[i][0] &&
			    strcmp(key, documented[i]) == 0) {
				seen |= 1UL << i;
				break;
			}
		jv_free(k);
		jv_free(v);
	}
	for (i = 0; documented[i] != NULL; i++)
		if (!(seen & 1UL << i))
			rec = jv_object_set(rec, jv_string(documented[i]),
			    strcmp(documented[i], "heal") == 0 ? jv_array() :
			    jv_null());
	return rec;
}

jv
lc_session_live(jv rec, time_t now)
{
	const char *c = lc_str(rec, "created_at"), *d;
	time_t start, end = now;
	double hourly, monthly;

	if (c == NULL || lc_time_parse(c, &start) == -1)
		return rec;
	d = lc_str(rec, "destroyed_at");
	if (d != NULL)
		lc_time_parse(d, &end);
	hourly = lc_num(rec, "hourly_cost_usd", 0);
	monthly = lc_num(rec, "monthly_cost_usd", 0);
	rec = jv_object_set(rec, jv_string("uptime_s"),
	    jv_number(end > start ? (double)(end - start) : 0));
	return jv_object_set(rec, jv_string("cost_usd"),
	    jv_number(lc_cost(hourly, monthly, start, end)));
}

/* lc_ledger_update's callback: the fields in *arg over the record. */
static jv
merge_fn(jv rec, void *arg)
{
	if (!jv_is_valid(rec))
		return rec;
	return jv_object_merge(rec, jv_copy(*(jv *)arg));
}

jv
lc_session_merge(struct lc_ledger *l, const char *name, jv fields)
{
	jv r;

	if (jv_get_kind(fields) != JV_KIND_OBJECT) {
		jv_free(fields);
		return lc_errorf("bad_record", "fields to merge must be an "
		    "object");
	}
	r = lc_ledger_update(l, name, merge_fn, &fields);
	jv_free(fields);
	return r;
}

/* ---- the tunnel's local port ---- */

/* Does a record in all (borrowed) but name's have local_port port? */
static int
port_in(jv all, const char *name, int port)
{
	int taken = 0;

	if (jv_get_kind(all) != JV_KIND_ARRAY)
		return 0;
	jv_array_foreach(all, i, s) {
		taken |= lc_num(s, "local_port", 0) == port &&
		    strcmp(lc_subject(s), name) != 0;
		jv_free(s);
	}
	return taken;
}

int
lc_session_port_taken(struct lc_ledger *l, const char *name, int port)
{
	jv all = l != NULL ? lc_ledger_list(l, 0) : jv_array();
	int taken = port_in(all, name, port);

	jv_free(all);
	return taken;
}

int
lc_session_local_port(struct lc_ledger *l, jv rec)
{
	jv all;
	int port;

	if (lc_num(rec, "local_port", 0) > 0)
		return (int)lc_num(rec, "local_port", 0);
	all = l != NULL ? lc_ledger_list(l, 0) : jv_array();
	for (port = 18000; port < 19000; port++)
		if (!port_in(all, lc_subject(rec), port))
			break;
	jv_free(all);
	return port;
}

/* text (an env file) with its OPENAI_API_BASE line set to base, the
 * other lines kept, into b. */
static void
env_with_base(struct lc_buf *b, const char *text, const char *base)
{
	const char *p = text, *nl;
	int done = 0;

	for (; *p != '\0'; p = nl + (*nl != '\0')) {
		nl = p + strcspn(p, "\n");
		if (strncmp(p, "OPENAI_API_BASE=", 16) == 0) {
			if (!done)
				lc_buf_printf(b, "OPENAI_API_BASE=%s\n", base);
			done = 1;
			continue;
		}
		lc_buf_printf(b, "%.*s\n", (int)(nl - p), p);
	}
	if (!done)
		lc_buf_printf(b, "OPENAI_API_BASE=%s\n", base);
}

int
lc_session_set_local_port(struct lc_ledger *l, const char *name, int port,
    jv *err)
{
	struct lc_buf b = LC_BUF_INIT;
	char *path = NULL, *text = NULL, base[64];
	jv rec;
	int rc = -1;

	rec = lc_session_merge(l, name, jv_object_set(jv_object(),
	    jv_string("local_port"), jv_number(port)));
	if (!jv_is_valid(rec)) {
		*err = rec;
		return -1;
	}
	path = lc_session_path(l, name, LC_SESSION_ENV);
	if (lc_bool(rec, "public") || lc_read_file(path, &text, NULL) == -1) {
		rc = 0;		/* public, or not ready: no base */
		goto out;
	}
	snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", port);
	env_with_base(&b, text, base);
	if (lc_write_file_atomic(path, b.data, b.len, 0600) == -1)
		*err = lc_errorf("io", "cannot write %s: %s", path,
		    strerror(errno));
	else
		rc = 0;
out:
	/* The API key lived in text and b: wipe them before freeing. */
	if (text != NULL)
		memset(text, 0, strlen(text));
	if (b.data != NULL)
		memset(b.data, 0, b.len);
	lc_buf_free(&b);
	free(text);
	free(path);
	jv_free(rec);
	return rc;
}

/* ---- events: one schema per kind ---- */

static const struct event_kind {
	const char		*kind;
	const struct field_type	 keys[8];	/* from the record */
	const char		*at;		/* the record's time, or NULL */
} events[] = {
	{ "created", { { "name", T_STR }, { "linode_id", T_NUM },
	    { "type", T_STR }, { "region", T_STR },
	    { "hourly_cost_usd", T_NUM }, { "monthly_cost_usd", T_NUM },
	    { "owner_id", T_STR }, { NULL, 0 } }, "created_at" },
	{ "adopted", { { "name", T_STR }, { "linode_id", T_NUM },
	    { "type", T_STR }, { "region", T_STR },
	    { "hourly_cost_usd", T_NUM }, { "monthly_cost_usd", T_NUM },
	    { "adopted_at", T_STR }, { NULL, 0 } }, "created_at" },
	{ "ready", { { "name", T_STR }, { "linode_id", T_NUM },
	    { "ttft_s", T_NUM }, { "tokens_per_s", T_NUM }, { NULL, 0 } },
	    NULL },
	{ "extended", { { "name", T_STR }, { "linode_id", T_NUM },
	    { "deadline_at", T_STR }, { NULL, 0 } }, NULL },
	{ "forgotten", { { "name", T_STR }, { "linode_id", T_NUM },
	    { NULL, 0 } }, NULL },
	{ "destroyed", { { "name", T_STR }, { "linode_id", T_NUM },
	    { "hourly_cost_usd", T_NUM }, { "monthly_cost_usd", T_NUM },
	    { "cost_usd", T_NUM }, { "destroyed_at", T_STR }, { NULL, 0 } },
	    "destroyed_at" },
	{ NULL, { { NULL, 0 } }, NULL }
};

static const struct event_kind *
event_kind(const char *kind)
{
	int i;

	for (i = 0; kind != NULL && events[i].kind != NULL; i++)
		if (strcmp(events[i].kind, kind) == 0)
			return &events[i];
	return NULL;
}

int
lc_session_event(struct lc_ledger *l, const char *kind, jv rec, jv extra,
    jv *err)
{
	const struct event_kind *e = event_kind(kind);
	jv ev;
	int i;

	if (e == NULL) {
		jv_free(extra);
		*err = lc_errorf("bad_event", "no event kind '%s'", kind);
		return -1;
	}
	ev = jv_object_set(jv_object(), jv_string("event"), jv_string(kind));
	for (i = 0; e->keys[i].key != NULL; i++)
		ev = jv_object_set(ev, jv_string(e->keys[i].key),
		    lc_get(rec, e->keys[i].key));
	if (e->at != NULL && lc_str(rec, e->at) != NULL)
		ev = jv_object_set(ev, jv_string("at"), lc_get(rec, e->at));
	if (jv_get_kind(extra) == JV_KIND_OBJECT)
		ev = jv_object_merge(ev, extra);
	else
		jv_free(extra);
	return lc_ledger_event(l, "ledger.jsonl", ev, err);
}

int
lc_session_event_check(jv ev, jv *err)
{
	const struct event_kind *e;
	int i;

	if (jv_get_kind(ev) != JV_KIND_OBJECT) {
		*err = lc_errorf("bad_event", "an event is %s, not an object",
		    kind_name(ev));
		return -1;
	}
	if ((e = event_kind(lc_str(ev, "event"))) == NULL) {
		*err = lc_errorf("bad_event", "unknown event kind");
		return -1;
	}
	for (i = 0; e->keys[i].key != NULL; i++) {
		jv v = lc_get(ev, e->keys[i].key);
		int ok = jv_get_kind(v) == JV_KIND_NULL ?
		    strcmp(e->keys[i].key, "name") != 0 :
		    (e->keys[i].kinds & (1u << jv_get_kind(v))) != 0;

		jv_free(v);
		if (!ok) {
			*err = lc_errorf("bad_event", "a \"%s\" event has a "
			    "bad \"%s\"", e->kind, e->keys[i].key);
			return -1;
		}
	}
	if (lc_str(ev, "at") == NULL) {
		*err = lc_errorf("bad_event", "a \"%s\" event has no \"at\" "
		    "time", e->kind);
		return -1;
	}
	return 0;
}

/* ---- the archive ---- */

jv
lc_session_archive(struct lc_ledger *l, jv rec, const char *reason,
    const char *by, char **warn)
{
	time_t now = lc_now(), start;
	jv err = jv_invalid(), extra = jv_object();
	enum lc_session_file gone[] = { LC_SESSION_KNOWN_HOSTS,
	    LC_SESSION_ENV };
	char ts[32], name[64];
	size_t i;

	*warn = NULL;
	snprintf(name, sizeof(name), "%s", lc_subject(rec));
	rec = jv_object_set(rec, jv_string("state"), jv_string("destroyed"));
	rec = jv_object_set(rec, jv_string("destroyed_at"),
	    jv_string(lc_time_fmt(now, ts, sizeof(ts))));
	rec = jv_object_delete(rec, jv_string("last_error"));
	rec = jv_object_delete(rec, jv_string("linode_status"));
	rec = jv_object_set(rec, jv_string("watch_warning"), jv_null());
	rec = lc_session_live(rec, now);
	if (lc_num(rec, "cost_usd", 0) <= 0 && lc_str(rec, "created_at") &&
	    lc_time_parse(lc_str(rec, "created_at"), &start) == 0)
		rec = jv_object_set(rec, jv_string("cost_usd"), jv_number(
		    lc_cost(lc_num(rec, "hourly_cost_usd", 0),
		    lc_num(rec, "monthly_cost_usd", 0), start, start + 1)));
	if (lc_ledger_archive(l, jv_copy(rec), &err) == -1) {
		jv_free(extra);
		jv_free(rec);
		return err;
	}
	for (i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		char *p = lc_session_path(l, name, gone[i]);

		unlink(p);
		free(p);
	}
	extra = jv_object_set(extra, jv_string("reason"), reason ?
	    jv_string(reason) : jv_null());
	extra = jv_object_set(extra, jv_string("by"), jv_string(by ? by :
	    lc_progname()));
	if (lc_session_event(l, "destroyed", rec, extra, &err) == -1)
		*warn = lc_error_message(err);
	jv_free(err);
	return rec;
}

/* ---- a group's nodes ---- */

jv
lc_session_node(jv rec, int i)
{
	jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes"), n = jv_null(),
	    ssh, out = jv_null();

	if (jv_get_kind(nodes) == JV_KIND_ARRAY && i >= 0 &&
	    i < jv_array_length(jv_copy(nodes)))
		n = jv_array_get(jv_copy(nodes), i);
	jv_free(nodes);
	jv_free(g);
	if (lc_str(n, "host") != NULL) {
		ssh = lc_get(rec, "ssh");
		if (jv_get_kind(ssh) != JV_KIND_OBJECT) {
			jv_free(ssh);
			ssh = jv_object();
		}
		out = jv_object_set(jv_copy(rec), jv_string("ssh"),
		    jv_object_set(ssh, jv_string("host"), lc_get(n, "host")));
		out = jv_object_set(out, jv_string("ipv4"), lc_get(n, "host"));
		if (lc_num(n, "linode_id", 0) > 0)
			out = jv_object_set(out, jv_string("linode_id"),
			    lc_get(n, "linode_id"));
	}
	jv_free(n);
	return out;
}
