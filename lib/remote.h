/*
 * remote: THE way a command runs on a VM. Every remote command goes through
 * one builder that takes the node's environment from data, not code:
 *
 *   set -eu
 *   PATH='<REMOTE_PATH>'; export PATH
 *   LC_REMOTE_ROOT='<LC_REMOTE_ROOT>'; export LC_REMOTE_ROOT
 *   NAME='value'; export NAME          (each REMOTE_ENV_NAME from config)
 *   command -v prog >/dev/null 2>&1 || { echo 'lc: prog not found on
 *       <session>: <hint>' >&2; exit 127; }          (each needed program)
 *   exec 'arg0' 'arg1' ...             (every argument single-quoted)
 *
 * With verbose, the script first prints on stderr (on the VM, so it is what
 * the VM really has) the PATH and the exported variables it runs with.
 * No host name, user or path is special-cased: the same builder serves
 * every node. The remote shell is whatever sshd starts for the user (POSIX
 * sh or bash on the VMs we make).
 */
#ifndef LC_REMOTE_H
#define LC_REMOTE_H

#include <jv.h>

#include "config.h"
#include "lc.h"
#include "ssh.h"

/* Exit status of the script when a needed program is missing. */
#define LC_REMOTE_MISSING 127

/* Append s to b as one single-quoted shell word. 0, or -1 (memory). */
int	lc_remote_quote(struct lc_buf *b, const char *s);

/*
 * The whole script: the preamble above, a command -v check for each name
 * in needs (NULL-terminated; NULL for none), then body, a shell fragment
 * used as is (the caller quotes its words with lc_remote_quote). Borrows
 * cfg and session (its "name" is used in messages). Returns malloc'd.
 */
char	*lc_remote_script(struct lc_config *cfg, jv session,
	    const char *const needs[], const char *body, int verbose);

/* As lc_remote_script, with body "exec" and argv (NULL-terminated) quoted. */
char	*lc_remote_argv(struct lc_config *cfg, jv session,
	    const char *const needs[], const char *const argv[], int verbose);

/*
 * Build with lc_remote_argv and run on an open connection, capturing
 * stdout, stderr and the exit status (127 and the "lc: ... not found"
 * line in res->err when a needed program is missing). timeout_ms as for
 * lc_ssh_run. 0, or -1 with *err (an SSH failure; the status is unknown).
 */
int	lc_remote_run(struct lc_ssh *s, struct lc_config *cfg, jv session,
	    const char *const needs[], const char *const argv[],
	    long timeout_ms, struct lc_ssh_result *res, jv *err);

/* A path on the VM under LC_REMOTE_ROOT ("/" by default): rel has no
 * leading '/'. Returns malloc'd ("/etc/linode-coder" for the default). */
char	*lc_remote_path(struct lc_config *cfg, const char *rel);

/*
 * The whole session record for rec: rec itself when it says where the VM
 * is ("ssh" or "ipv4"), else the ledger's record of rec's "name" with
 * rec's own fields on top. Consumes rec; returns owned, or an error value
 * (not_found, bad_name, ...).
 */
jv	lc_remote_session(jv rec);

/* The hint shown when prog is missing ("is the driver installed?"). */
const char *lc_remote_hint(const char *prog);

#endif
