#!/usr/bin/env bats
# lc-create against the fake Linode API: the request, the session, faults.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup '{"provisioning_s":0.2,"booting_s":0.2,"deleting_s":0.2}'
	export LC_HTTP_RETRIES=3
}

# spec NAME [JQ-EXPR]: a spec record with cloud-config user data.
spec() {
	jq -nc --arg n "$1" '{name: $n, type: "g2-gpu-rtx4000a1-s",
		user_data: "#cloud-config\npackages: [jq]\n", model: "Qwen/Qwen2.5-Coder-7B-Instruct",
		served_model_name: "coder", owner: "ana"} | '"${2:-.}"
}

# mutating: how many POST, PUT and DELETE requests the server saw.
mutating() {
	api_requests | jq -s '[.[] | select(.method != "GET")] | length'
}

@test "lc-create: --wait makes the VM, saves the session and waits for running" {
	run -0 --separate-stderr lc-create --wait --until running < <(spec dev)
	assert_ndjson
	assert_json '.name == "dev" and .state == "provisioning" and .linode_id > 0'
	assert_json '.label == "lc-dev" and .tags == ["linode-coder", "lc-session:dev", "lc-owner:" + .owner_id]'
	[[ $(<"$STATE/owner") =~ ^[0-9a-f]{16}$ ]]
	jq -e --arg o "$(<"$STATE/owner")" '.owner_id == $o' "$STATE/sessions/dev.json"
	assert_json '.gpus == 1 and .hourly_cost_usd == 0.52 and .monthly_cost_usd == 350'
	assert_json '.ipv4 == "127.0.0.1" and .ssh.host == "127.0.0.1" and .ssh.port == 22 and .ssh.user == "root"'
	assert_json '.firewall_id > 0 and .owner == "ana" and .served_model_name == "coder"'
	assert_json '.endpoint == "http://127.0.0.1:8000/v1" and .heal == [] and .idle_timeout_s == 1800'
	assert_json '(.created_at | test("Z$")) and .deadline_at > .created_at and .last_activity_at == .created_at'
	assert_json 'has("user_data") | not'
	[[ $(stat -c %a "$STATE/sessions/dev.json") == 600 ]]
	jq -e '.state == "provisioning" and .linode_id > 0 and (has("user_data") | not)' "$STATE/sessions/dev.json"
	jq -se 'length == 1 and .[0].event == "created" and .[0].name == "dev" and .[0].hourly_cost_usd == 0.52 and .[0].linode_id > 0' "$STATE/ledger.jsonl"
	api_saw 'POST /v4/linode/instances' 1
	api_saw 'POST /v4/networking/firewalls' 1
	api_saw 'GET /v4/profile' 1
}

@test "lc-create: the request carries label, tags, keys, firewall and base64 user data" {
	run -0 --separate-stderr lc-create < <(spec dev)
	assert_json '.state == "creating"'
	api_state >"$BATS_TEST_TMPDIR/state.json"
	jq -e '.instances | length == 1' "$BATS_TEST_TMPDIR/state.json"
	jq -e '.instances[0].user_data == "#cloud-config\npackages: [jq]\n"' "$BATS_TEST_TMPDIR/state.json"
	jq -e --arg o "lc-owner:$(<"$STATE/owner")" '.firewalls[0].tags == ["linode-coder", "lc-session:dev", $o]' "$BATS_TEST_TMPDIR/state.json"
	jq -e --arg o "lc-owner:$(<"$STATE/owner")" '.instances[0].create_body | .label == "lc-dev" and .tags == ["linode-coder", "lc-session:dev", $o]
		and .booted == true and .image == "linode/ubuntu24.04" and .region == "us-ord"
		and .authorized_keys == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyForLcTests test@lc"]
		and (.root_pass | length >= 32) and (.metadata.user_data | test("^[A-Za-z0-9+/]+=*$"))' \
		"$BATS_TEST_TMPDIR/state.json"
	# The firewall is attached, drops everything inbound but 22/tcp.
	jq -e '.instances[0].firewall_id == .firewalls[0].id and .firewalls[0].label == "lc-dev"
		and .firewalls[0].rules.inbound_policy == "DROP"
		and ([.firewalls[0].rules.inbound[].ports] == ["22"])
		and .firewalls[0].entities[0].id == .instances[0].id' "$BATS_TEST_TMPDIR/state.json"
	# The password is in no record, no output, no file.
	pw=$(jq -r '.instances[0].create_body.root_pass' "$BATS_TEST_TMPDIR/state.json")
	[[ $output != *"$pw"* ]]
	run ! grep -rqF -- "$pw" "$STATE"
	run ! grep -rq 'packages: \[jq\]' "$STATE"
}

