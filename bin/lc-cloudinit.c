/*
 * lc-cloudinit: resolve session specs (config, preset, record, flags),
 * check them against the GPU type, and add the VM's cloud-config as
 * "user_data" with a freshly made SSH host key ("host_key"). A pure
 * function of its input: no network, no money. With -R, only resolve and
 * check: what a running VM would serve instead (coder switch-model).
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>

#include "cachespec.h"
#include "compat.h"
#include "config.h"
#include "failsafe.h"
#include "lc.h"
#include "opts.h"
#include "preset.h"
#include "rec.h"
#include "vllm.h"
#include "vmfiles.h"
#include "yamljv.h"

/*
 * The Linode images the VM's scripts were tested on (Ubuntu's packages,
 * ubuntu-drivers, the systemd there); -i takes another only with -U.
 */
static const char *const tested_images[] = {
	"linode/ubuntu24.04", "linode/ubuntu24.04-nvidia", NULL
};

/* Linode's limit on decoded metadata.user_data. */
#define USER_DATA_MAX 65535

static const struct lc_opt opts[] = {
	{ 'p', "preset", "preset", "the preset (lc-cloudinit -L lists them)" },
	{ 'm', "model", "model", "Hugging Face model id" },
	{ 'T', "type", "type", "Linode GPU type" },
	{ 'g', "region", "region", "Linode region" },
	{ 'i', "image", "image", "Linode image (linode/ubuntu24.04-nvidia: "
	  "driver included)" },
	{ 'U', "image-unchecked", NULL, "take an image lc-cloudinit was not "
	  "tested with" },
	{ 'I', "vllm-image", "vllm-image", "vLLM container image (a pinned "
	  "tag)" },
	{ 'V', "volume", "volume", "Block Storage volume for the model cache" },
	{ 'k', "cache", NULL, "keep the model cache on a volume "
	  "(lc-cache-<region>)" },
	{ 'K', "no-cache", NULL, "no cache volume" },
	{ 'E', "cache-new", NULL, "with -k: a volume of this session's own" },
	{ 'z', "cache-size", "GB", "the cache volume's size when made" },
	{ 'c', "context", "tokens", "vLLM max_model_len" },
	{ 'G', "nodes", "count", "VMs in the group: more than 1 renders a "
	  "head and workers (a Ray cluster)" },
	{ 'P', "public", NULL, "serve on all interfaces (default: the VM's "
	  "loopback)" },
	{ 'N', "name", "name", "make one spec of that name (stdin is not "
	  "read)" },
	{ 'r', "raw", NULL, "print the cloud-config itself, not records" },
	{ 'R', "resolve", NULL, "resolve and check only, from the presets, the "
	  "record and flags (no config): no cloud-config, no host key" },
	{ 'L', "list-presets", NULL, "one record per preset" },
	{ 'H', "table", NULL, "with -L: a table for people" },
	{ 'q', "quiet", NULL, "no warnings on stderr" },
	{ 'v', "verbose", NULL, "say which presets files were read" },
	{ 'h', "help", NULL, "this help" },
	{ 0, NULL, NULL, NULL }
};

static const struct lc_cmd cmd = {
	.name = "lc-cloudinit",
	.summary = "lc-cloudinit: session specs in, the same records with the "
	    "VM's cloud-config out",
	.operands = "[name ...]",
	.after = "Precedence: preset < config < input record < flags. "
	    "See lc-cloudinit(1).\n",
	.opts = opts
};

static const char *usage_str;	/* lc_opts_usage(&cmd), set in main */

struct ctx {
	int	 raw, resolve;
	jv	 db;		/* presets and types */
	jv	 config;	/* the config layer */
	jv	 flags;		/* the flags layer */
	struct lc_config *cfg;
};

