/* diagnose: classify a vLLM start-up log as it streams past. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jv.h>

#include "diagnose.h"
#include "linode.h"
#include "ladder.h"
#include "lc.h"

#define EVIDENCE_MAX	6	/* evidence lines kept for a candidate */
#define EVIDENCE_LEN	480	/* bytes kept of an evidence line */
#define RING_MAX	6	/* the last error lines, for "unknown" */
#define TAIL_MAX	3	/* the last lines of any kind */
#define CLUSTER_GAP	80	/* lines: closer matches are one failure */
#define CAT_OTHER	LC_DIAG_NCATEGORIES	/* a named failure with no fix */

enum level { LV_NONE, LV_DEBUG, LV_INFO, LV_WARNING, LV_ERROR };

/* A failure seen in the log: its category, lines and facts. */
struct cand {
	int		 cat;	/* LC_DIAG_UNKNOWN: none yet */
	unsigned long	 last;	/* line number of its last match */
	int		 n;
	char		*ev[EVIDENCE_MAX];
	jv		 facts;
};

struct lc_diag {
	char		 raw[LC_DIAG_LINE_MAX + 1];	/* the line being read */
	size_t		 len;
	char		 buf[LC_DIAG_LINE_MAX + 1];	/* its normalised text */
	unsigned long	 lineno;	/* lines with text */
	struct cand	 best;		/* last decisive failure */
	struct cand	 hint;		/* last failure named by frames */
	unsigned long	 listen;	/* last line showing the server up */
	char		*listen_ev;	/* that line */
	unsigned long	 stopped;	/* last line showing it shut down */
	unsigned long	 gfatal;	/* last generic fatal line */
	unsigned long	 lasterr;	/* last error line */
	char		*ring[RING_MAX];	/* last error lines */
	unsigned long	 nring;
	char		*tail[TAIL_MAX];	/* last lines */
	unsigned long	 ntail;
	jv		 gfacts;	/* facts from anywhere (model, version) */
};

static const char *const names[LC_DIAG_NCATEGORIES] = {
	"unknown", "healthy", "oom_load", "kv_cache", "nccl", "tp_mismatch",
	"dtype", "model_access", "unsupported_arch", "port_in_use", "driver"
};

const char *
lc_diag_category_name(enum lc_diag_category c)
{
	if ((int)c < 0 || c >= LC_DIAG_NCATEGORIES)
		return NULL;
	return names[c];
}

int
lc_diag_category_parse(const char *name)
{
	int i;

	for (i = 0; name != NULL && i < LC_DIAG_NCATEGORIES; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

/* --- matching helpers ---------------------------------------------------- */

/* Case-insensitive strstr for ASCII needles. */
static const char *
findi(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	int c0 = tolower((unsigned char)needle[0]);

	for (; *hay != '\0'; hay++) {
		if (tolower((unsigned char)*hay) == c0 &&
		    strncasecmp(hay, needle, n) == 0)
			return hay;
	}
	return NULL;
}

/* The number right after key in s (digits, "," separators, a "."), or -1. */
static double
num_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	char tmp[32];
	size_t n = 0;

	if (p == NULL)
		return -1;
	for (p += strlen(key); *p == ' '; p++)
		;
	for (; (isdigit((unsigned char)*p) || *p == ',' || *p == '.') &&
	    n < sizeof(tmp) - 1; p++)
		if (*p != ',')
			tmp[n++] = *p;
	tmp[n] = '\0';
	if (n == 0 || !isdigit((unsigned char)tmp[0]))
		return -1;
	return strtod(tmp, NULL);
}

/* The number right before key in s ("16.0 GiB KV cache" -> 16.0), or -1. */
static double
num_before(const char *s, const char *key)
{
	const char *p = strstr(s, key), *e;

	if (p == NULL)
		return -1;
	while (p > s && p[-1] == ' ')
		p--;
	e = p;
	while (p > s && (isdigit((unsigned char)p[-1]) || p[-1] == '.'))
		p--;
	if (p == e || !isdigit((unsigned char)*p))
		return -1;
	return strtod(p, NULL);
}

/* A size "224.00 MiB" at p in MiB, or -1. */
static double
mib_at(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	char *e;
	double v;

	if (p == NULL)
		return -1;
	p += strlen(key);
	v = strtod(p, &e);
	if (e == p)
		return -1;
	while (*e == ' ')
		e++;
	if (strncmp(e, "GiB", 3) == 0 || strncmp(e, "GB", 2) == 0)
		return v * 1024;
	if (strncmp(e, "KiB", 3) == 0 || strncmp(e, "KB", 2) == 0)
		return v / 1024;
	if (strncmp(e, "bytes", 5) == 0)
		return v / (1024 * 1024);
	return v;
}

/* The text after open up to close (not including), as a jv string, or
 * null. At most 200 bytes. */
static jv
between(const char *s, const char *open, const char *close)
{
	const char *p = strstr(s, open), *e;

	if (p == NULL)
		return jv_null();
	p += strlen(open);
	if ((e = strstr(p, close)) == NULL || e == p || e - p > 200)
		return jv_null();
	return jv_string_sized(p, (int)(e - p));
}

/* The word (up to a blank) at p, as a jv string, or null. */
static jv
word(const char *p)
{
	size_t n = strcspn(p, " \t,;");

	if (n == 0 || n > 100)
		return jv_null();
	return jv_string_sized(p, (int)n);
}

static jv
set_num(jv f, const char *k, double v)
{
	if (v < 0)
		return f;
	return jv_object_set(f, jv_string(k), jv_number(v));
}

static jv
set_str(jv f, const char *k, jv v)
{
	if (jv_get_kind(v) != JV_KIND_STRING) {
		jv_free(v);
		return f;
	}
	return jv_object_set(f, jv_string(k), v);
}

/* --- facts --------------------------------------------------------------- */

static jv
facts_kv(const char *m, jv f)
{
	f = set_num(f, "max_seq_len", num_after(m, "max seq len ("));
	/* V0: "... stored in KV cache (23648)" */
	f = set_num(f, "kv_cache_tokens", num_after(m, "stored in KV cache ("));
	/* V1: "(16.0 GiB KV cache is needed, ... memory (9.38 GiB). Based on
	 * the available memory, the estimated maximum model length is 76800" */
	f = set_num(f, "kv_cache_needed_gib",
	    num_before(m, "GiB KV cache is needed"));
	f = set_num(f, "kv_cache_available_gib",
	    num_after(m, "available KV cache memory ("));
	f = set_num(f, "estimated_max_model_len",
	    num_after(m, "estimated maximum model length is"));
	return f;
}

static jv
facts_oom(const char *m, jv f)
{
	double free_gib, total_gib;

	f = set_num(f, "tried_to_allocate_mib", mib_at(m, "Tried to allocate "));
	f = set_num(f, "gpu_memory_total_mib", mib_at(m, "total capacity of "));
	f = set_num(f, "gpu_memory_free_mib", mib_at(m, " of which "));
	/* V1: "Free memory on device (10.5/23.6 GiB) on startup is less than
	 * desired GPU memory utilization (0.9, 21.2 GiB)." */
	free_gib = num_after(m, "Free memory on device (");
	total_gib = num_after(m, "Free memory on device (") >= 0 ?
	    num_after(strstr(m, "Free memory on device ("), "/") : -1;
	if (free_gib >= 0 && total_gib > 0) {
		f = set_num(f, "gpu_memory_free_mib", free_gib * 1024);
		f = set_num(f, "gpu_memory_total_mib", total_gib * 1024);
	}
	f = set_num(f, "gpu_memory_utilization",
	    num_after(m, "desired GPU memory utilization ("));
	return f;
}

static jv
facts_tp(const char *m, jv f)
{
	double tp = num_after(m, "tensor parallel size (");

	if (tp < 0)
		tp = num_after(m, "Tensor parallel size (");
	if (tp < 0)
		tp = num_after(m, "tensor_parallel_size (");
	if (tp < 0)
		tp = num_after(m, "world_size (");
	if (tp < 0)
		tp = num_after(m, "World size (");
	f = set_num(f, "num_attention_heads", num_after(m, "attention heads ("));
	f = set_num(f, "tensor_parallel_size", tp);
	f = set_num(f, "gpu_count", num_after(m, "max local gpu count ("));
	f = set_num(f, "gpu_count", num_after(m, "available GPUs ("));
	return f;
}

static jv
facts_cc(const char *m, jv f)
{
	const char *p = strstr(m, "has compute capability ");
	size_t n = 0;

	if (p != NULL) {
		p += strlen("has compute capability ");
		while (isdigit((unsigned char)p[n]) || (p[n] == '.' &&
		    isdigit((unsigned char)p[n + 1])))
			n++;
		if (n > 0)
			f = jv_object_set(f, jv_string("compute_capability"),
			    jv_string_sized(p, (int)n));
	}
	/* "... is not supported for the current GPU. Minimum capability: 89.
	 * Current capability: 75." */
	if ((p = strstr(m, "Current capability: ")) != NULL &&
	    isdigit((unsigned char)p[20]) && isdigit((unsigned char)p[21])) {
		char cc[4] = { p[20], '.', p[21], '\0' };

		f = jv_object_set(f, jv_string("compute_capability"),
		    jv_string(cc));
	}
	f = set_str(f, "quantization_refused", between(m,
	    "quantization method ", " is not supported"));
	f = set_str(f, "gpu_name", between(m, "Your ", " GPU has"));
	if (findi(m, "bfloat16") != NULL)
		f = jv_object_set(f, jv_string("dtype_refused"),
		    jv_string("bfloat16"));
	return f;
}

/* "org/name" after "huggingface.co/" (skipping "api/models/"). */
static jv
hf_model(const char *m)
{
	const char *p = strstr(m, "huggingface.co/"), *q;
	int slashes = 0;

	if (p == NULL)
		return jv_null();
	p += strlen("huggingface.co/");
	if (strncmp(p, "api/models/", 11) == 0)
		p += 11;
	for (q = p; *q != '\0' && (isalnum((unsigned char)*q) ||
	    strchr("._-/", *q) != NULL);
	    q++) {
		if (*q == '/' && ++slashes == 2)
			break;
	}
	while (q > p && q[-1] == '.')	/* "...-Instruct." ends a sentence */
		q--;
	if (slashes < 1 || q[-1] == '/' || q - p > 200 ||
	    strncmp(p, "models", 6) == 0)
		return jv_null();
	return jv_string_sized(p, (int)(q - p));
}

static jv
facts_model(const char *m, jv f)
{
	jv model = hf_model(m);
	static const int codes[] = { 401, 403, 404 };
	size_t i;

	if (jv_get_kind(model) != JV_KIND_STRING) {
		jv_free(model);
		model = between(m, "Access to model ", " is restricted");
	}
	if (jv_get_kind(model) != JV_KIND_STRING) {
		jv_free(model);
		model = between(m, "local directory specified: '", "'");
	}
	if (jv_get_kind(model) != JV_KIND_STRING &&
	    strstr(m, "config format found in ") != NULL) {
		jv_free(model);
		model = word(strstr(m, "config format found in ") +
		    strlen("config format found in "));
	}
	f = set_str(f, "model", model);
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char key[32];

		snprintf(key, sizeof(key), "%d Client Error", codes[i]);
		if (strstr(m, key) != NULL)
			f = jv_object_set(f, jv_string("http_status"),
			    jv_number(codes[i]));
	}
	return f;
}

