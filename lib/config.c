/* config: defaults, files, environment and flags, in that order. */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "lc.h"
#include "lctime.h"

const struct lc_cfg_key lc_cfg_keys[] = {
	{ "LINODE_TOKEN", LC_CFG_SECRET, NULL,
	  "Linode personal access token (coder wizard writes it to "
	  "~/.config/linode-coder/secrets, mode 0600)" },
	{ "LINODE_CLI_TOKEN", LC_CFG_SECRET, NULL,
	  "token, as linode-cli names it; used when LINODE_TOKEN is unset" },
	{ "HF_TOKEN", LC_CFG_SECRET, NULL,
	  "Hugging Face token for gated models; pushed to the VM over SSH" },
	{ "LC_API_URL", LC_CFG_STRING, "https://api.linode.com/v4",
	  "Linode API base URL" },
	{ "LC_REGION", LC_CFG_STRING, "us-ord", "region for new sessions" },
	{ "LC_PRESET", LC_CFG_STRING, "qwen-coder-7b",
	  "preset for new sessions (coder presets lists them)" },
	{ "LC_TYPE", LC_CFG_STRING, NULL,
	  "Linode type; overrides the preset's" },
	{ "LC_MODEL", LC_CFG_STRING, NULL,
	  "Hugging Face model id; overrides the preset's" },
	{ "LC_IMAGE", LC_CFG_STRING, "linode/ubuntu24.04",
	  "image for new VMs (linode/ubuntu24.04-nvidia skips the driver)" },
	{ "LC_IDLE_TIMEOUT", LC_CFG_DURATION, "30m",
	  "destroy a session idle this long (lc-watch)" },
	{ "LC_DEADLINE", LC_CFG_DURATION, "8h",
	  "hard stop this long after creation" },
	{ "LC_MAX_DEADLINE", LC_CFG_DURATION, "24h",
	  "no extend moves the hard stop past creation plus this" },
	{ "LC_BUDGET_USD", LC_CFG_NUMBER, NULL,
	  "destroy a session whose cost passes this many dollars" },
	{ "LC_MAX_HOURLY", LC_CFG_NUMBER, NULL,
	  "refuse types that cost more per hour than this" },
	{ "LC_READY_TIMEOUT", LC_CFG_DURATION, "30m",
	  "a session not ready this long after creation is unready" },
	{ "LC_UNREACHABLE_TIMEOUT", LC_CFG_DURATION, "15m",
	  "a session unreachable over SSH this long counts as idle" },
	{ "LC_FAILSAFE", LC_CFG_BOOL, "on",
	  "off: no token on the VM, so the VM never deletes itself (only "
	  "lc-watch guards the session)" },
	{ "LC_VM_IDLE_GUARD", LC_CFG_BOOL, "on",
	  "off: the VM deletes itself at its deadline only, not when idle" },
	{ "LC_ORPHAN_GRACE", LC_CFG_DURATION, NULL,
	  "delete a VM of this ledger with no readable session once this old "
	  "(default: LC_IDLE_TIMEOUT)" },
	{ "LC_SSH_KEY", LC_CFG_PATH, "~/.ssh/id_ed25519",
	  "private key for SSH; its .pub goes to the VM" },
	{ "LC_SSH_USER", LC_CFG_STRING, "root", "user on the VM" },
	{ "LC_SSH_PORT", LC_CFG_INT, "22", "SSH port on the VM" },
	{ "LC_SSH_TIMEOUT", LC_CFG_DURATION, "10s",
	  "time limit for one SSH connection attempt" },
	{ "LC_HTTP_TIMEOUT", LC_CFG_DURATION, "30s",
	  "time limit for one Linode API request" },
	{ "LC_HTTP_RETRIES", LC_CFG_INT, "5",
	  "tries after the first for a failed Linode API request" },
	{ "LC_VLLM_IMAGE", LC_CFG_STRING, "vllm/vllm-openai:v0.11.0",
	  "vLLM container image (a pinned tag)" },
	{ "LC_VLLM_PORT", LC_CFG_INT, "8000", "vLLM port on the VM" },
	{ "LC_PUBLIC", LC_CFG_BOOL, "no",
	  "open the vLLM port to this machine's address (default: tunnel)" },
	{ "LC_VOLUME", LC_CFG_STRING, NULL,
	  "Block Storage volume label for the model cache" },
	{ "LC_CACHE", LC_CFG_BOOL, "off",
	  "keep the model cache on a volume, lc-cache-<region> (billed per "
	  "GB and month until deleted)" },
	{ "LC_CACHE_SIZE", LC_CFG_INT, NULL,
	  "the cache volume's size in GB when made (default: from the model)" },
	{ "LC_JOBS", LC_CFG_INT, NULL, "sessions handled at once (-j; "
	  "default: lc-destroy 16, lc-watch every session)" },
	{ "LC_REMOTE_ROOT", LC_CFG_STRING, "/",
	  "directory on the VM under which etc/ and var/lib/ live" },
	{ "REMOTE_PATH", LC_CFG_STRING,
	  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	  "PATH for commands run on the VM" },
	{ NULL, LC_CFG_STRING, NULL, NULL }
};

