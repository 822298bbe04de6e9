/*
 * lc-bench: load an OpenAI-compatible endpoint with streaming chat
 * completions and measure it: time to first token, inter-token latency,
 * time per output token, end-to-end latency and throughput, over a sweep
 * of concurrency levels (a closed loop) or of Poisson arrival rates (an
 * open loop). One NDJSON record per level; then, where expected figures
 * are known, one summary record that judges the endpoint against them.
 *
 * One thread drives every stream through libcurl's multi interface. The
 * server-sent events are parsed in the write callback as they arrive: a
 * content chunk is found by a scan, not a JSON parse, and only the final
 * usage chunk is parsed, so the client costs little per token.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jv.h>

#include "compat.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "opts.h"
#include "preset.h"
#include "ready.h"
#include "rec.h"
#include "remote.h"

static const struct lc_opt opts[] = {
	{ 'c', "concurrency", "list", "closed loop: this many requests in "
	  "flight, one level each (default 1,4,16,64)" },
	{ 'r', "rate", "list", "open loop: Poisson arrivals at these "
	  "requests/s, one level each" },
	{ 'N', "requests", "count", "measured requests per level (default: 4 "
	  "per stream, at least 16)" },
	{ 'w', "warmup", "count", "unmeasured requests before each level "
	  "(default 1)" },
	{ 'i', "input-tokens", "count", "prompt length, about (default 512)" },
	{ 'M', "max-tokens", "count", "tokens each reply must have (default "
	  "256)" },
	{ 't', "timeout", "seconds", "a stream silent this long fails as "
	  "timeout (default 60)" },
	{ 's', "seed", "number", "seed of the Poisson arrivals (default 1)" },
	{ 'u', "url", "url", "the endpoint's base, e.g. "
	  "http://127.0.0.1:8000/v1 (instead of a session)" },
	{ 'm', "model", "name", "the model to ask for (with -u; default "
	  "coder)" },
	{ 'k', "api-key-file", "file", "read the API key from this file (with "
	  "-u)" },
	{ 'p', "preset", "name", "judge against this preset's expected "
	  "figures" },
	{ 'e', "expect-tokens-per-s", "rate", "judge against this "
	  "single-stream output rate" },
	{ 'E', "expect-ttft-ms", "ms", "judge against this time to first "
	  "token" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "each failed request on stderr" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-bench",
	.summary = "lc-bench: load an OpenAI-compatible endpoint and measure "
	    "it",
	.operands = "[name ...]",
	.after = "Without -u: the sessions named, else records from stdin, "
	    "else the current\nsession. The API key comes from the session's "
	    "env file, or with -u from -k,\n$VLLM_API_KEY or $OPENAI_API_KEY; "
	    "never from the command line.\nSee lc-bench(1).\n",
	.opts = opts
};

static const char *usage_str;

#define MAX_LEVELS	32
#define MAX_STREAMS	4096
#define SLOW_RATIO	0.8

/* What was asked for. */
struct conf {
	double	 levels[MAX_LEVELS];	/* concurrencies or rates */
	int	 nlevels;
	int	 open_loop;		/* -r: levels are rates */
	long	 requests;		/* -N; 0: by level */
	long	 warmup;
	long	 input_tokens, max_tokens;
	long	 timeout_s;
	unsigned long long seed;
	const char *url, *model, *key_file, *preset;
	double	 expect_tps, expect_ttft_ms;	/* 0: not given */
};

/* A growable array of doubles: one allocation per doubling, never per
 * token. */
struct dvec {
	double	*v;
	size_t	 n, cap;
};

static void
dvec_add(struct dvec *d, double x)
{
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 256;
		if ((d->v = realloc(d->v, d->cap * sizeof(*d->v))) == NULL)
			lc_fatal("out of memory");
	}
	d->v[d->n++] = x;
}

/* One level's measurements. */
struct stats {
	struct dvec ttft, itl, tpot, e2e;
	long	 requests, errors, in_tokens, out_tokens, ok;
	long	 connect_errors;
	char	 connect_msg[CURL_ERROR_SIZE + 64];
	jv	 kinds;			/* {"http_500": 2, ...} */
	double	 t_start, t_end;
};

/* One request in flight. */
struct stream {
	CURL	*easy;
	struct stats *st;	/* NULL: warm-up, not measured */
	double	 t0, tfirst, tlast, tdone;
	long	 status;
	int	 done, chunks, busy;
	long	 out_tokens, in_tokens;	/* from usage; -1: none came */
	struct lc_buf line;	/* the part of an event line not yet ended */
	struct dvec gaps;	/* this request's gaps between content chunks */
	char	*body;
	char	 errbuf[CURL_ERROR_SIZE];
};

/* The endpoint under test. */
struct target {
	char	 chat_url[1100];
	char	*model;
	struct curl_slist *hdrs;	/* holds the key; wiped at the end */
	char	*key;
};

static struct conf conf;
static CURLM *multi;
static struct stream *pool;
static int npool;
static volatile sig_atomic_t stop;
static unsigned long long rng;
static long prompt_seq;

