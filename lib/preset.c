/* preset: presets.yaml, the GPU types table, and resolving a spec. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "lc.h"
#include "ledger.h"
#include "lctime.h"
#include "preset.h"
#include "yamljv.h"

#ifndef LC_DATADIR
#define LC_DATADIR "/usr/local/share/linode-coder"
#endif

jv
lc_preset_parse(const char *text, size_t len, const char *path)
{
	static const char *const maps[] = { "types", "presets", NULL };
	jv doc = lc_yaml_to_jv(text, len, path), m;
	int i;

	if (!jv_is_valid(doc))
		return lc_error_from_invalid(doc, "bad_presets");
	if (jv_get_kind(doc) == JV_KIND_NULL) {
		jv_free(doc);
		doc = jv_object();
	}
	if (jv_get_kind(doc) != JV_KIND_OBJECT) {
		jv_free(doc);
		return lc_errorf("bad_presets", "%s: expected a map with "
		    "\"types:\" and \"presets:\"", path);
	}
	for (i = 0; maps[i] != NULL; i++) {
		m = lc_get(doc, maps[i]);
		if (jv_get_kind(m) == JV_KIND_NULL)
			m = jv_object();
		if (jv_get_kind(m) != JV_KIND_OBJECT) {
			jv_free(m);
			jv_free(doc);
			return lc_errorf("bad_presets", "%s: \"%s:\" must be a "
			    "map of names to entries", path, maps[i]);
		}
		jv_object_foreach(m, k, e) {
			int bad = jv_get_kind(e) != JV_KIND_OBJECT;

			jv_free(e);
			if (bad) {
				jv err = lc_errorf("bad_presets", "%s: %s "
				    "\"%s\" must be a map of fields", path,
				    maps[i], jv_string_value(k));

				jv_free(k);
				jv_free(m);
				jv_free(doc);
				return err;
			}
			jv_free(k);
		}
		doc = jv_object_set(doc, jv_string(maps[i]), m);
	}
	return doc;
}

/* Read one file into the tables; a missing optional file is no error. */
static jv
load_into(jv db, const char *path, int required)
{
	char *text = NULL;
	size_t len = 0;
	jv t;

	if (lc_read_file(path, &text, &len) == -1) {
		if (!required && errno == ENOENT)
			return db;
		jv_free(db);
		return lc_errorf(required ? "no_presets" : "bad_presets",
		    "cannot read %s: %s", path, strerror(errno));
	}
	t = lc_preset_parse(text, len, path);
	free(text);
	if (!jv_is_valid(t)) {
		jv_free(db);
		return t;
	}
	db = jv_object_set(db, jv_string("types"), jv_object_merge(
	    lc_get(db, "types"), lc_get(t, "types")));
	db = jv_object_set(db, jv_string("presets"), jv_object_merge(
	    lc_get(db, "presets"), lc_get(t, "presets")));
	jv_free(t);
	return jv_object_set(db, jv_string("files"), jv_array_append(
	    lc_get(db, "files"), jv_string(path)));
}

/* presets.yaml one level above the directory of the running binary. */
static char *
source_tree_file(const char *argv0)
{
	char exe[PATH_MAX], *slash, *p;
	ssize_t n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0)
		exe[n] = '\0';
	else if (argv0 == NULL || strchr(argv0, '/') == NULL ||
	    strlen(argv0) >= sizeof(exe))
		return NULL;
	else
		memcpy(exe, argv0, strlen(argv0) + 1);
	if ((slash = strrchr(exe, '/')) == NULL)
		return NULL;
	*slash = '\0';
	p = lc_path_join(exe, "../presets.yaml");
	if (access(p, R_OK) == 0)
		return p;
	free(p);
	return NULL;
}

static char *
user_file(void)
{
	char *base = lc_config_dir("linode-coder");
	char *p = lc_path_join(base, "presets.yaml");

	free(base);
	return p;
}

