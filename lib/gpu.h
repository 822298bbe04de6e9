/*
 * gpu: what nvidia-smi says, as records, and a health verdict.
 *
 * lc_gpu_parse reads any of the forms nvidia-smi prints: the CSV of
 * --query-gpu (with or without header and units), the default table (the
 * old 79-column and the new 89-column layouts, the 610 driver's "KMD
 * Version"/"CUDA UMD Version" header, names cut with "..."), -q text, -q -x
 * XML, and the messages it prints when it cannot run (driver missing or
 * mismatched, no devices, command not found). Values nvidia-smi cannot
 * give ("[N/A]", "[Not Supported]", "N/A") become null, never errors.
 *
 * A parsed probe is an object:
 *   format          "csv" | "table" | "q" | "xml" | "error" | "empty"
 *   gpus            [ {index, name, uuid, pci_bus_id, memory_total_mib,
 *                      memory_used_mib, utilization_pct, temperature_c,
 *                      power_w, power_limit_w, compute_capability} ]
 *                   (-q and XML add pcie, ecc_errors, throttle_reasons)
 *   driver_version, cuda_version     strings or null
 *   processes       [ {gpu, pid, name, memory_mib} ] or null (not shown)
 *   problems        [ {code, message} ] that the text itself reveals:
 *                   no_driver, driver_mismatch, nvidia_smi_missing,
 *                   gpu_lost, nvml_error
 */
#ifndef LC_GPU_H
#define LC_GPU_H

#include <jv.h>

/* The query lc-gpuprobe runs (for --format=csv,noheader,nounits). */
#define LC_GPU_QUERY "index,name,uuid,pci.bus_id,memory.total,memory.used," \
	"utilization.gpu,temperature.gpu,power.draw,power.limit,compute_cap," \
	"driver_version"
#define LC_GPU_APPS_QUERY "gpu_uuid,pid,process_name,used_memory"
#define LC_GPU_HOT_C	90	/* hotter than this is a problem */
#define LC_GPU_FULL_PCT	95	/* this full, and no vLLM: a problem */

/* Parse any nvidia-smi output (NUL-terminated). Returns owned (above). */
jv	lc_gpu_parse(const char *text);
/* Parse --query-compute-apps CSV into [{gpu_uuid, pid, name,
 * memory_mib}]; with or without header. Returns owned. */
jv	lc_gpu_parse_apps(const char *text);
/* Parse `nvidia-smi topo -m` into [{"gpus":[a,b],"link":"NV4"}] for each
 * GPU pair. Returns owned (an empty array when nothing was recognised). */
jv	lc_gpu_parse_topo(const char *text);
/*
 * Merge two probes of one machine: fields of base that are null are filled
 * from extra (matched by index); driver, CUDA version and processes are
 * taken from extra when base lacks them. Consumes both; returns owned.
 */
jv	lc_gpu_merge(jv base, jv extra);
/* Set the probe's processes from lc_gpu_parse_apps' list, each with the
 * "gpu" index of its GPU (by UUID). Consumes both; returns owned. */
jv	lc_gpu_set_processes(jv probe, jv apps);
/* Compute capability from a GPU name ("NVIDIA L40S" -> 8.9), or -1. */
double	lc_gpu_cc_by_name(const char *name);
/*
 * The verdict: {"ok", "problems":[{code, message}]} from a parsed probe
 * (borrowed): the probe's own problems, then gpu_count (fewer GPUs than
 * expected; expected <= 0: unknown), hot, memory_full, ecc_errors and
 * throttled. Returns owned.
 */
jv	lc_gpu_health(jv probe, int expected);

#endif
