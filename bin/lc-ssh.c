/*
 * lc-ssh: reach a session's VM. Runs a command there with the node's
 * environment from config and passes its exit status back; or opens an
 * interactive ssh pinned to the session's host key; or shows the vLLM
 * and cloud-init logs; or forwards a local port to vLLM on the VM.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "opts.h"
#include "rec.h"
#include "remote.h"
#include "session.h"
#include "ssh.h"

static const struct lc_opt opts[] = {
	{ 'i', "interactive", NULL, "the system ssh, pinned to the session's "
	  "host key" },
	{ 'l', "logs", NULL, "the cloud-init log and the vLLM container log" },
	{ 'f', "follow", NULL, "logs: keep following the vLLM log" },
	{ 'L', "tunnel", NULL, "forward a local port to vLLM on the VM" },
	{ 'p', "port", "port", "tunnel: local port (0: any; default: the "
	  "session's if free, else a free one)" },
	{ 'n', "dry-run", NULL, "print what would run, run nothing" },
	{ 't', "timeout", "seconds", "time limit for the command (default: "
	  "none)" },
	{ 'w', "wait", "seconds", "retry a refused connection this long "
	  "(booting)" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "show the environment and PATH it ran with" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

/* Four forms, one a mode: a usage text of its own. */
static const struct lc_cmd cmd = {
	.name = "lc-ssh",
	.summary = "lc-ssh: reach a session's VM",
	.usage = "usage: lc-ssh [-nqv] [-t seconds] [-w seconds] [name] "
	    "[-- command ...]\n"
	    "       lc-ssh -i [-nv] [name] [-- command ...]\n"
	    "       lc-ssh -l [-fnqv] [-w seconds] [name]\n"
	    "       lc-ssh -L [-qv] [-p port] [-w seconds] [name]",
	.before = "  (default)              run command on the VM, exit with "
	    "its status\n",
	.after = "Without a name: records from stdin when it is not a "
	    "terminal, else\nthe current session. See lc-ssh(1).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

/* The exit status when the VM could not be reached (as ssh(1) does). */
#define EXIT_SSH 255

struct opts {
	int	 interactive, logs, follow, tunnel, dry_run, port;
	long	 timeout_s, wait_s;
	char	**cmd;		/* the command, NULL-terminated */
	int	 in_fd;		/* the command's stdin, or -1 */
};

static struct lc_config *cfg;
static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = sig;
}

static void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;	/* no SA_RESTART: poll returns */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Print an error about the record on stderr; returns EXIT_SSH. */
static int
fail(jv rec, jv err)
{
	jv_free(lc_attach_error(rec, err));
	return EXIT_SSH;
}

/* Connect, or say why not. */
static struct lc_ssh *
connect_vm(const struct opts *o, jv rec, jv *err)
{
	lc_progress("%s: connecting", lc_subject(rec));
	return lc_ssh_open(cfg, rec, 0, o->wait_s * 1000, err);
}

/* Run a script on the VM, streaming its output. Consumes rec. */
static int
stream(const struct opts *o, jv rec, const char *script)
{
	jv err = jv_invalid();
	struct lc_ssh *s;
	int status = -1;

	if (o->dry_run) {
		fputs(script, stdout);
		jv_free(rec);
		return 0;
	}
	if ((s = connect_vm(o, rec, &err)) == NULL)
		return fail(rec, err);
	lc_progress_done();
	if (lc_ssh_stream(s, script, o->in_fd, STDOUT_FILENO, STDERR_FILENO,
	    o->timeout_s * 1000, &stop, &status, &err) == -1) {
		lc_ssh_close(s);
		return fail(rec, err);
	}
	lc_ssh_close(s);
	jv_free(err);
	jv_free(rec);
	if (status == -1)
		return stop ? 128 + stop : EXIT_SSH;
	return status;
}

/* Run the command after "--" through the remote builder. */
static int
exec_one(const struct opts *o, jv rec)
{
	const char *needs[2] = { o->cmd[0], NULL };
	char *script = lc_remote_argv(cfg, rec, needs,
	    (const char *const *)o->cmd, lc_verbose);
	int rc = stream(o, rec, script);

	free(script);
	return rc;
}

