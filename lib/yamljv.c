/* yamljv: read YAML into jv and write jv as YAML, with libyaml. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jv.h>
#include <yaml.h>

#include "lc.h"
#include "yamljv.h"

struct yparse {
	yaml_parser_t	 p;
	const char	*name;
	int		 depth;
};

#define MAX_DEPTH 64

static jv
perr(struct yparse *y, const char *what, yaml_mark_t m)
{
	return lc_errorf("bad_yaml", "%s:%zu:%zu: %s", y->name,
	    (size_t)m.line + 1, (size_t)m.column + 1, what);
}

/* Next event into *ev: 0, or -1 with *err. */
static int
next(struct yparse *y, yaml_event_t *ev, jv *err)
{
	if (yaml_parser_parse(&y->p, ev))
		return 0;
	*err = perr(y, y->p.problem ? y->p.problem : "cannot parse",
	    y->p.problem_mark);
	return -1;
}

static int
is_word(const char *s, const char *const *words)
{
	for (; *words != NULL; words++)
		if (strcmp(s, *words) == 0)
			return 1;
	return 0;
}

static const char *const null_words[] = { "", "~", "null", "Null", "NULL",
	NULL };
static const char *const true_words[] = { "true", "True", "TRUE", "yes",
	"Yes", "YES", "on", "On", "ON", NULL };
static const char *const false_words[] = { "false", "False", "FALSE", "no",
	"No", "NO", "off", "Off", "OFF", NULL };

/* A decimal integer or float, as YAML writes them; 1 with *d set. */
static int
is_number(const char *s, double *d)
{
	const char *p = s;
	char *end;
	int digits = 0;

	if (*p == '+' || *p == '-')
		p++;
	for (; *p != '\0'; p++) {
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (strchr(".eE+-", *p) == NULL)
			return 0;
	}
	if (digits == 0)
		return 0;
	errno = 0;
	*d = strtod(s, &end);
	return *end == '\0' && errno == 0;
}

/* The jv of a scalar event. Borrows ev. */
static jv
scalar(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;
	double d;

	if (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0)
		return jv_string_sized(s, (int)ev->data.scalar.length);
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return jv_string_sized(s, (int)ev->data.scalar.length);
	if (is_word(s, null_words))
		return jv_null();
	if (is_word(s, true_words))
		return jv_true();
	if (is_word(s, false_words))
		return jv_false();
	if (is_number(s, &d))
		return jv_number(d);
	return jv_string_sized(s, (int)ev->data.scalar.length);
}

static jv node(struct yparse *y, yaml_event_t *ev);

/* The items of a sequence up to its end. */
static jv
sequence(struct yparse *y)
{
	jv arr = jv_array(), v, err;
	yaml_event_t ev;

	for (;;) {
		if (next(y, &ev, &err) == -1) {
			jv_free(arr);
			return err;
		}
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return arr;
		}
		v = node(y, &ev);
		if (!jv_is_valid(v)) {
			jv_free(arr);
			return v;
		}
		arr = jv_array_append(arr, v);
	}
}

/* The pairs of a mapping up to its end; keys are taken as text. */
static jv
mapping(struct yparse *y)
{
	jv obj = jv_object(), k, v, err;
	yaml_event_t ev;

	for (;;) {
		if (next(y, &ev, &err) == -1) {
			jv_free(obj);
			return err;
		}
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			return obj;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			err = perr(y, "a mapping key must be a plain word",
			    ev.start_mark);
			yaml_event_delete(&ev);
			jv_free(obj);
			return err;
		}
		k = jv_string_sized((const char *)ev.data.scalar.value,
		    (int)ev.data.scalar.length);
		yaml_event_delete(&ev);
		if (next(y, &ev, &err) == -1) {
			jv_free(k);
			jv_free(obj);
			return err;
		}
		v = node(y, &ev);
		if (!jv_is_valid(v)) {
			jv_free(k);
			jv_free(obj);
			return v;
		}
		obj = jv_object_set(obj, k, v);
	}
}

/* The value that starts with event ev (consumed). */
static jv
node(struct yparse *y, yaml_event_t *ev)
{
	yaml_mark_t m = ev->start_mark;
	yaml_event_type_t t = ev->type;
	jv v;

	if (t == YAML_SCALAR_EVENT) {
		v = scalar(ev);
		yaml_event_delete(ev);
		return v;
	}
	yaml_event_delete(ev);
	if (t == YAML_ALIAS_EVENT)
		return perr(y, "aliases (*name) are not supported: write the "
		    "value out", m);
	if (t != YAML_SEQUENCE_START_EVENT && t != YAML_MAPPING_START_EVENT)
		return perr(y, "unexpected YAML event", m);
	if (++y->depth > MAX_DEPTH)
		return perr(y, "nested too deeply", m);
	v = t == YAML_SEQUENCE_START_EVENT ? sequence(y) : mapping(y);
	y->depth--;
	return v;
}

