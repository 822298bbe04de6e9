/*
 * vllm: a session's vLLM settings (the record's "vllm" object) and the file
 * on the VM that carries them, /etc/linode-coder/vllm.env.
 *
 * The record's fields:
 *   model, served_model_name, vllm_image (container image), endpoint
 *   ("http://127.0.0.1:PORT/v1": the port vLLM serves on the VM), public
 *   (true: bind all interfaces, else the VM's loopback), and
 *   vllm {tensor_parallel_size, gpu_memory_utilization, max_model_len,
 *         min_max_model_len, dtype, quantization, kv_cache_dtype,
 *         tool_call_parser, enforce_eager, disable_custom_all_reduce,
 *         extra_args: [..], env: {NAME: value}}
 *
 * vllm.env is sourced by bash (the unit's run script), never parsed by
 * systemd: every value is single-quoted, and the arguments and container
 * environment are bash arrays:
 *   VLLM_IMAGE='vllm/vllm-openai:vX.Y.Z'   (default: LC_VLLM_IMAGE's)
 *   VLLM_MODEL='Qwen/Qwen2.5-Coder-7B-Instruct'
 *   VLLM_BIND='127.0.0.1'
 *   VLLM_PORT='8000'
 *   VLLM_ARGS=('--served-model-name' 'coder' '--tensor-parallel-size' '1')
 *   VLLM_ENV=('NCCL_P2P_DISABLE=1')
 */
#ifndef LC_VLLM_H
#define LC_VLLM_H

#include <jv.h>

#include "lc.h"

#define LC_VLLM_UNIT	"linode-coder-vllm.service"
#define LC_VLLM_CONTAINER "vllm"

/* The port vLLM serves on, from the record's endpoint (default 8000). */
int	lc_vllm_port(jv rec);	/* borrows */
/*
 * The arguments after the model for `vllm serve` (the image's entrypoint),
 * from the record: an owned array of strings.
 */
jv	lc_vllm_args(jv rec);	/* borrows */
/*
 * The shell body that applies settings on the VM, in one round trip:
 * with write_env, vllm.env from standard input into dir, atomically (a
 * temp file, then mv); with stale, the old container and any other that
 * publishes vLLM's port removed; then the unit reset and restarted.
 * dir is the VM's etc/linode-coder. Borrows rec; returns malloc'd.
 */
char	*lc_vllm_apply_body(jv rec, const char *dir, int write_env, int stale);
/* The vllm.env text for the record; malloc'd. Borrows rec. */
char	*lc_vllm_env_render(jv rec);
/*
 * Read vllm.env text back into {"image","model","bind","port","args":[],
 * "env":{}} (what the VM runs now). Returns owned, or an error value.
 */
jv	lc_vllm_env_parse(const char *text);

#endif