/* The cloud-init log, then vLLM's (followed with -f). */
static int
logs_one(const struct opts *o, jv rec)
{
	struct lc_buf b = LC_BUF_INIT;
	char *ci = lc_remote_path(cfg, "var/log/cloud-init-output.log");
	char *script;
	int rc;

	lc_buf_addstr(&b, "ci=");
	lc_remote_quote(&b, ci);
	lc_buf_addstr(&b, "\n"
	    "if [ -r \"$ci\" ]; then\n"
	    "\tprintf '==> %s <==\\n' \"$ci\"\n");
	lc_buf_addstr(&b, o->follow ? "\ttail -n 20 \"$ci\"\n" :
	    "\tcat \"$ci\"\n");
	lc_buf_addstr(&b, "else\n\tprintf 'lc: no %s yet\\n' \"$ci\" >&2\n"
	    "fi\n"
	    "if ! command -v docker >/dev/null 2>&1; then\n"
	    "\techo 'lc: docker is not installed yet (cloud-init may still "
	    "be running)' >&2\n\texit 0\nfi\n"
	    "if ! docker inspect vllm >/dev/null 2>&1; then\n"
	    "\techo 'lc: no vllm container yet' >&2\n");
	lc_buf_addstr(&b, o->follow ? "\t[ -r \"$ci\" ] && exec tail -n 0 "
	    "-F \"$ci\"\n\texit 0\nfi\n" : "\texit 0\nfi\n");
	lc_buf_addstr(&b, "printf '==> docker logs vllm <==\\n'\n");
	lc_buf_addstr(&b, o->follow ? "exec docker logs -f --tail 100 vllm "
	    "2>&1" : "exec docker logs vllm 2>&1");
	script = lc_remote_script(cfg, rec, NULL, b.data, lc_verbose);
	rc = stream(o, rec, script);
	free(script);
	free(ci);
	lc_buf_free(&b);
	return rc;
}

/* Append "-o OPT" to an argv being built. */
static void
push(char **argv, int *n, const char *a)
{
	argv[(*n)++] = (char *)a;
}

/* The system ssh, pinned to the session's known_hosts. Does not return
 * unless dry-running or failing. Consumes rec. */
static int
interactive(const struct opts *o, jv rec)
{
	jv ssh = lc_get(rec, "ssh");
	char *argv[64], kh[1200], port[16], dest[600], *key, *khp;
	const char *host = lc_str(ssh, "host"), *user = lc_str(ssh, "user");
	int n = 0, i;

	if (host == NULL)
		host = lc_str(rec, "ipv4");
	if (user == NULL)
		user = lc_config_get(cfg, "LC_SSH_USER");
	khp = lc_ssh_known_hosts(rec);
	if (host == NULL || khp == NULL) {
		jv_free(ssh);
		free(khp);
		return fail(rec, lc_errorf("ssh_config", "the session has no "
		    "address or no pinned host key yet: is it still being "
		    "created?"));
	}
	key = lc_str(ssh, "key") ? lc_expand_home(lc_str(ssh, "key")) :
	    lc_config_path(cfg, "LC_SSH_KEY");
	snprintf(kh, sizeof(kh), "UserKnownHostsFile=%s", khp);
	free(khp);
	snprintf(port, sizeof(port), "%d", lc_num(ssh, "port", 0) > 0 ?
	    (int)lc_num(ssh, "port", 0) :
	    atoi(lc_config_get(cfg, "LC_SSH_PORT")));
	snprintf(dest, sizeof(dest), "%s@%s", user ? user : "root", host);
	push(argv, &n, "ssh");
	push(argv, &n, "-o");
	push(argv, &n, kh);
	push(argv, &n, "-o");
	push(argv, &n, "GlobalKnownHostsFile=/dev/null");
	push(argv, &n, "-o");
	push(argv, &n, "StrictHostKeyChecking=yes");
	push(argv, &n, "-o");
	push(argv, &n, "UpdateHostKeys=no");
	if (key != NULL && access(key, R_OK) == 0) {
		push(argv, &n, "-i");
		push(argv, &n, key);
	}
	push(argv, &n, "-p");
	push(argv, &n, port);
	push(argv, &n, dest);
	for (i = 0; o->cmd != NULL && o->cmd[i] != NULL && n < 62; i++)
		push(argv, &n, o->cmd[i]);
	argv[n] = NULL;
	if (o->dry_run || lc_verbose) {
		struct lc_buf b = LC_BUF_INIT;

		for (i = 0; i < n; i++) {
			if (i > 0)
				lc_buf_addstr(&b, " ");
			lc_remote_quote(&b, argv[i]);
		}
		if (o->dry_run)
			printf("%s\n", b.data);
		else
			lc_warnx("%s: running %s", lc_subject(rec), b.data);
		lc_buf_free(&b);
	}
	if (!o->dry_run) {
		fflush(stdout);
		execvp("ssh", argv);
		lc_warnx("cannot run ssh: %s (is OpenSSH's client installed?)",
		    strerror(errno));
	}
	free(key);
	jv_free(ssh);
	jv_free(rec);
	return o->dry_run ? 0 : EXIT_SSH;
}

