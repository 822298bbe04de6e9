/*
 * ssh: reaching a session's VM with libssh2, safely.
 *
 * A connection goes to the session record's "ssh" fields (host, port,
 * user; defaults: ipv4, LC_SSH_PORT, LC_SSH_USER) and trusts only the host
 * key pinned in the session's own known_hosts file: a missing pin or a
 * different key is refused before anything runs (no trust on first use, no
 * prompt). It logs in with the ssh-agent (SSH_AUTH_SOCK), else with the key
 * file ("ssh.key" in the record, else LC_SSH_KEY).
 *
 * Everything is non-blocking under poll(2), so every step keeps its time
 * limit: a host that accepts TCP and never speaks cannot hang a tool.
 * Only a refused connection (the VM is booting) is retried, within a total
 * wait the caller gives.
 *
 * Errors are values (lc_errorf) with these codes:
 *   ssh_config    the record names no host, or the key path is unusable
 *   ssh_refused   connection refused (after any retries)
 *   ssh_connect   no route, DNS failure, reset, protocol failure
 *   ssh_timeout   a step ran past its time limit
 *   ssh_hostkey   no pinned key, or the VM's key is not the pinned one
 *   ssh_auth      neither the agent nor the key file was accepted
 *   ssh_channel   the VM refused a session or a tunnel channel
 *   ssh_io        writing our side of the output failed
 * One connection is for one thread; separate threads may each open their
 * own after one lc_ssh_init() call.
 */
#ifndef LC_SSH_H
#define LC_SSH_H

#include <signal.h>
#include <stddef.h>
#include <jv.h>

#include "config.h"
#include "lc.h"

struct lc_ssh;

/* What lc_ssh_run captured. Free with lc_ssh_result_free. */
struct lc_ssh_result {
	int		 status;	/* exit status; 128+n for signal n */
	struct lc_buf	 out;		/* the command's stdout */
	struct lc_buf	 err;		/* the command's stderr */
};
#define LC_SSH_RESULT_INIT { -1, LC_BUF_INIT, LC_BUF_INIT }

/* Initialise libssh2 once per process (lc_ssh_open calls it). 0 or -1. */
int	lc_ssh_init(void);

/*
 * Connect to the session's VM, check its host key and log in. Borrows cfg
 * and session. Each attempt has LC_SSH_TIMEOUT (or timeout_ms when > 0)
 * for connect, handshake and login together; a refused connection is
 * tried again every second until retry_ms have passed (0: once).
 * Returns the connection, or NULL with *err (codes above).
 */
struct lc_ssh *lc_ssh_open(struct lc_config *cfg, jv session, long timeout_ms,
	    long retry_ms, jv *err);
/* Disconnect and free (NULL is fine). */
void	lc_ssh_close(struct lc_ssh *s);
/* "user@host:port", for messages. Borrowed, lives as long as s. */
const char *lc_ssh_where(struct lc_ssh *s);

/*
 * Run cmd (a shell command line, as sshd gives it to the user's shell) and
 * capture its stdout, stderr and exit status separately. input (may be
 * NULL) is sent as its stdin, then EOF. timeout_ms > 0 limits the whole
 * run: past it the channel is closed and -1 returned with ssh_timeout
 * (what was read so far stays in res). 0, or -1 with *err.
 */
int	lc_ssh_run(struct lc_ssh *s, const char *cmd, const char *input,
	    size_t input_len, long timeout_ms, struct lc_ssh_result *res,
	    jv *err);
void	lc_ssh_result_free(struct lc_ssh_result *res);

/*
 * Run cmd with its output streamed as it comes: stdout to out_fd, stderr
 * to err_fd; in_fd (-1: none) is read to its end and sent as stdin. Stops
 * early (status -1, returns 0) once *stop is non-zero (stop may be NULL).
 * timeout_ms as for lc_ssh_run (0: none). 0 with *status, or -1 with *err.
 */
int	lc_ssh_stream(struct lc_ssh *s, const char *cmd, int in_fd,
	    int out_fd, int err_fd, long timeout_ms,
	    volatile sig_atomic_t *stop, int *status, jv *err);

/*
 * Forward connections accepted on listen_fd (a listening socket) to
 * rhost:rport as the VM sees it (direct-tcpip), any number at once, until
 * *stop is non-zero or the connection to the VM breaks. Returns 0 when
 * stopped, -1 with *err when the VM connection failed. on_conn (may be
 * NULL) is told of each accepted (1) and finished (0) connection.
 */
int	lc_ssh_tunnel(struct lc_ssh *s, int listen_fd, const char *rhost,
	    int rport, volatile sig_atomic_t *stop,
	    void (*on_conn)(int opened, void *arg), void *arg, jv *err);

#endif
