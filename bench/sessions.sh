#!/usr/bin/env bash
# Benchmark: lc-sessions listing 1,000 sessions (goal <= 20 ms), and each
# tool's --help start-up beside the floor of a program linked with libjq
# alone and with libcurl alone. Medians over repeated runs (hyperfine).
# Usage: bench/sessions.sh   (after make)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_STATE_HOME=$tmp/state HOME=$tmp
dir=$XDG_STATE_HOME/linode-coder/sessions
mkdir -p "$dir"
chmod 700 "$XDG_STATE_HOME/linode-coder" "$dir"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for i in $(seq 1 1000); do
	jq -n --arg n "s$i" --arg t "$now" '{name:$n, state:"ready", linode_id:(50000000+($n[1:]|tonumber)),
		region:"us-ord", type:"g2-gpu-rtx4000a1-s", gpus:1, hourly_cost_usd:0.52,
		ipv4:"192.0.2.7", ssh:{host:"192.0.2.7",port:22,user:"root",known_hosts:"/x"},
		model:"Qwen/Qwen2.5-Coder-7B-Instruct", served_model_name:"coder",
		vllm:{tensor_parallel_size:1,gpu_memory_utilization:0.9,max_model_len:32768,dtype:"auto",extra_args:[],env:{}},
		endpoint:"http://127.0.0.1:8000/v1", created_at:$t, last_activity_at:$t, idle_timeout_s:1800,
		deadline_at:null, budget_usd:null, heal:[]}' >"$dir/s$i.json"
done
printf 'int main(void){return 0;}\n' >"$tmp/floor.c"
printf '#include <jv.h>\nint main(void){jv_free(jv_null());return 0;}\n' >"$tmp/jq.c"
printf '#include <curl/curl.h>\nint main(void){curl_global_init(0);return 0;}\n' >"$tmp/curl.c"
cc -O2 -o "$tmp/floor" "$tmp/floor.c"
cc -O2 -o "$tmp/floor-jq" "$tmp/jq.c" -ljq
cc -O2 -o "$tmp/floor-curl" "$tmp/curl.c" -lcurl
args=(--warmup 5 --runs 50 --export-json "$tmp/h.json" -N)
[[ $(bin/lc-sessions | wc -l) == 1000 ]]
# The listing uses one thread per processor: also timed on one processor,
# and beside jq itself printing the same files (the same jv parser and
# printer), as a yardstick for this machine.
list=(bin/lc-sessions "bin/lc-sessions -T")
command -v taskset >/dev/null && list+=("taskset -c 0 bin/lc-sessions")
list+=("jq -c . $(printf "%s " "$dir"/*.json)")
hyperfine "${args[@]}" "${list[@]}" >/dev/null 2>&1
echo "processors: $(nproc)"
jq -r '.results[] | "\(.command | sub(" /.*"; " FILES"))\t1000 sessions\tmedian \(.median*1000|.*100|round/100) ms"' "$tmp/h.json"
cmds=("$tmp/floor" "$tmp/floor-jq" "$tmp/floor-curl")
for t in bin/*; do
	[[ -x $t && $t != *.c && $t != *.o ]] && cmds+=("$t --help")
done
# Each coder verb's --help: its own option table, coder linked with libjq.
for v in $(bin/coder help | sed -nE 's/^  ([a-z][a-z-]+)( .*)?$/\1/p'); do
	cmds+=("bin/coder $v --help")
done
hyperfine "${args[@]}" "${cmds[@]}" >/dev/null 2>&1
jq -r '.results[] | "\(.command | sub("^[^ ]*/"; ""))\tmedian \(.median*1000|.*100|round/100) ms (\(.min*1000|.*10|round/10)-\(.max*1000|.*10|round/10))"' "$tmp/h.json"