jv
lc_preset_load(const char *argv0)
{
	const char *env = getenv("LC_PRESETS");
	char *shipped, *user;
	jv db = jv_object();

	db = jv_object_set(db, jv_string("types"), jv_object());
	db = jv_object_set(db, jv_string("presets"), jv_object());
	db = jv_object_set(db, jv_string("files"), jv_array());
	if (env != NULL && *env != '\0')
		shipped = lc_xstrdup(env);
	else if ((shipped = source_tree_file(argv0)) == NULL)
		shipped = lc_xstrdup(LC_DATADIR "/presets.yaml");
	db = load_into(db, shipped, 1);
	free(shipped);
	if (!jv_is_valid(db))
		return db;
	user = user_file();
	db = load_into(db, user, 0);
	free(user);
	return db;
}

/* "a, b, c": the keys of a map, for messages. */
static char *
names_of(jv map)
{
	struct lc_buf b = LC_BUF_INIT;
	jv keys = jv_keys(jv_copy(map));

	jv_array_foreach(keys, i, k) {
		lc_buf_printf(&b, "%s%s", i > 0 ? ", " : "",
		    jv_string_value(k));
		jv_free(k);
	}
	jv_free(keys);
	if (b.data == NULL)
		lc_buf_addstr(&b, "(none)");
	return b.data;
}

static jv
entry(jv db, const char *map, const char *name)
{
	jv m = lc_get(db, map), e;

	if (name == NULL || jv_get_kind(m) != JV_KIND_OBJECT) {
		jv_free(m);
		return jv_null();
	}
	e = jv_object_get(m, jv_string(name));
	if (jv_get_kind(e) != JV_KIND_OBJECT) {
		jv_free(e);
		return jv_null();
	}
	return e;
}

/*
 * The entry of map called name, with idkey set to name; else an error
 * (code) saying "<what> '<name>': use one of <names>, <fix>".
 */
static jv
lookup(jv db, const char *map, const char *idkey, const char *name,
    const char *code, const char *what, const char *fix)
{
	jv e = entry(db, map, name), m, err;
	char *names;

	if (jv_get_kind(e) == JV_KIND_OBJECT)
		return jv_object_set(e, jv_string(idkey), jv_string(name));
	m = lc_get(db, map);
	names = names_of(m);
	jv_free(m);
	err = lc_errorf(code, "%s '%.64s': use one of %s, %s", what,
	    name ? name : "", names, fix);
	free(names);
	return err;
}

jv
lc_preset_find(jv db, const char *name)
{
	return lookup(db, "presets", "name", name, "unknown_preset",
	    "no preset named", "or add it to "
	    "~/.config/linode-coder/presets.yaml (lc-cloudinit -L lists them)");
}

jv
lc_preset_type(jv db, const char *id)
{
	return lookup(db, "types", "id", id, "unknown_type",
	    "unknown GPU type", "or describe it under types: in "
	    "~/.config/linode-coder/presets.yaml");
}

/* Copy the named fields of src into r. Consumes r, borrows src. */
static jv
pick(jv r, jv src, const char *const *keys)
{
	for (; *keys != NULL; keys++)
		r = jv_object_set(r, jv_string(*keys), lc_get(src, *keys));
	return r;
}

jv
lc_preset_list(jv db)
{
	static const char *const pkeys[] = { "model", "served_model_name",
		"type", "vram_need_gib", "description", "expected", NULL };
	double nodes;
	jv presets = lc_get(db, "presets"), keys, out = jv_array();

	keys = jv_keys(jv_copy(presets));
	jv_array_foreach(keys, i, k) {
		jv p = lc_preset_find(db, jv_string_value(k));
		jv t = lc_preset_type(db, lc_str(p, "type"));
		jv v = lc_get(p, "vllm"), r = jv_object();
		double gpus = lc_num(t, "gpus", -1);

		r = jv_object_set(r, jv_string("name"), k);
		r = pick(r, p, pkeys);
		r = jv_object_set(r, jv_string("gpus"), gpus < 0 ?
		    lc_get(p, "gpus") : jv_number(gpus));
		r = jv_object_set(r, jv_string("gpu"), lc_get(t, "gpu"));
		r = jv_object_set(r, jv_string("max_model_len"),
		    lc_get(v, "max_model_len"));
		r = jv_object_set(r, jv_string("vram_gib"), gpus < 0 ?
		    jv_null() : jv_number(gpus * lc_num(t, "vram_gib", 0)));
		r = jv_object_set(r, jv_string("hourly_usd_estimate"),
		    lc_get(t, "hourly_usd"));
		nodes = lc_num(p, "nodes", 1);
		r = jv_object_set(r, jv_string("nodes"), jv_number(nodes));
		r = jv_object_set(r, jv_string("hourly_usd_estimate_total"),
		    lc_num(t, "hourly_usd", -1) < 0 ? jv_null() :
		    jv_number(lc_round_cents(nodes * lc_num(t, "hourly_usd",
		    0))));
		out = jv_array_append(out, r);
		jv_free(p);
		jv_free(t);
		jv_free(v);
	}
	jv_free(keys);
	jv_free(presets);
	return out;
}

