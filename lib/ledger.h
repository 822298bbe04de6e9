/*
 * ledger: the sessions on this machine, under $XDG_STATE_HOME/linode-coder
 * (default ~/.local/state/linode-coder), mode 0700:
 *   sessions/<name>.json   one record each, 0600, written atomically
 *   archive/<name>-<time>.json   destroyed sessions
 *   current                symlink to the current session's file
 *   ledger.jsonl           append-only events (created, ready, destroyed...)
 *   watch.jsonl            what lc-watch decided and why
 *   <name>.known_hosts, <name>.env   per-session files
 * Every record write holds an exclusive flock on .lock, so a cron job and a
 * user's command can both write without losing either's update.
 */
#ifndef LC_LEDGER_H
#define LC_LEDGER_H

#include <time.h>
#include <jv.h>

struct lc_ledger {
	char	*dir;		/* the state directory */
	int	 lockfd;	/* .lock, opened on first use */
};

/*
 * Open (and create, mode 0700) the state directory. 0, or -1 with *err
 * (state_dir: not writable, not a directory).
 */
int	lc_ledger_open(struct lc_ledger *l, jv *err);
/* The same without creating or checking for writes, for a guard that
 * must act even when the directory is read-only or full: reads work,
 * every write fails with its own error. 0, or -1 with *err. */
int	lc_ledger_open_ro(struct lc_ledger *l, jv *err);
void	lc_ledger_close(struct lc_ledger *l);
/* Path of a file in the state directory; malloc'd. */
char	*lc_ledger_path(struct lc_ledger *l, const char *file);
/* Session names: [a-z0-9-]{1,32}, not a verb. 0, or -1 with *err. */
int	lc_name_check(const char *name, jv *err);
/*
 * The session's record: owned, or an error value (not_found,
 * corrupt_record naming the path, unsafe_file for a symlink).
 */
jv	lc_ledger_get(struct lc_ledger *l, const char *name);
/* Write a record (consumes); returns it, or an error value. */
jv	lc_ledger_put(struct lc_ledger *l, jv rec);
/*
 * Read-modify-write under the lock: fn gets the stored record (consumed)
 * and returns the new one (or an error value, and nothing is written).
 * Returns the written record or the error. If the session does not exist
 * fn gets the not_found error value as rec (it may create one).
 */
jv	lc_ledger_update(struct lc_ledger *l, const char *name,
	    jv (*fn)(jv rec, void *arg), void *arg);
/* Every active session (archived too if all), by name; corrupt files come
 * as error records with "path". Returns an owned array. */
jv	lc_ledger_list(struct lc_ledger *l, int all);
/*
 * The same in two steps, for readers that split the work between threads:
 * the record files (sorted by name, archived after active), then one
 * record read as lc_ledger_list gives it. lc_ledger_read touches no shared
 * jv value, so threads may call it at once on different files.
 */
struct lc_ledger_file {
	char	*path;
	char	 name[256];	/* the file name without .json */
};
struct lc_ledger_file *lc_ledger_files(struct lc_ledger *l, int all,
	    size_t *n);
void	lc_ledger_files_free(struct lc_ledger_file *v, size_t n);
jv	lc_ledger_read(const struct lc_ledger_file *f);
/* Move a session to archive/ (consumes rec, written there as given). */
int	lc_ledger_archive(struct lc_ledger *l, jv rec, jv *err);
/* Remove a session's file (and current, if it points there). */
int	lc_ledger_remove(struct lc_ledger *l, const char *name, jv *err);
/* Append one whole line to ledger.jsonl or watch.jsonl. Consumes ev; adds
 * "at" when missing. */
int	lc_ledger_event(struct lc_ledger *l, const char *file, jv ev, jv *err);
/* current: the name it points at (malloc'd) or NULL; set it. */
char	*lc_ledger_current(struct lc_ledger *l);
/* The same from a handle of its own: the name (malloc'd), or NULL with
 * *err set when the state directory cannot be opened, or NULL with *err
 * left invalid when there is no current session. */
char	*lc_ledger_current_name(jv *err);
int	lc_ledger_set_current(struct lc_ledger *l, const char *name, jv *err);

#endif
