/* ledger: session records on disk, written atomically under a lock. */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "rec.h"
#include "session.h"

static const char *reserved[] = {
	"use", "extend", "forget", "cost", "cleanup", "reconcile", "list",
	"current", "all", "help", NULL
};

static jv
sys_error(const char *code, const char *what, const char *path)
{
	return lc_errorf(code, "%s %s: %s", what, path, strerror(errno));
}

/* The state directory's path into l->dir. */
static void
state_dir(struct lc_ledger *l)
{
	const char *x = getenv("XDG_STATE_HOME");
	char *base;

	l->lockfd = -1;
	if (x != NULL && *x == '/')
		l->dir = lc_path_join(x, "linode-coder");
	else {
		base = lc_path_join(lc_home(), ".local/state");
		l->dir = lc_path_join(base, "linode-coder");
		free(base);
	}
}

int
lc_ledger_open_ro(struct lc_ledger *l, jv *err)
{
	struct stat st;

	state_dir(l);
	if (stat(l->dir, &st) == -1 || !S_ISDIR(st.st_mode) ||
	    access(l->dir, R_OK | X_OK) == -1) {
		*err = lc_errorf("state_dir", "state directory %s: %s", l->dir,
		    errno ? strerror(errno) : "not a directory");
		return -1;
	}
	return 0;
}

int
lc_ledger_open(struct lc_ledger *l, jv *err)
{
	char *sub;
	struct stat st;

	state_dir(l);
	if (lc_mkdirs(l->dir, 0700) == -1 || stat(l->dir, &st) == -1 ||
	    !S_ISDIR(st.st_mode)) {
		*err = lc_errorf("state_dir", "state directory %s: %s (it must "
		    "be a directory you can write; set XDG_STATE_HOME to move it)",
		    l->dir, errno ? strerror(errno) : "not a directory");
		return -1;
	}
	sub = lc_path_join(l->dir, "sessions");
	if (lc_mkdirs(sub, 0700) == -1 || access(sub, W_OK) == -1 ||
	    access(l->dir, W_OK) == -1) {
		*err = lc_errorf("state_dir", "state directory %s is not "
		    "writable: %s (fix its owner or mode: chmod 700 %s)",
		    l->dir, strerror(errno), l->dir);
		free(sub);
		return -1;
	}
	free(sub);
	sub = lc_path_join(l->dir, "archive");
	lc_mkdirs(sub, 0700);
	free(sub);
	return 0;
}

void
lc_ledger_close(struct lc_ledger *l)
{
	if (l->lockfd != -1)
		close(l->lockfd);
	l->lockfd = -1;
	free(l->dir);
	l->dir = NULL;
}

char *
lc_ledger_path(struct lc_ledger *l, const char *file)
{
	char *p = lc_path_join(l->dir, file);

	if (p == NULL)
		lc_fatal("out of memory");
	return p;
}

static char *
session_path(struct lc_ledger *l, const char *name)
{
	return lc_session_path(l, name, LC_SESSION_RECORD);
}

int
lc_name_check(const char *name, jv *err)
{
	size_t n = strlen(name);
	int i;

	if (n == 0 || n > 32 || strspn(name,
	    "abcdefghijklmnopqrstuvwxyz0123456789-") != n) {
		*err = lc_errorf("bad_name", "bad session name '%.64s': use 1 "
		    "to 32 lowercase letters, digits and '-'", name);
		return -1;
	}
	for (i = 0; reserved[i] != NULL; i++)
		if (strcmp(name, reserved[i]) == 0) {
			*err = lc_errorf("bad_name", "'%s' is a command name "
			    "and cannot name a session: pick another name",
			    name);
			return -1;
		}
	return 0;
}

