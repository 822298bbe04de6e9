#!/usr/bin/env bash
# Benchmark: lc-bench itself, against tests/servers/vllm.py (run by hand,
# not in CI).
#
#  1. Accuracy: the TTFT (p50) and per-request output rate (1 / mean TPOT)
#     lc-bench measures at 1, 16, 64 and 256 streams, against what the
#     server was set to (its own limits show at the high end: one Python
#     interpreter paces every stream).
#  2. Client cost: CPU seconds (user + system) per 100,000 streamed tokens
#     at 256 streams, for lc-bench and for curl processes fanned out by
#     xargs doing the same streams; and for Node's openai package when it
#     is installed (said, and skipped, when not).
#
# Each figure is the median over the rounds, with the spread (min..max).
# usage: bench/bench.sh [rounds]   (after make; default 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
rounds=${1:-3}
tmp=$(mktemp -d)
# shellcheck source=/dev/null
source tests/helpers/vm.bash
trap 'stop_vllm; rm -rf "$tmp"' EXIT
PATH=$REPO/bin:$PATH
export TMPDIR=$tmp

TTFT_MS=1000 TOKEN_MS=50

# stats: median and min..max of the numbers on stdin.
stats() {
	sort -g | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.4g (%.4g..%.4g)", m, v[1], v[NR] }'
}

start_vllm --ttft-ms "$TTFT_MS" --token-ms "$TOKEN_MS"

echo "== accuracy: set TTFT ${TTFT_MS} ms, $((1000 / TOKEN_MS)) tokens/s per stream; $rounds rounds"
printf '%-8s %-28s %-28s %-12s\n' streams "TTFT p50 ms" "tokens/s per request" errors
for c in 1 16 64 256; do
	n=$c
	((c == 1)) && n=5
	: >"$tmp/acc"
	for ((r = 0; r < rounds; r++)); do
		lc-bench -q -u "$VLLM_URL/v1" -c "$c" -N "$n" -w "$c" -M 40 -i 200 |
		    jq -r '"\(.ttft_s.p50 * 1000) \(1 / .tpot_s.mean) \(.errors)"' >>"$tmp/acc"
	done
	printf '%-8s %-28s %-28s %-12s\n' "$c" \
	    "$(cut -d' ' -f1 "$tmp/acc" | stats)" \
	    "$(cut -d' ' -f2 "$tmp/acc" | stats)" \
	    "$(cut -d' ' -f3 "$tmp/acc" | stats)"
done

# Client cost: 256 streams of M tokens, tokens streamed as fast as the
# server can (token_ms 0 would be one burst; 5 ms keeps it a stream).
STREAMS=256 M=400
curl -fsS -X POST -d "{\"ttft_ms\": 100, \"token_ms\": 5}" \
    "$VLLM_URL/__ctl/set" >/dev/null
tokens=$((STREAMS * M))

# A request body like lc-bench's, for curl and node.
jq -nc --argjson m "$M" '{model: "coder", stream: true, ignore_eos: true,
    max_tokens: $m, stream_options: {include_usage: true},
    messages: [{role: "user", content: ("Write a C function that parses an ISO 8601 date. " * 40)}]}' \
    >"$tmp/body.json"

# cpu CMD...: user + system CPU seconds of CMD and its children.
cpu() {
	/usr/bin/time -f '%U %S' -o "$tmp/time" "$@" >"$tmp/cpu.out" 2>/dev/null
	awk '{ print $1 + $2 }' "$tmp/time"
}

# served: tokens the server streamed since the mark.
served() {
	tail -n "+$(($1 + 1))" "$VLLM_DIR/requests.jsonl" |
	    jq -s 'map(.completion_tokens // 0) | add'
}

lcbench_run() {
	lc-bench -q -u "$VLLM_URL/v1" -c "$STREAMS" -N "$STREAMS" -w 0 -M "$M" -i 200
}

curl_run() {
	seq "$STREAMS" | xargs -P "$STREAMS" -I{} curl -sSN -o /dev/null \
	    -H 'Content-Type: application/json' --data-binary "@$tmp/body.json" \
	    "$VLLM_URL/v1/chat/completions"
}

cat >"$tmp/openai.mjs" <<'EOF'
import OpenAI from "openai";
import { readFileSync } from "node:fs";
const body = JSON.parse(readFileSync(process.argv[2], "utf8"));
const client = new OpenAI({ baseURL: process.argv[3], apiKey: "none" });
const one = async () => { for await (const _ of await client.chat.completions.create(body)) {} };
await Promise.all(Array.from({ length: Number(process.argv[4]) }, one));
EOF

node_run() {
	node "$tmp/openai.mjs" "$tmp/body.json" "$VLLM_URL/v1" "$STREAMS"
}

export -f lcbench_run curl_run node_run
export VLLM_URL STREAMS M tmp
have_node=0
if ! command -v node >/dev/null; then
	echo "(node is not installed: the openai column is skipped)"
elif ! node -e 'require.resolve("openai")' 2>/dev/null; then
	echo "(node is here but its openai package is not, and there is no network to install it: the openai column is skipped)"
else
	have_node=1
fi

echo "== client cost at $STREAMS streams of $M tokens ($tokens tokens a run): CPU s per 100,000 tokens; $rounds rounds"
for who in lc-bench curl node; do
	[[ $who == node && $have_node == 0 ]] && continue
	: >"$tmp/cost"
	for ((r = 0; r < rounds; r++)); do
		mark=$(wc -l <"$VLLM_DIR/requests.jsonl")
		s=$(cpu bash -c "${who//-/}_run")
		got=$(served "$mark")
		awk -v s="$s" -v t="$got" 'BEGIN { if (t > 0) print s / t * 100000 }' >>"$tmp/cost"
		[[ $got == "$tokens" ]] || echo "($who: round $r streamed $got tokens, not $tokens)"
	done
	printf '%-10s %s\n' "$who" "$(stats <"$tmp/cost")"
done
