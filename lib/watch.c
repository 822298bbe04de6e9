/* watch: parse vLLM's activity metrics and decide a session's fate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "lc.h"
#include "lctime.h"
#include "watch.h"

/* The metrics we read; a counter may come with or without "_total". */
enum { M_RUNNING, M_WAITING, M_PROMPT, M_GEN, M_NONE };

static int
metric_of(const char *name, size_t n)
{
	static const struct { const char *name; int id; } tab[] = {
		{ "vllm:num_requests_running", M_RUNNING },
		{ "vllm:num_requests_waiting", M_WAITING },
		{ "vllm:prompt_tokens_total", M_PROMPT },
		{ "vllm:prompt_tokens", M_PROMPT },
		{ "vllm:generation_tokens_total", M_GEN },
		{ "vllm:generation_tokens", M_GEN },
	};
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i].name) == n &&
		    memcmp(tab[i].name, name, n) == 0)
			return tab[i].id;
	return M_NONE;
}

/* Skip a {label="value",...} block; p is at '{'. NULL if unterminated. */
static const char *
skip_labels(const char *p, const char *end)
{
	int quoted = 0;

	for (p++; p < end; p++) {
		if (quoted && *p == '\\')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '}')
			return p + 1;
	}
	return NULL;
}

/* One sample line into sums[]; seen[] marks the metrics found. */
static void
parse_line(const char *p, const char *end, double sums[], int seen[])
{
	const char *name = p;
	char num[64];
	size_t n;
	double v;
	int id;

	while (p < end && *p != '{' && *p != ' ' && *p != '\t')
		p++;
	if ((id = metric_of(name, (size_t)(p - name))) == M_NONE)
		return;
	if (p < end && *p == '{' && (p = skip_labels(p, end)) == NULL)
		return;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	for (n = 0; p + n < end && p[n] != ' ' && p[n] != '\t' &&
	    n < sizeof(num) - 1; n++)
		num[n] = p[n];
	num[n] = '\0';
	v = strtod(num, (char **)&name);
	if (n == 0 || *name != '\0' || isnan(v) || isinf(v))
		return;
	sums[id] += v;
	seen[id] = 1;
}

int
lc_watch_parse_metrics(const char *text, size_t len,
    struct lc_watch_metrics *m)
{
	const char *p = text, *end = text + len, *eol;
	double sums[M_NONE] = { 0 };
	int seen[M_NONE] = { 0 };

	while (p < end) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		while (p < eol && (*p == ' ' || *p == '\t'))
			p++;
		if (p < eol && *p != '#')
			parse_line(p, eol > p && eol[-1] == '\r' ? eol - 1 :
			    eol, sums, seen);
		p = eol + 1;
	}
	m->running = sums[M_RUNNING];
	m->waiting = sums[M_WAITING];
	m->tokens = sums[M_PROMPT] + sums[M_GEN];
	return seen[M_RUNNING] || seen[M_WAITING] ? 0 : -1;
}

/* A time field, or 0 when absent or bad. Borrows rec. */
static time_t
tfield(jv rec, const char *key)
{
	const char *s = lc_str(rec, key);
	time_t t;

	return s != NULL && lc_time_parse(s, &t) == 0 ? t : 0;
}

static char *
fmt_t(time_t t, char *buf, size_t len)
{
	return lc_time_fmt(t, buf, len);
}

/* The session's cost had it run until t. Borrows rec. */
static double
cost_at(jv rec, time_t t)
{
	time_t start = tfield(rec, "created_at");

	if (start == 0 || t <= start)
		return 0;
	return lc_round_cents(lc_cost(lc_num(rec, "hourly_cost_usd", 0),
	    lc_num(rec, "monthly_cost_usd", 0), start, t));
}

/* What one decision needs while it is being made. */
struct judge {
	jv		 rec;		/* borrowed */
	time_t		 now;
	const struct lc_watch_limits *lim;
	long		 idle_to, ready_to, unreach_to;
	double		 budget;	/* < 0: none */
	time_t		 created, since;	/* since: idle clock start */
	jv		 update;
	char		 why[512];
};

static const char *
dur(long s, char *buf, size_t len)
{
	return lc_duration_fmt(s < 0 ? 0 : s, buf, len);
}

