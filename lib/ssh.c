/*
 * ssh: connections to a session's VM on libssh2, non-blocking under poll
 * so that every step keeps its time limit. See ssh.h for the contract.
 */
#define _GNU_SOURCE		/* POLLRDHUP, where there is one */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>
#include <libssh2.h>

#include "compat.h"
#include "config.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "session.h"
#include "ssh.h"

#define WAKE_MS		100	/* longest poll between looks */
#define CLOSE_MS	3000	/* time to close a channel politely */
#define MAX_CONNS	64	/* tunnel connections at once */
#ifdef POLLRDHUP
#define PEER_SHUT	POLLRDHUP	/* the VM sent its last byte */
#else
#define PEER_SHUT	0
#endif

struct lc_ssh {
	int		 fd;
	LIBSSH2_SESSION	*sess;
	char		 where[320];	/* user@host:port */
	char		 host[256];
	int		 port;
};

/* Where to connect, resolved from the record and config. */
struct target {
	char	*host, *user, *known_hosts, *key;
	int	 port;
	long	 timeout_ms;
};

static int inited;

int
lc_ssh_init(void)
{
	if (inited)
		return 0;
	if (libssh2_init(0) != 0)
		return -1;
	inited = 1;
	return 0;
}

const char *
lc_ssh_where(struct lc_ssh *s)
{
	return s->where;
}

static void
target_free(struct target *t)
{
	free(t->host);
	free(t->user);
	free(t->known_hosts);
	free(t->key);
}

char *
lc_ssh_known_hosts(jv session)
{
	struct lc_ledger l = { NULL, -1 };
	const char *name = lc_str(session, "name");
	jv err = jv_invalid(), ssh = lc_get(session, "ssh");
	char *p;

	if (lc_str(ssh, "known_hosts") != NULL) {
		p = lc_expand_home(lc_str(ssh, "known_hosts"));
		jv_free(ssh);
		return p;
	}
	jv_free(ssh);
	if (name == NULL || lc_ledger_open(&l, &err) == -1) {
		jv_free(err);
		return NULL;
	}
	p = lc_session_path(&l, name, LC_SESSION_KNOWN_HOSTS);
	lc_ledger_close(&l);
	return p;
}

/* Fill t from the record's "ssh" fields and config. Borrows both. */
static int
target_get(struct target *t, struct lc_config *cfg, jv session, long tmo,
    jv *err)
{
	jv ssh = lc_get(session, "ssh");
	const char *host = lc_str(ssh, "host"), *user = lc_str(ssh, "user");
	long secs = 10;
	jv e = jv_invalid();

	memset(t, 0, sizeof(*t));
	if (host == NULL)
		host = lc_str(session, "ipv4");
	if (host == NULL) {
		jv_free(ssh);
		*err = lc_errorf("ssh_config", "the session has no address "
		    "yet (no ssh.host or ipv4): is it still being created?");
		return -1;
	}
	if (user == NULL)
		user = lc_config_get(cfg, "LC_SSH_USER");
	t->host = lc_xstrdup(host);
	t->user = lc_xstrdup(user != NULL ? user : "root");
	t->port = (int)lc_num(ssh, "port", 0);
	if (t->port <= 0 || t->port > 65535)
		t->port = atoi(lc_config_get(cfg, "LC_SSH_PORT") ?
		    lc_config_get(cfg, "LC_SSH_PORT") : "22");
	t->key = lc_str(ssh, "key") != NULL ?
	    lc_expand_home(lc_str(ssh, "key")) :
	    lc_config_path(cfg, "LC_SSH_KEY");
	t->known_hosts = lc_ssh_known_hosts(session);
	jv_free(ssh);
	if (lc_config_duration(cfg, "LC_SSH_TIMEOUT", &secs, &e) == -1)
		secs = 10;
	jv_free(e);
	t->timeout_ms = tmo > 0 ? tmo : secs * 1000;
	if (t->known_hosts == NULL) {
		*err = lc_errorf("ssh_hostkey", "the session has no "
		    "known_hosts file with its pinned host key: refusing to "
		    "connect");
		target_free(t);
		return -1;
	}
	return 0;
}

/* libssh2's last error text. */
static const char *
last_error(struct lc_ssh *s)
{
	char *msg = NULL;
	int len = 0;

	libssh2_session_last_error(s->sess, &msg, &len, 0);
	return msg != NULL && *msg != '\0' ? msg : "unknown error";
}

static long
remaining(long long deadline)
{
	long long r = deadline - lc_mono_ms();

	return r < 0 ? 0 : (long)r;
}