/* vLLM's port on the VM, from "endpoint" (default LC_VLLM_PORT). */
static int
vllm_port(jv rec)
{
	const char *ep = lc_str(rec, "endpoint"), *c;
	int port = atoi(lc_config_get(cfg, "LC_VLLM_PORT") ?
	    lc_config_get(cfg, "LC_VLLM_PORT") : "8000");

	if (ep != NULL && (c = strstr(ep, "://")) != NULL &&
	    (c = strchr(c + 3, ':')) != NULL && atoi(c + 1) > 0)
		port = atoi(c + 1);
	return port;
}

/*
 * Listen on 127.0.0.1:port (0: any). fd and *bound, or -1 with *err
 * (port_in_use when another socket has it). No SO_REUSEADDR: the bind
 * itself is the check that the port is free, and no later step can find
 * it taken.
 */
static int
listen_local(int port, int *bound, jv *err)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(fd, 16) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) == -1) {
		if (errno == EADDRINUSE)
			*err = lc_errorf("port_in_use", "port %d on 127.0.0.1 "
			    "is in use: choose another with -p PORT, or -p 0 "
			    "for any free one", port);
		else
			*err = lc_errorf("io", "cannot listen on 127.0.0.1:%d: "
			    "%s", port, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	*bound = ntohs(sin.sin_port);
	return fd;
}

/*
 * The tunnel's listening socket. With -p, that port or an error. Without,
 * the session's recorded local_port when it is free, else the first free
 * one from 18000 that no other session records, else any. fd and *bound,
 * or -1 with *err.
 */
static int
open_port(const struct opts *o, struct lc_ledger *l, jv rec, int *bound,
    jv *err)
{
	const char *name = lc_subject(rec);
	int want, port, fd;

	if (o->port >= 0)
		return listen_local(o->port, bound, err);
	want = lc_session_local_port(l, rec);
	if ((fd = listen_local(want, bound, err)) != -1 ||
	    strcmp(lc_error_code(*err), "port_in_use") != 0)
		return fd;
	for (port = 18000; port < 19000; port++) {
		if (port == want || lc_session_port_taken(l, name, port))
			continue;
		jv_free(*err);
		*err = jv_invalid();
		if ((fd = listen_local(port, bound, err)) != -1 ||
		    strcmp(lc_error_code(*err), "port_in_use") != 0)
			break;
	}
	if (fd == -1 && strcmp(lc_error_code(*err), "port_in_use") == 0) {
		jv_free(*err);
		*err = jv_invalid();
		fd = listen_local(0, bound, err);
	}
	if (fd != -1)
		lc_warnx("%s: local port %d is in use: the tunnel takes %d "
		    "(the env file follows)", name, want, *bound);
	return fd;
}

/* Record the port the tunnel listens on, and point the session's env
 * file at it. A record given on stdin but not in the ledger: nothing to
 * record. Warns, never fails the tunnel. */
static void
record_port(struct lc_ledger *l, jv rec, int port)
{
	jv err = jv_invalid();
	char *m;

	if (l == NULL)
		return;
	if (lc_session_set_local_port(l, lc_subject(rec), port, &err) == -1 &&
	    strcmp(lc_error_code(err), "not_found") != 0) {
		m = lc_error_message(err);
		lc_warnx("%s: cannot record local port %d: %s",
		    lc_subject(rec), port, m);
		free(m);
	}
	jv_free(err);
}

static void
on_conn(int event, const char *msg, void *arg)
{
	(void)arg;
	if (event == -1)
		lc_warnx("tunnel: %s", msg);
	else if (lc_verbose)
		lc_warnx("tunnel: connection %s", event ? "opened" :
		    "closed");
}

/* How long a broken tunnel keeps trying to reconnect, and its longest
 * pause between tries. */
#define TUNNEL_RECONNECT_S	300
#define TUNNEL_BACKOFF_MAX_S	30

/* Sleep s seconds, or less when a signal asks to stop. */
static void
pause_s(int s)
{
	int i;

	for (i = 0; i < s * 10 && !stop; i++)
		lc_sleep_ms(100);
}

/*
 * The connection under a tunnel broke (a laptop's network changed, the
 * VM's sshd restarted): connect again, pausing 1, 2, 4 ... 30 s between
 * tries, for TUNNEL_RECONNECT_S. The local port stays open throughout, so
 * aider's base URL stays valid; clients that arrive meanwhile wait in the
 * listen queue. Gives up at once on what another try cannot fix (the
 * host key, the user key). NULL with *err when it gives up or is stopped.
 */
static struct lc_ssh *
reconnect(const struct opts *o, jv rec, jv *err)
{
	long long give_up = lc_mono_ms() + TUNNEL_RECONNECT_S * 1000LL;
	int gap = 1;
	struct lc_ssh *s;
	char *m = lc_error_message(*err);

	lc_warnx("%s: tunnel: %s; reconnecting for up to %d minutes",
	    lc_subject(rec), m, TUNNEL_RECONNECT_S / 60);
	free(m);
	for (;;) {
		const char *code;

		jv_free(*err);
		*err = jv_invalid();
		if ((s = connect_vm(o, rec, err)) != NULL) {
			lc_progress_done();
			lc_warnx("%s: tunnel: reconnected", lc_subject(rec));
			return s;
		}
		lc_progress_done();
		code = lc_error_code(*err);
		if (stop || strcmp(code, "ssh_hostkey") == 0 ||
		    strcmp(code, "ssh_auth") == 0 ||
		    strcmp(code, "ssh_config") == 0 ||
		    lc_mono_ms() + gap * 1000LL > give_up)
			return NULL;
		pause_s(gap);
		if (stop)
			return NULL;
		gap = gap * 2 > TUNNEL_BACKOFF_MAX_S ? TUNNEL_BACKOFF_MAX_S :
		    gap * 2;
	}
}

/* Forward a local port to vLLM on the VM until a signal, reconnecting
 * when the connection breaks. Consumes rec. */
static int
tunnel(const struct opts *o, jv rec)
{
	struct lc_ledger l = { NULL, -1 }, *lp = &l;
	int rport = vllm_port(rec), lfd, bound = 0, rc;
	jv err = jv_invalid();
	struct lc_ssh *s;

	if (lc_ledger_open(&l, &err) == -1) {
		jv_free(err);		/* a record from stdin only */
		err = jv_invalid();
		lp = NULL;
	}
	lfd = open_port(o, lp, rec, &bound, &err);
	if (lfd != -1)
		record_port(lp, rec, bound);
	if (lp != NULL)
		lc_ledger_close(&l);
	if (lfd == -1) {
		rc = strcmp(lc_error_code(err), "port_in_use") == 0 ? 1 :
		    EXIT_SSH;
		fail(rec, err);
		return rc;
	}
	if ((s = connect_vm(o, rec, &err)) == NULL) {
		close(lfd);
		return fail(rec, err);
	}
	lc_progress_done();
	printf("OPENAI_API_BASE=http://127.0.0.1:%d/v1\n", bound);
	fflush(stdout);
	lc_info("%s: tunnel 127.0.0.1:%d -> %s, port %d on the VM; Ctrl-C "
	    "stops it", lc_subject(rec), bound, lc_ssh_where(s), rport);
	for (;;) {
		rc = lc_ssh_tunnel(s, lfd, "127.0.0.1", rport, &stop, on_conn,
		    NULL, &err);
		lc_ssh_close(s);
		if (rc == 0 || stop || (s = reconnect(o, rec, &err)) == NULL)
			break;
	}
	close(lfd);
	if (rc == -1 && !stop)
		return fail(rec, err);
	jv_free(err);
	jv_free(rec);
	return 0;
}

/* One session: whichever job was asked for. Consumes rec. */
static int
one(const struct opts *o, jv rec)
{
	jv full;

	if (jv_object_has(jv_copy(rec), jv_string("error"))) {
		jv e = lc_get(rec, "error");

		lc_warnx("%s: skipped: %s", lc_subject(rec),
		    lc_str(e, "message") ? lc_str(e, "message") : "error");
		jv_free(e);
		jv_free(rec);
		return EXIT_SSH;
	}
	full = lc_remote_session(jv_copy(rec));
	if (!jv_is_valid(full))
		return fail(rec, full);
	jv_free(rec);
	if (o->interactive)
		return interactive(o, full);
	if (o->logs)
		return logs_one(o, full);
	if (o->tunnel)
		return tunnel(o, full);
	return exec_one(o, full);
}

/* No name given: the current session, as a record. */
static jv
current_session(void)
{
	jv err = jv_invalid();
	char *name;

	if ((name = lc_ledger_current_name(&err)) == NULL && jv_is_valid(err))
		lc_fatal_err(err);
	jv_free(err);
	if (name == NULL)
		lc_usage(usage_str, "no session named and no current session "
		    "(lc-sessions use NAME sets one)");
	err = jv_object_set(jv_object(), jv_string("name"), jv_string(name));
	free(name);
	return err;
}

static void
load_config(void)
{
	jv err = jv_invalid();

	if ((cfg = lc_config_load(&err)) == NULL)
		lc_fatal_err(err);
	jv_free(err);
}

/* Split argv at "--": what follows is the command, not ours to parse. */
static int
split_command(int argc, char **argv, struct opts *o)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			o->cmd = argv + i + 1;
			argv[i] = NULL;
			return i;
		}
	return argc;
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
	int ch;

	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'f': o->follow = 1; break;
		case 'h': lc_opts_help(&cmd);
		case 'i': o->interactive = 1; break;
		case 'L': o->tunnel = 1; break;
		case 'l': o->logs = 1; break;
		case 'n': o->dry_run = 1; break;
		case 'p':
			o->port = atoi(optarg);
			if (strspn(optarg, "0123456789") != strlen(optarg) ||
			    *optarg == '\0' || o->port > 65535)
				lc_usage(usage_str, "bad port '%s'", optarg);
			break;
		case 'q': lc_quiet = 1; break;
		case 't':
			if (lc_parse_duration(optarg, &o->timeout_s) == -1)
				lc_usage(usage_str, "bad timeout '%s': write "
				    "seconds, e.g. 30", optarg);
			break;
		case 'v': lc_verbose = 1; break;
		case 'w':
			if (lc_parse_duration(optarg, &o->wait_s) == -1)
				lc_usage(usage_str, "bad wait '%s': write "
				    "seconds, e.g. 120", optarg);
			break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	if (o->interactive + o->logs + o->tunnel > 1)
		lc_usage(usage_str, "-i, -l and -L exclude each other");
	if (o->follow && !o->logs)
		lc_usage(usage_str, "-f goes with -l (logs)");
	if (o->port >= 0 && !o->tunnel)
		lc_usage(usage_str, "-p goes with -L (tunnel)");
	if (o->cmd != NULL && (o->logs || o->tunnel))
		lc_usage(usage_str, "-l and -L take no command");
}