static void
on_signal(int sig)
{
	stop = sig;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: the arrivals are the same for the same seed everywhere. */
static double
uniform(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (double)((rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/*
 * Real coding requests, written for this tool, one a line in the source,
 * and code to pad a prompt out to the length asked for. Each request takes
 * the next task and starts the padding at a different place, so no two
 * prompts share a long prefix (a prefix cache would flatter TTFT).
 */
static const char *const tasks[] = {
	"Write a C function that parses an ISO 8601 date into a struct tm "
	    "and reports malformed input.",
	"Refactor this Python class so that its database access goes "
	    "through a repository interface that tests can replace.",
	"Explain why this Go program deadlocks, and fix it without a "
	    "global mutex.",
	"Add retry with exponential backoff and jitter to this HTTP client "
	    "in Rust; keep the public API unchanged.",
	"Write unit tests for this TypeScript function that merges two "
	    "sorted arrays, covering empty and duplicate inputs.",
	"Convert this shell script to POSIX sh: it must run under dash and "
	    "busybox ash.",
	"Find the off-by-one error in this binary search and prove the "
	    "fixed loop terminates.",
	"Review this SQL schema for a ledger of payments and suggest indexes "
	    "for the three queries below.",
	"Implement an LRU cache in Java with O(1) get and put, thread-safe "
	    "for many readers.",
	"Rewrite this recursive directory walk in C to use an explicit "
	    "stack, so deep trees cannot overflow.",
};

static const char code_text[] =
    "static int parse_line(const char *s, struct entry *e) { char *end; "
    "long n; if (s == NULL || *s == '\\0') return -1; errno = 0; "
    "n = strtol(s, &end, 10); if (errno != 0 || end == s || n < 0) "
    "return -1; e->id = (int)n; while (*end == ' ') end++; "
    "e->name = strdup(end); return e->name == NULL ? -1 : 0; } "
    "def load(path): with open(path, encoding='utf-8') as f: "
    "rows = [line.rstrip('\\n').split(',') for line in f if line.strip()] "
    "return {r[0]: int(r[1]) for r in rows if len(r) == 2} "
    "func (s *Server) handle(w http.ResponseWriter, r *http.Request) { "
    "ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second); "
    "defer cancel(); item, err := s.store.Get(ctx, r.URL.Query().Get(\"id\")); "
    "if err != nil { http.Error(w, err.Error(), http.StatusNotFound); "
    "return }; json.NewEncoder(w).Encode(item) } "
    "fn merge(a: &[i32], b: &[i32]) -> Vec<i32> { let mut out = "
    "Vec::with_capacity(a.len() + b.len()); let (mut i, mut j) = (0, 0); "
    "while i < a.len() && j < b.len() { if a[i] <= b[j] { out.push(a[i]); "
    "i += 1; } else { out.push(b[j]); j += 1; } } out.extend_from_slice(&a[i..]); "
    "out.extend_from_slice(&b[j..]); out } "
    "export function debounce(fn, ms) { let t; return (...args) => { "
    "clearTimeout(t); t = setTimeout(() => fn(...args), ms); }; } ";

/* Tokens as a tokenizer roughly sees code: each word and each
 * punctuation mark. */
static int
is_word(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_';
}

/* Append code to b from offset off until it holds about want more
 * tokens. */
static void
pad(struct lc_buf *b, size_t off, long want)
{
	size_t len = sizeof(code_text) - 1, i = off % len;
	long n = 0;
	int c, prev = ' ';

	while (n < want) {
		c = (unsigned char)code_text[i];
		if (!is_word(c) && c != ' ')
			n++;
		else if (is_word(c) && !is_word(prev))
			n++;
		if (n <= want && lc_buf_add(b, &code_text[i], 1) == -1)
			lc_fatal("out of memory");
		prev = c;
		i = (i + 1) % len;
	}
}

/* The JSON body of the next request; malloc'd. */
static char *
request_body(const struct target *t)
{
	size_t ntasks = sizeof(tasks) / sizeof(tasks[0]);
	long k = prompt_seq++, head;
	const char *task = tasks[k % (long)ntasks];
	struct lc_buf b = LC_BUF_INIT;
	char *s;
	jv req;

	lc_buf_printf(&b, "Request %ld. %s\n\n", k, task);
	/* About one token for each word and mark the task itself has. */
	head = 4 + (long)strlen(task) / 5;
	if (conf.input_tokens > head)
		pad(&b, (size_t)k * 131, conf.input_tokens - head);
	req = JV_OBJECT(jv_string("model"), jv_string(t->model),
	    jv_string("messages"), JV_ARRAY(JV_OBJECT(jv_string("role"),
	    jv_string("user"), jv_string("content"), jv_string(b.data))),
	    jv_string("max_tokens"), jv_number(conf.max_tokens),
	    jv_string("ignore_eos"), jv_true(),
	    jv_string("stream"), jv_true(),
	    jv_string("stream_options"), JV_OBJECT(
	    jv_string("include_usage"), jv_true()));
	lc_buf_free(&b);
	req = jv_dump_string(req, 0);
	s = lc_xstrdup(jv_string_value(req));
	jv_free(req);
	return s;
}

/* The first n-byte needle in p..end, or NULL (memmem is not POSIX). */
static const char *
find(const char *p, const char *end, const char *needle, size_t n)
{
	const char *q;

	while ((size_t)(end - p) >= n &&
	    (q = memchr(p, needle[0], (size_t)(end - p) - n + 1)) != NULL) {
		if (memcmp(q, needle, n) == 0)
			return q;
		p = q + 1;
	}
	return NULL;
}

/* Does the event's JSON carry a non-empty "content" (or a reasoning
 * model's "reasoning_content") string? A scan, not a parse: this runs
 * once per token. Inside a string a quote is escaped, so 'content"'
 * followed by a colon can only be a key. */
static int
has_content(const char *p, const char *end)
{
	static const char key[] = "content\"";
	const char *q;

	while ((q = find(p, end, key, sizeof(key) - 1)) != NULL) {
		q += sizeof(key) - 1;
		while (q < end && *q == ' ')
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && *q == ' ')
				q++;
			if (q + 1 < end && q[0] == '"' && q[1] != '"')
				return 1;
		}
		p = q;
	}
	return 0;
}

/* The usage chunk's token counts, parsed once per request. */
static void
read_usage(struct stream *s, const char *p, size_t n)
{
	jv v = jv_parse_sized(p, (int)n), u;

	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		return;
	}
	u = lc_get(v, "usage");
	if (jv_get_kind(u) == JV_KIND_OBJECT) {
		s->out_tokens = (long)lc_num(u, "completion_tokens", -1);
		s->in_tokens = (long)lc_num(u, "prompt_tokens", -1);
	}
	jv_free(u);
	jv_free(v);
}

/* One complete line of the event stream. */
static void
event_line(struct stream *s, const char *p, size_t n, double t)
{
	static const char usage_key[] = "\"usage\":{";

	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n < 5 || memcmp(p, "data:", 5) != 0)
		return;
	p += 5;
	n -= 5;
	while (n > 0 && *p == ' ') {
		p++;
		n--;
	}
	if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
		s->done = 1;
		s->tdone = t;
		return;
	}
	if (has_content(p, p + n)) {
		if (s->chunks == 0)
			s->tfirst = t;
		else
			dvec_add(&s->gaps, t - s->tlast);
		s->tlast = t;
		s->chunks++;
	}
	if (find(p, p + n, usage_key, sizeof(usage_key) - 1) != NULL)
		read_usage(s, p, n);
}