/* Wait until the socket can move the way libssh2 wants. -1: deadline. */
static int
wait_sock(struct lc_ssh *s, long long deadline)
{
	struct pollfd p = { s->fd, 0, 0 };
	int dir = libssh2_session_block_directions(s->sess);
	long ms = remaining(deadline);

	if (ms == 0)
		return -1;
	p.events = POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	poll(&p, 1, ms > WAKE_MS * 10 ? WAKE_MS * 10 : (int)ms);
	return 0;
}

/* One non-blocking TCP connect within the deadline; fd or -1. */
static int
tcp_try(const struct addrinfo *ai, long long deadline, int *eno)
{
	struct pollfd p;
	socklen_t sl = sizeof(*eno);
	int fd;

	if ((fd = socket(ai->ai_family, ai->ai_socktype,
	    ai->ai_protocol)) == -1) {
		*eno = errno;
		return -1;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		*eno = errno;
		close(fd);
		return -1;
	}
	p.fd = fd;
	p.events = POLLOUT;
	for (;;) {
		long ms = remaining(deadline);
		int n;

		if (ms == 0) {
			*eno = ETIMEDOUT;
			close(fd);
			return -1;
		}
		n = poll(&p, 1, (int)ms);
		if (n > 0)
			break;
		if (n == -1 && errno != EINTR) {
			*eno = errno;
			close(fd);
			return -1;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, eno, &sl) == -1 ||
	    *eno != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Connect to host:port, trying each address; a refused connection is tried
 * again every second until retry_deadline. fd, or -1 with *err.
 */
static int
tcp_connect(const struct target *t, long long retry_deadline, jv *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[16];
	int fd = -1, eno = 0, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", t->port);
	if ((rc = getaddrinfo(t->host, port, &hints, &res)) != 0) {
		*err = lc_errorf("ssh_connect", "%s: cannot resolve the "
		    "address: %s", t->host, gai_strerror(rc));
		return -1;
	}
	for (;;) {
		long long deadline = lc_mono_ms() + t->timeout_ms;

		for (ai = res; ai != NULL && fd == -1; ai = ai->ai_next)
			fd = tcp_try(ai, deadline, &eno);
		if (fd != -1 || eno != ECONNREFUSED ||
		    lc_mono_ms() + 1000 > retry_deadline)
			break;
		lc_sleep_ms(1000);
	}
	freeaddrinfo(res);
	if (fd != -1)
		return fd;
	if (eno == ECONNREFUSED)
		*err = lc_errorf("ssh_refused", "%s port %d: connection "
		    "refused: the VM is up but sshd is not listening (still "
		    "booting?)", t->host, t->port);
	else if (eno == ETIMEDOUT)
		*err = lc_errorf("ssh_timeout", "%s port %d: no answer within "
		    "%lds: is the VM running and port %d open in its firewall?",
		    t->host, t->port, t->timeout_ms / 1000, t->port);
	else
		*err = lc_errorf("ssh_connect", "%s port %d: %s", t->host,
		    t->port, strerror(eno));
	return -1;
}

/* The knownhost key type for a libssh2 host key type. */
static int
kh_type(int hostkey_type)
{
	switch (hostkey_type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	}
	return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

/* The SSH algorithm names for a knownhost key type. */
static const char *
kh_algo(int type)
{
	switch (type) {
	case LIBSSH2_KNOWNHOST_KEY_ED25519: return "ssh-ed25519";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: return "ecdsa-sha2-nistp256";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: return "ecdsa-sha2-nistp384";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: return "ecdsa-sha2-nistp521";
	case LIBSSH2_KNOWNHOST_KEY_SSHRSA:
		return "rsa-sha2-512,rsa-sha2-256,ssh-rsa";
	case LIBSSH2_KNOWNHOST_KEY_SSHDSS: return "ssh-dss";
	}
	return NULL;
}

/*
 * Load the pinned keys and list the key types pinned for this host, so the
 * handshake asks the VM for exactly those. 0, or -1 with *err when the
 * file is unreadable or pins nothing for the host.
 */
static int
load_pins(struct lc_ssh *s, const struct target *t, LIBSSH2_KNOWNHOSTS **khp,
    struct lc_buf *algos, jv *err)
{
	struct libssh2_knownhost *e = NULL;
	LIBSSH2_KNOWNHOSTS *kh;
	char bracket[300];

	snprintf(bracket, sizeof(bracket), "[%s]:%d", t->host, t->port);
	if ((kh = libssh2_knownhost_init(s->sess)) == NULL) {
		*err = lc_errorf("ssh_connect", "out of memory");
		return -1;
	}
	*khp = kh;
	if (access(t->known_hosts, R_OK) == -1 ||
	    libssh2_knownhost_readfile(kh, t->known_hosts,
	    LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
		*err = lc_errorf("ssh_hostkey", "cannot read the session's "
		    "pinned host key from %s (%s): refusing to connect; "
		    "nothing was run", t->known_hosts, access(t->known_hosts,
		    R_OK) == -1 ? strerror(errno) : "not a known_hosts file");
		return -1;
	}
	while (libssh2_knownhost_get(kh, &e, e) == 0) {
		const char *a = kh_algo(e->typemask &
		    LIBSSH2_KNOWNHOST_KEY_MASK);
		int hashed = (e->typemask & LIBSSH2_KNOWNHOST_TYPE_MASK) ==
		    LIBSSH2_KNOWNHOST_TYPE_SHA1;

		if (a == NULL || (!hashed && e->name != NULL &&
		    strcmp(e->name, bracket) != 0 &&
		    (t->port != 22 || strcmp(e->name, t->host) != 0)))
			continue;
		if (algos->len == 0 || strstr(algos->data, a) == NULL) {
			if (algos->len > 0)
				lc_buf_addstr(algos, ",");
			lc_buf_addstr(algos, a);
		}
	}
	if (algos->len == 0) {
		*err = lc_errorf("ssh_hostkey", "%s pins no host key for %s: "
		    "refusing to connect (no trust on first use); nothing was "
		    "run", t->known_hosts, t->port == 22 ? t->host : bracket);
		return -1;
	}
	return 0;
}

/* Compare the VM's host key with the pins. 0, or -1 with *err. */
static int
check_hostkey(struct lc_ssh *s, const struct target *t,
    LIBSSH2_KNOWNHOSTS *kh, jv *err)
{
	const char *key;
	size_t len = 0;
	int type = 0, rc;

	if ((key = libssh2_session_hostkey(s->sess, &len, &type)) == NULL) {
		*err = lc_errorf("ssh_hostkey", "%s: the VM sent no host key; "
		    "nothing was run", s->where);
		return -1;
	}
	rc = libssh2_knownhost_checkp(kh, t->host, t->port, key, len,
	    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	    kh_type(type), NULL);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH)
		return 0;
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
		*err = lc_errorf("ssh_hostkey", "%s: the VM's host key does "
		    "not match the one pinned for this session in %s: this is "
		    "not the VM linode-coder created (or it was rebuilt); "
		    "nothing was run", s->where, t->known_hosts);
	else
		*err = lc_errorf("ssh_hostkey", "%s: the VM's host key is not "
		    "the one pinned in %s; refusing to connect (no trust on "
		    "first use); nothing was run", s->where, t->known_hosts);
	return -1;
}

/* Key exchange within the deadline. 0, or -1 with *err. */
static int
handshake(struct lc_ssh *s, const struct target *t, long long deadline,
    jv *err)
{
	int rc;

	while ((rc = libssh2_session_handshake(s->sess, s->fd)) ==
	    LIBSSH2_ERROR_EAGAIN)
		if (wait_sock(s, deadline) == -1) {
			*err = lc_errorf("ssh_timeout", "%s: the VM accepted "
			    "the connection but did not complete the SSH "
			    "handshake within %lds", s->where,
			    t->timeout_ms / 1000);
			return -1;
		}
	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_KEX_FAILURE ||
	    rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED)
		*err = lc_errorf("ssh_hostkey", "%s: the VM offers none of the "
		    "host key types pinned for this session (%s); nothing was "
		    "run", s->where, last_error(s));
	else
		*err = lc_errorf("ssh_connect", "%s: SSH handshake failed: %s "
		    "(is this an SSH server?)", s->where, last_error(s));
	return -1;
}

/* Try every identity of the ssh-agent. 0 when one was accepted. */
static int
auth_agent(struct lc_ssh *s, const struct target *t, long long deadline)
{
	struct libssh2_agent_publickey *id = NULL;
	LIBSSH2_AGENT *agent;
	int rc, ok = -1;

	if (getenv("SSH_AUTH_SOCK") == NULL ||
	    (agent = libssh2_agent_init(s->sess)) == NULL)
		return -1;
	if (libssh2_agent_connect(agent) != 0 ||
	    libssh2_agent_list_identities(agent) != 0)
		goto out;
	while (ok == -1 && libssh2_agent_get_identity(agent, &id, id) == 0) {
		while ((rc = libssh2_agent_userauth(agent, t->user, id)) ==
		    LIBSSH2_ERROR_EAGAIN)
			if (wait_sock(s, deadline) == -1)
				goto out;
		if (rc == 0)
			ok = 0;
	}
out:
	libssh2_agent_disconnect(agent);
	libssh2_agent_free(agent);
	return ok;
}

/* Log in: the agent, else the key file. 0, or -1 with *err. */
static int
authenticate(struct lc_ssh *s, const struct target *t, long long deadline,
    jv *err)
{
	int rc;

	if (auth_agent(s, t, deadline) == 0)
		return 0;
	if (remaining(deadline) == 0) {
		*err = lc_errorf("ssh_timeout", "%s: login did not finish "
		    "within %lds", s->where, t->timeout_ms / 1000);
		return -1;
	}
	if (t->key == NULL || access(t->key, R_OK) == -1) {
		*err = lc_errorf("ssh_auth", "%s: no ssh-agent key was "
		    "accepted and the key file %s cannot be read: set "
		    "LC_SSH_KEY to the key the session was created with",
		    s->where, t->key ? t->key : "(LC_SSH_KEY unset)");
		return -1;
	}
	while ((rc = libssh2_userauth_publickey_fromfile(s->sess, t->user,
	    NULL, t->key, NULL)) == LIBSSH2_ERROR_EAGAIN)
		if (wait_sock(s, deadline) == -1) {
			*err = lc_errorf("ssh_timeout", "%s: login did not "
			    "finish within %lds", s->where,
			    t->timeout_ms / 1000);
			return -1;
		}
	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_FILE)
		*err = lc_errorf("ssh_auth", "%s: cannot use key %s (%s): if "
		    "it has a passphrase, add it to ssh-agent", s->where,
		    t->key, last_error(s));
	else
		*err = lc_errorf("ssh_auth", "%s: the VM did not accept key %s "
		    "for user %s (publickey rejected): is it the key the "
		    "session was created with? (LC_SSH_KEY)", s->where, t->key,
		    t->user);
	return -1;
}

/* One attempt after TCP is up: handshake, host key, login. */
static int
establish(struct lc_ssh *s, const struct target *t, jv *err)
{
	long long deadline = lc_mono_ms() + t->timeout_ms;
	LIBSSH2_KNOWNHOSTS *kh = NULL;
	struct lc_buf algos = LC_BUF_INIT;
	int rc = -1;

	if (load_pins(s, t, &kh, &algos, err) == -1)
		goto out;
	if (libssh2_session_method_pref(s->sess, LIBSSH2_METHOD_HOSTKEY,
	    algos.data) != 0) {
		*err = lc_errorf("ssh_hostkey", "%s: the host key type pinned "
		    "in %s is not supported here (%s)", s->where,
		    t->known_hosts, algos.data);
		goto out;
	}
	if (handshake(s, t, deadline, err) == -1 ||
	    check_hostkey(s, t, kh, err) == -1 ||
	    authenticate(s, t, deadline, err) == -1)
		goto out;
	rc = 0;
out:
	if (kh != NULL)
		libssh2_knownhost_free(kh);
	lc_buf_free(&algos);
	return rc;
}

struct lc_ssh *
lc_ssh_open(struct lc_config *cfg, jv session, long timeout_ms, long retry_ms,
    jv *err)
{
	struct lc_ssh *s;
	struct target t;
	long long retry_deadline = lc_mono_ms() + (retry_ms > 0 ? retry_ms : 0);

	if (lc_ssh_init() == -1) {
		*err = lc_errorf("ssh_connect", "cannot initialise libssh2");
		return NULL;
	}
	if (target_get(&t, cfg, session, timeout_ms, err) == -1)
		return NULL;
	s = lc_xmalloc(sizeof(*s));
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->port = t.port;
	snprintf(s->host, sizeof(s->host), "%s", t.host);
	snprintf(s->where, sizeof(s->where), "%s@%s:%d", t.user, t.host,
	    t.port);
	if ((s->fd = tcp_connect(&t, retry_deadline, err)) == -1)
		goto fail;
	if ((s->sess = libssh2_session_init()) == NULL) {
		*err = lc_errorf("ssh_connect", "out of memory");
		goto fail;
	}
	libssh2_session_set_blocking(s->sess, 0);
	libssh2_keepalive_config(s->sess, 1, 30);
	if (establish(s, &t, err) == -1)
		goto fail;
	target_free(&t);
	return s;
fail:
	target_free(&t);
	lc_ssh_close(s);
	return NULL;
}

void
lc_ssh_close(struct lc_ssh *s)
{
	long long deadline = lc_mono_ms() + CLOSE_MS;

	if (s == NULL)
		return;
	if (s->sess != NULL) {
		while (libssh2_session_disconnect(s->sess, "bye") ==
		    LIBSSH2_ERROR_EAGAIN && wait_sock(s, deadline) == 0)
			;
		/* Whatever is still open (a channel cut short) must not wait
		 * for the VM: with the socket shut, freeing cannot block. */
		if (s->fd != -1)
			shutdown(s->fd, SHUT_RDWR);
		while (libssh2_session_free(s->sess) == LIBSSH2_ERROR_EAGAIN &&
		    lc_mono_ms() < deadline)
			;
	}
	if (s->fd != -1)
		close(s->fd);
	free(s);
}

/* Close and free a channel, politely but within ms. */
static void
chan_done(struct lc_ssh *s, LIBSSH2_CHANNEL *ch, long ms)
{
	long long deadline = lc_mono_ms() + ms;

	while (libssh2_channel_close(ch) == LIBSSH2_ERROR_EAGAIN &&
	    wait_sock(s, deadline) == 0)
		;
	while (libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN &&
	    wait_sock(s, deadline) == 0)
		;
}

/* Signal names as sshd sends them. */
static int
signum(const char *name)
{
	static const struct { const char *n; int v; } sigs[] = {
		{ "HUP", 1 }, { "INT", 2 }, { "QUIT", 3 }, { "ILL", 4 },
		{ "ABRT", 6 }, { "FPE", 8 }, { "KILL", 9 }, { "USR1", 10 },
		{ "SEGV", 11 }, { "USR2", 12 }, { "PIPE", 13 }, { "ALRM", 14 },
		{ "TERM", 15 }
	};
	size_t i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strcmp(name, sigs[i].n) == 0)
			return sigs[i].v;
	return 1;
}

