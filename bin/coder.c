/*
 * coder: the front end for the common flows. Each verb runs the lc tools
 * (exec for one tool, fork/exec for several) so status, signals and stdio
 * pass through, and renders their records on a terminal. It does no work
 * of its own: no API call, no SSH, no presets file; it links libjq alone.
 */
#define _XOPEN_SOURCE 700	/* realpath */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "cachespec.h"
#include "compat.h"
#include "config.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "opts.h"
#include "session.h"
#include "rec.h"
#include "vllm.h"

static const char usage_str[] = "usage: coder verb [argument ...]";

static const struct lc_opt opts[] = {
	{ 'v', "verbose", NULL, "more detail on stderr" },
	{ 'V', "version", NULL, "the version" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cli = {
	.name = "coder",
	.summary = "coder: a private coding LLM on a Linode GPU, only while "
	    "you use it",
	.usage = "usage: coder verb [argument ...]\n"
	    "       coder -h | --help | -V | --version",
	.after = "Every verb takes --help. See coder(1), lc(7).\n",
	.col = 27,
	.opts = opts
};

struct verb {
	const char	*name;
	int		(*run)(int, char **);
	const struct lc_cmd *cmd;	/* its options, usage and --help */
	int		 group;		/* the heading coder help lists it under */
};

/* The verb under way: its table gives getopt, the usage and --help. */
static const struct lc_cmd *vcmd;

/* A verb's arguments, as its option table read them. */
struct vargs {
	const char	*opt[128];	/* by letter: the value, "" for an
					 * option without one; NULL: not given */
	char		**ops;		/* the operands (in argv) */
	int		 nops;
	char		**after;	/* the words after "--", or NULL */
	int		 nafter;
};

#define ARGS_STOP	1	/* options end at the first operand */
#define ARGS_DASH	2	/* what follows "--" is not ours */

static const char *
vusage(void)
{
	return lc_opts_usage(vcmd);
}

/*
 * Read argv (argv[0] the verb) by the verb's table: -h is its --help, an
 * option it lacks a usage error (exit 2).
 */
static void
parse_args(int argc, char **argv, int how, struct vargs *a)
{
	int ch, end = argc, i;

	memset(a, 0, sizeof(*a));
	if (how & ARGS_DASH)
		for (i = 1; i < argc; i++)
			if (strcmp(argv[i], "--") == 0) {
				end = i;
				a->after = argv + i + 1;
				a->nafter = argc - i - 1;
				break;
			}
	optind = 0;	/* glibc: start again, the '+' read anew */
	while ((ch = lc_opts_get(vcmd, how & ARGS_STOP ? "+" : "", end,
	    argv)) != -1) {
		if (ch == 'h')
			lc_opts_help(vcmd);
		if (ch <= 0 || ch >= 128 || ch == '?' || ch == ':')
			lc_bad_option(vusage(), argv);
		a->opt[ch] = optarg != NULL ? optarg : "";
	}
	a->ops = argv + optind;
	a->nops = end - optind;
}

/* No operands beyond max: a usage error. */
static void
max_ops(const struct vargs *a, int max)
{
	if (a->nops > max)
		lc_usage(vusage(), "unexpected argument: %s", a->ops[max]);
}

/* A port given with -p: 1 to 65535, digits only, or a usage error. */
static const char *
port_arg(const char *port)
{
	if (port != NULL && (*port == '\0' ||
	    strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) > 65535))
		lc_usage(vusage(), "bad port '%s'", port);
	return port;
}

static int coder_help(int, char **);
static struct lc_config *load_config(void);

/* Prefer the lc tools that sit beside this coder, then PATH. */
static void
path_add_self(const char *argv0)
{
	char self[PATH_MAX], *slash, *path;
	const char *old = getenv("PATH");
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	size_t len;

	if (n > 0)
		self[n] = '\0';
	else if (strchr(argv0, '/') == NULL || realpath(argv0, self) == NULL)
		return;
	if ((slash = strrchr(self, '/')) == NULL)
		return;
	*slash = '\0';
	len = strlen(self) + (old ? strlen(old) : 0) + 2;
	path = lc_xmalloc(len);
	snprintf(path, len, "%s%s%s", self, old ? ":" : "", old ? old : "");
	setenv("PATH", path, 1);
	free(path);
}

/* exec a tool; on failure say which and exit 127 like a shell. */
static _Noreturn void
run_tool(char *const argv[])
{
	execvp(argv[0], argv);
	lc_warnx("cannot run %s: %s (is linode-coder installed?)", argv[0],
	    strerror(errno));
	exit(127);
}

/* Wait for pid; its status as a shell reports it. */
static int
reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			lc_fatal("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* fork/exec and wait; the status as a shell reports it. With quiet, the
 * tool's records (stdout) are thrown away; its stderr passes. */
static int
spawn_out(char *const argv[], int quiet)
{
	int devnull;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) == -1)
		lc_fatal("fork: %s", strerror(errno));
	if (pid == 0) {
		if (quiet && (devnull = open("/dev/null", O_WRONLY)) != -1)
			dup2(devnull, STDOUT_FILENO);
		run_tool(argv);
	}
	return reap(pid);
}

static int
spawn(char *const argv[])
{
	return spawn_out(argv, 0);
}

static int
spawn_quiet(char *const argv[])
{
	return spawn_out(argv, 1);
}

/*
 * Run a tool with input (NULL: none) on its stdin and its stdout in *out;
 * its stderr in *errb, or passed through when errb is NULL. With token,
 * the tool finds it in LINODE_TOKEN, never in argv. The status as a
 * shell reports it.
 */
static int
capture(char *const argv[], const char *input, const char *token,
    struct lc_buf *out, struct lc_buf *errb)
{
	int in[2] = { -1, -1 }, o[2] = { -1, -1 }, e[2] = { -1, -1 };
	size_t off = 0, len = input ? strlen(input) : 0;
	struct pollfd p[3];
	char buf[4096];
	ssize_t n;
	pid_t pid;

	fflush(stdout);
	if (pipe(in) == -1 || pipe(o) == -1 || (errb && pipe(e) == -1) ||
	    (pid = fork()) == -1)
		lc_fatal("cannot run %s: %s", argv[0], strerror(errno));
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(o[1], STDOUT_FILENO);
		if (errb != NULL)
			dup2(e[1], STDERR_FILENO);
		close(in[0]);
		close(in[1]);
		close(o[0]);
		close(o[1]);
		if (errb != NULL) {
			close(e[0]);
			close(e[1]);
		}
		if (token != NULL)
			setenv("LINODE_TOKEN", token, 1);
		run_tool(argv);
	}
	close(in[0]);
	close(o[1]);
	if (errb != NULL)
		close(e[1]);
	if (len == 0) {
		close(in[1]);
		in[1] = -1;
	}
	p[0] = (struct pollfd){ .fd = o[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = e[0], .events = POLLIN };
	p[2] = (struct pollfd){ .fd = in[1], .events = POLLOUT };
	while (p[0].fd != -1 || p[1].fd != -1 || p[2].fd != -1) {
		if (poll(p, 3, -1) == -1) {
			if (errno == EINTR)
				continue;
			lc_fatal("poll: %s", strerror(errno));
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd == -1 || p[i].revents == 0)
				continue;
			if ((n = read(p[i].fd, buf, sizeof(buf))) > 0)
				lc_buf_add(i == 0 ? out : errb, buf, (size_t)n);
			else if (n == 0 || errno != EINTR) {
				close(p[i].fd);
				p[i].fd = -1;
			}
		}
		if (p[2].fd != -1 && p[2].revents != 0) {
			/* PIPE_BUF at most: that never blocks after POLLOUT. */
			n = write(p[2].fd, input + off, len - off > PIPE_BUF ?
			    PIPE_BUF : len - off);
			if (n > 0)
				off += (size_t)n;
			if (off == len || (n == -1 && errno != EINTR)) {
				close(p[2].fd);
				p[2].fd = -1;
			}
		}
	}
	return reap(pid);
}

/* The objects among the NDJSON lines of b, as an array (owned). */
static jv
records_of(const struct lc_buf *b)
{
	jv list = jv_array();
	const char *p = b->data, *nl;

	for (; p != NULL && *p != '\0'; p = nl ? nl + 1 : NULL) {
		jv r;

		nl = strchr(p, '\n');
		r = jv_parse_sized(p, nl ? (int)(nl - p) : (int)strlen(p));
		if (jv_get_kind(r) == JV_KIND_OBJECT)
			list = jv_array_append(list, r);
		else
			jv_free(r);
	}
	return list;
}

/* The first record of b, or null. Owned. */
static jv
first_record(const struct lc_buf *b)
{
	jv list = records_of(b);

	if (jv_array_length(jv_copy(list)) == 0) {
		jv_free(list);
		return jv_null();
	}
	return jv_array_get(list, 0);
}

/* A tool's stderr, said as coder's own: "tool: " dropped from each line,
 * so a message reads as it did when coder did the work itself. */
static void
relay(const char *tool, const struct lc_buf *errb)
{
	size_t tl = strlen(tool);
	const char *p = errb->data, *nl;

	for (; p != NULL && *p != '\0'; p = nl ? nl + 1 : NULL) {
		int n;

		nl = strchr(p, '\n');
		n = nl ? (int)(nl - p) : (int)strlen(p);
		if (strncmp(p, tool, tl) == 0 && strncmp(p + tl, ": ", 2) == 0)
			lc_warnx("%.*s", n - (int)tl - 2, p + tl + 2);
		else
			fprintf(stderr, "%.*s\n", n, p);
	}
}

/* A record's "error" member as an error value (lc_errorf's kind). */
static jv
error_of(jv r)
{
	jv e = lc_get(r, "error"), v;

	v = lc_errorf(lc_str(e, "code") ? lc_str(e, "code") : "failed", "%s",
	    lc_str(e, "message") ? lc_str(e, "message") : "failed");
	jv_free(e);
	return v;
}

/* ---- records on a terminal ---- */

/*
 * On a terminal a verb's records read as one line each: the subject, then
 * what a person looks for (state, decision and action, the VM, the model,
 * the deadline, the cost), or the error. Through a pipe, the records
 * themselves (NDJSON), unchanged.
 */
static void
render(jv r)
{
	struct lc_buf b = LC_BUF_INIT;
	jv e = lc_get(r, "error"), d = lc_get(r, "diagnosis");
	const char *s;
	double n;

	lc_buf_printf(&b, "%s:", lc_str(r, "name") == NULL && lc_str(r,
	    "label") != NULL ? lc_str(r, "label") : lc_subject(r));
	if (jv_get_kind(e) == JV_KIND_OBJECT)
		lc_buf_printf(&b, " error: %s", lc_str(e, "message") ?
		    lc_str(e, "message") : lc_str(e, "code") ?
		    lc_str(e, "code") : "failed");
	else {
		const char *sep = " ";

#define PART(...) do { lc_buf_printf(&b, "%s", sep); \
	lc_buf_printf(&b, __VA_ARGS__); sep = ", "; } while (0)
		if ((s = lc_str(r, "state")) != NULL)
			PART("%s", s);
		if ((s = lc_str(r, "decision")) != NULL)
			PART("%s", s);
		if ((s = lc_str(r, "action")) != NULL && strcmp(s, "none"))
			PART("%s", s);
		if ((s = lc_str(r, "reason")) != NULL)
			PART("%s", s);
		if ((n = lc_num(r, "linode_id", 0)) > 0)
			PART("VM %.0f", n);
		if ((s = lc_str(r, "served_model_name")) != NULL ||
		    (s = lc_str(r, "model")) != NULL)
			PART("model %s", s);
		if ((s = lc_str(d, "category")) != NULL)
			PART("diagnosis %s", s);
		if ((s = lc_str(r, "deadline_at")) != NULL &&
		    lc_str(r, "destroyed_at") == NULL)
			PART("deadline %s", s);
		if ((s = lc_str(r, "destroyed_at")) != NULL)
			PART("destroyed %s", s);
		if ((n = lc_num(r, "cost_usd", -1)) >= 0)
			PART("$%.2f", n);
		if ((n = lc_num(r, "size_gb", 0)) > 0)	/* a cache volume */
			PART("%.0f GB in %s", n, lc_str(r, "region") ?
			    lc_str(r, "region") : "?");
		if ((s = lc_str(r, "attached_to")) != NULL)
			PART("attached to %s", s);
		if ((n = lc_num(r, "monthly_cost_usd", -1)) >= 0 &&
		    lc_num(r, "size_gb", 0) > 0 && (lc_str(r, "state") ==
		    NULL || strcmp(lc_str(r, "state"), "deleted") != 0))
			PART("$%.2f/month until deleted", n);
		if ((s = lc_str(r, "warning")) != NULL)
			PART("warning: %s", s);
#undef PART
	}
	printf("%s\n", b.data ? b.data : "");
	lc_buf_free(&b);
	jv_free(e);
	jv_free(d);
	jv_free(r);
}

/* A record of coder's own: rendered on a terminal, else NDJSON. */
static void
emit_record(jv r)
{
	if (isatty(STDOUT_FILENO))
		render(r);
	else
		lc_emit(r);
}

/*
 * Run a tool and wait; on a terminal its records are rendered (render()),
 * lines that are not records pass as they are. The status as a shell
 * reports it.
 */
static int
spawn_render(char *const argv[], int json)
{
	int fd[2];
	char *line = NULL;
	size_t cap = 0;
	pid_t pid;
	FILE *in;

	if (json || !isatty(STDOUT_FILENO) || pipe(fd) == -1)
		return spawn(argv);
	fflush(stdout);
	if ((pid = fork()) == -1)
		lc_fatal("fork: %s", strerror(errno));
	if (pid == 0) {
		close(fd[0]);
		dup2(fd[1], STDOUT_FILENO);
		close(fd[1]);
		run_tool(argv);
	}
	close(fd[1]);
	if ((in = fdopen(fd[0], "r")) == NULL)
		lc_fatal("fdopen: %s", strerror(errno));
	while (getline(&line, &cap, in) > 0) {
		jv r = line[0] == '{' ? jv_parse(line) : jv_invalid();

		if (jv_get_kind(r) == JV_KIND_OBJECT)
			render(r);
		else {
			jv_free(r);
			fputs(line, stdout);
		}
		fflush(stdout);
	}
	free(line);
	fclose(in);
	return reap(pid);
}

/* run_tool, with the records rendered on a terminal. */
static _Noreturn void
run_rendered(char **argv, int json)
{
	if (json || !isatty(STDOUT_FILENO))
		run_tool(argv);
	exit(spawn_render(argv, json));
}