/* The spec fields config gives. Borrows c. Returns owned. */
static jv
config_layer(struct lc_config *c)
{
	static const struct { const char *key, *field; } s[] = {
		{ "LC_PRESET", "preset" }, { "LC_REGION", "region" },
		{ "LC_IMAGE", "image" }, { "LC_VLLM_IMAGE", "vllm_image" },
		{ "LC_TYPE", "type" }, { "LC_MODEL", "model" },
		{ NULL, NULL }
	};
	const char *port = lc_config_get(c, "LC_VLLM_PORT");
	const char *vol = lc_config_get(c, "LC_VOLUME");
	jv l = jv_object();
	char ep[64];
	int i;

	for (i = 0; s[i].key != NULL; i++)
		if (lc_config_get(c, s[i].key) != NULL)
			l = jv_object_set(l, jv_string(s[i].field),
			    jv_string(lc_config_get(c, s[i].key)));
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/v1",
	    port != NULL && atoi(port) > 0 && atoi(port) < 65536 ?
	    atoi(port) : 8000);
	l = jv_object_set(l, jv_string("endpoint"), jv_string(ep));
	l = jv_object_set(l, jv_string("public"),
	    jv_bool(lc_config_bool(c, "LC_PUBLIC")));
	l = jv_object_set(l, jv_string("cache"),
	    jv_bool(lc_config_bool(c, "LC_CACHE")));
	if (lc_config_get(c, "LC_CACHE_SIZE") != NULL &&
	    atoi(lc_config_get(c, "LC_CACHE_SIZE")) > 0)
		l = jv_object_set(l, jv_string("cache_size_gb"), jv_number(
		    atoi(lc_config_get(c, "LC_CACHE_SIZE"))));
	return jv_object_set(l, jv_string("volume"), vol != NULL ?
	    jv_string(vol) : jv_null());
}

/* Run ssh-keygen for a new ed25519 host key. 0, or -1 with *err. */
static int
make_host_key(const char *name, char **priv, char **pub, jv *err)
{
	char dir[] = "/tmp/lc-cloudinit.XXXXXX", comment[64];
	char *key = NULL, *keypub = NULL;
	int status = -1, rc = -1, fd;
	const char *tmp = getenv("TMPDIR");
	char tmpl[512];
	pid_t pid;

	if (tmp != NULL && *tmp == '/' && strlen(tmp) < 400)
		snprintf(tmpl, sizeof(tmpl), "%s/lc-cloudinit.XXXXXX", tmp);
	else
		snprintf(tmpl, sizeof(tmpl), "%s", dir);
	if (mkdtemp(tmpl) == NULL) {	/* mode 0700 */
		*err = lc_errorf("io", "cannot make a private directory for "
		    "the host key: %s", strerror(errno));
		return -1;
	}
	key = lc_path_join(tmpl, "key");
	keypub = lc_path_join(tmpl, "key.pub");
	snprintf(comment, sizeof(comment), "lc-%s", name);
	if ((pid = fork()) == 0) {
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, 0);
			dup2(fd, 1);
		}
		execlp("ssh-keygen", "ssh-keygen", "-q", "-t", "ed25519", "-N",
		    "", "-C", comment, "-f", key, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
	if (pid == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		*err = lc_errorf("ssh_keygen", "ssh-keygen could not make a "
		    "host key (status %d): install OpenSSH's ssh-keygen",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	else if (lc_read_file(key, priv, NULL) == -1 ||
	    lc_read_file(keypub, pub, NULL) == -1)
		*err = lc_errorf("ssh_keygen", "cannot read the new host key: "
		    "%s", strerror(errno));
	else
		rc = 0;
	unlink(key);
	unlink(keypub);
	rmdir(tmpl);
	free(key);
	free(keypub);
	return rc;
}

/* Strip trailing newlines and spaces in place. */
static char *
chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' ||
	    s[n - 1] == ' '))
		s[--n] = '\0';
	return s;
}