/* Open a session channel and start cmd on it. */
static LIBSSH2_CHANNEL *
chan_exec(struct lc_ssh *s, const char *cmd, long long deadline, jv *err)
{
	LIBSSH2_CHANNEL *ch;
	int rc;

	while ((ch = libssh2_channel_open_session(s->sess)) == NULL) {
		if (libssh2_session_last_errno(s->sess) !=
		    LIBSSH2_ERROR_EAGAIN) {
			*err = lc_errorf("ssh_channel", "%s: cannot open a "
			    "session: %s", s->where, last_error(s));
			return NULL;
		}
		if (wait_sock(s, deadline) == -1)
			goto timeout;
	}
	while ((rc = libssh2_channel_exec(ch, cmd)) == LIBSSH2_ERROR_EAGAIN)
		if (wait_sock(s, deadline) == -1)
			goto timeout;
	if (rc == 0)
		return ch;
	*err = lc_errorf("ssh_channel", "%s: the VM would not run the "
	    "command: %s", s->where, last_error(s));
	chan_done(s, ch, CLOSE_MS);
	return NULL;
timeout:
	*err = lc_errorf("ssh_timeout", "%s: the VM did not start the command "
	    "in time", s->where);
	if (ch != NULL)
		chan_done(s, ch, CLOSE_MS);
	return NULL;
}

