/* lc: program name, messages, exit codes, error values, buffers. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jv.h>

#include "lc.h"

int lc_quiet;
int lc_verbose;

static const char *progname = "lc";
static int progress_open;		/* a progress line is on screen */
static struct timespec progress_last;

void
lc_init(const char *name)
{
	struct sigaction sa;

	progname = name;
	opterr = 0;	/* lc_bad_option says it our way */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

const char *
lc_progname(void)
{
	return progname;
}

/* Write s to stderr with control characters (but not tab) shown as '?'. */
static void
put_clean(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		fputc((c < 0x20 && c != '\t') || c == 0x7f ? '?' : c, stderr);
	}
}

void
lc_vwarnx(const char *fmt, va_list ap)
{
	char msg[2048];

	lc_progress_done();
	vsnprintf(msg, sizeof(msg), fmt, ap);
	put_clean(progname);
	fputs(": ", stderr);
	put_clean(msg);
	fputc('\n', stderr);
	fflush(stderr);
}

void
lc_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lc_vwarnx(fmt, ap);
	va_end(ap);
}

void
lc_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lc_vwarnx(fmt, ap);
	va_end(ap);
	exit(LC_EXIT_FATAL);
}

void
lc_fatal_err(jv err)
{
	char *m = lc_error_message(err);

	jv_free(err);
	lc_warnx("%s", m);
	free(m);
	exit(LC_EXIT_FATAL);
}

void
lc_usage(const char *usage, const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		lc_vwarnx(fmt, ap);
		va_end(ap);
	}
	fprintf(stderr, "%s\n", usage);
	fprintf(stderr, "Try '%s --help' for more information.\n", progname);
	exit(LC_EXIT_USAGE);
}

void
lc_bad_option(const char *usage, char *const argv[])
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (optopt != 0 && strchr(arg, optopt) != NULL && arg[1] != '-' &&
	    arg[strlen(arg) - 1] == optopt)
		lc_usage(usage, "option -%c needs a value or is unknown",
		    optopt);
	lc_usage(usage, "unknown option or missing value: %s", arg);
}

void
lc_help(const char *text)
{
	fputs(text, stdout);
	if (fflush(stdout) == EOF || ferror(stdout))
		exit(LC_EXIT_FATAL);
	exit(LC_EXIT_OK);
}

void
lc_progress(const char *fmt, ...)
{
	struct timespec now;
	char msg[512];
	va_list ap;
	long ms;

	if (lc_quiet || !isatty(STDERR_FILENO))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - progress_last.tv_sec) * 1000 +
	    (now.tv_nsec - progress_last.tv_nsec) / 1000000;
	if (progress_open && ms < 500)
		return;
	progress_last = now;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fputs("\r\033[K", stderr);
	put_clean(progname);
	fputs(": ", stderr);
	put_clean(msg);
	fflush(stderr);
	progress_open = 1;
}

void
lc_progress_done(void)
{
	if (progress_open) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		progress_open = 0;
	}
}

void
lc_info(const char *fmt, ...)
{
	va_list ap;

	if (lc_quiet)
		return;
	va_start(ap, fmt);
	lc_vwarnx(fmt, ap);
	va_end(ap);
}

jv
lc_errorf(const char *code, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return jv_invalid_with_msg(jv_object_set(jv_object_set(jv_object(),
	    jv_string("code"), jv_string(code)),
	    jv_string("message"), jv_string(msg)));
}

const char *
lc_error_code(jv err)
{
	static _Thread_local char code[64];	/* lc-watch: threads */
	jv msg;

	if (jv_is_valid(err) || !jv_invalid_has_msg(jv_copy(err)))
		return "unknown";
	msg = jv_invalid_get_msg(jv_copy(err));
	snprintf(code, sizeof(code), "%s",
	    jv_get_kind(msg) == JV_KIND_OBJECT && lc_str(msg, "code") ?
	    lc_str(msg, "code") : "error");
	jv_free(msg);
	return code;
}

