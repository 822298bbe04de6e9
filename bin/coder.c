/*
 * coder: the front end for the common flows. Each verb runs the lc tools
 * (exec for one tool, fork/exec for several) so status, signals and stdio
 * pass through; it never parses records.
 */
#define _XOPEN_SOURCE 700	/* realpath */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "config.h"
#include "lc.h"
#include "ledger.h"

static const char usage_str[] = "usage: coder verb [argument ...]";

static const char help_str[] =
    "coder: a private coding LLM on a Linode GPU, only while you use it\n"
    "\n"
    "usage: coder verb [argument ...]\n"
    "\n"
    "Sessions:\n"
    "  up [name] [options]      create a VM, serve the model, print how to use it\n"
    "  down [name]              delete the VM and archive the session\n"
    "  list [-a]                sessions, one record a line\n"
    "  status [name] [--json]   a session (default: the current one)\n"
    "  use name                 make a session current, link ./.aider-env\n"
    "  extend [name] [-b dur] [-d dur]  reset the idle clock, move the deadline\n"
    "  cleanup                  archive sessions whose VM is gone, list orphans\n"
    "  presets                  the model presets, with prices\n"
    "Using the VM:\n"
    "  aider [name] [-- args]   run aider against the session's model\n"
    "  tunnel [name] [-p port]  forward a local port to the VM's vLLM\n"
    "  ssh [name] [command]     a shell on the VM, or run a command\n"
    "  exec [name] -- command   run a command with the VM's environment\n"
    "  logs [name] [-f]         vLLM and cloud-init logs\n"
    "  check [name]             GPU health\n"
    "  heal [name]              diagnose a failed vLLM start and fix it\n"
    "  switch-model [name] (-p preset | -m model)  serve another model\n"
    "Money guard and setup:\n"
    "  watch [--install | --uninstall]  the cron job that deletes idle VMs\n"
    "  wizard                   first-run setup\n"
    "  validate                 check the configuration before spending money\n"
    "  help [verb]              this help, or a verb's\n"
    "\n"
    "Every verb takes --help. See coder(1), lc(7).\n";

struct verb {
	const char	*name;
	int		(*run)(int, char **);
	const char	*help;
};

static int coder_help(int, char **);

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

