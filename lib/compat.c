/* compat: portable wrappers for random bytes, locks and files. */
#define _GNU_SOURCE		/* fopencookie */
#define _DEFAULT_SOURCE
#define _DARWIN_C_SOURCE
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#ifdef __GLIBC__
#include <stdio_ext.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"

int
lc_random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	int fd;

	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while (n > 0) {
		ssize_t r = read(fd, p, n);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	close(fd);
	return 0;
}

int
lc_random_string(char *out, size_t n, const char *alphabet)
{
	size_t k = strlen(alphabet), i = 0;
	/* Largest multiple of k below 256: reject above it, so no bias. */
	unsigned limit = 256 - 256 % (unsigned)k;
	unsigned char b[64];

	while (i < n) {
		size_t j;

		if (lc_random_bytes(b, sizeof(b)) == -1)
			return -1;
		for (j = 0; j < sizeof(b) && i < n; j++)
			if (b[j] < limit)
				out[i++] = alphabet[b[j] % k];
	}
	out[n] = '\0';
	return 0;
}

int
lc_lock_fd(int fd, int exclusive, int nonblock)
{
	int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonblock ? LOCK_NB : 0);

	while (flock(fd, op) == -1) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

int
lc_unlock_fd(int fd)
{
	return flock(fd, LOCK_UN);
}

int
lc_mkdirs(const char *path, int mode)
{
	char buf[PATH_MAX];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(buf, (mode_t)mode) == -1 && errno != EEXIST)
				return -1;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

const char *
lc_home(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h != NULL && *h != '\0')
		return h;
	pw = getpwuid(getuid());
	return pw != NULL && pw->pw_dir != NULL ? pw->pw_dir : "/";
}

char *
lc_path_join(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s%s%s", dir,
		    *dir && dir[strlen(dir) - 1] == '/' ? "" : "/", file);
	return p;
}

char *
lc_expand_home(const char *path)
{
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0'))
		return lc_path_join(lc_home(), path[1] ? path + 2 : "");
	return strdup(path);
}

