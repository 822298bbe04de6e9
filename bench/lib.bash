# shellcheck shell=bash
# bench/lib.bash: what the lc-watch benchmarks share. A throwaway HOME and
# state directory, the test helpers (fake Linode API, the sshd that plays
# the VM, the fake vLLM) and, on exit, the end of every process they or
# bench_pids started. Source it first thing from a bench script.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO LC_FIXTURES=${LC_FIXTURES:-$REPO/../shared/fixtures}
tmp=$(mktemp -d)
BATS_FILE_TMPDIR=$tmp/vm
export HOME=$tmp/home XDG_STATE_HOME=$tmp/home/state
export XDG_CONFIG_HOME=$tmp/home/config STATE=$tmp/home/state/linode-coder
mkdir -p "$BATS_FILE_TMPDIR" "$XDG_CONFIG_HOME" "$STATE/sessions" \
    "$STATE/archive"
chmod 700 "$STATE" "$STATE/sessions" "$STATE/archive"
cd "$HOME" || exit 1
export PATH=$REPO/bin:$PATH
# shellcheck source=/dev/null
source "$REPO/tests/helpers/api.bash"
# shellcheck source=/dev/null
source "$REPO/tests/helpers/vm.bash"
bench_pids=()
bench_cleanup() {
	local p
	set +e	# a helper's "nothing to stop" must not become our status
	for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	stop_vllm
	stop_vm
	stop_api_server
	rm -rf "$tmp" 2>/dev/null || true
}
trap bench_cleanup EXIT