/* b over a, with "vllm" merged one level deep. Consumes both. */
static jv
overlay(jv a, jv b)
{
	if (jv_get_kind(b) != JV_KIND_OBJECT) {
		jv_free(b);
		return a;
	}
	jv_object_foreach(b, k, v) {
		jv old = lc_get(a, jv_string_value(k));

		if (strcmp(jv_string_value(k), "vllm") == 0 &&
		    jv_get_kind(old) == JV_KIND_OBJECT &&
		    jv_get_kind(v) == JV_KIND_OBJECT)
			v = jv_object_merge(old, v);
		else
			jv_free(old);
		a = jv_object_set(a, k, v);
	}
	jv_free(b);
	return a;
}

/* The vllm settings every spec has, before the preset's. */
static jv
vllm_defaults(void)
{
	jv v = jv_object();

	v = jv_object_set(v, jv_string("gpu_memory_utilization"),
	    jv_number(0.9));
	v = jv_object_set(v, jv_string("max_model_len"), jv_null());
	v = jv_object_set(v, jv_string("min_max_model_len"), jv_null());
	v = jv_object_set(v, jv_string("dtype"), jv_string("auto"));
	v = jv_object_set(v, jv_string("quantization"), jv_null());
	v = jv_object_set(v, jv_string("kv_cache_dtype"), jv_string("auto"));
	v = jv_object_set(v, jv_string("tool_call_parser"), jv_null());
	v = jv_object_set(v, jv_string("enforce_eager"), jv_false());
	v = jv_object_set(v, jv_string("extra_args"), jv_array());
	return jv_object_set(v, jv_string("env"), jv_object());
}

/* The spec fields a preset gives (borrows p). */
static jv
from_preset(jv p)
{
	static const char *const keys[] = { "model", "served_model_name",
		"type", "num_attention_heads", "vram_need_gib", "expected",
		"nodes", NULL };
	jv s = jv_object_set(jv_object(), jv_string("preset"),
	    lc_get(p, "name"));

	s = pick(s, p, keys);
	return jv_object_set(s, jv_string("vllm"), overlay(vllm_defaults(),
	    lc_get(p, "vllm")));
}

/*
 * The model was changed away from the preset's: take what depends on the
 * model from another preset of that model, else mark it unknown.
 */
static jv
other_model(jv db, jv spec, const char *model)
{
	jv presets = lc_get(db, "presets"), found = jv_null(), v;

	jv_object_foreach(presets, k, p) {
		if (jv_get_kind(found) == JV_KIND_NULL &&
		    lc_str(p, "model") != NULL &&
		    strcmp(lc_str(p, "model"), model) == 0)
			found = jv_copy(p);
		jv_free(k);
		jv_free(p);
	}
	jv_free(presets);
	v = lc_get(spec, "vllm");
	if (jv_get_kind(found) == JV_KIND_NULL) {
		spec = jv_object_set(spec, jv_string("num_attention_heads"),
		    jv_null());
		spec = jv_object_set(spec, jv_string("vram_need_gib"),
		    jv_null());
		/* Its context and quantization are its own (vLLM reads them
		 * from the model's config). */
		v = jv_object_set(v, jv_string("quantization"), jv_null());
		v = jv_object_set(v, jv_string("max_model_len"), jv_null());
		v = jv_object_set(v, jv_string("min_max_model_len"),
		    jv_null());
	} else {
		jv fv = lc_get(found, "vllm");

		spec = jv_object_set(spec, jv_string("num_attention_heads"),
		    lc_get(found, "num_attention_heads"));
		spec = jv_object_set(spec, jv_string("vram_need_gib"),
		    lc_get(found, "vram_need_gib"));
		v = jv_object_set(v, jv_string("quantization"),
		    lc_get(fv, "quantization"));
		jv_free(fv);
	}
	jv_free(found);
	return jv_object_set(spec, jv_string("vllm"), v);
}

