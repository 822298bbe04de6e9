/*
 * ready: the stages between an instance that is "running" and a session
 * that serves, each with its own time limit, error code and a line on
 * stderr when it starts and ends:
 *   1 ssh         the VM answers with its pinned host key   ready_ssh
 *   2 secrets     vLLM API key (and HF token) pushed into a
 *                 root-only file; the session's env file     ready_secrets
 *   3 cloud-init  phases followed live; cloud-init's status  ready_cloudinit
 *   4 gpu         nvidia-smi healthy                         ready_gpu
 *   5 health      vLLM /health 200 on the VM's loopback      ready_health
 *   6 completion  one real chat completion: time to first
 *                 token and tokens/s go into the record      ready_completion
 * A login the VM refuses is ssh_auth in any stage, at once: a wrong key
 * does not come right by waiting.
 * Secrets never go into argv, records or user data: they travel on the
 * SSH channel's stdin into files of mode 0600.
 */
#ifndef LC_READY_H
#define LC_READY_H

#include <jv.h>

#include "config.h"
#include "ledger.h"

enum lc_stage {
	LC_STAGE_SSH, LC_STAGE_SECRETS, LC_STAGE_CLOUDINIT, LC_STAGE_GPU,
	LC_STAGE_HEALTH, LC_STAGE_COMPLETION, LC_STAGE_COUNT
};

struct lc_ready_opts {
	long	 limit_s[LC_STAGE_COUNT];	/* 0: the default */
	long	 total_s;		/* all stages together; 0: none */
	int	 first;			/* first stage to run (switch-model: 4) */
	int	 stop;			/* run stages before this; 0: all */
	/*
	 * For a public session whose record has no "public_allow": once the
	 * SSH stage is connected, the address the VM sees the connection
	 * come from (SSH_CONNECTION's first field, as "a.b.c.d/32" or
	 * "x:y::z/128") is handed to admit, which opens port 8000 to it
	 * and may change *rec. 0, or -1 with *err: the stage fails. An
	 * address the VM does not tell fails the stage (ready_ssh), so a
	 * public session never looks reachable with port 8000 closed.
	 * NULL: no such step (the address is not read).
	 */
	int	(*admit)(void *arg, jv *rec, const char *addr, jv *err);
	void	*admit_arg;
};

/*
 * The client address in an SSH_CONNECTION value ("client port server
 * port") as a one-host prefix into out: "a.b.c.d/32", or "x::y/128"
 * (an IPv4-mapped IPv6 address gives its IPv4 /32). 0, or -1 when the
 * first field is no IP address.
 */
int	lc_ready_client_prefix(const char *ssh_connection, char *out,
	    size_t len);

/* The stage's name ("cloud-init") and error code ("ready_cloudinit"). */
const char *lc_ready_stage_name(int stage);
const char *lc_ready_stage_code(int stage);

/*
 * Run the stages from o->first for the session record rec (consumed),
 * saving progress in the ledger. Returns the record: state "ready" with
 * ready_at, ttft_s and tokens_per_s, or state "failed" and an error value
 * (the caller attaches it) in *err with the stage's code. 0 or -1.
 */
int	lc_ready_wait(struct lc_config *cfg, struct lc_ledger *l, jv *rec,
	    const struct lc_ready_opts *o, jv *err);

/*
 * The completion stage alone, for a session already serving (lc-heal,
 * after a fix): one real streamed chat completion within limit_s (0: the
 * stage's default); sets ttft_s and tokens_per_s in *rec and saves
 * nothing. l gives the API key (NULL: none). 0, or -1 with *err
 * (ready_completion).
 */
/*
 * A group (lc-create --nodes): node i of rec's "group" (borrowed) through
 * the stages ssh, secrets, cloud-init and gpu (up to o->stop), as the
 * session seen at that node's address; saves nothing. Errors carry the
 * stage's code and the node's label. 0 or -1.
 */
int	lc_ready_node(struct lc_config *cfg, struct lc_ledger *l, jv rec, int i,
	    const struct lc_ready_opts *o, jv *err);
/*
 * The group's ray stage, on the head: every node's VPC address alive in
 * Ray (ray.nodes() in the vllm container), within limit_s (0: 900).
 * Sets nodes_joined, or failed_stage "ray" and *err (ready_ray) naming
 * the nodes that never joined. 0 or -1.
 */
int	lc_ready_ray(struct lc_config *cfg, struct lc_ledger *l, jv *rec,
	    long limit_s, jv *err);

int	lc_ready_completion(struct lc_config *cfg, struct lc_ledger *l, jv *rec,
	    long limit_s, jv *err);

/*
 * The session's env file (<state>/<name>.env, 0600): OPENAI_API_BASE,
 * OPENAI_API_KEY, AIDER_MODEL. Reads the key back (malloc'd) or NULL.
 */
char	*lc_ready_api_key(struct lc_ledger *l, const char *name);
/* <state>/<name>.env; malloc'd. */
char	*lc_ready_env_path(struct lc_ledger *l, const char *name);
/* Write the env file for rec with this API key (sets rec's local_port).
 * 0, or -1 with *err. */
int	lc_ready_env_write(struct lc_ledger *l, jv *rec, const char *key,
	    jv *err);

#endif