/* The user's SSH public key (LC_SSH_KEY + ".pub"). Owned or error. */
static jv
user_key(struct lc_config *c)
{
	char *key = lc_config_path(c, "LC_SSH_KEY"), *path, *text = NULL;
	jv out;

	if (key == NULL)
		return lc_errorf("no_ssh_key", "LC_SSH_KEY is empty: set it to "
		    "your private key's path (its .pub goes to the VM)");
	path = lc_xmalloc(strlen(key) + 5);
	sprintf(path, "%s.pub", key);
	if (lc_read_file(path, &text, NULL) == -1)
		out = lc_errorf("no_ssh_key", "cannot read your SSH public key "
		    "%s: %s: make one with ssh-keygen -t ed25519, or point "
		    "LC_SSH_KEY at your private key", path, strerror(errno));
	else if (strchr(chomp(text), '\n') != NULL || (strncmp(text, "ssh-",
	    4) != 0 && strncmp(text, "ecdsa-", 6) != 0 &&
	    strncmp(text, "sk-", 3) != 0))
		out = lc_errorf("no_ssh_key", "%s is not one SSH public key "
		    "line: make one with ssh-keygen -t ed25519", path);
	else
		out = jv_string(text);
	free(text);
	free(path);
	free(key);
	return out;
}

/* The session-specific files: vllm.env and vm.env. Borrows spec. */
static char *
vm_env(jv spec)
{
	struct lc_buf b = LC_BUF_INIT;
	const char *vol = lc_str(spec, "volume");

	lc_buf_addstr(&b, "# linode-coder: this VM's session. Sourced by "
	    "bash.\nLC_SESSION=");
	lc_shquote(&b, lc_str(spec, "name"));
	lc_buf_addstr(&b, "\nLC_VOLUME_DEVICE=");
	if (vol != NULL) {
		struct lc_buf dev = LC_BUF_INIT;

		lc_buf_printf(&dev, "%s%s", LC_VM_VOLUME_DEV, vol);
		lc_shquote(&b, dev.data);
		lc_buf_free(&dev);
	} else
		lc_shquote(&b, "");
	lc_buf_addstr(&b, "\n");
	return b.data;
}

static jv
file_entry(const char *path, const char *perm, const char *content)
{
	jv f = jv_object_set(jv_object(), jv_string("path"), jv_string(path));

	f = jv_object_set(f, jv_string("owner"), jv_string("root:root"));
	f = jv_object_set(f, jv_string("permissions"), jv_string(perm));
	return jv_object_set(f, jv_string("content"), jv_string(content));
}

/* write_files: the session's two env files, then the fixed files. */
static jv
write_files(jv spec)
{
	jv files = jv_array();
	char *venv = lc_vllm_env_render(spec), *menv = vm_env(spec);
	int i;

	files = jv_array_append(files, file_entry(LC_VM_VLLM_ENV, "0644",
	    venv));
	files = jv_array_append(files, file_entry(LC_VM_ENV, "0644", menv));
	for (i = 0; lc_vmfiles[i].path != NULL; i++)
		files = jv_array_append(files, file_entry(lc_vmfiles[i].path,
		    lc_vmfiles[i].permissions, lc_vmfiles[i].content));
	/* The on-VM deadline (lib/failsafe); idle until lc-create arms it. */
	files = jv_array_append(files, file_entry(LC_FAILSAFE_SCRIPT, "0755",
	    lc_failsafe_script));
	files = jv_array_append(files, file_entry("/etc/systemd/system/"
	    LC_FAILSAFE_SERVICE, "0644", lc_failsafe_service));
	files = jv_array_append(files, file_entry("/etc/systemd/system/"
	    LC_FAILSAFE_TIMER, "0644", lc_failsafe_timer));
	free(venv);
	free(menv);
	return files;
}

static jv
str_array(const char *a, const char *b, const char *c)
{
	jv arr = jv_array_append(jv_array(), jv_string(a));

	if (b != NULL)
		arr = jv_array_append(arr, jv_string(b));
	if (c != NULL)
		arr = jv_array_append(arr, jv_string(c));
	return arr;
}