static int
session_exists(const char *name)
{
	struct lc_ledger l;
	jv err = jv_invalid();
	char *path;
	struct stat st;
	int ok;

	if (lc_name_check(name, &err) == -1) {
		jv_free(err);
		return 0;
	}
	if (lc_ledger_open(&l, &err) == -1) {
		jv_free(err);
		return 0;
	}
	path = lc_session_path(&l, name, LC_SESSION_RECORD);
	ok = lstat(path, &st) == 0;
	free(path);
	lc_ledger_close(&l);
	return ok;
}

/* The session's stored record, or null (no ledger, no such session,
 * damaged). */
static jv
session_record(const char *name)
{
	struct lc_ledger l;
	jv err = jv_invalid(), rec;

	if (lc_name_check(name, &err) == -1 || lc_ledger_open(&l, &err) == -1) {
		jv_free(err);
		return jv_null();
	}
	rec = lc_ledger_get(&l, name);
	lc_ledger_close(&l);
	if (!jv_is_valid(rec) || jv_get_kind(rec) != JV_KIND_OBJECT) {
		jv_free(rec);
		return jv_null();
	}
	return rec;
}

/* Does the session's record name a VM (a linode_id)? */
static int
session_has_vm(const char *name)
{
	jv rec = session_record(name);
	int vm = lc_num(rec, "linode_id", 0) > 0;

	jv_free(rec);
	return vm;
}

/* Does the ledger call the session ready? */
static int
session_ready(const char *name)
{
	jv rec = session_record(name);
	const char *st = lc_str(rec, "state");
	int ready = st != NULL && strcmp(st, "ready") == 0;

	jv_free(rec);
	return ready;
}

static int
has_current(void)
{
	struct lc_ledger l;
	jv err = jv_invalid();
	char *name;

	if (lc_ledger_open(&l, &err) == -1) {
		jv_free(err);
		return 0;
	}
	name = lc_ledger_current(&l);
	lc_ledger_close(&l);
	free(name);
	return name != NULL;
}

/* The current session's name (malloc'd), or exit with a hint. */
static char *
current_or_die(void)
{
	struct lc_ledger l;
	jv err = jv_invalid();
	char *name;

	if (lc_ledger_open(&l, &err) == -1) 
		lc_fatal_err(err);
	name = lc_ledger_current(&l);
	lc_ledger_close(&l);
	if (name == NULL) {
		lc_warnx("no current session: name one, or pick one with "
		    "'coder use NAME' ('coder list' shows them)");
		exit(LC_EXIT_USAGE);
	}
	return name;
}

/*
 * The session a verb works on: its first operand when that names one (any
 * word when must_be_name), else the current one. Takes the operand.
 */
static char *
pick_name(struct vargs *a, int must_be_name)
{
	if (a->nops > 0 && (must_be_name || session_exists(a->ops[0]))) {
		a->nops--;
		return lc_xstrdup(*a->ops++);
	}
	return current_or_die();
}

/* Builds an argv: prefix words, then the rest of ours. */
static char **
build(const char *const prefix[], int argc, char **argv)
{
	int n = 0, i;
	char **out;

	while (prefix[n] != NULL)
		n++;
	out = lc_xmalloc(sizeof(*out) * (size_t)(n + argc + 1));
	for (i = 0; i < n; i++)
		out[i] = (char *)prefix[i];
	for (i = 0; i < argc; i++)
		out[n + i] = argv[i];
	out[n + argc] = NULL;
	return out;
}

static int
verb_list(int argc, char **argv)
{
	char *args[4] = { "lc-sessions", NULL, NULL, NULL };
	struct vargs a;
	int n = 1;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	if (a.opt['a'] != NULL)
		args[n++] = "--all";
	if (a.opt['j'] == NULL && isatty(STDOUT_FILENO))
		args[n++] = "--table";
	run_tool(args);
}

static int	have_token(void);

/*
 * The sessions' table, then, with a token, what the account holds that
 * this ledger lacks: reconcile's lines on stderr name this ledger's
 * orphans and the VMs another machine's ledger made (left to it).
 */
static _Noreturn void
status_table(char **argv)
{
	char *recon[] = { "lc-sessions", "reconcile", NULL };
	int rc;

	if (!have_token())
		run_tool(argv);
	rc = spawn(argv);
	/* A glance, not a wait: offline, status must not hang on retries. */
	setenv("LC_HTTP_RETRIES", "1", 1);
	setenv("LC_HTTP_TIMEOUT", "10s", 1);
	(void)spawn_quiet(recon);
	/* The cache volumes bill whether a session runs or not. */
	{
		char *cache[] = { "lc-sessions", "cache", NULL };

		fflush(stdout);
		(void)spawn_render(cache, 0);
	}
	exit(rc);
}

static int
verb_status(int argc, char **argv)
{
	char *args[4] = { "lc-sessions", NULL, NULL, NULL };
	struct vargs a;
	int json, n = 1;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	json = a.opt['j'] != NULL || !isatty(STDOUT_FILENO);
	if (!json)
		args[n++] = "--table";
	/* A name, else the current session, else all of them. */
	if (a.nops == 1 || has_current())
		args[n++] = pick_name(&a, 1);
	if (json)
		run_tool(args);
	status_table(args);
}