/* "deadline in 8m", "budget $2.00 spent in 5m", or null. */
static jv
warning(struct judge *j)
{
	time_t dl = tfield(j->rec, "deadline_at"), t;
	char d[32], w[128];

	if (dl != 0 && dl > j->now && dl - j->now <= LC_WATCH_WARN_S) {
		snprintf(w, sizeof(w), "deadline in %s",
		    dur((long)(dl - j->now), d, sizeof(d)));
		return jv_string(w);
	}
	if (j->budget < 0)
		return jv_null();
	for (t = j->now; t <= j->now + LC_WATCH_WARN_S; t += 30)
		if (cost_at(j->rec, t) > j->budget + 1e-9) {
			snprintf(w, sizeof(w), "budget $%.2f spent in %s",
			    j->budget, dur((long)(t - j->now), d, sizeof(d)));
			return jv_string(w);
		}
	return jv_null();
}

/* Limits that are always decided first, under load or not. */
static const char *
hard_limits(struct judge *j)
{
	time_t dl = tfield(j->rec, "deadline_at");
	double c = cost_at(j->rec, j->now);
	double next = cost_at(j->rec, j->now + j->lim->period_s);
	char ts[32];

	if (dl != 0 && j->now >= dl) {
		snprintf(j->why, sizeof(j->why), "deadline %s passed",
		    fmt_t(dl, ts, sizeof(ts)));
		return "deadline";
	}
	if (j->budget >= 0 && next > j->budget + 1e-9) {
		if (c > j->budget + 1e-9)
			snprintf(j->why, sizeof(j->why), "cost $%.2f is past "
			    "the budget $%.2f", c, j->budget);
		else
			snprintf(j->why, sizeof(j->why), "the next billed hour "
			    "would take the cost to $%.2f, past the budget "
			    "$%.2f", next, j->budget);
		return "budget";
	}
	return NULL;
}

/* A session that is not ready yet (s is not consulted). */
static const char *
not_ready(struct judge *j)
{
	const char *state = lc_str(j->rec, "state");
	jv heal = lc_get(j->rec, "heal"), last = jv_null();
	long age = (long)(j->now - j->created);
	const char *res;
	char a[32], b[32];
	int n;

	if (jv_get_kind(heal) == JV_KIND_ARRAY &&
	    (n = jv_array_length(jv_copy(heal))) > 0)
		last = jv_array_get(jv_copy(heal), n - 1);
	jv_free(heal);
	res = lc_str(last, "result");
	if (res != NULL && (strcmp(res, "pending") == 0 ||
	    strcmp(res, "running") == 0) &&
	    j->now - tfield(last, "at") < j->ready_to) {
		snprintf(j->why, sizeof(j->why), "state %s; lc-heal round "
		    "%.0f is under way", state ? state : "unknown",
		    lc_num(last, "round", 0));
		jv_free(last);
		return "keep";
	}
	jv_free(last);
	if (j->lim->attended) {
		snprintf(j->why, sizeof(j->why), "starting (state %s): a "
		    "running lc-create, lc-heal or model switch is bringing "
		    "it up", state ? state : "unknown");
		return "keep";
	}
	if (j->created != 0 && age >= j->ready_to) {
		snprintf(j->why, sizeof(j->why), "not ready %s after creation "
		    "(state %s; ready timeout %s)", dur(age, a, sizeof(a)),
		    state ? state : "unknown", dur(j->ready_to, b, sizeof(b)));
		return "unready";
	}
	if (j->lim->unattended && j->created != 0 &&
	    age >= j->lim->orphan_grace_s) {
		snprintf(j->why, sizeof(j->why), "not ready (state %s) and no "
		    "process is bringing it up: the start stopped; made %s "
		    "ago (orphan grace %s)", state ? state : "unknown",
		    dur(age, a, sizeof(a)), dur(j->lim->orphan_grace_s, b,
		    sizeof(b)));
		return "interrupted";
	}
	snprintf(j->why, sizeof(j->why), "starting (state %s); unready "
	    "after %s", state ? state : "unknown",
	    dur(j->ready_to - age, a, sizeof(a)));
	return "keep";
}