jv
lc_spec_resolve(jv db, jv layers)
{
	jv over = jv_object(), p, spec;
	const char *name, *model;

	if (jv_get_kind(layers) != JV_KIND_ARRAY) {
		jv_free(layers);
		return lc_errorf("bad_spec", "no spec layers");
	}
	jv_array_foreach(layers, i, l)
		over = overlay(over, l);
	jv_free(layers);
	name = lc_str(over, "preset");
	p = lc_preset_find(db, name);
	if (!jv_is_valid(p)) {
		jv_free(over);
		return p;
	}
	spec = from_preset(p);
	model = lc_str(over, "model");
	if (model != NULL && lc_str(p, "model") != NULL &&
	    strcmp(model, lc_str(p, "model")) != 0)
		spec = other_model(db, spec, model);
	jv_free(p);
	spec = overlay(spec, over);
	spec = jv_object_set(spec, jv_string("warnings"), jv_array());
	if (lc_num(spec, "num_attention_heads", -1) <= 0)
		spec = jv_object_set(spec, jv_string("warnings"),
		    jv_array_append(lc_get(spec, "warnings"), jv_string(
		    "the model's attention heads and memory need are unknown "
		    "(no preset has it): tensor parallelism and memory are not "
		    "checked; set num_attention_heads and vram_need_gib")));
	return lc_spec_check(db, spec);
}

int
lc_spec_tp(int gpus, int heads)
{
	int t;

	for (t = gpus; t > 1; t--)
		if (heads <= 0 || heads % t == 0)
			return t;
	return 1;
}

/* s non-empty, at most max bytes, of letters, digits and extra. */
static int
word_ok(const char *s, const char *extra, size_t max)
{
	const char *p;

	if (s == NULL || *s == '\0' || strlen(s) > max)
		return 0;
	for (p = s; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr(extra, *p) == NULL)
			return 0;
	return 1;
}

/* No control characters (they would break vllm.env's one-line arrays). */
static int
text_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* A Block Storage label, as the API allows it. */
static int
volume_ok(const char *s)
{
	return word_ok(s, "-_", 32) && strlen(s) >= 2 &&
	    isalpha((unsigned char)s[0]) && strstr(s, "--") == NULL &&
	    strstr(s, "__") == NULL;
}

static jv
bad_field(const char *field, const char *val, const char *rule)
{
	return lc_errorf("bad_spec", "%s '%.80s' is not valid: %s", field,
	    val, rule);
}

struct numfield {
	const char	*key;
	int		 whole;	/* a whole number from 1 up */
};

/* Each named field of obj is absent, null or a number. Borrows obj. */
static jv
check_numbers(jv obj, const char *prefix, const struct numfield *f)
{
	jv x;

	for (; f->key != NULL; f++) {
		double d;
		int bad;

		x = lc_get(obj, f->key);
		d = jv_get_kind(x) == JV_KIND_NUMBER ? jv_number_value(x) : -1;
		bad = jv_get_kind(x) != JV_KIND_NULL && (d < 0 ||
		    (f->whole && (d < 1 || d != (double)(long)d || d > 1e9)));
		jv_free(x);
		if (bad)
			return lc_errorf("bad_spec", "%s%s must be %s", prefix,
			    f->key, f->whole ? "a whole number from 1 up" :
			    "a number");
	}
	return jv_true();
}