/* fork/exec and wait; the status as a shell reports it. */
static int
spawn(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid == -1)
		lc_fatal("fork: %s", strerror(errno));
	if (pid == 0)
		run_tool(argv);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			lc_fatal("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static int
session_exists(const char *name)
{
	struct lc_ledger l;
	jv err = jv_invalid();
	char file[80], *path;
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
	snprintf(file, sizeof(file), "sessions/%s.json", name);
	path = lc_ledger_path(&l, file);
	ok = lstat(path, &st) == 0;
	free(path);
	lc_ledger_close(&l);
	return ok;
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
 * Optional leading NAME: argv[1] when it names a session (or, with
 * must_be_name, whenever it is not an option), else the current session.
 * Returns the name; *used says whether argv[1] was consumed.
 */
static char *
pick_session(int argc, char **argv, int must_be_name, int *used)
{
	*used = 0;
	if (argc > 1 && argv[1][0] != '-' &&
	    (must_be_name || session_exists(argv[1]))) {
		*used = 1;
		return lc_xstrdup(argv[1]);
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

/* "coder VERB --help": only right after the verb, so a command run on the
 * VM (coder ssh dev ls --help) keeps its own --help. */
static int
wants_help(int argc, char **argv)
{
	return argc > 1 && (strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0);
}

static int
verb_list(int argc, char **argv)
{
	const char *pre[] = { "lc-sessions", NULL };

	run_tool(build(pre, argc - 1, argv + 1));
}

static int
verb_status(int argc, char **argv)
{
	int json = !isatty(STDOUT_FILENO), i, used, n = 1;
	char *name;
	const char *pre[5] = { "lc-sessions", NULL };
	/* argv without --json; rest[0] stays the verb, as pick_session wants */
	char **rest = lc_xmalloc(sizeof(*rest) * (size_t)(argc + 1));

	rest[0] = argv[0];
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			json = 1;
		else
			rest[n++] = argv[i];
	}
	rest[n] = NULL;
	if (n == 1 && !has_current()) {	/* no current one: show them all */
		pre[1] = json ? NULL : "--table";
		run_tool(build(pre, 0, NULL));
	}
	name = pick_session(n, rest, 1, &used);
	if (!json) {
		pre[1] = "--table";
		pre[2] = name;
	} else
		pre[1] = name;
	run_tool(build(pre, n - 1 - used, rest + 1 + used));
}

static int
verb_use(int argc, char **argv)
{
	const char *pre[] = { "lc-sessions", "use", NULL };

	run_tool(build(pre, argc - 1, argv + 1));
}

static int
verb_extend(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 0, &used);
	const char *pre[] = { "lc-sessions", "extend", name, NULL };

	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

static int
verb_down(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 1, &used);
	const char *pre[] = { "lc-destroy", name, NULL };

	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

static int
verb_cleanup(int argc, char **argv)
{
	char *clean[] = { "lc-sessions", "cleanup", NULL };
	char *recon[] = { "lc-sessions", "reconcile", NULL };
	int a, b;

	(void)argv;
	if (argc > 1)
		lc_usage("usage: coder cleanup", "cleanup takes no arguments");
	a = spawn(clean);
	b = spawn(recon);
	return a != 0 ? a : b;
}

static int
verb_presets(int argc, char **argv)
{
	const char *pre[] = { "lc-cloudinit", "--list-presets",
	    isatty(STDOUT_FILENO) ? "--table" : NULL, NULL };

	run_tool(build(pre, argc - 1, argv + 1));
}

static int
verb_check(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 1, &used);
	const char *pre[] = { "lc-gpuprobe", name,
	    isatty(STDOUT_FILENO) ? "--table" : NULL, NULL };

	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

static int
verb_ssh(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 0, &used);
	const char *shell[] = { "lc-ssh", "--interactive", name, NULL };
	const char *cmd[] = { "lc-ssh", name, "--", NULL };

	if (argc - 1 - used == 0)
		run_tool(build(shell, 0, NULL));
	if (strcmp(argv[1 + used], "--") == 0)
		used++;
	run_tool(build(cmd, argc - 1 - used, argv + 1 + used));
}

static int
verb_exec(int argc, char **argv)
{
	int used, i;
	char *name = pick_session(argc, argv, 0, &used);
	const char *pre[] = { "lc-ssh", name, NULL };

	for (i = 1 + used; i < argc && strcmp(argv[i], "--") != 0; i++)
		;
	if (i >= argc - 1)
		lc_usage("usage: coder exec [name] -- command [argument ...]",
		    "exec needs a command after --");
	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

static int
verb_logs(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 0, &used);
	const char *pre[] = { "lc-ssh", "--logs", name, NULL };

	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

static int
verb_tunnel(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 0, &used);
	const char *pre[] = { "lc-ssh", "--tunnel", name, NULL };

	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

static int
verb_heal(int argc, char **argv)
{
	int used;
	char *name = pick_session(argc, argv, 1, &used);
	const char *pre[] = { "lc-heal", name, NULL };

	run_tool(build(pre, argc - 1 - used, argv + 1 + used));
}

/*
 * Run argv lists as one pipeline (each stdout into the next stdin), the
 * last writing to our stdout. Returns the first non-zero status, as a
 * shell with pipefail would, or 128+n for a child killed by signal n.
 */
static int
pipeline(char **cmds[], int n)
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
		if (in != -1)
			close(in);
		if (fds[1] != -1)
			close(fds[1]);
		in = fds[0];
	}
	for (i = 0; i < n; i++) {
		int r;

		while (waitpid(pids[i], &status, 0) == -1)
			if (errno != EINTR)
				lc_fatal("waitpid: %s", strerror(errno));
		r = WIFSIGNALED(status) ? 128 + WTERMSIG(status) :
		    WEXITSTATUS(status);
		if (rc == 0)
			rc = r;
	}
	return rc;
}

static volatile sig_atomic_t interrupted;

static void
on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
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

/* The Ctrl-C path: never leave a half-made VM untracked. */
static int
up_interrupted(const char *name)
{
	char *adopt[] = { "lc-sessions", "reconcile", "--adopt", "--quiet",
	    NULL };
	char *destroy[] = { "lc-destroy", (char *)name, NULL };

	lc_warnx("%s: interrupted", name);
	/* A create cut off between the API's answer and the ledger write
	 * left a tagged VM the ledger lacks: adopt it first. */
	if (spawn(adopt) != 0)
		lc_warnx("%s: could not check for an untracked VM: run "
		    "'lc-sessions reconcile' and look", name);
	if (!session_exists(name)) {
		lc_warnx("%s: no VM was created", name);
		return 130;
	}
	if (ask_yes("Destroy the half-made VM (it bills by the hour)?", 1)) {
		int rc = spawn(destroy);

		if (rc != 0)
			lc_warnx("%s: destroy failed: run 'coder down %s' "
			    "again, or delete lc-%s in Cloud Manager", name,
			    name, name);
		return rc != 0 ? rc : 130;
	}
	lc_warnx("%s: kept; it bills until 'coder down %s'", name, name);
	return 130;
}

static const char up_usage[] =
    "usage: coder up [name] [-p preset | -m model -T type] [-g region] "
    "[-i image] [-V label] [--public] [--aider] [-n]";

/*
 * coder up: spec | lc-cloudinit | lc-create --wait | lc-heal --if-failed.
 * Without a token, or with -n, the plan: spec and cost, the cloud-config.
 */
static int
verb_up(int argc, char **argv)
{
	char **spec, **create, **heal, **raw, **cmds[3];
	const char *name = "dev";
	int i, n = 0, dry = 0, aider = 0, rc;
	char **flags = lc_xmalloc(sizeof(*flags) * (size_t)(argc + 4));
	struct sigaction sa;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-n") == 0 || strcmp(a, "--dry-run") == 0)
			dry = 1;
		else if (strcmp(a, "--aider") == 0)
			aider = 1;
		else if (strcmp(a, "--public") == 0 || strcmp(a, "-P") == 0)
			flags[n++] = "--public";
		else if (a[0] == '-') {
			static const char *withval[] = { "-p", "--preset",
			    "-m", "--model", "-T", "--type", "-g", "--region",
			    "-i", "--image", "-V", "--volume", NULL };
			int k, ok = 0;

			for (k = 0; withval[k] != NULL; k++)
				ok |= strcmp(a, withval[k]) == 0;
			if (!ok || i + 1 >= argc)
				lc_usage(up_usage, "unknown option or missing "
				    "value: %s", a);
			flags[n++] = argv[i++];
			flags[n++] = argv[i];
		} else if (name != NULL && strcmp(name, "dev") == 0 &&
		    i == 1)
			name = a;
		else
			lc_usage(up_usage, "unexpected argument: %s", a);
	}
	flags[n] = NULL;
	{
		const char *pre[] = { "lc-cloudinit", "--name", name, NULL };
		const char *rawp[] = { "lc-cloudinit", "--raw", "--name", name,
		    NULL };
		const char *cr_dry[] = { "lc-create", "--dry-run", NULL };
		const char *cr[] = { "lc-create", "--wait", NULL };
		const char *he[] = { "lc-heal", "--if-failed", NULL };

		spec = build(pre, n, flags);
		raw = build(rawp, n, flags);
		if (dry || !have_token()) {
			if (!dry)
				lc_warnx("no Linode token: printing the plan "
				    "only ('coder wizard' sets one up)");
			create = build(cr_dry, 0, NULL);
			cmds[0] = spec;
			cmds[1] = create;
			rc = pipeline(cmds, 2);
			if (rc == 0) {
				fflush(stdout);
				printf("# the cloud-config for %s:\n", name);
				fflush(stdout);
				rc = spawn(raw);
			}
			return rc;
		}
		create = build(cr, 0, NULL);
		heal = build(he, 0, NULL);
	}
	/* Ctrl-C reaches the tools (same process group); coder survives it
	 * to clean up. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	cmds[0] = spec;
	cmds[1] = create;
	cmds[2] = heal;
	rc = pipeline(cmds, 3);
	if (interrupted)
		return up_interrupted(name);
	if (rc != 0) {
		lc_warnx("%s: not ready (exit %d): the session is kept so you "
		    "can look: 'coder logs %s', 'coder heal %s', or 'coder down "
		    "%s' to stop paying", name, rc, name, name, name);
		return rc;
	}
	fprintf(stderr, "\n%s is ready. Next:\n  coder aider %s      # aider "
	    "on your model\n  coder tunnel %s     # the OpenAI API on this "
	    "machine\n  coder down %s       # stop paying\n", name, name, name,
	    name);
	if (aider) {
		char *ad[] = { "coder", "aider", (char *)name, NULL };

		run_tool(ad);
	}
	return 0;
}

/* Check every config key; a line for people, or records with --json. */
static int
verb_validate(int argc, char **argv)
{
	int json = 0, bad = 0, i, n;
	struct lc_config *cfg;
	jv err = jv_invalid(), rows;
	char *pub, *key;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			json = 1;
		else
			lc_usage("usage: coder validate [--json]",
			    "unknown argument: %s", argv[i]);
	}
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
			r = jv_object_set(r, jv_string("message"), jv_null());
		} else {
			r = jv_object_set(r, jv_string("ok"), jv_false());
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
		int ok = lc_bool(r, "ok");

		bad += !ok;
		if (json) {
			jv s = jv_dump_string(jv_copy(r), 0);

			printf("%s\n", jv_string_value(s));
			jv_free(s);
		} else if (!ok)
			lc_warnx("%s: %s", lc_str(r, "key"),
			    lc_str(r, "message"));
		else if (lc_verbose)
			printf("ok  %-24s %s\n", lc_str(r, "key"),
			    lc_str(r, "source") ? lc_str(r, "source") : "");
		jv_free(r);
	}
	jv_free(rows);
	lc_config_free(cfg);
	if (!json && bad == 0)
		printf("configuration ok: %d keys checked\n", n);
	if (fflush(stdout) == EOF)
		return LC_EXIT_FATAL;
	return bad ? LC_EXIT_PARTIAL : LC_EXIT_OK;
}

