#!/bin/bash
# bench/heal.sh: time and peak memory of `lc-heal -d` on generated vLLM logs
# of growing size (default 5, 50 and 200 MB). The classifier streams, so
# the peak resident set should not grow with the log. MB/s is from the CPU
# time (user), which a busy machine disturbs less than the wall clock.
#
# usage: bench/heal.sh [MB ...]     (lc-heal from bin/, else PATH)
set -eu
cd "$(dirname "$0")/.."
heal=bin/lc-heal
[[ -x $heal ]] || heal=$(command -v lc-heal)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# make_log MB FILE: a start-up log of MB megabytes: worker and Ray prefixes,
# ANSI colours, access lines, request tracebacks, then a V1 KV-cache
# failure at the very end (so the whole file must be read).
make_log() {
	awk -v mb="$1" 'BEGIN {
		srand(1); n = 0; target = mb * 1048576
		while (n < target) {
			i++
			s = sprintf("(VllmWorker rank=%d pid=%d) \033[32mINFO\033[0m 11-23 10:%02d:%02d [metrics.py:%d] Avg prompt throughput: %.1f tokens/s, Running: %d reqs, GPU KV cache usage: %.1f%%\n", i % 4, 1000 + i % 7, i % 60, i % 60, i % 500, rand() * 900, i % 9, rand() * 100)
			if (i % 7 == 0) s = s sprintf("INFO:     127.0.0.1:%d - \"POST /v1/chat/completions HTTP/1.1\" 200 OK\n", 40000 + i % 2000)
			if (i % 50 == 0) s = s "(RayWorkerWrapper pid=5032, ip=10.0.0.4) ERROR 11-23 10:00:00 worker_base.py:464] Traceback (most recent call last): [repeated 3x across cluster]\n(RayWorkerWrapper pid=5032, ip=10.0.0.4) ERROR 11-23 10:00:00 worker_base.py:464]   File \"/usr/lib/vllm/worker.py\", line 12, in execute_model\nERROR 11-23 10:00:00 [serving_chat.py:222] ValueError: This model'"'"'s maximum context length is 32768 tokens.\n"
			printf "%s", s
			n += length(s)
		}
		print "(EngineCore_0 pid=241) ERROR 07-21 10:03:55 [core.py:632] ValueError: To serve at least one request with the models'"'"'s max seq len (131072), (32.00 GiB KV cache is needed, which is larger than the available KV cache memory (9.38 GiB). Based on the available memory, the estimated maximum model length is 38400. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
	}' >"$2"
}

printf '%-8s %-10s %-9s %-9s %-10s %-12s %s\n' size lines seconds cpu_s MB/s peak_rss_kb category
sizes=("$@")
((${#sizes[@]})) || sizes=(5 50 200)
for mb in "${sizes[@]}"; do
	log=$tmp/$mb.log
	make_log "$mb" "$log"
	bytes=$(wc -c <"$log")
	nl=$(wc -l <"$log")
	/usr/bin/time -f '%e %U %M' -o "$tmp/time" "$heal" -d <"$log" >"$tmp/out"
	read -r secs cpu kb <"$tmp/time"
	cat=$(jq -r .diagnosis.category "$tmp/out")
	printf '%-8s %-10s %-9s %-9s %-10s %-12s %s\n' "${mb}MB" "$nl" "$secs" "$cpu" \
	    "$(awk -v b="$bytes" -v s="$cpu" 'BEGIN { printf "%.0f", (s > 0 ? b / 1048576 / s : 0) }')" \
	    "$kb" "$cat"
done