@test "lc-create: --public --allow opens 8000 to that address only" {
	run -0 --separate-stderr lc-create -P -a 203.0.113.7 < <(spec pub)
	assert_json '.public == true and .public_allow == "203.0.113.7"'
	api_state | jq -e '.firewalls[0].rules.inbound | length == 2 and
		(.[] | select(.ports == "8000") | .addresses.ipv4 == ["203.0.113.7/32"])'
}

@test "lc-create: public without an address keeps 8000 closed and says so; a bad address is refused" {
	run -0 --separate-stderr lc-create < <(spec pub '. + {public: true}')
	assert_json '.public == true and .public_allow == null'
	[[ $stderr == *"pub: public, but no address to admit to port 8000"* ]]
	api_state | jq -e '[.firewalls[0].rules.inbound[].ports] == ["22"]'
	run -1 --separate-stderr lc-create -P -a 'evil; rm' < <(spec pub2)
	assert_json '.error.code == "bad_spec"'
	run -1 --separate-stderr lc-create -P -a 203.0.113.7/33 < <(spec pub2)
	assert_json '.error.code == "bad_spec" and (.error.message | test("not an IPv4 or IPv6 address"))'
	api_saw 'POST /v4/linode/instances' 1
}

@test "lc-create: --public says on stderr which addresses reach port 8000" {
	run -0 --separate-stderr lc-create -q -P -a 203.0.113.0/24 < <(spec pub)
	[[ $stderr == "lc-create: pub: public: port 8000 (vLLM, behind its API key) is open to 203.0.113.0/24" ]]
	run -0 --separate-stderr lc-create -n -P -a 2001:db8::7 < <(spec pub6)
	[[ $stderr == *"pub6: public: port 8000 (vLLM, behind its API key) would be open to 2001:db8::7/128"* ]]
	# Not public: nothing is said about port 8000.
	run -0 --separate-stderr lc-create < <(spec closed)
	[[ $stderr != *"port 8000"* ]]
}

@test "lc-create: --allow wider than /16 or /48 is a usage error naming --allow-world; nothing is asked" {
	local a
	for a in 0.0.0.0/0 ::/0 10.0.0.0/8 198.51.0.0/15 2001:db8::/47; do
		run -2 --separate-stderr lc-create -P -a "$a" < <(spec pub)
		[[ -z $output ]]
		[[ ${stderr%%$'\n'*} == "lc-create: --allow $a opens port 8000 to "*": give --allow-world to mean it" ]] ||
			fail "$a: $stderr"
	done
	run -2 --separate-stderr lc-create -P -a 0.0.0.0/0 < <(spec pub)
	[[ $stderr == *"every IPv4 address"* ]]
	run -2 --separate-stderr lc-create -P -a ::/0 < <(spec pub)
	[[ $stderr == *"every IPv6 address"* ]]
	[[ $(wc -l <"$API_DIR/requests.jsonl") -eq 0 ]]
	# The narrowest refused and the widest allowed sit at the limit.
	run -0 --separate-stderr lc-create -n -P -a 198.51.0.0/16 < <(spec pub)
	run -0 --separate-stderr lc-create -n -P -a 2001:db8::/48 < <(spec pub)
}