char *
lc_error_message(jv err)
{
	const char *s = "unknown error";
	char *out;
	jv msg;

	if (jv_is_valid(err) || !jv_invalid_has_msg(jv_copy(err)))
		return lc_xstrdup(s);
	msg = jv_invalid_get_msg(jv_copy(err));
	if (jv_get_kind(msg) == JV_KIND_OBJECT && lc_str(msg, "message"))
		s = lc_str(msg, "message");
	else if (jv_get_kind(msg) == JV_KIND_STRING)
		s = jv_string_value(msg);
	out = lc_xstrdup(s);
	jv_free(msg);
	return out;
}

jv
lc_error_from_invalid(jv v, const char *code)
{
	jv msg;

	if (jv_is_valid(v)) {
		jv_free(v);
		return lc_errorf(code, "unexpected value");
	}
	if (!jv_invalid_has_msg(jv_copy(v))) {
		jv_free(v);
		return lc_errorf(code, "failed");
	}
	msg = jv_invalid_get_msg(v);
	if (jv_get_kind(msg) == JV_KIND_OBJECT)
		return jv_invalid_with_msg(msg);
	if (jv_get_kind(msg) == JV_KIND_STRING) {
		jv e = lc_errorf(code, "%s", jv_string_value(msg));

		jv_free(msg);
		return e;
	}
	jv_free(msg);
	return lc_errorf(code, "failed");
}

jv
lc_attach_error(jv rec, jv err)
{
	jv msg, e;

	if (jv_get_kind(rec) != JV_KIND_OBJECT) {
		jv_free(rec);
		rec = jv_object();
	}
	err = lc_error_from_invalid(err, "error");
	msg = jv_invalid_get_msg(err);
	e = jv_object_set(jv_object(), jv_string("code"),
	    lc_get(msg, "code"));
	e = jv_object_set(e, jv_string("message"), lc_get(msg, "message"));
	e = jv_object_set(e, jv_string("tool"), jv_string(progname));
	lc_warnx("%s: %s", lc_subject(rec),
	    lc_str(msg, "message") ? lc_str(msg, "message") : "failed");
	jv_free(msg);
	return jv_object_set(rec, jv_string("error"), e);
}

const char *
lc_str(jv obj, const char *key)
{
	const char *s = NULL;
	jv v;

	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return NULL;
	v = jv_object_get(jv_copy(obj), jv_string(key));
	if (jv_get_kind(v) == JV_KIND_STRING)
		s = jv_string_value(v);	/* obj still holds a reference */
	jv_free(v);
	return s;
}

double
lc_num(jv obj, const char *key, double def)
{
	double d = def;
	jv v;

	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return def;
	v = jv_object_get(jv_copy(obj), jv_string(key));
	if (jv_get_kind(v) == JV_KIND_NUMBER)
		d = jv_number_value(v);
	jv_free(v);
	return d;
}

int
lc_bool(jv obj, const char *key)
{
	int b;
	jv v;

	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return 0;
	v = jv_object_get(jv_copy(obj), jv_string(key));
	b = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	return b;
}

jv
lc_get(jv obj, const char *key)
{
	jv v;

	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return jv_null();
	v = jv_object_get(jv_copy(obj), jv_string(key));
	if (!jv_is_valid(v)) {
		jv_free(v);
		return jv_null();
	}
	return v;
}

const char *
lc_subject(jv rec)
{
	const char *s = lc_str(rec, "name");

	return s != NULL ? s : "-";
}

int
lc_buf_add(struct lc_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((d = realloc(b->data, cap)) == NULL)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
lc_buf_addstr(struct lc_buf *b, const char *s)
{
	return lc_buf_add(b, s, strlen(s));
}

int
lc_buf_printf(struct lc_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || lc_buf_add(b, "", 0) == -1)
		return -1;
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t need = b->len + (size_t)n + 1;
		char *d = realloc(b->data, need);

		if (d == NULL)
			return -1;
		b->data = d;
		b->cap = need;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
lc_buf_reset(struct lc_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
lc_buf_free(struct lc_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int
lc_shquote(struct lc_buf *b, const char *s)
{
	int rc = lc_buf_addstr(b, "'");

	for (; rc == 0 && *s != '\0'; s++)
		rc = *s == '\'' ? lc_buf_addstr(b, "'\\''") :
		    lc_buf_add(b, s, 1);
	return rc == 0 ? lc_buf_addstr(b, "'") : -1;
}

void *
lc_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		lc_fatal("out of memory");
	return p;
}

char *
lc_xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		lc_fatal("out of memory");
	return p;
}
