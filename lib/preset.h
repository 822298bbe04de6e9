/*
 * preset: the presets and GPU types tables (presets.yaml) and the spec a
 * session is created from.
 *
 * presets.yaml has two maps, "types" (Linode GPU plan id -> gpus, gpu,
 * vram_gib per GPU, compute_capability, hourly_usd estimate) and "presets"
 * (name -> model, served_model_name, type, gpus, num_attention_heads,
 * vram_need_gib, vllm {...}, expected {...}). Files searched, later ones
 * overriding earlier entries by name:
 *   1. $LC_PRESETS if set, else the shipped file: presets.yaml in the
 *      source tree above the running binary (bin/..), else
 *      LC_DATADIR/presets.yaml;
 *   2. $XDG_CONFIG_HOME/linode-coder/presets.yaml (~/.config/...).
 *
 * A spec is built from layers, lowest precedence first: the preset, then
 * each layer given (config, the input record, flags). The preset is the
 * one the highest layer names. Then the spec is checked against its type:
 * tensor parallel size, dtype, memory. Error codes (stable):
 *   no_presets, bad_presets, unknown_preset, unknown_type, tp_heads,
 *   tp_gpus, dtype_unsupported, vram_too_small, bad_name, bad_spec.
 */
#ifndef LC_PRESET_H
#define LC_PRESET_H

#include <jv.h>

/*
 * Load the tables. argv0 helps find the source tree's file. Returns owned
 * {"types":{},"presets":{},"files":[paths read]}, or an error value.
 */
jv	lc_preset_load(const char *argv0);
/* Parse one presets file's text into {"types","presets"}; owned or error. */
jv	lc_preset_parse(const char *text, size_t len, const char *path);
/* The preset called name, with "name" set: owned, or unknown_preset. */
jv	lc_preset_find(jv db, const char *name);		/* borrows db */
/* The type with this id, with "id" set: owned, or unknown_type. */
jv	lc_preset_type(jv db, const char *id);			/* borrows db */
/*
 * One record per preset, sorted by name: {name, model, served_model_name,
 * type, gpus, gpu, max_model_len, vram_need_gib, vram_gib,
 * hourly_usd_estimate, description, expected}. Returns an owned array.
 */
jv	lc_preset_list(jv db);					/* borrows db */
/*
 * Merge the layers (an array of objects, lowest precedence first) over
 * the preset the highest layer names, then lc_spec_check. Consumes
 * layers; returns the spec or an error value.
 */
jv	lc_spec_resolve(jv db, jv layers);			/* borrows db */
/*
 * Check a spec against its type and derive what follows from the type:
 * gpus, gpu, compute_capability, vram_gib (all GPUs), hourly_usd_estimate,
 * vllm.tensor_parallel_size (derived when absent or null: to check a new
 * model or type for a running session, lay {"model": M} or {"type": T,
 * "vllm": {"tensor_parallel_size": null}} over its record), vllm.dtype.
 * Warnings (a smaller tensor
 * parallel size than the GPU count) go to the spec's "warnings" array.
 * Consumes spec; returns it, or an error value naming the fix.
 */
jv	lc_spec_check(jv db, jv spec);				/* borrows db */
/* The largest t <= gpus that divides heads (1 at worst). */
int	lc_spec_tp(int gpus, int heads);

#endif