struct lc_config {
	jv	 vals;		/* key -> {"value", "source"} */
	char	*secrets_path;	/* ./.env.secrets when present */
	jv	 unknown;	/* [{"key", "source", "own"}]: keys not ours */
};

/* How load_file treats a file. */
#define LF_SECRET	1	/* must be private, whatever it holds */
#define LF_OWN		2	/* ours alone: an unknown key is an error */

static const struct lc_cfg_key *
find_key(const char *name)
{
	const struct lc_cfg_key *k;

	for (k = lc_cfg_keys; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static int
is_secret_key(const char *name)
{
	const struct lc_cfg_key *k = find_key(name);

	return k != NULL && k->type == LC_CFG_SECRET;
}

/* Keys we take from files and the environment. */
static int
is_ours(const char *name)
{
	return find_key(name) != NULL ||
	    strncmp(name, "REMOTE_ENV_", 11) == 0;
}

static void
put(struct lc_config *c, const char *key, const char *val, const char *src)
{
	jv e = jv_object_set(jv_object(), jv_string("value"), jv_string(val));

	e = jv_object_set(e, jv_string("source"), jv_string(src));
	c->vals = jv_object_set(c->vals, jv_string(key), e);
}

/* Parse a quoted or bare value starting at p. */
static int
parse_value(const char *p, struct lc_buf *out, const char **why)
{
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\'') {
		const char *e = strchr(p + 1, '\'');

		if (e == NULL) {
			*why = "unterminated single quote";
			return -1;
		}
		lc_buf_add(out, p + 1, (size_t)(e - p - 1));
		p = e + 1;
	} else if (*p == '"') {
		for (p++; *p != '"'; p++) {
			char ch = *p;

			if (*p == '\0') {
				*why = "unterminated double quote";
				return -1;
			}
			if (*p == '\\' && p[1] != '\0') {
				p++;
				ch = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
			}
			lc_buf_add(out, &ch, 1);
		}
		p++;
	} else {
		const char *s = p, *e;

		while (*p != '\0' && !(*p == '#' && p > s &&
		    (p[-1] == ' ' || p[-1] == '\t')))
			p++;
		e = p;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		lc_buf_add(out, s, (size_t)(e - s));
		return 0;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '\0' && *p != '#') {
		*why = "text after the closing quote";
		return -1;
	}
	return 0;
}

int
lc_config_parse_env(const char *path, const char *text, jv *out, jv *err)
{
	jv obj = jv_object();
	const char *line = text;
	int lineno = 0;

	while (line != NULL && *line != '\0') {
		const char *nl = strchr(line, '\n'), *p, *why = NULL;
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char *l = lc_xmalloc(n + 1), *k, *eq;
		struct lc_buf v = LC_BUF_INIT;

		memcpy(l, line, n);
		l[n] = '\0';
		if (n > 0 && l[n - 1] == '\r')
			l[n - 1] = '\0';
		line = nl ? nl + 1 : NULL;
		lineno++;
		for (k = l; *k == ' ' || *k == '\t'; k++)
			;
		if (*k == '\0' || *k == '#') {
			free(l);
			continue;
		}
		if (strncmp(k, "export", 6) == 0 && (k[6] == ' ' || k[6] == '\t'))
			for (k += 7; *k == ' ' || *k == '\t'; k++)
				;
		if ((eq = strchr(k, '=')) == NULL)
			why = "no '=' in the line (write KEY=VALUE)";
		else {
			for (p = k; p < eq && (isalnum((unsigned char)*p) ||
			    *p == '_'); p++)
				;
			while (p < eq && (*p == ' ' || *p == '\t'))
				p++;
			if (p != eq || eq == k || isdigit((unsigned char)*k))
				why = "bad key name (letters, digits and _)";
		}
		if (why == NULL) {
			char *ke = eq;

			while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
				ke--;
			*ke = '\0';
			if (parse_value(eq + 1, &v, &why) == 0)
				obj = jv_object_set(obj, jv_string(k),
				    jv_string(v.data ? v.data : ""));
		}
		lc_buf_free(&v);
		free(l);
		if (why != NULL) {
			jv_free(obj);
			*err = lc_errorf("bad_config", "%s:%d: %s", path, lineno,
			    why);
			return -1;
		}
	}
	*out = obj;
	return 0;
}

/* Merge a KEY=VALUE file if it exists. -1 with *err when it is bad. */
static int
load_file(struct lc_config *c, const char *path, int flags, jv *err)
{
	struct stat st;
	char *text;
	jv obj;
	int has_secret = 0;

	if (stat(path, &st) == -1)
		return 0;
	if (lc_read_file(path, &text, NULL) == -1) {
		*err = lc_errorf("bad_config", "%s: %s (fix its permissions)",
		    path, strerror(errno));
		return -1;
	}
	if (lc_config_parse_env(path, text, &obj, err) == -1) {
		free(text);
		return -1;
	}
	free(text);
	jv_object_foreach(obj, k, v) {
		if (is_secret_key(jv_string_value(k)))
			has_secret = 1;
		jv_free(k);
		jv_free(v);
	}
	/* Secrets must be private, wherever they are written. */
	if (((flags & LF_SECRET) || has_secret) && (st.st_mode & 077) != 0) {
		jv_free(obj);
		*err = lc_errorf("secrets_mode", "%s holds secrets but group or "
		    "others can read it (mode %03o): run chmod 600 %s", path,
		    (unsigned)(st.st_mode & 0777), path);
		return -1;
	}
	jv_object_foreach(obj, k, v) {
		if (is_ours(jv_string_value(k)))
			put(c, jv_string_value(k), jv_string_value(v), path);
		else
			c->unknown = jv_array_append(c->unknown, JV_OBJECT(
			    jv_string("key"), jv_copy(k),
			    jv_string("source"), jv_string(path),
			    jv_string("own"), jv_bool(flags & LF_OWN)));
		jv_free(k);
		jv_free(v);
	}
	jv_free(obj);
	return 0;
}

char *
lc_config_dir(const char *sub)
{
	const char *x = getenv("XDG_CONFIG_HOME");
	char *base, *p;

	if (x != NULL && *x == '/')
		return lc_path_join(x, sub);
	base = lc_path_join(lc_home(), ".config");
	p = lc_path_join(base, sub);
	free(base);
	return p;
}

char *
lc_config_file(const char *name)
{
	char *dir = lc_config_dir("linode-coder"), *p;

	p = lc_path_join(dir, name);
	free(dir);
	return p;
}

struct lc_config *
lc_config_load(jv *err)
{
	extern char **environ;
	struct lc_config *c = calloc(1, sizeof(*c));
	const struct lc_cfg_key *k;
	char *path, *secrets, **e;
	int rc;

	if (c == NULL)
		lc_fatal("out of memory");
	c->vals = jv_object();
	c->unknown = jv_array();
	for (k = lc_cfg_keys; k->name != NULL; k++)
		if (k->def != NULL)
			put(c, k->name, k->def, "default");
	path = lc_config_file("config");
	secrets = lc_config_file("secrets");
	/* The user's secrets come before ./.env so that a project's
	 * .env.secrets still overrides them. */
	rc = load_file(c, path, LF_OWN, err) == -1 ||
	    load_file(c, secrets, LF_OWN | LF_SECRET, err) == -1 ||
	    load_file(c, ".env", 0, err) == -1 ||
	    load_file(c, ".env.secrets", LF_SECRET, err) == -1 ? -1 : 0;
	free(path);
	free(secrets);
	if (rc == -1) {
		lc_config_free(c);
		return NULL;
	}
	if (access(".env.secrets", F_OK) == 0)
		c->secrets_path = lc_xstrdup(".env.secrets");
	for (e = environ; *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		char key[128];

		if (eq == NULL || (size_t)(eq - *e) >= sizeof(key))
			continue;
		memcpy(key, *e, (size_t)(eq - *e));
		key[eq - *e] = '\0';
		if (is_ours(key))
			put(c, key, eq + 1, "environment");
	}
	return c;
}

void
lc_config_free(struct lc_config *c)
{
	if (c == NULL)
		return;
	jv_free(c->vals);
	jv_free(c->unknown);
	free(c->secrets_path);
	free(c);
}

static jv
entry(struct lc_config *c, const char *key)
{
	return lc_get(c->vals, key);
}

const char *
lc_config_get(struct lc_config *c, const char *key)
{
	jv e = entry(c, key);
	const char *s = lc_str(e, "value");

	jv_free(e);	/* c->vals still holds it */
	return s != NULL && *s != '\0' ? s : NULL;
}

const char *
lc_config_source(struct lc_config *c, const char *key)
{
	jv e = entry(c, key);
	const char *s = lc_str(e, "source");

	jv_free(e);
	return s;
}

void
lc_config_set(struct lc_config *c, const char *key, const char *val)
{
	put(c, key, val, "flag");
}

int
lc_config_duration(struct lc_config *c, const char *key, long *out, jv *err)
{
	const char *v = lc_config_get(c, key);

	if (v == NULL) {
		*out = 0;
		return 0;
	}
	if (lc_parse_duration(v, out) == -1) {
		*err = lc_errorf("bad_config", "%s=%s (from %s) is not a "
		    "duration: write e.g. 90s, 30m, 2h or 1d", key, v,
		    lc_config_source(c, key));
		return -1;
	}
	return 0;
}

int
lc_config_number(struct lc_config *c, const char *key, double *out, jv *err)
{
	const char *v = lc_config_get(c, key);
	char *end;

	*out = -1;
	if (v == NULL)
		return 0;
	errno = 0;
	*out = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || *out < 0) {
		*err = lc_errorf("bad_config", "%s=%s (from %s) is not a "
		    "non-negative number: write e.g. 2.50", key, v,
		    lc_config_source(c, key));
		return -1;
	}
	return 0;
}

