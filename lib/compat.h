/*
 * compat: the few things that differ between Linux and macOS: random bytes,
 * file locks, reading a symlink, and path helpers.
 */
#ifndef LC_COMPAT_H
#define LC_COMPAT_H

#include <stddef.h>
#include <stdio.h>

/* Fill buf with n cryptographically random bytes. 0, or -1. */
int	lc_random_bytes(void *buf, size_t n);
/* Random string of n characters from alphabet (n+1 bytes in out). */
int	lc_random_string(char *out, size_t n, const char *alphabet);
/* flock: exclusive (1) or shared (0); nonblock: -1 with EWOULDBLOCK. */
int	lc_lock_fd(int fd, int exclusive, int nonblock);
int	lc_unlock_fd(int fd);
/* mkdir -p with mode for each new directory. 0, or -1 with errno. */
int	lc_mkdirs(const char *path, int mode);
/* The user's home directory (HOME, else the password database). */
const char *lc_home(void);
/* Join a directory and a file name into a malloc'd path. */
char	*lc_path_join(const char *dir, const char *file);
/* Expand a leading "~/" to the home directory. malloc'd. */
char	*lc_expand_home(const char *path);
/* Whole file into a malloc'd NUL-terminated buffer; -1 with errno. */
int	lc_read_file(const char *path, char **data, size_t *len);
/* Write data to path atomically (temp, fsync, rename) with mode. */
int	lc_write_file_atomic(const char *path, const void *data, size_t len,
	    int mode);
/* Let this thread write stdout without stdio's per-call lock (jv_dumpf
 * writes a character at a time); a no-op where unsupported. */
void	lc_stdout_unlocked(void);
/* A stream, for one thread, that collects what is written to it in a
 * malloc'd buffer: *data and *len are valid after fclose (free *data).
 * NULL when out of memory. */
FILE	*lc_memfile(char **data, size_t *len);
/* Monotonic clock in milliseconds. */
long long lc_mono_ms(void);
/* Sleep for ms milliseconds, the whole of it (restarts on EINTR). */
void	lc_sleep_ms(long ms);

/*
 * An event queue over many sockets: epoll(7) on Linux, so that a wait
 * costs what is ready, not how many are watched; poll(2) elsewhere.
 * lc_evq_set watches fd for LC_EV_IN and/or LC_EV_OUT (0: stops watching
 * it); lc_evq_wait fills up to max events in at most ms milliseconds and
 * returns how many (0 on a timeout, -1 with errno). NULL/-1 on failure.
 */
enum { LC_EV_IN = 1, LC_EV_OUT = 2, LC_EV_ERR = 4 };
struct lc_ev {
	int	fd;
	int	events;
};
struct lc_evq;
struct lc_evq *lc_evq_new(void);
int	lc_evq_set(struct lc_evq *q, int fd, int events);
int	lc_evq_wait(struct lc_evq *q, struct lc_ev *ev, int max, long ms);
void	lc_evq_free(struct lc_evq *q);

#endif
