/*
 * gpu: nvidia-smi's outputs into records (see gpu.h). Each format has its
 * own small reader; all of them build the same GPU objects.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "gpu.h"
#include "lc.h"

static const char *const gpu_keys[] = { "index", "name", "uuid",
	"pci_bus_id", "memory_total_mib", "memory_used_mib", "utilization_pct",
	"temperature_c", "power_w", "power_limit_w", "compute_capability",
	NULL };

/* A GPU object with every documented field null. */
static jv
gpu_new(void)
{
	jv g = jv_object();
	int i;

	for (i = 0; gpu_keys[i] != NULL; i++)
		g = jv_object_set(g, jv_string(gpu_keys[i]), jv_null());
	return g;
}

static jv
problem(const char *code, const char *msg)
{
	return jv_object_set(jv_object_set(jv_object(), jv_string("code"),
	    jv_string(code)), jv_string("message"), jv_string(msg));
}

/* Trim spaces in place; returns the start. */
static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* What nvidia-smi prints for a value it cannot give. */
static int
is_na(const char *s)
{
	return *s == '\0' || *s == '[' || strcmp(s, "N/A") == 0 ||
	    strncmp(s, "Not Supported", 13) == 0 || strcmp(s, "ERR!") == 0 ||
	    strcmp(s, "Unknown Error") == 0;
}

/* A number with any unit after it ("46068 MiB", "9 %", "77W"), or null. */
static jv
num(const char *s)
{
	char buf[64], *t, *end;
	double d;

	snprintf(buf, sizeof(buf), "%s", s);
	t = trim(buf);
	if (is_na(t))
		return jv_null();
	d = strtod(t, &end);
	if (end == t)
		return jv_null();
	return jv_number(d);
}

static jv
str(const char *s)
{
	char buf[512], *t;

	snprintf(buf, sizeof(buf), "%s", s);
	t = trim(buf);
	return is_na(t) ? jv_null() : jv_string(t);
}

/* "610.57.04 [Deprecated; ...]" -> "610.57.04" */
static jv
version(const char *s)
{
	char buf[64], *t;

	snprintf(buf, sizeof(buf), "%s", s);
	t = trim(buf);
	t[strcspn(t, " \t[")] = '\0';
	return is_na(t) ? jv_null() : jv_string(t);
}

/* Known names: compute capability, for when nvidia-smi does not say. */
static const struct {
	const char *pat;
	double cc;
} cc_names[] = {
	{ "B200", 10.0 }, { "GB200", 10.0 }, { "H200", 9.0 }, { "H100", 9.0 },
	{ "GH200", 9.0 }, { "L40", 8.9 }, { "L4", 8.9 }, { "Ada", 8.9 },
	{ "RTX 40", 8.9 }, { "A100", 8.0 }, { "A30", 8.0 }, { "A10", 8.6 },
	{ "A40", 8.6 }, { "A16", 8.6 }, { "A2", 8.6 }, { "RTX A", 8.6 },
	{ "RTX 30", 8.6 }, { "T4", 7.5 }, { "RTX 6000", 7.5 },
	{ "RTX 8000", 7.5 }, { "RTX 20", 7.5 }, { "V100", 7.0 },
	{ "P100", 6.0 }, { "P40", 6.1 }, { "P4", 6.1 }, { NULL, 0 }
};

double
lc_gpu_cc_by_name(const char *name)
{
	int i;

	for (i = 0; name != NULL && cc_names[i].pat != NULL; i++)
		if (strstr(name, cc_names[i].pat) != NULL)
			return cc_names[i].cc;
	return -1;
}

/* Fill compute_capability from the name when the output lacked it. */
static jv
gpu_finish(jv g)
{
	jv cc = lc_get(g, "compute_capability");
	double d;

	if (jv_get_kind(cc) == JV_KIND_NULL &&
	    (d = lc_gpu_cc_by_name(lc_str(g, "name"))) > 0)
		g = jv_object_set(g, jv_string("compute_capability"),
		    jv_number(d));
	jv_free(cc);
	return g;
}

/* The probe object every parser starts from. */
static jv
probe_new(const char *format)
{
	jv p = jv_object_set(jv_object(), jv_string("format"),
	    jv_string(format));

	p = jv_object_set(p, jv_string("gpus"), jv_array());
	p = jv_object_set(p, jv_string("driver_version"), jv_null());
	p = jv_object_set(p, jv_string("cuda_version"), jv_null());
	p = jv_object_set(p, jv_string("processes"), jv_null());
	return jv_object_set(p, jv_string("problems"), jv_array());
}

static int has_problem(jv, const char *);

/* Add a problem once: the same code twice says nothing new. */
static jv
add_problem(jv p, const char *code, const char *msg)
{
	jv list = lc_get(p, "problems");

	if (has_problem(list, code)) {
		jv_free(list);
		return p;
	}
	return jv_object_set(p, jv_string("problems"),
	    jv_array_append(list, problem(code, msg)));
}

static jv
add_gpu(jv p, jv g)
{
	jv list = lc_get(p, "gpus");

	return jv_object_set(p, jv_string("gpus"),
	    jv_array_append(list, gpu_finish(g)));
}