static jv
facts_arch(const char *m, jv f)
{
	jv a = between(m, "architectures ['", "'");

	if (jv_get_kind(a) != JV_KIND_STRING) {
		jv_free(a);
		a = between(m, "model architecture '", "'");
	}
	f = set_str(f, "architecture", a);
	f = set_str(f, "model_type", between(m, "model type `", "`"));
	return f;
}

static jv
facts_port(const char *m, jv f)
{
	const char *p;
	double port = -1;

	/* uvicorn: "bind on address ('0.0.0.0', 8000): address already" */
	if ((p = strstr(m, "address ('")) != NULL && (p = strstr(p, "', ")))
		port = num_after(p, "', ");
	/* docker: "Bind for 0.0.0.0:8000 failed: port is already allocated" */
	if (port < 0 && (p = strstr(m, "Bind for ")) != NULL &&
	    (p = strchr(p + 9, ':')) != NULL)
		port = num_after(p, ":");
	if (port > 0 && port < 65536)
		f = set_num(f, "port", port);
	return f;
}

static jv
facts_nccl(const char *m, jv f)
{
	return set_str(f, "nccl_error", between(m, "NCCL error: ", " ("));
}

/* Facts any line may carry: the model, vLLM's version, the engine config. */
/*
 * A group of VMs (lc-create --nodes): what failed between the nodes, in
 * "multinode": node_missing (Ray's cluster lacks a node or its GPUs:
 * run-ray's own line, or vLLM's placement group that never fills),
 * version_mismatch (Ray or Python differ between the nodes).
 */
static jv
facts_missing(const char *m, jv f)
{
	f = set_str(f, "multinode", jv_string("node_missing"));
	if (strstr(m, " nodes joined") != NULL) {
		f = set_num(f, "nodes_joined", num_after(m, "ray: "));
		f = set_num(f, "nodes", num_after(m, " of "));
	}
	return f;
}

static jv
facts_version(const char *m, jv f)
{
	(void)m;
	return set_str(f, "multinode", jv_string("version_mismatch"));
}

/* NCCL found no interface, or could not reach a peer over the one it
 * took: with "NET/Socket : Using" seen (facts_global), that one. */
static jv
facts_nccl_net(const char *m, jv f)
{
	f = set_str(f, "multinode", jv_string("nccl_interface"));
	return facts_nccl(m, f);
}