static int
parse_bool(const char *v, int *b)
{
	static const char *yes[] = { "1", "yes", "true", "on", NULL };
	static const char *no[] = { "0", "no", "false", "off", "", NULL };
	int i;

	for (i = 0; yes[i]; i++)
		if (strcasecmp(v, yes[i]) == 0)
			return *b = 1, 0;
	for (i = 0; no[i]; i++)
		if (strcasecmp(v, no[i]) == 0)
			return *b = 0, 0;
	return -1;
}

int
lc_config_bool(struct lc_config *c, const char *key)
{
	const char *v = lc_config_get(c, key);
	int b = 0;

	return v != NULL && parse_bool(v, &b) == 0 && b;
}

char *
lc_config_path(struct lc_config *c, const char *key)
{
	const char *v = lc_config_get(c, key);

	return v != NULL ? lc_expand_home(v) : NULL;
}

jv
lc_config_remote_env(struct lc_config *c)
{
	jv out = jv_object();

	jv_object_foreach(c->vals, k, v) {
		const char *name = jv_string_value(k);

		if (strncmp(name, "REMOTE_ENV_", 11) == 0 && name[11] != '\0')
			out = jv_object_set(out, jv_string(name + 11),
			    lc_get(v, "value"));
		jv_free(k);
		jv_free(v);
	}
	return out;
}

