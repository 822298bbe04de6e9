#!/usr/bin/env bats
# Tests of the fake Linode API itself (tests/servers/api.py), so that a tool
# test failing means the tool, not the server.

bats_require_minimum_version 1.5.0

REPO=${REPO:-$(cd "$BATS_TEST_DIRNAME/.." && pwd)}
load helpers/api

setup_file() {
	start_api_server
}

teardown_file() {
	stop_api_server
}

setup() {
	api_ctl reset >/dev/null
	api_ctl clock '{"provisioning_s":0.2,"booting_s":0.2,"deleting_s":0.2}' \
		>/dev/null
	api_reset_log
}

# lapi METHOD PATH [JSON]: call the API with the token; prints
# "<status>\n<body>".  Extra curl arguments may follow the JSON.
lapi() {
	local method=$1 path=$2 data=${3:-}
	shift 3 2>/dev/null || shift $#
	curl -sS --max-time 5 -X "$method" -w '\n%{http_code}' \
		-H "Authorization: Bearer $LINODE_TOKEN" \
		-H 'Content-Type: application/json' \
		${data:+--data-binary "$data"} "$@" "$LC_API_URL$path"
}

# The body and status of the last lapi in $output.
body() { sed '$d' <<<"$output"; }
status_of() { tail -n1 <<<"$output"; }

create_body() {
	# ("label" is a jq keyword, hence the quotes.)
	jq -nc --arg l "$1" --arg ud "$(printf '#cloud-config\n' | base64 -w0)" \
		'{"label": $l, region: "us-ord", type: "g2-gpu-rtx4000a1-s",
		  image: "linode/ubuntu24.04", root_pass: "Xy9-long-Random-pass-42",
		  tags: ["linode-coder", "lc-session:\($l)"],
		  metadata: {user_data: $ud}}'
}

@test "401 with the recorded body without a token; public endpoints answer" {
	run -0 curl -sS -w '\n%{http_code}' "$LC_API_URL/profile"
	[[ $(status_of) == 401 ]]
	body | jq -e '.errors == [{"reason":"Invalid Token"}]'
	run -0 curl -sS -w '\n%{http_code}' -H 'Authorization: Bearer wrong' \
		"$LC_API_URL/linode/instances"
	[[ $(status_of) == 401 ]]
	run -0 curl -sS -w '\n%{http_code}' "$LC_API_URL/linode/types/g2-gpu-rtx4000a2-s"
	[[ $(status_of) == 200 ]]
	body | jq -e '.gpus == 2 and .price.hourly == 1.05 and .class == "gpu"'
	run -0 lapi GET /profile
	[[ $(status_of) == 200 ]]
	api_saw 'GET /v4/profile' 2
	api_requests | jq -se '[.[] | select(.path == "/v4/profile") | .auth_ok]
		== [false, true]'
}

@test "the token never reaches requests.jsonl or any file in the server dir" {
	run -0 lapi GET /linode/instances
	run -0 lapi POST /profile/tokens '{"label":"failsafe","expiry":"2099-01-01T00:00:00"}'
	[[ $(status_of) == 200 ]]
	# A client leaking the token elsewhere is marked, not logged.
	run -0 lapi GET /regions '' -A "tool/1 $LINODE_TOKEN"
	api_requests | jq -se 'all(.[]; .auth == "Bearer <redacted>") and
		.[-1].headers["User-Agent"] == "tool/1 <TOKEN-LEAKED>"'
	run grep -rF "$LINODE_TOKEN" "$API_DIR"
	[[ $status -eq 1 ]]
	# api_saw explains what it saw when it fails.
	run api_saw 'DELETE /v4/linode/instances/*'
	[[ $status -eq 1 && $output == *"GET /v4/regions -> 200"* ]]
}