/* Where a run's input comes from and its output goes. */
struct pump {
	const char	*in;		/* input bytes, or */
	size_t		 in_len, in_off;
	int		 in_fd;		/* or an fd read to its end */
	char		 ibuf[16384];
	size_t		 ib_len, ib_off;
	int		 in_eof, eof_sent;
	int		 out_fd[2];	/* -1: capture into buf[] */
	struct lc_buf	*buf[2];
	volatile sig_atomic_t *stop;
	long long	 deadline;	/* 0: none */
};

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Feed the channel's stdin. -1 on a channel error. */
static int
feed(LIBSSH2_CHANNEL *ch, struct pump *p, int readable)
{
	const char *data;
	size_t left;
	ssize_t n;

	if (p->in_fd >= 0 && !p->in_eof && p->ib_off == p->ib_len &&
	    readable) {
		n = read(p->in_fd, p->ibuf, sizeof(p->ibuf));
		if (n <= 0 && !(n == -1 && errno == EINTR))
			p->in_eof = 1;
		p->ib_len = n > 0 ? (size_t)n : 0;
		p->ib_off = 0;
	}
	if (p->in_fd >= 0) {
		data = p->ibuf + p->ib_off;
		left = p->ib_len - p->ib_off;
	} else {
		data = p->in ? p->in + p->in_off : "";
		left = p->in ? p->in_len - p->in_off : 0;
		p->in_eof = 1;
	}
	if (left > 0) {
		n = libssh2_channel_write(ch, data, left);
		if (n == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (n < 0)
			return -1;
		if (p->in_fd >= 0)
			p->ib_off += (size_t)n;
		else
			p->in_off += (size_t)n;
		return 0;
	}
	if (p->in_eof && !p->eof_sent) {
		n = libssh2_channel_send_eof(ch);
		if (n == 0)
			p->eof_sent = 1;
		else if (n != LIBSSH2_ERROR_EAGAIN)
			p->eof_sent = 1;	/* the command may have gone */
	}
	return 0;
}

/* Read what the channel has on stream id. >0 progress, 0 none, -1 error. */
static int
drain(LIBSSH2_CHANNEL *ch, struct pump *p, int id)
{
	char buf[16384];
	ssize_t n;
	int got = 0;

	while ((n = libssh2_channel_read_ex(ch, id, buf, sizeof(buf))) > 0) {
		got = 1;
		if (p->out_fd[id] >= 0) {
			if (write_all(p->out_fd[id], buf, (size_t)n) == -1)
				return -2;
		} else if (lc_buf_add(p->buf[id], buf, (size_t)n) == -1)
			return -2;
	}
	if (n < 0 && n != LIBSSH2_ERROR_EAGAIN)
		return -1;
	return got;
}

/*
 * Move data until the command's output ends, *stop, or the deadline.
 * 0 at EOF, 1 when stopped, -1 with *err.
 */
static int
pump_run(struct lc_ssh *s, LIBSSH2_CHANNEL *ch, struct pump *p, jv *err)
{
	int progress = 1;

	for (;;) {
		struct pollfd pf[2] = { { s->fd, POLLIN, 0 },
		    { -1, POLLIN, 0 } };
		int wait = WAKE_MS, r0, r1, nf = 1;

		if (p->deadline > 0 && remaining(p->deadline) < wait)
			wait = (int)remaining(p->deadline);
		if (libssh2_session_block_directions(s->sess) &
		    LIBSSH2_SESSION_BLOCK_OUTBOUND)
			pf[0].events |= POLLOUT;
		if (p->in_fd >= 0 && !p->in_eof && p->ib_off == p->ib_len) {
			pf[1].fd = p->in_fd;
			nf = 2;
		}
		poll(pf, nf, progress ? 0 : wait);
		if (feed(ch, p, nf == 2 && pf[1].revents != 0) == -1)
			goto broken;
		r0 = drain(ch, p, 0);
		r1 = drain(ch, p, SSH_EXTENDED_DATA_STDERR);
		if (r0 == -2 || r1 == -2) {
			*err = lc_errorf("ssh_io", "cannot write the command's "
			    "output here: %s", strerror(errno));
			return -1;
		}
		if (r0 == -1 || r1 == -1)
			goto broken;
		progress = r0 > 0 || r1 > 0;
		if (libssh2_channel_eof(ch))
			return 0;
		if (p->stop != NULL && *p->stop)
			return 1;
		if (p->deadline > 0 && remaining(p->deadline) == 0) {
			*err = lc_errorf("ssh_timeout", "%s: the command did "
			    "not finish in time; stopped waiting", s->where);
			return -1;
		}
	}
broken:
	*err = lc_errorf("ssh_connect", "%s: the connection broke: %s",
	    s->where, last_error(s));
	return -1;
}

/* The exit status after EOF: 128+n for a signal, -1 if none came. */
static int
exit_status(struct lc_ssh *s, LIBSSH2_CHANNEL *ch)
{
	long long deadline = lc_mono_ms() + CLOSE_MS;
	char *sig = NULL;
	size_t siglen = 0;
	int st;

	while (libssh2_channel_close(ch) == LIBSSH2_ERROR_EAGAIN &&
	    wait_sock(s, deadline) == 0)
		;
	while (libssh2_channel_wait_closed(ch) == LIBSSH2_ERROR_EAGAIN &&
	    wait_sock(s, deadline) == 0)
		;
	st = libssh2_channel_get_exit_status(ch);
	if (libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL,
	    NULL, NULL) == 0 && sig != NULL) {
		st = 128 + signum(sig);
		libssh2_free(s->sess, sig);
	}
	return st;
}

