/* http: requests to the Linode API over libcurl, with retries. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "compat.h"
#include "http.h"
#include "lc.h"

#define BACKOFF_BASE_MS	250
#define BACKOFF_CAP_MS	8000
#define WAIT_CAP_MS	120000	/* never sleep longer than this at once */

struct lc_http_gate {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 free;
};

struct lc_http {
	CURL		*easy;
	struct lc_http_gate *gate;
	char		*base;
	char		*auth;		/* "Authorization: Bearer ..." */
	char		*agent;
	long		 timeout_ms, connect_ms;
	int		 retries;
	long long	 pause_until;	/* monotonic ms: quota used up */
	char		 errbuf[CURL_ERROR_SIZE];
};

/* What one try's headers said. */
struct hdrs {
	long	 retry_after_s;		/* -1: none */
	long long reset_epoch;		/* X-RateLimit-Reset, -1: none */
	long	 remaining;		/* X-RateLimit-Remaining, -1: none */
	int	 maintenance;
};

struct lc_http_gate *
lc_http_gate_new(int n)
{
	struct lc_http_gate *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->free = n > 0 ? n : 1;
	return g;
}

void
lc_http_gate_free(struct lc_http_gate *g)
{
	if (g == NULL)
		return;
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
	free(g);
}

static void
gate_enter(struct lc_http_gate *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->mu);
	while (g->free == 0)
		pthread_cond_wait(&g->cv, &g->mu);
	g->free--;
	pthread_mutex_unlock(&g->mu);
}

static void
gate_leave(struct lc_http_gate *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->mu);
	g->free++;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

int
lc_http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

struct lc_http *
lc_http_new(const struct lc_http_opts *o)
{
	struct lc_http *h = calloc(1, sizeof(*h));
	struct lc_buf b = LC_BUF_INIT;

	if (h == NULL)
		return NULL;
	h->base = strdup(o->base ? o->base : "https://api.linode.com/v4");
	if (o->token != NULL && lc_buf_printf(&b, "Authorization: Bearer %s",
	    o->token) == 0)
		h->auth = b.data;
	h->agent = strdup("linode-coder/" LC_VERSION);
	h->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
	h->connect_ms = o->connect_ms > 0 ? o->connect_ms : 10000;
	h->retries = o->retries >= 0 ? o->retries : 0;
	h->gate = o->gate;
	h->easy = curl_easy_init();
	if (h->easy == NULL || h->base == NULL || h->agent == NULL ||
	    (o->token != NULL && h->auth == NULL)) {
		lc_http_free(h);
		return NULL;
	}
	/* No trailing slash: paths start with one. */
	while (*h->base && h->base[strlen(h->base) - 1] == '/')
		h->base[strlen(h->base) - 1] = '\0';
	return h;
}

void
lc_http_free(struct lc_http *h)
{
	if (h == NULL)
		return;
	if (h->easy != NULL)
		curl_easy_cleanup(h->easy);
	if (h->auth != NULL) {	/* the token: leave no copy in freed memory */
		memset(h->auth, 0, strlen(h->auth));
		free(h->auth);
	}
	free(h->base);
	free(h->agent);
	free(h);
}

void
lc_http_resp_free(struct lc_http_resp *r)
{
	lc_buf_free(&r->body);
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct lc_buf *b = arg;

	return lc_buf_add(b, p, size * n) == 0 ? size * n : 0;
}

/* Header value after "Name:" when line is that header, else NULL. */
static const char *
header_value(const char *line, size_t len, const char *name, char *out,
    size_t outlen)
{
	size_t n = strlen(name), i = 0;

	if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	line += n + 1;
	len -= n + 1;
	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	while (i + 1 < outlen && i < len && line[i] != '\r' && line[i] != '\n') {
		out[i] = line[i];
		i++;
	}
	out[i] = '\0';
	return out;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct hdrs *h = arg;
	size_t len = size * n;
	char v[64];

	if (header_value(p, len, "Retry-After", v, sizeof(v)) != NULL &&
	    isdigit((unsigned char)v[0]))
		h->retry_after_s = strtol(v, NULL, 10);
	else if (header_value(p, len, "X-RateLimit-Reset", v, sizeof(v)) &&
	    isdigit((unsigned char)v[0]))
		h->reset_epoch = strtoll(v, NULL, 10);
	else if (header_value(p, len, "X-RateLimit-Remaining", v, sizeof(v)) &&
	    isdigit((unsigned char)v[0]))
		h->remaining = strtol(v, NULL, 10);
	else if (header_value(p, len, "X-Maintenance-Mode", v, sizeof(v)))
		h->maintenance = 1;
	return len;
}

long
lc_http_backoff_ms(int n)
{
	long d = BACKOFF_BASE_MS;
	unsigned r = 0;

	while (n-- > 0 && d < BACKOFF_CAP_MS)
		d *= 2;
	if (d > BACKOFF_CAP_MS)
		d = BACKOFF_CAP_MS;
	if (lc_random_bytes(&r, sizeof(r)) == -1)
		r = (unsigned)lc_mono_ms();
	return d / 2 + (long)(r % (unsigned)(d / 2 + 1));	/* [d/2, d] */
}