@test "lists paginate 25..500 per page and X-Filter picks tags and labels" {
	api_ctl instance "$(jq -nc '[range(30) |
		{"label": "vm-\(.)", tags: ["t\(. % 3)"]}]')" >/dev/null
	run -0 lapi GET '/linode/instances?page=2&page_size=25'
	body | jq -e '.page == 2 and .pages == 2 and .results == 30 and
		(.data | length) == 5'
	run -0 lapi GET '/linode/instances?page_size=10'
	[[ $(status_of) == 400 ]]
	body | jq -e '.errors[0].field == "page_size"'
	run -0 lapi GET /linode/instances '' -H 'X-Filter: {"tags":"t1"}'
	body | jq -e '.results == 10 and all(.data[]; .tags == ["t1"])'
	run -0 lapi GET /linode/instances '' \
		-H 'X-Filter: {"+or":[{"label":"vm-3"},{"label":{"+contains":"-29"}}]}'
	body | jq -e '[.data[].label] == ["vm-3","vm-29"]'
	run -0 lapi GET /linode/instances '' -H 'X-Filter: {"status":"running"}'
	[[ $(status_of) == 400 ]]
	body | jq -e '.errors == [{"reason":"Cannot filter on status","field":"X-Filter"}]'
	api_requests | jq -se '.[2].headers["X-Filter"] == "{\"tags\":\"t1\"}"'
}

@test "create: provisioning, then running on the clock; user data kept" {
	run -0 lapi POST /linode/instances "$(create_body dev)"
	[[ $(status_of) == 200 ]]
	body | jq -e '.status == "provisioning" and .specs.gpus == 1 and
		.ipv4 == ["127.0.0.1"] and .has_user_data and
		(.created | test("^[0-9-]{10}T[0-9:]{8}$"))'
	id=$(body | jq .id)
	for _ in {1..200}; do
		run -0 lapi GET "/linode/instances/$id"
		body | jq -e '.status == "running"' >/dev/null && break
		sleep 0.1
	done
	body | jq -e '.status == "running"'
	api_state | jq -e '.instances[0].user_data == "#cloud-config\n" and
		.instances[0].create_body.root_pass != null'
	# The same label again, and an unknown region, are refused as the API does.
	run -0 lapi POST /linode/instances "$(create_body dev)"
	[[ $(status_of) == 400 ]]
	body | jq -e '.errors[0].reason == "Label must be unique among your linodes"'
	run -0 lapi POST /linode/instances \
		"$(create_body dev2 | jq -c '.region = "xx-nowhere"')"
	body | jq -e '.errors == [{"reason":"region is not valid","field":"region"}]'
	run -0 lapi POST /linode/instances '{"region":'
	body | jq -e '.errors == [{"reason":"Malformed JSON"}]'
}

@test "delete: status deleting, then 404 with the recorded body" {
	# Seconds of "deleting", so a loaded machine still sees it.
	api_ctl clock '{"deleting_s":3}' >/dev/null
	id=$(api_ctl instance '{"label":"doomed"}' | jq .id)
	run -0 lapi DELETE "/linode/instances/$id"
	[[ $(status_of) == 200 ]] && [[ $(body) == "{}" ]]
	run -0 lapi GET "/linode/instances/$id"
	body | jq -e '.status == "deleting"'
	for _ in {1..300}; do
		run -0 lapi GET "/linode/instances/$id"
		[[ $(status_of) == 404 ]] && break
		sleep 0.1
	done
	[[ $(status_of) == 404 ]]
	body | jq -e '.errors == [{"reason":"Not found"}]'
	run -0 lapi DELETE "/linode/instances/$id"
	[[ $(status_of) == 404 ]]
	api_saw 'DELETE /v4/linode/instances/*' 2
}

@test "fail injection: 429 with Retry-After, then success, no side effect" {
	api_ctl fail '{"status":429,"count":2,"retry_after":3,
		"match":"POST /linode/instances"}' >/dev/null
	run -0 lapi POST /linode/instances "$(create_body faulty)" -D -
	[[ $(status_of) == 429 ]]
	[[ $output == *"Retry-After: 3"* ]]
	[[ $output == *"X-RateLimit-Limit: 20"* ]]
	run -0 lapi POST /linode/instances "$(create_body faulty)"
	[[ $(status_of) == 429 ]]
	run -0 lapi POST /linode/instances "$(create_body faulty)"
	[[ $(status_of) == 200 ]]
	api_state | jq -e '.instances | length == 1'
	api_saw 'POST /v4/linode/instances' 3
	api_fail_next 503 'GET /linode/instances'
	run -0 lapi GET /linode/instances
	[[ $(status_of) == 503 ]]
}

