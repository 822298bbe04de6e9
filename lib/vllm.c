/* vllm: render and read the vLLM settings file of a session's VM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "config.h"
#include "lc.h"
#include "linode.h"
#include "vllm.h"

int
lc_vllm_port(jv rec)
{
	const char *e = lc_str(rec, "endpoint"), *p;
	int port;

	if (e == NULL || (p = strstr(e, "://")) == NULL ||
	    (p = strchr(p + 3, ':')) == NULL || sscanf(p + 1, "%d", &port) != 1 ||
	    port < 1 || port > 65535)
		return 8000;
	return port;
}

static jv
add_opt(jv args, const char *flag, jv v)
{
	char num[64];

	switch (jv_get_kind(v)) {
	case JV_KIND_STRING:
		args = jv_array_append(args, jv_string(flag));
		args = jv_array_append(args, v);
		return args;
	case JV_KIND_NUMBER:
		snprintf(num, sizeof(num), "%.10g", jv_number_value(v));
		args = jv_array_append(args, jv_string(flag));
		args = jv_array_append(args, jv_string(num));
		break;
	case JV_KIND_TRUE:
		args = jv_array_append(args, jv_string(flag));
		break;
	default:
		break;
	}
	jv_free(v);
	return args;
}

jv
lc_vllm_args(jv rec)
{
	static const struct { const char *field, *flag; } opts[] = {
		{ "tensor_parallel_size", "--tensor-parallel-size" },
		{ "pipeline_parallel_size", "--pipeline-parallel-size" },
		{ "gpu_memory_utilization", "--gpu-memory-utilization" },
		{ "max_model_len", "--max-model-len" },
		{ "dtype", "--dtype" },
		{ "quantization", "--quantization" },
		{ "kv_cache_dtype", "--kv-cache-dtype" },
		{ "enforce_eager", "--enforce-eager" },
		{ "disable_custom_all_reduce", "--disable-custom-all-reduce" },
		{ NULL, NULL }
	};
	jv v = lc_get(rec, "vllm"), args = jv_array(), extra;
	int i;

	args = add_opt(args, "--served-model-name",
	    lc_get(rec, "served_model_name"));
	for (i = 0; opts[i].field != NULL; i++)
		args = add_opt(args, opts[i].flag, lc_get(v, opts[i].field));
	/* A group of nodes: one vLLM on the head drives them through Ray. */
	if (lc_num(v, "pipeline_parallel_size", 1) > 1)
		args = add_opt(args, "--distributed-executor-backend",
		    jv_string("ray"));
	if (lc_str(v, "tool_call_parser") != NULL) {
		args = jv_array_append(args,
		    jv_string("--enable-auto-tool-choice"));
		args = add_opt(args, "--tool-call-parser",
		    lc_get(v, "tool_call_parser"));
	}
	extra = lc_get(v, "extra_args");
	if (jv_get_kind(extra) == JV_KIND_ARRAY) {
		jv_array_foreach(extra, j, a) {
			if (jv_get_kind(a) == JV_KIND_STRING)
				args = jv_array_append(args, a);
			else
				jv_free(a);
		}
	}
	jv_free(extra);
	jv_free(v);
	return args;
}

char *
lc_vllm_apply_body(jv rec, const char *dir, int write_env, int stale)
{
	struct lc_buf b = LC_BUF_INIT;

	if (write_env) {
		lc_buf_addstr(&b, "d=");
		lc_shquote(&b, dir);
		lc_buf_addstr(&b, "\nmkdir -p \"$d\"\numask 022\n"
		    "cat >\"$d/.vllm.env.tmp\"\n"
		    "mv -f \"$d/.vllm.env.tmp\" \"$d/vllm.env\"\n");
	}
	if (stale)
		lc_buf_printf(&b, "for c in $(docker ps -q --filter "
		    "publish=%d 2>/dev/null || true); do docker rm -f \"$c\" "
		    ">/dev/null 2>&1 || true; done\ndocker rm -f %s >/dev/null "
		    "2>&1 || true\n", lc_vllm_port(rec), LC_VLLM_CONTAINER);
	/* A restart with new settings starts at once: the unit's back-off
	 * (lib/vmfiles: start-vllm) is for failed starts of the old ones. */
	lc_buf_addstr(&b, "rm -f \"${LC_REMOTE_ROOT%/}/var/lib/linode-coder/"
	    "starts\"\n");
	lc_buf_printf(&b, "systemctl reset-failed %s >/dev/null 2>&1 || "
	    "true\nsystemctl restart %s\n", LC_VLLM_UNIT, LC_VLLM_UNIT);
	return b.data;
}

static void
assign(struct lc_buf *b, const char *name, const char *val)
{
	lc_buf_printf(b, "%s=", name);
	lc_shquote(b, val != NULL ? val : "");
	lc_buf_addstr(b, "\n");
}

/*
 * A node of a group (lc-create --nodes): its role (the record's
 * "ray_role", else head), the node count, the GPUs the cluster must show,
 * the head's VPC address and the VPC interface; run-vllm hands such a
 * node to run-ray. Nothing for a single VM.
 */
