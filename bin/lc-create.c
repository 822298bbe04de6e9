/*
 * lc-create: make the VM a spec record asks for, on the Linode API: a
 * Cloud Firewall, then the instance (label "lc-<name>", tags, the user's
 * SSH key, cloud-config as metadata.user_data), saving the session the
 * moment the API returns its id. With --wait, waits until it is ready.
 * Run again with the same name, it returns the session it made before.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "compat.h"
#include "cache.h"
#include "config.h"
#include "failsafe.h"
#include "http.h"
#include "lc.h"
#include "lctime.h"
#include "ledger.h"
#include "session.h"
#include "linode.h"
#include "opts.h"
#include "preset.h"
#include "ready.h"
#include "rec.h"

#define USER_DATA_MAX	65535

/*
 * What a group's nodes open to each other, from its VPC subnet alone:
 * Ray's GCS (6379), object and node managers (8076-8077), client and
 * worker ports (10001-19999), dashboard agent (52365), and the ephemeral
 * range NCCL and Gloo listen on (32768-60999). Nothing new is public.
 */
#define LC_CLUSTER_PORTS	"6379,8076-8077,10001-19999,32768-60999,52365"

static const struct lc_opt opts[] = {
	{ 'n', "dry-run", NULL, "print the request and its cost; send "
	  "nothing" },
	{ 'P', "public", NULL, "open port 8000 to --allow's address, else to "
	  "the one the VM sees this machine connect from" },
	{ 'q', "quiet", NULL, "no progress lines" },
	{ 'v', "verbose", NULL, "more detail on stderr" },
	{ 'W', "allow-world", NULL, "let --allow be wider than /16 (IPv4) or "
	  "/48 (IPv6), 0.0.0.0/0 and ::/0 included" },
	{ 'w', "wait", NULL, "wait until the VM is running (and ready)" },
	{ 'a', "allow", "address", "the address --public admits (IPv4/IPv6, "
	  "CIDR)" },
	{ 'G', "nodes", "count", "VMs in the group (the spec's \"nodes\" "
	  "must agree)" },
	{ 'm', "max-hourly", "usd", "refuse types that cost more per hour" },
	{ 't', "timeout", "seconds", "how long --wait waits (default "
	  "LC_READY_TIMEOUT)" },
	{ 'u', "until", "stage", "--wait up to this stage: running, ssh, "
	  "secrets, cloud-init, gpu, health, completion (default)" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-create",
	.summary = "lc-create: make a Linode GPU VM for each spec record",
	.operands = "[name ...]",
	.after = "Spec records (NDJSON) come on stdin, or names as operands; "
	    "session\nrecords go to stdout. See lc-create(1).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

struct ctx {
	struct lc_config *cfg;
	struct lc_http	*http;
	struct lc_ledger ledger;
	int		 dry, wait, public;
	const char	*allow;
	int		 world;		/* --allow-world */
	double		 max_hourly;	/* < 0: none */
	long		 timeout_s;
	int		 until;		/* last stage, or -1: running only */
	int		 nodes;		/* --nodes, or 0 */
};

/* This ledger's owner id (lib/session): every instance and firewall made
 * here carries "lc-owner:<id>", so lc-watch finds them in the account
 * even when their record is lost. Empty in a dry run that has none. */
static char owner[LC_OWNER_LEN + 1];

/* The spec being made is a group of nodes: its things carry the group
 * tag too. */
static int grouped;

/* The spec's string field, else the config key's value. Borrows. */
static const char *
spec_or(struct ctx *c, jv spec, const char *field, const char *key)
{
	const char *s = lc_str(spec, field);

	return s != NULL && *s != '\0' ? s : lc_config_get(c->cfg, key);
}

/* Is the session public: -P, LC_PUBLIC or the spec's "public"? */
static int
is_public(struct ctx *c, jv spec)
{
	return c->public || lc_bool(spec, "public");
}

/* The address port 8000 admits: --allow, else the spec's, or NULL. */
static const char *
allowed(struct ctx *c, jv spec)
{
	return c->allow != NULL ? c->allow : lc_str(spec, "public_allow");
}

/* Prefixes shorter than these admit too much of the Internet to be an
 * accident the tool lets pass: /16 is 65536 IPv4 addresses, /48 one
 * site's IPv6. */
#define ALLOW_MIN_V4	16
#define ALLOW_MIN_V6	48

/*
 * Judge an address port 8000 would admit: "a.b.c.d[/n]" or "v6[/n]".
 * 0 when it is narrow enough (why: the CIDR block), 1 when it is wider
 * than ALLOW_MIN_* (why: how wide), -1 when it is no address (why says
 * so). Pure.
 */
static int
allow_check(const char *a, char *why, size_t len)
{
	char addr[64], *slash, *end;
	unsigned char bin[16];
	int v6 = strchr(a, ':') != NULL, max = v6 ? 128 : 32;
	long prefix = max;

	if (strlen(a) >= sizeof(addr)) {
		snprintf(why, len, "%.40s... is not an IPv4 or IPv6 address", a);
		return -1;
	}
	memcpy(addr, a, strlen(a) + 1);
	if ((slash = strchr(addr, '/')) != NULL) {
		*slash++ = '\0';
		errno = 0;
		prefix = strtol(slash, &end, 10);
		if (!isdigit((unsigned char)*slash) || *end != '\0' ||
		    prefix > max) {
			snprintf(why, len, "%s is not an IPv4 or IPv6 address "
			    "or CIDR block", a);
			return -1;
		}
	}
	if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1) {
		snprintf(why, len, "%s is not an IPv4 or IPv6 address", a);
		return -1;
	}
	if (prefix < (v6 ? ALLOW_MIN_V6 : ALLOW_MIN_V4)) {
		if (prefix == 0)
			snprintf(why, len, "every %s address", v6 ? "IPv6" :
			    "IPv4");
		else
			snprintf(why, len, "a block wider than /%d", v6 ?
			    ALLOW_MIN_V6 : ALLOW_MIN_V4);
		return 1;
	}
	snprintf(why, len, "%s%s", a, slash ? "" : v6 ? "/128" : "/32");
	return 0;
}

/* Base64 (RFC 4648, no line breaks) of n bytes; owned jv string. */
static jv
base64(const unsigned char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	struct lc_buf b = LC_BUF_INIT;
	size_t i;
	jv s;

	for (i = 0; i + 2 < n; i += 3) {
		char q[4] = { tab[p[i] >> 2], tab[(p[i] & 3) << 4 | p[i + 1] >> 4],
		    tab[(p[i + 1] & 15) << 2 | p[i + 2] >> 6], tab[p[i + 2] & 63] };

		lc_buf_add(&b, q, 4);
	}
	if (n - i == 1) {
		char q[4] = { tab[p[i] >> 2], tab[(p[i] & 3) << 4], '=', '=' };

		lc_buf_add(&b, q, 4);
	} else if (n - i == 2) {
		char q[4] = { tab[p[i] >> 2], tab[(p[i] & 3) << 4 | p[i + 1] >> 4],
		    tab[(p[i + 1] & 15) << 2], '=' };

		lc_buf_add(&b, q, 4);
	}
	s = jv_string(b.data ? b.data : "");
	lc_buf_free(&b);
	return s;
}

/* A random root password: 40 characters with every class in it. */
static jv
root_pass(void)
{
	static const char abc[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTU"
	    "VWXYZ23456789-_.,:;+=%@";
	char pw[41];
	jv s;

	do {
		if (lc_random_string(pw, 40, abc) == -1)
			lc_fatal("no random bytes for the root password");
	} while (strpbrk(pw, "abcdefghijkmnopqrstuvwxyz") == NULL ||
	    strpbrk(pw, "ABCDEFGHJKLMNPQRSTUVWXYZ") == NULL ||
	    strpbrk(pw, "23456789") == NULL || strpbrk(pw, "-_.,:;+=%@") == NULL);
	s = jv_string(pw);
	memset(pw, 0, sizeof(pw));
	return s;
}

/* The public keys in LC_SSH_KEY.pub: an array, or an error value. */
static jv
ssh_keys(struct ctx *c)
{
	char *key = lc_config_path(c->cfg, "LC_SSH_KEY"), *pub, *data = NULL;
	char *line, *save = NULL;
	size_t len = 0;
	jv keys = jv_array();

	if (key == NULL)
		return lc_errorf("ssh_key", "LC_SSH_KEY is not set: point it "
		    "at your SSH private key (its .pub goes to the VM)");
	pub = lc_xmalloc(strlen(key) + 5);
	sprintf(pub, "%s.pub", key);
	free(key);
	if (lc_read_file(pub, &data, &len) == -1) {
		jv e = lc_errorf("ssh_key", "cannot read the SSH public key "
		    "%s: %s (make one with: ssh-keygen -t ed25519 -f %.*s)",
		    pub, strerror(errno), (int)strlen(pub) - 4, pub);

		free(pub);
		jv_free(keys);
		return e;
	}
	for (line = strtok_r(data, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		line[strcspn(line, "\r")] = '\0';
		if (strncmp(line, "ssh-", 4) == 0 ||
		    strncmp(line, "ecdsa-", 6) == 0 ||
		    strncmp(line, "sk-", 3) == 0)
			keys = jv_array_append(keys, jv_string(line));
	}
	free(data);
	if (jv_array_length(jv_copy(keys)) == 0) {
		jv_free(keys);
		keys = lc_errorf("ssh_key", "%s holds no SSH public key", pub);
	}
	free(pub);
	return keys;
}

/* "203.0.113.7" -> {"ipv4":["203.0.113.7/32"]}; IPv6 likewise. */
static jv
addresses(const char *a)
{
	int v6 = strchr(a, ':') != NULL;
	char buf[80];

	snprintf(buf, sizeof(buf), "%s%s", a, strchr(a, '/') ? "" :
	    v6 ? "/128" : "/32");
	return jv_object_set(jv_object(), jv_string(v6 ? "ipv6" : "ipv4"),
	    jv_array_append(jv_array(), jv_string(buf)));
}

static jv
rule(const char *ports, jv addrs, const char *label)
{
	jv r = jv_object_set(jv_object(), jv_string("protocol"),
	    jv_string("TCP"));

	r = jv_object_set(r, jv_string("ports"), jv_string(ports));
	r = jv_object_set(r, jv_string("action"), jv_string("ACCEPT"));
	r = jv_object_set(r, jv_string("addresses"), addrs);
	return jv_object_set(r, jv_string("label"), jv_string(label));
}

static jv
tags(const char *name)
{
	char tag[64];
	jv t = jv_array_append(jv_array_append(jv_array(),
	    jv_string(LC_LINODE_TAG)), jv_string(lc_linode_session_tag(name,
	    tag, sizeof(tag))));

	if (*owner != '\0')
		t = jv_array_append(t, jv_string(lc_session_owner_tag(owner,
		    tag, sizeof(tag))));
	if (grouped)
		t = jv_array_append(t, jv_string(lc_linode_group_tag(name,
		    tag, sizeof(tag))));
	return t;
}

/* The firewall: inbound DROP but 22/tcp (and 8000/tcp from allow). */
static jv
firewall_body(const char *name, const char *allow)
{
	jv in = jv_array(), rules, any;
	char label[64];

	any = jv_object_set(jv_object(), jv_string("ipv4"),
	    jv_array_append(jv_array(), jv_string("0.0.0.0/0")));
	any = jv_object_set(any, jv_string("ipv6"),
	    jv_array_append(jv_array(), jv_string("::/0")));
	in = jv_array_append(in, rule("22", any, "lc-ssh"));
	if (allow != NULL)
		in = jv_array_append(in, rule("8000", addresses(allow),
		    "lc-vllm"));
	if (grouped) {	/* Ray and NCCL, from the group's subnet alone */
		jv sub = jv_object_set(jv_object(), jv_string("ipv4"),
		    jv_array_append(jv_array(), jv_string(LC_VPC_SUBNET)));

		in = jv_array_append(in, rule(LC_CLUSTER_PORTS, jv_copy(sub),
		    "lc-cluster"));
		sub = rule(LC_CLUSTER_PORTS, sub, "lc-cluster-udp");
		in = jv_array_append(in, jv_object_set(sub,
		    jv_string("protocol"), jv_string("UDP")));
	}
	rules = jv_object_set(jv_object(), jv_string("inbound"), in);
	rules = jv_object_set(rules, jv_string("inbound_policy"),
	    jv_string("DROP"));
	rules = jv_object_set(rules, jv_string("outbound"), jv_array());
	rules = jv_object_set(rules, jv_string("outbound_policy"),
	    jv_string("ACCEPT"));
	return jv_object_set(jv_object_set(jv_object_set(jv_object(),
	    jv_string("label"), jv_string(lc_linode_fw_label(name, label,
	    sizeof(label)))), jv_string("rules"), rules), jv_string("tags"),
	    tags(name));
}

/* Say on stderr what a public session exposes (a safety notice, so
 * shown with -q too). */
static void
exposed(const char *name, const char *allow, int dry)
{
	char why[160];
	int wide = allow_check(allow, why, sizeof(why));

	lc_warnx("%s: public: port 8000 (vLLM, behind its API key) %s open "
	    "to %s%s%s%s", name, dry ? "would be" : "is", wide == 1 ? allow :
	    why, wide == 1 ? " (" : "", wide == 1 ? why : "", wide == 1 ?
	    ")" : "");
}

/*
 * lib/ready's admit step for a public session without --allow: open port
 * 8000 to addr, the address the VM saw our SSH connection come from. The
 * API takes the rules only whole, so they are PUT as the firewall has
 * them, less any earlier lc-vllm rule, plus the new one: the SSH rule
 * (and any rule a person added) stays. Records addr as public_allow.
 * Borrows arg and addr. 0, or -1 with *err.
 */
static int
admit(void *arg, jv *rec, const char *addr, jv *err)
{
	struct ctx *c = arg;
	double id = lc_num(*rec, "firewall_id", 0);
	char path[80];
	jv fw, rules, in, kept = jv_array();

	if (id <= 0) {
		jv_free(kept);
		*err = lc_errorf("ready_ssh", "ssh: public, but the session "
		    "has no firewall to open port 8000 in: leave out --public "
		    "and use 'coder tunnel'");
		return -1;
	}
	snprintf(path, sizeof(path), "/networking/firewalls/%.0f", id);
	fw = lc_linode_call(c->http, "GET", path, jv_null(), jv_null(), 0);
	if (!jv_is_valid(fw)) {
		jv_free(kept);
		*err = fw;
		return -1;
	}
	rules = lc_get(fw, "rules");
	jv_free(fw);
	if (jv_get_kind(rules) != JV_KIND_OBJECT) {
		jv_free(kept);
		jv_free(rules);
		*err = lc_errorf("bad_reply", "firewall %.0f: the API sent no "
		    "\"rules\" object", id);
		return -1;
	}
	in = lc_get(rules, "inbound");
	if (jv_get_kind(in) == JV_KIND_ARRAY) {
		jv_array_foreach(in, i, r) {
			const char *l = lc_str(r, "label");

			if (l != NULL && strcmp(l, "lc-vllm") == 0)
				jv_free(r);
			else
				kept = jv_array_append(kept, r);
		}
	}
	jv_free(in);
	rules = jv_object_set(rules, jv_string("inbound"), jv_array_append(kept,
	    rule("8000", addresses(addr), "lc-vllm")));
	rules = jv_object_delete(rules, jv_string("version"));
	rules = jv_object_delete(rules, jv_string("fingerprint"));
	snprintf(path, sizeof(path), "/networking/firewalls/%.0f/rules", id);
	fw = lc_linode_call(c->http, "PUT", path, jv_null(), rules, 0);
	if (!jv_is_valid(fw)) {
		*err = fw;
		return -1;
	}
	jv_free(fw);
	*rec = jv_object_set(*rec, jv_string("public_allow"), jv_string(addr));
	exposed(lc_subject(*rec), addr, 0);
	return 0;
}

/*
 * The group's size: the spec's "nodes" (1 when absent), which --nodes
 * must agree with (the cloud-config was rendered for it). Sets "nodes"
 * in *spec. The count, or -1 with *err.
 */
static int
spec_nodes(struct ctx *c, jv *spec, jv *err)
{
	jv x = lc_get(*spec, "nodes");
	int has = jv_get_kind(x) != JV_KIND_NULL;
	double n = jv_get_kind(x) == JV_KIND_NUMBER ? jv_number_value(x) : -1;

	jv_free(x);
	if (!has)
		n = c->nodes > 0 ? c->nodes : 1;
	if (n < 1 || n > LC_NODES_MAX || n != (double)(int)n) {
		*err = lc_errorf("bad_spec", "\"nodes\" must be a whole number "
		    "from 1 to %d", LC_NODES_MAX);
		return -1;
	}
	if (c->nodes > 0 && c->nodes != (int)n) {
		*err = lc_errorf("bad_spec", "--nodes %d, but the spec is for "
		    "%.0f nodes: render it with lc-cloudinit --nodes %d",
		    c->nodes, n, c->nodes);
		return -1;
	}
	*spec = jv_object_set(*spec, jv_string("nodes"), jv_number(n));
	return (int)n;
}

/* Checks that need no network. 0, or -1 with *err. Borrows spec. */
static int
check_spec(struct ctx *c, jv spec, jv *err)
{
	const char *name = lc_str(spec, "name");
	jv ud = lc_get(spec, "user_data");
	char why[160];
	int rc = 0, wide;

	if (name == NULL) {
		*err = lc_errorf("bad_spec", "the spec has no \"name\"");
		rc = -1;
	} else if (lc_name_check(name, err) == -1) {
		rc = -1;
	} else if (name[0] == '-' || name[strlen(name) - 1] == '-' ||
	    strstr(name, "--") != NULL) {
		*err = lc_errorf("bad_spec", "bad session name '%s': it must "
		    "not start or end with '-' or hold '--' (the VM label "
		    "lc-%s would be refused)", name, name);
		rc = -1;
	} else if (jv_get_kind(ud) != JV_KIND_NULL &&
	    jv_get_kind(ud) != JV_KIND_STRING) {
		*err = lc_errorf("bad_spec", "\"user_data\" must be the "
		    "cloud-config text (a string)");
		rc = -1;
	} else if (jv_get_kind(ud) == JV_KIND_STRING &&
	    jv_string_length_bytes(jv_copy(ud)) > USER_DATA_MAX) {
		*err = lc_errorf("user_data_too_large", "user data is %d "
		    "bytes; Linode takes at most %d: shorten the cloud-config",
		    jv_string_length_bytes(jv_copy(ud)), USER_DATA_MAX);
		rc = -1;
	} else if (spec_or(c, spec, "type", "LC_TYPE") == NULL) {
		*err = lc_errorf("bad_spec", "no Linode type: give the spec a "
		    "\"type\" or set LC_TYPE");
		rc = -1;
	} else if (allowed(c, spec) != NULL &&
	    (wide = allow_check(allowed(c, spec), why, sizeof(why))) != 0 &&
	    (wide == -1 || !c->world)) {
		*err = lc_errorf("bad_spec", "%s %s%s%s%s", c->allow ?
		    "--allow" : "public_allow", wide == 1 ? allowed(c, spec) :
		    why, wide == 1 ? " opens port 8000 to " : "", wide == 1 ?
		    why : "", wide == 1 ? ": give --allow-world to mean it" :
		    "");
		rc = -1;
	}
	jv_free(ud);
	return rc;
}

/*
 * The region must offer GPU Linodes, Metadata and Cloud Firewall; the type
 * must exist and have GPUs, at an acceptable price. Fills *gpus and the
 * prices. 0, or -1 with *err.
 */
static int
check_offer(struct ctx *c, const char *region, const char *type, int *gpus,
    double *hourly, double *monthly, jv *err)
{
	static const char *need[] = { "GPU Linodes", "Metadata",
	    "Cloud Firewall", "VPCs", NULL };
	char path[160];
	jv r, caps, t;
	int i;

	snprintf(path, sizeof(path), "/regions/%s", region);
	r = lc_linode_call(c->http, "GET", path, jv_null(), jv_null(), 0);
	if (!jv_is_valid(r)) {
		if (strcmp(lc_error_code(r), "not_found") == 0) {
			jv_free(r);
			r = lc_errorf("region_capability", "region '%s' does "
			    "not exist (coder regions lists them)", region);
		}
		*err = r;
		return -1;
	}
	caps = lc_get(r, "capabilities");
	jv_free(r);
	for (i = 0; need[i] != NULL && (grouped || strcmp(need[i], "VPCs"));
	    i++) {
		int has = 0;

		if (jv_get_kind(caps) == JV_KIND_ARRAY)
			jv_array_foreach(caps, k, v) {
				(void)k;
				has |= jv_get_kind(v) == JV_KIND_STRING &&
				    strcmp(jv_string_value(v), need[i]) == 0;
				jv_free(v);
			}
		if (!has) {
			jv_free(caps);
			*err = lc_errorf("region_capability", "region %s does "
			    "not offer %s: pick another region", region,
			    need[i]);
			return -1;
		}
	}
	jv_free(caps);
	snprintf(path, sizeof(path), "/linode/types/%s", type);
	t = lc_linode_call(c->http, "GET", path, jv_null(), jv_null(), 0);
	if (!jv_is_valid(t)) {
		if (strcmp(lc_error_code(t), "not_found") == 0) {
			jv_free(t);
			t = lc_errorf("type_unknown", "Linode type '%s' does "
			    "not exist", type);
		}
		*err = t;
		return -1;
	}
	*gpus = (int)lc_num(t, "gpus", 0);
	lc_linode_price(t, region, hourly, monthly);
	jv_free(t);
	if (*gpus < 1) {
		*err = lc_errorf("type_unknown", "Linode type '%s' has no GPU: "
		    "pick a g1-gpu-* or g2-gpu-* type", type);
		return -1;
	}
	if (c->max_hourly >= 0 && *hourly <= 0) {
		*err = lc_errorf("price_over_max", "the price of %s in %s is "
		    "unknown (the API says 0), so --max-hourly %.2f cannot be "
		    "checked", type, region, c->max_hourly);
		return -1;
	}
	if (c->max_hourly >= 0 && *hourly > c->max_hourly + 1e-9) {
		*err = lc_errorf("price_over_max", "%s costs $%.2f/hour in %s, "
		    "over the maximum of $%.2f (--max-hourly, LC_MAX_HOURLY)",
		    type, *hourly, region, c->max_hourly);
		return -1;
	}
	return 0;
}

/* known_hosts for the pinned host key, once the address is known. */
static void
write_known_hosts(jv rec)
{
	jv hk = lc_get(rec, "host_key"), ssh = lc_get(rec, "ssh");
	const char *ip = lc_str(rec, "ipv4"), *type = lc_str(hk, "type");
	const char *pub = lc_str(hk, "public"), *path = lc_str(ssh,
	    "known_hosts");
	int port = (int)lc_num(ssh, "port", 22);
	struct lc_buf b = LC_BUF_INIT;

	if (ip != NULL && type != NULL && pub != NULL && path != NULL) {
		jv g = lc_get(rec, "group"), nodes = lc_get(g, "nodes");

		lc_buf_printf(&b, "%s %s %s\n", ip, type, pub);
		if (port != 22)
			lc_buf_printf(&b, "[%s]:%d %s %s\n", ip, port, type,
			    pub);
		/* A group's nodes share the one host key. */
		if (jv_get_kind(nodes) == JV_KIND_ARRAY)
			jv_array_foreach(nodes, i, n) {
				const char *h = lc_str(n, "host");

				if (i > 0 && h != NULL && port != 22)
					lc_buf_printf(&b, "[%s]:%d %s %s\n", h,
					    port, type, pub);
				else if (i > 0 && h != NULL)
					lc_buf_printf(&b, "%s %s %s\n", h, type,
					    pub);
				jv_free(n);
			}
		jv_free(nodes);
		jv_free(g);
		if (lc_write_file_atomic(path, b.data, b.len, 0600) == -1)
			lc_warnx("%s: cannot write %s: %s", lc_subject(rec),
			    path, strerror(errno));
	}
	lc_buf_free(&b);
	jv_free(hk);
	jv_free(ssh);
}

/* Store fields (consumed) into the session; returns the stored record,
 * or rec with them merged when the ledger refused (warned). */
static jv
save(struct ctx *c, jv rec, jv fields)
{
	jv r = lc_session_merge(&c->ledger, lc_str(rec, "name"),
	    jv_copy(fields));

	if (!jv_is_valid(r)) {
		char *m = lc_error_message(r);

		lc_warnx("%s: cannot save the session: %s", lc_subject(rec), m);
		free(m);
		jv_free(r);
		r = jv_object_merge(rec, jv_copy(fields));
	} else
		jv_free(rec);
	jv_free(fields);
	return r;
}

static jv
state_fields(const char *state, jv inst)
{
	jv f = jv_object_set(jv_object(), jv_string("state"),
	    jv_string(state));

	if (jv_get_kind(inst) == JV_KIND_OBJECT)
		f = jv_object_set(f, jv_string("linode_status"),
		    lc_get(inst, "status"));
	jv_free(inst);
	return f;
}

/*
 * The VM's own guard (lib/failsafe): a token that may only touch Linodes
 * and expires with the deadline, pushed to the VM, whose timer deletes it
 * at deadline_at, or once idle, even when no lc-watch runs. A user token
 * that cannot make tokens leaves lc-watch alone on guard, and the user is
 * told; LC_FAILSAFE=off asks for that. Consumes rec.
 */
static jv
arm_failsafe(struct ctx *c, jv rec)
{
	static const char *const keys[] = { "failsafe", "failsafe_token_id",
	    "failsafe_deadline_at", "failsafe_expires_at", "vm_idle_guard",
	    "vm_activity_at" };
	jv err = jv_invalid(), f = jv_object();
	int rc = lc_failsafe_arm(c->http, c->cfg, &rec, &err);
	const char *fs = lc_str(rec, "failsafe");
	size_t i;

	if (rc == -1) {
		char *m = lc_error_message(err);

		lc_warnx("%s: the VM's own deadline is not armed (%s): only "
		    "lc-watch from cron stops this session's bill", lc_subject(
		    rec), m);
		free(m);
	} else if (rc == 1 && fs != NULL && strcmp(fs, "unavailable") == 0)
		lc_warnx("%s: only lc-watch from cron (coder watch --install) "
		    "protects this session: the Linode token cannot make the "
		    "VM's own deadline token (that needs account:read_write)",
		    lc_subject(rec));
	jv_free(err);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		f = jv_object_set(f, jv_string(keys[i]), lc_get(rec, keys[i]));
	return save(c, rec, f);
}

/*
 * After "running": SSH, secrets, cloud-init, GPU, vLLM health and a real
 * completion (lib/ready), within what is left of the time limit.
 * Consumes rec.
 */
static jv
wait_stages(struct ctx *c, jv rec, long long end)
{
	struct lc_ready_opts o = { .stop = c->until + 1, .admit = admit,
	    .admit_arg = c };
	jv err = jv_invalid();
	long long left = end - lc_mono_ms();

	/* SSH and secrets, then the VM's own deadline, then the rest. */
	if (c->until > LC_STAGE_SECRETS)
		o.stop = LC_STAGE_SECRETS + 1;
	o.total_s = left > 1000 ? left / 1000 : 1;
	if (lc_ready_wait(c->cfg, &c->ledger, &rec, &o, &err) == -1)
		return lc_attach_error(rec, err);
	if (c->until >= LC_STAGE_SECRETS)
		rec = arm_failsafe(c, rec);
	if (c->until > LC_STAGE_SECRETS) {
		o.first = LC_STAGE_SECRETS + 1;
		o.stop = c->until + 1;
		left = end - lc_mono_ms();
		o.total_s = left > 1000 ? left / 1000 : 1;
		if (lc_ready_wait(c->cfg, &c->ledger, &rec, &o, &err) == -1)
			return lc_attach_error(rec, err);
	}
	jv_free(err);
	if (c->until == LC_STAGE_COMPLETION) {
		jv ev = jv_object_set(jv_object(), jv_string("event"),
		    jv_string("ready"));

		ev = jv_object_set(ev, jv_string("name"), lc_get(rec, "name"));
		ev = jv_object_set(ev, jv_string("linode_id"),
		    lc_get(rec, "linode_id"));
		ev = jv_object_set(ev, jv_string("ttft_s"),
		    lc_get(rec, "ttft_s"));
		ev = jv_object_set(ev, jv_string("tokens_per_s"),
		    lc_get(rec, "tokens_per_s"));
		if (lc_ledger_event(&c->ledger, "ledger.jsonl", ev, &err) == -1)
			jv_free(err);
	}
	return rec;
}

/*
 * A group: each worker through ssh, secrets, cloud-init and gpu, then the
 * head's stages up to gpu, then the group's: ray (every node joined the
 * head's cluster), health and completion on the head. Consumes rec.
 */
static jv
wait_group(struct ctx *c, jv rec, long long end)
{
	struct lc_ready_opts o = { .stop = c->until + 1 };
	int nodes = (int)lc_num(rec, "nodes", 1), i, until = c->until;
	long long left;
	jv err = jv_invalid();

	for (i = 1; i < nodes; i++) {
		left = end - lc_mono_ms();
		o.total_s = left > 1000 ? left / 1000 : 1;
		if (lc_ready_node(c->cfg, &c->ledger, rec, i, &o, &err) == -1) {
			rec = save(c, rec, JV_OBJECT(jv_string("state"),
			    jv_string("failed"), jv_string("failed_stage"),
			    jv_string(lc_ready_stage_name(o.stop - 1 <
			    LC_STAGE_GPU ? o.stop - 1 : LC_STAGE_GPU))));
			return lc_attach_error(rec, err);
		}
	}
	c->until = until < LC_STAGE_GPU ? until : LC_STAGE_GPU;
	rec = wait_stages(c, rec, end);
	c->until = until;
	if (until <= LC_STAGE_GPU || jv_object_has(jv_copy(rec),
	    jv_string("error")))
		return rec;
	left = end - lc_mono_ms();
	if (lc_ready_ray(c->cfg, &c->ledger, &rec, left > 1000 ? left / 1000 :
	    1, &err) == -1) {
		rec = save(c, rec, JV_OBJECT(jv_string("state"),
		    jv_string("failed"), jv_string("failed_stage"),
		    jv_string("ray")));
		return lc_attach_error(rec, err);
	}
	rec = save(c, rec, JV_OBJECT(jv_string("nodes_joined"),
	    lc_get(rec, "nodes_joined")));
	o.first = LC_STAGE_HEALTH;
	o.stop = until + 1;
	left = end - lc_mono_ms();
	o.total_s = left > 1000 ? left / 1000 : 1;
	if (lc_ready_wait(c->cfg, &c->ledger, &rec, &o, &err) == -1)
		return lc_attach_error(rec, err);
	jv_free(err);
	return rec;
}

/*
 * Wait until the VM runs: the first readiness stage. Later stages (SSH,
 * secrets, cloud-init, GPU, vLLM health, a first token) go after it here.
 * Consumes rec; returns it updated, or with an error attached.
 */
static jv
wait_ready(struct ctx *c, jv rec)
{
	long long t0 = lc_mono_ms(), end = t0 + c->timeout_s * 1000LL;
	long long next_poll = 0, now;
	double id = lc_num(rec, "linode_id", 0);
	char last[32] = "";
	const char *st;
	jv inst;

	for (;;) {
		now = lc_mono_ms();
		if (now >= next_poll) {
			inst = lc_linode_instance_get(c->http, id);
			if (!jv_is_valid(inst))
				return lc_attach_error(rec, inst);
			st = lc_str(inst, "status");
			if (st == NULL)
				st = "unknown";
			if (strcmp(st, last) != 0) {
				snprintf(last, sizeof(last), "%s", st);
				if (!isatty(STDERR_FILENO))
					lc_info("%s: VM %.0f %s (%llds)",
					    lc_subject(rec), id, last,
					    (now - t0) / 1000);
				rec = save(c, rec, state_fields(
				    lc_linode_state(last), jv_copy(inst)));
			}
			jv_free(inst);
			if (strcmp(last, "running") == 0)
				break;
			if (strcmp(last, "offline") == 0 ||
			    strcmp(last, "stopped") == 0) {
				lc_progress_done();
				return lc_attach_error(rec, lc_errorf(
				    "boot_failed", "VM %.0f is %s instead of "
				    "booting: delete it with 'lc-destroy %s'",
				    id, last, lc_subject(rec)));
			}
			next_poll = now + (now - t0 < 10000 ? 1000 : 3000);
		}
		if (now >= end) {
			lc_progress_done();
			return lc_attach_error(rec, lc_errorf("timeout",
			    "VM %.0f still %s after %lds (it is saved and may "
			    "bill: lc-create %s --wait waits again, lc-destroy "
			    "%s deletes it)", id, last, c->timeout_s,
			    lc_subject(rec), lc_subject(rec)));
		}
		lc_progress("%s: VM %.0f %s, %llds", lc_subject(rec), id, last,
		    (now - t0) / 1000);
		lc_sleep_ms(500);
	}
	lc_progress_done();
	if (c->until >= 0 && lc_num(rec, "nodes", 1) > 1)
		return wait_group(c, rec, end);
	return c->until < 0 ? rec : wait_stages(c, rec, end);
}

static jv group_node(const char *, int, jv);

/* A group's dry run: the VPC it would make and every node's label and
 * VPC address. Consumes req; borrows rec. */
static jv
group_request(jv req, jv rec)
{
	const char *name = lc_str(rec, "name");
	int nodes = (int)lc_num(rec, "nodes", 1), i;
	char label[80];
	jv list = jv_array();

	for (i = 0; i < nodes; i++)
		list = jv_array_append(list, group_node(name, i, jv_null()));
	req = jv_object_set(req, jv_string("vpc"), JV_OBJECT(
	    jv_string("label"), jv_string(lc_linode_label(name, label,
	    sizeof(label))), jv_string("subnets"), JV_ARRAY(JV_OBJECT(
	    jv_string("label"), jv_string("nodes"), jv_string("ipv4"),
	    jv_string(LC_VPC_SUBNET)))));
	return jv_object_set(req, jv_string("nodes"), list);
}

/* The request as --dry-run shows it: secrets and user data elided. */
static jv
dry_run(jv rec, jv fw, jv body, double hourly, double monthly)
{
	jv md = lc_get(body, "metadata"), req;
	char buf[96];

	body = jv_object_set(body, jv_string("root_pass"),
	    jv_string("(elided)"));
	if (jv_get_kind(md) == JV_KIND_OBJECT) {
		snprintf(buf, sizeof(buf), "(elided: %d bytes of base64)",
		    jv_string_length_bytes(lc_get(md, "user_data")));
		body = jv_object_set(body, jv_string("metadata"), jv_object_set(
		    jv_object(), jv_string("user_data"), jv_string(buf)));
	}
	jv_free(md);
	req = jv_object_set(jv_object(), jv_string("firewall"), fw);
	if (grouped)
		req = group_request(req, rec);
	req = jv_object_set(req, jv_string("instance"), body);
	rec = jv_object_delete(rec, jv_string("user_data"));
	rec = jv_object_delete(rec, jv_string("user_data_worker"));
	rec = jv_object_set(rec, jv_string("dry_run"), jv_true());
	rec = jv_object_set(rec, jv_string("request"), req);
	rec = jv_object_set(rec, jv_string("hourly_cost_usd"), hourly > 0 ?
	    jv_number(hourly) : jv_null());
	rec = jv_object_set(rec, jv_string("daily_cost_usd"), hourly > 0 ?
	    jv_number(lc_round_cents(hourly * 24)) : jv_null());
	rec = jv_object_set(rec, jv_string("monthly_cost_usd"), monthly > 0 ?
	    jv_number(monthly) : jv_null());
	if (hourly > 0)
		lc_info("%s: would cost $%.2f/hour, $%.2f/day", lc_subject(rec),
		    hourly, hourly * 24);
	else
		lc_info("%s: the price is unknown (the API says 0)",
		    lc_subject(rec));
	return rec;
}

/* The cache volume's tags: linode-coder and this ledger's owner. */
static jv
cache_tags(void)
{
	char tag[64];
	jv t = jv_array_append(jv_array(), jv_string(LC_LINODE_TAG));

	if (*owner != '\0')
		t = jv_array_append(t, jv_string(lc_session_owner_tag(owner,
		    tag, sizeof(tag))));
	return t;
}

/* The size in GB a new cache volume gets for rec (borrowed). */
static int
cache_size(jv rec)
{
	double gb = lc_num(rec, "cache_size_gb", 0);

	return gb >= 10 ? (int)gb : lc_cache_size_gb(rec);
}

/* {"label", "state": "none", "reason"} for a session without a cache. */
static jv
no_cache(const char *name, const char *label, const char *why)
{
	lc_warnx("%s: no model cache: %s: this session downloads the model "
	    "and the vLLM image", name, why);
	return jv_object_set(jv_object_set(jv_object_set(jv_object(),
	    jv_string("label"), jv_string(label)), jv_string("state"),
	    jv_string("none")), jv_string("reason"), jv_string(why));
}

/*
 * The model cache volume for a spec (consumed) with a "volume": what a
 * plan shows ("cache_volume": label, size_gb, monthly_cost_usd, state
 * "new", "kept", "busy" or "none"), from the account.
 */
static jv
cache_plan(struct ctx *c, jv rec)
{
	const char *label = lc_str(rec, "volume"), *region = lc_str(rec,
	    "region");
	jv list, v, cv, err = jv_invalid();
	char why[160];
	double gbm;
	int size, ok;

	if (label == NULL || region == NULL)
		return rec;
	cv = jv_object_set(jv_object(), jv_string("label"), jv_string(label));
	ok = lc_cache_region_ok(c->http, region, &err);
	if (ok == 0) {
		jv_free(cv);
		snprintf(why, sizeof(why), "%s has no Block Storage", region);
		return jv_object_set(rec, jv_string("cache_volume"), no_cache(
		    lc_subject(rec), label, why));
	}
	if (ok == -1)
		jv_free(err);
	list = lc_cache_list(c->http);
	v = lc_cache_find(list, label);
	jv_free(list);
	size = jv_get_kind(v) == JV_KIND_OBJECT ? (int)lc_num(v, "size", 0) :
	    cache_size(rec);
	gbm = lc_cache_gb_month(c->http, region);
	cv = jv_object_set(cv, jv_string("size_gb"), jv_number(size));
	cv = jv_object_set(cv, jv_string("monthly_cost_usd"), gbm > 0 ?
	    jv_number(lc_round_cents(gbm * size)) : jv_null());
	cv = jv_object_set(cv, jv_string("state"), jv_string(
	    jv_get_kind(v) != JV_KIND_OBJECT ? "new" : lc_num(v, "linode_id",
	    0) != 0 ? "busy" : "kept"));
	jv_free(v);
	return jv_object_set(rec, jv_string("cache_volume"), cv);
}

/*
 * Attach the cache volume to the new VM, making it first when missing,
 * before the readiness wait; a failure costs the cache, not the session.
 * Consumes rec; returns it with "cache_volume", saved in the ledger.
 */
static jv
attach_cache(struct ctx *c, jv rec)
{
	const char *label = lc_str(rec, "volume"), *region = lc_str(rec,
	    "region");
	char name[40], why[400], *m;
	jv v, cv, err = jv_invalid();
	double gbm;
	int size = cache_size(rec), ok;

	if (label == NULL || region == NULL)
		return rec;
	snprintf(name, sizeof(name), "%s", lc_subject(rec));
	ok = lc_cache_region_ok(c->http, region, &err);
	if (ok == -1)
		jv_free(err);
	if (ok == 0) {
		snprintf(why, sizeof(why), "%s has no Block Storage", region);
		cv = no_cache(name, label, why);
	} else {
		v = lc_cache_attach(c->http, label, region, size,
		    lc_num(rec, "linode_id", 0), cache_tags(), 180000);
		if (!jv_is_valid(v)) {
			m = lc_error_message(v);
			snprintf(why, sizeof(why), "%s%s", m, strcmp(
			    lc_error_code(v), "cache_busy") == 0 ? " (one "
			    "volume serves one VM at a time; --cache-new makes "
			    "a second)" : "");
			free(m);
			jv_free(v);
			cv = no_cache(name, label, why);
		} else {
			size = (int)lc_num(v, "size", size);
			gbm = lc_cache_gb_month(c->http, region);
			cv = jv_object_set(jv_object(), jv_string("id"),
			    jv_number(lc_num(v, "id", 0)));
			cv = jv_object_set(cv, jv_string("label"),
			    jv_string(label));
			cv = jv_object_set(cv, jv_string("size_gb"),
			    jv_number(size));
			cv = jv_object_set(cv, jv_string("monthly_cost_usd"),
			    gbm > 0 ? jv_number(lc_round_cents(gbm * size)) :
			    jv_null());
			cv = jv_object_set(cv, jv_string("state"), jv_string(
			    jv_get_kind(lc_get(v, "created")) == JV_KIND_TRUE ?
			    "new" : "kept"));
			lc_info("%s: cache volume %s attached (%s, %d GB, "
			    "$%.2f/month until deleted)", name, label,
			    jv_get_kind(lc_get(v, "created")) == JV_KIND_TRUE ?
			    "new" : "kept", size, gbm * size);
			jv_free(v);
		}
	}
	jv_free(lc_session_merge(&c->ledger, name, jv_object_set(jv_object(),
	    jv_string("cache_volume"), jv_copy(cv))));
	return jv_object_set(rec, jv_string("cache_volume"), cv);
}

/* What the ledger keeps of a spec: no user data, no private key. */
static jv
stored(jv spec)
{
	jv hk = lc_get(spec, "host_key");

	spec = jv_object_delete(spec, jv_string("user_data"));
	spec = jv_object_delete(spec, jv_string("user_data_worker"));
	if (jv_get_kind(hk) == JV_KIND_OBJECT)
		spec = jv_object_set(spec, jv_string("host_key"),
		    jv_object_delete(jv_copy(hk), jv_string("private")));
	jv_free(hk);
	return jv_object_delete(spec, jv_string("error"));
}

/* Save a new session for inst and log the event. Consumes spec. */
static jv
record_session(struct ctx *c, jv spec, jv inst, double fw_id, double hourly,
    double monthly, time_t created, const char *event)
{
	char *kh = lc_session_path(&c->ledger, lc_str(spec, "name"),
	    LC_SESSION_KNOWN_HOSTS);
	jv rec, err = jv_invalid();

	rec = lc_linode_session(stored(spec), inst, hourly, monthly, created,
	    c->cfg, kh);
	free(kh);
	rec = jv_object_set(rec, jv_string("firewall_id"), fw_id > 0 ?
	    jv_number(fw_id) : jv_null());
	rec = jv_object_set(rec, jv_string("public"), jv_bool(is_public(c,
	    rec)));
	rec = jv_object_set(rec, jv_string("public_allow"), allowed(c, rec) ?
	    jv_string(allowed(c, rec)) : jv_null());
	rec = jv_object_set(rec, jv_string("owner_id"), *owner ? jv_string(owner) :
	    jv_null());
	/* The known_hosts file first: a record whose host key is missing
	 * could not be sampled, and the VM would read as unreachable. */
	write_known_hosts(rec);
	rec = lc_ledger_put(&c->ledger, rec);
	if (!jv_is_valid(rec))
		return rec;
	if (lc_session_event(&c->ledger, event, rec, jv_null(), &err) == -1) {
		char *m = lc_error_message(err);

		lc_warnx("%s: %s", lc_subject(rec), m);
		free(m);
	}
	jv_free(err);
	return rec;
}

/*
 * The session this name already has, if any: the stored record (its VM
 * still there), null when there is none, or an error value.
 */
static jv
existing(struct ctx *c, const char *name)
{
	jv rec = lc_ledger_get(&c->ledger, name), inst;
	double id;

	if (!jv_is_valid(rec)) {
		if (strcmp(lc_error_code(rec), "not_found") == 0) {
			jv_free(rec);
			return jv_null();
		}
		return rec;
	}
	if ((id = lc_num(rec, "linode_id", 0)) <= 0) {
		jv_free(rec);
		return jv_null();
	}
	inst = lc_linode_instance_get(c->http, id);
	if (!jv_is_valid(inst)) {
		if (strcmp(lc_error_code(inst), "not_found") == 0) {
			jv_free(inst);
			inst = lc_errorf("exists", "session '%s' exists but its "
			    "VM %.0f is gone: run 'lc-sessions cleanup', then "
			    "create it again", name, id);
		}
		jv_free(rec);
		return inst;
	}
	jv_free(inst);
	lc_info("%s: the session exists (VM %.0f): returning it", name, id);
	return rec;
}

/*
 * The record written before anything is made: state "creating", with
 * the label, tags and owner the instance will carry. A run killed after
 * a POST leaves it behind, and lc-watch finds the VM by its label and
 * owner tag. Borrows spec. 0, or -1 with *err (nothing was made).
 */
static int
record_intent(struct ctx *c, jv spec, double hourly, double monthly,
    jv *err)
{
	const char *name = lc_str(spec, "name");
	char label[64], ts[32];
	jv rec = stored(jv_copy(spec));

	rec = jv_object_set(rec, jv_string("state"), jv_string("creating"));
	rec = jv_object_set(rec, jv_string("linode_id"), jv_null());
	rec = jv_object_set(rec, jv_string("label"), jv_string(
	    lc_linode_label(name, label, sizeof(label))));
	rec = jv_object_set(rec, jv_string("tags"), tags(name));
	rec = jv_object_set(rec, jv_string("owner_id"), jv_string(owner));
	rec = jv_object_set(rec, jv_string("created_at"), jv_string(
	    lc_time_fmt(lc_now(), ts, sizeof(ts))));
	rec = jv_object_set(rec, jv_string("hourly_cost_usd"), hourly > 0 ?
	    jv_number(hourly) : jv_null());
	rec = jv_object_set(rec, jv_string("monthly_cost_usd"), monthly > 0 ?
	    jv_number(monthly) : jv_null());
	rec = lc_ledger_put(&c->ledger, rec);
	if (!jv_is_valid(rec)) {
		char *m = lc_error_message(rec);

		*err = lc_errorf("state_dir", "the session cannot be recorded "
		    "(%s), so no VM was made: free space or fix the state "
		    "directory, then run this again", m);
		free(m);
		jv_free(rec);
		return -1;
	}
	jv_free(rec);
	return 0;
}

/*
 * The session could not be saved after its VM was made: nothing could
 * guard it, so it is deleted at once. Consumes inst and why; returns the
 * error for the record.
 */
static jv
unsaved(struct ctx *c, const char *name, jv inst, double fw_id, jv why)
{
	double id = lc_num(inst, "id", 0);
	char *m = lc_error_message(why), *dm;
	jv r, err;

	jv_free(inst);
	jv_free(why);
	r = lc_linode_session_delete(c->http, name, id, fw_id, 5 * 60 * 1000L);
	if (jv_is_valid(r)) {
		err = lc_errorf("state_dir", "VM %.0f was made but the session "
		    "could not be saved (%s), so it was deleted at once: "
		    "nothing bills; free space or fix the state directory, "
		    "then run this again", id, m);
		jv_free(r);
	} else {
		dm = lc_error_message(r);
		err = lc_errorf("state_dir", "VM %.0f was made but the session "
		    "could not be saved (%s), and deleting it failed too (%s): "
		    "it BILLS until deleted: 'lc-watch --destroy' deletes it "
		    "once the state directory works, or delete it in Cloud "
		    "Manager", id, m, dm);
		free(dm);
		jv_free(r);
	}
	free(m);
	return err;
}

/* Make the firewall and the instance; save the session. Consumes spec. */
static jv
make(struct ctx *c, jv spec, jv fw, jv body, double hourly, double monthly)
{
	const char *name = lc_str(spec, "name");
	char nm[40], path[64];
	double fw_id;
	jv r, inst, err = jv_invalid();

	snprintf(nm, sizeof(nm), "%s", name);
	if (record_intent(c, spec, hourly, monthly, &err) == -1) {
		jv_free(fw);
		jv_free(body);
		return lc_attach_error(stored(spec), err);
	}
	r = lc_linode_firewall_create(c->http, nm, fw);
	if (!jv_is_valid(r)) {
		jv_free(body);
		if (strcmp(lc_error_code(r), "create_unknown") != 0 &&
		    lc_ledger_remove(&c->ledger, nm, &err) == -1)
			jv_free(err);
		return lc_attach_error(stored(spec), r);
	}
	fw_id = lc_num(r, "id", 0);
	jv_free(r);
	jv_free(lc_session_merge(&c->ledger, nm, jv_object_set(jv_object(),
	    jv_string("firewall_id"), jv_number(fw_id))));
	body = jv_object_set(body, jv_string("firewall_id"), jv_number(fw_id));
	inst = lc_linode_instance_create(c->http, nm, body);
	if (!jv_is_valid(inst)) {
		/* No VM: the firewall alone is no use (and free); remove it,
		 * and the record with it. An unknown outcome keeps both for
		 * lc-watch to settle from the account. */
		snprintf(path, sizeof(path), "/networking/firewalls/%.0f",
		    fw_id);
		if (strcmp(lc_error_code(inst), "create_unknown") != 0) {
			jv_free(lc_linode_delete(c->http, path));
			if (lc_ledger_remove(&c->ledger, nm, &err) == -1)
				jv_free(err);
		}
		return lc_attach_error(stored(spec), inst);
	}
	r = record_session(c, spec, inst, fw_id, hourly, monthly,
	    lc_now(), "created");
	if (!jv_is_valid(r))
		return lc_attach_error(jv_object_set(jv_object(),
		    jv_string("name"), jv_string(nm)), unsaved(c, nm, inst,
		    fw_id, r));
	lc_info("%s: created VM %.0f (%s, %s)", nm, lc_num(inst, "id", 0),
	    lc_str(r, "type"), lc_str(r, "region"));
	jv_free(inst);
	return attach_cache(c, r);
}

/*
 * Node i's create body from the head's: its label, its role's
 * cloud-config ("user_data_worker" for workers, when the spec has one),
 * a public interface and one in the group's subnet at its fixed address.
 * Borrows spec and body.
 */
static jv
node_body(jv spec, jv body, int i, double subnet_id)
{
	jv b = jv_copy(body), ud = lc_get(spec, "user_data_worker"), itf;
	char label[80], addr[32];
	const char *name = lc_str(spec, "name");

	b = jv_object_set(b, jv_string("label"), jv_string(
	    lc_linode_node_label(name, i, label, sizeof(label))));
	if (i > 0 && jv_get_kind(ud) == JV_KIND_STRING)
		b = jv_object_set(b, jv_string("metadata"), jv_object_set(
		    jv_object(), jv_string("user_data"), base64(
		    (const unsigned char *)jv_string_value(ud),
		    (size_t)jv_string_length_bytes(jv_copy(ud)))));
	jv_free(ud);
	itf = JV_OBJECT(jv_string("purpose"), jv_string("vpc"),
	    jv_string("subnet_id"), jv_number(subnet_id),
	    jv_string("ipv4"), JV_OBJECT(jv_string("vpc"), jv_string(
	    lc_linode_node_address(i, addr, sizeof(addr)))));
	return jv_object_set(b, jv_string("interfaces"), JV_ARRAY(
	    JV_OBJECT(jv_string("purpose"), jv_string("public"),
	    jv_string("primary"), jv_true()), itf));
}

/* The group's part of the record: its VPC and each node made so far. */
static jv
group_field(double vpc_id, double subnet_id, jv nodes)
{
	return JV_OBJECT(jv_string("vpc_id"), vpc_id > 0 ? jv_number(vpc_id) :
	    jv_null(), jv_string("subnet_id"), subnet_id > 0 ?
	    jv_number(subnet_id) : jv_null(), jv_string("subnet"),
	    jv_string(LC_VPC_SUBNET), jv_string("nodes"), nodes);
}

/* One node of the record's group: role, label, id, addresses. */
static jv
group_node(const char *name, int i, jv inst)
{
	char label[80], addr[32];
	jv ip = lc_get(inst, "ipv4"), host = jv_null();

	if (jv_get_kind(ip) == JV_KIND_ARRAY && jv_array_length(jv_copy(ip)) >
	    0)
		host = jv_array_get(jv_copy(ip), 0);
	jv_free(ip);
	return JV_OBJECT(jv_string("role"), jv_string(i ? "worker" : "head"),
	    jv_string("label"), jv_string(lc_linode_node_label(name, i, label,
	    sizeof(label))), jv_string("linode_id"), lc_get(inst, "id"),
	    jv_string("host"), host, jv_string("vpc_address"),
	    jv_string(lc_linode_node_address(i, addr, sizeof(addr))));
}

/*
 * Undo a group that could not be made whole: every node, the firewall
 * and the VPC, found in the account by the group tag and labels. The
 * record goes too once all is gone; if anything is left it stays, in
 * state "creating", for lc-watch. Consumes why; returns the error for
 * the record.
 */
static jv
rollback(struct ctx *c, const char *name, double fw_id, jv why)
{
	jv r = lc_linode_group_delete(c->http, name, fw_id, 5 * 60 * 1000L),
	    err = jv_invalid();
	char *m, *dm;

	if (jv_is_valid(r) && lc_str(r, "vpc_error") == NULL &&
	    lc_str(r, "firewall_error") == NULL) {
		lc_info("%s: the group could not be made whole: deleted the "
		    "%.0f node(s) made, the firewall and the VPC", name,
		    lc_num(r, "nodes_deleted", 0));
		if (lc_ledger_remove(&c->ledger, name, &err) == -1)
			jv_free(err);
		jv_free(r);
		return why;
	}
	m = lc_error_message(why);
	dm = jv_is_valid(r) ? lc_xstrdup(lc_str(r, "vpc_error") ? lc_str(r,
	    "vpc_error") : lc_str(r, "firewall_error")) : lc_error_message(r);
	jv_free(r);
	r = lc_errorf(lc_error_code(why), "%s; and undoing the group failed "
	    "(%s): what is left is in the record, and 'lc-watch --destroy' "
	    "deletes it", m, dm);
	jv_free(why);
	free(m);
	free(dm);
	return r;
}

/*
 * Make a group: the VPC with its subnet, the firewall, then the nodes,
 * head first, each saved in the record the moment the API returns it,
 * all of it undone if any step fails. Consumes spec, fw and body.
 */
static jv
make_group(struct ctx *c, jv spec, jv fw, jv body, double hourly,
    double monthly)
{
	const char *name = lc_str(spec, "name");
	int nodes = (int)lc_num(spec, "nodes", 1), i;
	char nm[40], label[64], desc[160], tag[64];
	double vpc_id, subnet_id, fw_id = 0;
	jv r, head = jv_null(), made = jv_array(), err = jv_invalid(), sub;

	snprintf(nm, sizeof(nm), "%s", name);
	for (i = 0; i < nodes; i++)	/* the plan, before anything exists */
		made = jv_array_append(made, group_node(nm, i, jv_null()));
	spec = jv_object_set(spec, jv_string("group"), group_field(0, 0,
	    made));
	made = jv_array();
	if (record_intent(c, spec, hourly, monthly, &err) == -1) {
		jv_free(fw);
		jv_free(body);
		jv_free(made);
		return lc_attach_error(stored(spec), err);
	}
	snprintf(desc, sizeof(desc), "linode-coder %s %s%s",
	    lc_linode_session_tag(nm, tag, sizeof(tag)), *owner ? "lc-owner:"
	    : "", owner);
	sub = JV_OBJECT(jv_string("label"), jv_string("nodes"),
	    jv_string("ipv4"), jv_string(LC_VPC_SUBNET));
	r = lc_linode_vpc_create(c->http, nm, JV_OBJECT(jv_string("label"),
	    jv_string(lc_linode_label(nm, label, sizeof(label))),
	    jv_string("region"), lc_get(body, "region"),
	    jv_string("description"), jv_string(desc),
	    jv_string("subnets"), JV_ARRAY(sub)));
	if (!jv_is_valid(r))
		goto fail;
	vpc_id = lc_num(r, "id", 0);
	sub = lc_get(r, "subnets");
	jv_free(r);
	r = jv_array_get(sub, 0);
	subnet_id = lc_num(r, "id", 0);
	jv_free(r);
	jv_free(lc_session_merge(&c->ledger, nm, jv_object_set(jv_object(),
	    jv_string("group"), group_field(vpc_id, subnet_id,
	    jv_copy(made)))));
	r = lc_linode_firewall_create(c->http, nm, jv_copy(fw));
	if (!jv_is_valid(r))
		goto fail;
	fw_id = lc_num(r, "id", 0);
	jv_free(r);
	jv_free(lc_session_merge(&c->ledger, nm, jv_object_set(jv_object(),
	    jv_string("firewall_id"), jv_number(fw_id))));
	body = jv_object_set(body, jv_string("firewall_id"), jv_number(fw_id));
	for (i = 0; i < nodes; i++) {
		r = lc_linode_node_create(c->http, nm, i, node_body(spec, body,
		    i, subnet_id));
		if (!jv_is_valid(r))
			goto fail;
		made = jv_array_append(made, group_node(nm, i, r));
		jv_free(lc_session_merge(&c->ledger, nm, jv_object_set(
		    i == 0 ? jv_object_set(jv_object(), jv_string("linode_id"),
		    lc_get(r, "id")) : jv_object(), jv_string("group"),
		    group_field(vpc_id, subnet_id, jv_copy(made)))));
		lc_info("%s: created node %d of %d: VM %.0f (%s)", nm, i + 1,
		    nodes, lc_num(r, "id", 0), lc_str(r, "label"));
		if (i == 0)
			head = r;
		else
			jv_free(r);
	}
	jv_free(fw);
	jv_free(body);
	spec = jv_object_set(spec, jv_string("group"), group_field(vpc_id,
	    subnet_id, made));
	r = record_session(c, spec, head, fw_id, hourly, monthly,
	    lc_now(), "created");
	if (!jv_is_valid(r)) {
		jv_free(head);
		return lc_attach_error(jv_object_set(jv_object(),
		    jv_string("name"), jv_string(nm)), rollback(c, nm, fw_id,
		    r));
	}
	jv_free(head);
	return r;
fail:
	jv_free(fw);
	jv_free(body);
	jv_free(made);
	jv_free(head);
	/* An unknown outcome keeps all for lc-watch to settle. */
	if (strcmp(lc_error_code(r), "create_unknown") == 0)
		return lc_attach_error(stored(spec), r);
	return lc_attach_error(stored(spec), rollback(c, nm, fw_id, r));
}

/* The instance create body (label, tags, keys, password, user data). */
static jv
instance_body(jv spec, const char *region, const char *type,
    const char *image, jv keys)
{
	const char *name = lc_str(spec, "name");
	jv b = jv_object(), ud = lc_get(spec, "user_data");
	char label[64];

	b = jv_object_set(b, jv_string("label"), jv_string(lc_linode_label(name,
	    label, sizeof(label))));
	b = jv_object_set(b, jv_string("region"), jv_string(region));
	b = jv_object_set(b, jv_string("type"), jv_string(type));
	b = jv_object_set(b, jv_string("image"), jv_string(image));
	b = jv_object_set(b, jv_string("root_pass"), root_pass());
	b = jv_object_set(b, jv_string("authorized_keys"), keys);
	b = jv_object_set(b, jv_string("tags"), tags(name));
	b = jv_object_set(b, jv_string("booted"), jv_true());
	if (jv_get_kind(ud) == JV_KIND_STRING)
		b = jv_object_set(b, jv_string("metadata"), jv_object_set(
		    jv_object(), jv_string("user_data"), base64(
		    (const unsigned char *)jv_string_value(ud),
		    (size_t)jv_string_length_bytes(jv_copy(ud)))));
	jv_free(ud);
	return b;
}

static jv
create_spec(struct ctx *c, jv spec)
{
	const char *region, *type, *image, *allow;
	double hourly = 0, monthly = 0;
	jv err = jv_invalid(), keys, prev, inst;
	char name[40];
	int gpus = 0, nodes;

	if (jv_object_has(jv_copy(spec), jv_string("error")))
		return spec;	/* failed upstream: pass it on */
	if (check_spec(c, spec, &err) == -1)
		return lc_attach_error(stored(spec), err);
	if ((nodes = spec_nodes(c, &spec, &err)) == -1)
		return lc_attach_error(stored(spec), err);
	grouped = nodes > 1;
	snprintf(name, sizeof(name), "%s", lc_str(spec, "name"));
	region = spec_or(c, spec, "region", "LC_REGION");
	type = spec_or(c, spec, "type", "LC_TYPE");
	image = spec_or(c, spec, "image", "LC_IMAGE");
	if (region == NULL || image == NULL)
		return lc_attach_error(stored(spec), lc_errorf("bad_spec",
		    "no %s: give the spec one or set %s", region ? "image" :
		    "region", region ? "LC_IMAGE" : "LC_REGION"));
	keys = ssh_keys(c);
	if (!jv_is_valid(keys))
		return lc_attach_error(stored(spec), keys);
	if (!c->dry) {
		prev = existing(c, name);
		if (jv_get_kind(prev) != JV_KIND_NULL) {
			jv_free(keys);
			jv_free(spec);
			if (!jv_is_valid(prev))
				return lc_attach_error(jv_object_set(
				    jv_object(), jv_string("name"),
				    jv_string(name)), prev);
			return c->wait ? wait_ready(c, prev) : prev;
		}
		jv_free(prev);
	}
	if (check_offer(c, region, type, &gpus, &hourly, &monthly, &err) == -1) {
		const char *code = lc_error_code(err);

		/* A plan still helps offline: the preset's estimate stands in
		 * for the price the API would give, and says so. */
		if (!c->dry || (strcmp(code, "http_transport") != 0 &&
		    strcmp(code, "timeout") != 0 &&
		    strcmp(code, "api_unavailable") != 0)) {
			jv_free(keys);
			return lc_attach_error(stored(spec), err);
		}
		{
			char *m = lc_error_message(err);

			lc_warnx("%s: the Linode API cannot be reached (%s): "
			    "the plan shows the preset's price estimate and "
			    "checks no region or type", name, m);
			free(m);
		}
		jv_free(err);
		err = jv_invalid();
		hourly = lc_num(spec, "hourly_usd_estimate", 0);
		monthly = 0;
		gpus = (int)lc_num(spec, "gpus", 0);
		spec = jv_object_set(spec, jv_string("price_source"),
		    jv_string("estimate"));
	} else
		spec = jv_object_set(spec, jv_string("price_source"),
		    jv_string("api"));
	/* The session's price is the sum of its nodes'. */
	spec = jv_object_set(spec, jv_string("hourly_cost_usd_node"),
	    hourly > 0 ? jv_number(hourly) : jv_null());
	hourly = lc_round_cents(hourly * nodes);
	monthly = lc_round_cents(monthly * nodes);
	if (!c->dry) {	/* a VM from a run that died before saving it */
		inst = lc_linode_instance_find(c->http, name);
		if (jv_get_kind(inst) == JV_KIND_OBJECT && grouped) {
			jv_free(keys);
			jv_free(inst);
			return lc_attach_error(stored(spec), lc_errorf("exists",
			    "the head of an earlier group named '%s' is still "
			    "in the account: 'lc-watch --destroy' or "
			    "'lc-destroy %s' deletes what is left of it, then "
			    "create it again", name, name));
		}
		if (jv_get_kind(inst) == JV_KIND_OBJECT) {
			time_t t = lc_now();
			const char *cr = lc_str(inst, "created");

			jv_free(keys);
			if (cr != NULL)
				lc_time_parse(cr, &t);
			lc_info("%s: found its VM %.0f from an earlier run: "
			    "saving it", name, lc_num(inst, "id", 0));
			spec = record_session(c, spec, inst, 0, hourly,
			    monthly, t, "adopted");
			jv_free(inst);
			if (!jv_is_valid(spec))
				return lc_attach_error(jv_object_set(
				    jv_object(), jv_string("name"),
				    jv_string(name)), spec);
			return c->wait ? wait_ready(c, spec) : spec;
		}
		if (!jv_is_valid(inst)) {
			jv_free(keys);
			return lc_attach_error(stored(spec), inst);
		}
		jv_free(inst);
	}
	allow = is_public(c, spec) ? allowed(c, spec) : NULL;
	if (is_public(c, spec) && allow == NULL && (!c->wait ||
	    c->until < LC_STAGE_SSH))
		lc_warnx("%s: public, but no address to admit to port 8000 "
		    "(--allow): it stays closed until --wait reads this "
		    "machine's address over SSH", name);
	else if (allow != NULL)
		exposed(name, allow, c->dry);
	{
		jv fw = firewall_body(name, allow);
		jv body = instance_body(spec, region, type, image, keys);

		if (c->dry)
			return cache_plan(c, dry_run(spec, fw, body, hourly,
			    monthly));
		if (grouped)
			spec = make_group(c, spec, fw, body, hourly, monthly);
		else
			spec = make(c, spec, fw, body, hourly, monthly);
	}
	if (c->wait && !jv_object_has(jv_copy(spec), jv_string("error")))
		spec = wait_ready(c, spec);
	return spec;
}

/*
 * One spec, with the session held as being brought up (lib/session) from
 * before its record is written until it is ready or this gives up: a
 * session no process holds was left by a start that stopped.
 */
static jv
create_one(struct ctx *c, jv spec)
{
	const char *name = lc_str(spec, "name");
	jv err = jv_invalid();
	int fd = -1;

	if (!c->dry && name != NULL && !jv_object_has(jv_copy(spec),
	    jv_string("error"))) {
		if (lc_name_check(name, &err) == 0)
			fd = lc_session_hold(&c->ledger, name);
		else
			jv_free(err);
	}
	spec = create_spec(c, spec);
	if (fd != -1)
		close(fd);
	return spec;
}

/* The token must work before anything is made (GET /profile). */
static void
check_token(struct ctx *c)
{
	jv p = lc_linode_call(c->http, "GET", "/profile", jv_null(), jv_null(),
	    0);

	if (!jv_is_valid(p))
		lc_fatal_err(p);
	jv_free(p);
}

static void
setup(struct ctx *c)
{
	struct lc_http_opts o;
	char *token = NULL;
	jv err = jv_invalid();
	double mh = -1;

	/* A dry run uses the token when there is one (the plan shows the
	 * account's cache volume), and goes on without. */
	if ((c->cfg = lc_config_load(&err)) == NULL)
		lc_fatal_err(err);
	if (c->dry && lc_linode_opts(c->cfg, 1, &o, &token, &err) == -1) {
		jv_free(err);
		err = jv_invalid();
		token = NULL;
	}
	if ((token == NULL && lc_linode_opts(c->cfg, !c->dry, &o, &token,
	    &err) == -1) ||
	    (c->max_hourly < 0 && lc_config_number(c->cfg, "LC_MAX_HOURLY",
	    &mh, &err) == -1) ||
	    (c->timeout_s < 0 && lc_config_duration(c->cfg,
	    "LC_READY_TIMEOUT", &c->timeout_s, &err) == -1))
		lc_fatal_err(err);
	if (c->max_hourly < 0)
		c->max_hourly = mh;
	if (c->timeout_s <= 0)
		c->timeout_s = 1800;
	c->public |= lc_config_bool(c->cfg, "LC_PUBLIC");
	if (lc_http_global_init() == -1 || (c->http = lc_http_new(&o)) == NULL)
		lc_fatal("cannot set up libcurl");
	lc_linode_token_free(token);
	if (lc_ledger_open(&c->ledger, &err) == -1 ||
	    (lc_session_owner(&c->ledger, !c->dry, owner, sizeof(owner),
	    &err) == -1 && !c->dry))
		lc_fatal_err(err);
	jv_free(err);
}

int
main(int argc, char *argv[])
{
	struct ctx c = { .max_hourly = -1, .timeout_s = -1,
	    .until = LC_STAGE_COMPLETION };
	struct lc_reader *in;
	jv rec;
	int ch, rc;
	char *end;

	lc_init("lc-create");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'a': c.allow = optarg; break;
		case 'G':
			c.nodes = (int)strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || c.nodes < 1 ||
			    c.nodes > LC_NODES_MAX)
				lc_usage(usage_str, "bad node count '%s': give "
				    "1 to %d", optarg, LC_NODES_MAX);
			break;
		case 'h': lc_opts_help(&cmd);
		case 'm':
			c.max_hourly = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' || c.max_hourly < 0)
				lc_usage(usage_str, "bad price '%s': write "
				    "dollars per hour, e.g. 1.50", optarg);
			break;
		case 'n': c.dry = 1; break;
		case 'P': c.public = 1; break;
		case 'q': lc_quiet = 1; break;
		case 't':
			if (lc_parse_duration(optarg, &c.timeout_s) == -1 ||
			    c.timeout_s == 0)
				lc_usage(usage_str, "bad timeout '%s': write "
				    "seconds, or e.g. 20m", optarg);
			break;
		case 'v': lc_verbose = 1; break;
		case 'u':
			c.until = -2;
			if (strcmp(optarg, "running") == 0)
				c.until = -1;
			for (int i = 0; i < LC_STAGE_COUNT; i++)
				if (strcmp(optarg, lc_ready_stage_name(i)) == 0)
					c.until = i;
			if (c.until == -2)
				lc_usage(usage_str, "no stage '%s': running, ssh, "
				    "secrets, cloud-init, gpu, health or "
				    "completion", optarg);
			break;
		case 'W': c.world = 1; break;
		case 'w': c.wait = 1; break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if (c.allow != NULL && !c.world) {
		char why[160];

		if (allow_check(c.allow, why, sizeof(why)) == 1)
			lc_usage(usage_str, "--allow %s opens port 8000 to %s: "
			    "give --allow-world to mean it", c.allow, why);
	}
	if ((in = lc_reader_open(argc, argv, "name")) == NULL)
		lc_usage(usage_str, NULL);
	setup(&c);
	if (!c.dry)
		check_token(&c);
	while (lc_reader_next(in, &rec))
		lc_emit(create_one(&c, rec));
	rc = lc_finish(in);
	lc_http_free(c.http);
	lc_ledger_close(&c.ledger);
	lc_config_free(c.cfg);
	return rc;
}
