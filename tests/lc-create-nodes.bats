#!/usr/bin/env bats
# A group of nodes (lc-create --nodes) against the fake Linode API: one
# VPC, one firewall admitting the cluster's ports from the subnet alone,
# N instances with a VPC interface each; a create that fails part-way
# leaves nothing; lc-destroy, lc-watch and a kill -9 clean-up remove
# every node, the VPC and the firewall.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup '{"provisioning_s":0.1,"booting_s":0.1,"deleting_s":0.1}'
	SPEC=$BATS_TEST_TMPDIR/spec
	spec big 3 >"$SPEC"
}

# spec NAME NODES: a spec record for a group (a worker cloud-config of
# its own, as lc-cloudinit renders it).
spec() {
	jq -nc --arg n "$1" --argjson k "$2" '{name: $n, type: "g2-gpu-rtx4000a4-s",
		nodes: $k, user_data: "#cloud-config\n# head\n",
		user_data_worker: "#cloud-config\n# worker\n"}'
}

vpcs() { api_state | jq '.vpcs | length'; }

# kill_during STALL: lc-create --nodes 3 killed (-9) while the server holds
# the request STALL (an api_ctl stall rule) matches; returns once the
# server has finished that request.
kill_during() {
	local pid
	api_ctl stall "$1" >/dev/null
	lc-create -q --nodes 3 <"$SPEC" >/dev/null 2>&1 &
	pid=$!
	for _ in {1..100}; do
		api_state | jq -e '.faults.stall == 0' >/dev/null && break
		sleep 0.1
	done
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	# The server logs a request once it has answered it.
	wait_until 30 'api_requests | jq -se "any(.fault == \"stall\")" >/dev/null'
}
nothing_left() {
	api_state | jq -e '(.instances | length) == 0 and (.firewalls | length) == 0 and
		(.vpcs | length) == 0' >/dev/null
}

@test "lc-create --nodes 3: one VPC, N nodes in its subnet, tagged as a group, the firewall's cluster ports from the subnet only" {
	run -0 --separate-stderr lc-create --nodes 3 <"$SPEC"
	echo "$output" | jq -e '.nodes == 3 and .state != null and
		.hourly_cost_usd == 8.88 and .hourly_cost_usd_node == 2.96 and
		(.group.nodes | length) == 3 and .group.nodes[0].role == "head" and
		.group.nodes[1].label == "lc-big.w1" and
		([.group.nodes[].vpc_address] == ["10.64.0.2","10.64.0.3","10.64.0.4"]) and
		.linode_id == .group.nodes[0].linode_id'
	api_state | jq -e '
		(.vpcs | length) == 1 and .vpcs[0].label == "lc-big" and
		(.vpcs[0].subnets[0].linodes | length) == 3 and
		(.instances | length) == 3 and
		all(.instances[]; (.tags | index("lc-group:big")) and
			(.tags | index("lc-session:big")) and
			.interfaces[0].purpose == "public" and
			.interfaces[1].purpose == "vpc" and
			.interfaces[1].subnet_id == $vpc_subnet) and
		([.instances[].interfaces[1].ipv4.vpc] | sort) ==
			["10.64.0.2","10.64.0.3","10.64.0.4"]' \
		--argjson vpc_subnet "$(api_state | jq '.vpcs[0].subnets[0].id')"
	# The head gets its cloud-config, the workers theirs.
	api_state | jq -e '[.instances[] | select(.label == "lc-big") | .user_data] == ["#cloud-config\n# head\n"] and
		[.instances[] | select(.label != "lc-big") | .user_data] == ["#cloud-config\n# worker\n", "#cloud-config\n# worker\n"]'
	# SSH stays the only public port; the cluster's only from the subnet.
	api_state | jq -e '.firewalls | length == 1' >/dev/null
	api_state | jq -e '.firewalls[0].rules.inbound |
		(map(select(.label == "lc-ssh")) | length) == 1 and
		all(.[] | select(.label | startswith("lc-cluster")); .addresses == {"ipv4": ["10.64.0.0/24"]}) and
		(map(select(.label | startswith("lc-cluster"))) | length) == 2 and
		(.[0].label == "lc-ssh")'
	api_state | jq -e '.firewalls[0].entities | length == 3'
	# The record was written before the first POST.
	api_requests | jq -s -e 'map(select(.method == "POST")) | .[0].path == "/v4/vpcs" and
		.[1].path == "/v4/networking/firewalls" and length == 5'
}