/* The cloud-config as a jv. Borrows everything. */
static jv
cloud_config(jv spec, const char *ukey, const char *hpriv,
    const char *hpub)
{
	jv cc = jv_object(), keys, power;

	cc = jv_object_set(cc, jv_string("ssh_pwauth"), jv_false());
	cc = jv_object_set(cc, jv_string("disable_root"), jv_false());
	cc = jv_object_set(cc, jv_string("ssh_authorized_keys"),
	    str_array(ukey, NULL, NULL));
	cc = jv_object_set(cc, jv_string("ssh_deletekeys"), jv_true());
	/* ed25519 exists already (ssh_keys), so none is generated. */
	cc = jv_object_set(cc, jv_string("ssh_genkeytypes"),
	    str_array("ed25519", NULL, NULL));
	keys = jv_object_set(jv_object(), jv_string("ed25519_private"),
	    jv_string(hpriv));
	keys = jv_object_set(keys, jv_string("ed25519_public"),
	    jv_string(hpub));
	cc = jv_object_set(cc, jv_string("ssh_keys"), keys);
	cc = jv_object_set(cc, jv_string("write_files"), write_files(spec));
	/* The fail-safe timer first: a provision that hangs must not
	 * leave the VM without it. */
	cc = jv_object_set(cc, jv_string("runcmd"), jv_array_append(
	    jv_array_append(jv_array(), jv_array_append(str_array("systemctl",
	    "enable", "--now"), jv_string(LC_FAILSAFE_TIMER))),
	    str_array(LC_VM_LIB "/provision", NULL, NULL)));
	power = jv_object_set(jv_object(), jv_string("mode"),
	    jv_string("reboot"));
	power = jv_object_set(power, jv_string("delay"), jv_string("now"));
	power = jv_object_set(power, jv_string("message"), jv_string(
	    "linode-coder: rebooting once to load the NVIDIA driver"));
	power = jv_object_set(power, jv_string("timeout"), jv_number(30));
	power = jv_object_set(power, jv_string("condition"), str_array(
	    "test", "-f", LC_VM_STATE "/reboot-needed"));
	return jv_object_set(cc, jv_string("power_state"), power);
}

/* "ssh-ed25519 AAAA... comment" -> "AAAA...". Owned. */
static jv
key_base64(const char *line)
{
	const char *p = strchr(line, ' '), *e;

	if (p == NULL)
		return jv_string("");
	p++;
	e = strchr(p, ' ');
	return e ? jv_string_sized(p, (int)(e - p)) : jv_string(p);
}

/*
 * The cloud-config of one role as YAML text into *y: the head's (a
 * single VM's), or with worker set a group's worker's (the same files,
 * vllm.env saying LC_RAY_ROLE=worker). 0, or -1 with *err. Borrows.
 */
static int
render_role(jv spec, int worker, const char *ukey, const char *priv,
    const char *pub, struct lc_buf *y, jv *err)
{
	jv s = worker ? jv_object_set(jv_copy(spec), jv_string("ray_role"),
	    jv_string("worker")) : jv_copy(spec);
	jv cc = cloud_config(s, ukey, priv, pub);
	int rc = 0;

	lc_buf_addstr(y, "#cloud-config\n# linode-coder session: made by "
	    "lc-cloudinit; holds no secrets\n");
	if (lc_yaml_from_jv(cc, y, err) == -1)
		rc = -1;
	else if (y->len > USER_DATA_MAX) {
		*err = lc_errorf("user_data_too_large", "the cloud-config is "
		    "%zu bytes, over Linode's limit of %d: shorten "
		    "vllm.extra_args or vllm.env", y->len, USER_DATA_MAX);
		rc = -1;
	}
	jv_free(cc);
	jv_free(s);
	return rc;
}

/*
 * Render the spec's user_data and host_key; for a group also
 * user_data_worker (every node gets the one host key, so the session's
 * known_hosts pins them all). Consumes spec.
 */
