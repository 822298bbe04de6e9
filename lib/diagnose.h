/*
 * diagnose: why a vLLM server failed to start, read from its log.
 *
 * The log streams through: feed it in chunks of any size (lines may be split
 * across chunks), then ask for the result. Memory stays bounded whatever the
 * log's size: a line is matched on its first LC_DIAG_LINE_MAX bytes, and only
 * the evidence of the current best candidate, a ring of the last error lines
 * and a few facts are kept.
 *
 * Lines are normalised before matching: ANSI colour codes (real or pasted as
 * "^[[0;36m" or "[0;36m"), NUL and other control bytes, docker's -t
 * timestamps, compose "name  | " and journald "Mon DD hh:mm:ss host unit[pid]:"
 * prefixes, "(VllmWorkerProcess pid=N)", "(RayWorkerWrapper pid=N, ip=..)",
 * "(EngineCore_DP0 pid=N)", "[rank0]:" prefixes and Ray's "[repeated Nx
 * across cluster]" suffix are removed, then the logging header ("ERROR 02-19
 * 19:18:42 file.py:242]", "INFO 04-17 15:10:09 [engine.py:448]", "ERROR:    ",
 * "INFO worker.py:1786 --") gives the level. Indented lines are traceback
 * frames or source: they only hint, they never decide.
 *
 * The decision: the last decisive line (an exception or error message that
 * names a known failure) wins, unless the server was seen listening after it
 * ("healthy"). With no decisive line, traceback frames that point at a known
 * failure decide; else "unknown", with the last error lines as evidence.
 */
#ifndef LC_DIAGNOSE_H
#define LC_DIAGNOSE_H

#include <stddef.h>
#include <jv.h>

#define LC_DIAG_LINE_MAX 4096	/* bytes of a line looked at */

enum lc_diag_category {
	LC_DIAG_UNKNOWN,
	LC_DIAG_HEALTHY,
	LC_DIAG_OOM_LOAD,
	LC_DIAG_KV_CACHE,
	LC_DIAG_NCCL,
	LC_DIAG_TP_MISMATCH,
	LC_DIAG_DTYPE,
	LC_DIAG_MODEL_ACCESS,
	LC_DIAG_UNSUPPORTED_ARCH,
	LC_DIAG_PORT_IN_USE,
	LC_DIAG_DRIVER,
	LC_DIAG_NCATEGORIES
};

struct lc_diag;

/* A fresh classifier, or NULL when out of memory. */
struct lc_diag *lc_diag_new(void);
void	lc_diag_free(struct lc_diag *d);
/* Feed len bytes of the log (any bytes: NUL, invalid UTF-8). 0, or -1 when
 * out of memory. */
int	lc_diag_feed(struct lc_diag *d, const void *buf, size_t len);
/*
 * The diagnosis so far (an unterminated last line counts as a line):
 *   {"category", "evidence": [lines], "facts": {...}, "fix": {...},
 *    "message", "lines": N}
 * Evidence lines are the normalised text, valid UTF-8, at most ~500 bytes.
 * Returns owned. The classifier may be fed more afterwards.
 */
jv	lc_diag_result(struct lc_diag *d);
/* The diagnosis of a whole log held in memory. Returns owned. */
jv	lc_diagnose_text(const char *text, size_t len);

/* "oom_load", ...; NULL for an out-of-range value. */
const char *lc_diag_category_name(enum lc_diag_category c);
/* The category of a name; -1 when unknown. */
int	lc_diag_category_parse(const char *name);

#endif
