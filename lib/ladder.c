/* ladder: the next vLLM settings to try after a diagnosed start failure. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "ladder.h"
#include "lc.h"

/* --- GPU facts ----------------------------------------------------------- */

static double
cc_value(jv v)
{
	if (jv_get_kind(v) == JV_KIND_NUMBER)
		return jv_number_value(v);
	if (jv_get_kind(v) == JV_KIND_STRING)
		return strtod(jv_string_value(v), NULL);
	return -1;
}

jv
lc_ladder_gpu_facts(jv rec)
{
	jv gpus = lc_get(rec, "gpus"), out = jv_object();
	double count = -1, cc = -1, mem = -1;
	char buf[16];

	if (jv_get_kind(gpus) == JV_KIND_NUMBER)
		count = jv_number_value(gpus);
	else if (jv_get_kind(gpus) == JV_KIND_ARRAY) {
		count = jv_array_length(jv_copy(gpus));
		jv_array_foreach(gpus, i, g) {
			jv ccv = lc_get(g, "compute_capability");
			double c = cc_value(ccv);
			double m = lc_num(g, "memory_total_mib", -1);

			jv_free(ccv);
			if (c > 0 && (cc < 0 || c < cc))
				cc = c;
			if (m > 0 && (mem < 0 || m < mem))
				mem = m;
			jv_free(g);
		}
	}
	jv_free(gpus);
	out = jv_object_set(out, jv_string("count"), count > 0 ?
	    jv_number(count) : jv_null());
	snprintf(buf, sizeof(buf), "%.1f", cc);
	out = jv_object_set(out, jv_string("compute_capability"), cc > 0 ?
	    jv_string(buf) : jv_null());
	return jv_object_set(out, jv_string("memory_total_mib"), mem > 0 ?
	    jv_number(mem) : jv_null());
}

/* --- the general plan, for a diagnosis' "fix" ----------------------------- */

/* The general plan by category: automatic or not, and its steps. */
static const struct {
	const char	*cat;
	int		 automatic;
	const char	*steps[4];
} plans[] = {
	{ "kv_cache", 1, { "raise --gpu-memory-utilization by 0.05 (at most "
	    "0.95)" } },
	{ "oom_load", 1, { "lower --gpu-memory-utilization by 0.05",
	    "add --enforce-eager (no CUDA graphs)",
	    "halve --max-model-len (not below the minimum you set)" } },
	{ "nccl", 1, { "--ipc=host (always on in linode-coder's unit)",
	    "set NCCL_P2P_DISABLE=1", "add --disable-custom-all-reduce" } },
	{ "tp_mismatch", 1, { "set --tensor-parallel-size to the largest "
	    "value that divides the attention heads and is at most the GPU "
	    "count" } },
	{ "dtype", 1, { "set --dtype half (GPUs below compute capability 8.0 "
	    "cannot run bfloat16)" } },
	{ "port_in_use", 1, { "stop the stale container that holds the port, "
	    "then restart" } },
	{ "model_access", 0, { "accept the model's licence on huggingface.co "
	    "with the account of your token",
	    "put a token with read access in HF_TOKEN "
	    "(~/.config/linode-coder/secrets)",
	    "check the model name, then run coder heal or coder up again" } },
	{ "unsupported_arch", 0, { "use a vLLM image that supports this "
	    "architecture (VLLM_IMAGE, a newer vllm/vllm-openai tag), or "
	    "another model" } },
	{ "driver", 0, { "check the GPU with coder exec NAME nvidia-smi",
	    "a fresh VM usually fixes it: coder down NAME, then coder up" } },
	{ "healthy", 0, { NULL } },
	{ NULL, 0, { "read the evidence, or the whole log with coder logs "
	    "NAME" } }
};