static jv
render(struct ctx *c, jv spec)
{
	struct lc_buf y = LC_BUF_INIT, w = LC_BUF_INIT;
	char *priv = NULL, *pub = NULL;
	jv ukey = user_key(c->cfg), err = jv_invalid(), hk;
	int group = lc_num(spec, "nodes", 1) > 1;

	if (!jv_is_valid(ukey)) {
		jv_free(spec);
		return ukey;
	}
	if (make_host_key(lc_str(spec, "name"), &priv, &pub, &err) == -1) {
		jv_free(ukey);
		jv_free(spec);
		return err;
	}
	chomp(pub);
	if (render_role(spec, 0, jv_string_value(ukey), priv, pub, &y,
	    &err) == -1 || (group && render_role(spec, 1,
	    jv_string_value(ukey), priv, pub, &w, &err) == -1)) {
		jv_free(spec);
		spec = err;
	} else {
		hk = jv_object_set(jv_object(), jv_string("type"),
		    jv_string("ssh-ed25519"));
		hk = jv_object_set(hk, jv_string("public"), key_base64(pub));
		spec = jv_object_set(spec, jv_string("host_key"), hk);
		spec = jv_object_set(spec, jv_string("user_data"),
		    jv_string(y.data));
		if (group)
			spec = jv_object_set(spec, jv_string(
			    "user_data_worker"), jv_string(w.data));
	}
	jv_free(ukey);
	lc_buf_free(&y);
	lc_buf_free(&w);
	free(priv);
	free(pub);
	return spec;
}

static void
print_warnings(jv spec)
{
	jv w = lc_get(spec, "warnings");

	if (jv_get_kind(w) == JV_KIND_ARRAY)
		jv_array_foreach(w, i, s) {
			if (!lc_quiet && jv_get_kind(s) == JV_KIND_STRING)
				lc_warnx("%s: warning: %s", lc_subject(spec),
				    jv_string_value(s));
			jv_free(s);
		}
	jv_free(w);
}

/*
 * The model cache: with "cache" true and no volume named, the volume is
 * lc-cache-<region> (lc-cache-<region>-<name> with "cache_new"), which
 * lc-create finds or makes and attaches; a group goes without. Consumes
 * spec; returns it.
 */
static jv
cache_volume(jv spec)
{
	jv on = lc_get(spec, "cache"), nw = lc_get(spec, "cache_new");
	char label[40];

	if (jv_get_kind(on) == JV_KIND_TRUE && lc_str(spec, "volume") ==
	    NULL && lc_num(spec, "nodes", 1) > 1)
		lc_warnx("%s: a group of %.0f nodes runs without the model "
		    "cache: a volume attaches to one VM, and every node loads "
		    "its part of the model", lc_subject(spec), lc_num(spec,
		    "nodes", 1));
	else if (jv_get_kind(on) == JV_KIND_TRUE && lc_str(spec, "volume") ==
	    NULL && lc_str(spec, "region") != NULL)
		spec = jv_object_set(spec, jv_string("volume"), jv_string(
		    lc_cache_label(lc_str(spec, "region"),
		    jv_get_kind(nw) == JV_KIND_TRUE ? lc_str(spec, "name") :
		    NULL, label, sizeof(label))));
	else if (jv_get_kind(on) == JV_KIND_FALSE && lc_str(spec, "volume") !=
	    NULL && strncmp(lc_str(spec, "volume"), LC_CACHE_PREFIX,
	    strlen(LC_CACHE_PREFIX)) == 0)
		spec = jv_object_set(spec, jv_string("volume"), jv_null());
	jv_free(on);
	jv_free(nw);
	return spec;
}

/* An option's whole number within [lo, hi], or -1. */
static long
int_arg(const char *s, long lo, long hi)
{
	char *end;
	long n = strtol(s, &end, 10);

	return *s == '\0' || *end != '\0' || n < lo || n > hi ? -1 : n;
}

