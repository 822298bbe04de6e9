/*
 * session: the one owner of a session on this machine. Its files in the
 * state directory (lib/ledger is the storage under them: atomic writes,
 * the lock, the listing), the check of a stored record's types, the live
 * fields, the merge of new fields, the events in ledger.jsonl (one schema
 * per kind) and the archive. No network library: every tool links it.
 *
 * The owner: each ledger has an id, made once at random and kept in the
 * state directory as "owner". Every instance and firewall a ledger makes
 * carries the tag "lc-owner:<id>" beside "linode-coder", so lc-watch can
 * tell its own VMs in the account (orphans included: a VM with the tag
 * and no readable record) from those made from another machine.
 */
#ifndef LC_SESSION_H
#define LC_SESSION_H

#include <stddef.h>
#include <time.h>

#include <jv.h>

#include "ledger.h"

#define LC_OWNER_TAG	"lc-owner:"
#define LC_OWNER_LEN	16	/* hex digits */

/* A session's files, beside its record. */
enum lc_session_file {
	LC_SESSION_RECORD,	/* sessions/<name>.json */
	LC_SESSION_KNOWN_HOSTS,	/* <name>.known_hosts: the pinned host key */
	LC_SESSION_ENV,		/* <name>.env: aider's settings and vLLM key */
	LC_SESSION_LOCK,	/* locks/<name>.lock: one lc-watch at a time */
	LC_SESSION_UP		/* locks/<name>.up: held while brought up */
};

/* The path of one of a session's files; malloc'd. */
char	*lc_session_path(struct lc_ledger *l, const char *name,
	    enum lc_session_file f);

/*
 * A process bringing a session up (lc-create from before its record is
 * written to ready, lc-heal while it restarts vLLM) holds a shared lock on
 * locks/<name>.up until it exits. A session that is not ready and that no
 * process holds was left by a start that stopped (killed, a closed
 * laptop): lc-watch treats it as interrupted once LC_ORPHAN_GRACE has
 * passed.
 *
 * lc_session_hold takes the lock (the fd is close-on-exec and kept for
 * the life of the process; closing it lets go). Returns the fd, or -1
 * when the state directory cannot hold one (the start goes on: lc-watch
 * then sees no holder and judges by the grace alone).
 * lc_session_held: 1 when a process holds it, 0 when none does.
 */
int	lc_session_hold(struct lc_ledger *l, const char *name);
int	lc_session_held(struct lc_ledger *l, const char *name);

/*
 * This ledger's owner id into buf (LC_OWNER_LEN + 1 bytes at least). When
 * there is none yet and create is set, one is made and kept (0600).
 * 0, or -1 with *err (state_dir: unreadable, damaged, or not writable
 * when one had to be made).
 */
int	lc_session_owner(struct lc_ledger *l, int create, char *buf,
	    size_t len, jv *err);
/* "lc-owner:<id>" into buf. Returns buf. */
char	*lc_session_owner_tag(const char *owner, char *buf, size_t len);
/* The owner id in an instance's or firewall's tags (borrowed) into buf;
 * 1 when it has one, else 0 (buf ""). */
int	lc_session_owner_of(jv obj, char *buf, size_t len);

/*
 * Check the types of every documented field of a stored record (borrowed)
 * whose file is named name: an object, "name" a string equal to name,
 * numbers, strings, objects and arrays where the record format says so
 * (null is always allowed but for "name"). 0, or -1 with *err
 * (corrupt_record naming the field).
 */
int	lc_session_check(jv rec, const char *name, jv *err);

/* The documented session fields, null where the record lacks them.
 * Consumes rec, returns owned. */
jv	lc_session_fill(jv rec);
/* A record with live "cost_usd" and "uptime_s" from its times and price.
 * Consumes rec. */
jv	lc_session_live(jv rec, time_t now);

/*
 * Merge fields (consumed) into the stored record of name, under the
 * ledger's lock. Returns the stored record (owned) or an error value
 * (not_found when there is no record; nothing is written then).
 */
jv	lc_session_merge(struct lc_ledger *l, const char *name, jv fields);

/*
 * The local port for a session's tunnel: rec's (borrowed) local_port,
 * else the first from 18000 that no other session in the ledger records
 * (l NULL: 18000). Whether the port is free is for the caller to learn
 * by binding it.
 */
int	lc_session_local_port(struct lc_ledger *l, jv rec);
/* Does another session than name record local_port port? 1 or 0 (l NULL:
 * 0). */
int	lc_session_port_taken(struct lc_ledger *l, const char *name,
	    int port);
/*
 * The session's tunnel listens on 127.0.0.1:port: record it as the
 * record's local_port and, unless the session is public (its env file
 * names the VM's address), make the env file's OPENAI_API_BASE name it,
 * the other lines kept. No env file yet (not ready): the record only.
 * 0, or -1 with *err.
 */
int	lc_session_set_local_port(struct lc_ledger *l, const char *name,
	    int port, jv *err);

/*
 * Append one event to ledger.jsonl: {"event": kind} with the fields its
 * kind takes from rec (borrowed), then extra's members (consumed; null
 * for none), then "at" (now, unless extra or the kind sets it). Kinds:
 * created, adopted, ready, extended, forgotten, destroyed. 0, or -1 with
 * *err.
 */
int	lc_session_event(struct lc_ledger *l, const char *kind, jv rec,
	    jv extra, jv *err);
/* Does ev (borrowed) have its kind's fields, with the right types? 0, or
 * -1 with *err (bad_event). lc-sessions cost reads only events that do. */
int	lc_session_event_check(jv ev, jv *err);

/*
 * Archive a session whose VM is gone: state "destroyed", destroyed_at
 * now, the final cost_usd (a started hour bills whole, so never less than
 * one hour's price), the record moved to archive/, its known_hosts and
 * env files removed (the key and the host key die with the VM), and a
 * "destroyed" event with reason and by (either may be NULL). Consumes
 * rec; returns the archived record or an error value (nothing archived).
 * A failed event append only sets *warn (malloc'd). Thread-safe with one
 * ledger handle per thread.
 */
jv	lc_session_archive(struct lc_ledger *l, jv rec, const char *reason,
	    const char *by, char **warn);

/*
 * A group's node i (lc-create --nodes; 0 is the head) as a record of its
 * own: the session's record (borrowed) with that node's address as
 * "ipv4" and ssh.host and its "linode_id", the one host key and API key
 * kept. Null when the group has no node i or it has no address yet.
 */
jv	lc_session_node(jv rec, int i);

#endif