/* libcurl's write callback: split what came into lines. */
static size_t
on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct stream *s = arg;
	size_t n = size * nmemb, i, from = 0;
	double t = now_s();

	if (s->status == 0)
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status >= 400)
		return n;	/* an error's body: not an event stream */
	for (i = 0; i < n; i++) {
		if (data[i] != '\n')
			continue;
		if (s->line.len > 0) {
			if (lc_buf_add(&s->line, data + from, i - from) == -1)
				return 0;
			event_line(s, s->line.data, s->line.len, t);
			s->line.len = 0;
		} else {
			event_line(s, data + from, i - from, t);
		}
		from = i + 1;
	}
	if (from < n && lc_buf_add(&s->line, data + from, n - from) == -1)
		return 0;
	return n;
}

static void
count_kind(struct stats *st, const char *kind)
{
	jv old = jv_object_get(jv_copy(st->kinds), jv_string(kind));
	double n = jv_get_kind(old) == JV_KIND_NUMBER ? jv_number_value(old) :
	    0;

	jv_free(old);
	st->kinds = jv_object_set(st->kinds, jv_string(kind), jv_number(n + 1));
	st->errors++;
}

/* Split the request's chunk gaps into token gaps: when the usage says n
 * tokens came in c chunks, the c - 1 gaps cover n - 1 tokens, spread as
 * evenly as whole numbers allow, each gap shared by its tokens. */
static void
add_gaps(struct stats *st, const struct stream *s, long n)
{
	size_t c = s->gaps.n, j;
	long k, spread = n - 1;

	if (c == 0)
		return;
	if (spread <= (long)c) {
		for (j = 0; j < c; j++)
			dvec_add(&st->itl, s->gaps.v[j]);
		return;
	}
	for (j = 0; j < c; j++) {
		k = (long)((j + 1) * spread / c) - (long)(j * spread / c);
		for (long m = 0; m < k; m++)
			dvec_add(&st->itl, s->gaps.v[j] / (double)k);
	}
}

/* Why a finished request failed, or NULL when it did not. */
static const char *
failure(struct stream *s, CURLcode res, char *buf, size_t len)
{
	if (s->status == 0)
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
	if (res == CURLE_OPERATION_TIMEDOUT)
		return "timeout";
	if (s->status >= 400) {
		snprintf(buf, len, "http_%ld", s->status);
		return buf;
	}
	if (s->status == 0 && res != CURLE_OK)
		return "connect";
	if (!s->done)
		return "stream_cut";
	if (s->chunks == 0 || s->out_tokens == 0)
		return "no_tokens";
	return NULL;
}

/* A request ended: its figures into its level. */
static void
finish(struct stream *s, CURLcode res)
{
	struct stats *st = s->st;
	const char *kind;
	char buf[32];
	long n;
	double e2e;

	kind = failure(s, res, buf, sizeof(buf));
	if (kind != NULL && lc_verbose)
		lc_warnx("request failed: %s%s%s", kind, s->errbuf[0] ? ": " :
		    "", s->errbuf);
	if (st == NULL)
		return;
	st->t_end = now_s();
	if (kind != NULL) {
		count_kind(st, kind);
		if (strcmp(kind, "connect") == 0) {
			st->connect_errors++;
			snprintf(st->connect_msg, sizeof(st->connect_msg), "%s",
			    s->errbuf[0] ? s->errbuf : curl_easy_strerror(res));
		}
		return;
	}
	n = s->out_tokens >= 0 ? s->out_tokens : s->chunks;
	e2e = s->tdone - s->t0;
	st->ok++;
	st->out_tokens += n;
	if (s->in_tokens > 0)
		st->in_tokens += s->in_tokens;
	dvec_add(&st->ttft, s->tfirst - s->t0);
	dvec_add(&st->e2e, e2e);
	if (n > 1)
		dvec_add(&st->tpot, (e2e - (s->tfirst - s->t0)) /
		    (double)(n - 1));
	add_gaps(st, s, n);
}

/* Start one request in a free slot. */
static void
start(struct stream *s, const struct target *t, struct stats *st)
{
	free(s->body);
	s->body = request_body(t);
	s->st = st;
	s->status = 0;
	s->done = s->chunks = 0;
	s->out_tokens = s->in_tokens = -1;
	s->tfirst = s->tlast = s->tdone = 0;
	s->line.len = 0;
	s->gaps.n = 0;
	s->errbuf[0] = '\0';
	if (s->easy == NULL && (s->easy = curl_easy_init()) == NULL)
		lc_fatal("out of memory");
	curl_easy_setopt(s->easy, CURLOPT_URL, t->chat_url);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, t->hdrs);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT, conf.timeout_s);
	/* A stream that sends nothing for the timeout has stalled. */
	curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_TIME, conf.timeout_s);
	s->busy = 1;
	s->t0 = now_s();
	if (curl_multi_add_handle(multi, s->easy) != CURLM_OK)
		lc_fatal("cannot start a request: out of memory?");
}

