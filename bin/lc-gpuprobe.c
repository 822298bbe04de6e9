/*
 * lc-gpuprobe: ask each session's VM what its GPUs are doing (nvidia-smi
 * over SSH), and judge their health. Adds gpus[], driver_version,
 * cuda_version, gpu_processes and gpu_health to each record. --parse reads
 * saved nvidia-smi output instead; --local runs nvidia-smi here.
 */
#include <sys/wait.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "config.h"
#include "gpu.h"
#include "lc.h"
#include "lctime.h"
#include "opts.h"
#include "rec.h"
#include "remote.h"
#include "session.h"
#include "ssh.h"

static const struct lc_opt opts[] = {
	{ 'd', "deep", NULL, "also PCIe links, ECC errors, throttling and "
	  "GPU-to-GPU topology (nvidia-smi -q, topo -m)" },
	{ 'l', "local", NULL, "run nvidia-smi on this machine" },
	{ 'p', "parse", NULL, "read saved nvidia-smi output from stdin" },
	{ 'T', "table", NULL, "a verdict for people instead of records" },
	{ 't', "timeout", "seconds", "time limit to connect and for each "
	  "command" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "show the environment commands run with" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-gpuprobe",
	.summary = "lc-gpuprobe: probe the GPUs of session VMs and judge their "
	    "health",
	.operands = "[name ...]",
	.after = "Session records (or names) in, the same records out with "
	    "gpus[],\ndriver_version, cuda_version, gpu_processes and "
	    "gpu_health added.\nSee lc-gpuprobe(1), lc-records(5).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

struct opts {
	int	 deep, local, parse, table;
	long	 timeout_s;	/* 0: LC_SSH_TIMEOUT, 60 s a run */
};

static struct lc_config *cfg;
static int unhealthy;		/* -T: some record was not ok */

/* One nvidia-smi invocation: its output, both streams, and status. */
struct smi {
	char	*text;		/* stdout (and stderr if it failed) */
	int	 status;
};

/* Runs nvidia-smi with args somewhere: over SSH or here. */
typedef int (*runner)(void *ctx, const char *const args[], struct smi *out,
    jv *err);

struct remote_ctx {
	struct lc_ssh	*ssh;
	jv		 rec;		/* borrowed */
	long		 timeout_ms;
};

/* stdout when it worked; stdout and stderr when it did not. */
static char *
smi_text(struct lc_buf *out, struct lc_buf *err, int ok)
{
	struct lc_buf b = LC_BUF_INIT;

	lc_buf_add(&b, out->data ? out->data : "", out->len);
	if (!ok) {
		if (b.len > 0 && b.data[b.len - 1] != '\n')
			lc_buf_addstr(&b, "\n");
		lc_buf_add(&b, err->data ? err->data : "", err->len);
	}
	return b.data ? b.data : lc_xstrdup("");
}

static int
run_remote(void *ctxp, const char *const args[], struct smi *out, jv *err)
{
	static const char *const needs[] = { "nvidia-smi", NULL };
	struct remote_ctx *ctx = ctxp;
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	const char *argv[8];
	int i, rc;

	argv[0] = "nvidia-smi";
	for (i = 0; args[i] != NULL && i < 6; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	rc = lc_remote_run(ctx->ssh, cfg, ctx->rec, needs, argv,
	    ctx->timeout_ms, &res, err);
	if (rc == 0) {
		/* -v's environment lines, and "lc: nvidia-smi not found" */
		if ((lc_verbose || res.status == LC_REMOTE_MISSING) &&
		    res.err.len > 0)
			fputs(res.err.data, stderr);
		out->status = res.status;
		out->text = smi_text(&res.out, &res.err, res.status == 0);
	}
	lc_ssh_result_free(&res);
	return rc;
}

/* nvidia-smi on this machine, through sh so a missing one reads as such. */
static int
run_local(void *ctx, const char *const args[], struct smi *out, jv *err)
{
	struct lc_buf line = LC_BUF_INIT, text = LC_BUF_INIT;
	char buf[8192];
	size_t n;
	FILE *fp;
	int i, st;

	(void)ctx;
	lc_buf_addstr(&line, "nvidia-smi");
	for (i = 0; args[i] != NULL; i++) {
		lc_buf_addstr(&line, " ");
		lc_remote_quote(&line, args[i]);
	}
	lc_buf_addstr(&line, " 2>&1");
	if ((fp = popen(line.data, "r")) == NULL) {
		*err = lc_errorf("probe_failed", "cannot run nvidia-smi: %s",
		    strerror(errno));
		lc_buf_free(&line);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
		lc_buf_add(&text, buf, n);
	st = pclose(fp);
	lc_buf_free(&line);
	out->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	out->text = text.data ? text.data : lc_xstrdup("");
	return 0;
}

/* Run one nvidia-smi and parse what it printed with parse(). */
static int
probe_step(runner run, void *ctx, const char *const args[],
    jv (*parse)(const char *), jv *out, int *status, jv *err)
{
	struct smi s = { NULL, -1 };

	if (run(ctx, args, &s, err) == -1)
		return -1;
	*out = parse(s.text);
	*status = s.status;
	free(s.text);
	return 0;
}

/*
 * The whole probe: the table (driver, CUDA version, and the errors when
 * the driver is broken), then the CSV query for exact values and the
 * compute apps; with -d, -q and topo -m. Returns a probe or an error.
 */
static jv
probe(const struct opts *o, runner run, void *ctx)
{
	static const char *const table[] = { NULL };
	static const char *const query[] = { "--query-gpu=" LC_GPU_QUERY,
	    "--format=csv,noheader,nounits", NULL };
	static const char *const apps[] = { "--query-compute-apps="
	    LC_GPU_APPS_QUERY, "--format=csv,noheader,nounits", NULL };
	static const char *const q[] = { "-q", NULL };
	static const char *const topo[] = { "topo", "-m", NULL };
	jv p, extra, err = jv_invalid();
	int st;

	if (probe_step(run, ctx, table, lc_gpu_parse, &p, &st, &err) == -1)
		return err;
	if (st != 0 || jv_array_length(lc_get(p, "problems")) > 0)
		return p;	/* it cannot work: the table says why */
	if (probe_step(run, ctx, query, lc_gpu_parse, &extra, &st, &err) == -1)
		goto fail;
	/* An old driver rejects fields it lacks: keep the table's values. */
	if (st == 0 && lc_str(extra, "format") != NULL &&
	    strcmp(lc_str(extra, "format"), "csv") == 0)
		p = lc_gpu_merge(extra, p);
	else
		jv_free(extra);
	if (probe_step(run, ctx, apps, lc_gpu_parse_apps, &extra, &st,
	    &err) == -1)
		goto fail;
	if (st == 0)
		p = lc_gpu_set_processes(p, extra);
	else
		jv_free(extra);
	if (!o->deep)
		return p;
	if (probe_step(run, ctx, q, lc_gpu_parse, &extra, &st, &err) == -1)
		goto fail;
	p = lc_gpu_merge(p, extra);
	if (probe_step(run, ctx, topo, lc_gpu_parse_topo, &extra, &st,
	    &err) == -1)
		goto fail;
	return jv_object_set(p, jv_string("gpu_topology"), extra);
fail:
	jv_free(p);
	return err;
}

/* The GPU count the type promises: "gpus" (a number), else what an
 * earlier probe saved as "gpus_expected". Borrows rec. */
static int
expected_gpus(jv rec)
{
	jv g = lc_get(rec, "gpus");
	int n = jv_get_kind(g) == JV_KIND_NUMBER ? (int)jv_number_value(g) :
	    (int)lc_num(rec, "gpus_expected", 0);

	jv_free(g);
	return n;
}

/* Put a probe's findings on the record. Consumes both. */
static jv
add_probe(jv rec, jv p)
{
	int expected = expected_gpus(rec);

	if (expected > 0)
		rec = jv_object_set(rec, jv_string("gpus_expected"),
		    jv_number(expected));
	rec = jv_object_set(rec, jv_string("gpu_health"),
	    lc_gpu_health(p, expected));
	rec = jv_object_set(rec, jv_string("gpus"), lc_get(p, "gpus"));
	rec = jv_object_set(rec, jv_string("driver_version"),
	    lc_get(p, "driver_version"));
	rec = jv_object_set(rec, jv_string("cuda_version"),
	    lc_get(p, "cuda_version"));
	rec = jv_object_set(rec, jv_string("gpu_processes"),
	    lc_get(p, "processes"));
	if (jv_object_has(jv_copy(p), jv_string("gpu_topology"))) {
		jv topo = lc_get(p, "gpu_topology");
		const char *ic = lc_gpu_interconnect(topo);

		rec = jv_object_set(rec, jv_string("gpu_interconnect"),
		    ic != NULL ? jv_string(ic) : jv_null());
		rec = jv_object_set(rec, jv_string("gpu_topology"), topo);
	}
	jv_free(p);
	return rec;
}

static jv probe_vm(const struct opts *, jv);

/*
 * A group's workers (lc-create --nodes), each probed at its own address
 * as the head was: "nodes_probe" lists every node (the head first) with
 * its label, host, GPUs and health; "group_gpu_health" is ok when all
 * are. A worker that cannot be probed is an error naming it. Consumes
 * rec.
 */
static jv
probe_group(const struct opts *o, jv rec)
{
	jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes"), all;
	jv err = jv_null();
	jv h0 = lc_get(rec, "gpu_health");
	int ok = lc_bool(h0, "ok");

	all = jv_array_append(jv_array(), JV_OBJECT(jv_string("label"),
	    lc_get(rec, "label"), jv_string("host"), lc_get(rec, "ipv4"),
	    jv_string("gpus"), lc_get(rec, "gpus"), jv_string("gpu_health"),
	    h0));
	if (jv_get_kind(nodes) != JV_KIND_ARRAY) {
		jv_free(nodes);
		nodes = jv_array();
	}
	jv_array_foreach(nodes, i, n) {
		jv nr, one;

		if (i == 0 || jv_get_kind(err) != JV_KIND_NULL) {
			jv_free(n);
			continue;
		}
		nr = lc_session_node(rec, i);
		if (jv_get_kind(nr) != JV_KIND_OBJECT) {
			err = lc_errorf("ssh", "node %s has no address yet",
			    lc_str(n, "label") ? lc_str(n, "label") : "?");
			jv_free(nr);
			jv_free(n);
			continue;
		}
		nr = jv_object_delete(nr, jv_string("gpus"));
		nr = probe_vm(o, nr);
		if (jv_object_has(jv_copy(nr), jv_string("error"))) {
			jv e = lc_get(nr, "error");

			err = lc_errorf(lc_str(e, "code") ? lc_str(e, "code") :
			    "ssh", "node %s: %s", lc_str(n, "label"),
			    lc_str(e, "message") ? lc_str(e, "message") : "?");
			jv_free(e);
		} else {
			jv h = lc_get(nr, "gpu_health");

			ok &= lc_bool(h, "ok");
			one = JV_OBJECT(jv_string("label"), lc_get(n, "label"),
			    jv_string("host"), lc_get(n, "host"),
			    jv_string("gpus"), lc_get(nr, "gpus"),
			    jv_string("gpu_health"), h);
			all = jv_array_append(all, one);
		}
		jv_free(nr);
		jv_free(n);
	}
	jv_free(nodes);
	jv_free(g);
	rec = jv_object_set(rec, jv_string("nodes_probe"), all);
	rec = jv_object_set(rec, jv_string("group_gpu_health"), JV_OBJECT(
	    jv_string("ok"), jv_bool(ok && jv_get_kind(err) == JV_KIND_NULL)));
	if (jv_get_kind(err) != JV_KIND_NULL)
		return lc_attach_error(rec, err);
	jv_free(err);
	return rec;
}

/* Probe one session's VM (every node of a group). Consumes rec; returns
 * it with the findings. */
static jv
probe_one(const struct opts *o, jv rec)
{
	jv p;

	if (jv_object_has(jv_copy(rec), jv_string("error")))
		return rec;	/* failed upstream: pass it on untouched */
	p = lc_remote_session(jv_copy(rec));
	if (!jv_is_valid(p))
		return lc_attach_error(rec, p);
	jv_free(rec);
	rec = probe_vm(o, p);
	if (lc_num(rec, "nodes", 1) > 1 && !jv_object_has(jv_copy(rec),
	    jv_string("error")))
		rec = probe_group(o, rec);
	return rec;
}

/* Probe the VM at rec's address. Consumes rec. */
static jv
probe_vm(const struct opts *o, jv rec)
{
	struct remote_ctx ctx = { NULL, rec, 60000 };
	jv err = jv_invalid(), p;

	if (o->timeout_s > 0)
		ctx.timeout_ms = o->timeout_s * 1000;
	lc_progress("%s: connecting", lc_subject(rec));
	ctx.ssh = lc_ssh_open(cfg, rec, o->timeout_s * 1000, 0, &err);
	if (ctx.ssh == NULL)
		return lc_attach_error(rec, err);
	jv_free(err);
	lc_progress("%s: running nvidia-smi", lc_subject(rec));
	p = probe(o, run_remote, &ctx);
	lc_ssh_close(ctx.ssh);
	if (!jv_is_valid(p))
		return lc_attach_error(rec, p);
	return add_probe(rec, p);
}

/* --parse: what nvidia-smi printed, from stdin. */
static jv
parse_stdin(void)
{
	struct lc_buf b = LC_BUF_INIT;
	char buf[8192];
	size_t n;
	jv p;

	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		lc_buf_add(&b, buf, n);
	if (ferror(stdin))
		lc_fatal("cannot read standard input: %s", strerror(errno));
	p = lc_gpu_parse(b.data ? b.data : "");
	lc_buf_free(&b);
	return add_probe(jv_object(), p);
}

/* -T: the verdict for people, on stdout. Consumes rec. */
static void
table_one(jv rec)
{
	jv h = lc_get(rec, "gpu_health"), gpus = lc_get(rec, "gpus"), e;
	jv probs = lc_get(h, "problems");
	const char *name = lc_str(rec, "name") ? lc_str(rec, "name") : "local";

	if (jv_object_has(jv_copy(rec), jv_string("error"))) {
		e = lc_get(rec, "error");
		printf("%s: cannot probe: %s\n", name, lc_str(e, "message"));
		jv_free(e);
		unhealthy = 1;
		goto out;
	}
	printf("%s: %s: %d GPU%s, driver %s, CUDA %s\n", name,
	    lc_bool(h, "ok") ? "healthy" : "UNHEALTHY",
	    jv_get_kind(gpus) == JV_KIND_ARRAY ?
	    jv_array_length(jv_copy(gpus)) : 0,
	    jv_get_kind(gpus) == JV_KIND_ARRAY &&
	    jv_array_length(jv_copy(gpus)) == 1 ? "" : "s",
	    lc_str(rec, "driver_version") ? lc_str(rec, "driver_version") : "-",
	    lc_str(rec, "cuda_version") ? lc_str(rec, "cuda_version") : "-");
	if (!lc_bool(h, "ok"))
		unhealthy = 1;
	if (jv_get_kind(gpus) == JV_KIND_ARRAY)
		jv_array_foreach(gpus, i, g) {
			printf("  GPU %.0f  %-28s %4.0f C  %6.0f / %6.0f MiB  "
			    "%3.0f%%  %4.0f / %4.0f W\n",
			    lc_num(g, "index", i), lc_str(g, "name") ?
			    lc_str(g, "name") : "?",
			    lc_num(g, "temperature_c", 0),
			    lc_num(g, "memory_used_mib", 0),
			    lc_num(g, "memory_total_mib", 0),
			    lc_num(g, "utilization_pct", 0),
			    lc_num(g, "power_w", 0),
			    lc_num(g, "power_limit_w", 0));
			jv_free(g);
		}
	if (jv_get_kind(probs) == JV_KIND_ARRAY)
		jv_array_foreach(probs, i, pr) {
			printf("  ! %s: %s\n", lc_str(pr, "code"),
			    lc_str(pr, "message"));
			jv_free(pr);
			(void)i;
		}
out:
	jv_free(probs);
	jv_free(h);
	jv_free(gpus);
	jv_free(rec);
}

static void
output(const struct opts *o, jv rec)
{
	if (o->table) {
		if (jv_object_has(jv_copy(rec), jv_string("error")))
			lc_note_failure();
		table_one(rec);
	} else
		lc_emit(rec);
}

static void
load_config(void)
{
	jv err = jv_invalid();

	if ((cfg = lc_config_load(&err)) == NULL)
		lc_fatal_err(err);
	jv_free(err);
}

int
main(int argc, char *argv[])
{
	struct opts o = { 0 };
	struct lc_reader *in;
	jv rec;
	int ch, rc;

	lc_init("lc-gpuprobe");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'd': o.deep = 1; break;
		case 'h': lc_opts_help(&cmd);
		case 'l': o.local = 1; break;
		case 'p': o.parse = 1; break;
		case 'q': lc_quiet = 1; break;
		case 'T': o.table = 1; break;
		case 't':
			if (lc_parse_duration(optarg, &o.timeout_s) == -1 ||
			    o.timeout_s == 0)
				lc_usage(usage_str, "bad timeout '%s': write "
				    "seconds, e.g. 30", optarg);
			break;
		case 'v': lc_verbose = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if (o.parse + o.local > 1)
		lc_usage(usage_str, "--parse and --local exclude each other");
	if ((o.parse || o.local) && argc > 0)
		lc_usage(usage_str, "--parse and --local take no names");
	if (o.parse) {
		output(&o, parse_stdin());
		rc = lc_finish(NULL);
		return rc == 0 && o.table && unhealthy ? 1 : rc;
	}
	if (o.local) {
		jv p = probe(&o, run_local, NULL);

		output(&o, jv_is_valid(p) ? add_probe(jv_object(), p) :
		    lc_attach_error(jv_object(), p));
		rc = lc_finish(NULL);
		return rc == 0 && o.table && unhealthy ? 1 : rc;
	}
	if ((in = lc_reader_open(argc, argv, "name")) == NULL)
		lc_usage(usage_str, NULL);
	load_config();
	while (lc_reader_next(in, &rec))
		output(&o, probe_one(&o, rec));
	rc = lc_finish(in);
	lc_config_free(cfg);
	return rc == 0 && o.table && unhealthy ? 1 : rc;
}