jv
lc_ladder_fix(const char *cat, jv facts)
{
	double fit = lc_num(facts, "estimated_max_model_len",
	    lc_num(facts, "kv_cache_tokens", -1));
	jv a = jv_array();
	char buf[128];
	int i, j;

	for (i = 0; plans[i].cat != NULL; i++)
		if (cat != NULL && strcmp(cat, plans[i].cat) == 0)
			break;
	if (plans[i].cat != NULL && strcmp(plans[i].cat, "nccl") == 0 &&
	    lc_str(facts, "multinode") != NULL) {
		/* Between the nodes of a group: the interface, not P2P. */
		a = jv_array_append(a, jv_string("check that every node has its "
		    "VPC address on eth1, where NCCL_SOCKET_IFNAME and "
		    "GLOO_SOCKET_IFNAME point (run-ray sets them)"));
		return jv_object_set(jv_object_set(jv_object(),
		    jv_string("automatic"), jv_false()), jv_string("steps"), a);
	}
	for (j = 0; j < 4 && plans[i].steps[j] != NULL; j++)
		a = jv_array_append(a, jv_string(plans[i].steps[j]));
	if (plans[i].cat != NULL && strcmp(plans[i].cat, "kv_cache") == 0) {
		if (fit > 0)
			snprintf(buf, sizeof(buf), "lower --max-model-len to "
			    "%.0f, what the log says fits", fit);
		else
			snprintf(buf, sizeof(buf), "halve --max-model-len (not "
			    "below the minimum you set)");
		a = jv_array_append(a, jv_string(buf));
	}
	return jv_object_set(jv_object_set(jv_object(),
	    jv_string("automatic"), jv_bool(plans[i].automatic)),
	    jv_string("steps"), a);
}

/* --- the next rung ------------------------------------------------------- */

/*
 * A candidate: settings, what changed, and its rung (a name, recorded in
 * the heal round; "stop_container" is an action, the others settings).
 * Consumes v.
 */
static jv
cand(jv list, jv v, const char *rung, const char *fmt, ...)
    LC_PRINTF(4, 5);

static jv
cand(jv list, jv v, const char *rung, const char *fmt, ...)
{
	char action[256];
	va_list ap;
	jv c;

	va_start(ap, fmt);
	vsnprintf(action, sizeof(action), fmt, ap);
	va_end(ap);
	c = jv_object_set(jv_object(), jv_string("vllm"), v);
	c = jv_object_set(c, jv_string("action"), jv_string(action));
	c = jv_object_set(c, jv_string("rung"), jv_string(rung));
	c = jv_object_set(c, jv_string("kind"), jv_string(strcmp(rung,
	    "stop_container") == 0 ? "stop_container" : "settings"));
	return jv_array_append(list, c);
}

static double
round2(double x)
{
	return floor(x * 100 + 0.5) / 100;
}

static jv
set(jv v, const char *k, jv val)
{
	return jv_object_set(v, jv_string(k), val);
}

/* A smaller max_model_len: fit when the log says, else half; never below
 * the user's minimum; -1 when nothing smaller is allowed. */
static double
smaller_len(jv v, jv facts, double fit)
{
	double cur = lc_num(v, "max_model_len", lc_num(facts, "max_seq_len",
	    -1));
	double min = lc_num(v, "min_max_model_len", 0), t;

	if (fit > 0)
		t = fit;
	else if (cur > 0)
		t = floor(cur / 2 / 256) * 256;
	else
		return -1;
	if (fit > 0 && fit < min)
		return -1;	/* what fits is below the user's minimum */
	if (t < min)
		t = min;
	if (t < 256 || (cur > 0 && t >= cur))
		return -1;
	return t;
}

/* The rungs that change utilization from u to nu, or max_model_len. */
static jv
rung_util(jv list, jv v, const char *rung, double u, double nu)
{
	return cand(list, set(jv_copy(v), "gpu_memory_utilization",
	    jv_number(nu)), rung, "gpu_memory_utilization %.2f -> %.2f", u,
	    nu);
}