/* Take the finished requests off the multi handle; how many ended. */
static long
reap(void)
{
	struct stream *s;
	CURLMsg *m;
	long ended = 0;
	int left;

	while ((m = curl_multi_info_read(multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
		finish(s, m->data.result);
		curl_multi_remove_handle(multi, s->easy);
		s->busy = 0;
		ended++;
	}
	return ended;
}

static struct stream *
free_slot(int width)
{
	for (int i = 0; i < width; i++)
		if (!pool[i].busy)
			return &pool[i];
	return NULL;
}

/*
 * The sockets libcurl wants watched, kept in an event queue by its socket
 * callback, so that a wake-up costs what is ready and curl touches only
 * the streams that have data: curl_multi_perform would look at every
 * transfer each time, which at hundreds of streams costs more than the
 * tokens do.
 */
static struct lc_evq *evq;
static long long timer_at = -1;	/* lc_mono_ms() when curl wants a call */

static int
on_socket(CURL *e, curl_socket_t fd, int what, void *u, void *sp)
{
	(void)e, (void)u, (void)sp;
	if (lc_evq_set(evq, fd, what == CURL_POLL_REMOVE ? 0 :
	    (what & CURL_POLL_IN ? LC_EV_IN : 0) |
	    (what & CURL_POLL_OUT ? LC_EV_OUT : 0)) == -1)
		lc_fatal("cannot watch a socket: %s", strerror(errno));
	return 0;
}

static int
on_timer(CURLM *m, long ms, void *u)
{
	(void)m, (void)u;
	timer_at = ms < 0 ? -1 : lc_mono_ms() + ms;
	return 0;
}

/* Wait up to ms for the sockets or curl's timer, and let curl act on
 * what happened. */
static void
wait_and_act(long ms)
{
	struct lc_ev ev[256];
	long long now = lc_mono_ms();
	int n, running, what;

	if (timer_at >= 0 && timer_at - now < ms)
		ms = timer_at > now ? (long)(timer_at - now) : 0;
	n = lc_evq_wait(evq, ev, 256, ms);
	for (int i = 0; i < n; i++) {
		what = (ev[i].events & LC_EV_IN ? CURL_CSELECT_IN : 0) |
		    (ev[i].events & LC_EV_OUT ? CURL_CSELECT_OUT : 0) |
		    (ev[i].events & LC_EV_ERR ? CURL_CSELECT_ERR : 0);
		curl_multi_socket_action(multi, ev[i].fd, what, &running);
	}
	if (timer_at >= 0 && lc_mono_ms() >= timer_at) {
		timer_at = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0,
		    &running);
	}
}

/*
 * Run n requests: with rate 0, width in flight at all times (a closed
 * loop); else arriving as a Poisson process of that rate, at most width
 * at once. st NULL: warm-up. 0, or -1 when stopped by a signal.
 */
static int
run_batch(const struct target *t, int width, double rate, long n,
    struct stats *st)
{
	long started = 0, ended = 0, r;
	double next = now_s(), wait;
	struct stream *s;

	if (st != NULL)
		st->t_start = st->t_end = now_s();
	while (ended < n && !stop) {
		while (started < n && (rate <= 0 || now_s() >= next) &&
		    (s = free_slot(width)) != NULL) {
			start(s, t, st);
			started++;
			if (rate > 0)
				next += -log(1.0 - uniform()) / rate;
		}
		if ((r = reap()) > 0) {
			ended += r;
			continue;	/* start the next ones at once */
		}
		wait = rate > 0 && started < n ? next - now_s() : 1.0;
		if (wait > 1.0)
			wait = 1.0;
		wait_and_act(wait > 0 ? (long)(wait * 1000) + 1 : 0);
	}
	return stop ? -1 : 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile of sorted v, interpolated between ranks. */
static double
quantile(const double *v, size_t n, double q)
{
	double r = q * (double)(n - 1);
	size_t i = (size_t)r;

	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + (v[i + 1] - v[i]) * (r - (double)i);
}

/* {"mean","p50","p90","p99"} of d, nulls when it is empty. Returns owned. */
static jv
summary(struct dvec *d)
{
	double sum = 0;
	size_t i;

	if (d->n == 0)
		return JV_OBJECT(jv_string("mean"), jv_null(), jv_string("p50"),
		    jv_null(), jv_string("p90"), jv_null(), jv_string("p99"),
		    jv_null());
	qsort(d->v, d->n, sizeof(*d->v), cmp_double);
	for (i = 0; i < d->n; i++)
		sum += d->v[i];
	return JV_OBJECT(jv_string("mean"), jv_number(sum / (double)d->n),
	    jv_string("p50"), jv_number(quantile(d->v, d->n, 0.50)),
	    jv_string("p90"), jv_number(quantile(d->v, d->n, 0.90)),
	    jv_string("p99"), jv_number(quantile(d->v, d->n, 0.99)));
}

/* The level's record. Borrows st (its kinds are copied). */
static jv
level_record(struct stats *st, double level)
{
	double dur = st->t_end - st->t_start;
	jv rec;

	if (dur <= 0)
		dur = 1e-9;
	rec = JV_OBJECT(jv_string(conf.open_loop ? "rate" : "concurrency"),
	    jv_number(level),
	    jv_string("requests"), jv_number((double)st->requests),
	    jv_string("errors"), jv_number((double)st->errors),
	    jv_string("error_kinds"), jv_copy(st->kinds),
	    jv_string("input_tokens"), jv_number((double)st->in_tokens),
	    jv_string("output_tokens"), jv_number((double)st->out_tokens),
	    jv_string("duration_s"), jv_number(dur),
	    jv_string("requests_per_s"), jv_number((double)st->ok / dur),
	    jv_string("output_tokens_per_s"),
	    jv_number((double)st->out_tokens / dur));
	/* JV_OBJECT takes at most nine members. */
	rec = jv_object_set(rec, jv_string("ttft_s"), summary(&st->ttft));
	rec = jv_object_set(rec, jv_string("itl_s"), summary(&st->itl));
	rec = jv_object_set(rec, jv_string("tpot_s"), summary(&st->tpot));
	return jv_object_set(rec, jv_string("e2e_s"), summary(&st->e2e));
}

static void
stats_free(struct stats *st)
{
	free(st->ttft.v);
	free(st->itl.v);
	free(st->tpot.v);
	free(st->e2e.v);
	jv_free(st->kinds);
}

/* The figures the summary judges by: those of the first level. */
struct first {
	int	 have, failed;
	double	 tps, ttft_ms;
};

/* Make sure the pool has width slots. */
static void
grow_pool(int width)
{
	if (width <= npool)
		return;
	if ((pool = realloc(pool, (size_t)width * sizeof(*pool))) == NULL)
		lc_fatal("out of memory");
	memset(pool + npool, 0, (size_t)(width - npool) * sizeof(*pool));
	npool = width;
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)width);
}