/* Resolve, check and render one record. Consumes rec; emits. */
static void
cloudinit_one(struct ctx *c, jv rec)
{
	jv layers, spec;

	if (jv_object_has(jv_copy(rec), jv_string("error"))) {
		lc_emit(rec);	/* a failed record passes untouched */
		return;
	}
	/* -R: the config's model or preset must not stand in for a
	 * running VM's record (coder switch-model). */
	layers = c->resolve ? jv_array() : jv_array_append(jv_array(),
	    jv_copy(c->config));
	layers = jv_array_append(layers, jv_copy(rec));
	layers = jv_array_append(layers, jv_copy(c->flags));
	spec = lc_spec_resolve(c->db, layers);
	if (jv_is_valid(spec)) {
		print_warnings(spec);
		spec = jv_object_merge(jv_object_set(jv_object(),
		    jv_string("name"), lc_get(rec, "name")), spec);
		spec = cache_volume(spec);
		if (!c->resolve)
			spec = render(c, spec);
	}
	if (!jv_is_valid(spec)) {
		rec = lc_attach_error(rec, spec);
		if (c->raw) {
			lc_note_failure();
			jv_free(rec);
		} else
			lc_emit(rec);
		return;
	}
	jv_free(rec);
	if (c->raw) {
		fputs(lc_str(spec, "user_data"), stdout);
		jv_free(spec);
	} else
		lc_emit(spec);
}

static int
list_presets(jv db, int table)
{
	jv list = lc_preset_list(db);

	if (table)
		printf("%-24s %-38s %-20s %4s %6s %7s\n", "NAME", "MODEL",
		    "TYPE", "GPUS", "$/H", "CONTEXT");
	jv_array_foreach(list, i, r) {
		if (table) {
			char price[16] = "?", ctx[16] = "?";

			if (lc_num(r, "hourly_usd_estimate", -1) >= 0)
				snprintf(price, sizeof(price), "~%.2f",
				    lc_num(r, "hourly_usd_estimate", 0));
			if (lc_num(r, "max_model_len", -1) > 0)
				snprintf(ctx, sizeof(ctx), "%.0f",
				    lc_num(r, "max_model_len", 0));
			printf("%-24s %-38s %-20s %4.0f %6s %7s\n",
			    lc_subject(r), lc_str(r, "model") ? lc_str(r,
			    "model") : "?", lc_str(r, "type") ? lc_str(r,
			    "type") : "?", lc_num(r, "gpus", 0), price, ctx);
			jv_free(r);
		} else
			lc_emit(r);
	}
	jv_free(list);
	return lc_finish(NULL);
}

static jv
set_flag(jv flags, const char *key, jv v)
{
	return jv_object_set(flags, jv_string(key), v);
}

/* Whether image is in tested_images. */
static int
tested(const char *image)
{
	int i;

	for (i = 0; tested_images[i] != NULL; i++)
		if (strcmp(image, tested_images[i]) == 0)
			return 1;
	return 0;
}