@test "lc-create: --allow-world opens 0.0.0.0/0 and says so" {
	run -0 --separate-stderr lc-create -P --allow-world -a 0.0.0.0/0 < <(spec world)
	assert_json '.public == true and .public_allow == "0.0.0.0/0"'
	[[ $stderr == *"world: public: port 8000 (vLLM, behind its API key) is open to 0.0.0.0/0 (every IPv4 address)"* ]]
	api_state | jq -e '.firewalls[0].rules.inbound[] | select(.ports == "8000") | .addresses.ipv4 == ["0.0.0.0/0"]'
}

@test "lc-create: a spec's wide public_allow is refused (bad_spec) unless --allow-world" {
	run -1 --separate-stderr lc-create < <(spec wide '. + {public: true, public_allow: "::/0"}')
	assert_json '.error.code == "bad_spec" and (.error.message | test("public_allow ::/0 opens port 8000 to every IPv6 address: give --allow-world"))'
	[[ $(mutating) -eq 0 ]]
	run -0 --separate-stderr lc-create -W < <(spec wide '. + {public: true, public_allow: "::/0"}')
	assert_json '.public_allow == "::/0"'
}

@test "lc-create: -n prints the request and its cost, needs no token, sends nothing mutating" {
	unset LINODE_TOKEN
	run -0 --separate-stderr lc-create -n < <(spec dev)
	assert_json '.dry_run == true and .hourly_cost_usd == 0.52 and .daily_cost_usd == 12.48'
	assert_json '.request.instance.root_pass == "(elided)" and (.request.instance.metadata.user_data | startswith("(elided"))'
	assert_json '.request.instance.label == "lc-dev" and .request.firewall.rules.inbound_policy == "DROP"'
	assert_json 'has("user_data") | not'
	[[ $stderr == *"\$0.52/hour, \$12.48/day"* ]]
	[[ $(mutating) == 0 ]]
	[[ ! -e $STATE/sessions/dev.json ]]
	api_requests | jq -se 'all(.[]; .auth == "<none>")'
}

@test "lc-create: run again with the same name, it returns the session and makes nothing" {
	run -0 --separate-stderr lc-create < <(spec dev)
	id=$(jq -r .linode_id <<<"$output")
	run -0 --separate-stderr lc-create < <(spec dev)
	assert_json ".linode_id == $id"
	[[ $stderr == *"exists"* ]]
	api_saw 'POST /v4/linode/instances' 1
	api_saw 'POST /v4/networking/firewalls' 1
	[[ $(api_state | jq '.instances | length') == 1 ]]
}

@test "lc-create: a tagged VM from a run that died before saving is taken, not made again" {
	api_ctl instance '{"label":"lc-dev","tags":["linode-coder","lc-session:dev"]}' >/dev/null
	run -0 --separate-stderr lc-create < <(spec dev)
	assert_json '.linode_id > 0 and .label == "lc-dev"'
	api_saw 'POST /v4/linode/instances' 0
	jq -se '.[0].event == "adopted"' "$STATE/ledger.jsonl"
	[[ -f $STATE/sessions/dev.json ]]
}

@test "lc-create: user data over 65535 bytes is refused before any call" {
	big=$(head -c 70000 /dev/zero | tr '\0' 'x')
	run -1 --separate-stderr lc-create < <(spec big "{name, type, user_data: \"#cloud-config\\n# $big\"}")
	assert_json '.error.code == "user_data_too_large"'
	[[ $(api_requests | wc -l) == 0 || $(mutating) == 0 ]]
	api_saw 'POST /v4/linode/instances' 0
	api_saw 'GET /v4/regions/us-ord' 0
}

@test "lc-create: a region without GPUs or Metadata is a region_capability error" {
	run -1 --separate-stderr lc-create < <(spec a '. + {region: "ca-central"}')
	assert_json '.error.code == "region_capability" and (.error.message | contains("GPU Linodes"))'
	run -1 --separate-stderr lc-create < <(spec b '. + {region: "nowhere-1"}')
	assert_json '.error.code == "region_capability"'
	[[ $(mutating) == 0 ]]
}