static jv
rung_len(jv list, jv v, jv facts, double fit)
{
	double t = smaller_len(v, facts, fit);

	if (t <= 0)
		return list;
	return cand(list, set(jv_copy(v), "max_model_len", jv_number(t)),
	    "max_model_len", "max_model_len %.0f -> %.0f", lc_num(v,
	    "max_model_len", lc_num(facts, "max_seq_len", 0)), t);
}

static jv
rungs_kv(jv v, jv facts)
{
	jv list = jv_array();
	double u = lc_num(v, "gpu_memory_utilization", LC_LADDER_UTIL_DEFAULT);
	double fit = lc_num(facts, "estimated_max_model_len",
	    lc_num(facts, "kv_cache_tokens", -1));

	if (u < LC_LADDER_UTIL_MAX - 1e-9)
		list = rung_util(list, v, "raise_utilization", u,
		    round2(fmin(LC_LADDER_UTIL_MAX,
		    u + LC_LADDER_UTIL_STEP)));
	return rung_len(list, v, facts, fit);
}

static jv
rungs_oom(jv v, jv facts)
{
	jv list = jv_array();
	double u = lc_num(v, "gpu_memory_utilization", LC_LADDER_UTIL_DEFAULT);
	double nu = round2(u - LC_LADDER_UTIL_STEP);
	double fr = lc_num(facts, "gpu_memory_free_mib", -1);
	double tot = lc_num(facts, "gpu_memory_total_mib", -1);

	/* "Free memory on device ... less than desired utilization": fit
	 * what is free now (another process holds the rest). */
	if (lc_num(facts, "gpu_memory_utilization", -1) > 0 && fr > 0 &&
	    tot > 0)
		nu = fmin(nu, floor(fr / tot * 100) / 100 - 0.01);
	if (nu < LC_LADDER_UTIL_MIN)
		nu = LC_LADDER_UTIL_MIN;
	if (nu < u - 1e-9)
		list = rung_util(list, v, "lower_utilization", u, nu);
	if (!lc_bool(v, "enforce_eager"))
		list = cand(list, set(jv_copy(v), "enforce_eager",
		    jv_true()), "enforce_eager", "enforce_eager on (no CUDA graphs)");
	return rung_len(list, v, facts, -1);
}

static jv
rungs_nccl(jv v)
{
	jv list = jv_array(), env = lc_get(v, "env");

	if (jv_get_kind(env) != JV_KIND_OBJECT) {
		jv_free(env);
		env = jv_object();
	}
	if (lc_str(env, "NCCL_P2P_DISABLE") == NULL ||
	    strcmp(lc_str(env, "NCCL_P2P_DISABLE"), "1") != 0)
		list = cand(list, set(jv_copy(v), "env", jv_object_set(
		    jv_copy(env), jv_string("NCCL_P2P_DISABLE"),
		    jv_string("1"))), "nccl_p2p_disable",
		    "env NCCL_P2P_DISABLE=1");
	jv_free(env);
	if (!lc_bool(v, "disable_custom_all_reduce"))
		list = cand(list, set(jv_copy(v), "disable_custom_all_reduce",
		    jv_true()), "disable_custom_all_reduce",
		    "disable_custom_all_reduce on");
	return list;
}

static jv
rungs_tp(jv v, jv gpu, jv facts)
{
	jv list = jv_array();
	double cur = lc_num(v, "tensor_parallel_size",
	    lc_num(facts, "tensor_parallel_size", 1));
	double n = lc_num(gpu, "count", lc_num(facts, "gpu_count", -1));
	double heads = lc_num(facts, "num_attention_heads", -1);
	int t;

	if (n <= 0)
		n = cur - 1;	/* unknown: try smaller than what failed */
	for (t = (int)n; t >= 1; t--) {
		if (heads > 0 ? fmod(heads, t) != 0 : (t & (t - 1)) != 0)
			continue;	/* heads unknown: a power of two */
		if (t == (int)cur)
			continue;
		list = cand(list, set(jv_copy(v), "tensor_parallel_size",
		    jv_number(t)), "tensor_parallel_size",
		    "tensor_parallel_size %.0f -> %d", cur, t);
	}
	return list;
}

