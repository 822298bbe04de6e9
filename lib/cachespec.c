/* cachespec: the cache volume's label and size (see cachespec.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cachespec.h"
#include "lc.h"

char *
lc_cache_label(const char *region, const char *suffix, char *buf, size_t len)
{
	if (suffix != NULL && *suffix != '\0')
		snprintf(buf, len, "%s%s-%s", LC_CACHE_PREFIX, region, suffix);
	else
		snprintf(buf, len, "%s%s", LC_CACHE_PREFIX, region);
	if (len > 33)
		buf[32] = '\0';
	while (*buf != '\0' && buf[strlen(buf) - 1] == '-')
		buf[strlen(buf) - 1] = '\0';
	return buf;
}

int
lc_cache_size_gb(jv spec)
{
	double w = lc_num(spec, "vram_need_gib", 0);
	int gb;

	if (w <= 0)
		w = 40;
	gb = (int)ceil((w + 24) * 1.25 / 10) * 10;
	return gb < 20 ? 20 : gb;
}