static jv
facts_global(const char *m, jv f)
{
	const char *p;

	if ((p = strstr(m, "NET/Socket : Using [")) != NULL &&
	    (p = strchr(p, ']')) != NULL)
		f = set_str(f, "nccl_interface", between(p, "]", ":"));
	if ((p = strstr(m, "vLLM API server version ")) != NULL)
		f = set_str(f, "vllm_version",
		    word(p + strlen("vLLM API server version ")));
	if ((p = strstr(m, "LLM engine (v")) != NULL)
		f = set_str(f, "vllm_version", between(p, "(v", ")"));
	if ((p = strstr(m, " model='")) != NULL ||
	    (p = strstr(m, "(model='")) != NULL)
		f = set_str(f, "model", between(p, "model='", "'"));
	else if ((p = strstr(m, "'model': '")) != NULL)
		f = set_str(f, "model", between(p, "'model': '", "'"));
	if (strstr(m, "tensor_parallel_size=") != NULL)
		f = set_num(f, "tensor_parallel_size",
		    num_after(m, "tensor_parallel_size="));
	if (strstr(m, "max_seq_len=") != NULL)
		f = set_num(f, "max_seq_len", num_after(m, "max_seq_len="));
	return f;
}

/* --- rules --------------------------------------------------------------- */

#define R_ANYLEVEL	1	/* decisive at INFO/WARNING level too */
#define R_NOCASE	2

struct rule {
	int		 cat;
	int		 flags;
	const char	*pat[3];	/* all must occur */
	jv		(*facts)(const char *, jv);
};

/*
 * Decisive lines: an exception or error message that names the failure.
 * The first rule that matches a line decides its category, so the more
 * specific come first (an NCCL error that reports "out of memory" is OOM).
 */
static const struct rule rules[] = {
	{ LC_DIAG_KV_CACHE, 0, { "is larger than the maximum number of tokens "
	    "that can be stored in KV cache" }, facts_kv },
	{ LC_DIAG_KV_CACHE, 0, { "KV cache is needed, which is larger than "
	    "the available KV cache memory" }, facts_kv },
	{ LC_DIAG_KV_CACHE, 0, { "estimated maximum model length is" },
	    facts_kv },
	/* V1, also when a terminal wrapped the line: "To serve at least one
	 * request with the model's (models's) max seq len (100000), ..." */
	{ LC_DIAG_KV_CACHE, 0, { "To serve at least one request with the "
	    "model" }, facts_kv },
	{ LC_DIAG_KV_CACHE, 0, { "No available memory for the cache blocks" },
	    facts_kv },
	{ LC_DIAG_KV_CACHE, R_NOCASE, { "insufficient", "kv cache" },
	    facts_kv },

	{ LC_DIAG_PORT_IN_USE, R_NOCASE, { "address already in use" },
	    facts_port },
	{ LC_DIAG_PORT_IN_USE, 0, { "EADDRINUSE" }, facts_port },
	{ LC_DIAG_PORT_IN_USE, 0, { "port is already allocated" },
	    facts_port },
	{ LC_DIAG_PORT_IN_USE, 0, { "is already in use by container" },
	    facts_port },

	{ LC_DIAG_MODEL_ACCESS, R_NOCASE, { "gated repo" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "GatedRepoError" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "401 Client Error" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "403 Client Error" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "404 Client Error" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Repository Not Found" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "RepositoryNotFoundError" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "RevisionNotFoundError" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Revision Not Found" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Unauthorized for url" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Access to model", "is restricted" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Invalid credentials in Authorization" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "is not a valid model identifier" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "does not appear to have a file named" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Invalid repository ID or local "
	    "directory" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Incorrect path_or_model_id" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "couldn't connect to 'https://"
	    "huggingface.co'" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "LocalEntryNotFoundError" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "No supported config format found" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "Invalid user token" }, facts_model },
	/* A local path that is not there is taken for a repository id. */
	{ LC_DIAG_MODEL_ACCESS, 0, { "Repo id must be in the form" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "OfflineModeIsEnabled" }, facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "huggingface.co", "Max retries exceeded" },
	    facts_model },
	{ LC_DIAG_MODEL_ACCESS, 0, { "huggingface.co", "ConnectionError" },
	    facts_model },

	{ LC_DIAG_DTYPE, R_NOCASE, { "bfloat16", "compute capability" },
	    facts_cc },
	{ LC_DIAG_DTYPE, R_NOCASE, { "bf16", "not supported", "capability" },
	    facts_cc },
	{ LC_DIAG_DTYPE, 0, { "not supported for the current GPU",
	    "Current capability" }, facts_cc },

	{ LC_DIAG_TP_MISMATCH, 0, { "must be divisible by tensor parallel "
	    "size" }, facts_tp },
	{ LC_DIAG_TP_MISMATCH, 0, { "number of required GPUs exceeds" },
	    facts_tp },
	{ LC_DIAG_TP_MISMATCH, 0, { "max local gpu count" }, facts_tp },
	{ LC_DIAG_TP_MISMATCH, 0, { "larger than the number of available "
	    "GPUs" }, facts_tp },
	{ LC_DIAG_TP_MISMATCH, 0, { "invalid device ordinal" }, facts_tp },
	{ LC_DIAG_TP_MISMATCH, 0, { "cannot be larger than the number of "
	    "available GPUs" }, facts_tp },
	{ LC_DIAG_TP_MISMATCH, 0, { "too large tensor parallel size" },
	    facts_tp },

	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "are not supported for now" },
	    facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "failed to be inspected" },
	    facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "Error in inspecting model "
	    "architecture" }, facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "does not recognize this "
	    "architecture" }, facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "No model architectures are "
	    "specified" }, facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "is not a registered model" },
	    facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "requires you to execute the "
	    "configuration file" }, facts_arch },
	{ LC_DIAG_UNSUPPORTED_ARCH, R_NOCASE, { "architecture", "not "
	    "supported" }, facts_arch },

	{ LC_DIAG_DRIVER, 0, { "could not select device driver" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "Failed to initialize NVML" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "Driver/library version mismatch" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "NVIDIA-SMI has failed" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "No CUDA GPUs are available" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "Found no NVIDIA driver" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "CUDA driver version is insufficient" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "NVIDIA driver on your system is too old" },
	    NULL },
	{ LC_DIAG_DRIVER, 0, { "nvidia-container-cli" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "unknown or invalid runtime name" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "no CUDA-capable device is detected" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "system not yet initialized" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "libcuda.so", "cannot open shared object" },
	    NULL },
	{ LC_DIAG_DRIVER, 0, { "driver not loaded" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "Failed to infer device type" }, NULL },
	{ LC_DIAG_DRIVER, R_ANYLEVEL, { "No platform detected" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "Device string must not be empty" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "cudaGetDeviceCount" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "CUDA initialization:" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "forward compatibility was attempted" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "libnvidia-ml.so" }, NULL },

	{ LC_DIAG_OOM_LOAD, 0, { "CUDA out of memory" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "OutOfMemoryError" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "CUDA error: out of memory" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "CUDA driver error: out of memory" },
	    facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "failure 'out of memory'" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "HIP out of memory" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "CUBLAS_STATUS_ALLOC_FAILED" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "less than desired GPU memory utilization" },
	    facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "Error in memory profiling" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "DefaultCPUAllocator: not enough memory" },
	    facts_oom },
	{ LC_DIAG_OOM_LOAD, 0, { "Cannot allocate memory" }, facts_oom },
	{ LC_DIAG_OOM_LOAD, R_NOCASE, { "killed by the OOM killer" }, NULL },
	{ LC_DIAG_OOM_LOAD, 0, { "Out of memory: Killed process" }, NULL },

	{ LC_DIAG_NCCL, 0, { "NCCL error" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "ncclUnhandledCudaError" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "ncclSystemError" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "ncclInternalError" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "ncclInvalidUsage" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "ncclRemoteError" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "DistBackendError" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "Watchdog caught collective operation timeout" },
	    facts_nccl },
	{ LC_DIAG_NCCL, 0, { "peer access is not supported" }, facts_nccl },
	{ LC_DIAG_NCCL, 0, { "Error while creating shared memory segment" },
	    facts_nccl },
	{ LC_DIAG_NCCL, 0, { "NCCL communicator was aborted" }, facts_nccl },
	{ LC_DIAG_NCCL, R_ANYLEVEL, { "Bootstrap : no socket interface found" },
	    facts_nccl_net },
	{ LC_DIAG_NCCL, R_ANYLEVEL, { "socketStartConnect: Connect to",
	    "failed" }, facts_nccl_net },
	{ CAT_OTHER, R_ANYLEVEL, { "linode-coder: ray: ", " nodes joined after" },
	    facts_missing },
	{ CAT_OTHER, 0, { "required GPUs exceeds the total number of available "
	    "GPUs in the placement group" }, facts_missing },
	{ CAT_OTHER, 0, { "Cannot provide a placement group" }, facts_missing },
	{ CAT_OTHER, 0, { "Version mismatch: The cluster was started with" },
	    facts_version },
	/* vLLM 0.4: what is left of a communicator whose init failed */
	{ LC_DIAG_NCCL, 0, { "'NCCLCommunicator' object has no attribute "
	    "'comm'" }, facts_nccl },

	/*
	 * Failures that none of the fixes mend: the GPU is below what vLLM
	 * runs on at all, or the build has no kernels for it. They decide
	 * "unknown", so that an earlier line (Bfloat16 on a P100) does not
	 * start a fix that cannot work.
	 */
	{ CAT_OTHER, 0, { "compute capability below 7.0 are not supported" },
	    NULL },
	{ CAT_OTHER, 0, { "no kernel image is available for execution" },
	    NULL },
	{ LC_DIAG_UNKNOWN, 0, { NULL }, NULL }
};

