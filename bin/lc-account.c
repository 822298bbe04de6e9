/*
 * lc-account: what this Linode account can buy. One record per region
 * with GPU Linodes, per GPU plan (prices, region prices, stock per
 * region), or the profile behind the token; NDJSON on stdout, or an
 * aligned table for people with -H. Regions and plans are public: they
 * are read without a token when none is configured.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "config.h"
#include "http.h"
#include "lc.h"
#include "linode.h"
#include "opts.h"
#include "rec.h"

static const struct lc_opt opts[] = {
	{ 'H', "table", NULL, "an aligned table for people instead of NDJSON" },
	{ 'q', "quiet", NULL, "no warnings about missing stock data" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-account",
	.summary = "lc-account: what this Linode account can buy",
	.operands = "regions | types | whoami",
	.before = "  regions        regions with GPU Linodes\n"
	    "  types          GPU plans: size, prices, region prices, stock\n"
	    "  whoami         the profile the token belongs to\n\n",
	.after = "Records (NDJSON) go to stdout. See lc-account(1).\n",
	.col = 17,
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

#define MAXCOLS	8

/* A table for people: cells are copied, control characters shown as '?',
 * each column as wide as its widest cell. */
struct table {
	int	 ncols, nrows;
	char	**cells;	/* nrows * ncols */
};

static void
table_add(struct table *t, const char *const row[])
{
	int i;

	t->cells = realloc(t->cells, sizeof(char *) * (size_t)t->ncols *
	    (size_t)(t->nrows + 1));
	if (t->cells == NULL)
		lc_fatal("out of memory");
	for (i = 0; i < t->ncols; i++) {
		char *c = lc_xstrdup(row[i] ? row[i] : "-"), *p;

		for (p = c; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		t->cells[t->nrows * t->ncols + i] = c;
	}
	t->nrows++;
}

/* Print and free the table. */
static void
table_print(struct table *t)
{
	size_t w[MAXCOLS] = { 0 }, n;
	int r, i;

	for (r = 0; r < t->nrows; r++)
		for (i = 0; i < t->ncols; i++)
			if ((n = strlen(t->cells[r * t->ncols + i])) > w[i])
				w[i] = n;
	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			char *c = t->cells[r * t->ncols + i];

			if (i == t->ncols - 1)
				printf("%s\n", c);
			else
				printf("%-*s  ", (int)w[i], c);
			free(c);
		}
	}
	free(t->cells);
}

/* A USD figure for the table: "?" when unknown (null). Borrows v. */
static const char *
usd(jv rec, const char *key, char *buf, size_t len)
{
	jv v = lc_get(rec, key);

	if (jv_get_kind(v) == JV_KIND_NUMBER)
		snprintf(buf, len, "%.2f", jv_number_value(v));
	else
		snprintf(buf, len, "?");
	jv_free(v);
	return buf;
}

/* Does the array-valued field key of obj (borrowed) hold string s? */
static int
has_string(jv obj, const char *key, const char *s)
{
	jv a = lc_get(obj, key);
	int found = 0;

	if (jv_get_kind(a) == JV_KIND_ARRAY)
		jv_array_foreach(a, i, e) {
			if (jv_get_kind(e) == JV_KIND_STRING &&
			    strcmp(jv_string_value(e), s) == 0)
				found = 1;
			jv_free(e);
		}
	jv_free(a);
	return found;
}

/* A field of obj (borrowed) that must be a string, else null. Owned. */
static jv
str_or_null(jv obj, const char *key)
{
	jv v = lc_get(obj, key);

	if (jv_get_kind(v) == JV_KIND_STRING)
		return v;
	jv_free(v);
	return jv_null();
}

/* A price that is not positive is unknown, not free. */
static jv
price(double v)
{
	return v > 0 ? jv_number(v) : jv_null();
}

/* The region record from an API region (consumed). */
static jv
region_rec(jv r)
{
	jv caps = lc_get(r, "capabilities"), out;

	if (jv_get_kind(caps) != JV_KIND_ARRAY) {
		jv_free(caps);
		caps = jv_array();
	}
	out = JV_OBJECT(jv_string("id"), str_or_null(r, "id"),
	    jv_string("label"), str_or_null(r, "label"),
	    jv_string("country"), str_or_null(r, "country"),
	    jv_string("capabilities"), caps,
	    jv_string("status"), str_or_null(r, "status"));
	jv_free(r);
	return out;
}