@test "garbage, stall and create_then_timeout" {
	api_ctl garbage '{"mode":"truncated","match":"GET /profile"}' >/dev/null
	run -0 lapi GET /profile
	[[ $(status_of) == 200 ]]
	run jq . < <(body)
	[[ $status -ne 0 ]]
	api_ctl garbage '{"mode":"hangup"}' >/dev/null
	run lapi GET /profile
	[[ $status -eq 52 ]] # curl: empty reply from server
	api_ctl stall '{"seconds":2,"match":"GET /regions"}' >/dev/null
	run lapi GET /regions '' --max-time 0.5
	[[ $status -eq 28 ]] # curl: timed out
	api_ctl create_then_timeout '{"seconds":2}' >/dev/null
	run lapi POST /linode/instances "$(create_body slow)" --max-time 0.5
	[[ $status -eq 28 ]]
	api_state | jq -e '.instances[0].label == "slow"'
}

@test "stays up under concurrent clients" {
	local i
	for ((i = 0; i < 20; i++)); do
		curl -sS -o /dev/null -H "Authorization: Bearer $LINODE_TOKEN" \
			"$LC_API_URL/linode/types" &
	done
	wait
	api_saw 'GET /v4/linode/types' 20
	run -0 lapi GET /profile
	[[ $(status_of) == 200 ]]
}

@test "firewall rules: PUT replaces them whole, checked against the spec; GET reads them back" {
	local ssh='{"protocol":"TCP","ports":"22","action":"ACCEPT","addresses":{"ipv4":["0.0.0.0/0"]},"label":"lc-ssh"}'
	local vllm='{"protocol":"TCP","ports":"8000","action":"ACCEPT","addresses":{"ipv4":["198.51.100.9/32"]},"label":"lc-vllm"}'
	run -0 lapi POST /networking/firewalls "{\"label\":\"lc-dev\",\"rules\":{\"inbound_policy\":\"DROP\",\"outbound_policy\":\"ACCEPT\",\"inbound\":[$ssh]}}"
	[[ $(status_of) == 200 ]]
	id=$(body | jq .id)
	run -0 lapi PUT "/networking/firewalls/$id/rules" "{\"inbound_policy\":\"DROP\",\"outbound_policy\":\"ACCEPT\",\"inbound\":[$ssh,$vllm],\"outbound\":[]}"
	[[ $(status_of) == 200 ]]
	body | jq -e --argjson s "$ssh" --argjson v "$vllm" '.inbound == [$s, $v] and .version == 2 and (.fingerprint | length == 8)'
	run -0 lapi GET "/networking/firewalls/$id/rules"
	body | jq -e '(.inbound | map(.label)) == ["lc-ssh", "lc-vllm"] and .inbound_policy == "DROP"'
	# The spec's read-only fields, unknown fields and bad rules are refused
	# and change nothing.
	run -0 lapi PUT "/networking/firewalls/$id/rules" "{\"inbound\":[$ssh],\"version\":2}"
	[[ $(status_of) == 400 ]]
	body | jq -e 'any(.errors[]; .reason | test("version"))'
	run -0 lapi PUT "/networking/firewalls/$id/rules" '{"inbound":[{"protocol":"TCP","ports":"080","action":"ACCEPT","addresses":{"ipv4":["0.0.0.0/0"]}}]}'
	[[ $(status_of) == 400 ]]
	body | jq -e 'any(.errors[]; .field == "rules.inbound[0].ports")'
	run -0 lapi PUT "/networking/firewalls/$id/rules" '{"inbound":[{"protocol":"TCP","action":"ACCEPT","addresses":{}}]}'
	[[ $(status_of) == 400 ]]
	run -0 lapi GET "/networking/firewalls/$id"
	body | jq -e '(.rules.inbound | length) == 2 and .rules.version == 2'
	run -0 lapi PUT /networking/firewalls/999/rules '{"inbound":[]}'
	[[ $(status_of) == 404 ]]
}