/*
 * Hints: traceback frames (and NCCL's own warnings, a KV cache of no
 * blocks) that point at a failure when the log ends before the exception
 * line. Frames that quote a decisive message (the source of its raise) are
 * hints too. They decide only when no decisive line does, and no error line
 * comes after them: a traceback that ends in an exception nobody knows is
 * "unknown", whatever its frames say.
 */
static const struct rule hints[] = {
	{ LC_DIAG_KV_CACHE, 0, { "check_enough_kv_cache_memory" }, NULL },
	{ LC_DIAG_KV_CACHE, 0, { "raise_if_cache_size_invalid" }, NULL },
	{ LC_DIAG_DTYPE, 0, { "_check_if_gpu_supports_dtype" }, NULL },
	{ LC_DIAG_TP_MISMATCH, 0, { "verify_with_parallel_config" }, NULL },
	{ LC_DIAG_TP_MISMATCH, 0, { "initialize_ray_cluster" }, NULL },
	{ LC_DIAG_MODEL_ACCESS, 0, { "hf_raise_for_status" }, NULL },
	{ LC_DIAG_MODEL_ACCESS, 0, { "_raise_on_head_call_error" }, NULL },
	{ LC_DIAG_MODEL_ACCESS, 0, { "hf_hub_download" }, NULL },
	{ LC_DIAG_MODEL_ACCESS, 0, { "snapshot_download" }, NULL },
	{ LC_DIAG_MODEL_ACCESS, 0, { "get_hf_file_to_dict" }, NULL },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "_raise_for_unsupported" }, NULL },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "inspect_model_cls" }, NULL },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "resolve_model_cls" }, NULL },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "models/registry.py" }, NULL },
	{ LC_DIAG_UNSUPPORTED_ARCH, 0, { "models\\registry.py" }, NULL },
	{ LC_DIAG_PORT_IN_USE, 0, { "get_open_port" }, NULL },
	{ LC_DIAG_PORT_IN_USE, 0, { "_create_c10d_store" }, NULL },
	{ LC_DIAG_PORT_IN_USE, 0, { "create_server_socket" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "nvmlInit" }, NULL },
	{ LC_DIAG_DRIVER, 0, { "in _lazy_init" }, NULL },
	{ LC_DIAG_NCCL, 0, { "pynccl" }, NULL },
	{ LC_DIAG_NCCL, 0, { "NCCL_CHECK" }, NULL },
	{ LC_DIAG_NCCL, 0, { "ncclCommInitRank" }, NULL },
	{ LC_DIAG_NCCL, 0, { "custom_all_reduce" }, NULL },
	{ LC_DIAG_NCCL, R_ANYLEVEL, { "NCCL WARN" }, NULL },
	{ LC_DIAG_KV_CACHE, R_ANYLEVEL, { "# GPU blocks: 0," }, NULL },
	{ LC_DIAG_KV_CACHE, R_ANYLEVEL, { "KV cache size: 0 tokens" }, NULL },
	{ LC_DIAG_UNKNOWN, 0, { NULL }, NULL }
};

/* The server is up: Uvicorn bound its port, or answered a request. */
static const char *const listening[] = {
	"Uvicorn running on", "Application startup complete",
	"Started server process",
	"Starting vLLM API server on", "Starting vLLM server on",
	"Available routes are", "Route: /", "Avg prompt throughput",
	"HTTP/1.1\" 2", "HTTP/1.1\" 3", "HTTP/1.1\" 4", "HTTP/1.0\" 2",
	NULL
};

/* The server went away (a later start shows as listening again). */
static const char *const stopping[] = {
	"Application shutdown complete", "Finished server process", NULL
};

/* Fatal without naming a cause: they end "healthy", and are evidence. */
static const char *const generic_fatal[] = {
	"EngineDeadError", "Engine core initialization failed",
	"Engine process failed to start", "EngineCore failed to start",
	"Engine loop has died", "died unexpectedly", "Segmentation fault",
	"core dumped", "Fatal Python error", "Worker failed with error",
	NULL
};

static int
any_of(const char *m, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strstr(m, *list) != NULL)
			return 1;
	return 0;
}

static int
rule_matches(const struct rule *r, const char *m)
{
	int i;

	for (i = 0; i < 3 && r->pat[i] != NULL; i++) {
		if ((r->flags & R_NOCASE) ? findi(m, r->pat[i]) == NULL :
		    strstr(m, r->pat[i]) == NULL)
			return 0;
	}
	return 1;
}

/* --- normalising a line -------------------------------------------------- */

/* Where an ANSI colour code "[0;36m" that starts at in[i] ends, or 0. */
static size_t
colour_end(const char *in, size_t i, size_t n)
{
	size_t j = i;

	while (j < n && j - i < 12 && (isdigit((unsigned char)in[j]) ||
	    in[j] == ';'))
		j++;
	if (j > i && j < n && in[j] == 'm')
		return j + 1;
	return 0;
}