/* linode-cli keeps an INI file: [DEFAULT] default-user = u, [u] token = t */
static char *
linode_cli_token(void)
{
	char *path = lc_config_dir("linode-cli"), *text, *line, *save = NULL;
	char section[128] = "", user[128] = "", *tok = NULL, *found = NULL;
	int pass;

	if (lc_read_file(path, &text, NULL) == -1) {
		free(path);
		return NULL;
	}
	free(path);
	for (pass = 0; pass < 2 && found == NULL; pass++) {
		char *copy = lc_xstrdup(text);

		for (line = strtok_r(copy, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			char key[128], val[128];

			if (sscanf(line, " [%127[^]]]", section) == 1)
				continue;
			if (sscanf(line, " %127[^= \t] = %127[^\r\n]", key,
			    val) != 2)
				continue;
			if (pass == 0 && strcmp(section, "DEFAULT") == 0 &&
			    strcmp(key, "default-user") == 0)
				snprintf(user, sizeof(user), "%s", val);
			if (pass == 1 && strcmp(key, "token") == 0 &&
			    strcmp(section, user) == 0)
				found = lc_xstrdup(val);
		}
		free(copy);
		section[0] = '\0';
		if (pass == 0 && user[0] == '\0')
			break;
	}
	free(text);
	tok = found;
	if (tok != NULL) {
		char *e = tok + strlen(tok);

		while (e > tok && isspace((unsigned char)e[-1]))
			*--e = '\0';
	}
	return tok;
}

int
lc_config_token(struct lc_config *c, char **token, const char **source,
    jv *err)
{
	static const char *keys[] = { "LINODE_TOKEN", "LINODE_CLI_TOKEN" };
	char *path;
	int i;

	/* The environment first, then files, each key in that order. */
	for (int env = 1; env >= 0; env--) {
		for (i = 0; i < 2; i++) {
			jv e = entry(c, keys[i]);
			const char *v = lc_str(e, "value");
			const char *src = lc_str(e, "source");

			if (v == NULL || (strcmp(src, "environment") == 0) !=
			    env) {
				jv_free(e);
				continue;
			}
			if (*v == '\0') {
				*err = lc_errorf("empty_token", "%s is set but "
				    "empty (in %s): put your Linode token in "
				    "it, or remove the line", keys[i], src);
				jv_free(e);
				return -1;
			}
			*token = lc_xstrdup(v);
			if (source != NULL)
				*source = env ? keys[i] : src;
			jv_free(e);
			return 0;
		}
	}
	if ((*token = linode_cli_token()) != NULL && **token != '\0') {
		if (source != NULL)
			*source = "linode-cli config";
		return 0;
	}
	free(*token);
	*token = NULL;
	path = lc_config_file("secrets");
	*err = lc_errorf("no_token", "no Linode token: run 'coder wizard', "
	    "or put LINODE_TOKEN=... in %s (chmod 600; ./.env.secrets in a "
	    "folder overrides it there), or set LINODE_TOKEN", path);
	free(path);
	return -1;
}

static jv
check_one(struct lc_config *c, const struct lc_cfg_key *k)
{
	const char *v = lc_config_get(c, k->name), *src;
	jv r = jv_object_set(jv_object(), jv_string("key"),
	    jv_string(k->name)), err = jv_invalid();
	char *msg = NULL;
	int ok = 1, b;
	long l;
	double d;

	src = lc_config_source(c, k->name);
	r = jv_object_set(r, jv_string("value"), v == NULL ? jv_null() :
	    jv_string(k->type == LC_CFG_SECRET ? "(set)" : v));
	r = jv_object_set(r, jv_string("source"), src ? jv_string(src) :
	    jv_null());
	if (v == NULL)
		goto out;
	switch (k->type) {
	case LC_CFG_DURATION:
		ok = lc_config_duration(c, k->name, &l, &err) == 0;
		break;
	case LC_CFG_NUMBER:
		ok = lc_config_number(c, k->name, &d, &err) == 0;
		break;
	case LC_CFG_INT:
		ok = strspn(v, "0123456789") == strlen(v) && strlen(v) < 10;
		if (ok && strstr(k->name, "PORT") != NULL)
			ok = atoi(v) >= 1 && atoi(v) <= 65535;
		if (!ok)
			err = lc_errorf("bad_config", "%s=%s is not a valid "
			    "whole number%s", k->name, v,
			    strstr(k->name, "PORT") ? " from 1 to 65535" : "");
		break;
	case LC_CFG_BOOL:
		if (!(ok = parse_bool(v, &b) == 0))
			err = lc_errorf("bad_config", "%s=%s: write yes or no",
			    k->name, v);
		break;
	default:
		break;
	}
out:
	if (!ok)
		msg = lc_error_message(err);
	jv_free(err);
	r = jv_object_set(r, jv_string("ok"), jv_bool(ok));
	r = jv_object_set(r, jv_string("message"), msg ? jv_string(msg) :
	    jv_null());
	free(msg);
	return r;
}

int
lc_config_duration_rule(struct lc_config *c, const char *key, const char *val,
    long *secs, jv *err)
{
	const char *mxv = lc_config_get(c, "LC_MAX_DEADLINE");
	long mx;

	if (lc_parse_duration(val, secs) == -1) {
		*err = lc_errorf("bad_config", "%s=%s is not a duration: write "
		    "e.g. 90s, 30m, 2h or 1d", key, val);
		return -1;
	}
	if (strcmp(key, "LC_DEADLINE") == 0 && mxv != NULL &&
	    lc_parse_duration(mxv, &mx) == 0 && *secs > mx) {
		char *path = lc_config_file("config");

		*err = lc_errorf("bad_config", "%s is longer than "
		    "LC_MAX_DEADLINE (%s, from %s): give at most %s, or raise "
		    "LC_MAX_DEADLINE in %s", key, mxv, lc_config_source(c,
		    "LC_MAX_DEADLINE"), mxv, path);
		free(path);
		return -1;
	}
	return 0;
}

/*
 * Edits (insert, delete, change, swap two neighbours) from a to b, letters
 * compared without case; names over 64 characters are never near.
 */
static size_t
distance(const char *a, const char *b)
{
	size_t d[65][65], la = strlen(a), lb = strlen(b), i, j, x;

	if (la > 64 || lb > 64)
		return (size_t)-1;
	for (i = 0; i <= la; i++)
		d[i][0] = i;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++)
		for (j = 1; j <= lb; j++) {
			int ai = toupper((unsigned char)a[i - 1]);
			int bj = toupper((unsigned char)b[j - 1]);

			x = d[i - 1][j - 1] + (ai != bj);
			if (d[i - 1][j] + 1 < x)
				x = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < x)
				x = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && d[i - 2][j - 2] + 1 < x &&
			    ai == toupper((unsigned char)b[j - 2]) &&
			    toupper((unsigned char)a[i - 2]) == bj)
				x = d[i - 2][j - 2] + 1;
			d[i][j] = x;
		}
	return d[la][lb];
}

