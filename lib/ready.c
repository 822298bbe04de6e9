/* ready: from a running instance to a session that answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "gpu.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "session.h"
#include "ready.h"
#include "remote.h"
#include "ssh.h"
#include "vllm.h"

static const struct {
	const char	*name, *code;
	long		 limit_s;	/* default time limit */
	const char	*hint;		/* what to do when it fails */
} stages[LC_STAGE_COUNT] = {
	{ "ssh", "ready_ssh", 600, "check the VM in Cloud Manager (Lish "
	    "console); 'coder down' stops the bill" },
	{ "secrets", "ready_secrets", 120, "try 'lc-create --wait' again "
	    "with the session's name" },
	{ "cloud-init", "ready_cloudinit", 1800, "'coder logs' shows the "
	    "cloud-init log; 'coder down' stops the bill" },
	{ "gpu", "ready_gpu", 300, "'coder check' shows the GPU problems" },
	{ "health", "ready_health", 1800, "'coder logs' shows vLLM's log; "
	    "'coder heal' diagnoses and fixes a failed start" },
	{ "completion", "ready_completion", 300, "'coder logs' shows vLLM's "
	    "log" },
};

/* Phases the VM writes, in order; the stage ends at "load" or later. */
static const char *phases[] = {
	"packages", "driver", "driver_failed", "reboot", "pull", "load",
	"serving", NULL
};

/* Measures one streamed chat completion on the VM: run by python3 there
 * (Ubuntu has it), the API key on stdin, never in argv. */
static const char completion_py[] =
"import json, sys, time, urllib.request\n"
"key = sys.stdin.readline().strip()\n"
"port, model, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])\n"
"body = json.dumps({'model': model, 'max_tokens': 16, 'stream': True,\n"
"    'messages': [{'role': 'user', 'content': 'Say OK.'}]}).encode()\n"
"req = urllib.request.Request('http://127.0.0.1:%s/v1/chat/completions'\n"
"    % port, data=body, headers={'Content-Type': 'application/json',\n"
"    'Authorization': 'Bearer ' + key})\n"
"t0 = time.monotonic(); first = last = None; n = 0\n"
"with urllib.request.urlopen(req, timeout=limit) as r:\n"
"    for line in r:\n"
"        line = line.strip()\n"
"        if not line.startswith(b'data: ') or line == b'data: [DONE]':\n"
"            continue\n"
"        for c in json.loads(line[6:]).get('choices', []):\n"
"            if (c.get('delta') or {}).get('content'):\n"
"                last = time.monotonic(); n += 1\n"
"                first = first or last\n"
"print(json.dumps({'tokens': n, 'ttft_s': first - t0 if first else None,\n"
"    'tokens_per_s': (n - 1) / (last - first) if n > 1 and last > first\n"
"    else None}))\n";

/*
 * Waits for vLLM's first good /health on the VM, run by python3 there: a
 * refused connection returns at once, so polling the port every 20 ms costs
 * nothing and the answer is seen within that of vLLM opening it (vLLM opens
 * its port only once the weights are loaded). The unit is looked at every
 * 2 s. Exit 0: healthy; 3: the unit failed or keeps restarting; 4: still
 * waiting after 60 s. Once healthy it prints "healthy" and goes on with
 * completion_py (appended to it, its arguments then in place), so that
 * the first request follows the first good answer without another SSH
 * round trip or python3 start.
 */
static const char health_py[] =
"import subprocess, sys, time, urllib.request\n"
"port, unit = sys.argv[1], sys.argv[2]\n"
"del sys.argv[2]\n"
"url = 'http://127.0.0.1:%s/health' % port\n"
"def unit_bad():\n"
"    q = subprocess.run(['systemctl', 'is-failed', '--quiet', unit])\n"
"    if q.returncode == 0:\n"
"        return True\n"
"    n = subprocess.run(['systemctl', 'show', '-p', 'NRestarts', '--value',\n"
"        unit], capture_output=True, text=True).stdout.strip()\n"
"    return n.isdigit() and int(n) >= 2\n"
"end = time.monotonic() + 60\n"
"look = 0\n"
"while time.monotonic() < end:\n"
"    try:\n"
"        with urllib.request.urlopen(url, timeout=5) as r:\n"
"            if r.status == 200:\n"
"                break\n"
"    except Exception:\n"
"        pass\n"
"    if time.monotonic() >= look:\n"
"        if unit_bad():\n"
"            sys.exit(3)\n"
"        look = time.monotonic() + 2\n"
"    time.sleep(0.02)\n"
"else:\n"
"    sys.exit(4)\n"
"print('healthy', flush=True)\n";

struct ready {
	int		 nosave;	/* a group's worker: nothing to save */
	struct lc_config *cfg;
	struct lc_ledger *l;
	jv		*rec;
	struct lc_ssh	*ssh;
	long long	 t0_ms;		/* when this stage began */
	long long	 end_ms;	/* when all stages must be done */
	const char	*phase;		/* the VM's latest, for the status */
	const struct lc_ready_opts *o;	/* NULL: no admit step */
	struct lc_ssh_result *done;	/* the completion the health stage
					 * ran, or NULL */
};