static int
lock(struct lc_ledger *l, jv *err)
{
	if (l->lockfd == -1) {
		char *p = lc_ledger_path(l, ".lock");

		l->lockfd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (l->lockfd == -1) {
			*err = sys_error("state_dir", "cannot open lock", p);
			free(p);
			return -1;
		}
		free(p);
	}
	if (lc_lock_fd(l->lockfd, 1, 0) == -1) {
		*err = lc_errorf("state_dir", "cannot lock the ledger: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

static void
unlock(struct lc_ledger *l)
{
	lc_unlock_fd(l->lockfd);
}

/* Read and parse one record file; refuses symlinks. Returns owned. */
static jv
read_record(const char *path, const char *name)
{
	struct lc_buf b = LC_BUF_INIT;
	char chunk[8192];
	ssize_t n;
	jv v, rec;
	int fd;

	/* O_NONBLOCK: a FIFO left in sessions/ reads as empty (corrupt),
	 * rather than hanging every listing. */
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return lc_errorf("not_found", "no session named '%s' "
			    "(lc-sessions --all lists them)", name);
		if (errno == ELOOP)
			return lc_errorf("unsafe_file", "%s is a symbolic "
			    "link; refusing to follow it (replace it with the "
			    "real file, or remove it)", path);
		return sys_error("io", "cannot read", path);
	}
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		lc_buf_add(&b, chunk, (size_t)n);
	close(fd);
	v = lc_parse_texts(b.data ? b.data : "", b.len);
	lc_buf_free(&b);
	if (!jv_is_valid(v) || jv_array_length(jv_copy(v)) != 1 ||
	    jv_get_kind(rec = jv_array_get(jv_copy(v), 0)) !=
	    JV_KIND_OBJECT) {
		if (jv_is_valid(v) && jv_array_length(jv_copy(v)) == 1)
			jv_free(rec);
		jv_free(v);
		return lc_errorf("corrupt_record", "%s is truncated or not a "
		    "JSON object: restore it, or remove it with 'lc-sessions "
		    "forget %s --yes' (lc-watch guards its VM as an orphan "
		    "meanwhile)", path, name);
	}
	jv_free(v);
	/* Wrong types would crash or mislead every reader: the record is
	 * corrupt, and its VM is found from the account instead. */
	if (lc_session_check(rec, name, &v) == -1) {
		jv_free(rec);
		return v;
	}
	return rec;
}

jv
lc_ledger_get(struct lc_ledger *l, const char *name)
{
	jv err = jv_invalid(), rec;
	char *path;

	if (lc_name_check(name, &err) == -1)
		return err;
	path = session_path(l, name);
	rec = read_record(path, name);
	free(path);
	return rec;
}

static jv
write_locked(struct lc_ledger *l, jv rec)
{
	const char *name = lc_str(rec, "name");
	jv err = jv_invalid(), s;
	struct stat st;
	char *path;

	if (name == NULL) {
		jv_free(rec);
		return lc_errorf("bad_record", "record has no \"name\"");
	}
	if (lc_name_check(name, &err) == -1) {
		jv_free(rec);
		return err;
	}
	path = session_path(l, name);
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		err = lc_errorf("unsafe_file", "%s is a symbolic link; "
		    "refusing to write through it (remove it first)", path);
		free(path);
		jv_free(rec);
		return err;
	}
	s = jv_dump_string(jv_copy(rec), JV_PRINT_INDENT_FLAGS(2));
	s = jv_string_append_str(s, "\n");
	if (lc_write_file_atomic(path, jv_string_value(s),
	    (size_t)jv_string_length_bytes(jv_copy(s)), 0600) == -1) {
		err = sys_error("state_dir", "cannot write", path);
		jv_free(rec);
		rec = err;
	}
	jv_free(s);
	free(path);
	return rec;
}

jv
lc_ledger_put(struct lc_ledger *l, jv rec)
{
	jv err = jv_invalid();

	if (lock(l, &err) == -1) {
		jv_free(rec);
		return err;
	}
	rec = write_locked(l, rec);
	unlock(l);
	return rec;
}

jv
lc_ledger_update(struct lc_ledger *l, const char *name,
    jv (*fn)(jv rec, void *arg), void *arg)
{
	jv err = jv_invalid(), rec;

	if (lc_name_check(name, &err) == -1)
		return err;
	if (lock(l, &err) == -1)
		return err;
	rec = lc_ledger_get(l, name);
	if (!jv_is_valid(rec) && strcmp(lc_error_code(rec), "not_found") != 0) {
		unlock(l);
		return rec;
	}
	rec = fn(rec, arg);
	if (jv_is_valid(rec))
		rec = write_locked(l, rec);
	unlock(l);
	return rec;
}

static int
cmp_files(const void *a, const void *b)
{
	return strcmp(((const struct lc_ledger_file *)a)->name,
	    ((const struct lc_ledger_file *)b)->name);
}

/* Append dir's *.json files to *v (n entries, room for *cap), sorted. */
static void
list_dir(struct lc_ledger *l, const char *sub, struct lc_ledger_file **v,
    size_t *n, size_t *cap)
{
	char *dir = lc_ledger_path(l, sub);
	struct dirent *de;
	size_t first = *n;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		free(dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		struct lc_ledger_file *f;

		if (len < 6 || len - 5 >= sizeof(f->name) ||
		    de->d_name[0] == '.' ||
		    strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			*v = realloc(*v, *cap * sizeof(**v));
			if (*v == NULL)
				lc_fatal("out of memory");
		}
		f = &(*v)[(*n)++];
		memcpy(f->name, de->d_name, len - 5);
		f->name[len - 5] = '\0';
		f->path = lc_path_join(dir, de->d_name);
	}
	closedir(d);
	free(dir);
	if (*n > first)
		qsort(*v + first, *n - first, sizeof(**v), cmp_files);
}

struct lc_ledger_file *
lc_ledger_files(struct lc_ledger *l, int all, size_t *n)
{
	struct lc_ledger_file *v = NULL;
	size_t cap = 0;

	*n = 0;
	list_dir(l, "sessions", &v, n, &cap);
	if (all)
		list_dir(l, "archive", &v, n, &cap);
	return v;
}

void
lc_ledger_files_free(struct lc_ledger_file *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

jv
lc_ledger_read(const struct lc_ledger_file *f)
{
	jv rec = read_record(f->path, f->name), e;

	if (jv_is_valid(rec))
		return rec;
	e = jv_invalid_get_msg(rec);
	e = jv_object_set(e, jv_string("tool"), jv_string(lc_progname()));
	rec = jv_object_set(jv_object(), jv_string("name"),
	    jv_string(f->name));
	rec = jv_object_set(rec, jv_string("path"), jv_string(f->path));
	return jv_object_set(rec, jv_string("error"), e);
}

jv
lc_ledger_list(struct lc_ledger *l, int all)
{
	struct lc_ledger_file *v;
	jv out = jv_array();
	size_t n, i;

	v = lc_ledger_files(l, all, &n);
	for (i = 0; i < n; i++)
		out = jv_array_append(out, lc_ledger_read(&v[i]));
	lc_ledger_files_free(v, n);
	return out;
}

/*
 * Remove NAME.json.tmp.* beside a session file that is leaving the ledger:
 * every write holds the lock, so under it such a file is a writer's that
 * was killed between its write and its rename (a Ctrl-C to the whole
 * process group).  Called with the lock held.
 */
static void
sweep_tmp(struct lc_ledger *l, const char *name)
{
	char *dir = lc_ledger_path(l, "sessions"), prefix[80];
	struct dirent *de;
	DIR *d;

	snprintf(prefix, sizeof(prefix), "%s.json.tmp.", name);
	if ((d = opendir(dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			char *p;

			if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
				continue;
			p = lc_path_join(dir, de->d_name);
			if (p != NULL)
				unlink(p);
			free(p);
		}
		closedir(d);
	}
	free(dir);
}

int
lc_ledger_archive(struct lc_ledger *l, jv rec, jv *err)
{
	const char *name = lc_str(rec, "name");
	char file[128], ts[32], *path, *cur;
	jv s;
	int rc = 0;

	if (name == NULL || lc_name_check(name, err) == -1) {
		if (name == NULL)
			*err = lc_errorf("bad_record", "record has no name");
		jv_free(rec);
		return -1;
	}
	lc_time_fmt(lc_now(), ts, sizeof(ts));
	ts[4] = ts[7] = ts[13] = ts[16] = '-';	/* no ':' in file names */
	snprintf(file, sizeof(file), "archive/%s-%s.json", name, ts);
	path = lc_ledger_path(l, file);
	if (lock(l, err) == -1) {
		free(path);
		jv_free(rec);
		return -1;
	}
	s = jv_dump_string(jv_copy(rec), JV_PRINT_INDENT_FLAGS(2));
	s = jv_string_append_str(s, "\n");
	if (lc_write_file_atomic(path, jv_string_value(s),
	    (size_t)jv_string_length_bytes(jv_copy(s)), 0600) == -1) {
		*err = sys_error("state_dir", "cannot write", path);
		rc = -1;
	} else {
		char *sp = session_path(l, name);

		unlink(sp);
		free(sp);
		sweep_tmp(l, name);
		if ((cur = lc_ledger_current(l)) != NULL &&
		    strcmp(cur, name) == 0) {
			char *cp = lc_ledger_path(l, "current");

			unlink(cp);
			free(cp);
		}
		free(cur);
	}
	unlock(l);
	jv_free(s);
	jv_free(rec);
	free(path);
	return rc;
}

int
lc_ledger_remove(struct lc_ledger *l, const char *name, jv *err)
{
	char *path, *cur;
	int rc = 0;

	if (lc_name_check(name, err) == -1 || lock(l, err) == -1)
		return -1;
	path = session_path(l, name);
	if (unlink(path) == -1) {
		*err = errno == ENOENT ? lc_errorf("not_found", "no session "
		    "named '%s'", name) : sys_error("state_dir", "cannot remove",
		    path);
		rc = -1;
	}
	sweep_tmp(l, name);
	if ((cur = lc_ledger_current(l)) != NULL && strcmp(cur, name) == 0) {
		char *cp = lc_ledger_path(l, "current");

		unlink(cp);
		free(cp);
	}
	free(cur);
	free(path);
	unlock(l);
	return rc;
}

int
lc_ledger_event(struct lc_ledger *l, const char *file, jv ev, jv *err)
{
	char *path = lc_ledger_path(l, file), ts[32];
	size_t len, off = 0;
	int fd, rc = 0;
	jv s;

	if (!jv_object_has(jv_copy(ev), jv_string("at")))
		ev = jv_object_set(ev, jv_string("at"),
		    jv_string(lc_time_fmt(lc_now(), ts, sizeof(ts))));
	s = jv_string_append_str(jv_dump_string(ev, 0), "\n");
	len = (size_t)jv_string_length_bytes(jv_copy(s));
	if (lock(l, err) == -1) {
		jv_free(s);
		free(path);
		return -1;
	}
	/* O_APPEND and one write per line: lines never interleave. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd == -1) {
		*err = sys_error("state_dir", "cannot append to", path);
		rc = -1;
	}
	while (fd != -1 && off < len) {
		ssize_t w = write(fd, jv_string_value(s) + off, len - off);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1) {
			*err = sys_error("state_dir", "cannot append to", path);
			rc = -1;
			break;
		}
		off += (size_t)w;
	}
	if (fd != -1 && (fsync(fd) == -1 || close(fd) == -1) && rc == 0) {
		*err = sys_error("state_dir", "cannot append to", path);
		rc = -1;
	}
	unlock(l);
	jv_free(s);
	free(path);
	return rc;
}

char *
lc_ledger_current(struct lc_ledger *l)
{
	char *path = lc_ledger_path(l, "current"), buf[PATH_MAX], *base, *dot;
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	free(path);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	base = strrchr(buf, '/');
	base = base ? base + 1 : buf;
	if ((dot = strstr(base, ".json")) != NULL)
		*dot = '\0';
	return lc_xstrdup(base);
}

char *
lc_ledger_current_name(jv *err)
{
	struct lc_ledger l = { NULL, -1 };
	char *name;

	if (lc_ledger_open(&l, err) == -1)
		return NULL;
	name = lc_ledger_current(&l);
	lc_ledger_close(&l);
	return name;
}

int
lc_ledger_set_current(struct lc_ledger *l, const char *name, jv *err)
{
	char target[128], *path = lc_ledger_path(l, "current"), *tmp;
	int rc = 0;

	snprintf(target, sizeof(target), "sessions/%s.json", name);
	tmp = lc_ledger_path(l, "current.tmp");
	unlink(tmp);
	if (symlink(target, tmp) == -1 || rename(tmp, path) == -1) {
		*err = sys_error("state_dir", "cannot update", path);
		unlink(tmp);
		rc = -1;
	}
	free(tmp);
	free(path);
	return rc;
}