static int
run_pump(struct lc_ssh *s, const char *cmd, struct pump *p, long timeout_ms,
    int *status, jv *err)
{
	long long start_deadline = lc_mono_ms() +
	    (timeout_ms > 0 ? timeout_ms : 30000);
	LIBSSH2_CHANNEL *ch;
	int rc;

	p->deadline = timeout_ms > 0 ? lc_mono_ms() + timeout_ms : 0;
	*status = -1;
	if ((ch = chan_exec(s, cmd, start_deadline, err)) == NULL)
		return -1;
	rc = pump_run(s, ch, p, err);
	if (rc == 0)
		*status = exit_status(s, ch);
	/* A command cut short may run on: do not wait for it to end. */
	chan_done(s, ch, rc == 0 ? CLOSE_MS : 200);
	return rc == -1 ? -1 : 0;
}

int
lc_ssh_run(struct lc_ssh *s, const char *cmd, const char *input,
    size_t input_len, long timeout_ms, struct lc_ssh_result *res, jv *err)
{
	struct pump *p = lc_xmalloc(sizeof(*p));
	int rc;

	memset(p, 0, sizeof(*p));
	p->in = input;
	p->in_len = input != NULL ? input_len : 0;
	p->in_fd = -1;
	p->out_fd[0] = p->out_fd[1] = -1;
	p->buf[0] = &res->out;
	p->buf[1] = &res->err;
	lc_buf_add(&res->out, "", 0);
	lc_buf_add(&res->err, "", 0);
	rc = run_pump(s, cmd, p, timeout_ms, &res->status, err);
	free(p);
	return rc;
}