int
main(int argc, char *argv[])
{
	struct opts o = { .port = -1, .in_fd = -1 };
	struct lc_reader *in;
	int nopt, rc = 0, r;
	jv rec;

	lc_init("lc-ssh");
	usage_str = lc_opts_usage(&cmd);
	nopt = split_command(argc, argv, &o);
	parse_opts(nopt, argv, &o);
	argc = nopt - optind;
	argv += optind;
	if (o.cmd == NULL && argc > 1 && !o.logs && !o.tunnel) {
		o.cmd = argv + 1;	/* lc-ssh NAME CMD ...: as ssh(1) */
		argc = 1;
	}
	if (o.cmd != NULL && o.cmd[0] == NULL)
		lc_usage(usage_str, "no command after --");
	if (!o.logs && !o.tunnel && o.cmd == NULL)
		o.interactive = 1;
	if ((o.logs || o.tunnel || o.interactive) && argc > 1)
		lc_usage(usage_str, "one session at a time for -i, -l and -L");
	load_config();
	catch_signals();
	if (argc == 0 && isatty(STDIN_FILENO)) {
		rc = one(&o, current_session());
	} else if (argc == 0) {
		in = lc_reader_open(0, NULL, "name");
		while (!stop && lc_reader_next(in, &rec))
			if ((r = one(&o, rec)) != 0)
				rc = r;
		lc_reader_close(in);
	} else {
		/* Names given: stdin is the command's (not a terminal's). */
		if (!isatty(STDIN_FILENO) && argc == 1)
			o.in_fd = STDIN_FILENO;
		for (int i = 0; i < argc && !stop; i++)
			if ((r = one(&o, jv_object_set(jv_object(),
			    jv_string("name"), jv_string(argv[i])))) != 0)
				rc = r;
	}
	lc_config_free(cfg);
	if (fflush(stdout) == EOF || ferror(stdout))
		return LC_EXIT_FATAL;
	return rc;
}