/*
 * Copy in[0..n) to out without ANSI escapes (real or pasted as text),
 * control bytes and DEL. Returns the length; out is NUL-terminated.
 */
static size_t
sanitize(const char *in, size_t n, char *out)
{
	size_t i = 0, o = 0, j;

	while (i < n) {
		unsigned char c = (unsigned char)in[i];

		if (c == 0x1b) {
			i++;
			if (i < n && in[i] == '[') {
				i++;
				while (i < n && in[i] >= 0x30 && in[i] <= 0x3f)
					i++;
				while (i < n && in[i] >= 0x20 && in[i] <= 0x2f)
					i++;
			}
			if (i < n)
				i++;
			continue;
		}
		if (c == '^' && i + 2 < n && in[i + 1] == '[' &&
		    in[i + 2] == '[' && (j = colour_end(in, i + 3, n)) != 0) {
			i = j;
			continue;
		}
		if (c == '[' && (j = colour_end(in, i + 1, n)) != 0) {
			i = j;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			i++;
			continue;
		}
		out[o++] = (char)c;
		i++;
	}
	out[o] = '\0';
	return o;
}

static int
digits(const char *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

/* "2024-12-02T10:00:00.123456789Z " (docker -t) or "2024-09-21 18:15:28,304
 * " (Python logging): past it, or s. */
static char *
skip_timestamp(char *s)
{
	char *t = s, *p;
	int br;

	if (strncmp(s, "  | [", 5) == 0 && isdigit((unsigned char)s[5]))
		s += 4;		/* Buildkite's gutter, copied from its page */
	br = *s == '[';		/* CI runners: "[2025-03-10T15:07:20Z] " */
	s += br;
	if (strlen(s) < 20 || !digits(s, 4) || s[4] != '-' ||
	    !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
	    (s[10] != 'T' && s[10] != ' ') || !digits(s + 11, 2) ||
	    s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' ||
	    !digits(s + 17, 2))
		return t;
	p = s + 19;
	if (*p == '.' || *p == ',')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	if (*p == 'Z')
		p++;
	else if ((*p == '+' || *p == '-') && digits(p + 1, 2)) {
		p += 3;
		if (*p == ':')
			p++;
		if (digits(p, 2))
			p += 2;
	}
	if (br && *p++ != ']')
		return t;
	if (*p != ' ')
		return t;
	return p + 1;
}

/* docker compose's "vllm-1  | ": past it, or s. */
static char *
skip_compose(char *s)
{
	char *p = s;

	if (!isalnum((unsigned char)*p))
		return s;
	while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' ||
	    *p == '.')
		p++;
	if (*p != ' ' || p - s > 64)
		return s;
	while (*p == ' ')
		p++;
	if (*p != '|' || (p[1] != ' ' && p[1] != '\0'))
		return s;
	return p[1] == ' ' ? p + 2 : p + 1;
}

/* journald's "Nov 23 14:00:00 host unit[123]: ": past it, or s. */
static char *
skip_journald(char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char *p;
	int i, ok = 0;

	for (i = 0; i < 12; i++)
		if (strncmp(s, months + 3 * i, 3) == 0 && s[3] == ' ')
			ok = 3;
	/* another locale's month: "авг", "déc.", "Mär" */
	for (i = 0; !ok && i < 16 && s[i] != ' ' && s[i] != '\0'; i++)
		if (!isalpha((unsigned char)s[i]) && s[i] != '.' &&
		    !((unsigned char)s[i] & 0x80))
			break;
	if (!ok && i >= 3 && i < 16 && s[i] == ' ')
		ok = i;
	if (!ok)
		return s;
	p = s + ok + 1;
	while (*p == ' ')
		p++;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p != ' ' || !digits(p + 1, 2) || p[3] != ':' ||
	    !digits(p + 4, 2) || p[6] != ':' || !digits(p + 7, 2) ||
	    p[9] != ' ')
		return s;
	p += 10;
	while (*p != '\0' && *p != ' ')	/* host */
		p++;
	if (*p != ' ')
		return s;
	p++;
	while (*p != '\0' && *p != ' ' && *p != ':')	/* unit[pid] */
		p++;
	if (*p != ':' || p[1] != ' ')
		return s;
	return p + 2;
}

/* FastChat's logger after its timestamp, "| ERROR | stderr | ": past it,
 * or s. What follows keeps its indentation (a traceback frame). */
static char *
skip_fastchat(char *s)
{
	char *p, *q;

	if (s[0] != '|' || s[1] != ' ' || !isupper((unsigned char)s[2]))
		return s;
	if ((p = strstr(s + 2, " | ")) == NULL || p - s > 12)
		return s;
	if ((q = strstr(p + 3, " | ")) == NULL || q - p > 64 ||
	    memchr(p + 3, ' ', (size_t)(q - p - 3)) != NULL)
		return s;
	return q + 3;
}

/* A supervisor's "[vllm]: " before each line: past it, or s. */
static char *
skip_tag(char *s)
{
	size_t n;

	if (*s != '[')
		return s;
	n = strspn(s + 1, "abcdefghijklmnopqrstuvwxyz0123456789_-");
	if (n == 0 || n > 32 || s[n + 1] != ']' || s[n + 2] != ':' ||
	    s[n + 3] != ' ')
		return s;
	return s + n + 4;
}

/* Python logging's "vllm.worker.model_runner 75563 INFO     msg" (the
 * logger and the pid before the level): to the level, or s. */
static char *
skip_logger(char *s)
{
	static const char *const lv[] = { "DEBUG ", "INFO ", "WARNING ",
	    "ERROR ", "CRITICAL ", NULL };
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.");
	char *p = s + n;
	int i;

	if (n == 0 || n > 80 || memchr(s, '.', n) == NULL || *p != ' ')
		return s;
	p++;
	if ((n = strspn(p, "0123456789")) == 0 || p[n] != ' ')
		return s;
	p += n + 1;
	for (i = 0; lv[i] != NULL; i++)
		if (strncmp(p, lv[i], strlen(lv[i])) == 0)
			return p;
	return s;
}

/* TorchServe's "[INFO ] W-9000-model_1.0-stdout MODEL_LOG - ": past it,
 * or s; the message keeps its indentation. */
static char *
skip_torchserve(char *s)
{
	static const char *const lv[] = { "INFO", "WARN", "ERROR", "DEBUG",
	    NULL };
	char *e, *p;
	int i;

	for (i = 0; lv[i] != NULL; i++)
		if (s[0] == '[' && strncmp(s + 1, lv[i], strlen(lv[i])) == 0)
			break;
	if (lv[i] == NULL || (e = strchr(s, ']')) == NULL || e - s > 9 ||
	    e[1] != ' ')
		return s;
	if ((p = strstr(e + 2, " - ")) == NULL || p - e > 100)
		return s;
	return p + 3;
}

/* "(VllmWorkerProcess pid=1)", "(RayWorkerWrapper pid=1, ip=..)",
 * "(raylet)", "[rank0]:": past it and one space, or s. */