void
lc_ssh_result_free(struct lc_ssh_result *res)
{
	lc_buf_free(&res->out);
	lc_buf_free(&res->err);
	res->status = -1;
}

int
lc_ssh_stream(struct lc_ssh *s, const char *cmd, int in_fd, int out_fd,
    int err_fd, long timeout_ms, volatile sig_atomic_t *stop, int *status,
    jv *err)
{
	struct pump *p = lc_xmalloc(sizeof(*p));
	int rc;

	memset(p, 0, sizeof(*p));
	p->in_fd = in_fd;
	p->out_fd[0] = out_fd;
	p->out_fd[1] = err_fd;
	p->stop = stop;
	rc = run_pump(s, cmd, p, timeout_ms, status, err);
	free(p);
	return rc;
}

/* One forwarded connection of a tunnel. */
struct conn {
	int		 fd;
	LIBSSH2_CHANNEL	*ch;
	char		 buf[16384];	/* from the client, unsent */
	size_t		 len, off;
	int		 client_eof, eof_sent;
};

/* Open a direct-tcpip channel for a new client. */
static LIBSSH2_CHANNEL *
open_forward(struct lc_ssh *s, const char *rhost, int rport, jv *err)
{
	long long deadline = lc_mono_ms() + 10000;
	LIBSSH2_CHANNEL *ch;

	while ((ch = libssh2_channel_direct_tcpip_ex(s->sess, rhost, rport,
	    "127.0.0.1", 0)) == NULL) {
		if (libssh2_session_last_errno(s->sess) !=
		    LIBSSH2_ERROR_EAGAIN) {
			*err = lc_errorf("ssh_channel", "%s: the VM refused to "
			    "forward to %s:%d: %s (is the server there "
			    "running? is AllowTcpForwarding on?)", s->where,
			    rhost, rport, last_error(s));
			return NULL;
		}
		if (wait_sock(s, deadline) == -1) {
			*err = lc_errorf("ssh_timeout", "%s: opening the "
			    "tunnel to %s:%d took too long", s->where, rhost,
			    rport);
			return NULL;
		}
	}
	return ch;
}