@test "VPCs: a subnet per VPC, instances with a vpc interface, checked against the spec" {
	run -0 lapi POST /vpcs '{"label":"lc-big","region":"us-ord",
		"subnets":[{"label":"nodes","ipv4":"10.42.0.0/24"}]}'
	[[ $(status_of) == 200 ]]
	vpc=$(body | jq .id)
	sub=$(body | jq '.subnets[0].id')
	body | jq -e '.subnets[0].linodes == [] and .region == "us-ord"'
	# The spec's schema, and what the API looks up.
	run -0 lapi POST /vpcs '{"label":"x","region":"us-ord","colour":"red"}'
	[[ $(status_of) == 400 ]]
	run -0 lapi POST /vpcs '{"label":"lc-big","region":"us-ord"}'
	body | jq -e '.errors[0].reason == "Label must be unique among your VPCs"'
	run -0 lapi POST /vpcs '{"label":"west","region":"ap-west"}'
	body | jq -e '.errors[0].field == "region"'
	run -0 lapi POST "/vpcs/$vpc/subnets" '{"label":"more","ipv4":"10.42.0.128/25"}'
	body | jq -e '.errors[0].reason == "Subnet ranges must not overlap"'
	run -0 lapi POST "/vpcs/$vpc/subnets" '{"label":"pub","ipv4":"8.8.8.0/24"}'
	[[ $(status_of) == 400 ]]
	run -0 lapi POST "/vpcs/$vpc/subnets" '{"label":"spare","ipv4":"10.43.0.0/24"}'
	[[ $(status_of) == 200 ]]
	# Three nodes in the subnet: two with the address asked, one given one.
	for n in 0 1 2; do
		addr=$([[ $n == 2 ]] && echo null || echo "\"10.42.0.1$n\"")
		run -0 lapi POST /linode/instances "$(create_body node$n | jq -c \
			--argjson s "$sub" --argjson a "$addr" '.interfaces = [
			{purpose: "public", primary: true},
			{purpose: "vpc", subnet_id: $s, ipv4: {vpc: $a}}]')"
		[[ $(status_of) == 200 ]]
	done
	api_state | jq -e --argjson s "$sub" '[.instances[].interfaces[1] |
		select(.subnet_id == $s) | .ipv4.vpc] == ["10.42.0.10","10.42.0.11","10.42.0.2"]'
	run -0 lapi GET "/vpcs/$vpc/subnets/$sub"
	body | jq -e '.linodes | length == 3'
	# An address in use, outside the subnet, or a subnet that is not there.
	run -0 lapi POST /linode/instances "$(create_body node3 | jq -c \
		--argjson s "$sub" '.interfaces = [{purpose: "public"},
		{purpose: "vpc", subnet_id: $s, ipv4: {vpc: "10.42.0.10"}}]')"
	body | jq -e '.errors[0].reason == "10.42.0.10 is already in use"'
	run -0 lapi POST /linode/instances "$(create_body node3 | jq -c \
		'.interfaces = [{purpose: "vpc", subnet_id: 1}]')"
	body | jq -e '.errors[0].field == "interfaces[0].subnet_id"'
	# A VPC with nodes in it cannot go; once they are gone, it can.
	run -0 lapi DELETE "/vpcs/$vpc"
	[[ $(status_of) == 400 ]]
	for id in $(api_state | jq '.instances[].id'); do
		run -0 lapi DELETE "/linode/instances/$id"
	done
	for _ in {1..100}; do
		api_state | jq -e '.instances == []' >/dev/null && break
		sleep 0.1
	done
	run -0 lapi GET "/vpcs/$vpc/subnets/$sub"
	body | jq -e '.linodes == []'
	run -0 lapi DELETE "/vpcs/$vpc"
	[[ $(status_of) == 200 ]]
	run -0 lapi GET /vpcs
	body | jq -e '.results == 0'
}

@test "fail injection: after N matching requests, the next one fails" {
	api_ctl fail '{"status":500,"after":1,"match":"POST /linode/instances"}' >/dev/null
	run -0 lapi POST /linode/instances "$(create_body first)"
	[[ $(status_of) == 200 ]]
	run -0 lapi POST /linode/instances "$(create_body second)"
	[[ $(status_of) == 500 ]]
	run -0 lapi POST /linode/instances "$(create_body second)"
	[[ $(status_of) == 200 ]]
}