static int
verb_use(int argc, char **argv)
{
	char *args[] = { "lc-sessions", "use", NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	if (a.nops == 0)
		lc_usage(vusage(), "name the session to use ('coder list' "
		    "shows them)");
	args[2] = a.ops[0];
	run_rendered(args, a.opt['j'] != NULL);
}

/* The session's deadline_at (malloc'd), or NULL. */
static char *
deadline_of(const char *name)
{
	jv rec = session_record(name);
	char *d = lc_str(rec, "deadline_at") != NULL ?
	    lc_xstrdup(lc_str(rec, "deadline_at")) : NULL;

	jv_free(rec);
	return d;
}

/*
 * After an extend, the VM's own guard must hear of it, or the VM deletes
 * itself at the old deadline, or as idle, before the next lc-watch run:
 * lc-watch on that session makes a new token for a moved deadline and
 * pushes it with the deadline and the new last activity. Says so when it
 * could not.
 */
static void
push_guard(const char *name, const char *before)
{
	char *watch[] = { "lc-watch", "--quiet", "--timeout", "10",
	    (char *)name, NULL };
	const char *after, *fs, *have, *g;
	struct lc_ledger l;
	jv rec, err = jv_invalid();
	char *want, *act;
	int moved;

	if (lc_ledger_open(&l, &err) == -1) {
		jv_free(err);
		return;
	}
	rec = lc_ledger_get(&l, name);
	after = lc_str(rec, "deadline_at");
	fs = lc_str(rec, "failsafe");
	g = lc_str(rec, "vm_idle_guard");
	moved = after != NULL && (before == NULL || strcmp(before, after) != 0);
	if (fs != NULL && strcmp(fs, "armed") == 0 && (moved ||
	    (g != NULL && strcmp(g, "on") == 0))) {
		want = lc_xstrdup(after ? after : "");
		act = lc_xstrdup(lc_str(rec, "last_activity_at") ?
		    lc_str(rec, "last_activity_at") : "");
		spawn_quiet(watch);
		jv_free(rec);
		rec = lc_ledger_get(&l, name);
		have = lc_str(rec, "failsafe_deadline_at");
		if (moved && (have == NULL || strcmp(have, want) != 0))
			lc_warnx("%s: the VM's own deadline is still %s: it "
			    "deletes itself then unless lc-watch reaches it "
			    "first (cron runs it every minute; 'coder watch' "
			    "says whether it is installed)", name,
			    have ? have : "the old one");
		else if (!moved && *act != '\0' &&
		    (lc_str(rec, "vm_activity_at") == NULL ||
		    strcmp(lc_str(rec, "vm_activity_at"), act) < 0))
			lc_warnx("%s: the VM's own idle clock was not reset: it "
			    "may delete itself as idle unless lc-watch reaches "
			    "it first (cron runs it every minute)", name);
		free(want);
		free(act);
	}
	jv_free(rec);
	lc_ledger_close(&l);
}

static int
verb_extend(int argc, char **argv)
{
	char *args[8] = { "lc-sessions", "extend", NULL }, *name, *before;
	struct vargs a;
	int n = 3, rc;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	args[2] = name = pick_name(&a, 1);
	if (a.opt['b'] != NULL) {
		args[n++] = "--by";
		args[n++] = (char *)a.opt['b'];
	}
	if (a.opt['d'] != NULL) {
		args[n++] = "--deadline";
		args[n++] = (char *)a.opt['d'];
	}
	before = deadline_of(name);
	rc = spawn_render(args, a.opt['j'] != NULL);
	if (rc == 0)
		push_guard(name, before);
	free(before);
	free(name);
	return rc;
}

static int
verb_down(int argc, char **argv)
{
	char *args[] = { "lc-destroy", NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	args[1] = pick_name(&a, 1);
	run_rendered(args, a.opt['j'] != NULL);
}

static int
verb_cleanup(int argc, char **argv)
{
	char *clean[] = { "lc-sessions", "cleanup", NULL };
	char *recon[] = { "lc-sessions", "reconcile", NULL };
	struct vargs a;
	int x, y;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	x = spawn_render(clean, a.opt['j'] != NULL);
	y = spawn_render(recon, a.opt['j'] != NULL);
	return x != 0 ? x : y;
}

/*
 * coder cost: what the sessions cost (lc-sessions cost), then, with a
 * token, the cache volumes that bill each month whether a VM runs or not.
 */
static int
verb_cost(int argc, char **argv)
{
	char *cost[] = { "lc-sessions", "cost", NULL, NULL, NULL };
	char *cache[] = { "lc-sessions", "cache", NULL };
	struct vargs a;
	int rc;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	if (a.opt['s'] != NULL) {
		cost[2] = "--since";
		cost[3] = (char *)a.opt['s'];
	}
	rc = spawn_render(cost, a.opt['j'] != NULL);
	if (rc == 0 && have_token()) {
		fflush(stdout);
		rc = spawn_render(cache, a.opt['j'] != NULL);
	}
	return rc;
}

/* coder cache [ls | rm label ... | rm -a]: lc-sessions cache. */
static int
verb_cache(int argc, char **argv)
{
	char **args;
	struct vargs a;
	int i, n = 0, rc;

	parse_args(argc, argv, 0, &a);
	args = lc_xmalloc((size_t)(a.nops + 5) * sizeof(*args));
	args[n++] = "lc-sessions";
	args[n++] = "cache";
	if (a.opt['a'] != NULL)
		args[n++] = "-a";
	for (i = 0; i < a.nops; i++)
		args[n++] = a.ops[i];
	args[n] = NULL;
	rc = spawn_render(args, a.opt['j'] != NULL);
	free(args);
	return rc;
}

static int
verb_presets(int argc, char **argv)
{
	char *args[] = { "lc-cloudinit", "--list-presets",
	    isatty(STDOUT_FILENO) ? "--table" : NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	run_tool(args);
}

/* coder regions, coder types: what the account can buy; lc-account. */
static int
verb_account(int argc, char **argv)
{
	char *args[] = { "lc-account", argv[0],
	    isatty(STDOUT_FILENO) ? "--table" : NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	run_tool(args);
}

static int
verb_check(int argc, char **argv)
{
	char *args[] = { "lc-gpuprobe", NULL,
	    isatty(STDOUT_FILENO) ? "--table" : NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	args[1] = pick_name(&a, 1);
	run_tool(args);
}

/* coder ssh [name] [command ...]: the options end at the first word. */
static int
verb_ssh(int argc, char **argv)
{
	const char *shell[] = { "lc-ssh", "--interactive", NULL, NULL };
	const char *cmd[] = { "lc-ssh", NULL, "--", NULL };
	struct vargs a;
	char *name;

	parse_args(argc, argv, ARGS_STOP, &a);
	name = pick_name(&a, 0);
	if (a.nops > 0 && strcmp(a.ops[0], "--") == 0) {
		a.ops++;
		a.nops--;
	}
	if (a.nops == 0) {
		shell[2] = name;
		run_tool(build(shell, 0, NULL));
	}
	cmd[1] = name;
	run_tool(build(cmd, a.nops, a.ops));
}

static int
verb_exec(int argc, char **argv)
{
	const char *pre[] = { "lc-ssh", NULL, "--", NULL };
	struct vargs a;

	parse_args(argc, argv, ARGS_DASH, &a);
	max_ops(&a, 1);
	if (a.nafter == 0)
		lc_usage(vusage(), "exec needs a command after --");
	pre[1] = pick_name(&a, 1);
	run_tool(build(pre, a.nafter, a.after));
}

static int
verb_logs(int argc, char **argv)
{
	char *args[] = { "lc-ssh", "--logs", NULL, NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	args[2] = pick_name(&a, 1);
	if (a.opt['f'] != NULL)
		args[3] = "--follow";
	run_tool(args);
}

/* coder tunnel: lc-ssh's, which picks the port (or takes -p), records
 * it and points the session's env file, so ./.aider-env, at it. */
static int
verb_tunnel(int argc, char **argv)
{
	char *args[] = { "lc-ssh", "--tunnel", NULL, NULL, NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	args[2] = pick_name(&a, 1);
	if (port_arg(a.opt['p']) != NULL) {
		args[3] = "--port";
		args[4] = (char *)a.opt['p'];
	}
	run_tool(args);
}

static int
verb_heal(int argc, char **argv)
{
	char *args[] = { "lc-heal", NULL, NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	args[1] = pick_name(&a, 1);
	run_rendered(args, a.opt['j'] != NULL);
}

/*
 * The children of the pipeline under way, for on_signal to pass SIGTERM
 * and SIGHUP on to: sent to coder alone, they would leave the tools
 * running. -1 marks one already waited for (its pid may be reused).
 */
static volatile pid_t kids[8];
static volatile sig_atomic_t nkids;
static volatile sig_atomic_t interrupted;	/* the signal, or 0 */

static void
forward(int sig)
{
	int i;

	for (i = 0; i < nkids; i++)
		if (kids[i] > 0)
			kill(kids[i], sig);
}

/*
 * Run argv lists as one pipeline (each stdout into the next stdin), the
 * last writing to our stdout. Returns the first non-zero status, as a
 * shell with pipefail would, or 128+n for a child killed by signal n;
 * each one's status in st[] when st is not NULL.
 */
static int
pipeline(char **cmds[], int n, int st[])
{
	pid_t pids[8];
	int in = -1, i, status, rc = 0;

	for (i = 0; i < n; i++) {
		int fds[2] = { -1, -1 };

		if (i < n - 1 && pipe(fds) == -1)
			lc_fatal("pipe: %s", strerror(errno));
		if ((pids[i] = fork()) == -1)
			lc_fatal("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			signal(SIGINT, SIG_DFL);
			nkids = 0;
			if (in != -1) {
				dup2(in, STDIN_FILENO);
				close(in);
			}
			if (fds[1] != -1) {
				dup2(fds[1], STDOUT_FILENO);
				close(fds[0]);
				close(fds[1]);
			}
			run_tool(cmds[i]);
		}
		kids[i] = pids[i];
		nkids = i + 1;
		if (in != -1)
			close(in);
		if (fds[1] != -1)
			close(fds[1]);
		in = fds[0];
	}
	/* A signal that came while the later ones were forked. */
	if (interrupted == SIGTERM || interrupted == SIGHUP)
		forward(interrupted);
	for (i = 0; i < n; i++) {
		siginfo_t si;
		int r;

		/* Mark it done before it is reaped, so that on_signal never
		 * kills a pid reused by another process. */
		while (waitid(P_PID, (id_t)pids[i], &si,
		    WEXITED | WNOWAIT) == -1)
			if (errno != EINTR)
				lc_fatal("waitid: %s", strerror(errno));
		kids[i] = -1;
		while (waitpid(pids[i], &status, 0) == -1)
			if (errno != EINTR)
				lc_fatal("waitpid: %s", strerror(errno));
		r = WIFSIGNALED(status) ? 128 + WTERMSIG(status) :
		    WEXITSTATUS(status);
		if (st != NULL)
			st[i] = r;
		if (rc == 0)
			rc = r;
	}
	nkids = 0;
	return rc;
}

/*
 * coder up's handler for SIGINT, SIGTERM and SIGHUP: note the first, and
 * pass SIGTERM and SIGHUP on to the tools (Ctrl-C reaches them from the
 * terminal: same process group).
 */
static void
on_signal(int sig)
{
	int saved = errno;

	if (interrupted == 0)
		interrupted = sig;
	if (sig != SIGINT)
		forward(sig);
	errno = saved;
}

/* Ask on the terminal; the default when there is none, or on Enter. */
static int
ask_yes(const char *question, int def)
{
	char line[16];
	FILE *tty = fopen("/dev/tty", "r+");
	int yes = def;

	if (tty == NULL)
		return def;
	fprintf(tty, "%s [%s] ", question, def ? "Y/n" : "y/N");
	fflush(tty);
	if (fgets(line, sizeof(line), tty) != NULL) {
		if (line[0] == 'y' || line[0] == 'Y')
			yes = 1;
		else if (line[0] == 'n' || line[0] == 'N')
			yes = 0;
	}
	fclose(tty);
	return yes;
}

static int
have_token(void)
{
	struct lc_config *cfg;
	jv err = jv_invalid();
	char *tok = NULL;
	int ok;

	if ((cfg = lc_config_load(&err)) == NULL) 
		lc_fatal_err(err);
	ok = lc_config_token(cfg, &tok, NULL, &err) == 0;
	if (!ok)
		jv_free(err);
	free(tok);
	lc_config_free(cfg);
	return ok;
}

/* Is the cron line that runs lc-watch installed? (lc-watch knows.) */
static int
watch_installed(void)
{
	char buf[4096];
	char *argv[] = { "lc-watch", "--cron-status", "--quiet", NULL };
	int fds[2], st, devnull;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	if (pipe(fds) == -1 || (pid = fork()) == -1)
		return 0;
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		if ((devnull = open("/dev/null", O_WRONLY)) != -1)
			dup2(devnull, STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		run_tool(argv);
	}
	close(fds[1]);
	while (n < sizeof(buf) - 1 &&
	    (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fds[0]);
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
	return strstr(buf, "\"installed\":true") != NULL;
}

/*
 * coder up stopped by signal sig: never leave a half-made VM untracked.
 * A ready session stays (lc-watch guards it). Ctrl-C asks before the
 * delete; SIGTERM and SIGHUP (no one to ask) delete. Returns 128+sig, or
 * lc-destroy's status when the delete failed.
 */
static int
up_interrupted(const char *name, int sig)
{
	char *adopt[] = { "lc-sessions", "reconcile", "--adopt", "--quiet",
	    NULL };
	char *destroy[] = { "lc-destroy", (char *)name, NULL };

	if (session_ready(name)) {
		lc_warnx("%s: interrupted; the session is ready and stays: "
		    "'coder down %s' stops paying", name, name);
		return 128 + sig;
	}
	lc_warnx("%s: interrupted (%s)", name, sig == SIGINT ? "Ctrl-C" :
	    sig == SIGHUP ? "hang-up" : "terminated");
	/* A hang-up (the terminal closed, perhaps the very signal that
	 * brought us here) must not stop the clean-up: the tools below
	 * inherit this. */
	signal(SIGHUP, SIG_IGN);
	/* A create cut off between the API's answer and the ledger write
	 * left a tagged VM the ledger lacks: adopt it first. */
	if (spawn(adopt) != 0)
		lc_warnx("%s: could not check for an untracked VM: run "
		    "'lc-sessions reconcile' and look", name);
	if (!session_exists(name)) {
		lc_warnx("%s: no VM was created", name);
		return 128 + sig;
	}
	if (sig != SIGINT ||
	    ask_yes("Destroy the half-made VM (it bills by the hour)?", 1)) {
		int rc = spawn(destroy);

		if (rc != 0)
			lc_warnx("%s: destroy failed: run 'coder down %s' "
			    "again, or delete lc-%s in Cloud Manager", name,
			    name, name);
		return rc != 0 ? rc : 128 + sig;
	}
	lc_warnx("%s: kept; it bills until 'coder down %s'", name, name);
	return 128 + sig;
}

/*
 * A plan needs an SSH public key to show the cloud-config. Without the
 * user's, a throwaway one in a temporary directory stands in (said
 * loudly); returns that directory (malloc'd) or NULL.
 */
static char *
plan_key(void)
{
	struct lc_config *cfg = load_config();
	char *key = lc_config_path(cfg, "LC_SSH_KEY"), *pub, *dir, *tk;
	const char *td = getenv("TMPDIR");
	char tmpl[PATH_MAX];
	size_t len;

	snprintf(tmpl, sizeof(tmpl), "%s/lc-plan-XXXXXX", td != NULL &&
	    *td == '/' && strlen(td) < PATH_MAX - 20 ? td : "/tmp");
	lc_config_free(cfg);
	if (key == NULL)
		return NULL;
	len = strlen(key) + 5;
	pub = lc_xmalloc(len);
	snprintf(pub, len, "%s.pub", key);
	if (access(pub, R_OK) == 0 || (dir = mkdtemp(tmpl)) == NULL) {
		free(pub);
		free(key);
		return NULL;
	}
	tk = lc_path_join(dir, "key");
	{
		char *kg[] = { "ssh-keygen", "-q", "-t", "ed25519", "-N", "",
		    "-C", "plan-placeholder", "-f", tk, NULL };

		if (spawn(kg) == 0) {
			setenv("LC_SSH_KEY", tk, 1);
			lc_warnx("no SSH key %s yet: this plan shows a "
			    "throwaway key in its place ('coder wizard' or "
			    "'ssh-keygen -t ed25519' makes yours)", pub);
		}
	}
	free(tk);
	free(pub);
	free(key);
	return lc_xstrdup(dir);
}

/* The config value of key, or def. */
static const char *
config_or(struct lc_config *cfg, const char *key, const char *def)
{
	const char *v = cfg != NULL ? lc_config_get(cfg, key) : NULL;

	return v != NULL && *v != '\0' ? v : def;
}

/* One plan (borrowed) as a short summary, the cost last. */
static void
plan_lines(jv r, struct lc_config *cfg)
{
	jv e = lc_get(r, "expected"), err = lc_get(r, "error"), ws, cv;
	const char *s;

	if (jv_get_kind(err) == JV_KIND_OBJECT) {
		printf("%s: no plan: %s\n", lc_subject(r),
		    lc_str(err, "message") ? lc_str(err, "message") : "failed");
		jv_free(e);
		jv_free(err);
		return;
	}
	jv_free(err);
	printf("Plan for %s (nothing is created):\n", lc_subject(r));
	printf("  model     %s", lc_str(r, "model") ? lc_str(r, "model") :
	    "?");
	if ((s = lc_str(r, "preset")) != NULL)
		printf(" (preset %s", s);
	if ((s = lc_str(r, "served_model_name")) != NULL)
		printf("%sserved as \"%s\"", lc_str(r, "preset") ? ", " : " (",
		    s);
	printf("%s\n", lc_str(r, "preset") || lc_str(r,
	    "served_model_name") ? ")" : "");
	printf("  VM        %s: %.0f x %s, %.0f GiB of GPU memory, in %s "
	    "(%s)\n", lc_str(r, "type") ? lc_str(r, "type") : "?",
	    lc_num(r, "gpus", 0), lc_str(r, "gpu") ? lc_str(r, "gpu") : "GPU",
	    lc_num(r, "vram_gib", 0), lc_str(r, "region") ? lc_str(r,
	    "region") : "?", lc_str(r, "image") ? lc_str(r, "image") : "?");
	if (lc_num(r, "nodes", 1) > 1)
		printf("  nodes     %.0f VMs of that type on one VPC: %.0f GPUs, "
		    "%.0f GiB of GPU memory, $%.2f/hour in all (vLLM over Ray: "
		    "tensor parallel %.0f, pipeline parallel %.0f)\n",
		    lc_num(r, "nodes", 1), lc_num(r, "gpus_total", 0),
		    lc_num(r, "vram_gib_total", 0), lc_num(r,
		    "hourly_cost_usd", 0), lc_num(r, "gpus", 0), lc_num(r,
		    "nodes", 1));
	printf("  installs  the NVIDIA driver, Docker, the NVIDIA container "
	    "toolkit, vLLM %s\n", lc_str(r, "vllm_image") ? lc_str(r,
	    "vllm_image") : "");
	printf("  endpoint  %s, %s\n", lc_str(r, "endpoint") ? lc_str(r,
	    "endpoint") : "?", jv_get_kind(lc_get(r, "public")) ==
	    JV_KIND_TRUE ? "port 8000 open to this machine's address" :
	    "through an SSH tunnel ('coder tunnel', 'coder aider')");
	printf("  limits    idle %s, deadline %s, budget %s%s\n",
	    config_or(cfg, "LC_IDLE_TIMEOUT", "30m"), config_or(cfg,
	    "LC_DEADLINE", "8h"), *config_or(cfg, "LC_BUDGET_USD", "") ?
	    "$" : "", config_or(cfg, "LC_BUDGET_USD", "none"));
	if (lc_num(e, "tokens_per_s", 0) > 0)
		printf("  expects   about %.0f tokens/s, a first token in about "
		    "%.0f ms\n", lc_num(e, "tokens_per_s", 0),
		    lc_num(e, "ttft_ms", 0));
	ws = lc_get(r, "warnings");
	if (jv_get_kind(ws) == JV_KIND_ARRAY)
		jv_array_foreach(ws, k, w) {
			(void)k;
			if (jv_get_kind(w) == JV_KIND_STRING)
				printf("  warning   %s\n", jv_string_value(w));
			jv_free(w);
		}
	jv_free(ws);
	cv = lc_get(r, "cache_volume");
	if (jv_get_kind(cv) == JV_KIND_OBJECT) {
		s = lc_str(cv, "state") ? lc_str(cv, "state") : "";
		if (strcmp(s, "none") == 0)
			printf("  cache     none: %s\n", lc_str(cv, "reason") ?
			    lc_str(cv, "reason") : "?");
		else if (strcmp(s, "busy") == 0)
			printf("  cache     none: %s is attached to another VM "
			    "(--cache-new makes a second)\n", lc_str(cv,
			    "label"));
		else
			printf("  cache     %s, %.0f GB, %s: $%.2f/month until "
			    "'coder cache rm'\n", lc_str(cv, "label"),
			    lc_num(cv, "size_gb", 0), strcmp(s, "new") == 0 ?
			    "made now" : "kept from an earlier session",
			    lc_num(cv, "monthly_cost_usd", 0));
	}
	jv_free(cv);
	printf("  cost      $%.2f/hour, $%.2f/day%s\n",
	    lc_num(r, "hourly_cost_usd", 0), lc_num(r, "daily_cost_usd", 0),
	    lc_str(r, "price_source") && strcmp(lc_str(r, "price_source"),
	    "estimate") == 0 ? " (the preset's estimate: the API was not "
	    "reached)" : "");
	jv_free(e);
}

/*
 * The plan on a terminal: the pipeline's records captured, each shown as
 * a short summary, the cost last; the full spec and the cloud-config are
 * for --json and --cloud-config.
 */
static int
plan_summary(char **cmds[])
{
	FILE *tmp = tmpfile();
	struct lc_config *cfg;
	jv err = jv_invalid();
	char *line = NULL;
	size_t cap = 0;
	int save, rc;

	if (tmp == NULL)
		return pipeline(cmds, 2, NULL);
	fflush(stdout);
	save = dup(STDOUT_FILENO);
	dup2(fileno(tmp), STDOUT_FILENO);
	rc = pipeline(cmds, 2, NULL);
	fflush(stdout);
	dup2(save, STDOUT_FILENO);
	close(save);
	if ((cfg = lc_config_load(&err)) == NULL)
		jv_free(err);
	rewind(tmp);
	while (getline(&line, &cap, tmp) > 0) {
		jv r = jv_parse(line);

		if (jv_get_kind(r) == JV_KIND_OBJECT)
			plan_lines(r, cfg);
		jv_free(r);
	}
	printf("The full spec: 'coder plan --json'; the cloud-config: "
	    "'coder plan --cloud-config'.\n");
	free(line);
	fclose(tmp);
	lc_config_free(cfg);
	return rc;
}

/*
 * coder up: spec | lc-cloudinit | lc-create --wait | lc-heal --if-failed.
 * Without a token, or with -n, the plan: spec and cost, the cloud-config.
 * coder plan is coder up -n.
 */
static int
verb_up(int argc, char **argv)
{
	/* up's options that lc-cloudinit takes, by letter */
	static const struct { int letter; char *flag; } spec_opts[] = {
		{ 'p', "--preset" }, { 'm', "--model" }, { 'T', "--type" },
		{ 'g', "--region" }, { 'i', "--image" }, { 'V', "--volume" },
		{ 'G', "--nodes" },
		{ 0, NULL }
	};
	char **spec, **create = NULL, **heal = NULL, **raw, **cmds[3];
	const char *name = "dev", *allow, *cf[5] = { NULL };
	int i, n = 0, pub, dry, aider, rc, st[3];
	int json, ccfg, world, nc;
	char *flags[24];
	struct sigaction sa, old;
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	if (a.nops == 1)
		name = a.ops[0];
	json = a.opt['j'] != NULL;
	ccfg = a.opt['C'] != NULL;
	dry = a.opt['n'] != NULL || json || ccfg ||
	    strcmp(argv[0], "plan") == 0;
	aider = a.opt['l'] != NULL;
	pub = a.opt['P'] != NULL;
	allow = a.opt['a'];
	world = a.opt['W'] != NULL;	/* lc-create's: --allow wider than /16 */
	for (i = 0; spec_opts[i].letter != 0; i++)
		if (a.opt[spec_opts[i].letter] != NULL) {
			flags[n++] = spec_opts[i].flag;
			flags[n++] = (char *)a.opt[spec_opts[i].letter];
		}
	if (a.opt['z'] != NULL) {
		flags[n++] = "--cache-size";
		flags[n++] = (char *)a.opt['z'];
	}
	if (a.opt['k'] != NULL)
		flags[n++] = "--cache";
	if (a.opt['K'] != NULL)
		flags[n++] = "--no-cache";
	if (a.opt['E'] != NULL)
		flags[n++] = "--cache-new";
	if (a.opt['U'] != NULL)
		flags[n++] = "--image-unchecked";	/* lc-cloudinit's */
	if (pub)
		flags[n++] = "--public";
	flags[n] = NULL;
	/* lc-create opens port 8000 to --allow's address, else to the one
	 * the VM sees this machine connect from. */
	if ((allow != NULL || world) && !pub)
		lc_usage(vusage(), "%s goes with --public", allow != NULL ?
		    "--allow" : "--allow-world");
	nc = 0;
	if (pub) {
		cf[nc++] = "--public";
		if (world)
			cf[nc++] = "--allow-world";
		if (allow != NULL) {
			cf[nc++] = "--allow";
			cf[nc++] = allow;
		}
	}
	{
		const char *pre[] = { "lc-cloudinit", "--name", name, NULL };
		const char *rawp[] = { "lc-cloudinit", "--raw", "--name", name,
		    NULL };
		const char *cr_dry[] = { "lc-create", "--dry-run", cf[0], cf[1],
		    cf[2], cf[3], NULL };
		const char *cr[] = { "lc-create", "--wait", cf[0], cf[1], cf[2],
		    cf[3], NULL };
		const char *he[] = { "lc-heal", "--if-failed", NULL };

		spec = build(pre, n, flags);
		raw = build(rawp, n, flags);
		if (dry || !have_token()) {
			char *tmp = NULL;

			if (!dry)
				lc_warnx("no Linode token: printing the plan "
				    "only ('coder wizard' sets one up)");
			tmp = plan_key();
			create = build(cr_dry, 0, NULL);
			cmds[0] = spec;
			cmds[1] = create;
			if (ccfg && !json)
				rc = spawn(raw);
			else if (!json && !ccfg && isatty(STDOUT_FILENO))
				rc = plan_summary(cmds);
			else {
				rc = pipeline(cmds, 2, NULL);
				if (rc == 0 && !json) {
					fflush(stdout);
					printf("# the cloud-config for %s:\n", name);
					fflush(stdout);
					rc = spawn(raw);
				}
			}
			if (tmp != NULL) {
				char *rm[] = { "rm", "-rf", tmp, NULL };

				spawn(rm);
				free(tmp);
			}
			goto out;
		}
		create = build(cr, 0, NULL);
		heal = build(he, 0, NULL);
	}
	if (!watch_installed())
		lc_warnx("warning: no cron job runs lc-watch: nothing deletes "
		    "this VM when it sits idle while your laptop sleeps ('coder "
		    "watch --install' adds one)");
	/* coder survives SIGINT, SIGTERM and SIGHUP to clean up (a
	 * hang-up ignored by whoever started us, as under nohup, stays so). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, NULL, &old);
	if (old.sa_handler != SIG_IGN)
		sigaction(SIGHUP, &sa, NULL);
	cmds[0] = spec;
	cmds[1] = create;
	cmds[2] = heal;
	pipeline(cmds, 3, st);
	if (interrupted) {
		rc = up_interrupted(name, interrupted);
		goto out;
	}
	/* A failed record (exit 1) goes on to lc-heal, which may fix it: then
	 * its status is the answer. A fatal stop (>= 2) before it is not. */
	rc = st[0] >= 2 ? st[0] : st[1] >= 2 ? st[1] : st[2];
	if (rc != 0) {
		if (session_has_vm(name))
			lc_warnx("%s: not ready (exit %d): the session is kept "
			    "so you can look: 'coder logs %s', 'coder heal %s', "
			    "or 'coder down %s' to stop paying", name, rc, name,
			    name, name);
		else
			lc_warnx("%s: stopped before any VM was made (exit %d): "
			    "nothing bills", name, rc);
		goto out;
	}
	/* The new session becomes current (./.aider-env too), quietly. */
	{
		char *use[] = { "lc-sessions", "use", (char *)name, NULL };

		if (spawn_quiet(use) != 0)
			lc_warnx("%s: could not make it the current session: "
			    "'coder use %s' does", name, name);
	}
	fprintf(stderr, "\n%s is ready. Next:\n  coder aider %s      # aider "
	    "on your model\n  coder tunnel %s     # the OpenAI API on this "
	    "machine\n  coder down %s       # stop paying\n", name, name, name,
	    name);
	/* Stopped once ready: the session stays, and so does the status. */
	if (interrupted) {
		rc = up_interrupted(name, interrupted);
		goto out;
	}
	if (aider) {
		char *ad[] = { "coder", "aider", (char *)name, NULL };

		run_tool(ad);
	}
	rc = 0;
out:
	free(spec);
	free(raw);
	free(create);
	free(heal);
	return rc;
}

/* The session's record from the ledger, or exit with its error. */
static jv
load_session(struct lc_ledger *l, const char *name)
{
	jv err = jv_invalid(), rec;

	if (lc_ledger_open(l, &err) == -1)
		lc_fatal_err(err);
	rec = lc_ledger_get(l, name);
	if (!jv_is_valid(rec))
		lc_fatal_err(rec);
	return rec;
}

static struct lc_config *
load_config(void)
{
	jv err = jv_invalid();
	struct lc_config *cfg = lc_config_load(&err);

	if (cfg == NULL)
		lc_fatal_err(err);
	return cfg;
}

/* Is prog on PATH? */
static int
on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;
	int found = 0;

	if (path == NULL)
		return 0;
	copy = lc_xstrdup(path);
	for (dir = strtok_r(copy, ":", &save); dir != NULL && !found;
	    dir = strtok_r(NULL, ":", &save)) {
		char *p = lc_path_join(*dir ? dir : ".", prog);

		found = access(p, X_OK) == 0;
		free(p);
	}
	free(copy);
	return found;
}

/*
 * Start `lc-ssh --tunnel [-p port] name` and read the OPENAI_API_BASE line
 * it prints once the port listens (lc-ssh picks the port when port is
 * NULL, and points the session's env file at it). Returns its pid; *base
 * malloc'd. A port lc-ssh refused (exit 1: in use) ends coder with 1, its
 * one line said.
 */
static pid_t
start_tunnel(const char *name, const char *port, char **base)
{
	char line[256];
	char *argv[] = { "lc-ssh", "--tunnel", (char *)name, NULL, NULL,
	    NULL };
	int fds[2];
	pid_t pid;
	FILE *f;

	if (port != NULL) {
		argv[2] = "--port";
		argv[3] = (char *)port;
		argv[4] = (char *)name;
	}
	if (pipe(fds) == -1 || (pid = fork()) == -1)
		lc_fatal("cannot start the tunnel: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		run_tool(argv);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	*base = NULL;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "OPENAI_API_BASE=", 16) == 0) {
			line[strcspn(line, "\r\n")] = '\0';
			*base = lc_xstrdup(line + 16);
			break;
		}
	}
	if (*base == NULL) {
		int st = 0;

		if (f != NULL)
			fclose(f);
		while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
			;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
			exit(1);
		lc_fatal("%s: the tunnel did not open ('coder tunnel %s' says "
		    "why)", name, name);
	}
	/* Keep the pipe open: lc-ssh may print more; closing could SIGPIPE
	 * it. The stream is closed when coder exits. */
	return pid;
}

static void
stop_child(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
}

/*
 * max_model_len of the served model from vLLM's /v1/models, or -1: asked
 * on the VM through lc-ssh (curl there, on vLLM's loopback port), the API
 * key from the session's env file on curl's stdin, never in argv.
 */
static long
served_context(const char *name, jv rec, const char *envpath,
    const char *served)
{
	char url[64], *text = NULL, *argv[] = { "lc-ssh", "-q", "-t", "60",
	    (char *)name, "--", "curl", "-fsS", "-m", "15", "--retry", "2",
	    url, "-H", "@-", NULL };
	struct lc_buf out = LC_BUF_INIT, errb = LC_BUF_INIT, hdr = LC_BUF_INIT;
	jv vars = jv_invalid(), err = jv_invalid(), v, data;
	long len = -1;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/models",
	    lc_vllm_port(rec));
	if (lc_read_file(envpath, &text, NULL) == 0 &&
	    lc_config_parse_env(envpath, text, &vars, &err) == 0 &&
	    lc_str(vars, "OPENAI_API_KEY") != NULL)
		lc_buf_printf(&hdr, "Authorization: Bearer %s\n",
		    lc_str(vars, "OPENAI_API_KEY"));
	if (hdr.data == NULL)
		argv[13] = NULL;	/* no key: no header */
	if (text != NULL)
		memset(text, 0, strlen(text));
	free(text);
	jv_free(vars);
	jv_free(err);
	if (capture(argv, hdr.data, NULL, &out, &errb) == 0) {
		v = jv_parse(out.data ? out.data : "");
		data = lc_get(v, "data");
		if (jv_get_kind(data) == JV_KIND_ARRAY) {
			jv_array_foreach(data, i, m) {
				if (lc_str(m, "id") != NULL &&
				    strcmp(lc_str(m, "id"), served) == 0)
					len = (long)lc_num(m, "max_model_len",
					    -1);
				jv_free(m);
			}
		}
		jv_free(data);
		jv_free(v);
	}
	if (hdr.data != NULL)
		memset(hdr.data, 0, hdr.len);
	lc_buf_free(&hdr);
	lc_buf_free(&out);
	lc_buf_free(&errb);
	return len;
}

/* .aider.model.metadata.json: our model's entry, others kept. */
static void
write_aider_metadata(const char *served, long ctx)
{
	const char *file = ".aider.model.metadata.json";
	char *text = NULL, key[160];
	jv all = jv_object(), entry;

	if (lc_read_file(file, &text, NULL) == 0) {
		jv old = jv_parse(text);

		if (jv_get_kind(old) == JV_KIND_OBJECT) {
			jv_free(all);
			all = old;
		} else {
			lc_warnx("%s is not a JSON object: replacing it", file);
			jv_free(old);
		}
		free(text);
	}
	snprintf(key, sizeof(key), "openai/%s", served);
	entry = jv_object_set(jv_object(), jv_string("max_tokens"),
	    jv_number(ctx));
	entry = jv_object_set(entry, jv_string("max_input_tokens"),
	    jv_number(ctx));
	entry = jv_object_set(entry, jv_string("max_output_tokens"),
	    jv_number(ctx < 8192 ? ctx : 8192));
	entry = jv_object_set(entry, jv_string("input_cost_per_token"),
	    jv_number(0));
	entry = jv_object_set(entry, jv_string("output_cost_per_token"),
	    jv_number(0));
	entry = jv_object_set(entry, jv_string("litellm_provider"),
	    jv_string("openai"));
	entry = jv_object_set(entry, jv_string("mode"), jv_string("chat"));
	all = jv_object_set(all, jv_string(key), entry);
	text = NULL;
	{
		jv s = jv_dump_string(all, JV_PRINT_INDENT_FLAGS(2));
		const char *t = jv_string_value(s);

		if (lc_write_file_atomic(file, t, strlen(t), 0644) == -1)
			lc_warnx("cannot write %s: %s", file, strerror(errno));
		jv_free(s);
	}
}

/*
 * coder aider: a tunnel (unless public), the model's context for aider,
 * aider itself with the session's env file; the tunnel closed after.
 */
static int
verb_aider(int argc, char **argv)
{
	struct vargs a;
	const char *port;
	int i, rc, n = 0;
	char *name, *base = NULL;
	char *envpath, model[160], **args;
	const char *served;
	struct lc_ledger l;
	pid_t tunnel = -1;
	long ctx;
	jv rec;

	parse_args(argc, argv, ARGS_DASH, &a);
	max_ops(&a, 1);
	port = port_arg(a.opt['p']);
	name = pick_name(&a, 1);
	if (!on_path("aider")) {
		lc_warnx("aider is not installed: install it with 'python3 -m "
		    "pip install aider-install && aider-install' (or 'pipx "
		    "install aider-chat'), then run 'coder aider %s' again",
		    name);
		free(name);
		return 127;
	}
	rec = load_session(&l, name);
	envpath = lc_session_path(&l, name, LC_SESSION_ENV);
	if (access(envpath, R_OK) == -1)
		lc_fatal("%s: no env file %s: the session never became ready "
		    "('lc-create %s --wait' finishes it, 'coder status %s' "
		    "shows it)", name, envpath, name, name);
	served = lc_str(rec, "served_model_name");
	snprintf(model, sizeof(model), "openai/%s", served ? served : "coder");
	if (port == NULL && lc_bool(rec, "public") &&
	    lc_str(rec, "ipv4") != NULL) {
		struct lc_buf b = LC_BUF_INIT;

		lc_buf_printf(&b, "http://%s:%d/v1", lc_str(rec, "ipv4"),
		    lc_vllm_port(rec));
		base = b.data;
	} else
		tunnel = start_tunnel(name, port, &base);
	ctx = served_context(name, rec, envpath, served ? served : "coder");
	if (ctx > 0)
		write_aider_metadata(served ? served : "coder", ctx);
	else
		lc_warnx("%s: /v1/models gave no context length: aider may "
		    "warn about an unknown model", name);
	/* aider --env-file FILE --model M --openai-api-base URL [args] */
	args = lc_xmalloc(sizeof(*args) * (size_t)(a.nafter + 8));
	args[n++] = "aider";
	args[n++] = "--env-file";
	args[n++] = envpath;
	args[n++] = "--model";
	args[n++] = model;
	args[n++] = "--openai-api-base";
	args[n++] = base;
	for (i = 0; i < a.nafter; i++)
		args[n++] = a.after[i];
	args[n] = NULL;
	signal(SIGINT, SIG_IGN);	/* aider takes Ctrl-C itself */
	{
		pid_t pid = fork();
		int st;

		if (pid == 0) {
			signal(SIGINT, SIG_DFL);
			run_tool(args);
		}
		while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
			;
		rc = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
	}
	if (tunnel != -1)
		stop_child(tunnel);
	jv_free(rec);
	free(args);
	free(base);
	free(envpath);
	free(name);
	lc_ledger_close(&l);
	return rc;
}

/*
 * The spec for the new model on the session's VM, from `lc-cloudinit -R`
 * (presets, then the VM's type and name, then the new preset or model; the
 * tensor parallel size worked out again). Borrows rec. Returns owned: the
 * spec, or an error value; a tool that could not run ends coder.
 */
static jv
switch_spec(jv rec, const char *name, const char *preset, const char *model)
{
	char *argv[] = { "lc-cloudinit", "-R", NULL };
	struct lc_buf out = LC_BUF_INIT, errb = LC_BUF_INIT;
	jv over, spec;
	int st;

	over = jv_object_set(jv_object(), jv_string("preset"), preset ?
	    jv_string(preset) : lc_str(rec, "preset") ? lc_get(rec, "preset") :
	    jv_string("qwen-coder-7b"));
	over = jv_object_set(over, jv_string("type"), lc_get(rec, "type"));
	over = jv_object_set(over, jv_string("name"), jv_string(name));
	over = jv_object_set(over, jv_string("vllm"), jv_object_set(
	    jv_object(), jv_string("tensor_parallel_size"), jv_null()));
	if (model != NULL)
		over = jv_object_set(over, jv_string("model"),
		    jv_string(model));
	over = jv_dump_string(over, 0);
	st = capture(argv, jv_string_value(over), NULL, &out, &errb);
	jv_free(over);
	spec = first_record(&out);
	if (jv_get_kind(spec) != JV_KIND_OBJECT) {
		relay("lc-cloudinit", &errb);
		exit(st != 0 ? st : LC_EXIT_FATAL);
	}
	if (jv_object_has(jv_copy(spec), jv_string("error"))) {
		jv e = error_of(spec);

		jv_free(spec);
		spec = e;
	}
	lc_buf_free(&out);
	lc_buf_free(&errb);
	return spec;
}

/*
 * coder switch-model: check the new model fits the VM's GPUs
 * (lc-cloudinit -R), then `lc-heal --apply`: vllm.env rewritten over SSH,
 * a restart, /health and a real completion waited for. A model that does
 * not come up goes to `lc-heal --if-failed`.
 */
static int
verb_switch_model(int argc, char **argv)
{
	int st;
	char *name, *apply[] = { "lc-heal", "--apply", NULL };
	const char *preset, *model;
	struct vargs a;
	struct lc_buf out = LC_BUF_INIT;
	struct lc_config *cfg;
	struct lc_ledger l;
	jv rec, spec, text;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	preset = a.opt['p'];
	model = a.opt['m'];
	if ((preset == NULL) == (model == NULL))
		lc_usage(vusage(), "give --preset or --model (one)");
	name = pick_name(&a, 1);
	cfg = load_config();
	rec = load_session(&l, name);
	lc_ledger_close(&l);
	lc_config_free(cfg);
	spec = switch_spec(rec, name, preset, model);
	if (!jv_is_valid(spec)) {
		emit_record(lc_attach_error(rec, spec));
		free(name);
		return lc_finish(NULL);
	}
	lc_info("%s: switching to %s", name, lc_str(spec, "model"));
	rec = jv_object_set(rec, jv_string("model"), lc_get(spec, "model"));
	rec = jv_object_set(rec, jv_string("served_model_name"),
	    lc_get(spec, "served_model_name"));
	rec = jv_object_set(rec, jv_string("vllm"), lc_get(spec, "vllm"));
	rec = jv_object_set(rec, jv_string("preset"), lc_get(spec, "preset"));
	/* A failed wait sets failed_stage; a failed push leaves it null. */
	rec = jv_object_set(rec, jv_string("failed_stage"), jv_null());
	jv_free(spec);
	text = jv_dump_string(rec, 0);
	st = capture(apply, jv_string_value(text), NULL, &out, NULL);
	jv_free(text);
	rec = first_record(&out);
	lc_buf_free(&out);
	if (jv_get_kind(rec) != JV_KIND_OBJECT) {
		free(name);
		return st != 0 ? st : LC_EXIT_FATAL;
	}
	if (jv_object_has(jv_copy(rec), jv_string("error")) &&
	    lc_str(rec, "failed_stage") != NULL) {
		char *heal[] = { "lc-heal", "--if-failed", name, NULL };

		lc_warnx("%s: the new model did not come up; trying lc-heal",
		    name);
		jv_free(rec);
		run_rendered(heal, 0);
	}
	emit_record(rec);
	free(name);
	return lc_finish(NULL);
}

/* coder watch: the cron guard (lc-watch does the work). */
static int
verb_watch(int argc, char **argv)
{
	char *args[] = { "lc-watch", "--cron-status", NULL };
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	if (a.opt['i'] != NULL && a.opt['u'] != NULL)
		lc_usage(vusage(), "--install or --uninstall, not both");
	if (a.opt['i'] != NULL)
		args[1] = "--install-cron";
	else if (a.opt['u'] != NULL)
		args[1] = "--uninstall-cron";
	run_rendered(args, 0);
}

/* One answer from the wizard's input: a line, or def on an empty line.
 * NULL at the end of input. Hidden (no echo) on a terminal if asked. */
static char *
ask(FILE *in, const char *question, const char *def, int hidden)
{
	char line[1024];
	int tty = isatty(fileno(in));

	fprintf(stderr, "%s%s%s%s: ", question, def ? " [" : "",
	    def ? def : "", def ? "]" : "");
	fflush(stderr);
	if (hidden && tty)
		(void)system("stty -echo 2>/dev/null");
	if (fgets(line, sizeof(line), in) == NULL) {
		if (hidden && tty)
			(void)system("stty echo 2>/dev/null");
		fputc('\n', stderr);
		return NULL;
	}
	if (hidden && tty) {
		(void)system("stty echo 2>/dev/null");
		fputc('\n', stderr);
	} else if (!tty)
		fputc('\n', stderr);
	line[strcspn(line, "\r\n")] = '\0';
	return lc_xstrdup(line[0] == '\0' && def != NULL ? def : line);
}

/* The question for key, naming where today's value comes from when it is
 * not built in; the answer as ask() gives it. */
static char *
ask_key(FILE *in, struct lc_config *cfg, const char *question,
    const char *key)
{
	const char *src = lc_config_source(cfg, key);
	char q[1024];

	if (src != NULL && strcmp(src, "default") != 0 &&
	    lc_config_get(cfg, key) != NULL)
		snprintf(q, sizeof(q), "%s (now from %s)", question, src);
	else
		snprintf(q, sizeof(q), "%s", question);
	return ask(in, q, lc_config_get(cfg, key), 0);
}

/*
 * `lc-account whoami` with this token. 1 with *user (malloc'd); 0 when
 * the API refused it; -1 when the API could not be reached (both said on
 * stderr).
 */
static int
check_token(const char *token, char **user)
{
	char *argv[] = { "lc-account", "whoami", NULL };
	struct lc_buf out = LC_BUF_INIT, errb = LC_BUF_INIT;
	jv prof, e;
	const char *code;
	int rc = 1;

	capture(argv, NULL, token, &out, &errb);
	prof = first_record(&out);
	e = lc_get(prof, "error");
	if (jv_get_kind(prof) != JV_KIND_OBJECT) {
		relay("lc-account", &errb);	/* it could not ask */
		rc = 0;
	} else if (jv_get_kind(e) != JV_KIND_OBJECT)
		*user = lc_xstrdup(lc_str(prof, "username") ?
		    lc_str(prof, "username") : "?");
	else {
		code = lc_str(e, "code") ? lc_str(e, "code") : "";
		if (strcmp(code, "http_transport") == 0 ||
		    strcmp(code, "timeout") == 0 ||
		    strcmp(code, "api_unavailable") == 0) {
			lc_warnx("warning: cannot check the token: %s: keeping "
			    "it unchecked", lc_str(e, "message"));
			rc = -1;
		} else {
			lc_warnx("the token was refused: %s",
			    lc_str(e, "message"));
			rc = 0;
		}
	}
	jv_free(e);
	jv_free(prof);
	lc_buf_free(&out);
	lc_buf_free(&errb);
	return rc;
}

/* Regions that offer GPU Linodes (`lc-account regions`), space-separated
 * (malloc'd), or NULL with a warning when the API cannot tell. */
static char *
gpu_regions(const char *token)
{
	char *argv[] = { "lc-account", "regions", NULL };
	struct lc_buf out = LC_BUF_INIT, errb = LC_BUF_INIT;
	struct lc_buf b = LC_BUF_INIT;
	jv list;

	capture(argv, NULL, token, &out, &errb);
	list = records_of(&out);
	jv_array_foreach(list, i, r) {
		jv e = lc_get(r, "error");

		if (jv_get_kind(e) == JV_KIND_OBJECT)
			lc_warnx("warning: cannot list the regions with GPUs: "
			    "%s", lc_str(e, "message"));
		else if (lc_str(r, "id") != NULL)
			lc_buf_printf(&b, "%s%s", b.len ? " " : "",
			    lc_str(r, "id"));
		jv_free(e);
		jv_free(r);
	}
	jv_free(list);
	lc_buf_free(&out);
	lc_buf_free(&errb);
	return b.data;
}

/* Is word one of the space-separated words in list? */
static int
has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p;

	for (p = list; n > 0 && (p = strstr(p, word)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' ||
		    p[n] == '\0'))
			return 1;
	return 0;
}

/* The region, checked against the GPU regions when the API could list
 * them; asked again until it is one. NULL at the end of input. */
static char *
ask_region(FILE *in, struct lc_config *cfg, const char *token)
{
	char *regions = gpu_regions(token), *a;

	if (regions != NULL && *regions != '\0')
		fprintf(stderr, "regions with GPUs: %s\n", regions);
	while ((a = ask_key(in, cfg, "Region", "LC_REGION")) != NULL) {
		if (regions == NULL || *regions == '\0') {
			lc_warnx("warning: region %s taken unchecked", a);
			break;
		}
		if (has_word(regions, a))
			break;
		lc_warnx("%s is not a region with GPU Linodes: give one of "
		    "%s ('coder regions' describes them)", a, regions);
		free(a);
	}
	free(regions);
	return a;
}

/* Whether list (borrowed) has a record named name. */
static int
has_name(jv list, const char *name)
{
	int found = 0;

	jv_array_foreach(list, i, e) {
		found |= lc_str(e, "name") != NULL &&
		    strcmp(lc_str(e, "name"), name) == 0;
		jv_free(e);
	}
	return found;
}

/* The preset, asked again until it is one `lc-cloudinit -L` lists (any,
 * when it cannot list them). NULL at the end. */
static char *
ask_preset(FILE *in, struct lc_config *cfg)
{
	char *argv[] = { "lc-cloudinit", "-L", NULL }, *a;
	struct lc_buf out = LC_BUF_INIT, errb = LC_BUF_INIT;
	int known = capture(argv, NULL, NULL, &out, &errb) == 0;
	jv list = records_of(&out);

	if (known) {
		jv_array_foreach(list, i, e) {
			fprintf(stderr, "  %-24s %-40s ~$%.2f/h\n",
			    lc_str(e, "name"), lc_str(e, "model") ?
			    lc_str(e, "model") : "", lc_num(e,
			    "hourly_usd_estimate", 0));
			jv_free(e);
		}
	}
	while ((a = ask_key(in, cfg, "Preset", "LC_PRESET")) != NULL) {
		if (!known || has_name(list, a))
			break;
		lc_warnx("no preset '%s' ('coder presets' lists them)", a);
		free(a);
	}
	jv_free(list);
	lc_buf_free(&out);
	lc_buf_free(&errb);
	return a;
}

/* A duration for key, asked again until it is one the configuration's
 * rules allow (more than 0; a deadline within LC_MAX_DEADLINE). */
static char *
ask_duration(FILE *in, struct lc_config *cfg, const char *key,
    const char *question)
{
	jv err = jv_invalid();
	char *a, *m;
	long secs;

	while ((a = ask_key(in, cfg, question, key)) != NULL) {
		if (lc_config_duration_rule(cfg, key, a, &secs, &err) == -1) {
			m = lc_error_message(err);
			lc_warnx("%s", m);
			free(m);
			jv_free(err);
			err = jv_invalid();
		} else if (secs > 0)
			break;
		else
			lc_warnx("%s=%s: give more than 0, e.g. 30m or 2h",
			    key, a);
		free(a);
	}
	return a;
}

/* The SSH key's path; offers to create the key when it is missing. NULL
 * at the end of input. */
static char *
ask_ssh_key(FILE *in, struct lc_config *cfg)
{
	char *a, *k, *pub, *yes;
	size_t len;

	if ((a = ask_key(in, cfg, "SSH private key", "LC_SSH_KEY")) == NULL)
		return NULL;
	k = lc_expand_home(a);
	len = strlen(k) + 5;
	pub = lc_xmalloc(len);
	snprintf(pub, len, "%s.pub", k);
	if (access(pub, R_OK) == -1) {
		if ((yes = ask(in, "No such key: create it now? (y/n)", "y",
		    0)) == NULL) {
			free(a);
			a = NULL;
		} else if (yes[0] == 'y' || yes[0] == 'Y') {
			char *kg[] = { "ssh-keygen", "-q", "-t", "ed25519",
			    "-N", "", "-f", k, NULL };
			char *dir = lc_xstrdup(k), *sl = strrchr(dir, '/');

			if (sl != NULL) {
				*sl = '\0';
				lc_mkdirs(dir, 0700);
			}
			free(dir);
			if (spawn(kg) != 0)
				lc_warnx("ssh-keygen failed: create the key "
				    "by hand");
		}
		free(yes);
	}
	free(k);
	free(pub);
	return a;
}

/*
 * Set the keys of kv (consumed) in the KEY=VALUE file at path, keeping
 * its other keys, and write it atomically, mode 0600.
 */
static int
write_kv(const char *path, const char *header, jv kv)
{
	struct lc_buf b = LC_BUF_INIT;
	char *text = NULL;
	jv all = jv_invalid(), err = jv_invalid();
	int rc;

	if (lc_read_file(path, &text, NULL) == 0 &&
	    lc_config_parse_env(path, text, &all, &err) == -1) {
		jv_free(err);
		all = jv_invalid();
	}
	if (text != NULL)
		memset(text, 0, strlen(text));
	free(text);
	if (!jv_is_valid(all))
		all = jv_object();
	all = jv_object_merge(all, kv);
	lc_buf_printf(&b, "# %s\n", header);
	jv_object_foreach(all, k, v) {
		lc_buf_printf(&b, "%s=", jv_string_value(k));
		lc_shquote(&b, jv_string_value(v));
		lc_buf_addstr(&b, "\n");
		jv_free(k);
		jv_free(v);
	}
	jv_free(all);
	rc = lc_write_file_atomic(path, b.data, b.len, 0600);
	if (rc == -1)
		lc_warnx("cannot write %s: %s", path, strerror(errno));
	memset(b.data, 0, b.len);
	lc_buf_free(&b);
	return rc;
}

/* After writing: name each written key that a file or the environment
 * still overrides, with where from. Borrows conf. */
static void
warn_overrides(jv conf, const char *cfgpath, const char *secpath)
{
	struct lc_config *cfg;
	jv err = jv_invalid();
	const char *src;

	if ((cfg = lc_config_load(&err)) == NULL) {
		jv_free(err);
		return;
	}
	jv_object_foreach(conf, k, v) {
		const char *key = jv_string_value(k);
		const char *want = strcmp(key, "LINODE_TOKEN") == 0 ||
		    strcmp(key, "HF_TOKEN") == 0 ? secpath : cfgpath;

		src = lc_config_source(cfg, key);
		if (src != NULL && strcmp(src, want) != 0)
			lc_warnx("warning: %s from %s wins over the one just "
			    "written to %s", key, src, want);
		jv_free(k);
		jv_free(v);
	}
	lc_config_free(cfg);
}

/*
 * The answers are good: write the config and the secrets file, each
 * keeping the keys the user added, then say what overrides them.
 * Consumes conf. 0, or -1 (said).
 */
static int
wizard_write(jv conf, const char *tok, const char *hf)
{
	char *dir = lc_config_dir("linode-coder");
	char *cfgpath = lc_config_file("config");
	char *secpath = lc_config_file("secrets");
	jv sec = JV_OBJECT(jv_string("LINODE_TOKEN"), jv_string(tok));
	int rc = -1;

	if (hf != NULL)
		sec = jv_object_set(sec, jv_string("HF_TOKEN"), jv_string(hf));

	lc_mkdirs(dir, 0700);
	if (write_kv(cfgpath, "linode-coder settings, written by coder "
	    "wizard; see coder(1)", jv_copy(conf)) == -1 ||
	    write_kv(secpath, "linode-coder secrets, mode 0600, read from "
	    "any folder (./.env.secrets overrides them); see coder(1)",
	    jv_copy(sec)) == -1)
		goto out;
	fprintf(stderr, "wrote %s and %s (mode 0600)\n", cfgpath, secpath);
	conf = jv_object_merge(conf, jv_copy(sec));
	warn_overrides(conf, cfgpath, secpath);
	rc = 0;
out:
	jv_free(sec);
	jv_free(conf);
	free(secpath);
	free(cfgpath);
	free(dir);
	return rc;
}

/* The answers, one question after another, into *conf, *tok and *hf
 * (NULL: none given). 0, or -1 at the end of input or on a refused
 * token. */
/*
 * Keep a model cache? Its size for the preset and its monthly price at
 * Linode's list price for volumes, $0.10 per GB-month (some regions cost
 * more; the plan shows the account's). The end of the answers (an older
 * script) is no.
 */
static int
ask_cache(FILE *in, const char *preset, const char *region)
{
	char *argv[] = { "lc-cloudinit", "-L", NULL }, q[512], *a;
	struct lc_buf out = LC_BUF_INIT, errb = LC_BUF_INIT;
	int gb = 0, yes;
	jv list;

	if (capture(argv, NULL, NULL, &out, &errb) == 0) {
		list = records_of(&out);
		jv_array_foreach(list, i, e) {
			(void)i;
			if (preset != NULL && lc_str(e, "name") != NULL &&
			    strcmp(lc_str(e, "name"), preset) == 0)
				gb = lc_cache_size_gb(e);
			jv_free(e);
		}
		jv_free(list);
	}
	lc_buf_free(&out);
	lc_buf_free(&errb);
	if (gb == 0)
		gb = lc_cache_size_gb(jv_null());
	snprintf(q, sizeof(q), "Keep a model cache volume in %s, so that the "
	    "next session skips the model download and image pull? About %d "
	    "GB: $%.2f/month, billed until 'coder cache rm', used or not "
	    "(y/n)", region != NULL ? region : "the region", gb, gb * 0.10);
	if ((a = ask(in, q, "y", 0)) == NULL)
		return 0;
	yes = a[0] == 'y' || a[0] == 'Y';
	free(a);
	return yes;
}

static int
wizard_ask(FILE *in, struct lc_config *cfg, jv *conf, char **tok, char **hf,
    int *cron)
{
	static const char *const qs[][2] = {
		{ "LC_IDLE_TIMEOUT", "Idle timeout (delete after this long "
		  "unused)" },
		{ "LC_DEADLINE", "Hard deadline (delete this long after "
		  "creation)" },
	};
	char *user = NULL, *a;
	int tries, ok = 0;
	size_t q;

	for (tries = 0; tries < 3 && ok == 0; tries++) {
		free(*tok);
		if ((*tok = ask(in, "Linode API token (Cloud Manager > API "
		    "Tokens; needs Linodes, Firewalls, Volumes, VPCs "
		    "read/write)", NULL, 1)) == NULL)
			return -1;
		if (**tok == '\0')
			continue;
		ok = check_token(*tok, &user);
		if (ok == 0 && !isatty(fileno(in)))
			return -1;
	}
	if (ok == 0)
		return -1;
	if (user != NULL)
		fprintf(stderr, "token ok (user %s)\n", user);
	free(user);
	if ((*hf = ask(in, "Hugging Face token, for gated models (Enter: "
	    "none, or keep the one saved)", NULL, 1)) == NULL)
		return -1;
	if (**hf == '\0') {
		free(*hf);
		*hf = NULL;
	}
	if ((a = ask_region(in, cfg, *tok)) == NULL)
		return -1;
	*conf = jv_object_set(*conf, jv_string("LC_REGION"), jv_string(a));
	free(a);
	if ((a = ask_preset(in, cfg)) == NULL)
		return -1;
	*conf = jv_object_set(*conf, jv_string("LC_PRESET"), jv_string(a));
	free(a);
	for (q = 0; q < sizeof(qs) / sizeof(qs[0]); q++) {
		if ((a = ask_duration(in, cfg, qs[q][0], qs[q][1])) == NULL)
			return -1;
		*conf = jv_object_set(*conf, jv_string(qs[q][0]),
		    jv_string(a));
		free(a);
	}
	if ((a = ask_ssh_key(in, cfg)) == NULL)
		return -1;
	*conf = jv_object_set(*conf, jv_string("LC_SSH_KEY"), jv_string(a));
	free(a);
	if ((a = ask(in, "Install the cron watch that deletes idle VMs? "
	    "(y/n)", "y", 0)) == NULL)
		return -1;
	*cron = a[0] == 'y' || a[0] == 'Y';
	free(a);
	*conf = jv_object_set(*conf, jv_string("LC_CACHE"), jv_string(
	    ask_cache(in, lc_str(*conf, "LC_PRESET"), lc_str(*conf,
	    "LC_REGION")) ? "on" : "off"));
	return 0;
}

/*
 * coder wizard: first-run setup, one question at a time, from a terminal
 * or a pipe, each answer checked as it is given. Writes the config and
 * the secrets file in $XDG_CONFIG_HOME/linode-coder (0600), then installs
 * the cron watch (which needs the token written), then validates.
 */
static int
verb_wizard(int argc, char **argv)
{
	struct lc_config *cfg;
	jv conf = jv_object();
	char *tok = NULL, *hf = NULL;
	FILE *in = stdin;
	int c, cron = 0, rc;
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	if (!isatty(STDIN_FILENO)) {
		/* From a pipe: there must be answers. */
		if ((c = getc(in)) == EOF) {
			lc_warnx("wizard: no terminal and no answers on standard "
			    "input: run it in a terminal, or pipe the answers "
			    "in (one per line)");
			jv_free(conf);
			return LC_EXIT_USAGE;
		}
		ungetc(c, in);
	}
	cfg = load_config();
	fprintf(stderr, "linode-coder setup. Enter keeps the [default].\n");
	rc = wizard_ask(in, cfg, &conf, &tok, &hf, &cron);
	lc_config_free(cfg);
	if (rc == 0)
		rc = wizard_write(conf, tok, hf);
	else {
		jv_free(conf);
		if (feof(in))
			lc_warnx("wizard: the answers ended early: nothing was "
			    "written");
	}
	if (tok != NULL)
		memset(tok, 0, strlen(tok));
	free(tok);
	if (hf != NULL)
		memset(hf, 0, strlen(hf));
	free(hf);
	if (rc == -1)
		return LC_EXIT_FATAL;
	if (cron) {
		char *w[] = { "lc-watch", "--install-cron", NULL };

		if (spawn(w) != 0)
			lc_warnx("could not install the cron line: run 'coder "
			    "watch --install' later");
	}
	{
		char *v[] = { "coder", "validate", NULL };

		fflush(stderr);
		run_tool(v);
	}
	return LC_EXIT_FATAL;
}

/*
 * For people: where each value that is not a default came from (every
 * value with -v), then per file the keys that were ignored. Borrows rows.
 */
static void
show_sources(jv rows)
{
	jv ignored = jv_object();

	jv_array_foreach(rows, i, r) {
		const char *key = lc_str(r, "key"), *src = lc_str(r, "source");
		const char *val = lc_str(r, "value"), *lv = lc_str(r, "level");
		char kv[256];

		if (lv != NULL && strcmp(lv, "ignored") == 0) {
			jv l = lc_get(ignored, src);

			if (jv_get_kind(l) != JV_KIND_ARRAY) {
				jv_free(l);
				l = jv_array();
			}
			ignored = jv_object_set(ignored, jv_string(src),
			    jv_array_append(l, jv_string(key)));
		} else if (lc_bool(r, "ok") && src != NULL && val != NULL &&
		    (lc_verbose || strcmp(src, "default") != 0) &&
		    strcmp(key, "LINODE_TOKEN") != 0 &&
		    strcmp(key, "LINODE_CLI_TOKEN") != 0) {
			snprintf(kv, sizeof(kv), "%s%s%s", key,
			    strcmp(val, "(set)") == 0 ? " " : "=", val);
			printf("%-32s from %s\n", kv, src);
		}
		jv_free(r);
	}
	jv_object_foreach(ignored, src, keys) {
		printf("ignored in %s (not linode-coder keys):",
		    jv_string_value(src));
		jv_array_foreach(keys, i, k) {
			printf("%s %s", i ? "," : "", jv_string_value(k));
			jv_free(k);
		}
		printf("\n");
		jv_free(src);
		jv_free(keys);
	}
	jv_free(ignored);
}

/*
 * Check every config key; for people the problems, where values came
 * from and a summary line, or records with --json. Exit 1 on an error
 * (a bad value, an unknown key in our own files); warnings exit 0.
 */
static int
verb_validate(int argc, char **argv)
{
	int json = 0, bad = 0, warned = 0, i, n;
	struct lc_config *cfg;
	jv err = jv_invalid(), rows;
	char *pub, *key;
	struct vargs a;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 0);
	json = a.opt['j'] != NULL;
	if ((cfg = lc_config_load(&err)) == NULL)
		lc_fatal_err(err);
	rows = lc_config_check(cfg);
	/* The SSH key is checked too: without it no VM can be reached. */
	key = lc_config_path(cfg, "LC_SSH_KEY");
	if (key != NULL) {
		jv r = jv_object_set(jv_object(), jv_string("key"),
		    jv_string("LC_SSH_KEY"));
		size_t len = strlen(key) + 5;

		pub = lc_xmalloc(len);
		snprintf(pub, len, "%s.pub", key);
		r = jv_object_set(r, jv_string("value"), jv_string(key));
		if (access(pub, R_OK) == 0) {
			r = jv_object_set(r, jv_string("ok"), jv_true());
			r = jv_object_set(r, jv_string("level"),
			    jv_string("ok"));
			r = jv_object_set(r, jv_string("message"), jv_null());
		} else {
			r = jv_object_set(r, jv_string("ok"), jv_false());
			r = jv_object_set(r, jv_string("level"),
			    jv_string("error"));
			r = jv_object_set(r, jv_string("message"), jv_string_fmt(
			    "no public key %s: create one with 'ssh-keygen -t "
			    "ed25519 -f %s', or set LC_SSH_KEY", pub, key));
		}
		rows = jv_array_append(rows, r);
		free(pub);
		free(key);
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv r = jv_array_get(jv_copy(rows), i);
		const char *level = lc_str(r, "level");

		bad += !lc_bool(r, "ok");
		warned += level != NULL && strcmp(level, "warning") == 0;
		if (json) {
			jv s = jv_dump_string(jv_copy(r), 0);

			printf("%s\n", jv_string_value(s));
			jv_free(s);
		} else if (!lc_bool(r, "ok"))
			lc_warnx("%s: %s", lc_str(r, "key"),
			    lc_str(r, "message"));
		else if (level != NULL && strcmp(level, "warning") == 0)
			lc_warnx("warning: %s: %s", lc_str(r, "key"),
			    lc_str(r, "message"));
		jv_free(r);
	}
	if (!json)
		show_sources(rows);
	jv_free(rows);
	lc_config_free(cfg);
	if (!json && bad == 0)
		printf("configuration ok: %d keys checked%s\n", n, warned ?
		    " (see the warnings)" : "");
	if (fflush(stdout) == EOF)
		return LC_EXIT_FATAL;
	return bad ? LC_EXIT_PARTIAL : LC_EXIT_OK;
}

/* ---- coder bench, coder validate-perf: lc-bench for people ---- */

/* A level's name: "16" streams, or "2.5/s" for a rate. */
static void
level_name(jv r, char *buf, size_t len)
{
	double c = lc_num(r, "concurrency", -1);

	if (c >= 0)
		snprintf(buf, len, "%g", c);
	else
		snprintf(buf, len, "%g/s", lc_num(r, "rate", 0));
}

/* A statistic of a level: r[what][which], or -1 when null. */
static double
stat_of(jv r, const char *what, const char *which)
{
	jv s = lc_get(r, what);
	double v = lc_num(s, which, -1);

	jv_free(s);
	return v;
}

/* v of max as a bar of width cells, in eighths of a cell. */
static void
put_bar(double v, double max, int width)
{
	static const char *const part[] = { "", "\u258f", "\u258e",
	    "\u258d", "\u258c", "\u258b", "\u258a", "\u2589" };
	int n = max > 0 && v > 0 ? (int)(v / max * width * 8 + 0.5) : 0, i;

	for (i = 0; i < n / 8; i++)
		fputs("\u2588", stdout);
	fputs(part[n % 8], stdout);
	printf("%*s", width - (n + 7) / 8, "");
}

/* "1.23 s" or "  -" for a statistic nobody measured. */
static void
put_secs(double v)
{
	if (v < 0)
		printf(" %9s", "-");
	else
		printf(" %7.3f s", v);
}

/*
 * The levels as a table, then two bar charts against the level: output
 * tokens/s of all streams together, and p90 TTFT. Borrows levels.
 */
static void
bench_table(jv levels)
{
	double maxtok = 0, maxttft = 0;
	char name[32];
	int n = jv_array_length(jv_copy(levels));

	printf("%-8s %5s %5s %10s %11s %11s %11s %11s\n", "LEVEL", "REQS",
	    "ERRS", "TOKENS/S", "TTFT p50", "TTFT p90", "ITL p50", "E2E p90");
	jv_array_foreach(levels, i, r) {
		double t = lc_num(r, "output_tokens_per_s", 0);

		level_name(r, name, sizeof(name));
		printf("%-8s %5.0f %5.0f %10.1f", name,
		    lc_num(r, "requests", 0), lc_num(r, "errors", 0), t);
		put_secs(stat_of(r, "ttft_s", "p50"));
		put_secs(stat_of(r, "ttft_s", "p90"));
		put_secs(stat_of(r, "itl_s", "p50"));
		put_secs(stat_of(r, "e2e_s", "p90"));
		printf("\n");
		maxtok = t > maxtok ? t : maxtok;
		t = stat_of(r, "ttft_s", "p90");
		maxttft = t > maxttft ? t : maxttft;
		jv_free(r);
	}
	if (n == 0)
		return;
	printf("\noutput tokens/s, all streams%14s p90 TTFT\n", "");
	jv_array_foreach(levels, i, r) {
		double t = lc_num(r, "output_tokens_per_s", 0);
		double f = stat_of(r, "ttft_s", "p90");

		level_name(r, name, sizeof(name));
		printf("%6s ", name);
		put_bar(t, maxtok, 24);
		printf(" %8.1f  ", t);
		put_bar(f, maxttft, 24);
		if (f >= 0)
			printf(" %.3f s\n", f);
		else
			printf("    -\n");
		jv_free(r);
	}
}

/* The summary's verdict line: measured against expected. Borrows b. */
static void
bench_verdict(jv b)
{
	jv m = lc_get(b, "measured"), e = lc_get(b, "expected");
	const char *v = lc_str(b, "verdict");

	printf("one stream: %.1f tokens/s, TTFT %.0f ms", lc_num(m,
	    "tokens_per_s", 0), lc_num(m, "ttft_ms", 0));
	if (lc_num(e, "tokens_per_s", -1) >= 0 || lc_num(e, "ttft_ms", -1) >= 0)
		printf("; the preset expects %.0f tokens/s, TTFT %.0f ms",
		    lc_num(e, "tokens_per_s", 0), lc_num(e, "ttft_ms", 0));
	printf(": %s\n", v != NULL ? v : "nothing to judge by");
	jv_free(m);
	jv_free(e);
}

/*
 * The chart as SVG through gnuplot: the levels' output tokens/s and p90
 * TTFT against the level. 0, or -1 with a warning. Borrows levels.
 */
static int
bench_svg(jv levels, const char *file)
{
	char dir[] = "/tmp/coder-bench.XXXXXX", data[64], plot[64];
	char *gp[] = { "gnuplot", plot, NULL };
	FILE *f;
	int rc;

	if (!on_path("gnuplot")) {
		lc_warnx("no SVG: gnuplot is not installed (apt-get install "
		    "gnuplot-nox)");
		return -1;
	}
	if (mkdtemp(dir) == NULL) {
		lc_warnx("no SVG: %s", strerror(errno));
		return -1;
	}
	snprintf(data, sizeof(data), "%s/levels", dir);
	snprintf(plot, sizeof(plot), "%s/plot", dir);
	if ((f = fopen(data, "w")) == NULL) {
		lc_warnx("no SVG: %s: %s", data, strerror(errno));
		return -1;
	}
	jv_array_foreach(levels, i, r) {
		char name[32];

		level_name(r, name, sizeof(name));
		fprintf(f, "%d \"%s\" %g %g\n", i, name,
		    lc_num(r, "output_tokens_per_s", 0),
		    stat_of(r, "ttft_s", "p90"));
		jv_free(r);
	}
	fclose(f);
	if ((f = fopen(plot, "w")) == NULL) {
		lc_warnx("no SVG: %s: %s", plot, strerror(errno));
		return -1;
	}
	fprintf(f, "set terminal svg size 800,450 dynamic\n"
	    "set output '%s'\n"
	    "set xlabel 'concurrent streams (or requests/s)'\n"
	    "set ylabel 'output tokens/s, all streams'\n"
	    "set y2label 'p90 time to first token (s)'\n"
	    "set ytics nomirror\nset y2tics\nset yrange [0:*]\n"
	    "set y2range [0:*]\nset key top left\nset grid\n"
	    "plot '%s' using 1:3:xtic(2) with linespoints title "
	    "'output tokens/s', '' using 1:4 axes x1y2 with linespoints "
	    "title 'p90 TTFT'\n", file, data);
	fclose(f);
	rc = spawn(gp);
	unlink(data);
	unlink(plot);
	rmdir(dir);
	if (rc != 0) {
		lc_warnx("no SVG: gnuplot failed (exit %d)", rc);
		return -1;
	}
	lc_info("the chart is in %s", file);
	return 0;
}

/* Split lc-bench's records: the levels, and the summary (or null). */
static jv
bench_levels(jv recs, jv *summary)
{
	jv levels = jv_array();

	*summary = jv_null();
	jv_array_foreach(recs, i, r) {
		if (jv_object_has(jv_copy(r), jv_string("bench"))) {
			jv_free(*summary);
			*summary = r;
		} else if (jv_object_has(jv_copy(r), jv_string("requests")))
			levels = jv_array_append(levels, r);
		else
			jv_free(r);
	}
	jv_free(recs);
	return levels;
}

static int
verb_bench(int argc, char **argv)
{
	char *args[12] = { "lc-bench" }, *name;
	struct lc_buf out = LC_BUF_INIT;
	const char *svg;
	struct vargs a;
	jv levels, sum;
	int n = 1, rc, c;
	static const struct { int letter; char *flag; } pass[] = {
		{ 'c', "--concurrency" }, { 'N', "--requests" },
		{ 'M', "--max-tokens" }, { 0, NULL }
	};

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	svg = a.opt['S'];
	if (svg != NULL && strpbrk(svg, "'\n") != NULL)
		lc_usage(vusage(), "an SVG file name without ' or a newline, "
		    "please");
	name = pick_name(&a, 1);
	for (c = 0; pass[c].letter != 0; c++)
		if (a.opt[pass[c].letter] != NULL) {
			args[n++] = pass[c].flag;
			args[n++] = (char *)a.opt[pass[c].letter];
		}
	args[n++] = name;
	if (svg == NULL && (a.opt['j'] != NULL || !isatty(STDOUT_FILENO)))
		run_tool(args);
	rc = capture(args, NULL, NULL, &out, NULL);
	levels = bench_levels(records_of(&out), &sum);
	if (a.opt['j'] != NULL || !isatty(STDOUT_FILENO))
		fwrite(out.data ? out.data : "", 1, out.len, stdout);
	else {
		bench_table(levels);
		if (jv_get_kind(sum) == JV_KIND_OBJECT) {
			jv b = lc_get(sum, "bench");

			printf("\n");
			bench_verdict(b);
			jv_free(b);
		} else if (jv_array_length(jv_copy(levels)) == 0)
			render(jv_copy(sum));
	}
	if (svg != NULL && jv_array_length(jv_copy(levels)) > 0)
		(void)bench_svg(levels, svg);
	jv_free(levels);
	jv_free(sum);
	lc_buf_free(&out);
	free(name);
	if (fflush(stdout) == EOF)
		return LC_EXIT_FATAL;
	return rc;
}

/*
 * coder validate-perf: the GPUs' health (lc-gpuprobe), then one stream
 * measured against the preset (lc-bench), on one screen. 0 only when the
 * GPUs are healthy and the speed is what the preset promised.
 */
static int
verb_validate_perf(int argc, char **argv)
{
	struct lc_buf pout = LC_BUF_INIT, bout = LC_BUF_INIT;
	struct vargs a;
	jv probe, levels, sum, health, b = jv_null();
	const char *verdict = NULL;
	char *name;
	int gpu_ok, json;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	json = a.opt['j'] != NULL || !isatty(STDOUT_FILENO);
	name = pick_name(&a, 1);
	{
		char *pa[] = { "lc-gpuprobe", name, NULL };
		char *ba[] = { "lc-bench", "--quiet", "--concurrency", "1",
		    "--requests", "4", "--max-tokens", "256", name, NULL };

		(void)capture(pa, NULL, NULL, &pout, NULL);
		lc_info("%s: measuring one stream against the preset (4 "
		    "replies of 256 tokens)", name);
		(void)capture(ba, NULL, NULL, &bout, NULL);
	}
	probe = first_record(&pout);
	levels = bench_levels(records_of(&bout), &sum);
	health = lc_get(probe, "gpu_health");
	gpu_ok = lc_bool(health, "ok");
	if (jv_get_kind(sum) == JV_KIND_OBJECT) {
		b = lc_get(sum, "bench");
		verdict = lc_str(b, "verdict");
	}
	if (json) {
		fwrite(pout.data ? pout.data : "", 1, pout.len, stdout);
		fwrite(bout.data ? bout.data : "", 1, bout.len, stdout);
	} else {
		printf("%s\n", name);
		if (jv_get_kind(probe) != JV_KIND_OBJECT)
			printf("  GPUs:  no answer from lc-gpuprobe\n");
		else if (jv_object_has(jv_copy(probe), jv_string("error"))) {
			jv e = lc_get(probe, "error");

			printf("  GPUs:  not probed: %s\n", lc_str(e, "message") ?
			    lc_str(e, "message") : "failed");
			jv_free(e);
		} else {
			jv p = lc_get(health, "problems");

			printf("  GPUs:  %s", gpu_ok ? "healthy" : "NOT healthy");
			jv_array_foreach(p, i, x) {
				printf("%s%s", i ? "; " : ": ",
				    lc_str(x, "message") ? lc_str(x, "message") :
				    "?");
				jv_free(x);
			}
			printf("\n");
			jv_free(p);
		}
		printf("  speed: ");
		if (jv_get_kind(b) == JV_KIND_OBJECT)
			bench_verdict(b);
		else {
			jv e = lc_get(sum, "error");

			printf("not measured: %s\n", lc_str(e, "message") ?
			    lc_str(e, "message") : "lc-bench gave no summary");
			jv_free(e);
		}
		printf("%s\n", gpu_ok && verdict != NULL && strcmp(verdict,
		    "ok") == 0 ? "PASS: the VM delivers what the preset promised" :
		    "FAIL: see above");
	}
	gpu_ok = gpu_ok && verdict != NULL && strcmp(verdict, "ok") == 0;
	jv_free(health);
	jv_free(probe);
	jv_free(levels);
	jv_free(sum);
	jv_free(b);
	lc_buf_free(&pout);
	lc_buf_free(&bout);
	free(name);
	if (fflush(stdout) == EOF)
		return LC_EXIT_FATAL;
	return gpu_ok ? LC_EXIT_OK : LC_EXIT_PARTIAL;
}

/*
 * Each verb's options. A letter means the same in every verb that has it:
 * -j records (NDJSON) even on a terminal, -p a preset (a port for aider
 * and tunnel, which take no preset).
 */
#define OPT_JSON { 'j', "json", NULL, "records (NDJSON), even on a terminal" }
#define OPT_END	{ 'h', "help", NULL, "this help" }, { 0, NULL, NULL, NULL }
/* What plan and up share: the spec's and the firewall's options. */
#define OPTS_PLAN \
	{ 'p', "preset", "preset", "a preset ('coder presets' lists them)" }, \
	{ 'm', "model", "model", "a Hugging Face model instead (with -T)" }, \
	{ 'T', "type", "type", "the Linode type for -m ('coder types')" }, \
	{ 'g', "region", "region", "the region ('coder regions')" }, \
	{ 'i', "image", "image", "the VM's image" }, \
	{ 'U', "image-unchecked", NULL, "allow an image not tested here" }, \
	{ 'V', "volume", "label", "a Block Storage volume for the model cache" }, \
	{ 'k', "cache", NULL, "keep the model cache on lc-cache-<region> " \
	    "(billed monthly until 'coder cache rm')" }, \
	{ 'K', "no-cache", NULL, "no cache volume for this session" }, \
	{ 'E', "cache-new", NULL, "with -k: a volume of this session's own" }, \
	{ 'z', "cache-size", "GB", "the cache volume's size when it is made" }, \
	{ 'P', "public", NULL, "open port 8000 to this machine's address alone" }, \
	{ 'a', "allow", "address", "with -P: admit this address instead" }, \
	{ 'W', "allow-world", NULL, "with -a: allow a range wider than /16 " \
	    "(/48 for IPv6)" }, \
	{ 'G', "nodes", "count", "VMs in the group (more than 1: a Ray " \
	    "cluster on one VPC)" }

static const struct lc_opt plan_opts[] = {
	OPTS_PLAN,
	OPT_JSON,
	{ 'C', "cloud-config", NULL, "the cloud-config alone" },
	OPT_END
};
static const struct lc_cmd plan_cmd = {
	.name = "coder plan",
	.summary = "coder plan: the plan and its cost; never creates anything",
	.operands = "[name]",
	.before = "As coder up would make it, token or not: a summary on a "
	    "terminal; the spec,\nthe cost and the cloud-config as "
	    "records through a pipe.\n\n",
	.opts = plan_opts
};

static const struct lc_opt up_opts[] = {
	OPTS_PLAN,
	{ 'l', "aider", NULL, "run aider once the model answers (also "
	    "--launch-aider)" },
	{ 'l', "launch-aider", NULL, NULL },
	{ 'n', "dry-run", NULL, "the plan only, as coder plan" },
	OPT_JSON,
	{ 'C', "cloud-config", NULL, "the cloud-config alone (implies -n)" },
	OPT_END
};
static const struct lc_cmd up_cmd = {
	.name = "coder up",
	.summary = "coder up: create a VM, serve the model, wait until it "
	    "answers",
	.operands = "[name]",
	.before = "The name defaults to dev. Without a token, the plan (as "
	    "coder plan).\n\n",
	.opts = up_opts
};

static const struct lc_opt list_opts[] = {
	{ 'a', "all", NULL, "archived sessions too" },
	OPT_JSON,
	OPT_END
};
static const struct lc_cmd list_cmd = {
	.name = "coder list",
	.summary = "coder list: the sessions, a table on a terminal",
	.before = "Runs lc-sessions.\n\n",
	.opts = list_opts
};

static const struct lc_opt json_opts[] = { OPT_JSON, OPT_END };
static const struct lc_opt no_opts[] = { OPT_END };

static const struct lc_cmd status_cmd = {
	.name = "coder status",
	.summary = "coder status: a session (the current one, else all)",
	.operands = "[name]",
	.before = "Then, with a token, what the account holds that the "
	    "ledger lacks.\n\n",
	.opts = json_opts
};

static const struct lc_cmd use_cmd = {
	.name = "coder use",
	.summary = "coder use: make a session current, link ./.aider-env",
	.operands = "name",
	.opts = json_opts
};

static const struct lc_opt extend_opts[] = {
	{ 'b', "by", "duration", "move the deadline this much later" },
	{ 'd', "deadline", "duration", "the deadline this long from now" },
	OPT_JSON,
	OPT_END
};
static const struct lc_cmd extend_cmd = {
	.name = "coder extend",
	.summary = "coder extend: reset the idle clock, move the deadline",
	.operands = "[name]",
	.before = "The VM's own guard hears of it too, over SSH.\n\n",
	.opts = extend_opts
};

static const struct lc_cmd down_cmd = {
	.name = "coder down",
	.summary = "coder down: delete the session's VM and firewall, archive "
	    "it",
	.operands = "[name]",
	.before = "Runs lc-destroy.\n\n",
	.opts = json_opts
};

static const struct lc_cmd cleanup_cmd = {
	.name = "coder cleanup",
	.summary = "coder cleanup: archive sessions whose VM is gone",
	.before = "Then lists the VMs the account holds that the ledger "
	    "lacks.\n\n",
	.opts = json_opts
};

static const struct lc_opt cost_opts[] = {
	{ 's', "since", "date", "only what accrued since that date" },
	OPT_JSON,
	OPT_END
};
static const struct lc_cmd cost_cmd = {
	.name = "coder cost",
	.summary = "coder cost: what the sessions cost, and the cache volumes",
	.before = "lc-sessions cost, then (with a token) every cache volume "
	    "with its monthly price.\n\n",
	.opts = cost_opts
};

static const struct lc_opt cache_opts[] = {
	{ 'a', "all", NULL, "rm: every cache volume of this machine's" },
	OPT_JSON,
	OPT_END
};
static const struct lc_cmd cache_cmd = {
	.name = "coder cache",
	.summary = "coder cache: the model cache volumes and what they cost",
	.operands = "[ls | rm label ...]",
	.before = "Linode bills a volume per GB and month, attached or not, "
	    "until it is deleted.\nls lists them with size and price; rm "
	    "deletes (never one still attached).\n\n",
	.opts = cache_opts
};

static const struct lc_cmd presets_cmd = {
	.name = "coder presets",
	.summary = "coder presets: the model presets, with prices",
	.opts = no_opts
};

static const struct lc_cmd regions_cmd = {
	.name = "coder regions",
	.summary = "coder regions: regions with GPU Linodes",
	.before = "Runs lc-account regions.\n\n",
	.opts = no_opts
};

static const struct lc_cmd types_cmd = {
	.name = "coder types",
	.summary = "coder types: GPU plans: prices, stock per region",
	.before = "Runs lc-account types.\n\n",
	.opts = no_opts
};

static const struct lc_cmd check_cmd = {
	.name = "coder check",
	.summary = "coder check: GPU health of the session's VM",
	.operands = "[name]",
	.before = "Runs lc-gpuprobe.\n\n",
	.opts = no_opts
};

static const struct lc_cmd ssh_cmd = {
	.name = "coder ssh",
	.summary = "coder ssh: a shell on the VM, or run a command there",
	.operands = "[name] [command ...]",
	.opts = no_opts
};

static const struct lc_cmd exec_cmd = {
	.name = "coder exec",
	.summary = "coder exec: run a command with the VM's environment",
	.operands = "[name] -- command ...",
	.opts = no_opts
};

static const struct lc_opt logs_opts[] = {
	{ 'f', "follow", NULL, "follow the vLLM log until interrupted" },
	OPT_END
};
static const struct lc_cmd logs_cmd = {
	.name = "coder logs",
	.summary = "coder logs: the vLLM container and cloud-init logs",
	.operands = "[name]",
	.opts = logs_opts
};

static const struct lc_opt port_opts[] = {
	{ 'p', "port", "port", "this local port (refused when busy)" },
	OPT_END
};
static const struct lc_cmd tunnel_cmd = {
	.name = "coder tunnel",
	.summary = "coder tunnel: forward a local port to the VM's vLLM",
	.operands = "[name]",
	.before = "Until interrupted. The port given, else the session's if "
	    "free, else a free\none; the session's env file (and "
	    "./.aider-env) names it.\n\n",
	.opts = port_opts
};

static const struct lc_cmd aider_cmd = {
	.name = "coder aider",
	.summary = "coder aider: run aider against the session's model",
	.operands = "[name] [-- aider-argument ...]",
	.before = "Opens the tunnel (its port as coder tunnel picks it), "
	    "writes\n.aider.model.metadata.json, runs aider with the "
	    "session's env file and\nmodel; the tunnel closes "
	    "after.\n\n",
	.opts = port_opts
};

static const struct lc_cmd heal_cmd = {
	.name = "coder heal",
	.summary = "coder heal: diagnose a failed vLLM start and fix it",
	.operands = "[name]",
	.before = "Restarts vLLM and checks a real completion; runs "
	    "lc-heal.\n\n",
	.opts = json_opts
};

static const struct lc_opt switch_opts[] = {
	{ 'm', "model", "model", "a Hugging Face model" },
	{ 'p', "preset", "preset", "a preset's model" },
	OPT_END
};
static const struct lc_cmd switch_cmd = {
	.name = "coder switch-model",
	.summary = "coder switch-model: serve another model on the VM",
	.operands = "[name]",
	.before = "Checks the model fits the VM's GPUs, rewrites vllm.env, "
	    "restarts vLLM and\nwaits for a real completion. Give -p "
	    "or -m, one.\n\n",
	.opts = switch_opts
};

static const struct lc_opt watch_opts[] = {
	{ 'i', "install", NULL, "add the cron job" },
	{ 'u', "uninstall", NULL, "remove it" },
	OPT_END
};
static const struct lc_cmd watch_cmd = {
	.name = "coder watch",
	.summary = "coder watch: the cron job that deletes idle VMs",
	.before = "Whether the cron job running 'lc-watch --destroy --heal' "
	    "is installed, and\nits last decisions; or add or remove "
	    "it.\n\n",
	.opts = watch_opts
};

static const struct lc_cmd wizard_cmd = {
	.name = "coder wizard",
	.summary = "coder wizard: first-run setup",
	.before = "Asks for the Linode token, the Hugging Face token, "
	    "region, preset, idle\ntimeout, deadline, SSH key and "
	    "cron, each answer checked as it is given;\nwrites "
	    "~/.config/linode-coder/config and secrets. Answers may "
	    "come from a\npipe.\n\n",
	.opts = no_opts
};

static const struct lc_cmd validate_cmd = {
	.name = "coder validate",
	.summary = "coder validate: check the configuration before spending "
	    "money",
	.before = "Every configuration key, the token and the SSH key, and "
	    "where each value\ncame from.\n\n",
	.opts = json_opts
};

static const struct lc_cmd help_cmd = {
	.name = "coder help",
	.summary = "coder help: this help, or a verb's",
	.operands = "[verb]",
	.opts = no_opts
};

static const struct lc_opt bench_opts[] = {
	{ 'c', "concurrency", "list", "the levels: streams in flight (default "
	    "1,4,16,64)" },
	{ 'N', "requests", "count", "measured requests per level" },
	{ 'M', "max-tokens", "count", "tokens each reply must have" },
	{ 'S', "svg", "file", "also draw the chart into an SVG file (needs "
	    "gnuplot)" },
	OPT_JSON,
	OPT_END
};
static const struct lc_cmd bench_cmd = {
	.name = "coder bench",
	.summary = "coder bench: how fast the session's model serves",
	.operands = "[name]",
	.before = "Runs lc-bench over the session: a sweep of concurrent "
	    "streams, each level's\nthroughput and latencies as a table and "
	    "a chart, then one stream against the\npreset's figures. Its "
	    "requests count as activity for the idle guard.\n\n",
	.opts = bench_opts
};

static const struct lc_cmd validate_perf_cmd = {
	.name = "coder validate-perf",
	.summary = "coder validate-perf: GPU health and speed against the "
	    "preset",
	.operands = "[name]",
	.before = "lc-gpuprobe, then one stream measured by lc-bench (4 "
	    "replies of 256 tokens)\nagainst the preset's figures; exit 0 "
	    "only when both are good.\n\n",
	.opts = json_opts
};

enum { SESSIONS, USING, GUARD };	/* coder help's headings */
#define HELP_INDENT "                           "	/* column 27 */

static const struct verb verbs[] = {
	{ "plan", verb_up, &plan_cmd, SESSIONS },
	{ "up", verb_up, &up_cmd, SESSIONS },
	{ "down", verb_down, &down_cmd, SESSIONS },
	{ "list", verb_list, &list_cmd, SESSIONS },
	{ "status", verb_status, &status_cmd, SESSIONS },
	{ "use", verb_use, &use_cmd, SESSIONS },
	{ "extend", verb_extend, &extend_cmd, SESSIONS },
	{ "cleanup", verb_cleanup, &cleanup_cmd, SESSIONS },
	{ "cost", verb_cost, &cost_cmd, SESSIONS },
	{ "cache", verb_cache, &cache_cmd, SESSIONS },
	{ "presets", verb_presets, &presets_cmd, SESSIONS },
	{ "regions", verb_account, &regions_cmd, SESSIONS },
	{ "types", verb_account, &types_cmd, SESSIONS },
	{ "aider", verb_aider, &aider_cmd, USING },
	{ "tunnel", verb_tunnel, &tunnel_cmd, USING },
	{ "ssh", verb_ssh, &ssh_cmd, USING },
	{ "exec", verb_exec, &exec_cmd, USING },
	{ "logs", verb_logs, &logs_cmd, USING },
	{ "check", verb_check, &check_cmd, USING },
	{ "heal", verb_heal, &heal_cmd, USING },
	{ "bench", verb_bench, &bench_cmd, USING },
	{ "validate-perf", verb_validate_perf, &validate_perf_cmd, USING },
	{ "switch-model", verb_switch_model, &switch_cmd, USING },
	{ "watch", verb_watch, &watch_cmd, GUARD },
	{ "wizard", verb_wizard, &wizard_cmd, GUARD },
	{ "validate", verb_validate, &validate_cmd, GUARD },
	{ "help", coder_help, &help_cmd, GUARD },
	{ NULL, NULL, NULL, 0 }
};

static const struct verb *
find_verb(const char *name)
{
	for (int i = 0; verbs[i].name != NULL; i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

/*
 * coder help: the verbs under their headings, each with its operands and
 * the first line of its summary, made from the verbs' tables; coder help
 * VERB: the verb's --help.
 */
static int
coder_help(int argc, char **argv)
{
	static const char *const heads[] = { "Sessions:", "Using the VM:",
	    "Money guard and setup:" };
	struct lc_cmd c = cli;
	struct lc_buf b = LC_BUF_INIT;
	const struct verb *v;
	struct vargs a;
	int g;

	parse_args(argc, argv, 0, &a);
	max_ops(&a, 1);
	if (a.nops == 1) {
		if ((v = find_verb(a.ops[0])) == NULL)
			lc_usage(usage_str, "no verb '%s' ('coder help' lists "
			    "them)", a.ops[0]);
		lc_opts_help(v->cmd);
	}
	for (g = SESSIONS; g <= GUARD; g++) {
		lc_buf_printf(&b, "%s\n", heads[g]);
		for (v = verbs; v->name != NULL; v++) {
			const char *what = v->cmd->summary, *ops;
			char left[64];

			if (v->group != g)
				continue;
			what += strlen(v->cmd->name) + 2;	/* "coder up: " */
			ops = v->cmd->operands;
			snprintf(left, sizeof(left), "%s%s%s", v->name,
			    ops ? " " : "", ops ? ops : "");
			lc_buf_printf(&b, "  %-24s%s%s\n", left,
			    strlen(left) < 24 ? " " : "\n" HELP_INDENT, what);
		}
	}
	lc_buf_addstr(&b, "Options (before the verb):\n");
	c.before = b.data;
	lc_opts_help(&c);
}

int
main(int argc, char *argv[])
{
	const struct verb *v;
	int ch;

	lc_init("coder");
	path_add_self(argv[0]);
	if (argc < 2)
		lc_usage(usage_str, "no verb given ('coder help' lists them)");
	opterr = 0;	/* an unknown option is an unknown verb */
	while ((ch = lc_opts_get(&cli, "+", argc, argv)) != -1) {
		switch (ch) {
		case 'h': {
			char *h[] = { "help", NULL };

			vcmd = &help_cmd;
			return coder_help(1, h);
		}
		case 'V':
			printf("coder (linode-coder) %s\n", LC_VERSION);
			return 0;
		case 'v': lc_verbose = 1; break;
		default:
			lc_usage(usage_str, "unknown verb '%s' ('coder help' "
			    "lists them)", argv[optind - 1]);
		}
	}
	/* The verbs see their own name as argv[0]. */
	argc -= optind - 1;
	argv += optind - 1;
	if (argc < 2)
		lc_usage(usage_str, "no verb given");
	if ((v = find_verb(argv[1])) == NULL)
		lc_usage(usage_str, "unknown verb '%s' ('coder help' lists "
		    "them)", argv[1]);
	vcmd = v->cmd;
	opterr = 0;	/* lc_bad_option says it, with the verb's usage */
	return v->run(argc - 1, argv + 1);
}