/*
 * Move one connection's data both ways. 2 when data moved, 1 while it
 * lives, 0 when done, -1 when the VM connection itself broke.
 */
static int
conn_step(struct conn *c, int readable)
{
	char buf[16384];
	ssize_t n;
	int moved = 0;

	if (readable && c->len == 0 && !c->client_eof) {
		n = read(c->fd, c->buf, sizeof(c->buf));
		if (n <= 0 && !(n == -1 && errno == EINTR))
			c->client_eof = 1;
		c->len = n > 0 ? (size_t)n : 0;
		c->off = 0;
	}
	if (c->len > c->off) {
		n = libssh2_channel_write(c->ch, c->buf + c->off,
		    c->len - c->off);
		if (n < 0 && n != LIBSSH2_ERROR_EAGAIN)
			return n == LIBSSH2_ERROR_SOCKET_SEND ? -1 : 0;
		if (n > 0)
			moved = 1;
		if (n > 0 && (c->off += (size_t)n) == c->len)
			c->len = c->off = 0;
	}
	if (c->client_eof && c->len == 0 && !c->eof_sent &&
	    libssh2_channel_send_eof(c->ch) != LIBSSH2_ERROR_EAGAIN)
		c->eof_sent = 1;
	while ((n = libssh2_channel_read(c->ch, buf, sizeof(buf))) > 0) {
		moved = 1;
		if (write_all(c->fd, buf, (size_t)n) == -1)
			return 0;
	}
	if (n < 0 && n != LIBSSH2_ERROR_EAGAIN)
		return n == LIBSSH2_ERROR_SOCKET_RECV ? -1 : 0;
	if (libssh2_channel_eof(c->ch))
		return 0;
	return moved ? 2 : 1;
}

