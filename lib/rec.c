/* rec: reading and writing records (NDJSON in, NDJSON out). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "lc.h"
#include "rec.h"

struct lc_reader {
	FILE		*fp;		/* NULL: operands */
	char	       **ops;
	int		 nops;
	int		 next_op;
	const char	*key;
	jv_parser	*parser;
	jv		 pending;	/* array being unrolled, or invalid */
	int		 pending_i;
	int		 eof;
	char		 chunk[65536];
	size_t		 fed;		/* bytes fed before this chunk */
	size_t		 chunk_len;
	int		 lines_before;	/* newlines fed before this chunk */
	int		 nrec;
};

static int failures;
static int buffered;		/* lc_emit_buffered */

struct lc_reader *
lc_reader_open(int argc, char **argv, const char *key)
{
	struct lc_reader *r;

	if (argc == 0 && isatty(STDIN_FILENO))
		return NULL;
	r = lc_reader_fopen(argc == 0 ? stdin : NULL);
	r->ops = argv;
	r->nops = argc;
	r->key = key;
	return r;
}

struct lc_reader *
lc_reader_fopen(FILE *fp)
{
	struct lc_reader *r = calloc(1, sizeof(*r));

	if (r == NULL)
		lc_fatal("out of memory");
	r->fp = fp;
	r->pending = jv_invalid();
	if (fp != NULL && (r->parser = jv_parser_new(0)) == NULL)
		lc_fatal("out of memory");
	return r;
}

/*
 * jq reports "... at line L, column C"; turn that into a byte offset within
 * the current chunk when we can, else the end of what was fed.
 */
static size_t
error_offset(struct lc_reader *r, const char *msg)
{
	const char *p = strstr(msg, " at line ");
	int line, col, l = 1 + r->lines_before;
	size_t i;

	if (p == NULL || sscanf(p, " at line %d, column %d", &line, &col) != 2)
		return r->fed + r->chunk_len;
	/* jq counts lines over all input: walk to that line in this chunk. */
	for (i = 0; i < r->chunk_len && l < line; i++)
		if (r->chunk[i] == '\n')
			l++;
	(void)col;
	return r->fed + i + (size_t)(col > 0 ? col : 0);
}

/* Unroll arrays, refuse non-objects. Consumes v. 1 if *rec was set. */
static int
take(struct lc_reader *r, jv v, jv *rec)
{
	char buf[64];

	if (jv_get_kind(v) == JV_KIND_ARRAY) {
		jv_free(r->pending);
		r->pending = v;
		r->pending_i = 0;
		return 0;
	}
	r->nrec++;
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_dump_string_trunc(jv_copy(v), buf, sizeof(buf));
		*rec = lc_attach_error(jv_object(), lc_errorf("not_object",
		    "input value %d is not an object (%s): records are JSON "
		    "objects such as {\"name\":\"dev\"}", r->nrec, buf));
		jv_free(v);
		return 1;
	}
	*rec = v;
	return 1;
}

static int
next_from_pending(struct lc_reader *r, jv *rec)
{
	while (jv_is_valid(r->pending)) {
		if (r->pending_i >= jv_array_length(jv_copy(r->pending))) {
			jv_free(r->pending);
			r->pending = jv_invalid();
			break;
		}
		if (take(r, jv_array_get(jv_copy(r->pending), r->pending_i++),
		    rec))
			return 1;
	}
	return 0;
}

int
lc_reader_next(struct lc_reader *r, jv *rec)
{
	jv v;

	if (r == NULL)
		return 0;
	if (r->fp == NULL) {
		if (r->next_op >= r->nops)
			return 0;
		*rec = jv_object_set(jv_object(), jv_string(r->key),
		    jv_string(r->ops[r->next_op++]));
		return 1;
	}
	for (;;) {
		if (next_from_pending(r, rec))
			return 1;
		v = jv_parser_next(r->parser);
		if (jv_is_valid(v)) {
			if (take(r, v, rec))
				return 1;
			continue;
		}
		if (jv_invalid_has_msg(jv_copy(v))) {
			jv msg = jv_invalid_get_msg(v);
			const char *m = jv_get_kind(msg) == JV_KIND_STRING ?
			    jv_string_value(msg) : "parse error";

			lc_fatal("malformed JSON on standard input at byte %zu: "
			    "%s (records must be JSON objects, one per line "
			    "or concatenated)", error_offset(r, m), m);
		}
		jv_free(v);
		if (r->eof)
			return 0;
		r->fed += r->chunk_len;
		for (size_t i = 0; i < r->chunk_len; i++)
			r->lines_before += r->chunk[i] == '\n';
		r->chunk_len = fread(r->chunk, 1, sizeof(r->chunk), r->fp);
		if (r->chunk_len < sizeof(r->chunk)) {
			if (ferror(r->fp))
				lc_fatal("reading standard input: %s",
				    strerror(errno));
			r->eof = feof(r->fp);
		}
		jv_parser_set_buf(r->parser, r->chunk, (int)r->chunk_len,
		    !r->eof);
	}
}

void
lc_reader_close(struct lc_reader *r)
{
	if (r == NULL)
		return;
	if (r->parser != NULL)
		jv_parser_free(r->parser);
	jv_free(r->pending);
	free(r);
}

jv
lc_parse_texts(const char *data, size_t len)
{
	jv_parser *p = jv_parser_new(0);
	jv out = jv_array(), v;

	if (p == NULL)
		return lc_errorf("nomem", "out of memory");
	jv_parser_set_buf(p, data, (int)len, 0);
	while (jv_is_valid(v = jv_parser_next(p))) {
		if (jv_get_kind(v) == JV_KIND_ARRAY)
			out = jv_array_concat(out, v);
		else
			out = jv_array_append(out, v);
	}
	if (jv_invalid_has_msg(jv_copy(v))) {
		jv msg = jv_invalid_get_msg(v);

		jv_free(out);
		out = lc_errorf("bad_json", "%s", jv_get_kind(msg) ==
		    JV_KIND_STRING ? jv_string_value(msg) : "parse error");
		jv_free(msg);
	} else
		jv_free(v);
	jv_parser_free(p);
	return out;
}

char *
lc_json(jv v)
{
	jv s = jv_dump_string(jv_copy(v), 0);
	char *out = lc_xstrdup(jv_string_value(s));

	jv_free(s);
	return out;
}

void
lc_emit(jv rec)
{
	failures += lc_emit_to(stdout, rec);
	/* Downstream tools act as records arrive, so never sit on one,
	 * unless the whole lot is ready at once. */
	if (!buffered)
		fflush(stdout);
}

int
lc_emit_to(FILE *fp, jv rec)
{
	int failed = jv_get_kind(rec) == JV_KIND_OBJECT &&
	    jv_object_has(jv_copy(rec), jv_string("error"));

	/* jv_dumpf writes through stdio; jv_dump_string grows a string a
	 * character at a time, which costs twice the whole listing. */
	jv_dumpf(rec, fp, 0);
	fputc('\n', fp);
	return failed;
}

void
lc_emit_buffered(int on)
{
	buffered = on;
}

void
lc_note_failure(void)
{
	failures++;
}

int
lc_finish(struct lc_reader *r)
{
	lc_reader_close(r);
	lc_progress_done();
	if (fflush(stdout) == EOF || ferror(stdout)) {
		lc_warnx("writing standard output: %s", strerror(errno));
		return LC_EXIT_FATAL;
	}
	return failures ? LC_EXIT_PARTIAL : LC_EXIT_OK;
}