/* One try. Returns the CURLcode; r->status and r->body are filled. */
static int
perform(struct lc_http *h, const char *method, const char *url,
    const char *filter, const char *body, struct hdrs *hd,
    struct lc_http_resp *r)
{
	struct curl_slist *l = NULL, *t;
	char xf[4096];
	CURL *e = h->easy;
	CURLcode rc;
	int ok = 1;

	curl_easy_reset(e);
	h->errbuf[0] = '\0';
	lc_buf_reset(&r->body);
	r->status = 0;
	if (h->auth != NULL && (t = curl_slist_append(l, h->auth)) != NULL)
		l = t;
	else if (h->auth != NULL)
		ok = 0;
	if ((t = curl_slist_append(l, "Accept: application/json")) != NULL)
		l = t;
	if (body != NULL && (t = curl_slist_append(l,
	    "Content-Type: application/json")) != NULL)
		l = t;
	if (filter != NULL) {
		if (snprintf(xf, sizeof(xf), "X-Filter: %s", filter) >=
		    (int)sizeof(xf))
			ok = 0;
		else if ((t = curl_slist_append(l, xf)) != NULL)
			l = t;
	}
	if (!ok) {
		curl_slist_free_all(l);
		snprintf(h->errbuf, sizeof(h->errbuf), "request too large or "
		    "out of memory");
		return CURLE_OUT_OF_MEMORY;
	}
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(e, CURLOPT_USERAGENT, h->agent);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, hd);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	if (body != NULL) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	gate_enter(h->gate);
	rc = curl_easy_perform(e);
	gate_leave(h->gate);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(l);
	r->curl_code = (int)rc;
	r->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
	if (rc != CURLE_OK) {
		r->status = 0;
		snprintf(r->errbuf, sizeof(r->errbuf), "%s", h->errbuf[0] ?
		    h->errbuf : curl_easy_strerror(rc));
	}
	return (int)rc;
}

/* Did the server surely not act on the request? */
static int
not_processed(long status, const struct lc_buf *body)
{
	return status == 429 || (status == 400 && body->data != NULL &&
	    strstr(body->data, "Linode busy.") != NULL);
}

/* The pause before the next try (ms), or -1: don't retry. */
static long
retry_wait(struct lc_http *h, int rc, int flags, const struct hdrs *hd,
    const struct lc_http_resp *r, int n)
{
	long s = r->status;
	long long wait;

	if (n >= h->retries)
		return -1;
	if (rc != CURLE_OK) {
		/* Nothing sent yet: safe whatever the method. */
		if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
			return lc_http_backoff_ms(n);
		return (flags & LC_HTTP_ONCE) ? -1 : lc_http_backoff_ms(n);
	}
	if (!not_processed(s, &r->body)) {
		if ((flags & LC_HTTP_ONCE) || !(s == 408 || (s >= 500 &&
		    s != 501 && !(s == 503 && hd->maintenance))))
			return -1;
	}
	wait = lc_http_backoff_ms(n);
	if (hd->retry_after_s >= 0)
		wait = hd->retry_after_s * 1000LL;
	else if (s == 429 && hd->reset_epoch > 0) {
		wait = (hd->reset_epoch - (long long)time(NULL)) * 1000LL;
		if (wait < lc_http_backoff_ms(n))
			wait = lc_http_backoff_ms(n);
	}
	return wait > WAIT_CAP_MS ? WAIT_CAP_MS : (long)wait;
}

int
lc_http_call(struct lc_http *h, const char *method, const char *path,
    const char *filter, const char *body, int flags, struct lc_http_resp *r)
{
	struct lc_buf url = LC_BUF_INIT;
	int rc, n;

	memset(r, 0, sizeof(*r));
	if (lc_buf_printf(&url, "%s%s", h->base, path) == -1) {
		snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
		return -1;
	}
	for (n = 0;; n++) {
		struct hdrs hd = { -1, -1, -1, 0 };
		long wait;
		long long now = lc_mono_ms();

		if (h->pause_until > now)
			lc_sleep_ms((long)(h->pause_until - now));
		h->pause_until = 0;
		rc = perform(h, method, url.data, filter, body, &hd, r);
		r->tries = n + 1;
		/* The window's quota is used up: wait for its reset first. */
		if (rc == CURLE_OK && hd.remaining == 0 && hd.reset_epoch > 0) {
			long long d = (hd.reset_epoch - (long long)time(NULL)) *
			    1000LL;

			if (d > 0)
				h->pause_until = lc_mono_ms() +
				    (d > WAIT_CAP_MS ? WAIT_CAP_MS : d);
		}
		if ((wait = retry_wait(h, rc, flags, &hd, r, n)) < 0)
			break;
		lc_sleep_ms(wait);
	}
	lc_buf_free(&url);
	return rc == CURLE_OK ? 0 : -1;
}