@test "a create that fails at node 2 of 3 leaves nothing: nodes, firewall, VPC and record gone" {
	api_ctl fail '{"status":400,"after":1,"match":"POST /linode/instances"}' >/dev/null
	run -1 --separate-stderr lc-create --nodes 3 <"$SPEC"
	echo "$output" | jq -e '.error != null'
	[[ $stderr == *"deleted the 1 node(s) made, the firewall and the VPC"* ]] || fail "$stderr"
	until_ok() { local _; for _ in {1..100}; do "$@" && return 0; sleep 0.1; done; return 1; }
	until_ok nothing_left || fail "left: $(api_state | jq -c '{instances: [.instances[].label], firewalls: [.firewalls[].label], vpcs: [.vpcs[].label]}')"
	[[ ! -e $STATE/sessions/big.json ]]
	# The VPC refused first: nothing made at all.
	api_ctl fail '{"status":400,"match":"POST /vpcs"}' >/dev/null
	run -1 --separate-stderr lc-create --nodes 3 <"$SPEC"
	nothing_left
	[[ ! -e $STATE/sessions/big.json ]]
}

@test "lc-destroy deletes every node, the VPC and the firewall, and checks they are gone" {
	run -0 --separate-stderr lc-create --nodes 3 <"$SPEC"
	run -0 --separate-stderr lc-destroy big
	echo "$output" | jq -e '.state == "destroyed"'
	nothing_left || fail "left: $(api_state | jq -c '[.instances[].label, .vpcs[].label]')"
	api_saw 'DELETE /v4/vpcs/*' 1
	api_saw 'DELETE /v4/linode/instances/*' 3
}

@test "lc-watch --destroy deletes a group past its deadline whole" {
	run -0 --separate-stderr lc-create --nodes 2 < <(spec big 2)
	jq '.deadline_at = "2000-01-01T00:00:00Z"' "$STATE/sessions/big.json" >"$BATS_TEST_TMPDIR/r"
	cp "$BATS_TEST_TMPDIR/r" "$STATE/sessions/big.json"
	run --separate-stderr lc-watch --destroy
	nothing_left || fail "left: $(api_state | jq -c '[.instances[].label, .vpcs[].label]') $output $stderr"
	((status == 0)) || fail "exit $status: $output $stderr"
	assert_json_any '.name == "big" and .action == "destroyed"'
	run -0 jq -s 'map(select(.orphan == true)) | length' <<<"$output"
	[[ $output == 0 ]] || fail "orphan events for the group's nodes"
}

@test "lc-watch keeps a young group whole: its workers are the session's, not orphans" {
	run -0 --separate-stderr lc-create --nodes 3 <"$SPEC"
	run -0 --separate-stderr lc-watch --destroy
	[[ $(api_state | jq '.instances | length') == 3 ]] || fail "$output $stderr"
	run -0 jq -s 'map(select(.orphan == true)) | length' <<<"$output"
	[[ $output == 0 ]]
}

@test "a worker whose group's record is gone is an orphan: it goes, with the rest of its group" {
	export LC_ORPHAN_GRACE=0s
	run -0 --separate-stderr lc-create --nodes 3 <"$SPEC"
	head=$(jq .linode_id "$STATE/sessions/big.json")
	rm "$STATE/sessions/big.json"
	api_ctl instance "{\"id\": $head, \"status\": \"offline\"}" >/dev/null
	run --separate-stderr lc-watch --destroy
	nothing_left || fail "left: $(api_state | jq -c '[.instances[].label, .vpcs[].label, .firewalls[].label]') $output $stderr"
	assert_json_any '.orphan == true and .action == "destroyed"'
}

