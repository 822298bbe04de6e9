/*
 * ladder: the fixes lc-heal tries for a diagnosed vLLM start failure, one
 * rung a round (DESIGN.md section 8). Pure: no I/O, no clock.
 *
 *   kv_cache     raise gpu_memory_utilization by 0.05 (at most 0.95), then
 *                lower max_model_len to what the log says fits (else half)
 *   oom_load     lower gpu_memory_utilization by 0.05 (to what is free when
 *                the log says), then enforce_eager, then half max_model_len
 *   nccl         (--ipc=host is always on) env NCCL_P2P_DISABLE=1, then
 *                disable_custom_all_reduce
 *   tp_mismatch  the largest tensor_parallel_size that divides the attention
 *                heads and is at most the GPU count
 *   dtype        dtype "half" on a GPU below compute capability 8.0
 *   port_in_use  stop the stale container (settings unchanged), once
 *   model_access, unsupported_arch, driver, unknown: no automatic fix
 *
 * Never below the user's min_max_model_len, never above 0.95 utilization,
 * never settings already tried (the session's heal rounds), and each
 * utilization step and the container stop at most once.
 */
#ifndef LC_LADDER_H
#define LC_LADDER_H

#include <jv.h>

#define LC_LADDER_ROUNDS	3	/* rounds per lc-heal run */
#define LC_LADDER_UTIL_MAX	0.95
#define LC_LADDER_UTIL_MIN	0.10
#define LC_LADDER_UTIL_STEP	0.05
#define LC_LADDER_UTIL_DEFAULT	0.90	/* vLLM's own default */

/*
 * The GPU facts the ladder uses, from a session record: {"count",
 * "compute_capability" (the lowest, "7.5"), "memory_total_mib"}, null where
 * unknown. "gpus" may be the type's GPU count (a number) or lc-gpuprobe's
 * array of GPU objects. Borrows rec; returns owned.
 */
jv	lc_ladder_gpu_facts(jv rec);

/*
 * What the ladder does for a diagnosis in general, for the diagnosis' "fix":
 * {"automatic": bool, "steps": ["raise --gpu-memory-utilization ...", ...]}.
 * Borrows facts (may be null). Returns owned.
 */
jv	lc_ladder_fix(const char *category, jv facts);

/*
 * The next rung. vllm: the settings that failed; gpu: lc_ladder_gpu_facts;
 * diag: the diagnosis ({"category","facts",...}); heal: the session's heal
 * rounds so far (entries with "from" and "to" settings and "rung"). Borrows
 * all. Returns owned:
 *   {"vllm": next settings, "action": "what changed, for people",
 *    "rung": "raise_utilization" | "lower_utilization" | "max_model_len" |
 *            "enforce_eager" | "nccl_p2p_disable" |
 *            "disable_custom_all_reduce" | "tensor_parallel_size" |
 *            "dtype_half" | "stop_container",
 *    "kind": "settings" | "stop_container"}
 * or an error value with code "no_fix": nothing automatic is left (or the
 * log is healthy); the message says what the user can do.
 */
jv	lc_ladder_next(jv vllm, jv gpu, jv diag, jv heal);

#endif
