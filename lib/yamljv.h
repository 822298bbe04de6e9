/*
 * yamljv: YAML <-> jv with libyaml.
 *
 * Reading takes the first document of a stream. Plain scalars are typed as
 * YAML 1.1 reads them (null, ~, true/false, yes/no, on/off, integers and
 * floats); quoted and block scalars are strings. Mapping keys are strings.
 * Anchors and aliases are refused (presets and specs have no use for them).
 *
 * Writing emits one block-style document. Strings that a YAML reader would
 * take for something else ("yes", "0644", "1.5", "") are single-quoted,
 * strings with a newline are literal blocks ("|"), and object keys keep
 * their insertion order.
 */
#ifndef LC_YAMLJV_H
#define LC_YAMLJV_H

#include <stddef.h>
#include <jv.h>

#include "lc.h"

/*
 * Parse YAML text. name labels messages ("presets.yaml:3:7: ...").
 * Returns owned jv (null for an empty stream), or an error value with code
 * bad_yaml.
 */
jv	lc_yaml_to_jv(const char *text, size_t len, const char *name);
/*
 * Append v as a YAML document (no "---", no "..."), to out. Borrows v.
 * 0, or -1 with *err (yaml_emit) on an emitter failure.
 */
int	lc_yaml_from_jv(jv v, struct lc_buf *out, jv *err);
/* Would a YAML 1.1 reader take this plain scalar for a non-string? */
int	lc_yaml_needs_quotes(const char *s);

#endif
