/*
 * failsafe: the on-VM deadline, the second layer of the money guard.
 *
 * lc-watch runs on the user's machine, and a closed laptop runs no cron.
 * So the VM deletes itself at deadline_at: a systemd timer (every minute,
 * at boot too, Persistent=) runs a script that reads two root-only files
 * under LC_REMOTE_ROOT:
 *   etc/linode-coder/deadline       the deadline, epoch seconds or RFC 3339
 *   etc/linode-coder/failsafe.env   LINODE_TOKEN, LINODE_ID, LC_API_URL
 * and, once the deadline has passed, sends DELETE /linode/instances/<id>
 * with that token (never in argv: curl reads the header from stdin).
 *
 * The token is made by lc-create (POST /profile/tokens, which needs a
 * token with account:read_write) with lc_failsafe_token_body: scopes
 * linodes:read_write, expiring 15 minutes after the latest deadline the
 * session may ever have (created_at + LC_MAX_DEADLINE), so an extend only
 * rewrites the deadline file over SSH and needs no new token. lc-create
 * keeps its id (never the token) in the record as failsafe_token_id, and
 * lc-destroy and lc-watch revoke it (DELETE /profile/tokens/<id>).
 * lc-cloudinit writes the script and the units into the cloud-config;
 * they do nothing until both files exist. lc-watch rewrites the deadline
 * file when an extend has moved deadline_at (failsafe_deadline_at in the
 * record is what the VM has).
 *
 * Record fields: failsafe ("armed" | "unavailable" | null),
 * failsafe_token_id, failsafe_deadline_at.
 */
#ifndef LC_FAILSAFE_H
#define LC_FAILSAFE_H

#include <time.h>

#include <jv.h>

#include "config.h"
#include "http.h"
#include "ssh.h"

#define LC_FAILSAFE_SCRIPT	"/usr/local/sbin/linode-coder-failsafe"
#define LC_FAILSAFE_SERVICE	"linode-coder-failsafe.service"
#define LC_FAILSAFE_TIMER	"linode-coder-failsafe.timer"
/* Under LC_REMOTE_ROOT (see lib/remote.h: lc_remote_path). */
#define LC_FAILSAFE_ENV		"etc/linode-coder/failsafe.env"
#define LC_FAILSAFE_DEADLINE	"etc/linode-coder/deadline"
/* The token outlives the deadline by this much, so it can still act. */
#define LC_FAILSAFE_GRACE_S	(15 * 60)

/* The script (POSIX sh), the service and the timer, as files. */
extern const char lc_failsafe_script[];
extern const char lc_failsafe_service[];
extern const char lc_failsafe_timer[];

/*
 * The body of POST /profile/tokens for session name whose deadline can be
 * at most deadline (created_at + LC_MAX_DEADLINE):
 * {"label": "lc-failsafe-<name>", "scopes": "linodes:read_write",
 *  "expiry": deadline + LC_FAILSAFE_GRACE_S}. Returns owned.
 */
jv	lc_failsafe_token_body(const char *name, time_t deadline);

/*
 * failsafe.env's text (values single-quoted for sh); malloc'd, or NULL
 * when a value cannot be quoted safely. The caller wipes it after use.
 */
char	*lc_failsafe_env(const char *token, double linode_id,
	    const char *api_url);

/* The deadline file's text: epoch seconds and a newline, into buf. */
char	*lc_failsafe_deadline(time_t deadline, char *buf, size_t len);

/*
 * Arm the session's VM (for lc-create, once SSH works): make the token,
 * push failsafe.env and the deadline over SSH into root-only files, and
 * set failsafe "armed", failsafe_token_id and failsafe_deadline_at in
 * *rec. Returns 0 armed; 1 when the user's token may not make tokens
 * (401/403: *rec gets failsafe "unavailable", only lc-watch guards the
 * session) or the record has no deadline; -1 with *err otherwise (a token
 * made before a failed push is revoked again). Borrows h and cfg.
 */
int	lc_failsafe_arm(struct lc_http *h, struct lc_config *cfg, jv *rec,
	    jv *err);
/* Rewrite the VM's deadline file from rec's deadline_at on an open
 * connection. 0, or -1 with *err. Borrows everything. */
int	lc_failsafe_push_deadline(struct lc_ssh *s, struct lc_config *cfg,
	    jv rec, jv *err);
/* Revoke rec's fail-safe token, if it has one (404: done already). 0, or
 * -1 with *err. Borrows. */
int	lc_failsafe_revoke(struct lc_http *h, jv rec, jv *err);

#endif