/* SSH failed: not activity, not idleness, until unreach_to has passed. */
static const char *
unreachable(struct judge *j, const struct lc_watch_sample *s)
{
	time_t since = tfield(j->rec, "unreachable_since");
	char a[32], b[32], ts[32];
	long gone;

	if (since == 0 || since > j->now)
		since = j->now;
	j->update = jv_object_set(j->update, jv_string("unreachable_since"),
	    jv_string(fmt_t(since, ts, sizeof(ts))));
	gone = (long)(j->now - since);
	if (gone >= j->unreach_to) {
		snprintf(j->why, sizeof(j->why), "unreachable for %s (%s); "
		    "counts as idle after %s", dur(gone, a, sizeof(a)),
		    s->why ? s->why : "no answer",
		    dur(j->unreach_to, b, sizeof(b)));
		return "idle";
	}
	snprintf(j->why, sizeof(j->why), "unreachable for %s (%s); counts as "
	    "idle after %s", dur(gone, a, sizeof(a)),
	    s->why ? s->why : "no answer", dur(j->unreach_to, b, sizeof(b)));
	return "keep";
}

/* Is the sample activity? Says why in j->why. Borrows prev. */
static int
active(struct judge *j, const struct lc_watch_metrics *m, jv prev)
{
	double before = lc_num(prev, "tokens", -1);

	if (m->running > 0 || m->waiting > 0) {
		snprintf(j->why, sizeof(j->why), "active: %.0f running, %.0f "
		    "waiting", m->running, m->waiting);
		return 1;
	}
	if (before < 0) {
		/* No earlier sample: tokens already counted were spent at
		 * a time we cannot know, so they count as activity now. */
		if (m->tokens > 0) {
			snprintf(j->why, sizeof(j->why), "active: first "
			    "sample, %.0f tokens already served", m->tokens);
			return 1;
		}
		return 0;
	}
	if (m->tokens < before) {
		snprintf(j->why, sizeof(j->why), "active: token counters "
		    "dropped from %.0f to %.0f (vLLM restarted)", before,
		    m->tokens);
		return 1;
	}
	if (m->tokens > before) {
		snprintf(j->why, sizeof(j->why), "active: %.0f tokens since "
		    "the last sample", m->tokens - before);
		return 1;
	}
	return 0;
}

/* A sample was taken (SSH worked). */
static const char *
sampled(struct judge *j, const struct lc_watch_sample *s)
{
	jv prev = lc_get(j->rec, "activity_sample"), a;
	char ts[32], d1[32], d2[32];
	long idle;

	j->update = jv_object_set(j->update, jv_string("unreachable_since"),
	    jv_null());
	if (s->have_metrics) {
		fmt_t(j->now, ts, sizeof(ts));
		a = jv_object_set(jv_object(), jv_string("running"),
		    jv_number(s->m.running));
		a = jv_object_set(a, jv_string("waiting"),
		    jv_number(s->m.waiting));
		a = jv_object_set(a, jv_string("tokens"),
		    jv_number(s->m.tokens));
		a = jv_object_set(a, jv_string("at"), jv_string(ts));
		j->update = jv_object_set(j->update,
		    jv_string("activity_sample"), a);
		if (active(j, &s->m, prev)) {
			jv_free(prev);
			j->since = j->now;
			j->update = jv_object_set(j->update,
			    jv_string("last_activity_at"), jv_string(ts));
			return "keep";
		}
	}
	jv_free(prev);
	idle = (long)(j->now - j->since);
	if (idle >= j->idle_to) {
		snprintf(j->why, sizeof(j->why), "idle %s: no request running "
		    "or waiting and no new tokens (idle timeout %s)",
		    dur(idle, d1, sizeof(d1)), dur(j->idle_to, d2, sizeof(d2)));
		return "idle";
	}
	if (!s->have_metrics || s->health != 200) {
		if (s->health != 0 && s->health != 200)
			snprintf(j->why, sizeof(j->why), "vLLM's /health "
			    "answered HTTP %d", s->health);
		else
			snprintf(j->why, sizeof(j->why), "vLLM does not "
			    "answer on the VM (%s)", s->why ? s->why :
			    "no /metrics");
		return "unhealthy";
	}
	snprintf(j->why, sizeof(j->why), "idle %s of %s",
	    dur(idle, d1, sizeof(d1)), dur(j->idle_to, d2, sizeof(d2)));
	return "keep";
}

static long
limit(jv rec, const char *key, long def)
{
	double v = lc_num(rec, key, -1);

	return v >= 0 ? (long)v : def;
}