/* The messages nvidia-smi (or the shell) prints when it cannot run. */
static jv
parse_errors(jv p, const char *text)
{
	const char *v;

	if (strstr(text, "couldn't communicate with the NVIDIA driver") ||
	    strstr(text, "couldn't find libnvidia-ml") ||
	    strstr(text, "Driver Not Loaded"))
		p = add_problem(p, "no_driver", "the NVIDIA driver is not "
		    "loaded: nvidia-smi cannot talk to it (install it, or "
		    "reboot after a kernel or driver upgrade)");
	if (strstr(text, "version mismatch") != NULL) {
		char msg[256] = "the NVIDIA kernel driver and its libraries "
		    "differ (Driver/library version mismatch): reboot the VM";

		if ((v = strstr(text, "NVML library version:")) != NULL) {
			char ver[32] = "";

			sscanf(v + 21, " %31[0-9.]", ver);
			snprintf(msg, sizeof(msg), "the NVIDIA kernel driver "
			    "and its libraries (NVML %s) differ: reboot the VM "
			    "so the new driver loads", ver);
		}
		p = add_problem(p, "driver_mismatch", msg);
	}
	if (strstr(text, "command not found") || strstr(text,
	    "nvidia-smi: not found") || strstr(text, "nvidia-smi not found") ||
	    strstr(text, "nvidia-smi: No such file"))
		p = add_problem(p, "nvidia_smi_missing", "nvidia-smi is not "
		    "installed: is the driver installed?");
	if (strstr(text, "GPU is lost") != NULL)
		p = add_problem(p, "gpu_lost", "a GPU fell off the bus (\"GPU "
		    "is lost\"): reboot the VM, or destroy it");
	if (strstr(text, "Failed to initialize NVML: Unknown Error"))
		p = add_problem(p, "nvml_error", "nvidia-smi cannot initialise "
		    "NVML (Unknown Error): reboot the VM");
	return p;
}

/* Next line of *cur (modified in place), or NULL at the end. */
static char *
next_line(char **cur)
{
	char *s = *cur, *nl;

	if (s == NULL || *s == '\0')
		return NULL;
	if ((nl = strchr(s, '\n')) != NULL) {
		*nl = '\0';
		*cur = nl + 1;
	} else
		*cur = s + strlen(s);
	if (nl > s && nl[-1] == '\r')
		nl[-1] = '\0';
	return s;
}

/* Split a CSV line at commas, trimming. Returns the count (<= max). */
static int
split_csv(char *line, char **f, int max)
{
	int n = 0;
	char *p = line, *c;

	while (n < max) {
		c = strchr(p, ',');
		if (c != NULL)
			*c = '\0';
		f[n++] = trim(p);
		if (c == NULL)
			break;
		p = c + 1;
	}
	return n;
}

/* "memory.total [MiB]" -> "memory.total" in place. */
static char *
field_name(char *h)
{
	h[strcspn(h, " [")] = '\0';
	return h;
}

static int
looks_like_header(char **f, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(f[i], "index") == 0 || strcmp(f[i], "name") == 0 ||
		    strcmp(f[i], "uuid") == 0 ||
		    strcmp(f[i], "gpu_uuid") == 0 || strcmp(f[i], "pid") == 0 ||
		    strncmp(f[i], "memory.", 7) == 0)
			return 1;
	return 0;
}

/* The record field a --query-gpu field feeds, numeric or not. */
static const struct {
	const char *q, *key;
	int numeric;
} csv_map[] = {
	{ "index", "index", 1 }, { "name", "name", 0 }, { "uuid", "uuid", 0 },
	{ "pci.bus_id", "pci_bus_id", 0 },
	{ "memory.total", "memory_total_mib", 1 },
	{ "memory.used", "memory_used_mib", 1 },
	{ "utilization.gpu", "utilization_pct", 1 },
	{ "temperature.gpu", "temperature_c", 1 },
	{ "power.draw", "power_w", 1 },
	{ "power.draw.instant", "power_w", 1 },
	{ "power.limit", "power_limit_w", 1 },
	{ "enforced.power.limit", "power_limit_w", 1 },
	{ "compute_cap", "compute_capability", 1 },
	{ NULL, NULL, 0 }
};

/* One CSV row into a GPU object; cols names each column. */
static jv
csv_row(jv p, char **cols, char **f, int n, int row)
{
	jv g = gpu_new(), cur;
	double total = 0, part;
	int i, j, have_total = 0, parts = 0;

	for (i = 0; i < n; i++) {
		if (strcmp(f[i], "[GPU is lost]") == 0)
			p = add_problem(p, "gpu_lost", "a GPU fell off the bus "
			    "(\"GPU is lost\"): reboot the VM, or destroy it");
		if ((strcmp(cols[i], "driver_version") == 0 ||
		    strcmp(cols[i], "kmd_version") == 0) && !is_na(f[i]) &&
		    lc_str(p, "driver_version") == NULL)
			p = jv_object_set(p, jv_string("driver_version"),
			    version(f[i]));
		if (strcmp(cols[i], "memory.used") == 0 ||
		    strcmp(cols[i], "memory.free") == 0 ||
		    strcmp(cols[i], "memory.reserved") == 0) {
			part = strtod(f[i], NULL);
			total += part;
			parts++;
		}
		for (j = 0; csv_map[j].q != NULL; j++) {
			if (strcmp(cols[i], csv_map[j].q) != 0)
				continue;
			cur = lc_get(g, csv_map[j].key);
			if (jv_get_kind(cur) == JV_KIND_NULL)
				g = jv_object_set(g, jv_string(csv_map[j].key),
				    csv_map[j].numeric ? num(f[i]) : str(f[i]));
			jv_free(cur);
			if (strcmp(cols[i], "memory.total") == 0)
				have_total = 1;
		}
	}
	if (!have_total && parts == 3)	/* reserved + used + free */
		g = jv_object_set(g, jv_string("memory_total_mib"),
		    jv_number(total));
	cur = lc_get(g, "index");
	if (jv_get_kind(cur) == JV_KIND_NULL)
		g = jv_object_set(g, jv_string("index"), jv_number(row));
	jv_free(cur);
	return add_gpu(p, g);
}

#define MAX_COLS 256

/* A value row without a header starts with the GPU index. */
static int
is_index(const char *f)
{
	if (*f == '\0')
		return 0;
	for (; *f != '\0'; f++)
		if (!isdigit((unsigned char)*f))
			return 0;
	return 1;
}

