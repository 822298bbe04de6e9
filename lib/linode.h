/*
 * linode: the Linode API v4 calls linode-coder makes, over lib/http.
 * Every call returns an owned jv: the parsed answer, or an error value
 * {"code","message","status"} whose message reads like
 * "Linode API 400: region: region is not valid". Codes: api_auth (401),
 * api_forbidden (403), not_found (404), api_status (other 4xx),
 * api_unavailable (5xx or 429 after the retries), timeout, http_transport,
 * bad_reply (not the JSON expected).
 *
 * A session's VM carries the label "lc-<name>" and the tags
 * "linode-coder" and "lc-session:<name>"; the functions that delete check
 * both before they act.
 */
#ifndef LC_LINODE_H
#define LC_LINODE_H

#include <time.h>

#include <jv.h>

#include "config.h"
#include "http.h"
#include "ledger.h"

#define LC_LINODE_TAG		"linode-coder"
#define LC_LINODE_SESSION_TAG	"lc-session:"
/* Every node of a session's group (lc-create --nodes) also carries
 * "lc-group:<name>"; the head is labelled "lc-<name>", worker i
 * "lc-<name>.w<i>"; their VPC "lc-<name>" has one subnet, the head at
 * its address .2, worker i at .2+i. */
#define LC_LINODE_GROUP_TAG	"lc-group:"
#define LC_VPC_SUBNET		"10.64.0.0/24"
#define LC_VPC_PREFIX		"10.64.0."
/* The VPC interface on the VM: the second in "interfaces", so eth1. */
#define LC_VPC_IFACE		"eth1"

/*
 * HTTP options from the configuration: LC_API_URL, LC_HTTP_TIMEOUT,
 * LC_HTTP_RETRIES and, when want_token, the token (*token malloc'd; the
 * caller wipes and frees it; o->token points at it). 0, or -1 with *err
 * (no_token, empty_token, bad_config).
 */
int	lc_linode_opts(struct lc_config *c, int want_token,
	    struct lc_http_opts *o, char **token, jv *err);
/* Free a token from lc_linode_opts, wiping it first. */
void	lc_linode_token_free(char *token);

/* "lc-<name>" into buf; the session tag "lc-session:<name>" likewise. */
char	*lc_linode_label(const char *name, char *buf, size_t len);
char	*lc_linode_session_tag(const char *name, char *buf, size_t len);
/* The firewall's label (3-32 characters, derived from the name). */
char	*lc_linode_fw_label(const char *name, char *buf, size_t len);

/* An API error value from a status and its body (borrowed). */
jv	lc_linode_error(long status, const char *body);
/*
 * method path [X-Filter] [body] (body consumed; jv_null() for none).
 * flags: LC_HTTP_ONCE for a create. Returns the parsed answer (owned)
 * or an error value.
 */
jv	lc_linode_call(struct lc_http *h, const char *method, const char *path,
	    jv filter, jv body, int flags);
/* Every item of a list endpoint, page after page (page_size 500).
 * filter (consumed) may be jv_null(). Returns an owned array or error. */
jv	lc_linode_list(struct lc_http *h, const char *path, jv filter);

/* Hourly and monthly USD of a type (borrowed) in a region: the region's
 * price when listed, else the base price. 0 means unknown, not free. */
void	lc_linode_price(jv type, const char *region, double *hourly,
	    double *monthly);
/* The session state for an instance status ("provisioning" ->
 * "creating", "booting" -> "booting", "running" -> "provisioning",
 * "offline" -> "failed", ...). */
const char *lc_linode_state(const char *status);

/*
 * Fill a session record (consumed) from its instance (borrowed): id,
 * label, tags, region, type, image, gpus, ipv4, state, prices, ssh
 * {host, port, user, known_hosts}, endpoint, created_at (created), and
 * from the configuration deadline_at, idle_timeout_s, budget_usd. Fields
 * the record already has (model, vllm, ...) stay. Returns the record.
 */
jv	lc_linode_session(jv rec, jv inst, double hourly, double monthly,
	    time_t created, struct lc_config *c, const char *known_hosts);

/* One instance, or an error value (not_found once it is gone). */
jv	lc_linode_instance_get(struct lc_http *h, double id);
/* Every instance carrying tag. Returns an owned array or error. */
jv	lc_linode_instances_tagged(struct lc_http *h, const char *tag);
/* The session's instance (label "lc-<name>" and its session tag), null
 * when there is none, or an error value. */
jv	lc_linode_instance_find(struct lc_http *h, const char *name);
/* Does inst (borrowed) carry the session's tag, and its label or the
 * group tag of its nodes? */
int	lc_linode_owns(jv inst, const char *name);
/* "lc-group:<name>" into buf. */
char	*lc_linode_group_tag(const char *name, char *buf, size_t len);
/* Node i's label (0: the head's, "lc-<name>") and VPC address. */
char	*lc_linode_node_label(const char *name, int i, char *buf, size_t len);
char	*lc_linode_node_address(int i, char *buf, size_t len);
/* POST /linode/instances for node i of the group (found by its label
 * before a retry, as lc_linode_instance_create). Consumes body. */
jv	lc_linode_node_create(struct lc_http *h, const char *name, int i,
	    jv body);
/* POST /vpcs, an existing one of the session's (label "lc-<name>", its
 * session tag in the description) returned instead of a second.
 * Consumes body. */
jv	lc_linode_vpc_create(struct lc_http *h, const char *name, jv body);
/*
 * Delete every node of the session's group (tagged lc-group:<name> and
 * lc-session:<name>), wait until each is gone, then the firewall
 * (firewall_id <= 0: found by label) and the VPC. Returns an owned
 * object {"nodes_deleted": n, "firewall_deleted", "firewall_error",
 * "vpc_deleted", "vpc_error"} or an error value (delete_failed,
 * timeout, an API code); lc_linode_session_delete calls it for a head.
 */
jv	lc_linode_group_delete(struct lc_http *h, const char *name,
	    double firewall_id, long timeout_ms);
/*
 * POST /linode/instances, never blindly twice: after a timeout, a lost
 * connection or a 5xx it looks the instance up by its label and session
 * tag first, and retries only when none exists. body (consumed) must
 * carry "label" and "tags". Returns the instance or an error value.
 */
jv	lc_linode_instance_create(struct lc_http *h, const char *name, jv body);
/* The same for a Cloud Firewall, found by its label: an existing one of
 * ours is returned instead of making a second. */
jv	lc_linode_firewall_create(struct lc_http *h, const char *name, jv body);
/* DELETE path; a 404 counts as done. Returns true, or an error value. */
jv	lc_linode_delete(struct lc_http *h, const char *path);

/*
 * Delete a session's VM safely (for lc-destroy and lc-watch): GET the
 * instance and refuse (code "mismatch", nothing deleted) unless its label
 * is "lc-<name>" and its tags hold "lc-session:<name>"; DELETE it (404:
 * already gone); poll until GET says 404 (code "timeout" after
 * timeout_ms); then delete the firewall (firewall_id <= 0: none).
 * Returns an owned object {"already_gone": bool, "firewall_deleted":
 * bool, "firewall_error": message|null}, or an error value (mismatch,
 * delete_failed, timeout, or an API code).
 */
jv	lc_linode_session_delete(struct lc_http *h, const char *name,
	    double linode_id, double firewall_id, long timeout_ms);

#endif