jv
lc_yaml_to_jv(const char *text, size_t len, const char *name)
{
	struct yparse y = { .name = name != NULL ? name : "-" };
	yaml_event_t ev;
	jv v = jv_null();

	if (!yaml_parser_initialize(&y.p))
		return lc_errorf("nomem", "out of memory");
	yaml_parser_set_input_string(&y.p, (const unsigned char *)text, len);
	/* Stream start, then a document start or the stream's end. */
	for (;;) {
		if (next(&y, &ev, &v) == -1)
			break;
		if (ev.type == YAML_STREAM_START_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (ev.type != YAML_DOCUMENT_START_EVENT) {
			yaml_event_delete(&ev);	/* an empty stream */
			break;
		}
		yaml_event_delete(&ev);
		if (next(&y, &ev, &v) == -1)
			break;
		v = node(&y, &ev);
		break;
	}
	yaml_parser_delete(&y.p);
	return v;
}

int
lc_yaml_needs_quotes(const char *s)
{
	static const char *const odd[] = { "y", "Y", "n", "N", "<<", "=",
		NULL };
	static const char *const inf[] = { ".inf", "+.inf", "-.inf", ".nan",
		NULL };
	const char *p = s;
	int i;

	if (is_word(s, null_words) || is_word(s, true_words) ||
	    is_word(s, false_words) || is_word(s, odd))
		return 1;
	for (i = 0; inf[i] != NULL; i++)
		if (strcasecmp(s, inf[i]) == 0)
			return 1;
	if (*p == '+' || *p == '-' || *p == '.')
		p++;
	if (*p < '0' || *p > '9')
		return 0;
	/* Integers, floats, hex, octal, sexagesimal and dates. */
	return strspn(s, "0123456789abcdefABCDEFxXoO_:.+- tTzZ") == strlen(s);
}

static int
write_buf(void *data, unsigned char *buf, size_t n)
{
	return lc_buf_add(data, buf, n) == 0;
}

static int emit_node(yaml_emitter_t *e, jv v);

static int
emit_scalar(yaml_emitter_t *e, const char *s, size_t n, int string)
{
	yaml_event_t ev;
	yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;

	if (string && memchr(s, '\n', n) != NULL)
		style = YAML_LITERAL_SCALAR_STYLE;
	if (!string)
		style = YAML_PLAIN_SCALAR_STYLE;
	if (!yaml_scalar_event_initialize(&ev, NULL,
	    (yaml_char_t *)(string ? YAML_STR_TAG : NULL),
	    (yaml_char_t *)s, (int)n, string ? !lc_yaml_needs_quotes(s) : 1,
	    string, style))
		return 0;
	return yaml_emitter_emit(e, &ev);
}

static int
emit_container(yaml_emitter_t *e, jv v)
{
	yaml_event_t ev;
	int ok = 1;

	if (jv_get_kind(v) == JV_KIND_ARRAY) {
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
		    YAML_BLOCK_SEQUENCE_STYLE) || !yaml_emitter_emit(e, &ev))
			return 0;
		jv_array_foreach(v, i, x) {
			if (ok)
				ok = emit_node(e, x);
			jv_free(x);
		}
		return ok && yaml_sequence_end_event_initialize(&ev) &&
		    yaml_emitter_emit(e, &ev);
	}
	if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
	    YAML_BLOCK_MAPPING_STYLE) || !yaml_emitter_emit(e, &ev))
		return 0;
	jv_object_foreach(v, k, x) {
		if (ok)
			ok = emit_scalar(e, jv_string_value(k),
			    (size_t)jv_string_length_bytes(jv_copy(k)), 1) &&
			    emit_node(e, x);
		jv_free(k);
		jv_free(x);
	}
	return ok && yaml_mapping_end_event_initialize(&ev) &&
	    yaml_emitter_emit(e, &ev);
}

/* Emit one value. Borrows v. 1 on success (libyaml's convention). */
static int
emit_node(yaml_emitter_t *e, jv v)
{
	jv text;
	int ok;

	switch (jv_get_kind(v)) {
	case JV_KIND_STRING:
		return emit_scalar(e, jv_string_value(v),
		    (size_t)jv_string_length_bytes(jv_copy(v)), 1);
	case JV_KIND_NUMBER:
		text = jv_dump_string(jv_copy(v), 0);
		ok = emit_scalar(e, jv_string_value(text),
		    strlen(jv_string_value(text)), 0);
		jv_free(text);
		return ok;
	case JV_KIND_TRUE:
		return emit_scalar(e, "true", 4, 0);
	case JV_KIND_FALSE:
		return emit_scalar(e, "false", 5, 0);
	case JV_KIND_NULL:
		return emit_scalar(e, "null", 4, 0);
	case JV_KIND_ARRAY:
	case JV_KIND_OBJECT:
		return emit_container(e, v);
	default:
		return 0;
	}
}

int
lc_yaml_from_jv(jv v, struct lc_buf *out, jv *err)
{
	yaml_emitter_t e;
	yaml_event_t ev;
	int ok;

	if (!yaml_emitter_initialize(&e)) {
		*err = lc_errorf("nomem", "out of memory");
		return -1;
	}
	yaml_emitter_set_output(&e, write_buf, out);
	yaml_emitter_set_unicode(&e, 1);
	yaml_emitter_set_width(&e, -1);
	yaml_emitter_set_indent(&e, 2);
	ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
	    yaml_emitter_emit(&e, &ev) &&
	    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
	    yaml_emitter_emit(&e, &ev) &&
	    emit_node(&e, v) &&
	    yaml_document_end_event_initialize(&ev, 1) &&
	    yaml_emitter_emit(&e, &ev) &&
	    yaml_stream_end_event_initialize(&ev) &&
	    yaml_emitter_emit(&e, &ev) &&
	    yaml_emitter_flush(&e);
	if (!ok)
		*err = lc_errorf("yaml_emit", "cannot write YAML: %s",
		    e.problem ? e.problem : "emitter failed");
	yaml_emitter_delete(&e);
	return ok ? 0 : -1;
}