static jv
parse_csv(char *text)
{
	static const char *const def[] = { "index", "name", "uuid",
	    "pci.bus_id", "memory.total", "memory.used", "utilization.gpu",
	    "temperature.gpu", "power.draw", "power.limit", "compute_cap",
	    "driver_version" };
	char *cols[MAX_COLS], *f[MAX_COLS], *line, *cur = text;
	char *hdr = NULL, first[120] = "";
	jv p = probe_new("csv");
	int n, ncols = 0, i, row = 0, header = 0, bad = 0;

	while ((line = next_line(&cur)) != NULL) {
		if (*trim(line) == '\0')
			continue;
		if (*first == '\0')
			snprintf(first, sizeof(first), "%s", trim(line));
		if (ncols == 0) {
			hdr = lc_xstrdup(line);
			ncols = split_csv(hdr, cols, MAX_COLS);
			if ((header = looks_like_header(cols, ncols))) {
				for (i = 0; i < ncols; i++)
					cols[i] = field_name(cols[i]);
				continue;
			}
			for (ncols = 0; ncols < 12; ncols++)
				cols[ncols] = (char *)def[ncols];
		}
		n = split_csv(line, f, MAX_COLS);
		if (!header && (n < 2 || !is_index(f[0]))) {
			bad++;
			continue;
		}
		p = csv_row(p, cols, f, n < ncols ? n : ncols, row++);
	}
	free(hdr);
	if (row == 0 && bad > 0) {
		char msg[200];

		snprintf(msg, sizeof(msg), "not nvidia-smi output this tool "
		    "knows: \"%s\"", first);
		p = jv_object_set(p, jv_string("format"), jv_string("unknown"));
		p = add_problem(p, "probe_failed", msg);
	}
	return p;
}

/* Cells of a table line "| a | b | c |" (trimmed); count. */
static int
cells(char *line, char **c, int max)
{
	int n = 0;
	char *p = strchr(line, '|'), *q;

	while (p != NULL && n < max) {
		q = strchr(p + 1, '|');
		if (q == NULL)
			break;
		*q = '\0';
		c[n++] = trim(p + 1);
		p = q;
	}
	return n;
}

/* "00000000:83:00.0 Off" holds a PCI bus id. */
static int
has_bus_id(const char *s)
{
	unsigned a, b, d, fn;
	char dot;

	return sscanf(s, "%x:%x:%x%c%x", &a, &b, &d, &dot, &fn) == 5 &&
	    dot == '.';
}

/* "Driver Version: 590.48.01" anywhere in the line -> the value. */
static jv
header_value(const char *line, const char *key)
{
	const char *v = strstr(line, key);
	char buf[64] = "";

	if (v == NULL)
		return jv_invalid();
	sscanf(v + strlen(key), " %63[^ |]", buf);
	return *buf ? jv_string(buf) : jv_null();
}

/* p[field] = the header's value after key, else after key2. */
static jv
header_set(jv p, const char *line, const char *field, const char *key,
    const char *key2)
{
	jv v = header_value(line, key);

	if (!jv_is_valid(v)) {
		jv_free(v);
		v = header_value(line, key2);
	}
	if (!jv_is_valid(v)) {
		jv_free(v);
		return p;
	}
	return jv_object_set(p, jv_string(field), v);
}

/* First line of a GPU: "0  NVIDIA H200  On", "00000000:83:00.0 Off". */
static jv
table_gpu1(char **c)
{
	jv g = gpu_new();
	char *name, *end, *bus;
	long idx = strtol(c[0], &name, 10);

	g = jv_object_set(g, jv_string("index"), jv_number(idx));
	name = trim(name);
	end = name + strlen(name);	/* drop the Persistence-M word */
	while (end > name && !isspace((unsigned char)end[-1]))
		end--;
	if (end > name)
		*end = '\0';
	g = jv_object_set(g, jv_string("name"), jv_string(trim(name)));
	bus = c[1];
	bus[strcspn(bus, " ")] = '\0';
	return jv_object_set(g, jv_string("pci_bus_id"), jv_string(bus));
}