/*
 * Every level against one target; each level's record goes out with
 * extra's members first (consumed). Returns 0 when every request went
 * well, 1 when some failed, 3 when the endpoint could not be reached
 * (*err set), -1 when stopped.
 */
static int
sweep(const struct target *t, jv extra, struct first *f, jv *err)
{
	int rc = 0;

	for (int i = 0; i < conf.nlevels && !stop; i++) {
		double lv = conf.levels[i];
		long n = conf.requests ? conf.requests :
		    (conf.open_loop ? 64 : (long)lv * 4 < 16 ? 16 : (long)lv * 4);
		int width = conf.open_loop ? (n < MAX_STREAMS ? (int)n :
		    MAX_STREAMS) : (int)lv;
		struct stats st = { .kinds = jv_object() };

		grow_pool(width);
		lc_progress("level %g: %ld requests", lv, n);
		if (conf.warmup > 0)
			run_batch(t, conf.open_loop ? 1 : width < conf.warmup ?
			    width : (int)conf.warmup, 0, conf.warmup, NULL);
		if (run_batch(t, width, conf.open_loop ? lv : 0, n, &st) == -1) {
			stats_free(&st);
			rc = -1;
			break;
		}
		st.requests = n;
		if (st.ok == 0 && st.connect_errors == st.errors) {
			*err = lc_errorf("unreachable", "%s: %s: is the server "
			    "up, and the URL right?", t->chat_url,
			    st.connect_msg);
			stats_free(&st);
			rc = 3;
			break;
		}
		if (i == 0) {
			f->have = 1;
			f->failed = st.ok == 0 || st.errors > 0;
			if (st.tpot.n > 0 && st.ttft.n > 0) {
				jv s1 = summary(&st.tpot), s2 = summary(&st.ttft);

				f->tps = 1.0 / lc_num(s1, "mean", 0);
				f->ttft_ms = 1000.0 * lc_num(s2, "p50", 0);
				jv_free(s1);
				jv_free(s2);
			}
		}
		if (st.errors > 0)
			rc = 1;
		lc_progress_done();
		lc_emit(jv_object_merge(jv_copy(extra), level_record(&st, lv)));
		stats_free(&st);
	}
	jv_free(extra);
	return rc;
}

/*
 * The judgement, a pure function: the first level's single-stream output
 * rate and median TTFT against the expected figures (exp_tps, exp_ttft_ms;
 * 0 when unknown). Returns owned {"expected","measured","ratio","verdict"}:
 * ratio.tokens_per_s is measured over expected, ratio.ttft expected over
 * measured, so that below 1 is worse for both; "slow" when either is below
 * SLOW_RATIO, "failed" when the level had failures or none ran.
 */
static jv
judge(double exp_tps, double exp_ttft_ms, const struct first *f)
{
	jv r_tps = jv_null(), r_ttft = jv_null(), verdict = jv_null();
	int measured = f->have && f->tps > 0 && f->ttft_ms > 0;

	if (measured && exp_tps > 0)
		r_tps = jv_number(f->tps / exp_tps);
	if (measured && exp_ttft_ms > 0)
		r_ttft = jv_number(exp_ttft_ms / f->ttft_ms);
	if (!f->have || f->failed || !measured)
		verdict = jv_string("failed");
	else if (exp_tps > 0 || exp_ttft_ms > 0)
		verdict = jv_string((exp_tps > 0 && f->tps / exp_tps <
		    SLOW_RATIO) || (exp_ttft_ms > 0 && exp_ttft_ms / f->ttft_ms <
		    SLOW_RATIO) ? "slow" : "ok");
	return JV_OBJECT(jv_string("expected"), JV_OBJECT(
	    jv_string("tokens_per_s"), exp_tps > 0 ? jv_number(exp_tps) :
	    jv_null(), jv_string("ttft_ms"), exp_ttft_ms > 0 ?
	    jv_number(exp_ttft_ms) : jv_null()),
	    jv_string("measured"), JV_OBJECT(jv_string(conf.open_loop ?
	    "rate" : "concurrency"), jv_number(conf.levels[0]),
	    jv_string("tokens_per_s"), measured ? jv_number(f->tps) : jv_null(),
	    jv_string("ttft_ms"), measured ? jv_number(f->ttft_ms) : jv_null()),
	    jv_string("ratio"), JV_OBJECT(jv_string("tokens_per_s"), r_tps,
	    jv_string("ttft"), r_ttft),
	    jv_string("verdict"), verdict);
}