const char *
lc_ready_stage_name(int stage)
{
	return stage >= 0 && stage < LC_STAGE_COUNT ? stages[stage].name : "?";
}

const char *
lc_ready_stage_code(int stage)
{
	return stage >= 0 && stage < LC_STAGE_COUNT ? stages[stage].code : "?";
}

static long long
remaining_ms(struct ready *r, long long stage_end)
{
	long long end = stage_end < r->end_ms ? stage_end : r->end_ms;

	return end - lc_mono_ms();
}

static void
status_line(struct ready *r, int stage)
{
	char el[32], ts[32];
	time_t created;
	double cost = 0;
	const char *c = lc_str(*r->rec, "created_at");

	if (c != NULL && lc_time_parse(c, &created) == 0)
		cost = lc_cost(lc_num(*r->rec, "hourly_cost_usd", 0),
		    lc_num(*r->rec, "monthly_cost_usd", 0), created, lc_now());
	lc_progress("%s: [%d/%d] %s, %s%s%s, $%.2f so far",
	    lc_subject(*r->rec), stage + 1, LC_STAGE_COUNT,
	    stages[stage].name, lc_duration_fmt((long)((lc_mono_ms() -
	    r->t0_ms) / 1000), el, sizeof(el)), r->phase ? ", phase " : "",
	    r->phase ? r->phase : "", cost);
	(void)ts;
}

/* Save the record's fields over the stored ones (keeping what others,
 * such as lc-watch, added meanwhile). */
static jv
merge_fn(jv stored, void *arg)
{
	jv *mine = arg;

	if (!jv_is_valid(stored)) {
		jv_free(stored);
		return jv_copy(*mine);
	}
	return jv_object_merge(stored, jv_copy(*mine));
}

static void
save(struct ready *r)
{
	jv out;

	if (r->nosave)
		return;
	out = lc_ledger_update(r->l, lc_subject(*r->rec), merge_fn, r->rec);

	if (!jv_is_valid(out)) {
		char *m = lc_error_message(out);

		lc_warnx("%s: cannot save the session: %s", lc_subject(*r->rec),
		    m);
		free(m);
	}
	jv_free(out);
}

static void
drop_ssh(struct ready *r)
{
	lc_ssh_close(r->ssh);
	r->ssh = NULL;
}

/* (Re)connect, retrying until the stage's end; a wrong host key and a
 * refused login (ssh_auth) are never retried. */
static int
connect_vm(struct ready *r, int stage, long long stage_end, jv *err)
{
	long long left;

	while (r->ssh == NULL) {
		jv e = jv_invalid();
		const char *code;

		status_line(r, stage);
		if ((left = remaining_ms(r, stage_end)) <= 0) {
			*err = lc_errorf(stages[stage].code, "%s: the VM did not "
			    "answer over SSH in time: %s", stages[stage].name,
			    stages[stage].hint);
			return -1;
		}
		r->ssh = lc_ssh_open(r->cfg, *r->rec, left < 10000 ? left :
		    10000, left < 30000 ? left : 30000, &e);
		if (r->ssh != NULL)
			break;
		code = lc_error_code(e);
		if (strcmp(code, "ssh_auth") == 0) {
			/* A refused key stays refused: waiting out the
			 * stage would only keep the VM billing longer. */
			char *m = lc_error_message(e);

			*err = lc_errorf("ssh_auth", "%s: %s; with the right "
			    "key, 'coder ssh %s' logs in", stages[stage].name,
			    m, lc_subject(*r->rec));
			free(m);
			jv_free(e);
			return -1;
		}
		if (strcmp(code, "ssh_hostkey") == 0 ||
		    strcmp(code, "ssh_config") == 0) {
			char *m = lc_error_message(e);

			*err = lc_errorf(stages[stage].code, "%s: %s",
			    stages[stage].name, m);
			free(m);
			jv_free(e);
			return -1;
		}
		jv_free(e);
		lc_sleep_ms(1000);
	}
	return 0;
}

/* Run a script on the VM; reconnects once if the connection broke (the
 * VM rebooted). 0 with res filled, or -1 with *err. */
static int
run_script(struct ready *r, int stage, long long stage_end, const char *body,
    const char *const needs[], const char *input, long timeout_ms,
    struct lc_ssh_result *res, jv *err)
{
	char *script = lc_remote_script(r->cfg, *r->rec, needs, body,
	    lc_verbose);
	int tries, rc = -1;

	for (tries = 0; tries < 2; tries++) {
		jv e = jv_invalid();

		if (connect_vm(r, stage, stage_end, err) == -1)
			break;
		lc_ssh_result_free(res);
		*res = (struct lc_ssh_result)LC_SSH_RESULT_INIT;
		if (lc_ssh_run(r->ssh, script, input, input ? strlen(input) :
		    0, timeout_ms, res, &e) == 0) {
			rc = 0;
			break;
		}
		drop_ssh(r);
		if (tries == 1)
			*err = e;
		else
			jv_free(e);
	}
	free(script);
	return rc;
}

