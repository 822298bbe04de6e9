/*
 * cachespec: the model cache volume as a spec sees it, with no network:
 * its label and the size it is made with (lib/cache speaks to the API).
 */
#ifndef LC_CACHESPEC_H
#define LC_CACHESPEC_H

#include <stddef.h>

#include <jv.h>

/* The model cache volume's label prefix. */
#define LC_CACHE_PREFIX	"lc-cache-"
/* "lc-cache-<region>", or "lc-cache-<region>-<suffix>" (suffix may be
 * NULL), cut to the API's 32 characters. Returns buf. */
char	*lc_cache_label(const char *region, const char *suffix, char *buf,
	    size_t len);

/* The size in GB for a spec (borrowed): the weights (vram_need_gib, else
 * 40) plus the vLLM image unpacked in Docker's data-root (24), with a
 * quarter for headroom, in steps of 10; at least 20. */
int	lc_cache_size_gb(jv spec);

#endif