jv
lc_watch_decide(jv rec, const struct lc_watch_sample *s, time_t now,
    const struct lc_watch_limits *lim)
{
	struct judge j = { .rec = rec, .now = now, .lim = lim };
	const char *state = lc_str(rec, "state"), *d;
	time_t t;
	jv out, warn;

	j.idle_to = limit(rec, "idle_timeout_s", lim->idle_timeout_s);
	j.ready_to = limit(rec, "ready_timeout_s", lim->ready_timeout_s);
	j.unreach_to = limit(rec, "unreachable_timeout_s",
	    lim->unreachable_timeout_s);
	j.budget = lc_num(rec, "budget_usd", lim->budget_usd);
	j.created = tfield(rec, "created_at");
	j.since = j.created;
	if ((t = tfield(rec, "ready_at")) > j.since)
		j.since = t;
	if ((t = tfield(rec, "last_activity_at")) > j.since)
		j.since = t;
	j.update = jv_object();
	warn = warning(&j);
	if ((d = hard_limits(&j)) == NULL) {
		if (state == NULL || strcmp(state, "ready") != 0 || s == NULL)
			d = not_ready(&j);
		else if (!s->reached)
			d = unreachable(&j, s);
		else
			d = sampled(&j, s);
	}
	j.update = jv_object_set(j.update, jv_string("watch_warning"),
	    jv_copy(warn));
	out = jv_object_set(jv_object(), jv_string("decision"), jv_string(d));
	out = jv_object_set(out, jv_string("reason"), jv_string(j.why));
	out = jv_object_set(out, jv_string("idle_s"), j.since != 0 ?
	    jv_number(now > j.since ? (double)(now - j.since) : 0) :
	    jv_null());
	out = jv_object_set(out, jv_string("cost_usd"),
	    jv_number(cost_at(rec, now)));
	out = jv_object_set(out, jv_string("warning"), warn);
	return jv_object_set(out, jv_string("update"), j.update);
}

jv
lc_watch_merge(jv stored, jv update)
{
	if (jv_get_kind(stored) != JV_KIND_OBJECT ||
	    jv_get_kind(update) != JV_KIND_OBJECT) {
		jv_free(update);
		return stored;
	}
	jv_object_foreach(update, k, v) {
		const char *key = jv_string_value(k);
		time_t old = 0, new = 0;

		if (strcmp(key, "last_activity_at") == 0 &&
		    (old = tfield(stored, key)) != 0 &&
		    jv_get_kind(v) == JV_KIND_STRING &&
		    lc_time_parse(jv_string_value(v), &new) == 0 && old > new) {
			jv_free(k);
			jv_free(v);
			continue;	/* an extend since our sample wins */
		}
		stored = jv_object_set(stored, k, v);
	}
	jv_free(update);
	return stored;
}

int
lc_watch_destroys(const char *d)
{
	return strcmp(d, "idle") == 0 || strcmp(d, "deadline") == 0 ||
	    strcmp(d, "budget") == 0 || strcmp(d, "unready") == 0 ||
	    strcmp(d, "orphan") == 0 || strcmp(d, "interrupted") == 0;
}

jv
lc_watch_decide_orphan(double id, time_t created, time_t now, long grace_s,
    const struct lc_watch_sample *s)
{
	long age = now > created ? (long)(now - created) : 0;
	char g[32], a[32], ts[32];
	const char *d = "orphan";
	jv reason;

	lc_duration_fmt(grace_s, g, sizeof(g));
	lc_duration_fmt(age, a, sizeof(a));
	if (age < grace_s) {
		d = "keep";
		reason = jv_string_fmt("orphan: VM %.0f carries this ledger's "
		    "owner tag but no readable session; deleted at %s unless "
		    "it serves requests (LC_ORPHAN_GRACE %s)", id,
		    lc_time_fmt(created + grace_s, ts, sizeof(ts)), g);
	} else if (s != NULL && s->reached && s->have_metrics &&
	    s->m.running + s->m.waiting > 0) {
		d = "keep";
		reason = jv_string_fmt("orphan: VM %.0f has no readable "
		    "session but serves requests now", id);
	} else
		reason = jv_string_fmt("orphan: VM %.0f carries this ledger's "
		    "owner tag but no readable session, and has served "
		    "nothing seen in %s since it was made (LC_ORPHAN_GRACE %s)",
		    id, a, g);
	return JV_OBJECT(jv_string("decision"), jv_string(d),
	    jv_string("reason"), reason, jv_string("idle_s"),
	    jv_number((double)age), jv_string("cost_usd"), jv_null(),
	    jv_string("warning"), jv_null());
}