int
lc_ready_client_prefix(const char *ssh_connection, char *out, size_t len)
{
	unsigned char a[16];
	char ip[64], txt[INET6_ADDRSTRLEN];
	size_t n;

	if (ssh_connection == NULL)
		return -1;
	ssh_connection += strspn(ssh_connection, " \t");
	n = strcspn(ssh_connection, " \t\r\n");
	if (n == 0 || n >= sizeof(ip))
		return -1;
	memcpy(ip, ssh_connection, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, a) == 1)
		return snprintf(out, len, "%s/32", ip) < (int)len ? 0 : -1;
	if (inet_pton(AF_INET6, ip, a) != 1)
		return -1;
	/* ::ffff:a.b.c.d is an IPv4 client on a dual-stack sshd. */
	if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		if (inet_ntop(AF_INET, a + 12, txt, sizeof(txt)) == NULL)
			return -1;
		return snprintf(out, len, "%s/32", txt) < (int)len ? 0 : -1;
	}
	if (inet_ntop(AF_INET6, a, txt, sizeof(txt)) == NULL)
		return -1;
	return snprintf(out, len, "%s/128", txt) < (int)len ? 0 : -1;
}

/*
 * A public session without an address to admit: ask the VM where this
 * SSH connection comes from and hand it to o->admit. Only the VM knows
 * the address this machine reaches it from (NAT, a VPN, IPv6).
 */
static int
admit_caller(struct ready *r, long long end, jv *err)
{
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	char prefix[64];
	int rc = -1;

	if (run_script(r, LC_STAGE_SSH, end,
	    "printf '%s\\n' \"${SSH_CONNECTION-}\"\n", NULL, NULL, 30000,
	    &res, err) == -1)
		goto out;
	if (res.status != 0 || lc_ready_client_prefix(res.out.data, prefix,
	    sizeof(prefix)) == -1) {
		const char *got = res.out.data ? res.out.data : "";

		*err = lc_errorf(stages[LC_STAGE_SSH].code, "ssh: public, but "
		    "the VM does not tell which address this machine connects "
		    "from (SSH_CONNECTION '%.*s'), so port 8000 stays closed: "
		    "give --allow ADDRESS, or leave out --public and use "
		    "'coder tunnel'", (int)strcspn(got, "\r\n") < 60 ?
		    (int)strcspn(got, "\r\n") : 60, got);
		goto out;
	}
	rc = r->o->admit(r->o->admit_arg, r->rec, prefix, err);
out:
	lc_ssh_result_free(&res);
	return rc;
}

static int
stage_ssh(struct ready *r, long long end, jv *err)
{
	if (connect_vm(r, LC_STAGE_SSH, end, err) == -1)
		return -1;
	if (r->o == NULL || r->o->admit == NULL || !lc_bool(*r->rec,
	    "public") || lc_str(*r->rec, "public_allow") != NULL)
		return 0;
	return admit_caller(r, end, err);
}

char *
lc_ready_env_path(struct lc_ledger *l, const char *name)
{
	return lc_session_path(l, name, LC_SESSION_ENV);
}

char *
lc_ready_api_key(struct lc_ledger *l, const char *name)
{
	char *path, *text = NULL, *key = NULL;
	jv vars, err = jv_invalid();

	if (l == NULL)
		return NULL;
	path = lc_ready_env_path(l, name);
	if (lc_read_file(path, &text, NULL) == 0 &&
	    lc_config_parse_env(path, text, &vars, &err) == 0) {
		if (lc_str(vars, "OPENAI_API_KEY") != NULL)
			key = lc_xstrdup(lc_str(vars, "OPENAI_API_KEY"));
		jv_free(vars);
	}
	jv_free(err);
	free(text);
	free(path);
	return key;
}

/* The session's env file for aider and OpenAI clients. */
int
lc_ready_env_write(struct lc_ledger *l, jv *rec, const char *key, jv *err)
{
	struct lc_buf b = LC_BUF_INIT;
	char *path = lc_ready_env_path(l, lc_subject(*rec));
	const char *served = lc_str(*rec, "served_model_name");
	int port = lc_session_local_port(l, *rec), rc = 0;

	*rec = jv_object_set(*rec, jv_string("local_port"), jv_number(port));
	lc_buf_addstr(&b, "# linode-coder session env file (aider --env-file)\n");
	if (lc_bool(*rec, "public") && lc_str(*rec, "ipv4") != NULL)
		lc_buf_printf(&b, "OPENAI_API_BASE=http://%s:%d/v1\n",
		    lc_str(*rec, "ipv4"), lc_vllm_port(*rec));
	else
		lc_buf_printf(&b, "OPENAI_API_BASE=http://127.0.0.1:%d/v1\n",
		    port);
	lc_buf_printf(&b, "OPENAI_API_KEY=%s\n", key);
	lc_buf_printf(&b, "AIDER_MODEL=openai/%s\n", served ? served :
	    "coder");
	if (lc_write_file_atomic(path, b.data, b.len, 0600) == -1) {
		*err = lc_errorf(stages[LC_STAGE_SECRETS].code, "cannot write "
		    "%s: %s", path, strerror(errno));
		rc = -1;
	}
	/* The key lived in b: wipe it before freeing. */
	memset(b.data, 0, b.len);
	lc_buf_free(&b);
	free(path);
	return rc;
}