/* The expected figures: a preset's (-p, else the record's "expected" or
 * its preset's), then -e and -E over them. Borrows rec (may be null). */
static void
expected(jv rec, const char *argv0, double *tps, double *ttft_ms)
{
	jv exp = lc_get(rec, "expected");
	const char *preset = conf.preset ? conf.preset : lc_str(rec, "preset");

	if (preset != NULL && (conf.preset != NULL ||
	    jv_get_kind(exp) != JV_KIND_OBJECT)) {
		jv db = lc_preset_load(argv0), p;

		if (!jv_is_valid(db))
			lc_fatal_err(db);
		p = lc_preset_find(db, preset);
		jv_free(db);
		if (!jv_is_valid(p) && conf.preset != NULL)
			lc_fatal_err(p);
		jv_free(exp);
		exp = lc_get(p, "expected");
		jv_free(p);
	}
	*tps = lc_num(exp, "tokens_per_s", 0);
	*ttft_ms = lc_num(exp, "ttft_ms", 0);
	jv_free(exp);
	if (conf.expect_tps > 0)
		*tps = conf.expect_tps;
	if (conf.expect_ttft_ms > 0)
		*ttft_ms = conf.expect_ttft_ms;
}

/* Point t at base (".../v1") with the model and the key (consumed: wiped
 * and freed with the target). */
static void
target_set(struct target *t, const char *base, const char *model, char *key)
{
	size_t n = strlen(base);
	struct lc_buf h = LC_BUF_INIT;

	while (n > 0 && base[n - 1] == '/')
		n--;
	if ((size_t)snprintf(t->chat_url, sizeof(t->chat_url),
	    "%.*s/chat/completions", (int)n, base) >= sizeof(t->chat_url))
		lc_fatal("the URL is too long: %.60s...", base);
	t->model = lc_xstrdup(model);
	t->key = key;
	t->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	t->hdrs = curl_slist_append(t->hdrs, "Accept: text/event-stream");
	if (key != NULL && *key != '\0') {
		lc_buf_printf(&h, "Authorization: Bearer %s", key);
		t->hdrs = curl_slist_append(t->hdrs, h.data);
		memset(h.data, 0, h.len);
	}
	lc_buf_free(&h);
	if (t->hdrs == NULL)
		lc_fatal("out of memory");
}

/* Forget the target; the key's bytes are overwritten first. */
static void
target_free(struct target *t)
{
	struct curl_slist *h;

	for (h = t->hdrs; h != NULL; h = h->next)
		memset(h->data, 0, strlen(h->data));
	curl_slist_free_all(t->hdrs);
	if (t->key != NULL)
		memset(t->key, 0, strlen(t->key));
	free(t->key);
	free(t->model);
	memset(t, 0, sizeof(*t));
}

/* The key for -u: -k's file (its first line), else $VLLM_API_KEY, else
 * $OPENAI_API_KEY, else none. Returns malloc'd or NULL. */
static char *
url_key(void)
{
	char *text = NULL, *k;
	size_t len = 0;

	if (conf.key_file != NULL) {
		if (lc_read_file(conf.key_file, &text, &len) == -1)
			lc_fatal("cannot read the API key file %s: %s",
			    conf.key_file, strerror(errno));
		text[strcspn(text, "\r\n")] = '\0';
		if (*text == '\0')
			lc_fatal("the API key file %s is empty: put the key on "
			    "its first line", conf.key_file);
		return text;
	}
	if ((k = getenv("VLLM_API_KEY")) != NULL && *k != '\0')
		return lc_xstrdup(k);
	if ((k = getenv("OPENAI_API_KEY")) != NULL && *k != '\0')
		return lc_xstrdup(k);
	return NULL;
}

/* Run the sweep against one target, each level's record led by
 * lvl_extra's members; then, unless summary_rec is null, that record with
 * a "bench" member. Consumes both. 0, 1, 3 (*err set) or -1 (stopped). */
static int
bench_target(const struct target *t, jv lvl_extra, jv summary_rec,
    double exp_tps, double exp_ttft_ms, jv *err)
{
	struct first f = { 0, 0, 0, 0 };
	int rc;

	rc = sweep(t, lvl_extra, &f, err);
	if (rc == 3 || rc == -1 || jv_get_kind(summary_rec) == JV_KIND_NULL) {
		jv_free(summary_rec);
		return rc;
	}
	lc_emit(jv_object_set(summary_rec, jv_string("bench"),
	    judge(exp_tps, exp_ttft_ms, &f)));
	return rc;
}

/* lc-ssh beside this program (bin/ in the source tree, or installed
 * together), else the one on PATH. Static storage. */
static const char *
lcssh_path(const char *argv0)
{
	static char path[4096];
	const char *slash = strrchr(argv0, '/');

	if (slash != NULL && (size_t)snprintf(path, sizeof(path),
	    "%.*s/lc-ssh", (int)(slash - argv0), argv0) < sizeof(path) &&
	    access(path, X_OK) == 0)
		return path;
	return "lc-ssh";
}

/*
 * Start `lc-ssh -L -q -p 0` with the session record on its stdin and read
 * the base URL it announces once the tunnel listens (lc-ssh(1)) into
 * base. The child's pid, or -1 with *err (lc-ssh's own message is already
 * on stderr then). Borrows rec.
 */
