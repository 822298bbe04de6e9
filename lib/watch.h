/*
 * watch: lc-watch's judgement, kept pure so it can be reasoned about and
 * tested on its own: a session record, one activity sample (or the fact
 * that none could be taken), the time and the limits go in; a decision,
 * its reason and the record fields to write back come out. No I/O here.
 *
 * Idle, exactly: a sample is active when vllm:num_requests_running or
 * vllm:num_requests_waiting is above 0, or when vllm:prompt_tokens_total +
 * vllm:generation_tokens_total differs from the previous sample's sum (a
 * drop means vLLM restarted, which is activity too). The idle time is now
 * minus the latest of last_activity_at, ready_at and created_at
 * (`lc-sessions extend` sets last_activity_at).
 */
#ifndef LC_WATCH_H
#define LC_WATCH_H

#include <stddef.h>
#include <time.h>

#include <jv.h>

/* Warnings start this long before a deadline or a spent budget. */
#define LC_WATCH_WARN_S	600

/* The three numbers lc-watch reads from vLLM's /metrics. */
struct lc_watch_metrics {
	double	running;	/* vllm:num_requests_running, summed */
	double	waiting;	/* vllm:num_requests_waiting, summed */
	double	tokens;		/* prompt + generation tokens, summed */
};

/* What one look at the VM found. */
struct lc_watch_sample {
	int	 reached;	/* SSH worked (else: unreachable) */
	int	 have_metrics;	/* /metrics answered and parsed */
	int	 health;	/* HTTP status of /health; 0: no answer */
	struct lc_watch_metrics m;
	const char *why;	/* why not reached / no metrics (borrowed) */
};

/* The limits that apply when the record does not carry its own. */
struct lc_watch_limits {
	long	 idle_timeout_s;	/* record: idle_timeout_s */
	long	 ready_timeout_s;	/* record: ready_timeout_s */
	long	 unreachable_timeout_s;	/* record: unreachable_timeout_s */
	double	 budget_usd;		/* record: budget_usd; < 0: none */
	long	 period_s;		/* how often lc-watch runs (60) */
	long	 orphan_grace_s;	/* LC_ORPHAN_GRACE */
	/* Per session, when not ready: no process is bringing it up (no
	 * holder of its lib/session "up" lock): a start that stopped; or
	 * one is (lc-create, lc-heal, a model switch): its own limits
	 * apply, only the deadline and the budget here. */
	int	 unattended;
	int	 attended;
};

/*
 * Parse Prometheus text exposition: sums each metric over its series
 * (labels ignored, escapes in label values honoured), takes any float
 * form ("3", "3.0", "1.2e+03"), skips comments, _created series and
 * metrics it does not need, and accepts the counters with or without
 * "_total" (vLLM V0 and V1 name them alike). 0, or -1 when neither gauge
 * is present (not vLLM's /metrics).
 */
int	lc_watch_parse_metrics(const char *text, size_t len,
	    struct lc_watch_metrics *m);

/*
 * Decide on one live session (not destroyed, instance known to exist).
 * Borrows rec; s may be NULL when no sample was taken because the
 * session is not ready yet. Returns an owned object:
 *   decision   "keep" | "idle" | "deadline" | "budget" | "unready" |
 *              "interrupted" (not ready, unattended, older than
 *              orphan_grace_s) | "unhealthy"
 *   reason     words for people
 *   idle_s     seconds idle (null when not known)
 *   cost_usd   cost accrued by now
 *   warning    "deadline in 8m" / "budget spent in 9m", or null
 *   update     the fields to merge into the stored record:
 *              activity_sample {running, waiting, tokens, at},
 *              last_activity_at, unreachable_since, watch_warning
 */
jv	lc_watch_decide(jv rec, const struct lc_watch_sample *s, time_t now,
	    const struct lc_watch_limits *lim);

/*
 * An orphan: an instance with this ledger's owner tag and no readable
 * session (a create killed before its save, a damaged record). It is kept
 * while younger than grace_s or while the sample (NULL: not reachable)
 * shows requests running or waiting; else the decision is "orphan", one
 * that destroys. Returns an owned verdict {decision, reason, idle_s,
 * cost_usd: null, warning: null}. Pure: no I/O.
 */
jv	lc_watch_decide_orphan(double id, time_t created, time_t now,
	    long grace_s, const struct lc_watch_sample *s);

/*
 * Merge an update from lc_watch_decide into the stored record, keeping
 * whatever a concurrent command wrote meanwhile: last_activity_at takes
 * the later of the two. Consumes both; returns the record.
 */
jv	lc_watch_merge(jv stored, jv update);

/* Does this decision call for deleting the VM? */
int	lc_watch_destroys(const char *decision);

#endif