int
lc_read_file(const char *path, char **data, size_t *len)
{
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	for (;;) {
		ssize_t r;

		if (n + 4096 + 1 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);

			if (nb == NULL) {
				errno = ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto fail;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*data = buf;
	if (len != NULL)
		*len = n;
	return 0;
fail:
	saved = errno;
	close(fd);
	free(buf);
	errno = saved;
	return -1;
}

int
lc_write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
	char tmp[PATH_MAX];
	const char *p = data;
	int fd, saved;

	/* A unique temp name, so threads and processes never share one. */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >=
	    (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = mkstemp(tmp)) == -1)
		return -1;
	if (fchmod(fd, (mode_t)mode) == -1)
		goto fail;
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			goto fail;
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	return 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

long long
lc_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
lc_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

#ifdef __GLIBC__
struct memfile {
	char	**data;
	size_t	 *len, cap;
};

static ssize_t
memfile_write(void *c, const char *buf, size_t n)
{
	struct memfile *m = c;

	if (*m->len + n + 1 > m->cap) {
		size_t cap = m->cap ? m->cap : 65536;
		char *d;

		while (cap < *m->len + n + 1)
			cap *= 2;
		if ((d = realloc(*m->data, cap)) == NULL)
			return -1;
		*m->data = d;
		m->cap = cap;
	}
	memcpy(*m->data + *m->len, buf, n);
	*m->len += n;
	(*m->data)[*m->len] = '\0';
	return (ssize_t)n;
}

static int
memfile_close(void *c)
{
	free(c);
	return 0;
}
#endif

FILE *
lc_memfile(char **data, size_t *len)
{
#ifdef __GLIBC__
	/* open_memstream's stream copies through stdio's generic path and
	 * locks on every call; a cookie stream with a file's buffer takes
	 * the fast path, which matters at one call per character. */
	cookie_io_functions_t io = { NULL, memfile_write, NULL,
	    memfile_close };
	struct memfile *m = calloc(1, sizeof(*m));
	FILE *fp;

	if (m == NULL)
		return NULL;
	*data = NULL;
	*len = 0;
	m->data = data;
	m->len = len;
	if ((fp = fopencookie(m, "w", io)) == NULL) {
		free(m);
		return NULL;
	}
	setvbuf(fp, NULL, _IOFBF, 65536);
	__fsetlocking(fp, FSETLOCKING_BYCALLER);
	return fp;
#else
	return open_memstream(data, len);
#endif
}

void
lc_stdout_unlocked(void)
{
#ifdef __GLIBC__
	__fsetlocking(stdout, FSETLOCKING_BYCALLER);
#endif
}

#ifdef __linux__
struct lc_evq {
	int	 fd;
};

struct lc_evq *
lc_evq_new(void)
{
	struct lc_evq *q = malloc(sizeof(*q));

	if (q != NULL && (q->fd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		free(q);
		q = NULL;
	}
	return q;
}

int
lc_evq_set(struct lc_evq *q, int fd, int events)
{
	struct epoll_event e;

	memset(&e, 0, sizeof(e));
	e.data.fd = fd;
	e.events = (events & LC_EV_IN ? EPOLLIN : 0) |
	    (events & LC_EV_OUT ? EPOLLOUT : 0);
	if (events == 0)
		return epoll_ctl(q->fd, EPOLL_CTL_DEL, fd, &e) == -1 &&
		    errno != ENOENT && errno != EBADF ? -1 : 0;
	if (epoll_ctl(q->fd, EPOLL_CTL_MOD, fd, &e) == 0)
		return 0;
	return errno == ENOENT ? epoll_ctl(q->fd, EPOLL_CTL_ADD, fd, &e) : -1;
}

int
lc_evq_wait(struct lc_evq *q, struct lc_ev *ev, int max, long ms)
{
	struct epoll_event e[256];
	int n, i;

	if (max > 256)
		max = 256;
	if ((n = epoll_wait(q->fd, e, max, (int)ms)) <= 0)
		return n;
	for (i = 0; i < n; i++) {
		ev[i].fd = e[i].data.fd;
		ev[i].events = (e[i].events & EPOLLIN ? LC_EV_IN : 0) |
		    (e[i].events & EPOLLOUT ? LC_EV_OUT : 0) |
		    (e[i].events & (EPOLLERR | EPOLLHUP) ? LC_EV_ERR : 0);
	}
	return n;
}

void
lc_evq_free(struct lc_evq *q)
{
	if (q != NULL)
		close(q->fd);
	free(q);
}
#else
struct lc_evq {
	struct pollfd	*p;
	int		 n, cap;
};

struct lc_evq *
lc_evq_new(void)
{
	return calloc(1, sizeof(struct lc_evq));
}

int
lc_evq_set(struct lc_evq *q, int fd, int events)
{
	int i;

	for (i = 0; i < q->n && q->p[i].fd != fd; i++)
		;
	if (events == 0) {
		if (i < q->n)
			q->p[i] = q->p[--q->n];
		return 0;
	}
	if (i == q->n) {
		if (q->n == q->cap) {
			int cap = q->cap ? q->cap * 2 : 64;
			struct pollfd *p = realloc(q->p, (size_t)cap *
			    sizeof(*p));

			if (p == NULL)
				return -1;
			q->p = p;
			q->cap = cap;
		}
		q->p[q->n++].fd = fd;
	}
	q->p[i].events = (short)((events & LC_EV_IN ? POLLIN : 0) |
	    (events & LC_EV_OUT ? POLLOUT : 0));
	return 0;
}

int
lc_evq_wait(struct lc_evq *q, struct lc_ev *ev, int max, long ms)
{
	int n, i, k = 0;

	if ((n = poll(q->p, (nfds_t)q->n, (int)ms)) <= 0)
		return n;
	for (i = 0; i < q->n && k < max; i++) {
		if (q->p[i].revents == 0)
			continue;
		ev[k].fd = q->p[i].fd;
		ev[k++].events = (q->p[i].revents & POLLIN ? LC_EV_IN : 0) |
		    (q->p[i].revents & POLLOUT ? LC_EV_OUT : 0) |
		    (q->p[i].revents & (POLLERR | POLLHUP) ? LC_EV_ERR : 0);
	}
	return k;
}

void
lc_evq_free(struct lc_evq *q)
{
	if (q != NULL)
		free(q->p);
	free(q);
}
#endif