/* The kinds of the fields that are not words. Borrows spec. */
static jv
check_kinds(jv spec)
{
	static const struct numfield nums[] = {
		{ "num_attention_heads", 1 }, { "vram_need_gib", 0 },
		{ "nodes", 1 }, { NULL, 0 }
	};
	jv x = lc_get(spec, "public");
	jv_kind k = jv_get_kind(x);
	const char *ep = lc_str(spec, "endpoint");
	int port = 0;

	jv_free(x);
	if (k != JV_KIND_NULL && k != JV_KIND_TRUE && k != JV_KIND_FALSE)
		return lc_errorf("bad_spec", "public must be true or false");
	x = lc_get(spec, "volume");
	k = jv_get_kind(x);
	jv_free(x);
	if (k != JV_KIND_NULL && k != JV_KIND_STRING)
		return lc_errorf("bad_spec", "volume must be a label or null");
	if (lc_str(spec, "model") == NULL)
		return lc_errorf("bad_spec", "no model: give a preset or -m "
		    "with a Hugging Face id");
	if (lc_num(spec, "nodes", 1) > LC_NODES_MAX)
		return lc_errorf("bad_spec", "nodes %.0f: at most %d nodes "
		    "make one session", lc_num(spec, "nodes", 1),
		    LC_NODES_MAX);
	x = lc_get(spec, "endpoint");
	k = jv_get_kind(x);
	jv_free(x);
	if (k != JV_KIND_NULL && (ep == NULL || strncmp(ep, "http://", 7) ||
	    strchr(ep + 7, ':') == NULL || sscanf(strchr(ep + 7, ':') + 1,
	    "%d", &port) != 1 || port < 1 || port > 65535))
		return lc_errorf("bad_spec", "endpoint must look like "
		    "http://127.0.0.1:8000/v1 (a port from 1 to 65535)");
	return check_numbers(spec, "", nums);
}

/* Words that go into the VM's files: refuse anything odd, early. */
static jv
check_words(jv spec)
{
	static const struct { const char *key, *extra, *rule; } w[] = {
		{ "model", "._/-", "a Hugging Face id like Org/Model-7B" },
		{ "served_model_name", "._/-:", "letters, digits, . _ / - :" },
		{ "region", "-", "a Linode region id like us-ord" },
		{ "image", "._/-", "a Linode image id like linode/ubuntu24.04" },
		{ "vllm_image", "._/-:@", "an image like vllm/vllm-openai:TAG" },
		{ NULL, NULL, NULL }
	};
	static const char *const vw[] = { "dtype", "quantization",
		"kv_cache_dtype", "tool_call_parser", NULL };
	jv v = lc_get(spec, "vllm"), x, err = check_kinds(spec);
	int i;

	for (i = 0; w[i].key != NULL && jv_is_valid(err); i++) {
		x = lc_get(spec, w[i].key);
		if (jv_get_kind(x) != JV_KIND_NULL &&
		    (jv_get_kind(x) != JV_KIND_STRING ||
		    !word_ok(jv_string_value(x), w[i].extra, 200)))
			err = bad_field(w[i].key, jv_get_kind(x) ==
			    JV_KIND_STRING ? jv_string_value(x) : "(not text)",
			    w[i].rule);
		jv_free(x);
	}
	for (i = 0; vw[i] != NULL && jv_is_valid(err); i++) {
		x = lc_get(v, vw[i]);
		if (jv_get_kind(x) != JV_KIND_NULL &&
		    (jv_get_kind(x) != JV_KIND_STRING ||
		    !word_ok(jv_string_value(x), "_-", 64)))
			err = bad_field(vw[i], jv_get_kind(x) ==
			    JV_KIND_STRING ? jv_string_value(x) : "(not text)",
			    "letters, digits, _ and -");
		jv_free(x);
	}
	jv_free(v);
	if (jv_is_valid(err) && lc_str(spec, "volume") != NULL &&
	    !volume_ok(lc_str(spec, "volume")))
		err = bad_field("volume", lc_str(spec, "volume"), "a Block "
		    "Storage label: a letter, then letters, digits, - and _, "
		    "2 to 32 characters, no -- or __");
	return err;
}