static void
conn_close(struct lc_ssh *s, struct conn *c,
    void (*on_conn)(int, const char *, void *), void *arg)
{
	chan_done(s, c->ch, CLOSE_MS);
	close(c->fd);
	free(c);
	if (on_conn != NULL)
		on_conn(0, NULL, arg);
}

/* Accept one client and give it a channel; NULL when it cannot be served. */
static struct conn *
conn_accept(struct lc_ssh *s, int listen_fd, const char *rhost, int rport,
    jv *err)
{
	struct conn *c;
	int fd;

	if ((fd = accept(listen_fd, NULL, NULL)) == -1)
		return NULL;
	c = lc_xmalloc(sizeof(*c));
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	if ((c->ch = open_forward(s, rhost, rport, err)) == NULL) {
		close(fd);
		free(c);
		return NULL;
	}
	return c;
}

/* Has the VM closed the connection? A peek, never a read: what is
 * there stays for libssh2. */
static int
session_closed(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	return r == 0 || (r == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR);
}

int
lc_ssh_tunnel(struct lc_ssh *s, int listen_fd, const char *rhost, int rport,
    volatile sig_atomic_t *stop,
    void (*on_conn)(int event, const char *msg, void *arg), void *arg,
    jv *err)
{
	struct conn *conns[MAX_CONNS];
	struct pollfd pf[MAX_CONNS + 2];
	int n = 0, i, rc = 0, progress = 0, next_alive;

	while (stop == NULL || !*stop) {
		pf[0].fd = listen_fd;
		pf[0].events = n < MAX_CONNS ? POLLIN : 0;
		pf[1].fd = s->fd;
		/* With no channel open nothing reads what the VM sends (a
		 * keepalive reply, OpenSSH's host-key notice), and poll would
		 * wake at once forever: then only the VM's end of the
		 * connection is watched for (PEER_SHUT, session_closed). */
		pf[1].events = n > 0 ? POLLIN : PEER_SHUT;
		if (libssh2_session_block_directions(s->sess) &
		    LIBSSH2_SESSION_BLOCK_OUTBOUND)
			pf[1].events |= POLLOUT;
		for (i = 0; i < n; i++) {
			pf[i + 2].fd = conns[i]->fd;
			pf[i + 2].events = conns[i]->len == 0 &&
			    !conns[i]->client_eof ? POLLIN : 0;
		}
		pf[0].revents = pf[1].revents = 0;
		if (poll(pf, (nfds_t)n + 2, progress ? 0 : WAKE_MS) == -1 &&
		    errno != EINTR)
			break;
		progress = 0;
		if ((pf[1].revents & (POLLHUP | POLLERR)) || (n == 0 &&
		    ((pf[1].revents & PEER_SHUT) || session_closed(s->fd)))) {
			*err = lc_errorf("ssh_connect", "%s: the connection to "
			    "the VM closed", s->where);
			rc = -1;
			break;
		}
		if (pf[0].revents & POLLIN) {
			jv e = jv_invalid();
			struct conn *c = conn_accept(s, listen_fd, rhost, rport,
			    &e);

			if (c != NULL) {
				pf[n + 2].fd = c->fd;
				pf[n + 2].revents = 0;
				conns[n++] = c;
				if (on_conn != NULL)
					on_conn(1, NULL, arg);
			} else if (jv_invalid_has_msg(jv_copy(e))) {
				char *m = lc_error_message(e);

				/* one refused client: the tunnel goes on */
				if (on_conn != NULL)
					on_conn(-1, m, arg);
				free(m);
			}
			jv_free(e);
		}
		for (i = 0; i < n; i++) {
			int st = conn_step(conns[i], pf[i + 2].revents != 0);

			if (st == -1) {
				*err = lc_errorf("ssh_connect", "%s: the "
				    "connection to the VM broke: %s", s->where,
				    last_error(s));
				rc = -1;
				goto out;
			}
			if (st == 0) {
				conn_close(s, conns[i], on_conn, arg);
				conns[i] = conns[--n];
				pf[i + 2] = pf[n + 2];
				i--;
				progress = 1;
			} else if (st == 2)
				progress = 1;
		}
		next_alive = 0;
		if (libssh2_keepalive_send(s->sess, &next_alive) != 0 &&
		    libssh2_session_last_errno(s->sess) !=
		    LIBSSH2_ERROR_EAGAIN) {
			*err = lc_errorf("ssh_connect", "%s: the connection to "
			    "the VM broke: %s", s->where, last_error(s));
			rc = -1;
			break;
		}
	}
out:
	for (i = 0; i < n; i++)
		conn_close(s, conns[i], on_conn, arg);
	return rc;
}
