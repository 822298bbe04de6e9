/*
 * cache: the model cache, a Block Storage volume per owner and region
 * (label "lc-cache-<region>", tags "linode-coder" and "lc-owner:<id>")
 * that holds the Hugging Face cache and Docker's images between sessions.
 * Linode bills a volume per GB and month whether it is attached or not,
 * until it is deleted. Errors are values (lib/linode's codes, and
 * cache_busy: attached to another instance; no_block_storage: the region
 * has none).
 */
#ifndef LC_CACHE_H
#define LC_CACHE_H

#include <jv.h>

#include "http.h"
#include "cachespec.h"

/* USD per GB and month in region from /volumes/types; 0 when unknown. */
double	lc_cache_gb_month(struct lc_http *h, const char *region);
/* Does the region offer Block Storage? 1, 0, or -1 with *err. */
int	lc_cache_region_ok(struct lc_http *h, const char *region, jv *err);
/* Every volume tagged linode-coder: an owned array, or an error value. */
jv	lc_cache_list(struct lc_http *h);
/* The volume labelled label in list (borrowed), or null. */
jv	lc_cache_find(jv list, const char *label);
/*
 * Attach the cache volume label to instance id in region, creating it
 * (size_gb, tags consumed) when missing, and wait until the API says it
 * is attached and ready for I/O (io_ready, where the API reports it), at
 * most timeout_ms. Returns the volume with "created": bool, or an error
 * value (cache_busy when attached to another instance).
 */
jv	lc_cache_attach(struct lc_http *h, const char *label,
	    const char *region, int size_gb, double id, jv tags,
	    long timeout_ms);

#endif