const char *
lc_config_default(const char *key)
{
	const struct lc_cfg_key *k = find_key(key);

	return k != NULL ? k->def : NULL;
}

const char *
lc_config_suggest(const char *name)
{
	const struct lc_cfg_key *k, *best = NULL;
	size_t limit = strlen(name) / 4, d, bd = (size_t)-1;

	if (limit < 1)
		limit = 1;
	if (limit > 3)
		limit = 3;
	for (k = lc_cfg_keys; k->name != NULL; k++)
		if ((d = distance(name, k->name)) <= limit && d < bd) {
			best = k;
			bd = d;
		}
	return best != NULL ? best->name : NULL;
}

/*
 * The row for a key that is not ours (u borrowed): an error in our own
 * files, where nothing else reads it; in a project's ./.env, which other
 * programs share, a warning when it looks meant for us, else a note.
 */
static jv
unknown_row(jv u)
{
	const char *key = lc_str(u, "key"), *src = lc_str(u, "source");
	const char *near = lc_config_suggest(key), *level;
	char hint[64] = "";
	jv msg;

	if (near != NULL)
		snprintf(hint, sizeof(hint), ": did you mean %s?", near);
	if (lc_bool(u, "own")) {
		level = "error";
		msg = jv_string_fmt("unknown key in %s%s", src, near ? hint :
		    " (coder(1) lists the keys)");
	} else if (near != NULL || strncmp(key, "LC_", 3) == 0) {
		level = "warning";
		msg = jv_string_fmt("not a linode-coder key, ignored (in %s)%s",
		    src, hint);
	} else {
		level = "ignored";
		msg = jv_string_fmt("not a linode-coder key, ignored (in %s)",
		    src);
	}
	return JV_OBJECT(jv_string("key"), jv_string(key),
	    jv_string("value"), jv_null(), jv_string("source"),
	    jv_string(src), jv_string("ok"), jv_bool(strcmp(level,
	    "error") != 0), jv_string("level"), jv_string(level),
	    jv_string("message"), msg, jv_string("suggest"), near ?
	    jv_string(near) : jv_null());
}