static pid_t
tunnel_open(const char *argv0, jv rec, char *base, size_t len, jv *err)
{
	int in[2], out[2];
	char *text = lc_json(rec), line[512];
	const char *prefix = "OPENAI_API_BASE=";
	size_t got = 0;
	ssize_t r;
	pid_t pid;
	struct pollfd pfd;
	long long end = lc_mono_ms() + (conf.timeout_s + 60) * 1000LL;

	if (pipe(in) == -1 || pipe(out) == -1)
		lc_fatal("pipe: %s", strerror(errno));
	if ((pid = fork()) == -1)
		lc_fatal("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		close(in[0]), close(in[1]), close(out[0]), close(out[1]);
		execlp(lcssh_path(argv0), "lc-ssh", "-L", "-q", "-p", "0",
		    (char *)NULL);
		fprintf(stderr, "lc-bench: cannot run lc-ssh: %s\n",
		    strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	/* A failed write means lc-ssh died at once: the missing line below
	 * says so. */
	(void)!write(in[1], text, strlen(text));
	close(in[1]);
	free(text);
	pfd.fd = out[0];
	pfd.events = POLLIN;
	while (got < sizeof(line) - 1 && memchr(line, '\n', got) == NULL &&
	    lc_mono_ms() < end && !stop) {
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		if ((r = read(out[0], line + got, sizeof(line) - 1 - got)) <= 0)
			break;
		got += (size_t)r;
	}
	close(out[0]);
	line[got] = '\0';
	line[strcspn(line, "\n")] = '\0';
	if (strncmp(line, prefix, strlen(prefix)) != 0 ||
	    (size_t)snprintf(base, len, "%s", line + strlen(prefix)) >= len) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		*err = lc_errorf("tunnel", "lc-ssh could not open a tunnel to "
		    "the VM: see its message above, or try lc-ssh -L");
		return -1;
	}
	return pid;
}

static void
tunnel_close(pid_t pid)
{
	kill(pid, SIGTERM);
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
}

/*
 * One session: the whole record, its key, a tunnel, the sweep, the
 * summary. Consumes rec. Returns 0, 1, 3 (nothing ran) or -1 (stopped).
 */
static int
bench_session(const char *argv0, jv rec)
{
	struct lc_ledger l = { NULL, -1 };
	struct target t;
	jv full, err = jv_invalid();
	char base[512], *key = NULL;
	const char *name;
	double etps, ettft;
	pid_t pid;
	int rc;

	if (jv_object_has(jv_copy(rec), jv_string("error"))) {
		lc_emit(rec);	/* an earlier tool's failure: passed on */
		return 3;
	}
	full = lc_remote_session(jv_copy(rec));
	if (!jv_is_valid(full)) {
		lc_emit(lc_attach_error(rec, full));
		return 3;
	}
	jv_free(rec);
	name = lc_subject(full);
	if (lc_ledger_open(&l, &err) == 0) {
		key = lc_ready_api_key(&l, name);
		lc_ledger_close(&l);
	}
	if (key == NULL) {
		jv_free(err);
		lc_emit(lc_attach_error(full, lc_errorf("no_key", "no API key "
		    "in the session's env file: is the session ready? "
		    "(lc-sessions %s)", name)));
		return 3;
	}
	if ((pid = tunnel_open(argv0, full, base, sizeof(base), &err)) == -1) {
		free(key);
		lc_emit(lc_attach_error(full, err));
		return 3;
	}
	expected(full, argv0, &etps, &ettft);
	target_set(&t, base, lc_str(full, "served_model_name") ?
	    lc_str(full, "served_model_name") : "coder", key);
	rc = bench_target(&t, JV_OBJECT(jv_string("name"), jv_string(name)),
	    jv_copy(full), etps, ettft, &err);
	target_free(&t);
	tunnel_close(pid);
	if (rc == 3)
		lc_emit(lc_attach_error(full, err));
	else
		jv_free(full), jv_free(err);
	return rc;
}

/* -u: the endpoint named. */
static int
bench_url(const char *argv0)
{
	struct target t;
	jv err = jv_invalid(), summary_rec = jv_null();
	double etps, ettft;
	int rc;

	expected(jv_null(), argv0, &etps, &ettft);
	if (etps > 0 || ettft > 0)
		summary_rec = JV_OBJECT(jv_string("url"), jv_string(conf.url),
		    jv_string("model"), jv_string(conf.model));
	target_set(&t, conf.url, conf.model, url_key());
	rc = bench_target(&t, jv_object(), summary_rec, etps, ettft, &err);
	target_free(&t);
	if (rc == 3)
		lc_fatal_err(err);
	jv_free(err);
	return rc;
}

/* No name and no records: the current session's name (malloc'd). */
static char *
current_session(void)
{
	jv err = jv_invalid();
	char *name;

	if ((name = lc_ledger_current_name(&err)) == NULL && jv_is_valid(err))
		lc_fatal_err(err);
	jv_free(err);
	if (name == NULL)
		lc_usage(usage_str, "no session named and no current session: "
		    "name one, or give -u URL");
	return name;
}

/* "1,4,16,64" into conf.levels; whole numbers from 1 to MAX_STREAMS for
 * concurrency, positive numbers for rates. */
static void
parse_levels(const char *s, int rates)
{
	const char *p = s;
	char *end;
	double v;

	conf.nlevels = 0;
	conf.open_loop = rates;
	for (;;) {
		errno = 0;
		v = strtod(p, &end);
		if (end == p || errno != 0 || !(v > 0) ||
		    (!rates && (v != floor(v) || v > MAX_STREAMS)) ||
		    (*end != ',' && *end != '\0') || conf.nlevels == MAX_LEVELS)
			lc_usage(usage_str, "bad %s list '%s': write %s, e.g. %s",
			    rates ? "rate" : "concurrency", s, rates ?
			    "requests per second" : "streams from 1 to 4096",
			    rates ? "2,8" : "1,4,16,64");
		conf.levels[conf.nlevels++] = v;
		if (*end == '\0')
			break;
		p = end + 1;
	}
}

/* A whole number from min up, or a usage error naming what. */
static long
number(const char *s, long min, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < min)
		lc_usage(usage_str, "bad %s '%s': write a whole number from "
		    "%ld", what, s, min);
	return v;
}

