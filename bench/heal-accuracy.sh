#!/bin/bash
# bench/heal-accuracy.sh: how often `lc-heal -d` gives a vLLM log the
# category it is labelled with, over every fixture log: the shared set
# (labels in its labels.json) and our own (the category is the file name
# up to the first "-"). Prints per-category counts, the total accuracy,
# how many logs got a wrong class (a class other than "unknown": that is
# a wrong fix), and each miss with what was expected and what came.
#
# usage: bench/heal-accuracy.sh [dir ...]   (lc-heal from bin/, else PATH;
#        the default dirs are $LC_FIXTURES/vllm-logs, LC_FIXTURES being
#        ../shared/fixtures unless set, and tests/fixtures/vllm-logs)
set -eu
cd "$(dirname "$0")/.."
heal=bin/lc-heal
[[ -x $heal ]] || heal=$(command -v lc-heal)
command -v jq >/dev/null || { echo "heal-accuracy: jq is needed" >&2; exit 3; }

if (($# == 0)); then
	set -- "${LC_FIXTURES:-$PWD/../shared/fixtures}/vllm-logs" \
	    tests/fixtures/vllm-logs
fi

# label FILE: the category FILE is labelled with, or nothing.
label() {
	local dir=${1%/*} base=${1##*/}

	if [[ -f $dir/labels.json ]]; then
		jq -r --arg f "$base" '.[] | select(.file == $f) | .category' \
		    "$dir/labels.json"
	else
		echo "${base%%-*}"
	fi
}

declare -A n ok
total=0 right=0 wrong=0 unsure=0
misses=()
for dir; do
	for f in "$dir"/*.log; do
		[[ -e $f ]] || continue
		want=$(label "$f")
		[[ -n $want ]] || { echo "heal-accuracy: no label: $f" >&2; continue; }
		got=$("$heal" -d <"$f" | jq -r .diagnosis.category)
		total=$((total + 1))
		n[$want]=$((${n[$want]:-0} + 1))
		if [[ $got == "$want" ]]; then
			right=$((right + 1))
			ok[$want]=$((${ok[$want]:-0} + 1))
			continue
		fi
		if [[ $got == unknown ]]; then
			unsure=$((unsure + 1))
		else
			wrong=$((wrong + 1))
		fi
		misses+=("$(printf '%-16s %-16s %s' "$want" "$got" "$f")")
	done
done
((total > 0)) || { echo "heal-accuracy: no logs" >&2; exit 1; }

printf '%-16s %5s %5s\n' category logs right
for c in oom_load kv_cache nccl tp_mismatch dtype model_access \
    unsupported_arch port_in_use driver healthy unknown; do
	printf '%-16s %5d %5d\n' "$c" "${n[$c]:-0}" "${ok[$c]:-0}"
done
printf '\ntotal %d, right %d (%s%%), wrong class %d, unknown instead %d\n' \
    "$total" "$right" "$(awk -v r="$right" -v t="$total" \
    'BEGIN { printf "%.1f", r * 100 / t }')" "$wrong" "$unsure"
if ((${#misses[@]} > 0)); then
	printf '\n%-16s %-16s %s\n' expected got file
	printf '%s\n' "${misses[@]}"
fi