static jv
rungs_dtype(jv v, jv gpu, jv facts)
{
	jv list = jv_array();
	const char *dt = lc_str(v, "dtype");
	const char *cc = lc_str(gpu, "compute_capability");

	if (cc == NULL)
		cc = lc_str(facts, "compute_capability");
	if (lc_str(facts, "quantization_refused") != NULL)
		return list;	/* half precision does not help */
	if (cc != NULL && strtod(cc, NULL) >= 8.0 &&
	    lc_str(facts, "dtype_refused") == NULL)
		return list;
	if (dt == NULL || (strcmp(dt, "half") != 0 &&
	    strcmp(dt, "float16") != 0))
		list = cand(list, set(jv_copy(v), "dtype", jv_string("half")),
		    "dtype_half", "dtype %s -> half", dt != NULL ? dt : "auto");
	return list;
}

/*
 * Whether candidate c may run now: its settings are new (neither the
 * current ones nor any round's "from" or "to"), and a rung that must run
 * once (a utilization step, stopping the container) has not run before.
 */
static int
allowed(jv heal, jv c, jv cur)
{
	static const char *const once[] = { "raise_utilization",
	    "lower_utilization", "stop_container", NULL };
	const char *rung = lc_str(c, "rung");
	jv s = lc_get(c, "vllm");
	int ok = 1, i, is_once = 0;

	for (i = 0; once[i] != NULL; i++)
		if (strcmp(rung, once[i]) == 0)
			is_once = 1;
	if (strcmp(rung, "stop_container") != 0 && jv_equal(jv_copy(s),
	    jv_copy(cur)))
		ok = 0;
	if (jv_get_kind(heal) == JV_KIND_ARRAY) {
		jv_array_foreach(heal, j, h) {
			jv from = lc_get(h, "from"), to = lc_get(h, "to");
			const char *r = lc_str(h, "rung");

			if (is_once && r != NULL && strcmp(r, rung) == 0)
				ok = 0;
			if (strcmp(rung, "stop_container") != 0 &&
			    (jv_equal(jv_copy(from), jv_copy(s)) |
			    jv_equal(jv_copy(to), jv_copy(s))))
				ok = 0;
			jv_free(from);
			jv_free(to);
			jv_free(h);
		}
	}
	jv_free(s);
	return ok;
}

/* What the user can do when the ladder has nothing left, by category. */
static const struct {
	const char *cat, *msg;
} no_fix_msgs[] = {
	{ "oom_load", "nothing left to try for the out-of-memory: the model "
	    "does not fit this GPU; use a type with more GPU memory or more "
	    "GPUs, or a quantized model (AWQ, GPTQ, FP8)" },
	{ "nccl", "NCCL still fails with P2P and custom all-reduce off; try "
	    "tensor_parallel_size 1 or a fresh VM (coder down NAME, then "
	    "coder up)" },
	{ "tp_mismatch", "no tensor_parallel_size up to the GPU count divides "
	    "the model's attention heads (or all were tried); pick a GPU type "
	    "whose count fits the model" },
	{ "dtype", "dtype is already half, or the GPU supports bfloat16: the "
	    "dtype is not the problem; read the evidence" },
	{ "port_in_use", "the port is still in use after the stale container "
	    "was removed; find what listens on it with coder exec NAME ss "
	    "-ltnp" },
	{ "model_access", "no automatic fix: the model cannot be downloaded; "
	    "accept its licence on huggingface.co with the account of your "
	    "token, put a read token in HF_TOKEN (~/.config/linode-coder/"
	    "secrets), or check the model name, then run coder heal NAME" },
	{ "unsupported_arch", "no automatic fix: this vLLM does not support "
	    "the model's architecture; set VLLM_IMAGE to a newer "
	    "vllm/vllm-openai tag, or choose another model" },
	{ "driver", "no automatic fix: the container sees no working NVIDIA "
	    "GPU; check coder exec NAME nvidia-smi, and if it fails replace "
	    "the VM (coder down NAME, then coder up)" },
	{ NULL, "no automatic fix for an unrecognised failure; read the "
	    "evidence, or the log with coder logs NAME" }
};

