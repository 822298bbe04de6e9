/*
 * lc: what every linode-coder tool shares: its name, messages on stderr,
 * exit codes, error values and a growable byte buffer.
 *
 * lib/ never prints and never exits, except through the functions here that
 * say so (lc_warnx, lc_fatal, lc_usage, lc_help), which tools call.
 */
#ifndef LC_H
#define LC_H

#include <stdarg.h>
#include <stddef.h>
#include <jv.h>

#define LC_VERSION "0.1.0"

enum {
	LC_EXIT_OK = 0,		/* every record handled */
	LC_EXIT_PARTIAL = 1,	/* some records carry "error" */
	LC_EXIT_USAGE = 2,	/* usage error, nothing read */
	LC_EXIT_FATAL = 3	/* config, credentials, input, I/O, memory */
};

#if defined(__GNUC__) || defined(__clang__)
#define LC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LC_PRINTF(f, a)
#endif

extern int lc_quiet;		/* -q: no progress (errors still shown) */
extern int lc_verbose;		/* -v */

/* Set the program name and ignore SIGPIPE (a closed pipe is an I/O error). */
void	lc_init(const char *progname);
const char *lc_progname(void);

/* "prog: message" on stderr; control characters shown as '?'. */
void	lc_warnx(const char *fmt, ...) LC_PRINTF(1, 2);
void	lc_vwarnx(const char *fmt, va_list ap) LC_PRINTF(1, 0);
/* lc_warnx, then exit 3. */
_Noreturn void lc_fatal(const char *fmt, ...) LC_PRINTF(1, 2);
/* An error value's message on stderr (freed), then exit 3. Consumes. */
_Noreturn void lc_fatal_err(jv err);
/* Optional message, the usage line on stderr, then exit 2. */
_Noreturn void lc_usage(const char *usage, const char *fmt, ...)
	    LC_PRINTF(2, 3);
/* After getopt returned '?': names the bad option, prints usage, exit 2. */
_Noreturn void lc_bad_option(const char *usage, char *const argv[]);
/* The help text on stdout, then exit 0. */
_Noreturn void lc_help(const char *text);
/* Progress on stderr, only on a tty, without -q, at most every 500 ms. */
void	lc_progress(const char *fmt, ...) LC_PRINTF(1, 2);
/* Always-shown informational line on stderr (not an error), unless -q. */
void	lc_info(const char *fmt, ...) LC_PRINTF(1, 2);
/* Ends a progress line, so later output starts on a fresh line. */
void	lc_progress_done(void);

/*
 * Error values: jv_invalid_with_msg({"code","message"}).
 * Returns owned.
 */
jv	lc_errorf(const char *code, const char *fmt, ...) LC_PRINTF(2, 3);
/* Code and message of an error value; borrows err, returns static/owned. */
const char *lc_error_code(jv err);	/* borrows; a per-thread buffer */
/* Message of an error value as an owned C string (malloc'd). Borrows err. */
char	*lc_error_message(jv err);
/*
 * Attach an error value to a record as its "error" member, with the tool's
 * name, and print "prog: subject: message" on stderr. Consumes both.
 * rec may be invalid or not an object: then a record {"error":...} is made.
 */
jv	lc_attach_error(jv rec, jv err);
/* Turn an invalid jv without a message into an error value. Consumes. */
jv	lc_error_from_invalid(jv v, const char *code);

/* Borrowed string field of an object, or NULL. Borrows obj. */
const char *lc_str(jv obj, const char *key);
/* Number field, or def. Borrows obj. */
double	lc_num(jv obj, const char *key, double def);
/* Boolean field (true only for JSON true). Borrows obj. */
int	lc_bool(jv obj, const char *key);
/* Field of an object, owned; null when obj is not an object or lacks it. */
jv	lc_get(jv obj, const char *key);	/* borrows obj */
/* A record's display name for messages: its name, else "-". Borrows. */
const char *lc_subject(jv rec);

/* Growable byte buffer, always NUL-terminated once non-empty. */
struct lc_buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};
#define LC_BUF_INIT { NULL, 0, 0 }
int	lc_buf_add(struct lc_buf *b, const void *p, size_t n);
int	lc_buf_addstr(struct lc_buf *b, const char *s);
int	lc_buf_printf(struct lc_buf *b, const char *fmt, ...) LC_PRINTF(2, 3);
void	lc_buf_reset(struct lc_buf *b);
void	lc_buf_free(struct lc_buf *b);
/* Append s to b as one shell word in single quotes. -1 on no memory. */
int	lc_shquote(struct lc_buf *b, const char *s);

/* malloc that aborts with exit 3 on failure (for tools, not lib). */
void	*lc_xmalloc(size_t n);
char	*lc_xstrdup(const char *s);

#endif