static const struct verb verbs[] = {
	{ "up", verb_up, "coder up [name] [--preset p | --model m --type t] [--region r] [--image i] [--volume label] [--public] [--aider] [--dry-run]: create a session and wait until the model answers; without a token, or with -n, print the plan" },
	{ "list", verb_list, "coder list [-a]: active sessions (--all: archived too); runs lc-sessions" },
	{ "status", verb_status, "coder status [name] [--json]: one session (default: the current one); a table on a tty" },
	{ "use", verb_use, "coder use name: make the session current and link ./.aider-env to its env file" },
	{ "extend", verb_extend, "coder extend [name] [--by dur] [--deadline dur]: reset the idle clock; move the hard deadline" },
	{ "down", verb_down, "coder down [name]: delete the session's VM and firewall, archive the session; runs lc-destroy" },
	{ "cleanup", verb_cleanup, "coder cleanup: archive sessions whose VM is gone, then list VMs the ledger lacks" },
	{ "presets", verb_presets, "coder presets: the model presets (name, model, type, $/h, context)" },
	{ "check", verb_check, "coder check [name]: GPU health of the session's VM; runs lc-gpuprobe" },
	{ "ssh", verb_ssh, "coder ssh [name] [command ...]: an interactive shell on the VM, or run a command" },
	{ "exec", verb_exec, "coder exec [name] -- command ...: run a command on the VM with its configured environment" },
	{ "logs", verb_logs, "coder logs [name] [-f]: the vLLM container log and the cloud-init log" },
	{ "tunnel", verb_tunnel, "coder tunnel [name] [-p port]: forward a local port to the VM's vLLM until interrupted" },
	{ "heal", verb_heal, "coder heal [name]: diagnose a failed vLLM start, fix it, restart it; runs lc-heal" },
	{ "validate", verb_validate, "coder validate [--json]: check every configuration key, the token and the SSH key" },
	{ "help", coder_help, "coder help [verb]: help for coder or one verb" },
	{ NULL, NULL, NULL }
};