@test "kill -9 of lc-create during the second node's POST: one lc-watch --destroy run leaves nothing" {
	export LC_ORPHAN_GRACE=0s
	kill_during '{"seconds": 2, "after": 1, "match": "POST /linode/instances"}'
	# The server finished the stalled POST: a second node exists.
	[[ $(api_state | jq '.instances | length') == 2 ]]
	jq -e '.state == "creating" and .linode_id > 0 and .nodes == 3' "$STATE/sessions/big.json"
	run --separate-stderr lc-watch --destroy
	nothing_left || fail "left: $(api_state | jq -c '[.instances[].label, .vpcs[].label, .firewalls[].label]') $output $stderr"
}

@test "a group needs a region with VPCs: refused before anything is made" {
	run -1 --separate-stderr lc-create --nodes 2 < <(spec big 2 | jq -c '.region = "us-east"')
	[[ $stderr == *"does not offer VPCs"* ]] || fail "$stderr"
	api_saw 'POST *' 0
}

@test "kill -9 of lc-create during the VPC or the firewall POST: one lc-watch --destroy run leaves nothing" {
	export LC_ORPHAN_GRACE=0s
	local what
	for what in "POST /vpcs" "POST /networking/firewalls"; do
		kill_during "$(jq -nc --arg m "$what" '{seconds: 2, match: $m}')"
		[[ $(vpcs) == 1 ]] || fail "$what: no VPC made"
		run --separate-stderr lc-watch --destroy
		nothing_left || fail "$what: left: $(api_state | jq -c '[.instances[].label, .vpcs[].label, .firewalls[].label]') $output $stderr"
		[[ ! -e $STATE/sessions/big.json ]] || fail "$what: the record is left"
	done
}

@test "lc-destroy of a group whose head was deleted by hand still deletes the workers and the VPC" {
	run -0 --separate-stderr lc-create --nodes 3 <"$SPEC"
	head=$(jq .linode_id "$STATE/sessions/big.json")
	run -0 curl -sS -X DELETE -H "Authorization: Bearer $LINODE_TOKEN" "$LC_API_URL/linode/instances/$head"
	for _ in {1..100}; do
		[[ $(api_state | jq '.instances | length') == 2 ]] && break
		sleep 0.1
	done
	run -0 --separate-stderr lc-destroy big
	echo "$output" | jq -e '.state == "destroyed"' || fail "$output"
	nothing_left || fail "left: $(api_state | jq -c '[.instances[].label, .vpcs[].label, .firewalls[].label]')"
}

@test "lc-sessions reconcile knows a group's workers as its session's" {
	run -0 --separate-stderr lc-create --nodes 3 <"$SPEC"
	run -0 --separate-stderr lc-sessions reconcile
	[[ -z $output ]] || fail "reported: $output"
	[[ $stderr != *"no session knows it"* ]] || fail "$stderr"
}

@test "lc-create --dry-run of a group: the VPC, every node's label and address, the cluster rules, the price of all; nothing sent" {
	run -0 --separate-stderr lc-create --dry-run <"$SPEC"
	echo "$output" | jq -e '.request.vpc.subnets == [{"label": "nodes", "ipv4": "10.64.0.0/24"}] and
		[.request.nodes[].label] == ["lc-big", "lc-big.w1", "lc-big.w2"] and
		[.request.nodes[].vpc_address] == ["10.64.0.2", "10.64.0.3", "10.64.0.4"] and
		([.request.firewall.rules.inbound[].label] == ["lc-ssh", "lc-cluster", "lc-cluster-udp"]) and
		.hourly_cost_usd == 8.88'
	api_saw 'POST *' 0
}