/* extra_args strings, env NAME -> string, numbers in range. */
static jv
check_vllm(jv v)
{
	static const struct numfield nums[] = {
		{ "tensor_parallel_size", 1 }, { "gpu_memory_utilization", 0 },
		{ "max_model_len", 1 }, { "min_max_model_len", 1 },
		{ "pipeline_parallel_size", 1 }, { NULL, 0 }
	};
	jv x = lc_get(v, "extra_args"), err = check_numbers(v, "vllm.", nums);
	double u = lc_num(v, "gpu_memory_utilization", 0.9);
	double len = lc_num(v, "max_model_len", -1);
	double min = lc_num(v, "min_max_model_len", -1);

	if (jv_is_valid(err) && jv_get_kind(x) != JV_KIND_ARRAY)
		err = lc_errorf("bad_spec", "vllm.extra_args must be a list "
		    "of strings");
	else if (jv_is_valid(err))
		jv_array_foreach(x, i, a) {
			if (jv_is_valid(err) && (jv_get_kind(a) !=
			    JV_KIND_STRING || !text_ok(jv_string_value(a))))
				err = lc_errorf("bad_spec", "vllm.extra_args[%d] "
				    "must be a string without control "
				    "characters", i);
			jv_free(a);
		}
	jv_free(x);
	x = lc_get(v, "env");
	if (jv_is_valid(err) && jv_get_kind(x) != JV_KIND_OBJECT)
		err = lc_errorf("bad_spec", "vllm.env must be a map of NAME: "
		    "value");
	else if (jv_is_valid(err))
		jv_object_foreach(x, k, val) {
			if (jv_is_valid(err) && (!word_ok(jv_string_value(k),
			    "_", 64) || isdigit((unsigned char)
			    jv_string_value(k)[0]) || jv_get_kind(val) !=
			    JV_KIND_STRING || !text_ok(jv_string_value(val))))
				err = lc_errorf("bad_spec", "vllm.env: '%.64s' "
				    "needs a NAME of letters, digits and _ and "
				    "a one-line string value",
				    jv_string_value(k));
			jv_free(k);
			jv_free(val);
		}
	jv_free(x);
	if (jv_is_valid(err) && (u <= 0 || u > 1))
		err = lc_errorf("bad_spec", "vllm.gpu_memory_utilization %g is "
		    "out of range: use a fraction like 0.9", u);
	if (jv_is_valid(err) && len >= 0 && min > len)
		err = lc_errorf("bad_spec", "max_model_len %.0f is below the "
		    "preset's minimum context %.0f: raise it, or pick a "
		    "smaller model", len, min);
	return err;
}

/* The cheapest type that holds need GiB with a usable TP. Owned id. */
static char *
cheapest_fit(jv db, double need, int heads, int need_bf16)
{
	jv types = lc_get(db, "types");
	char *best = NULL;
	double best_price = 0;

	jv_object_foreach(types, k, t) {
		int gpus = (int)lc_num(t, "gpus", 0);
		double per = lc_num(t, "vram_gib", 0);
		double price = lc_num(t, "hourly_usd", 1e9);

		if (gpus > 0 && lc_spec_tp(gpus, heads) * per >= need &&
		    (!need_bf16 || lc_num(t, "compute_capability", 0) >= 8) &&
		    (best == NULL || price < best_price)) {
			free(best);
			best = lc_xstrdup(jv_string_value(k));
			best_price = price;
		}
		jv_free(k);
		jv_free(t);
	}
	jv_free(types);
	return best;
}

static int
is_bf16(const char *d)
{
	return d != NULL && (strcmp(d, "bfloat16") == 0 ||
	    strcmp(d, "bf16") == 0);
}

/* Tensor parallel size: the GPU count, or what divides the heads. */
static jv
derive_tp(jv spec, jv t, int *tp)
{
	jv v = lc_get(spec, "vllm");
	int gpus = (int)lc_num(t, "gpus", 1);
	int heads = (int)lc_num(spec, "num_attention_heads", 0);
	double want = lc_num(v, "tensor_parallel_size", 0);
	const char *type = lc_str(t, "id");

	jv_free(v);
	if (want > 0) {
		*tp = (int)want;
		if (*tp > gpus)
			return lc_errorf("tp_gpus", "tensor_parallel_size %d is "
			    "more than the %d GPU(s) of %s: use %d or a type "
			    "with more GPUs", *tp, gpus, type, gpus);
		if (heads > 0 && heads % *tp != 0)
			return lc_errorf("tp_heads", "tensor_parallel_size %d "
			    "does not divide the model's %d attention heads: "
			    "use %d", *tp, heads, lc_spec_tp(*tp, heads));
		return jv_true();
	}
	*tp = lc_spec_tp(gpus, heads);
	return jv_true();
}

