#!/usr/bin/env bats
# shellcheck disable=SC2153 # VMB_DIR and VMB_ROOT come from vmb_use
# A group of two VMs for real (tests/helpers/vmboot.bash): a head and a
# worker, each a Debian 12 root under systemd-nspawn with its own network,
# joined by two links as on Linode: eth0 (the public addresses, which coder
# up reaches from the head's network) and eth1 (the VPC, 10.64.0.0/24).
# coder up --nodes 2 boots both from the cloud-configs it made; the worker's
# stand-in Ray (tests/vm/docker.io) joins the head's over the VPC link, the
# head's `ray status` sees both nodes and the head's vLLM serves.
load helpers/common
load helpers/vmboot

setup_file() {
	vmb_prepare
}

teardown() {
	[[ -z ${VMB_SKIP:-} ]] || return 0
	stop_api_server
	local n
	for n in grp-w grp; do
		[[ -s $BATS_FILE_TMPDIR/vm-$n/netns.pid ]] || continue
		vmb_use "$n" && vmb_stop
	done
	return 0
}

setup() {
	[[ -z ${VMB_SKIP:-} ]] || skip "$VMB_SKIP"
	common_setup
}

@test "vm boot: coder up --nodes 2: the worker joins the head's Ray over the VPC, ray status sees both, the head serves" {
	vmb_new grp-w image
	vmb_new grp image
	vmb_link eth0 grp 203.0.113.2 grp-w 203.0.113.3
	vmb_link eth1 grp 10.64.0.2 grp-w 10.64.0.3
	vmb_use grp
	export API_NETNS=$VMB_NETNS
	start_api_server
	api_ctl set '{"ipv4_next": [["203.0.113.2"], ["203.0.113.3"]]}' >/dev/null
	# The VMs' own deadline needs the API, which only the head's network
	# reaches here (tests/vm-boot.bats covers it).
	export LC_FAILSAFE=off
	vmb_group_up grp grp-w --image linode/ubuntu24.04-nvidia
	cat "$VMB_DIR/up.err" >&2
	[[ $(cat "$VMB_DIR/up.rc") == 0 ]]
	jq -e 'select(.name == "grp") | .state == "ready" and .nodes == 2 and .nodes_joined == 2' "$VMB_DIR/up.out"
	grep -q 'stage ray: 2 nodes joined' "$VMB_DIR/up.err"

	# The head's Ray sees both nodes and both GPUs.
	run -0 vmb_sh docker exec vllm ray status
	[[ $(grep -c ' node_' <<<"$output") == 2 ]]
	[[ $output == *" 0.0/2.0 GPU"* ]]
	# The worker joined from its VPC address, over the link.
	run -0 vmb_sh docker exec vllm python3 -c 'import ray
ray.init(address="auto")
print("\n".join(sorted(n["NodeManagerAddress"] for n in ray.nodes())))'
	[[ $output == $'10.64.0.2\n10.64.0.3' ]]
	run -0 vmb_sh ss -Hltn 'sport = :6379'
	[[ $output == *"10.64.0.2:6379"* ]]
	wait_until 60 '[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == serving ]]'
	run -0 vmb_sh curl -fsS http://127.0.0.1:8000/health
	vmb_no_failed_units

	# The worker runs Ray alone, joined to the head at 10.64.0.2, and
	# serves nothing.
	vmb_use grp-w
	run -0 vmb_sh docker logs vllm
	[[ $output == *"Joined 10.64.0.2:6379 from 10.64.0.3"* ]]
	run -0 vmb_sh ss -Hltn 'sport = :8000'
	[[ -z $output ]]
	[[ $(cat "$VMB_ROOT/var/lib/linode-coder/phase") == load ]]
	vmb_no_failed_units
}