static jv
no_fix(const char *cat, jv v, jv facts)
{
	int i;

	if (strcmp(cat, "dtype") == 0 &&
	    lc_str(facts, "quantization_refused") != NULL)
		return lc_errorf("no_fix", "no automatic fix: this GPU "
		    "(compute capability %s) cannot run the %s quantization; "
		    "choose a GPU type with a newer GPU, or a model without it",
		    lc_str(facts, "compute_capability") ?
		    lc_str(facts, "compute_capability") : "too low",
		    lc_str(facts, "quantization_refused"));
	if (strcmp(cat, "kv_cache") == 0) {
		char min[64] = "";

		/* Without a minimum of the user's, say none. */
		if (lc_num(v, "min_max_model_len", 0) > 0)
			snprintf(min, sizeof(min), " (your minimum is %.0f)",
			    lc_num(v, "min_max_model_len", 0));
		return lc_errorf("no_fix", "nothing left to try for the KV "
		    "cache: gpu_memory_utilization is at %.2f and max_model_len "
		    "cannot go lower%s; use a GPU type with more memory, a "
		    "quantized model, or a smaller %s", LC_LADDER_UTIL_MAX, min,
		    *min ? "minimum context" : "context");
	}
	for (i = 0; no_fix_msgs[i].cat != NULL; i++)
		if (strcmp(cat, no_fix_msgs[i].cat) == 0)
			break;
	return lc_errorf("no_fix", "%s", no_fix_msgs[i].msg);
}

jv
lc_ladder_next(jv vllm, jv gpu, jv diag, jv heal)
{
	const char *cat = lc_str(diag, "category");
	jv facts = lc_get(diag, "facts"), v, list, out = jv_invalid();

	if (cat == NULL)
		cat = "unknown";
	if (strcmp(cat, "healthy") == 0) {
		jv_free(facts);
		return lc_errorf("no_fix", "the log shows vLLM listening, yet it "
		    "does not answer: nothing to fix from the log; read it with "
		    "coder logs NAME");
	}
	if (strcmp(cat, "nccl") == 0 && lc_str(facts, "multinode") != NULL) {
		jv_free(facts);
		return lc_errorf("no_fix", "NCCL between the nodes of a group "
		    "failed: no setting of vLLM's mends that; check that every "
		    "node has its VPC address on eth1 (NCCL_SOCKET_IFNAME and "
		    "GLOO_SOCKET_IFNAME, which run-ray sets), or 'coder down' "
		    "and up again");
	}
	v = jv_get_kind(vllm) == JV_KIND_OBJECT ? jv_copy(vllm) : jv_object();
	if (strcmp(cat, "kv_cache") == 0)
		list = rungs_kv(v, facts);
	else if (strcmp(cat, "oom_load") == 0)
		list = rungs_oom(v, facts);
	else if (strcmp(cat, "nccl") == 0)
		list = rungs_nccl(v);
	else if (strcmp(cat, "tp_mismatch") == 0)
		list = rungs_tp(v, gpu, facts);
	else if (strcmp(cat, "dtype") == 0)
		list = rungs_dtype(v, gpu, facts);
	else if (strcmp(cat, "port_in_use") == 0)
		list = cand(jv_array(), jv_copy(v), "stop_container",
		    "stop the stale container");
	else
		list = jv_array();
	jv_array_foreach(list, i, c) {
		if (!jv_is_valid(out) && allowed(heal, c, v))
			out = jv_copy(c);
		jv_free(c);
	}
	jv_free(list);
	if (!jv_is_valid(out)) {
		jv_free(out);
		out = no_fix(cat, v, facts);
	}
	jv_free(v);
	jv_free(facts);
	return out;
}