static void
group_env(struct lc_buf *b, jv rec)
{
	double nodes = lc_num(rec, "nodes", 1);
	char num[32];

	if (nodes <= 1)
		return;
	lc_buf_addstr(b, "# A node of a group of VMs: Ray joins them over the "
	    "VPC (run-ray).\n");
	assign(b, "LC_RAY_ROLE", lc_str(rec, "ray_role") ? lc_str(rec,
	    "ray_role") : "head");
	snprintf(num, sizeof(num), "%.0f", nodes);
	assign(b, "LC_RAY_NODES", num);
	snprintf(num, sizeof(num), "%.0f", nodes * lc_num(rec, "gpus", 1));
	assign(b, "LC_RAY_GPUS", num);
	assign(b, "LC_RAY_HEAD", LC_VPC_PREFIX "2");
	assign(b, "LC_RAY_IFACE", LC_VPC_IFACE);
}

char *
lc_vllm_env_render(jv rec)
{
	struct lc_buf b = LC_BUF_INIT;
	jv args = lc_vllm_args(rec), v = lc_get(rec, "vllm"), env;
	char port[16];
	const char *image = lc_str(rec, "vllm_image");

	lc_buf_addstr(&b, "# linode-coder: what the vLLM unit runs. Sourced "
	    "by bash; rewritten by lc-heal\n# and coder switch-model.\n");
	/* The pin lives once, as LC_VLLM_IMAGE's default (lib/config.c). */
	assign(&b, "VLLM_IMAGE", image ? image :
	    lc_config_default("LC_VLLM_IMAGE"));
	assign(&b, "VLLM_MODEL", lc_str(rec, "model"));
	assign(&b, "VLLM_BIND", lc_bool(rec, "public") ? "0.0.0.0" :
	    "127.0.0.1");
	snprintf(port, sizeof(port), "%d", lc_vllm_port(rec));
	assign(&b, "VLLM_PORT", port);
	lc_buf_addstr(&b, "VLLM_ARGS=(");
	jv_array_foreach(args, i, a) {
		if (i > 0)
			lc_buf_addstr(&b, " ");
		lc_shquote(&b, jv_string_value(a));
		jv_free(a);
	}
	lc_buf_addstr(&b, ")\nVLLM_ENV=(");
	env = lc_get(v, "env");
	if (jv_get_kind(env) == JV_KIND_OBJECT) {
		int first = 1;

		jv_object_foreach(env, k, val) {
			if (jv_get_kind(val) == JV_KIND_STRING) {
				struct lc_buf kv = LC_BUF_INIT;

				lc_buf_printf(&kv, "%s=%s", jv_string_value(k),
				    jv_string_value(val));
				if (!first)
					lc_buf_addstr(&b, " ");
				lc_shquote(&b, kv.data);
				lc_buf_free(&kv);
				first = 0;
			}
			jv_free(k);
			jv_free(val);
		}
	}
	lc_buf_addstr(&b, ")\n");
	group_env(&b, rec);
	jv_free(env);
	jv_free(v);
	jv_free(args);
	return b.data;
}

/* Read one single-quoted word (with '\'' escapes) at *p. */
static int
read_word(const char **pp, struct lc_buf *out)
{
	const char *p = *pp;

	lc_buf_reset(out);
	lc_buf_add(out, "", 0);
	while (*p == '\'') {
		const char *e = strchr(p + 1, '\'');

		if (e == NULL)
			return -1;
		lc_buf_add(out, p + 1, (size_t)(e - p - 1));
		p = e + 1;
		if (p[0] == '\\' && p[1] == '\'') {
			lc_buf_add(out, "'", 1);
			p += 2;
		}
	}
	*pp = p;
	return 0;
}

jv
lc_vllm_env_parse(const char *text)
{
	static const struct { const char *var, *key; } scalars[] = {
		{ "VLLM_IMAGE=", "image" }, { "VLLM_MODEL=", "model" },
		{ "VLLM_BIND=", "bind" }, { "VLLM_PORT=", "port" },
		{ NULL, NULL }
	};
	struct lc_buf w = LC_BUF_INIT;
	jv out = jv_object_set(jv_object(), jv_string("args"), jv_array());
	const char *line = text;
	int i;

	out = jv_object_set(out, jv_string("env"), jv_object());
	for (; line != NULL && *line != '\0';
	    line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *p = line;

		for (i = 0; scalars[i].var != NULL; i++) {
			size_t n = strlen(scalars[i].var);

			if (strncmp(p, scalars[i].var, n) != 0)
				continue;
			p += n;
			if (read_word(&p, &w) == -1)
				goto bad;
			out = jv_object_set(out, jv_string(scalars[i].key),
			    jv_string(w.data));
		}
		if (strncmp(p, "VLLM_ARGS=(", 11) == 0 ||
		    strncmp(p, "VLLM_ENV=(", 10) == 0) {
			int is_args = p[5] == 'A';
			jv list = is_args ? jv_array() : jv_object();

			p = strchr(p, '(') + 1;
			while (*p == '\'') {
				if (read_word(&p, &w) == -1) {
					jv_free(list);
					goto bad;
				}
				if (is_args)
					list = jv_array_append(list,
					    jv_string(w.data));
				else if (strchr(w.data, '=') != NULL) {
					char *eq = strchr(w.data, '=');

					*eq = '\0';
					list = jv_object_set(list,
					    jv_string(w.data),
					    jv_string(eq + 1));
				}
				while (*p == ' ')
					p++;
			}
			if (*p != ')') {
				jv_free(list);
				goto bad;
			}
			out = jv_object_set(out, jv_string(is_args ? "args" :
			    "env"), list);
		}
	}
	lc_buf_free(&w);
	return out;
bad:
	lc_buf_free(&w);
	jv_free(out);
	return lc_errorf("bad_vllm_env", "vllm.env is damaged: a value is not "
	    "closed by a quote");
}