int
main(int argc, char *argv[])
{
	struct ctx c = { .flags = jv_object() };
	const char *argv0 = argv[0], *image = NULL;
	struct lc_reader *in;
	const char *name = NULL;
	int ch, list = 0, table = 0, unchecked = 0, rc;
	jv err = jv_invalid(), rec, v;
	long n;

	lc_init("lc-cloudinit");
	usage_str = lc_opts_usage(&cmd);
	while ((ch = lc_opts_get(&cmd, NULL, argc, argv)) != -1) {
		switch (ch) {
		case 'c':
			if ((n = int_arg(optarg, 256, 10000000)) < 0)
				lc_usage(usage_str, "bad context length '%s': "
				    "give tokens, e.g. 16384", optarg);
			v = jv_object_set(jv_object(),
			    jv_string("max_model_len"), jv_number(n));
			c.flags = set_flag(c.flags, "vllm", v);
			break;
		case 'G':
			if ((n = int_arg(optarg, 1, LC_NODES_MAX)) < 0)
				lc_usage(usage_str, "bad node count '%s': give "
				    "1 to %d", optarg, LC_NODES_MAX);
			c.flags = set_flag(c.flags, "nodes", jv_number(n));
			break;
		case 'g': c.flags = set_flag(c.flags, "region",
		    jv_string(optarg)); break;
		case 'h': lc_opts_help(&cmd);
		case 'H': table = 1; break;
		case 'i': image = optarg; c.flags = set_flag(c.flags,
		    "image", jv_string(optarg)); break;
		case 'I': c.flags = set_flag(c.flags, "vllm_image",
		    jv_string(optarg)); break;
		case 'L': list = 1; break;
		case 'm': c.flags = set_flag(c.flags, "model",
		    jv_string(optarg)); break;
		case 'N': name = optarg; break;
		case 'p': c.flags = set_flag(c.flags, "preset",
		    jv_string(optarg)); break;
		case 'P': c.flags = set_flag(c.flags, "public", jv_true());
		    break;
		case 'q': lc_quiet = 1; break;
		case 'r': c.raw = 1; break;
		case 'R': c.resolve = 1; break;
		case 'T': c.flags = set_flag(c.flags, "type",
		    jv_string(optarg)); break;
		case 'U': unchecked = 1; break;
		case 'v': lc_verbose = 1; break;
		case 'V': c.flags = set_flag(c.flags, "volume",
		    jv_string(optarg)); break;
		case 'k': c.flags = set_flag(c.flags, "cache", jv_true());
		    break;
		case 'K': c.flags = set_flag(c.flags, "cache", jv_false());
		    break;
		case 'E': c.flags = set_flag(c.flags, "cache_new", jv_true());
		    break;
		case 'z':
			if ((n = int_arg(optarg, 10, 10240)) < 0)
				lc_usage(usage_str, "bad cache size '%s': give "
				    "GB, 10 to 10240", optarg);
			c.flags = set_flag(c.flags, "cache_size_gb",
			    jv_number(n));
			break;
		default: lc_bad_option(usage_str, argv);
		}
	}
	argc -= optind;
	argv += optind;
	if (name != NULL && argc > 0)
		lc_usage(usage_str, "-N makes one spec: give a name with -N "
		    "or as operands, not both");
	if (table && !list)
		lc_usage(usage_str, "-H (--table) goes with -L");
	if (c.resolve && c.raw)
		lc_usage(usage_str, "-R and -r exclude each other");
	if (image != NULL && !unchecked && !tested(image))
		lc_usage(usage_str, "image '%s' is not one lc-cloudinit was "
		    "tested with (%s, %s): give --image-unchecked to use it",
		    image, tested_images[0], tested_images[1]);

	c.db = lc_preset_load(argv0);
	if (!jv_is_valid(c.db)) {
		jv_free(c.flags);
		lc_fatal_err(c.db);
	}
	if (lc_verbose) {
		jv files = lc_get(c.db, "files");

		jv_array_foreach(files, i, f) {
			lc_info("presets from %s", jv_string_value(f));
			jv_free(f);
		}
		jv_free(files);
	}
	if (list) {
		rc = list_presets(c.db, table);
		jv_free(c.db);
		jv_free(c.flags);
		return rc;
	}
	if ((c.cfg = lc_config_load(&err)) == NULL) {
		jv_free(c.db);
		jv_free(c.flags);
		lc_fatal_err(err);
	}
	c.config = config_layer(c.cfg);
	if (name != NULL) {
		in = NULL;
		cloudinit_one(&c, jv_object_set(jv_object(),
		    jv_string("name"), jv_string(name)));
	} else {
		if ((in = lc_reader_open(argc, argv, "name")) == NULL)
			lc_usage(usage_str, NULL);
		while (lc_reader_next(in, &rec))
			cloudinit_one(&c, rec);
	}
	rc = lc_finish(in);
	jv_free(c.db);
	jv_free(c.config);
	jv_free(c.flags);
	lc_config_free(c.cfg);
	return rc;
}
