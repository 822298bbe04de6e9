#!/usr/bin/env bats
# lc-account against the fake Linode API: GPU regions, GPU plans with
# prices and stock, the profile; tables for people; faults.
load helpers/common
load helpers/lc-api

@test "lc-account regions: only regions with GPU Linodes, the documented fields" {
	run -0 --separate-stderr lc-account regions
	assert_ndjson
	assert_json 'keys == (["capabilities","country","id","label","status"])'
	assert_json '.capabilities | index("GPU Linodes")'
	assert_json_any '.id == "us-ord" and .label == "Chicago, IL" and .country == "us" and .status == "ok"'
	# The recorded list has 12 GPU regions among 32.
	[[ $(wc -l <<<"$output") -eq 12 ]]
	[[ $output != *'"us-central"'* ]]
	api_saw 'GET /v4/regions' 1
}

@test "lc-account regions: public, so no token is needed and none is sent" {
	unset LINODE_TOKEN
	run -0 lc-account regions
	assert_json_any '.id == "us-sea"'
	api_requests | jq -se 'length > 0 and all(.[]; .auth == "<none>")'
}

@test "lc-account types: GPU plans with size, prices and the API's stock per region" {
	run -0 --separate-stderr lc-account types
	assert_json '.gpus >= 1 and .vcpus > 0 and .memory_mb > 0 and .disk_mb > 0'
	assert_json '(.region_prices | type) == "array" and (.availability | type) == "array"'
	assert_json_any '.id == "g2-gpu-rtx4000a1-s" and .gpus == 1 and .hourly_cost_usd == 0.52 and .monthly_cost_usd == 350'
	assert_json_any '.id == "g1-gpu-rtx6000-1" and .availability == [{"region":"us-central","available":false},{"region":"us-west","available":false}]'
	[[ $output != *'"g6-nanode-1"'* ]]
	api_saw 'GET /v4/linode/types' 1
	api_saw 'GET /v4/regions/availability' 1
}

@test "lc-account types: region prices as the API gives them; a price of 0 is unknown" {
	api_ctl type '{"id":"g2-gpu-rtx4000a1-s","region_prices":[{"id":"id-cgk","hourly":0.62,"monthly":420}]}' >/dev/null
	api_ctl type '{"id":"g2-gpu-rtx4000a1-m","price":{"hourly":0,"monthly":0}}' >/dev/null
	run -0 lc-account types
	assert_json_any '.id == "g2-gpu-rtx4000a1-s" and .region_prices == [{"region":"id-cgk","hourly_cost_usd":0.62,"monthly_cost_usd":420}]'
	assert_json_any '.id == "g2-gpu-rtx4000a1-m" and .hourly_cost_usd == null and .monthly_cost_usd == null'
}

@test "lc-account types: without stock data the plans still come, availability null" {
	api_ctl fail '{"status":404,"count":-1,"match":"GET /regions/availability"}' >/dev/null
	run -0 --separate-stderr lc-account types
	assert_json '.availability == null and .gpus >= 1'
	[[ $stderr == "lc-account: types: no stock data: "*"404"* ]]
	run -0 --separate-stderr lc-account -q types
	[[ -z $stderr ]]
	# The table says "?" where the stock is unknown.
	run -0 --separate-stderr lc-account -H types
	[[ ${lines[1]} == "g"*" ?" ]]
}

@test "lc-account types: an answer that is not JSON is a bad_reply error record, exit 1" {
	api_ctl garbage '{"count":-1,"match":"GET /linode/types"}' >/dev/null
	run -1 --separate-stderr lc-account types
	assert_json '.name == "types" and .error.code == "bad_reply"'
}

@test "lc-account whoami: username, email, restricted, never the token" {
	run -0 --separate-stderr lc-account whoami
	assert_json '. == {"username":"exampleUser","email":"example-user@gmail.com","restricted":false}'
	[[ $output != *"$TEST_TOKEN"* && $stderr != *"$TEST_TOKEN"* ]]
	api_saw 'GET /v4/profile' 1
	api_requests | jq -se 'all(.[]; .auth == "Bearer <redacted>")'
}

@test "lc-account whoami: no token is fatal (exit 3), nothing asked" {
	unset LINODE_TOKEN
	run -3 --separate-stderr lc-account whoami
	[[ -z $output ]]
	[[ $stderr == "lc-account: no Linode token"* ]]
	[[ $(api_count 'GET /v4/profile') -eq 0 ]]
}

@test "lc-account whoami: a refused token is an api_auth error record, exit 1" {
	export LINODE_TOKEN=wrong-token-0123456789
	run -1 --separate-stderr lc-account whoami
	assert_json '.name == "whoami" and .error.code == "api_auth" and .error.tool == "lc-account"'
	[[ $stderr == "lc-account: whoami: Linode API 401"* ]]
	[[ $output != *wrong-token* && $stderr != *wrong-token* ]]
}

@test "lc-account regions: an API that keeps failing is an error record, exit 1" {
	api_ctl fail '{"status":503,"count":-1,"match":"GET /regions"}' >/dev/null
	run -1 --separate-stderr lc-account regions
	assert_json '.name == "regions" and .error.code == "api_unavailable"'
}

@test "lc-account -H: aligned tables with a header line" {
	run -0 lc-account -H regions
	[[ ${lines[0]} == "ID "*"LABEL "*"COUNTRY "*"STATUS "*"METADATA" ]]
	[[ $output == *$'\n''us-ord '*' Chicago, IL '*' us '*' ok '*' yes'* ]]
	# Every row puts LABEL at the header's column.
	local col=${lines[0]%%LABEL*} line
	for line in "${lines[@]:1}"; do
		[[ ${line:${#col}-2:2} == "  " && ${line:${#col}:1} != " " ]] ||
			fail "misaligned: $line"
	done
	run -0 lc-account --table types
	[[ ${lines[0]} == "ID "*"GPUS "*'$/H '*'$/MO '*"IN STOCK" ]]
	[[ $output == *"g2-gpu-rtx4000a1-s "*" 0.52 "*" 350.00 "* ]]
	run -0 lc-account -H whoami
	[[ ${lines[1]} == "exampleUser "*"example-user@gmail.com "*"no" ]]
}

@test "lc-account: usage errors exit 2 and ask nothing" {
	run -2 --separate-stderr lc-account
	[[ $stderr == *"usage: lc-account"* ]]
	run -2 --separate-stderr lc-account prices
	[[ $stderr == *"unknown question 'prices'"* ]]
	run -2 --separate-stderr lc-account regions types
	run -2 --separate-stderr lc-account --bogus regions
	[[ $(wc -l <"$API_DIR/requests.jsonl") -eq 0 ]]
}

@test "lc-account: a failed write is exit 3, not success" {
	run -0 bash -c 'lc-account regions 2>/dev/null >/dev/full; echo $?'
	[[ $output == 3 ]]
}

@test "coder regions, coder types: lc-account's records on a pipe, its tables on a terminal" {
	run -0 --separate-stderr coder regions
	[[ $output == "$(lc-account regions)" ]]
	run -0 --separate-stderr coder types
	assert_json_any '.id == "g2-gpu-rtx4000a1-s" and .hourly_cost_usd == 0.52'
	# A terminal gets the table (script(1) gives coder a tty).
	run -0 script -qec "coder regions" /dev/null
	[[ $output == "ID "*"LABEL "*"METADATA"* && $output == *"us-ord "* ]]
	run -0 script -qec "coder types" /dev/null
	[[ $output == "ID "*"GPUS "*"IN STOCK"* ]]
}