static void
emit_regions(jv list, int table)
{
	struct table t = { 5, 0, NULL };
	const char *head[] = { "ID", "LABEL", "COUNTRY", "STATUS",
	    "METADATA" };

	if (table)
		table_add(&t, head);
	jv_array_foreach(list, i, r) {
		if (jv_get_kind(r) != JV_KIND_OBJECT ||
		    !has_string(r, "capabilities", "GPU Linodes")) {
			jv_free(r);
			continue;
		}
		if (table) {
			const char *row[] = { lc_str(r, "id"), lc_str(r,
			    "label"), lc_str(r, "country"), lc_str(r,
			    "status"), has_string(r, "capabilities",
			    "Metadata") ? "yes" : "no" };

			table_add(&t, row);
			jv_free(r);
		} else
			lc_emit(region_rec(r));
	}
	jv_free(list);
	if (table)
		table_print(&t);
}

/* region_prices as [{"region","hourly_cost_usd","monthly_cost_usd"}].
 * Borrows type; returns owned. */
static jv
region_prices(jv type)
{
	jv rp = lc_get(type, "region_prices"), out = jv_array();

	if (jv_get_kind(rp) == JV_KIND_ARRAY)
		jv_array_foreach(rp, i, p) {
			if (jv_get_kind(p) == JV_KIND_OBJECT)
				out = jv_array_append(out, JV_OBJECT(
				    jv_string("region"), str_or_null(p, "id"),
				    jv_string("hourly_cost_usd"),
				    price(lc_num(p, "hourly", 0)),
				    jv_string("monthly_cost_usd"),
				    price(lc_num(p, "monthly", 0))));
			jv_free(p);
		}
	jv_free(rp);
	return out;
}

/* The stock of plan id in avail (borrowed; an array, or null when the API
 * did not say): [{"region","available"}], or null. Returns owned. */
static jv
stock(jv avail, const char *id)
{
	jv out;

	if (jv_get_kind(avail) != JV_KIND_ARRAY)
		return jv_null();
	out = jv_array();
	jv_array_foreach(avail, i, a) {
		const char *plan = lc_str(a, "plan");

		if (plan != NULL && id != NULL && strcmp(plan, id) == 0)
			out = jv_array_append(out, JV_OBJECT(
			    jv_string("region"), str_or_null(a, "region"),
			    jv_string("available"),
			    jv_bool(lc_bool(a, "available"))));
		jv_free(a);
	}
	return out;
}

/* The plan record from an API type (consumed) and the stock list
 * (borrowed). */
static jv
type_rec(jv t, jv avail)
{
	double h, m;
	jv out;

	lc_linode_price(t, NULL, &h, &m);
	out = JV_OBJECT(jv_string("id"), str_or_null(t, "id"),
	    jv_string("label"), str_or_null(t, "label"),
	    jv_string("gpus"), jv_number(lc_num(t, "gpus", 0)),
	    jv_string("vcpus"), jv_number(lc_num(t, "vcpus", 0)),
	    jv_string("memory_mb"), jv_number(lc_num(t, "memory", 0)),
	    jv_string("disk_mb"), jv_number(lc_num(t, "disk", 0)),
	    jv_string("hourly_cost_usd"), price(h),
	    jv_string("monthly_cost_usd"), price(m));
	out = jv_object_set(out, jv_string("region_prices"),
	    region_prices(t));
	out = jv_object_set(out, jv_string("availability"),
	    stock(avail, lc_str(t, "id")));
	jv_free(t);
	return out;
}

/* "us-ord us-sea" where the plan is in stock, "none", or "?". Owned. */
static char *
in_stock(jv rec)
{
	jv a = lc_get(rec, "availability");
	struct lc_buf b = LC_BUF_INIT;

	if (jv_get_kind(a) != JV_KIND_ARRAY)
		lc_buf_addstr(&b, "?");
	else
		jv_array_foreach(a, i, e) {
			if (lc_bool(e, "available") && lc_str(e, "region"))
				lc_buf_printf(&b, "%s%s", b.len ? " " : "",
				    lc_str(e, "region"));
			jv_free(e);
		}
	jv_free(a);
	return b.len ? b.data : lc_xstrdup("none");
}

static void
emit_types(jv list, jv avail, int table)
{
	struct table t = { 8, 0, NULL };
	const char *head[] = { "ID", "GPUS", "VCPUS", "MEMORY", "$/H", "$/MO",
	    "REGION PRICES", "IN STOCK" };

	if (table)
		table_add(&t, head);
	jv_array_foreach(list, i, ty) {
		jv rec;

		if (lc_num(ty, "gpus", 0) < 1) {
			jv_free(ty);
			continue;
		}
		rec = type_rec(ty, avail);
		if (table) {
			char g[16], c[16], mem[32], h[32], m[32], rp[16];
			char *s = in_stock(rec);
			const char *row[] = { lc_str(rec, "id"), g, c, mem,
			    usd(rec, "hourly_cost_usd", h, sizeof(h)),
			    usd(rec, "monthly_cost_usd", m, sizeof(m)), rp, s };
			jv n = lc_get(rec, "region_prices");

			snprintf(g, sizeof(g), "%.0f", lc_num(rec, "gpus", 0));
			snprintf(c, sizeof(c), "%.0f", lc_num(rec, "vcpus", 0));
			snprintf(mem, sizeof(mem), "%.0f GB",
			    lc_num(rec, "memory_mb", 0) / 1024);
			snprintf(rp, sizeof(rp), "%d",
			    jv_array_length(n));
			table_add(&t, row);
			free(s);
			jv_free(rec);
		} else
			lc_emit(rec);
	}
	jv_free(list);
	if (table)
		table_print(&t);
}