static const struct verb *
find_verb(const char *name)
{
	for (int i = 0; verbs[i].name != NULL; i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

static int
coder_help(int argc, char **argv)
{
	const struct verb *v;

	if (argc < 2)
		lc_help(help_str);
	if ((v = find_verb(argv[1])) == NULL)
		lc_usage(usage_str, "no verb '%s' ('coder help' lists them)",
		    argv[1]);
	printf("%s\n", v->help);
	return fflush(stdout) == EOF ? LC_EXIT_FATAL : LC_EXIT_OK;
}

int
main(int argc, char *argv[])
{
	const struct verb *v;

	lc_init("coder");
	path_add_self(argv[0]);
	if (argc < 2)
		lc_usage(usage_str, "no verb given ('coder help' lists them)");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		lc_help(help_str);
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("coder (linode-coder) %s\n", LC_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--verbose") == 0) {
		lc_verbose = 1;
		argv++;
		argc--;
		if (argc < 2)
			lc_usage(usage_str, "no verb given");
	}
	if ((v = find_verb(argv[1])) == NULL)
		lc_usage(usage_str, "unknown verb '%s' ('coder help' lists "
		    "them)", argv[1]);
	if (wants_help(argc - 1, argv + 1) && v->run != coder_help) {
		char *h[] = { "help", argv[1], NULL };

		return coder_help(2, h);
	}
	return v->run(argc - 1, argv + 1);
}