static char *
skip_process(char *s)
{
	char *e;

	if (*s == '(' && (e = strchr(s, ')')) != NULL && e - s < 160) {
		*e = '\0';
		if (strstr(s, "pid=") == NULL && strncmp(s, "(raylet",
		    7) != 0) {
			*e = ')';
			return s;
		}
		*e = ')';
		return e[1] == ' ' ? e + 2 : e + 1;
	}
	if (strncmp(s, "[rank", 5) == 0 && isdigit((unsigned char)s[5])) {
		for (e = s + 5; isdigit((unsigned char)*e); e++)
			;
		if (e[0] == ']' && e[1] == ':')
			return e[2] == ' ' ? e + 3 : e + 2;
	}
	return s;
}

/* Cut Ray's " [repeated 6x across cluster]" and trailing blanks. */
static void
cut_suffix(char *s)
{
	char *p = strstr(s, "[repeated ");
	size_t n;

	if (p != NULL && (p = strstr(p, "x across cluster]")) != NULL &&
	    p[17] == '\0')
		*strstr(s, "[repeated ") = '\0';
	n = strlen(s);
	if (n >= 2 && strcmp(s + n - 2, "^M") == 0)	/* a pasted CR */
		s[n -= 2] = '\0';
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

/* The logging header's level, and the message after it. */
static char *
parse_level(char *s, enum level *lv)
{
	static const struct { const char *w; enum level lv; } words[] = {
		{ "DEBUG", LV_DEBUG }, { "INFO", LV_INFO },
		{ "WARNING", LV_WARNING }, { "WARN", LV_WARNING },
		{ "ERROR", LV_ERROR }, { "CRITICAL", LV_ERROR },
		{ "FATAL", LV_ERROR }, { NULL, LV_NONE }
	};
	char *p, *q;
	int i;

	*lv = LV_NONE;
	for (i = 0; words[i].w != NULL; i++) {
		size_t n = strlen(words[i].w);

		if (strncmp(s, words[i].w, n) != 0)
			continue;
		p = s + n;
		if (*p == ':' && p[1] == ' ') {		/* "ERROR:    msg" */
			for (p++; *p == ' '; p++)
				;
			*lv = words[i].lv;
			return p;
		}
		if (*p == ':' && (q = strchr(p + 1, ':')) != NULL &&
		    q - p < 64 && memchr(p, ' ', (size_t)(q - p)) == NULL) {
			*lv = words[i].lv;		/* "ERROR:root:msg" */
			return q + 1;
		}
		if (*p != ' ')
			return s;
		p++;
		*lv = words[i].lv;
		/* vLLM: "INFO 07-07 20:12:44 metrics.py:295] msg" */
		if (isdigit((unsigned char)*p) && (q = strstr(p, "] ")) !=
		    NULL && q - p < 120)
			return q + 2;
		if (isdigit((unsigned char)*p) && (q = strchr(p, ']')) !=
		    NULL && q[1] == '\0' && q - p < 120)
			return q + 1;
		/* Ray: "INFO worker.py:1786 -- msg" */
		if ((q = strstr(p, " -- ")) != NULL && q - p < 80)
			return q + 4;
		while (*p == ' ')	/* logging's padded "INFO     msg" */
			p++;
		return p;
	}
	return s;
}

/* An indented line (a traceback frame or its source) or a frame pasted
 * without its indentation. */
static int
is_frame(const char *m)
{
	return *m == ' ' || *m == '\t' || strncmp(m, "File \"", 6) == 0 ||
	    strncmp(m, "^^^", 3) == 0 || strncmp(m, "~~~", 3) == 0;
}

/* "ValueError: ...", "torch.OutOfMemoryError: ...", "docker: Error ..." */
static int
is_error_line(const char *m, enum level lv)
{
	const char *p = m;

	if (strncmp(m, "Traceback (most recent call last)", 33) == 0 ||
	    strstr(m, "above exception") != NULL)
		return 0;
	if (lv == LV_ERROR || any_of(m, generic_fatal))
		return 1;
	while (isalnum((unsigned char)*p) || *p == '_' || *p == '.')
		p++;
	if (*p == ':' && p - m >= 5 && (strncmp(p - 5, "Error", 5) == 0 ||
	    (p - m >= 9 && strncmp(p - 9, "Exception", 9) == 0)))
		return 1;
	return strncmp(m, "Error", 5) == 0 || strncmp(m, "error:", 6) == 0 ||
	    strncmp(m, "Value error, ", 13) == 0 ||
	    strstr(m, ": Error response from daemon") != NULL ||
	    strcmp(m, "Killed") == 0;
}

/* --- evidence ------------------------------------------------------------ */

/* A copy of s cut to EVIDENCE_LEN bytes on a character boundary. */
static char *
ev_copy(const char *s)
{
	size_t n = strlen(s);
	char *c;

	if (n > EVIDENCE_LEN) {
		n = EVIDENCE_LEN;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	if ((c = malloc(n + 4)) == NULL)
		return NULL;
	memcpy(c, s, n);
	if (n < strlen(s))
		memcpy(c + n, "...", 4);
	else
		c[n] = '\0';
	return c;
}

static void
cand_clear(struct cand *c)
{
	int i;

	for (i = 0; i < c->n; i++)
		free(c->ev[i]);
	c->n = 0;
	c->cat = LC_DIAG_UNKNOWN;
	jv_free(c->facts);
	c->facts = jv_object();
}

/* Add a matching line to a candidate: a new failure unless it is the same
 * category within CLUSTER_GAP lines of the last one. */
static void
cand_add(struct cand *c, int cat, unsigned long lineno, const char *m,
    jv (*facts)(const char *, jv))
{
	char *e;
	int i;

	if (c->cat != cat || lineno - c->last > CLUSTER_GAP) {
		cand_clear(c);
		c->cat = cat;
	}
	c->last = lineno;
	if (facts != NULL)
		c->facts = facts(m, c->facts);
	if ((e = ev_copy(m)) == NULL)
		return;
	for (i = 0; i < c->n; i++)
		if (strcmp(c->ev[i], e) == 0) {
			free(e);
			return;
		}
	if (c->n == EVIDENCE_MAX) {
		free(c->ev[EVIDENCE_MAX - 1]);
		c->n--;
	}
	c->ev[c->n++] = e;
}

/* Keep s in a ring of size max whose count is *total. */
static void
ring_put(char **ring, int max, unsigned long *total, const char *s)
{
	char *e = ev_copy(s);
	int i = (int)(*total % (unsigned long)max);

	if (e == NULL)
		return;
	if (*total > 0) {	/* the same line again adds nothing */
		int prev = (int)((*total - 1) % (unsigned long)max);

		if (ring[prev] != NULL && strcmp(ring[prev], e) == 0) {
			free(e);
			return;
		}
	}
	free(ring[i]);
	ring[i] = e;
	(*total)++;
}

/* The ring's lines, oldest first, as a jv array (at most max). */
static jv
ring_get(char *const *ring, int max, unsigned long total, int want)
{
	jv a = jv_array();
	unsigned long i, n = total < (unsigned long)max ? total :
	    (unsigned long)max;

	if ((unsigned long)want < n)
		n = (unsigned long)want;
	for (i = total - n; i < total; i++)
		a = jv_array_append(a, jv_string(ring[i % (unsigned long)max]));
	return a;
}

/* --- the classifier ------------------------------------------------------ */

struct lc_diag *
lc_diag_new(void)
{
	struct lc_diag *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->best.facts = jv_object();
	d->hint.facts = jv_object();
	d->gfacts = jv_object();
	return d;
}

void
lc_diag_free(struct lc_diag *d)
{
	int i;

	if (d == NULL)
		return;
	cand_clear(&d->best);
	cand_clear(&d->hint);
	jv_free(d->best.facts);
	jv_free(d->hint.facts);
	jv_free(d->gfacts);
	for (i = 0; i < RING_MAX; i++)
		free(d->ring[i]);
	for (i = 0; i < TAIL_MAX; i++)
		free(d->tail[i]);
	free(d->listen_ev);
	free(d);
}

/* Classify one line: d->raw[0..d->len). */
static void
line(struct lc_diag *d)
{
	const struct rule *r;
	enum level lv;
	char *s, *m;
	int frame, i;

	sanitize(d->raw, d->len, d->buf);
	d->len = 0;
	s = d->buf;
	for (i = 0; i < 8; i++) {
		char *p = skip_timestamp(s);

		p = skip_compose(p);
		p = skip_journald(p);
		p = skip_fastchat(p);
		p = skip_torchserve(p);
		p = skip_tag(p);
		p = skip_logger(p);
		p = skip_process(p);
		if (p == s)
			break;
		s = p;
	}
	cut_suffix(s);
	m = parse_level(s, &lv);
	if (*m == '\0' || strspn(m, " \t") == strlen(m))
		return;
	d->lineno++;
	/* pydantic indents the message of a ValidationError: "  Value error,
	 * Model architectures [...] are not supported for now." */
	if (*m == ' ' && strncmp(m + strspn(m, " "), "Value error, ", 13) == 0)
		m += strspn(m, " ");
	ring_put(d->tail, TAIL_MAX, &d->ntail, m);
	frame = is_frame(m);
	if (frame) {
		/* A frame, or the source of a raise: a hint at most. */
		for (r = hints; r->pat[0] != NULL; r++)
			if (rule_matches(r, m)) {
				cand_add(&d->hint, r->cat, d->lineno, m, NULL);
				return;
			}
		for (r = rules; r->pat[0] != NULL; r++)
			if (rule_matches(r, m)) {
				cand_add(&d->hint, r->cat, d->lineno, m, NULL);
				return;
			}
		return;
	}
	d->gfacts = facts_global(m, d->gfacts);
	if (any_of(m, listening)) {
		char *e = ev_copy(m);

		if (e != NULL) {
			free(d->listen_ev);
			d->listen_ev = e;
		}
		d->listen = d->lineno;
	}
	if (any_of(m, stopping))
		d->stopped = d->lineno;
	if (any_of(m, generic_fatal))
		d->gfatal = d->lineno;
	if (is_error_line(m, lv)) {
		ring_put(d->ring, RING_MAX, &d->nring, m);
		d->lasterr = d->lineno;
	}
	for (r = rules; r->pat[0] != NULL; r++) {
		if ((lv == LV_NONE || lv == LV_ERROR ||
		    (r->flags & R_ANYLEVEL)) && rule_matches(r, m)) {
			cand_add(&d->best, r->cat, d->lineno, m, r->facts);
			return;
		}
	}
	for (r = hints; r->pat[0] != NULL; r++)
		if ((r->flags & R_ANYLEVEL) && rule_matches(r, m)) {
			cand_add(&d->hint, r->cat, d->lineno, m, NULL);
			return;
		}
	/* V0's "Maximum concurrency for 29000 tokens per request: 0.82x":
	 * not even one request fits the KV cache. */
	if (strstr(m, "Maximum concurrency for ") != NULL &&
	    num_after(m, "per request: ") >= 0 &&
	    num_after(m, "per request: ") < 1)
		cand_add(&d->hint, LC_DIAG_KV_CACHE, d->lineno, m, facts_kv);
}

int
lc_diag_feed(struct lc_diag *d, const void *buf, size_t len)
{
	const char *p = buf, *end = p + len;

	while (p < end) {
		const char *nl = p;

		while (nl < end && *nl != '\n' && *nl != '\r')
			nl++;
		if (d->len < LC_DIAG_LINE_MAX) {
			size_t n = (size_t)(nl - p);

			if (n > LC_DIAG_LINE_MAX - d->len)
				n = LC_DIAG_LINE_MAX - d->len;
			memcpy(d->raw + d->len, p, n);
			d->len += n;
		}
		if (nl == end)
			break;
		line(d);
		p = nl + 1;
	}
	return 0;
}

/* --- the result ---------------------------------------------------------- */

static jv
cand_evidence(const struct cand *c)
{
	jv a = jv_array();
	int i;

	for (i = 0; i < c->n; i++)
		a = jv_array_append(a, jv_string(c->ev[i]));
	return a;
}

/* Object b's members over a's. Consumes both. */
static jv
merge(jv a, jv b)
{
	jv_object_foreach(b, k, v)
		a = jv_object_set(a, k, v);
	jv_free(b);
	return a;
}

static const char *
fact_str(jv f, const char *k, const char *def)
{
	const char *s = lc_str(f, k);

	return s != NULL ? s : def;
}

/* The sentence for people. Borrows facts; returns malloc'd. */
static char *
message(int cat, jv f, int from_frames, int named, const struct lc_diag *d)
{
	struct lc_buf b = LC_BUF_INIT;
	double x = lc_num(f, "max_seq_len", -1);
	double fit = lc_num(f, "estimated_max_model_len",
	    lc_num(f, "kv_cache_tokens", -1));

	switch (cat) {
	case LC_DIAG_KV_CACHE:
		if (x > 0 && fit > 0)
			lc_buf_printf(&b, "The KV cache is too small for the "
			    "model's max_model_len %.0f: it holds %.0f tokens",
			    x, fit);
		else
			lc_buf_addstr(&b, "No GPU memory is left for the KV "
			    "cache after loading the model");
		break;
	case LC_DIAG_OOM_LOAD:
		lc_buf_addstr(&b, "The GPU ran out of memory while vLLM "
		    "loaded the model or set up its memory");
		if (lc_num(f, "tried_to_allocate_mib", -1) >= 0)
			lc_buf_printf(&b, " (it tried to allocate %.0f MiB "
			    "more)", lc_num(f, "tried_to_allocate_mib", 0));
		break;
	case LC_DIAG_NCCL:
		lc_buf_printf(&b, "NCCL, which links the GPUs, failed%s%s",
		    lc_str(f, "nccl_error") ? ": " : "",
		    fact_str(f, "nccl_error", ""));
		if (lc_str(f, "multinode") != NULL)
			lc_buf_printf(&b, "; between the nodes of a group it "
			    "must use the VPC interface " LC_VPC_IFACE "%s%s%s: "
			    "set NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME to "
			    LC_VPC_IFACE " (run-ray does) and check that every "
			    "node has its VPC address", lc_str(f,
			    "nccl_interface") ? ", not " : "", fact_str(f,
			    "nccl_interface", ""), lc_str(f, "nccl_interface") ?
			    " as it did" : "");
		break;
	case LC_DIAG_TP_MISMATCH:
		if (lc_num(f, "num_attention_heads", -1) > 0 &&
		    lc_num(f, "tensor_parallel_size", -1) > 0)
			lc_buf_printf(&b, "The model's %.0f attention heads "
			    "cannot be split over tensor_parallel_size %.0f",
			    lc_num(f, "num_attention_heads", 0),
			    lc_num(f, "tensor_parallel_size", 0));
		else
			lc_buf_addstr(&b, "tensor_parallel_size does not fit "
			    "the GPUs: it asks for more GPUs than there are, "
			    "or does not divide the model");
		break;
	case LC_DIAG_DTYPE:
		lc_buf_printf(&b, "The GPU%s%s (compute capability %s) cannot "
		    "run bfloat16; it needs dtype half (float16)",
		    lc_str(f, "gpu_name") ? " " : "", fact_str(f, "gpu_name",
		    ""), fact_str(f, "compute_capability", "below 8.0"));
		break;
	case LC_DIAG_MODEL_ACCESS:
		lc_buf_printf(&b, "The model %s could not be fetched from "
		    "Hugging Face: it is gated or private and the token is "
		    "missing or not allowed, or the name is wrong",
		    fact_str(f, "model", "(see evidence)"));
		if (lc_num(f, "http_status", -1) > 0)
			lc_buf_printf(&b, " (HTTP %.0f)",
			    lc_num(f, "http_status", 0));
		break;
	case LC_DIAG_UNSUPPORTED_ARCH:
		lc_buf_printf(&b, "This vLLM cannot load the model's "
		    "architecture%s%s", lc_str(f, "architecture") ? " " : "",
		    fact_str(f, "architecture", ""));
		break;
	case LC_DIAG_PORT_IN_USE:
		if (lc_num(f, "port", -1) > 0)
			lc_buf_printf(&b, "Port %.0f is already in use on the "
			    "VM (a stale container or another server holds "
			    "it)", lc_num(f, "port", 0));
		else
			lc_buf_addstr(&b, "An address vLLM needs is already in "
			    "use on the VM (a stale container or another "
			    "server holds it)");
		break;
	case LC_DIAG_DRIVER:
		lc_buf_addstr(&b, "The container sees no working NVIDIA GPU: "
		    "the driver or the NVIDIA container toolkit is missing, "
		    "not loaded or mismatched");
		break;
	case LC_DIAG_HEALTHY:
		lc_buf_addstr(&b, "vLLM is up and listening, with no fatal "
		    "error after it started");
		break;
	default:
		if (named && fact_str(f, "multinode", "")[0] == 'n') {
			lc_buf_addstr(&b, "A node of the group is missing from "
			    "the Ray cluster");
			if (lc_num(f, "nodes", -1) > 0)
				lc_buf_printf(&b, " (%.0f of %.0f joined)",
				    lc_num(f, "nodes_joined", 0),
				    lc_num(f, "nodes", 0));
			lc_buf_addstr(&b, ": its Ray could not reach the "
			    "head's at " LC_VPC_PREFIX "2:6379 over the VPC, "
			    "or it has not booted; log in to the worker (its "
			    "address is in the record's group.nodes) and read "
			    "'journalctl -u linode-coder-vllm', or "
			    "'coder down' and up again");
		} else if (named && fact_str(f, "multinode", "")[0] == 'v')
			lc_buf_addstr(&b, "Ray's or Python's version differs "
			    "between the nodes of the group: every node must "
			    "run the same vllm_image; 'coder down' and up again "
			    "with one pinned image");
		else if (named)
			lc_buf_addstr(&b, "The log names a failure that none of "
			    "lc-heal's fixes mend (the GPU or the vLLM build "
			    "does not suit); the evidence says which");
		else if (d->lineno == 0)
			lc_buf_addstr(&b, "The log is empty");
		else if (d->listen > 0 && d->stopped > d->listen &&
		    d->nring == 0)
			lc_buf_addstr(&b, "vLLM started, then shut down "
			    "without an error in the log");
		else if (d->nring == 0)
			lc_buf_addstr(&b, "No error in the log, and no sign "
			    "the server is listening: it may still be "
			    "starting");
		else
			lc_buf_addstr(&b, "lc-heal does not recognise this "
			    "failure; the last error lines are the evidence");
	}
	if (from_frames)
		lc_buf_addstr(&b, " (the log ends before its error line: "
		    "judged from the traceback frames and lines before it)");
	return b.data;
}

jv
lc_diag_result(struct lc_diag *d)
{
	jv out, ev, facts;
	int cat = LC_DIAG_UNKNOWN, from_frames = 0, named = 0;
	char *msg;

	if (d->len > 0)
		line(d);
	facts = jv_copy(d->gfacts);
	if (d->best.cat != LC_DIAG_UNKNOWN && d->best.last > d->listen) {
		cat = d->best.cat;
		ev = cand_evidence(&d->best);
		facts = merge(facts, jv_copy(d->best.facts));
	} else if (d->listen > 0 && d->gfatal <= d->listen &&
	    d->stopped <= d->listen) {
		cat = LC_DIAG_HEALTHY;
		ev = jv_array();
		if (d->listen_ev != NULL)
			ev = jv_array_append(ev, jv_string(d->listen_ev));
	} else if (d->hint.cat != LC_DIAG_UNKNOWN && d->hint.last >
	    d->listen && d->hint.last > d->lasterr) {
		/* The log ends inside a traceback (or before its error line):
		 * the frames name the failure. */
		cat = d->hint.cat;
		from_frames = 1;
		ev = jv_array_concat(cand_evidence(&d->hint),
		    ring_get(d->ring, RING_MAX, d->nring, 2));
		facts = merge(facts, jv_copy(d->hint.facts));
	} else if (d->nring > 0)
		ev = ring_get(d->ring, RING_MAX, d->nring, 5);
	else
		ev = ring_get(d->tail, TAIL_MAX, d->ntail, TAIL_MAX);
	if (cat == CAT_OTHER) {
		cat = LC_DIAG_UNKNOWN;
		named = 1;
	}
	msg = message(cat, facts, from_frames, named, d);
	out = jv_object_set(jv_object(), jv_string("category"),
	    jv_string(names[cat]));
	out = jv_object_set(out, jv_string("evidence"), ev);
	out = jv_object_set(out, jv_string("fix"),
	    lc_ladder_fix(names[cat], facts));
	out = jv_object_set(out, jv_string("facts"), facts);
	out = jv_object_set(out, jv_string("message"),
	    jv_string(msg != NULL ? msg : ""));
	out = jv_object_set(out, jv_string("lines"),
	    jv_number((double)d->lineno));
	free(msg);
	return out;
}

jv
lc_diagnose_text(const char *text, size_t len)
{
	struct lc_diag *d = lc_diag_new();
	jv r;

	if (d == NULL)
		return lc_errorf("nomem", "out of memory");
	lc_diag_feed(d, text, len);
	r = lc_diag_result(d);
	lc_diag_free(d);
	return r;
}
