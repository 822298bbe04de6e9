/* cache: the model cache volume on the Linode API (see cache.h). */
#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "compat.h"
#include "lc.h"
#include "linode.h"

double
lc_cache_gb_month(struct lc_http *h, const char *region)
{
	jv list = lc_linode_list(h, "/volumes/types", jv_null());
	double hourly = 0, monthly = 0;

	if (jv_get_kind(list) != JV_KIND_ARRAY) {
		jv_free(list);
		return 0;
	}
	jv_array_foreach(list, i, t) {
		(void)i;
		if (lc_str(t, "id") != NULL && strcmp(lc_str(t, "id"),
		    "volume") == 0)
			lc_linode_price(t, region, &hourly, &monthly);
		jv_free(t);
	}
	jv_free(list);
	return monthly;
}

int
lc_cache_region_ok(struct lc_http *h, const char *region, jv *err)
{
	char path[128];
	jv r, caps;
	int ok = 0;

	snprintf(path, sizeof(path), "/regions/%s", region);
	r = lc_linode_call(h, "GET", path, jv_null(), jv_null(), 0);
	if (!jv_is_valid(r)) {
		*err = r;
		return -1;
	}
	caps = lc_get(r, "capabilities");
	jv_free(r);
	if (jv_get_kind(caps) == JV_KIND_ARRAY)
		jv_array_foreach(caps, i, c) {
			(void)i;
			if (jv_get_kind(c) == JV_KIND_STRING &&
			    strcmp(jv_string_value(c), "Block Storage") == 0)
				ok = 1;
			jv_free(c);
		}
	jv_free(caps);
	return ok;
}

jv
lc_cache_list(struct lc_http *h)
{
	return lc_linode_list(h, "/volumes", jv_object_set(jv_object(),
	    jv_string("tags"), jv_string(LC_LINODE_TAG)));
}

jv
lc_cache_find(jv list, const char *label)
{
	jv found = jv_null();

	if (jv_get_kind(list) != JV_KIND_ARRAY)
		return found;
	jv_array_foreach(list, i, v) {
		(void)i;
		if (jv_get_kind(found) == JV_KIND_NULL && lc_str(v, "label") &&
		    strcmp(lc_str(v, "label"), label) == 0)
			found = jv_copy(v);
		jv_free(v);
	}
	return found;
}

/* Poll the volume until it is active, attached to id and ready. */
static jv
wait_ready(struct lc_http *h, double vid, double id, long timeout_ms)
{
	long long end = lc_mono_ms() + timeout_ms;
	char path[64];
	jv v, io;

	snprintf(path, sizeof(path), "/volumes/%.0f", vid);
	for (;;) {
		v = lc_linode_call(h, "GET", path, jv_null(), jv_null(), 0);
		if (!jv_is_valid(v))
			return v;
		io = lc_get(v, "io_ready");
		if (lc_str(v, "status") != NULL && strcmp(lc_str(v, "status"),
		    "active") == 0 && lc_num(v, "linode_id", 0) == id &&
		    jv_get_kind(io) != JV_KIND_FALSE) {
			jv_free(io);
			return v;
		}
		jv_free(io);
		jv_free(v);
		if (lc_mono_ms() >= end)
			return lc_errorf("timeout", "volume %.0f is not ready "
			    "after %lds", vid, timeout_ms / 1000);
		lc_sleep_ms(500);
	}
}

jv
lc_cache_attach(struct lc_http *h, const char *label, const char *region,
    int size_gb, double id, jv tags, long timeout_ms)
{
	jv list = lc_cache_list(h), vol, r, body;
	char path[64];
	int created = 0;

	if (!jv_is_valid(list)) {
		jv_free(tags);
		return list;
	}
	vol = lc_cache_find(list, label);
	jv_free(list);
	if (jv_get_kind(vol) == JV_KIND_NULL) {
		body = jv_object_set(jv_object(), jv_string("label"),
		    jv_string(label));
		body = jv_object_set(body, jv_string("size"),
		    jv_number(size_gb));
		body = jv_object_set(body, jv_string("linode_id"),
		    jv_number(id));
		body = jv_object_set(body, jv_string("tags"), tags);
		vol = lc_linode_call(h, "POST", "/volumes", jv_null(), body,
		    LC_HTTP_ONCE);
		if (!jv_is_valid(vol))
			return vol;
		created = 1;
	} else {
		jv_free(tags);
		if (lc_str(vol, "region") == NULL || strcmp(lc_str(vol,
		    "region"), region) != 0) {
			jv_free(vol);
			return lc_errorf("cache_busy", "%s is in another "
			    "region", label);
		}
		if (lc_num(vol, "linode_id", 0) != 0 &&
		    lc_num(vol, "linode_id", 0) != id) {
			r = lc_errorf("cache_busy", "%s is attached to %s",
			    label, lc_str(vol, "linode_label") ?
			    lc_str(vol, "linode_label") : "another instance");
			jv_free(vol);
			return r;
		}
		if (lc_num(vol, "linode_id", 0) == 0) {
			snprintf(path, sizeof(path), "/volumes/%.0f/attach",
			    lc_num(vol, "id", 0));
			r = lc_linode_call(h, "POST", path, jv_null(),
			    jv_object_set(jv_object(), jv_string("linode_id"),
			    jv_number(id)), 0);
			if (!jv_is_valid(r)) {
				jv_free(vol);
				return r;
			}
			jv_free(r);
		}
	}
	r = wait_ready(h, lc_num(vol, "id", 0), id, timeout_ms);
	jv_free(vol);
	if (!jv_is_valid(r))
		return r;
	return jv_object_set(r, jv_string("created"), jv_bool(created));
}