/* Every row (out consumed) with "level": "ok" or "error" unless set. */
static jv
with_levels(jv out)
{
	int i, n = jv_array_length(jv_copy(out));

	for (i = 0; i < n; i++) {
		jv r = jv_array_get(jv_copy(out), i);

		if (!jv_object_has(jv_copy(r), jv_string("level")))
			r = jv_object_set(r, jv_string("level"), jv_string(
			    lc_bool(r, "ok") ? "ok" : "error"));
		out = jv_array_set(out, i, r);
	}
	return out;
}

jv
lc_config_check(struct lc_config *c)
{
	const struct lc_cfg_key *k;
	jv out = jv_array(), err = jv_invalid(), r;
	const char *src = NULL, *v;
	char *tok = NULL, *msg;
	long dl;

	for (k = lc_cfg_keys; k->name != NULL; k++)
		out = jv_array_append(out, check_one(c, k));
	r = jv_object_set(jv_object(), jv_string("key"), jv_string("token"));
	if (lc_config_token(c, &tok, &src, &err) == 0) {
		r = jv_object_set(r, jv_string("value"), jv_string("(set)"));
		r = jv_object_set(r, jv_string("source"), jv_string(src));
		r = jv_object_set(r, jv_string("ok"), jv_true());
		r = jv_object_set(r, jv_string("message"), jv_null());
	} else {
		msg = lc_error_message(err);
		r = jv_object_set(r, jv_string("value"), jv_null());
		r = jv_object_set(r, jv_string("source"), jv_null());
		r = jv_object_set(r, jv_string("ok"), jv_false());
		r = jv_object_set(r, jv_string("message"), jv_string(msg));
		free(msg);
	}
	jv_free(err);
	free(tok);
	out = jv_array_append(out, r);
	/* One relation between keys: the deadline within its maximum. */
	err = jv_invalid();
	if ((v = lc_config_get(c, "LC_DEADLINE")) != NULL &&
	    lc_parse_duration(v, &dl) == 0 &&
	    lc_config_duration_rule(c, "LC_DEADLINE", v, &dl, &err) == -1) {
		msg = lc_error_message(err);
		r = JV_OBJECT(jv_string("key"), jv_string("LC_DEADLINE"),
		    jv_string("ok"), jv_false(), jv_string("message"),
		    jv_string(msg));
		free(msg);
		out = jv_array_append(out, r);
	}
	jv_free(err);
	jv_array_foreach(c->unknown, i, u) {
		out = jv_array_append(out, unknown_row(u));
		jv_free(u);
	}
	return with_levels(out);
}