/* The type's facts onto the spec. Consumes spec; borrows t. */
static jv
put_type(jv spec, jv t, int tp)
{
	double gpus = lc_num(t, "gpus", 1), nodes = lc_num(spec, "nodes", 1);
	jv v = lc_get(spec, "vllm");

	/* The group: one pipeline stage per node, each node's GPUs tensor
	 * parallel; what it costs is the sum of its nodes. */
	spec = jv_object_set(spec, jv_string("nodes"), jv_number(nodes));
	spec = jv_object_set(spec, jv_string("gpus_total"),
	    jv_number(nodes * gpus));
	spec = jv_object_set(spec, jv_string("vram_gib_total"),
	    jv_number(nodes * gpus * lc_num(t, "vram_gib", 0)));
	spec = jv_object_set(spec, jv_string("hourly_usd_estimate_total"),
	    lc_num(t, "hourly_usd", -1) < 0 ? jv_null() :
	    jv_number(lc_round_cents(nodes * lc_num(t, "hourly_usd", 0))));
	v = jv_object_set(v, jv_string("pipeline_parallel_size"),
	    nodes > 1 ? jv_number(nodes) : jv_null());

	spec = jv_object_set(spec, jv_string("gpus"), jv_number(gpus));
	spec = jv_object_set(spec, jv_string("gpu"), lc_get(t, "gpu"));
	spec = jv_object_set(spec, jv_string("compute_capability"),
	    lc_get(t, "compute_capability"));
	spec = jv_object_set(spec, jv_string("vram_gib"),
	    jv_number(gpus * lc_num(t, "vram_gib", 0)));
	spec = jv_object_set(spec, jv_string("hourly_usd_estimate"),
	    lc_get(t, "hourly_usd"));
	v = jv_object_set(v, jv_string("tensor_parallel_size"),
	    jv_number(tp));
	return jv_object_set(spec, jv_string("vllm"), v);
}

static jv
warn(jv spec, const char *msg)
{
	return jv_object_set(spec, jv_string("warnings"), jv_array_append(
	    lc_get(spec, "warnings"), jv_string(msg)));
}

/*
 * The fewest nodes of type t whose GPUs (tp of each) hold need GiB, or 0
 * when LC_NODES_MAX do not. Borrows t.
 */
static int
nodes_fit(jv t, int tp, double need)
{
	double per = tp * lc_num(t, "vram_gib", 0);
	int n;

	for (n = 1; n <= LC_NODES_MAX; n++)
		if (n * per >= need)
			return n;
	return 0;
}

/* The model needs more nodes: say the fewest that do, and their cost. */
static jv
more_nodes(jv spec, jv t, int tp, double need, double have, int fit)
{
	int nodes = (int)lc_num(spec, "nodes", 1);

	return lc_errorf("vram_too_small", "%s needs %g GiB of GPU memory but "
	    "%d x %s gives it %g GiB (%d x %d x %s): use --nodes %d (%d x %s, "
	    "%d GPUs, %g GiB, ~$%.2f/h in all) or a smaller or quantized "
	    "model", lc_str(spec, "model"), need, nodes, lc_str(t, "id"),
	    have, nodes, tp, lc_str(t, "gpu") ? lc_str(t, "gpu") : "GPU", fit,
	    fit, lc_str(t, "id"), fit * tp, fit * tp * lc_num(t, "vram_gib",
	    0), fit * lc_num(t, "hourly_usd", 0));
}

/* Memory: the model's need against the GPUs tensor parallelism uses,
 * on every node of the group. */
static jv
check_vram(jv db, jv spec, jv t, int tp)
{
	double need = lc_num(spec, "vram_need_gib", -1);
	int nodes = (int)lc_num(spec, "nodes", 1), nfit;
	double have = nodes * tp * lc_num(t, "vram_gib", 0);
	jv v = lc_get(spec, "vllm");
	int bf16 = is_bf16(lc_str(v, "dtype"));
	char *fit;
	jv err, ft;

	jv_free(v);
	if (need <= have)
		return jv_true();
	nfit = nodes_fit(t, tp, need);
	fit = nodes > 1 ? NULL : cheapest_fit(db, need, (int)lc_num(spec,
	    "num_attention_heads", 0), bf16);
	if (fit == NULL && nfit > nodes)
		return more_nodes(spec, t, tp, need, have, nfit);
	ft = lc_preset_type(db, fit);
	if (fit != NULL)
		err = lc_errorf("vram_too_small", "%s needs %g GiB of GPU "
		    "memory but %s gives it %g GiB (%d x %s): use --type %s "
		    "(%g x %s, ~$%.2f/h) or a smaller or quantized model",
		    lc_str(spec, "model"), need, lc_str(t, "id"), have, tp,
		    lc_str(t, "gpu") ? lc_str(t, "gpu") : "GPU", fit,
		    lc_num(ft, "gpus", 0), lc_str(ft, "gpu") ? lc_str(ft,
		    "gpu") : "GPU", lc_num(ft, "hourly_usd", 0));
	else
		err = lc_errorf("vram_too_small", "%s needs %g GiB of GPU "
		    "memory and no %d nodes of a known type have that much: "
		    "use a smaller or quantized model", lc_str(spec, "model"),
		    need, LC_NODES_MAX);
	jv_free(ft);
	free(fit);
	return err;
}