static void
emit_whoami(jv p, int table)
{
	jv rec = JV_OBJECT(jv_string("username"), str_or_null(p, "username"),
	    jv_string("email"), str_or_null(p, "email"),
	    jv_string("restricted"), jv_bool(lc_bool(p, "restricted")));

	jv_free(p);
	if (table) {
		struct table t = { 3, 0, NULL };
		const char *head[] = { "USERNAME", "EMAIL", "RESTRICTED" };
		const char *row[] = { lc_str(rec, "username"), lc_str(rec,
		    "email"), lc_bool(rec, "restricted") ? "yes" : "no" };

		table_add(&t, head);
		table_add(&t, row);
		table_print(&t);
		jv_free(rec);
	} else
		lc_emit(rec);
}

/* A failed API call: one error record, exit 1. Consumes err. */
static void
failed(const char *what, jv err)
{
	lc_emit(lc_attach_error(JV_OBJECT(jv_string("name"),
	    jv_string(what)), err));
}

/* An API answer that must be an object or an array, else an error. */
static jv
want(jv v, jv_kind kind)
{
	if (!jv_is_valid(v) || jv_get_kind(v) == kind)
		return v;
	jv_free(v);
	return lc_errorf("bad_reply", "Linode API: not the JSON expected");
}

static void
run(struct lc_http *h, const char *what, int table)
{
	jv v, avail;

	if (strcmp(what, "regions") == 0) {
		v = want(lc_linode_list(h, "/regions", jv_null()),
		    JV_KIND_ARRAY);
		if (!jv_is_valid(v))
			failed(what, v);
		else
			emit_regions(v, table);
	} else if (strcmp(what, "types") == 0) {
		v = want(lc_linode_list(h, "/linode/types", jv_null()),
		    JV_KIND_ARRAY);
		if (!jv_is_valid(v)) {
			failed(what, v);
			return;
		}
		/* Stock is extra: without it the plans still stand. */
		avail = lc_linode_list(h, "/regions/availability", jv_null());
		if (!jv_is_valid(avail)) {
			char *m = lc_error_message(avail);

			if (!lc_quiet)
				lc_warnx("types: no stock data: %s", m);
			free(m);
			jv_free(avail);
			avail = jv_null();
		}
		emit_types(v, avail, table);
		jv_free(avail);
	} else {
		v = want(lc_linode_call(h, "GET", "/profile", jv_null(),
		    jv_null(), 0), JV_KIND_OBJECT);
		if (!jv_is_valid(v))
			failed(what, v);
		else
			emit_whoami(v, table);
	}
}

int
main(int argc, char *argv[])
{
	struct lc_http_opts ho;
	struct lc_config *cfg;
	struct lc_http *h;
	char *token = NULL;
	jv err = jv_invalid();
	int ch, table = 0, rc, whoami;

	lc_init("lc-account");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'h': lc_opts_help(&cmd);
		case 'H': table = 1; break;
		case 'q': lc_quiet = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 1)
		lc_usage(usage_str, argc ? "one question at a time" : NULL);
	if (strcmp(argv[0], "regions") != 0 && strcmp(argv[0], "types") != 0 &&
	    strcmp(argv[0], "whoami") != 0)
		lc_usage(usage_str, "unknown question '%s': ask regions, "
		    "types or whoami", argv[0]);
	whoami = strcmp(argv[0], "whoami") == 0;

	if ((cfg = lc_config_load(&err)) == NULL ||
	    lc_linode_opts(cfg, whoami, &ho, &token, &err) == -1)
		lc_fatal_err(err);
	/* Public lists: a configured token is sent (an account may see
	 * plans others do not), none is fine. */
	if (!whoami && lc_config_token(cfg, &token, NULL, &err) == 0)
		ho.token = token;
	else if (!whoami) {
		const char *code = lc_error_code(err);

		if (strcmp(code, "no_token") != 0 &&
		    strcmp(code, "empty_token") != 0)
			lc_fatal_err(err);
		jv_free(err);
	}
	if (lc_http_global_init() == -1 || (h = lc_http_new(&ho)) == NULL)
		lc_fatal("cannot set up libcurl");
	lc_emit_buffered(1);
	run(h, argv[0], table);
	lc_http_free(h);
	lc_linode_token_free(token);
	rc = lc_finish(NULL);
	lc_config_free(cfg);
	return rc;
}