@test "lc-create: an unknown type is type_unknown; a 400 reads as field: reason" {
	run -1 --separate-stderr lc-create < <(spec a '. + {type: "g9-none"}')
	assert_json '.error.code == "type_unknown"'
	api_ctl fail '{"status":400,"match":"POST /linode/instances","body":{"errors":[{"reason":"region is not valid","field":"region"}]}}' >/dev/null
	run -1 --separate-stderr lc-create < <(spec dev)
	assert_json '.error.code == "api_status"'
	[[ $stderr == *"lc-create: dev: Linode API 400: region: region is not valid"* ]]
	# No VM: the firewall made for it is removed again.
	[[ $(api_state | jq '.firewalls | length') == 0 ]]
}

@test "lc-create: --max-hourly refuses a dearer type; a region price wins; 0 is unknown" {
	run -1 --separate-stderr lc-create -m 0.50 < <(spec a)
	assert_json '.error.code == "price_over_max"'
	api_ctl type '{"id":"g2-gpu-rtx4000a1-s","region_prices":[{"id":"us-ord","hourly":0.61,"monthly":400}]}' >/dev/null
	run -0 --separate-stderr lc-create -n < <(spec b)
	assert_json '.hourly_cost_usd == 0.61 and .monthly_cost_usd == 400'
	api_ctl type '{"id":"g2-gpu-rtx4000a1-s","region_prices":[],"price":{"hourly":0,"monthly":0}}' >/dev/null
	LC_MAX_HOURLY=5 run -1 --separate-stderr lc-create -n < <(spec c)
	assert_json '.error.code == "price_over_max" and (.error.message | contains("unknown"))'
	api_saw 'POST /v4/linode/instances' 0
}

@test "lc-create: with 30% of requests failing 5xx, every session is made exactly once" {
	api_ctl fail_rate '{"rate":0.3,"statuses":[500,502,503],"seed":7}' >/dev/null
	export LC_HTTP_RETRIES=8
	run -0 --separate-stderr lc-create < <(for n in s1 s2 s3 s4 s5; do spec "$n"; done)
	[[ $(json_count) == 5 ]]
	assert_json '.linode_id > 0 and (has("error") | not)'
	api_ctl fail_rate '{"rate":0}' >/dev/null
	api_state | jq -e '[.instances[].label] | sort == ["lc-s1","lc-s2","lc-s3","lc-s4","lc-s5"]'
	api_state | jq -e '.firewalls | length == 5'
	[[ $(find "$STATE/sessions" -name '*.json' | wc -l) == 5 ]]
	api_requests | jq -se '[.[] | select(.status >= 500)] | length > 0'
}

@test "lc-create: a 429 waits at least Retry-After" {
	api_ctl fail '{"status":429,"retry_after":2,"match":"GET /profile"}' >/dev/null
	start=$(date +%s%N)
	run -0 lc-create < <(spec dev)
	elapsed=$((($(date +%s%N) - start) / 1000000))
	((elapsed >= 2000))
	api_saw 'GET /v4/profile' 2
}

@test "lc-create: a create that times out after succeeding makes one VM and one session" {
	api_ctl create_then_timeout '{"seconds":4}' >/dev/null
	LC_HTTP_TIMEOUT=1s run -0 --separate-stderr lc-create < <(spec dev)
	assert_json '.linode_id > 0 and (has("error") | not)'
	[[ $(api_state | jq '.instances | length') == 1 ]]
	[[ $(api_state | jq '.instances[0].id') == $(jq .linode_id <<<"$output") ]]
	api_saw 'POST /v4/linode/instances' 1
	[[ $(ls "$STATE/sessions") == dev.json ]]
}

