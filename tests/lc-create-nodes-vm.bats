#!/usr/bin/env bats
# lc-create --wait on a group of three nodes: the fake Linode API, one real
# sshd per node on its own loopback address (127.0.0.2-4, one SSH port),
# stand-in nvidia-smi and docker (whose `docker exec` on the head answers
# the nodes Ray sees), a fake vLLM. Readiness per node, then the group's
# ray stage; a node that never joins fails it, named.
load helpers/common
load helpers/boot

setup_file() {
	start_api_server
	local port i
	port=$(_vm_free_port)
	for i in 0 1 2; do
		VM_LISTEN=127.0.0.$((i + 2)) VM_FIXED_PORT=$port start_vm "n$i"
	done
	# One user key logs in to every node, as on Linode.
	for i in 1 2; do
		cp "$BATS_FILE_TMPDIR/vm-n0/user_key.pub" "$BATS_FILE_TMPDIR/vm-n$i/authorized_keys"
	done
	vm_use n0
	start_vllm
	export LC_SSH_PORT=$port LC_VLLM_PORT=$VLLM_PORT
}

teardown_file() {
	vm_use n0
	stop_vllm
	stop_vm n0
	stop_vm n1
	stop_vm n2
	stop_api_server
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset '{}' >/dev/null
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2}' >/dev/null
	api_ctl set '{"ipv4_next": ["127.0.0.2", "127.0.0.3", "127.0.0.4"]}' >/dev/null
	local i
	for i in 2 1 0; do
		vm_use "n$i"
		vm_reset
		vm_set nvidia_smi_query "$REPO/tests/fixtures/nvidia-smi/csv-1gpu-h200.csv"
		vm_halt
	done
	vllm_ctl set '{"healthy":true,"fail_completions":false}'
	lc-cloudinit -N big -T g2-gpu-rtx4000a1-s --nodes 3 >"$BATS_TEST_TMPDIR/spec"
}

# boot_group: once the three instances exist, each "VM" boots with the
# group's host key and reaches phase load.
boot_group() {
	local i ud=$BATS_TEST_TMPDIR/ud.yaml
	for ((i = 0; i < 100; i++)); do
		[[ $(api_state | jq '.instances | length') == 3 ]] && break
		sleep 0.1
	done
	api_state | jq -r '.instances[0].user_data' >"$ud"
	for i in 0 1 2; do
		vm_use "n$i"
		vm_install_host_key "$ud" || return 1
		echo load >"$VM_ROOT/var/lib/linode-coder/phase"
	done
	vm_use n0
}

@test "lc-create --nodes 3 --wait: each node through ssh, secrets, cloud-init and gpu, then ray, health and completion" {
	vm_use n0
	vm_set docker_exec "$(printf '10.64.0.2\n10.64.0.3\n10.64.0.4')"
	boot_group &
	run -0 --separate-stderr lc-create --wait -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.state == "ready" and .nodes == 3 and .nodes_joined == 3'
	local n s
	for n in lc-big.w1 lc-big.w2; do
		for s in ssh secrets cloud-init gpu; do
			[[ $stderr == *"node $n: stage $s: done"* ]] || fail "no $s for $n: $stderr"
		done
	done
	[[ $stderr == *"group: stage ray: 3 nodes joined"* ]] || fail "$stderr"
	[[ $stderr == *"stage 6/6 completion: done"* ]] || fail "$stderr"
	# Every node was logged in to (LC_REMOTE_ROOT, the test's stand-in for
	# "/", is the head's for all, so the files land there); the
	# known_hosts pins them all with the one host key.
	for n in 0 1 2; do
		grep -q 'Accepted publickey' "$BATS_FILE_TMPDIR/vm-n$n/sshd.log" || fail "no login on n$n"
	done
	[[ -s $BATS_FILE_TMPDIR/vm-n0/root/etc/linode-coder/secrets.env ]]
	[[ $(grep -c '^\[127.0.0.[234]\]' "$(jq -r .ssh.known_hosts "$STATE/sessions/big.json")") == 3 ]]
}

@test "lc-create --nodes 3: every worker carries the deadline itself, with its own id and no idle guard" {
	vm_use n0
	vm_set docker_exec "$(printf '10.64.0.2\n10.64.0.3\n10.64.0.4')"
	boot_group &
	run -0 --separate-stderr lc-create --wait -t 60 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.failsafe == "armed"'
	[[ $stderr != *"does not carry the deadline"* ]] || fail "$stderr"
	local ids head w2 d=$BATS_FILE_TMPDIR/vm-n0/root/etc/linode-coder
	ids=$(jq -r '[.group.nodes[].linode_id] | map(tostring) | join(" ")' "$STATE/sessions/big.json")
	read -r head _ w2 <<<"$ids"
	# One token, made once, for all three.
	api_saw 'POST /v4/profile/tokens' 1
	# The nodes share one LC_REMOTE_ROOT here (the head's), so the last
	# push is what is left: the last worker's, its own id, no group to
	# delete, the deadline, and no idle files from it.
	grep -qx "LINODE_ID='$w2'" "$d/failsafe.env" || fail "$(cat "$d/failsafe.env")"
	grep -q LC_GROUP_IDS "$d/failsafe.env" && fail "a worker's file names the group"
	[[ $w2 != "$head" ]]
	[[ -s $d/deadline ]]
}

@test "a node that never joins fails the ray stage with its name" {
	vm_use n0
	vm_set docker_exec "$(printf '10.64.0.2\n10.64.0.3')"
	boot_group &
	run -1 --separate-stderr lc-create --wait -t 15 <"$BATS_TEST_TMPDIR/spec"
	wait
	assert_json '.error.code == "ready_ray"'
	assert_json '.error.message | test("lc-big.w2 \\(10.64.0.4\\) never joined")'
	jq -e '.state == "failed" and .failed_stage == "ray"' "$STATE/sessions/big.json"
}
