/*
 * failsafe: the VM's own guard, the second layer of the money guard.
 *
 * lc-watch runs on the user's machine, and a closed laptop runs no cron.
 * So the VM deletes itself: a systemd timer (every minute, at boot too,
 * Persistent=) runs a script that reads root-only files under
 * LC_REMOTE_ROOT:
 *   etc/linode-coder/deadline       the deadline, epoch seconds or RFC 3339
 *   etc/linode-coder/failsafe.env   LINODE_TOKEN, LINODE_ID, LC_API_URL
 *   etc/linode-coder/idle           the idle guard's limits (absent: off)
 *   etc/linode-coder/last_activity  activity the client saw, epoch seconds
 * and sends DELETE /linode/instances/<id> with that token (never in argv:
 * curl reads the header from stdin) once the deadline has passed, or once
 * the VM has been idle longer than idle_timeout_s + LC_VM_IDLE_MARGIN_S,
 * by lc-watch's rule (lib/watch.h: requests running or waiting, a change
 * in the token counters, and here also an SSH session with a terminal).
 * The margin lets lc-watch act first while the laptop is open. It keeps
 * its own clock in var/lib/linode-coder/failsafe.state and says what it
 * decided, and why, on stderr (the unit's journal) and in
 * var/lib/linode-coder/failsafe.status, one JSON line lc-watch reads.
 *
 * The token is made by lc-create (POST /profile/tokens, which needs a
 * token with account:read_write) with lc_failsafe_token_body: scopes
 * linodes:read_write (Linode has no narrower scope: personal access
 * tokens are scoped by area, never by instance), expiring 15 minutes
 * after the session's deadline_at. When an extend moves the deadline,
 * lc-watch makes a new token for the new deadline, pushes it with the
 * deadline, and revokes the old one. The record keeps the token's id
 * (never the token) as failsafe_token_id; lc-destroy and lc-watch revoke
 * it when the VM goes. lc-cloudinit writes the script and the units into
 * the cloud-config; they do nothing until the deadline and failsafe.env
 * exist. LC_FAILSAFE=off: no token, no files (failsafe "off");
 * LC_VM_IDLE_GUARD=off: no idle file (vm_idle_guard "off").
 *
 * Record fields: failsafe ("armed" | "unavailable" | "off" | null),
 * failsafe_token_id, failsafe_deadline_at (what the VM has),
 * failsafe_expires_at (the token's expiry), vm_idle_guard ("on" | "off"),
 * vm_activity_at (the last activity time pushed to the VM), vm_guard (the
 * VM's last status line, as lc-watch read it).
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
#define LC_FAILSAFE_IDLE	"etc/linode-coder/idle"
#define LC_FAILSAFE_ACTIVITY	"etc/linode-coder/last_activity"
#define LC_FAILSAFE_STATUS	"var/lib/linode-coder/failsafe.status"
/* The token outlives the deadline by this much, so it can still act. */
#define LC_FAILSAFE_GRACE_S	(15 * 60)
/* The VM waits this much longer than idle_timeout_s, so that lc-watch,
 * when it runs, is the one that acts (and says so on the user's side). */
#define LC_VM_IDLE_MARGIN_S	(10 * 60)

/* The script (POSIX sh), the service and the timer, as files. */
extern const char lc_failsafe_script[];
extern const char lc_failsafe_service[];
extern const char lc_failsafe_timer[];

/*
 * The body of POST /profile/tokens for session name whose deadline is
 * deadline: {"label": "lc-failsafe-<name>", "scopes": "linodes:read_write",
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

/* The idle file's text (IDLE_TIMEOUT_S, IDLE_MARGIN_S, READY_TIMEOUT_S,
 * VLLM_PORT, one NAME=value a line), into buf. */
char	*lc_failsafe_idle(long idle_s, long ready_s, int port, char *buf,
	    size_t len);

/*
 * The seconds-since-epoch the VM's idle clock should start from by the
 * client's record: the latest of last_activity_at, ready_at, created_at
 * (lc-watch's rule). 0 when none. Borrows rec.
 */
time_t	lc_failsafe_activity(jv rec);

/*
 * Arm the session's VM (for lc-create, once SSH works): make the token,
 * push failsafe.env, the deadline, and (unless LC_VM_IDLE_GUARD=off) the
 * idle file and the activity time over SSH into root-only files, and set
 * the record fields above in *rec. Returns 0 armed; 1 when LC_FAILSAFE is
 * off (failsafe "off"), when the user's token may not make tokens
 * (401/403: failsafe "unavailable", only lc-watch guards the session) or
 * the record has no deadline; -1 with *err otherwise (a token made before
 * a failed push is revoked again). Borrows h and cfg.
 */
int	lc_failsafe_arm(struct lc_http *h, struct lc_config *cfg, jv *rec,
	    jv *err);

/*
 * The deadline moved (deadline_at differs from failsafe_deadline_at):
 * make a token that expires with the new deadline, push it and the
 * deadline on the open connection, then revoke the old token. Borrows
 * everything. Returns the fields to merge into the record
 * (failsafe_token_id, failsafe_deadline_at, failsafe_expires_at), or an
 * error value (nothing changed on the VM; the new token is revoked).
 * *warn (malloc'd, or NULL) says when the old token could not be revoked.
 */
jv	lc_failsafe_rearm(struct lc_http *h, struct lc_ssh *s,
	    struct lc_config *cfg, jv rec, char **warn);

/*
 * On an open connection: push the client's activity time
 * (lc_failsafe_activity) when the VM's idle guard is on (the VM keeps the
 * later of its own and this), and read the VM's status line. Borrows
 * everything. Returns the fields to merge: vm_activity_at (when pushed)
 * and vm_guard (null when the VM has written no status yet), or an error.
 */
jv	lc_failsafe_sync(struct lc_ssh *s, struct lc_config *cfg, jv rec);

/* Revoke rec's fail-safe token, if it has one (404: done already). 0, or
 * -1 with *err. Borrows. */
int	lc_failsafe_revoke(struct lc_http *h, jv rec, jv *err);

#endif