@test "lc-create: 503 in maintenance is not retried; a bad token exits 3" {
	api_ctl fail '{"status":503,"maintenance":true,"match":"GET /profile"}' >/dev/null
	run -3 --separate-stderr lc-create < <(spec dev)
	api_saw 'GET /v4/profile' 1
	LINODE_TOKEN=wrong-token-value run -3 --separate-stderr lc-create < <(spec dev)
	[[ $stderr == *"Linode API 401"* && $stderr != *wrong-token-value* ]]
	unset LINODE_TOKEN
	run -3 --separate-stderr lc-create < <(spec dev)
	[[ $stderr == *"no Linode token"* ]]
}

@test "lc-create: --wait treats offline as failed, exit 1" {
	api_ctl clock '{"provisioning_s":3}' >/dev/null
	lc-create --wait --until running -q < <(spec dev) >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	for _ in {1..50}; do [[ -f $STATE/sessions/dev.json ]] && break; sleep 0.1; done
	id=$(jq .linode_id "$STATE/sessions/dev.json")
	api_ctl instance "{\"id\":$id,\"status\":\"offline\"}" >/dev/null
	rc=0
	wait "$pid" || rc=$?
	((rc == 1))
	output=$(<"$BATS_TEST_TMPDIR/out")
	assert_json '.error.code == "boot_failed"'
	jq -e '.state == "failed"' "$STATE/sessions/dev.json"
}

@test "lc-create: --timeout bounds the wait; the session stays" {
	api_ctl clock '{"provisioning_s":30}' >/dev/null
	run -1 --separate-stderr lc-create -w -u running -t 2 < <(spec dev)
	assert_json '.error.code == "timeout" and .linode_id > 0'
	jq -e '.state == "creating"' "$STATE/sessions/dev.json"
	[[ $stderr == *"VM "*" provisioning ("* ]]
}

@test "lc-create: a host key in the spec is pinned in the session's known_hosts" {
	LC_SSH_PORT=2222 run -0 --separate-stderr lc-create < <(spec dev '. + {host_key: {type: "ssh-ed25519", public: "AAAAHostKey"}}')
	[[ $(stat -c %a "$STATE/dev.known_hosts") == 600 ]]
	grep -qx '127.0.0.1 ssh-ed25519 AAAAHostKey' "$STATE/dev.known_hosts"
	grep -qx '\[127.0.0.1\]:2222 ssh-ed25519 AAAAHostKey' "$STATE/dev.known_hosts"
	assert_json '.ssh.port == 2222 and .ssh.known_hosts == "'"$STATE"'/dev.known_hosts"'
}

@test "lc-create: bad names, missing type and keys are per-record errors" {
	run -1 --separate-stderr lc-create < <(spec a--b; spec Bad; LC_TYPE='' spec ok '{name}')
	[[ $(json_count) == 3 ]]
	assert_json '.error.code == "bad_spec" or .error.code == "bad_name"'
	rm "$HOME/.ssh/id_ed25519.pub"
	run -1 --separate-stderr lc-create < <(spec dev)
	assert_json '.error.code == "ssh_key"'
	[[ $(mutating) == 0 ]]
}

@test "lc-create: error records pass through untouched; usage errors exit 2" {
	run -1 lc-create <<<'{"name":"x","error":{"code":"ssh_auth","message":"m","tool":"lc-gpuprobe"}}'
	assert_json '.error.tool == "lc-gpuprobe"'
	run -2 lc-create --bogus
	run -2 lc-create -t soon dev
	run -0 lc-create --help
	[[ $output == *"--max-hourly"* ]]
}

@test "lc-create: the token is in no output, record, file or argv" {
	api_ctl stall '{"seconds":1.5,"match":"POST /linode/instances"}' >/dev/null
	lc-create -w -u running < <(spec dev) >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	sleep 0.7
	ps -eo args >"$BATS_TEST_TMPDIR/ps"
	wait "$pid"
	run ! grep -qF -- "$TEST_TOKEN" "$BATS_TEST_TMPDIR/ps"
	grep -q lc-create "$BATS_TEST_TMPDIR/ps"
	run ! grep -rqF -- "$TEST_TOKEN" "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/err" "$STATE" "$API_DIR/requests.jsonl"
	[[ -s $BATS_TEST_TMPDIR/out ]]
}