static int
stage_secrets(struct ready *r, long long end, jv *err)
{
	static const char *const needs[] = { "mkdir", "cat", "mv", "chmod",
	    NULL };
	const char *body = "umask 077\n"
	    "d=\"${LC_REMOTE_ROOT%/}/etc/linode-coder\"\n"
	    "mkdir -p \"$d\"\n"
	    "cat >\"$d/secrets.env.tmp\"\n"
	    "chmod 600 \"$d/secrets.env.tmp\"\n"
	    "mv \"$d/secrets.env.tmp\" \"$d/secrets.env\"\n";
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	struct lc_buf in = LC_BUF_INIT;
	const char *hf = lc_config_get(r->cfg, "HF_TOKEN");
	char *key = lc_ready_api_key(r->l, lc_subject(*r->rec));
	int rc = -1;

	/* A second run keeps the key the VM already has. */
	if (key == NULL) {
		key = lc_xmalloc(41);
		if (lc_random_string(key, 40, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == -1) {
			*err = lc_errorf(stages[LC_STAGE_SECRETS].code,
			    "no random bytes for the API key");
			free(key);
			return -1;
		}
	}
	lc_buf_printf(&in, "VLLM_API_KEY=%s\n", key);
	if (hf != NULL)
		lc_buf_printf(&in, "HF_TOKEN=%s\nHUGGING_FACE_HUB_TOKEN=%s\n",
		    hf, hf);
	if (run_script(r, LC_STAGE_SECRETS, end, body, needs, in.data, 60000,
	    &res, err) == 0) {
		if (res.status != 0)
			*err = lc_errorf(stages[LC_STAGE_SECRETS].code,
			    "secrets: pushing secrets.env failed (exit %d): "
			    "%.200s", res.status, res.err.data ? res.err.data :
			    "");
		else
			rc = lc_ready_env_write(r->l, r->rec, key, err);
	}
	memset(in.data, 0, in.len);
	lc_buf_free(&in);
	memset(key, 0, strlen(key));
	free(key);
	lc_ssh_result_free(&res);
	return rc;
}

/* The phase's index, or -1. */
static int
phase_index(const char *p)
{
	for (int i = 0; phases[i] != NULL; i++)
		if (strcmp(p, phases[i]) == 0)
			return i;
	return -1;
}

static int
stage_cloudinit(struct ready *r, long long end, jv *err)
{
	static const char *const needs[] = { "cat", NULL };
	const char *body =
	    "cat \"${LC_REMOTE_ROOT%/}/var/lib/linode-coder/phase\" "
	    "2>/dev/null || echo none\n"
	    "grep ' driver_failed ' \"${LC_REMOTE_ROOT%/}/var/lib/linode-coder/"
	    "phase.log\" 2>/dev/null | tail -n 1 || true\n"
	    "if command -v cloud-init >/dev/null 2>&1; then "
	    "cloud-init status 2>/dev/null || true; fi\n";
	const char *fail_body =
	    "cloud-init status --long 2>/dev/null || true\n"
	    "tail -n 25 /var/log/cloud-init-output.log 2>/dev/null || true\n";
	static char phase[32];
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	long sleep_ms = 1000;
	int rc = -1;

	for (;;) {
		char *st;

		status_line(r, LC_STAGE_CLOUDINIT);
		if (remaining_ms(r, end) <= 0) {
			*err = lc_errorf(stages[LC_STAGE_CLOUDINIT].code,
			    "cloud-init: not done in time (last phase: %s): %s",
			    r->phase ? r->phase : "none",
			    stages[LC_STAGE_CLOUDINIT].hint);
			break;
		}
		if (run_script(r, LC_STAGE_CLOUDINIT, end, body, needs, NULL,
		    30000, &res, err) == -1) {
			/* The driver reboot: wait and reconnect. */
			jv_free(*err);
			*err = jv_invalid();
			lc_sleep_ms(sleep_ms);
			continue;
		}
		if (res.out.data != NULL &&
		    sscanf(res.out.data, "%31s", phase) == 1 &&
		    phase_index(phase) >= 0) {
			if (r->phase == NULL || strcmp(r->phase, phase) != 0)
				lc_info("%s: cloud-init: phase %s",
				    lc_subject(*r->rec), phase);
			r->phase = phase;
			*r->rec = jv_object_set(*r->rec, jv_string("phase"),
			    jv_string(phase));
		}
		/* The driver gave no answer in its time: no use waiting for
		 * cloud-init or the GPU stage. */
		if (r->phase != NULL && strcmp(r->phase, "driver_failed") == 0) {
			const char *why = res.out.data == NULL ? NULL :
			    strstr(res.out.data, " driver_failed (");
			int n = 0;

			if (why != NULL) {
				why += strlen(" driver_failed (");
				n = (int)strcspn(why, "\n");
				if (n > 0 && why[n - 1] == ')')
					n--;
			}
			if (n == 0) {
				why = "nvidia-smi does not answer";
				n = (int)strlen(why);
			}
			*err = lc_errorf(stages[LC_STAGE_GPU].code, "gpu: the "
			    "NVIDIA driver failed on the VM: %.*s: %s", n, why,
			    stages[LC_STAGE_GPU].hint);
			break;
		}
		st = res.out.data ? strstr(res.out.data, "status:") : NULL;
		if (st != NULL && strncmp(st, "status: error", 13) == 0) {
			struct lc_ssh_result fr = LC_SSH_RESULT_INIT;
			jv e = jv_invalid();

			if (run_script(r, LC_STAGE_CLOUDINIT, end, fail_body,
			    NULL, NULL, 30000, &fr, &e) == -1)
				jv_free(e);
			*err = lc_errorf(stages[LC_STAGE_CLOUDINIT].code,
			    "cloud-init failed on the VM (phase %s): %s\n%s",
			    r->phase ? r->phase : "none",
			    stages[LC_STAGE_CLOUDINIT].hint,
			    fr.out.data ? fr.out.data : "");
			lc_ssh_result_free(&fr);
			break;
		}
		if (r->phase != NULL && phase_index(r->phase) >=
		    phase_index("load")) {
			rc = 0;
			break;
		}
		lc_sleep_ms(sleep_ms);
		if (sleep_ms < 3000)
			sleep_ms += 500;
	}
	lc_ssh_result_free(&res);
	return rc;
}

static int
stage_gpu(struct ready *r, long long end, jv *err)
{
	static const char *const needs[] = { "nvidia-smi", NULL };
	const char *body = "nvidia-smi --query-gpu=" LC_GPU_QUERY
	    " --format=csv,noheader,nounits\n";
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	jv probe = jv_null(), health = jv_null();
	int rc = -1, expected = (int)lc_num(*r->rec, "gpus", 0);

	for (;;) {
		status_line(r, LC_STAGE_GPU);
		if (run_script(r, LC_STAGE_GPU, end, body, needs, NULL, 30000,
		    &res, err) == -1)
			break;
		jv_free(probe);
		jv_free(health);
		probe = lc_gpu_parse(res.out.data ? res.out.data : "");
		health = lc_gpu_health(probe, expected);	/* borrows */
		if (res.status == 0 && lc_bool(health, "ok")) {
			*r->rec = jv_object_set(*r->rec, jv_string("gpus_found"),
			    lc_get(probe, "gpus"));
			rc = 0;
			break;
		}
		if (remaining_ms(r, end) <= 0) {
			jv p = lc_get(health, "problems"), first;
			const char *m;

			first = jv_get_kind(p) == JV_KIND_ARRAY &&
			    jv_array_length(jv_copy(p)) > 0 ?
			    jv_array_get(jv_copy(p), 0) : jv_null();
			m = lc_str(first, "message");
			*err = lc_errorf(stages[LC_STAGE_GPU].code, "gpu: %s: %s",
			    m ? m : res.status == LC_REMOTE_MISSING ?
			    "nvidia-smi not found: is the driver installed?" :
			    "nvidia-smi did not report healthy GPUs",
			    stages[LC_STAGE_GPU].hint);
			jv_free(first);
			jv_free(p);
			break;
		}
		lc_sleep_ms(2000);
	}
	jv_free(probe);
	jv_free(health);
	lc_ssh_result_free(&res);
	return rc;
}

/*
 * Waits on the VM itself (health_py, one SSH call a minute), so the answer
 * comes within 20 ms of /health turning 200.
 */
static int
stage_health(struct ready *r, long long end, jv *err)
{
	static const char *const needs[] = { "python3", "systemctl", NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	struct lc_buf body = LC_BUF_INIT, py = LC_BUF_INIT, in = LC_BUF_INIT;
	char *key = lc_ready_api_key(r->l, lc_subject(*r->rec));
	const char *served = lc_str(*r->rec, "served_model_name");
	int rc = -1;

	lc_buf_addstr(&py, health_py);
	lc_buf_addstr(&py, completion_py);
	lc_buf_addstr(&body, "exec python3 -c ");
	lc_remote_quote(&body, py.data);
	lc_buf_printf(&body, " %d %s ", lc_vllm_port(*r->rec), LC_VLLM_UNIT);
	lc_remote_quote(&body, served ? served : "coder");
	lc_buf_printf(&body, " %ld\n", stages[LC_STAGE_COMPLETION].limit_s);
	lc_buf_printf(&in, "%s\n", key ? key : "");
	for (;;) {
		status_line(r, LC_STAGE_HEALTH);
		if (remaining_ms(r, end) <= 0) {
			*err = lc_errorf(stages[LC_STAGE_HEALTH].code, "health: "
			    "vLLM did not answer /health in time: %s",
			    stages[LC_STAGE_HEALTH].hint);
			break;
		}
		/* 60 s of waiting, then the completion's own limit. */
		if (run_script(r, LC_STAGE_HEALTH, end, body.data, needs,
		    in.data, remaining_ms(r, end) < 60000 +
		    stages[LC_STAGE_COMPLETION].limit_s * 1000 ?
		    remaining_ms(r, end) : 60000 +
		    stages[LC_STAGE_COMPLETION].limit_s * 1000, &res,
		    err) == -1) {
			if (strcmp(lc_error_code(*err), "ssh_timeout") != 0)
				break;
			jv_free(*err);
			*err = jv_invalid();
			continue;
		}
		if (res.out.data != NULL &&
		    strncmp(res.out.data, "healthy\n", 8) == 0) {
			/* The completion's answer, for its stage. */
			r->done = lc_xmalloc(sizeof(*r->done));
			*r->done = res;
			memmove(res.out.data, res.out.data + 8, strlen(
			    res.out.data + 8) + 1);
			res = (struct lc_ssh_result)LC_SSH_RESULT_INIT;
			rc = 0;
			break;
		}
		if (res.status == 3) {
			*err = lc_errorf(stages[LC_STAGE_HEALTH].code, "health: "
			    "the vLLM unit failed to start: %s",
			    stages[LC_STAGE_HEALTH].hint);
			break;
		}
		if (res.status != 4) {
			*err = lc_errorf(stages[LC_STAGE_HEALTH].code, "health: "
			    "checking /health failed (exit %d): %.200s",
			    res.status, res.err.data ? res.err.data : "");
			break;
		}
	}
	if (in.data != NULL)
		memset(in.data, 0, in.len);
	lc_buf_free(&in);
	lc_buf_free(&py);
	lc_buf_free(&body);
	if (key != NULL)
		memset(key, 0, strlen(key));
	free(key);
	lc_ssh_result_free(&res);
	return rc;
}

/* The last non-empty line of s (the Python error, say) into out. */
static void
last_line(const char *s, char *out, size_t len)
{
	const char *end, *start;

	snprintf(out, len, "no output");
	if (s == NULL)
		return;
	end = s + strlen(s);
	while (end > s && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	if (end == s)
		return;
	for (start = end; start > s && start[-1] != '\n'; start--)
		;
	snprintf(out, len, "%.*s", (int)(end - start), start);
}

static int
stage_completion(struct ready *r, long long end, jv *err)
{
	static const char *const needs[] = { "python3", NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	struct lc_buf body = LC_BUF_INIT, in = LC_BUF_INIT;
	char *key = lc_ready_api_key(r->l, lc_subject(*r->rec));
	const char *served = lc_str(*r->rec, "served_model_name");
	long long left = remaining_ms(r, end);
	jv out;
	int rc = -1;

	status_line(r, LC_STAGE_COMPLETION);
	if (r->done != NULL) {
		/* Run by the health stage, right after the first answer. */
		res = *r->done;
		free(r->done);
		r->done = NULL;
	} else {
		lc_buf_addstr(&body, "exec python3 -c ");
		lc_remote_quote(&body, completion_py);
		lc_buf_printf(&body, " %d ", lc_vllm_port(*r->rec));
		lc_remote_quote(&body, served ? served : "coder");
		lc_buf_printf(&body, " %lld\n", left > 1000 ? left / 1000 : 1);
		lc_buf_printf(&in, "%s\n", key ? key : "");
		if (run_script(r, LC_STAGE_COMPLETION, end, body.data, needs,
		    in.data, left > 0 ? left : 1, &res, err) == -1)
			goto out;
	}
	out = jv_parse(res.out.data ? res.out.data : "");
	if (res.status != 0 || jv_get_kind(out) != JV_KIND_OBJECT ||
	    lc_num(out, "tokens", 0) < 1) {
		char last[301];

		last_line(res.err.data, last, sizeof(last));
		*err = lc_errorf(stages[LC_STAGE_COMPLETION].code, "completion: "
		    "the model did not answer a one-token request: %s: %s",
		    last, stages[LC_STAGE_COMPLETION].hint);
		jv_free(out);
		goto out;
	}
	*r->rec = jv_object_set(*r->rec, jv_string("ttft_s"),
	    lc_get(out, "ttft_s"));
	*r->rec = jv_object_set(*r->rec, jv_string("tokens_per_s"),
	    lc_get(out, "tokens_per_s"));
	jv_free(out);
	rc = 0;
out:
	if (in.data != NULL)
		memset(in.data, 0, in.len);
	lc_buf_free(&in);
	lc_buf_free(&body);
	if (key != NULL)
		memset(key, 0, strlen(key));
	free(key);
	lc_ssh_result_free(&res);
	return rc;
}

int
lc_ready_completion(struct lc_config *cfg, struct lc_ledger *l, jv *rec,
    long limit_s, jv *err)
{
	struct ready r = { 0, cfg, l, rec, NULL, 0, 0, NULL, NULL, NULL };
	int rc;

	r.t0_ms = lc_mono_ms();
	r.end_ms = r.t0_ms + (limit_s > 0 ? limit_s :
	    stages[LC_STAGE_COMPLETION].limit_s) * 1000LL;
	rc = stage_completion(&r, r.end_ms, err);
	lc_progress_done();
	drop_ssh(&r);
	return rc;
}

int
lc_ready_wait(struct lc_config *cfg, struct lc_ledger *l, jv *rec,
    const struct lc_ready_opts *o, jv *err)
{
	static int (*const run[LC_STAGE_COUNT])(struct ready *, long long,
	    jv *) = { stage_ssh, stage_secrets, stage_cloudinit, stage_gpu,
	    stage_health, stage_completion };
	struct ready r = { 0, cfg, l, rec, NULL, 0, 0, NULL, o, NULL };
	char ts[32], el[32];
	int i, rc = 0, stop = o->stop > 0 && o->stop < LC_STAGE_COUNT ?
	    o->stop : LC_STAGE_COUNT, held = -1;
	jv e2 = jv_invalid();

	/* Held while it waits (lib/session): lc-watch leaves a session
	 * being brought up alone, whoever waits (lc-create, lc-heal, coder
	 * switch-model), and sees a start that stopped. */
	if (l != NULL && lc_subject(*rec) != NULL &&
	    lc_name_check(lc_subject(*rec), &e2) == 0)
		held = lc_session_hold(l, lc_subject(*rec));
	jv_free(e2);

	r.end_ms = lc_mono_ms() + (o->total_s > 0 ? o->total_s * 1000LL :
	    86400000LL);
	*rec = jv_object_set(*rec, jv_string("state"),
	    jv_string("provisioning"));
	save(&r);
	for (i = o->first; i < stop && rc == 0; i++) {
		long lim = o->limit_s[i] > 0 ? o->limit_s[i] : stages[i].limit_s;

		r.t0_ms = lc_mono_ms();
		lc_info("%s: stage %d/%d %s: started (limit %s)",
		    lc_subject(*rec), i + 1, LC_STAGE_COUNT, stages[i].name,
		    lc_duration_fmt(lim, el, sizeof(el)));
		rc = run[i](&r, r.t0_ms + lim * 1000LL, err);
		lc_progress_done();
		if (rc == 0)
			lc_info("%s: stage %d/%d %s: done in %s",
			    lc_subject(*rec), i + 1, LC_STAGE_COUNT,
			    stages[i].name, lc_duration_fmt((long)((lc_mono_ms()
			    - r.t0_ms) / 1000), el, sizeof(el)));
		else
			*rec = jv_object_set(*rec, jv_string("failed_stage"),
			    jv_string(stages[i].name));
	}
	drop_ssh(&r);
	if (r.done != NULL) {
		lc_ssh_result_free(r.done);
		free(r.done);
	}
	if (rc == 0 && stop < LC_STAGE_COUNT) {
		/* Stopped early on purpose: not ready, not failed. */
	} else if (rc == 0) {
		*rec = jv_object_set(*rec, jv_string("state"),
		    jv_string("ready"));
		*rec = jv_object_set(*rec, jv_string("ready_at"),
		    jv_string(lc_time_fmt(lc_now(), ts, sizeof(ts))));
		*rec = jv_object_set(*rec, jv_string("failed_stage"),
		    jv_null());
	} else
		*rec = jv_object_set(*rec, jv_string("state"),
		    jv_string("failed"));
	save(&r);
	if (held != -1)
		close(held);
	return rc;
}

/* ---- a group of nodes (lc-create --nodes) ---- */

/* Node i of rec's group (borrowed), or null. Owned. */
static jv
group_node(jv rec, int i)
{
	jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes"), n = jv_null();

	if (jv_get_kind(nodes) == JV_KIND_ARRAY && i >= 0 &&
	    i < jv_array_length(jv_copy(nodes)))
		n = jv_array_get(jv_copy(nodes), i);
	jv_free(nodes);
	jv_free(g);
	return n;
}

int
lc_ready_node(struct lc_config *cfg, struct lc_ledger *l, jv rec, int i,
    const struct lc_ready_opts *o, jv *err)
{
	static int (*const run[])(struct ready *, long long, jv *) = {
	    stage_ssh, stage_secrets, stage_cloudinit, stage_gpu };
	jv node = group_node(rec, i), nrec = lc_session_node(rec, i);
	struct ready r = { 1, cfg, l, &nrec, NULL, 0, 0, NULL, NULL, NULL };
	const char *label = lc_str(node, "label");
	char lb[80], el[32];
	int s, rc = 0, stop = o->stop > 0 && o->stop <= LC_STAGE_HEALTH ?
	    o->stop : LC_STAGE_HEALTH;

	if (jv_get_kind(nrec) != JV_KIND_OBJECT) {
		jv_free(node);
		jv_free(nrec);
		*err = lc_errorf(stages[LC_STAGE_SSH].code, "ssh: node %d of "
		    "the group has no address yet", i + 1);
		return -1;
	}
	/* The session's record, as seen at this node's address: the one
	 * host key and API key, its own host. */
	snprintf(lb, sizeof(lb), "%s", label ? label : "?");
	jv_free(node);
	r.end_ms = lc_mono_ms() + (o->total_s > 0 ? o->total_s * 1000LL :
	    86400000LL);
	for (s = 0; s < stop && rc == 0; s++) {
		long lim = o->limit_s[s] > 0 ? o->limit_s[s] : stages[s].limit_s;

		r.t0_ms = lc_mono_ms();
		rc = run[s](&r, r.t0_ms + lim * 1000LL, err);
		lc_progress_done();
		if (rc == 0)
			lc_info("%s: node %s: stage %s: done in %s",
			    lc_subject(rec), lb, stages[s].name,
			    lc_duration_fmt((long)((lc_mono_ms() - r.t0_ms) /
			    1000), el, sizeof(el)));
	}
	if (rc == -1) {	/* the node's name in the error */
		char *m = lc_error_message(*err);
		jv e = lc_errorf(lc_error_code(*err), "node %s: %s", lb, m);

		free(m);
		jv_free(*err);
		*err = e;
	}
	drop_ssh(&r);
	jv_free(nrec);
	return rc;
}

/* Python on the head, in its vLLM container: the VPC address of every
 * node alive in Ray, one a line. */
static const char ray_body[] =
    "docker exec vllm python3 -c 'import ray\n"
    "ray.init(address=\"auto\", logging_level=\"ERROR\")\n"
    "for n in ray.nodes():\n"
    "    if n.get(\"Alive\"):\n"
    "        print(n[\"NodeManagerAddress\"])' 2>/dev/null || true\n";

/* Is addr a whole line of text? */
static int
has_line(const char *text, const char *addr)
{
	size_t n = strlen(addr);
	const char *p;

	for (p = text; p != NULL && (p = strstr(p, addr)) != NULL; p += n)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' ||
		    p[n] == '\0' || p[n] == '\r'))
			return 1;
	return 0;
}

int
lc_ready_ray(struct lc_config *cfg, struct lc_ledger *l, jv *rec,
    long limit_s, jv *err)
{
	static const char *const needs[] = { "docker", NULL };
	struct ready r = { 1, cfg, l, rec, NULL, 0, 0, NULL, NULL, NULL };
	struct lc_ssh_result res = LC_SSH_RESULT_INIT;
	int nodes = (int)lc_num(*rec, "nodes", 1), i, joined = 0, rc = -1;
	long long end;
	struct lc_buf missing = LC_BUF_INIT;
	char el[32];

	r.t0_ms = lc_mono_ms();
	end = r.t0_ms + (limit_s > 0 ? limit_s : 900) * 1000LL;
	r.end_ms = end;
	lc_info("%s: group: stage ray: started (%d nodes)", lc_subject(*rec),
	    nodes);
	for (;;) {
		if (run_script(&r, LC_STAGE_GPU, end, ray_body, needs, NULL,
		    60000, &res, err) == -1)
			break;
		joined = 0;
		lc_buf_free(&missing);
		missing = (struct lc_buf)LC_BUF_INIT;
		for (i = 0; i < nodes; i++) {
			jv n = group_node(*rec, i);
			const char *a = lc_str(n, "vpc_address");

			if (a != NULL && res.out.data != NULL &&
			    has_line(res.out.data, a))
				joined++;
			else
				lc_buf_printf(&missing, "%s%s (%s)",
				    missing.len ? ", " : "", lc_str(n,
				    "label") ? lc_str(n, "label") : "?",
				    a ? a : "?");
			jv_free(n);
		}
		if (joined == nodes) {
			rc = 0;
			break;
		}
		if (lc_mono_ms() + 3000 > end) {
			*err = lc_errorf("ready_ray", "ray: %s never joined the "
			    "head's Ray cluster (%d of %d nodes in %s): 'coder "
			    "heal' reads the head's log; 'coder down' stops "
			    "the bill", missing.data, joined, nodes,
			    lc_duration_fmt((long)((lc_mono_ms() - r.t0_ms) /
			    1000), el, sizeof(el)));
			break;
		}
		lc_progress("%s: [group] ray, %d of %d nodes joined",
		    lc_subject(*rec), joined, nodes);
		lc_sleep_ms(3000);
	}
	lc_progress_done();
	if (rc == 0) {
		lc_info("%s: group: stage ray: %d nodes joined in %s",
		    lc_subject(*rec), nodes, lc_duration_fmt((long)((lc_mono_ms()
		    - r.t0_ms) / 1000), el, sizeof(el)));
		*rec = jv_object_set(*rec, jv_string("nodes_joined"),
		    jv_number(joined));
	} else
		*rec = jv_object_set(*rec, jv_string("failed_stage"),
		    jv_string("ray"));
	lc_buf_free(&missing);
	lc_ssh_result_free(&res);
	drop_ssh(&r);
	return rc;
}