/* bfloat16 needs compute capability 8.0; "auto" becomes half below it. */
static jv
check_dtype(jv spec, jv t)
{
	jv v = lc_get(spec, "vllm");
	double cc = lc_num(t, "compute_capability", 8.0);
	const char *d = lc_str(v, "dtype");

	if (cc >= 8.0) {
		jv_free(v);
		return spec;
	}
	if (is_bf16(d)) {
		jv err = lc_errorf("dtype_unsupported", "the %s of %s "
		    "(compute capability %.1f) cannot run bfloat16: use dtype "
		    "half, or a type with compute capability 8.0 or more "
		    "(RTX 4000 Ada)", lc_str(t, "gpu") ? lc_str(t, "gpu") :
		    "GPU", lc_str(t, "id"), cc);

		jv_free(v);
		jv_free(spec);
		return err;
	}
	if (d == NULL || strcmp(d, "auto") == 0)
		v = jv_object_set(v, jv_string("dtype"), jv_string("half"));
	return jv_object_set(spec, jv_string("vllm"), v);
}

jv
lc_spec_check(jv db, jv spec)
{
	jv t, err = jv_invalid(), v;
	const char *name = lc_str(spec, "name");
	int tp = 1;
	char msg[256];

	if (name == NULL) {
		jv_free(spec);
		return lc_errorf("bad_name", "no session name: give one with "
		    "-N NAME or as an operand");
	}
	if (lc_name_check(name, &err) == -1) {
		jv_free(spec);
		return err;
	}
	if (jv_get_kind(v = lc_get(spec, "vllm")) != JV_KIND_OBJECT) {
		jv_free(v);
		jv_free(spec);
		return lc_errorf("bad_spec", "\"vllm\" must be a map");
	}
	err = check_vllm(v);
	jv_free(v);
	if (jv_is_valid(err)) {
		jv_free(err);
		err = check_words(spec);
	}
	if (!jv_is_valid(err)) {
		jv_free(spec);
		return err;
	}
	jv_free(err);
	t = lc_preset_type(db, lc_str(spec, "type"));
	if (jv_is_valid(t) && (lc_num(t, "gpus", 0) < 1 ||
	    lc_num(t, "vram_gib", 0) <= 0)) {
		err = lc_errorf("bad_presets", "GPU type %s needs gpus and "
		    "vram_gib (per GPU) in presets.yaml", lc_str(t, "id"));
		jv_free(t);
		t = err;
	}
	if (!jv_is_valid(t)) {
		jv_free(spec);
		return t;
	}
	if (!jv_is_valid(err = derive_tp(spec, t, &tp)) ||
	    !jv_is_valid(err = check_vram(db, spec, t, tp))) {
		jv_free(t);
		jv_free(spec);
		return err;
	}
	if (tp < lc_num(t, "gpus", 1)) {
		snprintf(msg, sizeof(msg), "tensor parallel size %d uses only "
		    "%d of the %.0f GPUs of %s%s", tp, tp, lc_num(t, "gpus", 1),
		    lc_str(t, "id"), lc_spec_tp((int)lc_num(t, "gpus", 1),
		    (int)lc_num(spec, "num_attention_heads", 0)) == tp ?
		    ": the model's attention heads do not divide by more" :
		    "");
		spec = warn(spec, msg);
	}
	spec = check_dtype(put_type(spec, t, tp), t);
	jv_free(t);
	return spec;
}
