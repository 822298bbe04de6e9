/*
 * config: settings from, lowest to highest precedence, built-in defaults,
 * $XDG_CONFIG_HOME/linode-coder/config, $XDG_CONFIG_HOME/linode-coder/secrets
 * (where coder wizard writes the token, read from any folder), ./.env,
 * ./.env.secrets, the environment, and flags. Files hold KEY=VALUE lines as
 * people write them (comments, blank lines, "export", single and double
 * quotes). The two secrets files must be mode 0600.
 */
#ifndef LC_CONFIG_H
#define LC_CONFIG_H

#include <jv.h>

enum lc_cfg_type {
	LC_CFG_STRING,
	LC_CFG_DURATION,	/* "30m", "2h" */
	LC_CFG_NUMBER,		/* non-negative decimal */
	LC_CFG_INT,		/* non-negative integer */
	LC_CFG_BOOL,		/* yes/no, true/false, 1/0, on/off */
	LC_CFG_PATH,		/* "~/" expanded */
	LC_CFG_SECRET		/* never printed */
};

struct lc_cfg_key {
	const char	*name;
	enum lc_cfg_type type;
	const char	*def;	/* NULL: unset */
	const char	*doc;
};

/* Every known key, ending with a NULL name. */
extern const struct lc_cfg_key lc_cfg_keys[];

struct lc_config;

/*
 * Load every source. NULL on a fatal problem (a secrets file others can
 * read, a line with no '=', an unreadable file): *err says which and how
 * to fix it.
 */
struct lc_config *lc_config_load(jv *err);
void	lc_config_free(struct lc_config *c);
/* $XDG_CONFIG_HOME/sub (default ~/.config/sub); malloc'd. */
char	*lc_config_dir(const char *sub);
/* $XDG_CONFIG_HOME/linode-coder/name ("config", "secrets"); malloc'd. */
char	*lc_config_file(const char *name);
/*
 * A key's built-in default (lc_cfg_keys), or NULL when it has none or is
 * not a key: for code that needs the default without loading the files,
 * such as LC_VLLM_IMAGE, the pinned vLLM image.
 */
const char *lc_config_default(const char *key);
/* The known key nearest to name (a few edits, case aside), or NULL. */
const char *lc_config_suggest(const char *name);
/* The value, or NULL when unset or empty. Borrowed, valid until free. */
const char *lc_config_get(struct lc_config *c, const char *key);
/* Where a key's value came from: "default", a file path, "environment",
 * "flag", or NULL when unset. */
const char *lc_config_source(struct lc_config *c, const char *key);
/* Set from a flag (highest precedence). */
void	lc_config_set(struct lc_config *c, const char *key, const char *val);
/* Typed getters: 0, or -1 with *err naming the key and the fix. */
int	lc_config_duration(struct lc_config *c, const char *key, long *out,
	    jv *err);
int	lc_config_number(struct lc_config *c, const char *key, double *out,
	    jv *err);
int	lc_config_bool(struct lc_config *c, const char *key);
/* Path value with "~/" expanded (malloc'd), or NULL when unset. */
char	*lc_config_path(struct lc_config *c, const char *key);
/* REMOTE_ENV_<NAME>=v as {"NAME": "v"}. Returns owned. */
jv	lc_config_remote_env(struct lc_config *c);
/*
 * The Linode token: LINODE_TOKEN, else LINODE_CLI_TOKEN (environment),
 * else the files (the last one loaded wins: ./.env.secrets, ./.env, the
 * secrets file, the config file), else linode-cli's config file.
 * 0 with *token malloc'd and *source set; -1 with *err (no_token,
 * empty_token).
 */
int	lc_config_token(struct lc_config *c, char **token, const char **source,
	    jv *err);
/*
 * Check every key's type and range, the token's presence and the secrets
 * file's mode, and name the keys the files hold that are not ours.
 * Returns an owned array of {"key","value","source","ok","level",
 * "message"} (secrets shown as "(set)"). level: "ok"; "error" (ok false:
 * a bad value, or an unknown key in linode-coder's own config or secrets
 * file); "warning" (a key in ./.env or ./.env.secrets that looks meant for
 * us but is not a key); "ignored" (another program's key there). Rows
 * for unknown keys carry "suggest": the nearest known key, or null; their
 * value is never shown.
 */
jv	lc_config_check(struct lc_config *c);
/*
 * Check val, a duration meant for key, against the rules the other keys
 * set (LC_DEADLINE at most LC_MAX_DEADLINE). 0 with *secs, or -1 with
 * *err saying what to give instead.
 */
int	lc_config_duration_rule(struct lc_config *c, const char *key,
	    const char *val, long *secs, jv *err);
/* Parse one KEY=VALUE file into an object; -1 with *err on a bad line. */
int	lc_config_parse_env(const char *path, const char *text, jv *out,
	    jv *err);

#endif