/* A positive number, or a usage error naming what. */
static double
positive(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !(v > 0))
		lc_usage(usage_str, "bad %s '%s': write a positive number",
		    what, s);
	return v;
}

/* A key on the command line is seen by every user of the machine (ps,
 * /proc): refuse any long option that would take one, abbreviated or
 * not, before getopt could mistake it for --api-key-file. */
static void
refuse_key_options(int argc, char **argv)
{
	static const char full[] = "--api-key-file";
	size_t n;

	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strncmp(argv[i], "--api-k", 7) != 0)
			continue;
		n = strcspn(argv[i], "=");
		if (strncmp(argv[i], full, n) != 0 || n < sizeof(full) - 1)
			lc_usage(usage_str, "no option takes the API key itself: "
			    "give -k FILE, or set VLLM_API_KEY");
	}
}

static void
parse_opts(int argc, char **argv)
{
	int ch, c_given = 0, r_given = 0;

	refuse_key_options(argc, argv);

	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'c': parse_levels(optarg, 0); c_given = 1; break;
		case 'E':
			conf.expect_ttft_ms = positive(optarg, "TTFT");
			break;
		case 'e':
			conf.expect_tps = positive(optarg, "tokens/s");
			break;
		case 'h': lc_opts_help(&cmd);
		case 'i':
			conf.input_tokens = number(optarg, 1, "input tokens");
			break;
		case 'k': conf.key_file = optarg; break;
		case 'M':
			conf.max_tokens = number(optarg, 1, "max tokens");
			break;
		case 'm': conf.model = optarg; break;
		case 'N': conf.requests = number(optarg, 1, "requests"); break;
		case 'p': conf.preset = optarg; break;
		case 'q': lc_quiet = 1; break;
		case 'r': parse_levels(optarg, 1); r_given = 1; break;
		case 's': conf.seed = (unsigned long long)number(optarg, 0,
		    "seed"); break;
		case 't':
			if (lc_parse_duration(optarg, &conf.timeout_s) == -1 ||
			    conf.timeout_s < 1)
				lc_usage(usage_str, "bad timeout '%s': write "
				    "seconds, e.g. 60", optarg);
			break;
		case 'u': conf.url = optarg; break;
		case 'v': lc_verbose = 1; break;
		case 'w': conf.warmup = number(optarg, 0, "warm-up"); break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	if (c_given && r_given)
		lc_usage(usage_str, "-c and -r exclude each other");
	if ((conf.model != NULL || conf.key_file != NULL) && conf.url == NULL)
		lc_usage(usage_str, "-m and -k go with -u (a session has its "
		    "own model and key)");
}

int
main(int argc, char *argv[])
{
	struct sigaction sa;
	struct lc_reader *in;
	int rc = 0, r, ran = 0, failed = 0;
	jv rec;

	lc_init("lc-bench");
	usage_str = lc_opts_usage(&cmd);
	conf.warmup = 1;
	conf.input_tokens = 512;
	conf.max_tokens = 256;
	conf.timeout_s = 60;
	conf.seed = 1;
	parse_levels("1,4,16,64", 0);
	parse_opts(argc, argv);
	argc -= optind;
	argv += optind;
	if (conf.model == NULL)
		conf.model = "coder";
	if (conf.url != NULL && argc > 0)
		lc_usage(usage_str, "-u or session names, not both");
	rng = conf.seed * 0x9E3779B97F4A7C15ULL + 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
	    (multi = curl_multi_init()) == NULL)
		lc_fatal("cannot start libcurl: out of memory?");
	if ((evq = lc_evq_new()) == NULL)
		lc_fatal("cannot make an event queue: %s", strerror(errno));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
	if (conf.url != NULL) {
		rc = bench_url(argv[-optind]);
	} else {
		char *cur[1] = { NULL };

		if (argc == 0 && isatty(STDIN_FILENO)) {
			cur[0] = current_session();
			argc = 1;
			argv = cur;
		}
		in = lc_reader_open(argc, argv, "name");
		free(cur[0]);
		while (!stop && lc_reader_next(in, &rec)) {
			r = bench_session(argv[-optind], rec);
			if (r == 3)
				failed++;
			else
				ran++;
			if (r == 1)
				rc = 1;
		}
		lc_reader_close(in);
		if (ran == 0 && failed > 0)
			rc = LC_EXIT_FATAL;
		else if (failed > 0)
			rc = LC_EXIT_PARTIAL;
	}
	for (int i = 0; i < npool; i++) {
		if (pool[i].easy != NULL)
			curl_easy_cleanup(pool[i].easy);
		free(pool[i].body);
		lc_buf_free(&pool[i].line);
		free(pool[i].gaps.v);
	}
	free(pool);
	curl_multi_cleanup(multi);
	lc_evq_free(evq);
	curl_global_cleanup();
	if (stop) {
		lc_warnx("interrupted");
		rc = LC_EXIT_PARTIAL;
	}
	if (fflush(stdout) == EOF || ferror(stdout))
		return LC_EXIT_FATAL;
	return rc < 0 ? LC_EXIT_PARTIAL : rc;
}
