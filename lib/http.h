/*
 * http: the libcurl transport for the Linode API. One handle per thread;
 * each carries the base URL, the bearer token (only ever in a request
 * header: never logged, never in a message), timeouts and the retry
 * policy: 408, 429, 5xx other than 501 and maintenance, and 400 "Linode
 * busy." are retried with exponential backoff and jitter, honouring
 * Retry-After and X-RateLimit-Reset. A request marked LC_HTTP_ONCE
 * (a create) is retried only where the server surely did nothing
 * (429, "Linode busy."); the caller decides what else is safe.
 */
#ifndef LC_HTTP_H
#define LC_HTTP_H

#include "lc.h"

enum {
	LC_HTTP_ONCE = 1	/* not idempotent: no retry after a 5xx */
};

/* A gate: at most n requests in flight at once, across handles and
 * threads (sleeps between retries happen outside it). */
struct lc_http_gate;
struct lc_http_gate *lc_http_gate_new(int n);
void	lc_http_gate_free(struct lc_http_gate *g);

struct lc_http_opts {
	const char	*base;		/* "https://api.linode.com/v4" */
	const char	*token;		/* NULL: no Authorization header */
	long		 timeout_ms;	/* whole request; 0: 30 s */
	long		 connect_ms;	/* 0: 10 s */
	int		 retries;	/* extra tries after the first */
	struct lc_http_gate *gate;	/* NULL: no bound */
};

/* One finished exchange. Free with lc_http_resp_free. */
struct lc_http_resp {
	long		 status;	/* 0: no answer (transport error) */
	int		 curl_code;	/* CURLcode of the last try */
	int		 timed_out;	/* the last try ran out of time */
	int		 tries;
	struct lc_buf	 body;
	char		 errbuf[256];	/* libcurl's words for a failure */
};

struct lc_http;

/* libcurl's global set-up; call once, before any thread starts. 0/-1. */
int	lc_http_global_init(void);
/* A handle (copies what it needs from o), or NULL when out of memory. */
struct lc_http *lc_http_new(const struct lc_http_opts *o);
void	lc_http_free(struct lc_http *h);
/*
 * method path (relative to the base; may carry a query), optional X-Filter
 * JSON and body. Fills *r (always; free it). Returns 0 when an answer came
 * (any status), -1 on a transport failure after the retries allowed.
 */
int	lc_http_call(struct lc_http *h, const char *method, const char *path,
	    const char *filter, const char *body, int flags,
	    struct lc_http_resp *r);
void	lc_http_resp_free(struct lc_http_resp *r);
/* The delay before retry number n (from 0) with jitter, in ms. */
long	lc_http_backoff_ms(int n);

#endif