/* Second line: "N/A 28C P0 77W / 700W", "0MiB / 143771MiB", "0% Default" */
static jv
table_gpu2(jv g, char **c)
{
	char *slash = strstr(c[0], " / "), *tok, *save = NULL;

	if (slash != NULL) {	/* not the one in "N/A" */
		*slash = '\0';
		g = jv_object_set(g, jv_string("power_limit_w"),
		    num(slash + 3));
	}
	for (tok = strtok_r(c[0], " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		size_t l = strlen(tok);

		if (l < 2 || !isdigit((unsigned char)*tok))
			continue;
		if (tok[l - 1] == 'C')
			g = jv_object_set(g, jv_string("temperature_c"),
			    num(tok));
		else if (tok[l - 1] == 'W')
			g = jv_object_set(g, jv_string("power_w"), num(tok));
	}
	if ((slash = strchr(c[1], '/')) != NULL) {
		*slash = '\0';
		g = jv_object_set(g, jv_string("memory_used_mib"), num(c[1]));
		g = jv_object_set(g, jv_string("memory_total_mib"),
		    num(slash + 1));
	}
	return jv_object_set(g, jv_string("utilization_pct"), num(c[2]));
}

/* A process row: "0 N/A N/A 1720 G /usr/bin/gnome-shell 173MiB". */
static jv
table_proc(char *row)
{
	char *t[64], *save = NULL, *tok;
	struct lc_buf name = LC_BUF_INIT;
	int n = 0, i, ti = -1;
	jv pr;

	for (tok = strtok_r(row, " ", &save); tok != NULL && n < 64;
	    tok = strtok_r(NULL, " ", &save))
		t[n++] = tok;
	for (i = 1; i < n - 1; i++)
		if (strcmp(t[i], "C") == 0 || strcmp(t[i], "G") == 0 ||
		    strcmp(t[i], "C+G") == 0 || strcmp(t[i], "M") == 0 ||
		    strcmp(t[i], "M+C") == 0) {
			ti = i;
			break;
		}
	if (n < 4 || ti < 2 || !isdigit((unsigned char)*t[0]))
		return jv_invalid();
	for (i = ti + 1; i < n - 1; i++) {
		if (name.len > 0)
			lc_buf_addstr(&name, " ");
		lc_buf_addstr(&name, t[i]);
	}
	pr = jv_object_set(jv_object(), jv_string("gpu"), num(t[0]));
	pr = jv_object_set(pr, jv_string("pid"), num(t[ti - 1]));
	pr = jv_object_set(pr, jv_string("type"), jv_string(t[ti]));
	pr = jv_object_set(pr, jv_string("name"), name.data ?
	    jv_string(name.data) : jv_null());
	pr = jv_object_set(pr, jv_string("memory_mib"), num(t[n - 1]));
	lc_buf_free(&name);
	return pr;
}

static jv
parse_table(char *text)
{
	char *line, *cur = text, *c[8];
	jv p = probe_new("table"), g = jv_invalid(), v, procs = jv_null();
	int n, in_procs = 0, second = 0;

	while ((line = next_line(&cur)) != NULL) {
		if (strstr(line, "NVIDIA-SMI") != NULL) {
			/* 610 renamed them: KMD Version, CUDA UMD Version */
			p = header_set(p, line, "driver_version",
			    "KMD Version:", "Driver Version:");
			p = header_set(p, line, "cuda_version",
			    "CUDA UMD Version:", "CUDA Version:");
			continue;
		}
		if (strstr(line, "Processes:") != NULL) {
			in_procs = 1;
			jv_free(procs);
			procs = jv_array();
			continue;
		}
		if (in_procs) {
			n = cells(line, c, 8);
			if (n != 1 || !isdigit((unsigned char)*c[0]))
				continue;
			v = table_proc(c[0]);
			if (jv_is_valid(v))
				procs = jv_array_append(procs, v);
			else
				jv_free(v);
			continue;
		}
		n = cells(line, c, 8);
		if (n >= 3 && isdigit((unsigned char)*c[0]) &&
		    has_bus_id(c[1])) {
			if (jv_is_valid(g))
				p = add_gpu(p, g);
			g = table_gpu1(c);
			second = 1;
		} else if (n >= 3 && second && jv_is_valid(g)) {
			g = table_gpu2(g, c);
			second = 0;
		}
	}
	if (jv_is_valid(g))
		p = add_gpu(p, g);
	else
		jv_free(g);
	return jv_object_set(p, jv_string("processes"), procs);
}

/* Set g[key] = v unless it already has a value. Consumes v. */
static jv
setf(jv g, const char *key, jv v)
{
	jv cur = lc_get(g, key);
	int empty = jv_get_kind(cur) == JV_KIND_NULL;

	jv_free(cur);
	if (!empty || jv_get_kind(v) == JV_KIND_NULL) {
		jv_free(v);
		return g;
	}
	return jv_object_set(g, jv_string(key), v);
}

/* g[obj][key] = v (obj created when missing). Consumes v. */
static jv
setsub(jv g, const char *obj, const char *key, jv v)
{
	jv o = lc_get(g, obj);

	if (jv_get_kind(o) != JV_KIND_OBJECT) {
		jv_free(o);
		o = jv_object();
	}
	return jv_object_set(g, jv_string(obj), jv_object_set(o,
	    jv_string(key), v));
}

/* g[obj][key] += n. */
static jv
addsub(jv g, const char *obj, const char *key, jv n)
{
	jv o = lc_get(g, obj);
	double cur = lc_num(o, key, 0);

	jv_free(o);
	if (jv_get_kind(n) != JV_KIND_NUMBER) {
		jv_free(n);
		return g;
	}
	cur += jv_number_value(n);
	jv_free(n);
	return setsub(g, obj, key, jv_number(cur));
}

/* "HW Thermal Slowdown" -> "hw_thermal_slowdown" appended to the list. */
static jv
add_reason(jv g, const char *reason)
{
	jv list = lc_get(g, "throttle_reasons");
	char buf[64];
	size_t i;

	snprintf(buf, sizeof(buf), "%s", reason);
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = buf[i] == ' ' ? '_' :
		    (char)tolower((unsigned char)buf[i]);
	if (jv_get_kind(list) != JV_KIND_ARRAY) {
		jv_free(list);
		list = jv_array();
	}
	return jv_object_set(g, jv_string("throttle_reasons"),
	    jv_array_append(list, jv_string(buf)));
}

static int
is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

/* One "key : value" of a GPU in -q text; sect[1..] is the section path. */
static jv
q_gpu_key(jv g, char **sect, int depth, const char *key, const char *val)
{
	const char *s1 = depth > 1 ? sect[1] : NULL;
	const char *s2 = depth > 2 ? sect[2] : NULL;
	const char *s3 = depth > 3 ? sect[3] : NULL;

	if (depth == 1 && is(key, "Product Name"))
		return setf(g, "name", str(val));
	if (depth == 1 && is(key, "GPU UUID"))
		return setf(g, "uuid", str(val));
	if (is(s1, "FB Memory Usage") && depth == 2)
		return is(key, "Total") ?
		    setf(g, "memory_total_mib", num(val)) : is(key, "Used") ?
		    setf(g, "memory_used_mib", num(val)) : g;
	if (is(s1, "Utilization") && depth == 2 && (is(key, "GPU") ||
	    is(key, "Gpu")))
		return setf(g, "utilization_pct", num(val));
	if (is(s1, "Temperature") && is(key, "GPU Current Temp"))
		return setf(g, "temperature_c", num(val));
	if (is(s1, "GPU Power Readings") || is(s1, "Power Readings")) {
		if (is(key, "Instantaneous Power Draw") ||
		    is(key, "Power Draw") || is(key, "Average Power Draw"))
			return setf(g, "power_w", num(val));
		if (is(key, "Current Power Limit") || is(key, "Power Limit"))
			return setf(g, "power_limit_w", num(val));
	}
	if (is(s1, "PCI") && is(s2, "GPU Link Info") &&
	    (is(key, "Max") || is(key, "Current")))
		return setsub(g, "pcie", is(s3, "Link Width") ?
		    (is(key, "Max") ? "width_max" : "width_current") :
		    (is(key, "Max") ? "gen_max" : "gen_current"), num(val));
	if (is(s1, "ECC Errors") && is(s2, "Volatile")) {
		int unc = strstr(key, "Uncorrectable") != NULL ||
		    (is(s3, "Double Bit") && is(key, "Total"));
		int cor = (strstr(key, "Correctable") != NULL && !unc) ||
		    (is(s3, "Single Bit") && is(key, "Total"));

		if (unc || cor)
			return addsub(g, "ecc_errors", unc ?
			    "uncorrected_volatile" : "corrected_volatile",
			    num(val));
	}
	if ((is(s1, "Clocks Event Reasons") ||
	    is(s1, "Clocks Throttle Reasons")) && is(val, "Active") &&
	    !is(key, "Idle"))
		return add_reason(g, key);
	return g;
}

/* A process block of -q text, the last of procs. */
static jv
q_proc_key(jv procs, jv g, const char *key, const char *val)
{
	int n = jv_array_length(jv_copy(procs));
	jv pr;

	if (is(key, "Process ID")) {
		pr = jv_object_set(jv_object(), jv_string("gpu"),
		    lc_get(g, "index"));
		pr = jv_object_set(pr, jv_string("pid"), num(val));
		return jv_array_append(procs, pr);
	}
	if (n == 0)
		return procs;
	pr = jv_array_get(jv_copy(procs), n - 1);
	if (is(key, "Name") || is(key, "Process Name"))
		pr = jv_object_set(pr, jv_string("name"), str(val));
	else if (is(key, "Type"))
		pr = jv_object_set(pr, jv_string("type"), str(val));
	else if (is(key, "Used GPU Memory"))
		pr = jv_object_set(pr, jv_string("memory_mib"), num(val));
	return jv_array_set(procs, n - 1, pr);
}

#define QDEPTH 8

static jv
parse_q(char *text)
{
	char *sect[QDEPTH] = { NULL }, *line, *cur = text, *key, *val, *c;
	jv p = probe_new("q"), g = jv_invalid(), procs = jv_array();
	int depth, idx = 0, i;

	while ((line = next_line(&cur)) != NULL) {
		for (i = 0; line[i] == ' '; i++)
			;
		depth = i / 4;
		key = trim(line);
		if (*key == '\0' || depth >= QDEPTH)
			continue;
		val = NULL;
		if ((c = strstr(key, " : ")) != NULL ||
		    ((c = strrchr(key, ':')) != NULL && c[1] == '\0' &&
		    c > key && c[-1] == ' ')) {
			*c = '\0';
			val = trim(c[1] == '\0' ? c + 1 : c + 3);
			key = trim(key);
		}
		for (i = depth + 1; i < QDEPTH; i++)
			sect[i] = NULL;
		sect[depth] = key;
		if (val == NULL && depth == 0 && strncmp(key, "GPU ", 4) == 0 &&
		    has_bus_id(key + 4)) {
			if (jv_is_valid(g))
				p = add_gpu(p, g);
			g = jv_object_set(gpu_new(), jv_string("index"),
			    jv_number(idx++));
			g = jv_object_set(g, jv_string("pci_bus_id"),
			    jv_string(key + 4));
			continue;
		}
		if (val == NULL)
			continue;
		if (depth == 0) {
			if (is(key, "KMD Version") || is(key, "Driver Version"))
				p = setf(p, "driver_version", version(val));
			else if (is(key, "CUDA UMD Version") ||
			    is(key, "CUDA Version"))
				p = setf(p, "cuda_version", version(val));
		} else if (jv_is_valid(g) && depth >= 2 && is(sect[1],
		    "Processes"))
			procs = q_proc_key(procs, g, key, val);
		else if (jv_is_valid(g))
			g = q_gpu_key(g, sect, depth, key, val);
	}
	if (jv_is_valid(g))
		p = add_gpu(p, g);
	else
		jv_free(g);
	return jv_object_set(p, jv_string("processes"), procs);
}

/* Content of the first <tag> within [*s, e): start, and *end. */
static const char *
xtag(const char *s, const char *e, const char *tag, const char **end)
{
	char open[80], close[80];
	const char *o, *c;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if ((o = strstr(s, open)) == NULL || o >= e)
		return NULL;
	o += strlen(open);
	if ((c = strstr(o, close)) == NULL || c > e)
		return NULL;
	*end = c;
	return o;
}

/* The text at path "a/b/c" within [s, e), as a jv (num or str), or null. */
static jv
xval(const char *s, const char *e, const char *path, int numeric)
{
	char comp[80], buf[256];
	const char *p = path, *slash, *end = e;
	size_t n;

	while (s != NULL && *p != '\0') {
		slash = strchr(p, '/');
		n = slash ? (size_t)(slash - p) : strlen(p);
		snprintf(comp, sizeof(comp), "%.*s", (int)n, p);
		s = xtag(s, e, comp, &end);
		e = end;
		p += n + (slash != NULL);
	}
	if (s == NULL)
		return jv_null();
	snprintf(buf, sizeof(buf), "%.*s", (int)(end - s), s);
	return numeric ? num(buf) : str(buf);
}

/* The first path of a list that gives a value. */
static jv
xfirst(const char *s, const char *e, const char *const paths[], int numeric)
{
	jv v = jv_null();
	int i;

	for (i = 0; paths[i] != NULL && jv_get_kind(v) == JV_KIND_NULL; i++) {
		jv_free(v);
		v = xval(s, e, paths[i], numeric);
	}
	return v;
}

static jv
xml_gpu(jv p, const char *s, const char *e, int idx)
{
	static const char *const draw[] = { "power_readings/power_draw",
	    "gpu_power_readings/power_draw",
	    "gpu_power_readings/instant_power_draw", NULL };
	static const char *const limit[] = { "power_readings/power_limit",
	    "gpu_power_readings/current_power_limit", NULL };
	static const char *const unc[] = {
	    "ecc_errors/volatile/double_bit/total",
	    "ecc_errors/volatile/dram_uncorrectable", NULL };
	jv g = jv_object_set(gpu_new(), jv_string("index"), jv_number(idx)), v;
	const char *r, *re;

	g = setf(g, "name", xval(s, e, "product_name", 0));
	g = setf(g, "uuid", xval(s, e, "uuid", 0));
	g = setf(g, "pci_bus_id", xval(s, e, "pci/pci_bus_id", 0));
	g = setf(g, "memory_total_mib", xval(s, e, "fb_memory_usage/total", 1));
	g = setf(g, "memory_used_mib", xval(s, e, "fb_memory_usage/used", 1));
	g = setf(g, "utilization_pct", xval(s, e, "utilization/gpu_util", 1));
	g = setf(g, "temperature_c", xval(s, e, "temperature/gpu_temp", 1));
	g = setf(g, "power_w", xfirst(s, e, draw, 1));
	g = setf(g, "power_limit_w", xfirst(s, e, limit, 1));
	g = setsub(g, "pcie", "gen_max", xval(s, e,
	    "pci/pci_gpu_link_info/pcie_gen/max_link_gen", 1));
	g = setsub(g, "pcie", "gen_current", xval(s, e,
	    "pci/pci_gpu_link_info/pcie_gen/current_link_gen", 1));
	g = setsub(g, "pcie", "width_max", xval(s, e,
	    "pci/pci_gpu_link_info/link_widths/max_link_width", 1));
	g = setsub(g, "pcie", "width_current", xval(s, e,
	    "pci/pci_gpu_link_info/link_widths/current_link_width", 1));
	if (jv_get_kind(v = xfirst(s, e, unc, 1)) == JV_KIND_NUMBER)
		g = setsub(g, "ecc_errors", "uncorrected_volatile", v);
	else
		jv_free(v);
	if ((r = xtag(s, e, "clocks_throttle_reasons", &re)) != NULL ||
	    (r = xtag(s, e, "clocks_event_reasons", &re)) != NULL) {
		const char *t;

		/* <clocks_..._reason_hw_slowdown>Active</...> */
		while ((t = strstr(r, ">Active</")) != NULL && t < re) {
			const char *o = t;
			char name[64];

			while (o > r && *o != '<')
				o--;
			snprintf(name, sizeof(name), "%.*s", (int)(t - o - 1),
			    o + 1);
			if (strstr(name, "gpu_idle") == NULL)
				g = add_reason(g, strstr(name, "reason_") ?
				    strstr(name, "reason_") + 7 : name);
			r = t + 9;
		}
	}
	return add_gpu(p, g);
}

static jv
parse_xml(char *text)
{
	const char *s = text, *e, *pi, *pe;
	jv p = probe_new("xml"), procs = jv_array(), pr;
	int idx = 0;

	p = jv_object_set(p, jv_string("driver_version"), xval(text,
	    text + strlen(text), "driver_version", 0));
	p = jv_object_set(p, jv_string("cuda_version"), xval(text,
	    text + strlen(text), "cuda_version", 0));
	while ((s = strstr(s, "<gpu id=")) != NULL) {
		if ((e = strstr(s, "</gpu>")) == NULL)
			break;
		p = xml_gpu(p, s, e, idx);
		for (pi = s; (pi = xtag(pi, e, "process_info", &pe)) != NULL;
		    pi = pe) {
			pr = jv_object_set(jv_object(), jv_string("gpu"),
			    jv_number(idx));
			pr = jv_object_set(pr, jv_string("pid"),
			    xval(pi, pe, "pid", 1));
			pr = jv_object_set(pr, jv_string("type"),
			    xval(pi, pe, "type", 0));
			pr = jv_object_set(pr, jv_string("name"),
			    xval(pi, pe, "process_name", 0));
			pr = jv_object_set(pr, jv_string("memory_mib"),
			    xval(pi, pe, "used_memory", 1));
			procs = jv_array_append(procs, pr);
		}
		idx++;
		s = e;
	}
	return jv_object_set(p, jv_string("processes"), procs);
}

jv
lc_gpu_parse_apps(const char *text)
{
	static const char *const def[] = { "gpu_uuid", "pid", "process_name",
	    "used_memory" };
	char *copy = lc_xstrdup(text), *cur = copy, *line, *f[16];
	const char *cols[16];
	jv out = jv_array(), pr;
	int n, i, ncols = 0;

	while ((line = next_line(&cur)) != NULL) {
		if (*trim(line) == '\0' || strstr(line, "No running") != NULL)
			continue;
		n = split_csv(line, f, 16);
		if (ncols == 0 && looks_like_header(f, n)) {
			for (i = 0; i < n; i++)
				cols[i] = field_name(f[i]);
			ncols = n;
			continue;
		}
		if (ncols == 0) {
			for (i = 0; i < 4; i++)
				cols[i] = def[i];
			ncols = 4;
		}
		pr = jv_object();
		for (i = 0; i < n && i < ncols; i++) {
			if (is(cols[i], "gpu_uuid"))
				pr = jv_object_set(pr, jv_string("gpu_uuid"),
				    str(f[i]));
			else if (is(cols[i], "pid"))
				pr = jv_object_set(pr, jv_string("pid"),
				    num(f[i]));
			else if (is(cols[i], "process_name") ||
			    is(cols[i], "name"))
				pr = jv_object_set(pr, jv_string("name"),
				    str(f[i]));
			else if (is(cols[i], "used_memory") ||
			    is(cols[i], "used_gpu_memory"))
				pr = jv_object_set(pr, jv_string("memory_mib"),
				    num(f[i]));
		}
		if (lc_num(pr, "pid", -1) >= 0)
			out = jv_array_append(out, pr);
		else
			jv_free(pr);
	}
	free(copy);
	return out;
}

jv
lc_gpu_parse_topo(const char *text)
{
	char *copy = lc_xstrdup(text), *cur = copy, *line, *tok, *save;
	jv out = jv_array();
	int ngpu = 0, row, col;

	while ((line = next_line(&cur)) != NULL) {
		save = NULL;
		tok = strtok_r(line, " \t", &save);
		if (tok == NULL)
			continue;
		if (ngpu == 0 && is(tok, "GPU0") && line != tok) {
			/* the header: GPU0 GPU1 ... then other columns */
			for (ngpu = 1; (tok = strtok_r(NULL, " \t", &save)) &&
			    strncmp(tok, "GPU", 3) == 0 &&
			    isdigit((unsigned char)tok[3]); ngpu++)
				;
			continue;
		}
		if (ngpu == 0 || strncmp(tok, "GPU", 3) != 0 ||
		    !isdigit((unsigned char)tok[3]))
			continue;
		row = atoi(tok + 3);
		for (col = 0; col < ngpu &&
		    (tok = strtok_r(NULL, " \t", &save)) != NULL; col++) {
			if (col <= row)
				continue;
			out = jv_array_append(out, jv_object_set(jv_object_set(
			    jv_object(), jv_string("gpus"), jv_array_append(
			    jv_array_append(jv_array(), jv_number(row)),
			    jv_number(col))), jv_string("link"),
			    jv_string(tok)));
		}
	}
	free(copy);
	return out;
}

/* The GPU of list with this index, or null. Borrows list. */
static jv
gpu_at(jv list, jv index)
{
	jv found = jv_null();

	jv_array_foreach(list, i, g) {
		jv gi = lc_get(g, "index");

		if (jv_get_kind(found) == JV_KIND_NULL &&
		    jv_equal(gi, jv_copy(index))) {
			jv_free(found);
			found = g;
		} else
			jv_free(g);
		(void)i;
	}
	jv_free(index);
	return found;
}

jv
lc_gpu_merge(jv base, jv extra)
{
	jv bg = lc_get(base, "gpus"), eg = lc_get(extra, "gpus");
	jv out = jv_array();
	jv probs, ep;

	if (jv_array_length(jv_copy(bg)) == 0 &&
	    jv_array_length(jv_copy(eg)) > 0) {
		jv t = base;

		base = extra;
		extra = t;
		t = bg;
		bg = eg;
		eg = t;
	}
	jv_array_foreach(bg, k, g) {
		jv o = gpu_at(eg, lc_get(g, "index"));

		if (jv_get_kind(o) == JV_KIND_OBJECT) {
			jv_object_foreach(o, key, val) {
				g = setf(g, jv_string_value(key), val);
				jv_free(key);
			}
		}
		jv_free(o);
		out = jv_array_append(out, g);
		(void)k;
	}
	jv_free(bg);
	jv_free(eg);
	base = jv_object_set(base, jv_string("gpus"), out);
	base = setf(base, "driver_version", lc_get(extra, "driver_version"));
	base = setf(base, "cuda_version", lc_get(extra, "cuda_version"));
	base = setf(base, "processes", lc_get(extra, "processes"));
	probs = lc_get(base, "problems");
	ep = lc_get(extra, "problems");
	jv_array_foreach(ep, k, pr) {
		jv code = lc_get(pr, "code");
		int dup = 0;

		jv_array_foreach(probs, m, q) {
			dup |= jv_equal(lc_get(q, "code"), jv_copy(code));
			jv_free(q);
			(void)m;
		}
		jv_free(code);
		if (!dup)
			probs = jv_array_append(probs, pr);
		else
			jv_free(pr);
		(void)k;
	}
	jv_free(ep);
	jv_free(extra);
	return jv_object_set(base, jv_string("problems"), probs);
}

/* Does any process look like vLLM? -1 when processes are unknown. */
static int
vllm_seen(jv procs)
{
	int seen = 0;

	if (jv_get_kind(procs) != JV_KIND_ARRAY)
		return -1;
	jv_array_foreach(procs, i, pr) {
		const char *n = lc_str(pr, "name");
		char low[256];
		size_t k;

		snprintf(low, sizeof(low), "%s", n ? n : "");
		for (k = 0; low[k] != '\0'; k++)
			low[k] = (char)tolower((unsigned char)low[k]);
		if (strstr(low, "vllm") || strstr(low, "python") ||
		    strstr(low, "enginecore") || strstr(low, "ray::"))
			seen = 1;
		jv_free(pr);
		(void)i;
	}
	return seen;
}

static int
has_problem(jv probs, const char *code)
{
	int found = 0;

	jv_array_foreach(probs, i, pr) {
		found |= is(lc_str(pr, "code"), code);
		jv_free(pr);
		(void)i;
	}
	return found;
}

/* Problems of one GPU: hot, memory_full, ecc_errors, throttled. */
static jv
gpu_problems(jv probs, jv g, int vllm)
{
	char msg[512];
	double t = lc_num(g, "temperature_c", -1);
	double used = lc_num(g, "memory_used_mib", -1);
	double total = lc_num(g, "memory_total_mib", -1);
	int idx = (int)lc_num(g, "index", 0);
	jv ecc = lc_get(g, "ecc_errors"), thr = lc_get(g, "throttle_reasons");

	if (t > LC_GPU_HOT_C) {
		snprintf(msg, sizeof(msg), "GPU %d is at %.0f C, over %d C: it "
		    "will slow down or shut off; lighten the load or move to "
		    "another VM", idx, t, LC_GPU_HOT_C);
		probs = jv_array_append(probs, problem("hot", msg));
	}
	if (total > 0 && used >= 0 && used * 100 >= total * LC_GPU_FULL_PCT &&
	    vllm != 1) {
		snprintf(msg, sizeof(msg), "GPU %d memory is %.0f%% used (%.0f "
		    "of %.0f MiB) and no vLLM process holds it: a stale "
		    "process or container; remove it (docker rm -f vllm) or "
		    "reboot",
		    idx, used * 100 / total, used, total);
		probs = jv_array_append(probs, problem("memory_full", msg));
	}
	if (lc_num(ecc, "uncorrected_volatile", 0) > 0) {
		snprintf(msg, sizeof(msg), "GPU %d has %.0f uncorrected ECC "
		    "errors since boot: its memory is failing; destroy the VM "
		    "and create another", idx,
		    lc_num(ecc, "uncorrected_volatile", 0));
		probs = jv_array_append(probs, problem("ecc_errors", msg));
	}
	if (jv_get_kind(thr) == JV_KIND_ARRAY) {
		jv_array_foreach(thr, i, r) {
			const char *s = jv_string_value(r);

			if (strstr(s, "hw_") == s || strstr(s, "thermal")) {
				snprintf(msg, sizeof(msg), "GPU %d is slowed "
				    "down by the hardware (%s): check its "
				    "temperature and power", idx, s);
				probs = jv_array_append(probs,
				    problem("throttled", msg));
			}
			jv_free(r);
			(void)i;
		}
	}
	jv_free(ecc);
	jv_free(thr);
	return probs;
}

jv
lc_gpu_health(jv probe, int expected)
{
	jv probs = lc_get(probe, "problems"), gpus = lc_get(probe, "gpus");
	jv procs = lc_get(probe, "processes");
	int n, broken, vllm = vllm_seen(procs);
	char msg[256];

	if (jv_get_kind(probs) != JV_KIND_ARRAY) {
		jv_free(probs);
		probs = jv_array();
	}
	if (jv_get_kind(gpus) != JV_KIND_ARRAY) {
		jv_free(gpus);
		gpus = jv_array();
	}
	n = jv_array_length(jv_copy(gpus));
	broken = has_problem(probs, "no_driver") ||
	    has_problem(probs, "driver_mismatch") ||
	    has_problem(probs, "nvidia_smi_missing") ||
	    has_problem(probs, "probe_failed") ||
	    has_problem(probs, "gpu_lost") || has_problem(probs, "nvml_error");
	if (!broken && expected > 0 && n < expected) {
		snprintf(msg, sizeof(msg), "nvidia-smi shows %d GPU%s but the "
		    "type promises %d: a GPU is missing or failed; reboot, or "
		    "destroy the session and create another", n,
		    n == 1 ? "" : "s", expected);
		probs = jv_array_append(probs, problem("gpu_count", msg));
	} else if (!broken && expected <= 0 && n == 0)
		probs = jv_array_append(probs, problem("gpu_count",
		    "nvidia-smi shows no GPUs"));
	jv_array_foreach(gpus, i, g) {
		probs = gpu_problems(probs, g, vllm);
		jv_free(g);
		(void)i;
	}
	jv_free(gpus);
	jv_free(procs);
	return jv_object_set(jv_object_set(jv_object(), jv_string("ok"),
	    jv_bool(jv_array_length(jv_copy(probs)) == 0)),
	    jv_string("problems"), probs);
}

/* Give each process the index of its GPU (by UUID). */
static jv
procs_index(jv procs, jv gpus)
{
	jv out = jv_array();

	jv_array_foreach(procs, i, pr) {
		const char *u = lc_str(pr, "gpu_uuid");

		jv_array_foreach(gpus, k, g) {
			if (u != NULL && is(lc_str(g, "uuid"), u))
				pr = jv_object_set(pr, jv_string("gpu"),
				    lc_get(g, "index"));
			jv_free(g);
			(void)k;
		}
		out = jv_array_append(out, pr);
		(void)i;
	}
	jv_free(procs);
	return out;
}

jv
lc_gpu_set_processes(jv probe, jv apps)
{
	jv gpus = lc_get(probe, "gpus");

	apps = procs_index(apps, gpus);
	jv_free(gpus);
	return jv_object_set(probe, jv_string("processes"), apps);
}

/* Does the text look like a table of nvidia-smi? */
static int
is_table(const char *t)
{
	return strstr(t, "| NVIDIA-SMI") != NULL ||
	    (strstr(t, "+----") != NULL && strstr(t, "Memory-Usage") != NULL);
}

jv
lc_gpu_parse(const char *text)
{
	char *copy = lc_xstrdup(text), *t = copy;
	jv p;

	while (isspace((unsigned char)*t))
		t++;
	if (*t == '\0')
		p = add_problem(probe_new("empty"), "probe_failed",
		    "nvidia-smi printed nothing");
	else if (strstr(t, "NVSMI LOG") != NULL)
		p = parse_q(t);
	else if (strstr(t, "<nvidia_smi_log") != NULL)
		p = parse_xml(t);
	else if (is_table(t))
		p = parse_table(t);
	else if (strstr(t, "No devices were found") != NULL)
		p = probe_new("error");
	else {
		/* CSV rows first: a row may say "[GPU is lost]" */
		p = parse_csv(t);
		if (jv_array_length(lc_get(p, "gpus")) == 0) {
			jv e = parse_errors(probe_new("error"), text);

			if (jv_array_length(lc_get(e, "problems")) > 0) {
				jv_free(p);
				free(copy);
				return e;
			}
			jv_free(e);
		}
	}
	free(copy);
	return parse_errors(p, text);
}
