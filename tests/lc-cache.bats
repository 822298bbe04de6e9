#!/usr/bin/env bats
# The model cache volume against the fake Linode API: lc-create finds or
# makes lc-cache-<region> and attaches it, lc-destroy keeps it and says
# what it costs, lc-sessions cache lists and deletes it.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup '{"provisioning_s":0.2,"booting_s":0.2,"deleting_s":0.2,"volume_s":0.2}'
	export LC_HTTP_RETRIES=3
}

# spec NAME [JQ-EXPR]: a spec with the cache volume of us-ord.
spec() {
	jq -nc --arg n "$1" '{name: $n, type: "g2-gpu-rtx4000a1-s", region: "us-ord",
		user_data: "#cloud-config\npackages: [jq]\n", model: "Qwen/Qwen2.5-Coder-7B-Instruct",
		served_model_name: "coder", vram_need_gib: 16, volume: "lc-cache-us-ord"} | '"${2:-.}"
}

@test "lc-cache: the first session makes one volume, attached to its VM and ready before lc-create returns" {
	run -0 --separate-stderr lc-create < <(spec dev)
	assert_json '.cache_volume.label == "lc-cache-us-ord" and .cache_volume.state == "new"'
	assert_json '.cache_volume.size_gb == 50 and .cache_volume.monthly_cost_usd == 5'
	[[ $stderr == *"cache volume lc-cache-us-ord attached (new, 50 GB, \$5.00/month until deleted)"* ]]
	api_state >"$BATS_TEST_TMPDIR/s.json"
	jq -e --arg o "lc-owner:$(<"$STATE/owner")" '.volumes | length == 1 and .[0].linode_id == $ARGS.named.id
		and .[0].io_ready == true and .[0].tags == ["linode-coder", $o]' \
		--argjson id "$(jq .linode_id "$STATE/sessions/dev.json")" "$BATS_TEST_TMPDIR/s.json"
	jq -e '.cache_volume.state == "new"' "$STATE/sessions/dev.json"
	api_saw 'POST /v4/volumes' 1
}

@test "lc-cache: after the first session is destroyed, the next attaches the same volume and makes none" {
	run -0 --separate-stderr lc-create < <(spec one)
	run -0 --separate-stderr lc-destroy one
	[[ $stderr == *"lc-cache-us-ord"*"kept"*"\$5.00/month"* ]]
	api_state | jq -e '.volumes | length == 1 and .[0].linode_id == null'
	run -0 --separate-stderr lc-create < <(spec two)
	assert_json '.cache_volume.state == "kept"'
	api_saw 'POST /v4/volumes' 1
	api_state | jq -e --argjson id "$(jq .linode_id "$STATE/sessions/two.json")" \
		'.volumes | length == 1 and .[0].linode_id == $id'
}

@test "lc-cache: a second session at once runs without the cache and says why; --cache-new's label makes a second" {
	run -0 --separate-stderr lc-create < <(spec one)
	run -0 --separate-stderr lc-create < <(spec two)
	assert_json '.state == "creating" and .cache_volume.state == "none"'
	assert_json '.cache_volume.reason | test("attached to lc-one")'
	[[ $stderr == *"two: no model cache: lc-cache-us-ord is attached to lc-one"*"--cache-new"* ]]
	run -0 --separate-stderr lc-create < <(spec three '.volume = "lc-cache-us-ord-three"')
	assert_json '.cache_volume.state == "new"'
	api_state | jq -e '.volumes | length == 2'
}

@test "lc-cache: a refused create (quota, 4xx) leaves the session going without a cache" {
	api_ctl fail '{"status":400,"count":1,"match":"POST /volumes"}' >/dev/null
	run -0 --separate-stderr lc-create < <(spec dev)
	assert_json '.linode_id > 0 and .cache_volume.state == "none"'
	[[ $stderr == *"dev: no model cache: Linode API 400"* ]]
	api_state | jq -e '.volumes == [] and (.instances | length == 1)'
}

@test "lc-cache: a region without Block Storage runs without a cache and the plan says so" {
	api_ctl region '{"id":"us-ord","capabilities":["Linodes","GPU Linodes","Metadata","Cloud Firewall"]}' >/dev/null
	run -0 --separate-stderr lc-create -n < <(spec dev)
	assert_json '.cache_volume.state == "none" and (.cache_volume.reason | test("us-ord has no Block Storage"))'
	run -0 --separate-stderr lc-create < <(spec dev)
	assert_json '.cache_volume.state == "none"'
	api_saw 'POST /v4/volumes' 0
}

@test "lc-cache: the plan shows the volume, its size and monthly price, new, kept or busy" {
	run -0 --separate-stderr lc-create -n < <(spec dev)
	assert_json '.cache_volume == {"label":"lc-cache-us-ord","size_gb":50,"monthly_cost_usd":5,"state":"new"}'
	run -0 --separate-stderr lc-create < <(spec one)
	run -0 --separate-stderr lc-create -n < <(spec dev)
	assert_json '.cache_volume.state == "busy"'
	run -0 --separate-stderr lc-create -n < <(spec dev '.cache_size_gb = 100 | .volume = "lc-cache-us-ord-x"')
	assert_json '.cache_volume.size_gb == 100 and .cache_volume.monthly_cost_usd == 10'
}

@test "lc-cache: lc-sessions cache ls lists the volumes with size and price; rm refuses while attached, then deletes" {
	run -0 --separate-stderr lc-create < <(spec dev)
	run -0 --separate-stderr lc-sessions cache
	assert_json '.label == "lc-cache-us-ord" and .size_gb == 50 and .monthly_cost_usd == 5 and .attached_to == "lc-dev"'
	run -1 --separate-stderr lc-sessions cache rm lc-cache-us-ord
	assert_json '.error.code == "cache_attached"'
	[[ $stderr == *"attached to lc-dev"* ]]
	api_state | jq -e '.volumes | length == 1'
	run -0 --separate-stderr lc-destroy dev
	run -0 --separate-stderr lc-sessions cache rm lc-cache-us-ord
	assert_json '.state == "deleted"'
	[[ $stderr == *"lc-cache-us-ord: deleted; it no longer costs \$5.00/month"* ]]
	api_state | jq -e '.volumes == []'
	run -1 --separate-stderr lc-sessions cache rm lc-cache-us-ord
	assert_json '.error.code == "not_found"'
}

@test "lc-cache: cache rm -a deletes every detached volume of this ledger; usage errors exit 2" {
	run -0 --separate-stderr lc-create < <(spec one)
	run -0 --separate-stderr lc-create < <(spec two '.volume = "lc-cache-us-ord-two"')
	run -0 --separate-stderr lc-destroy one two
	run -0 --separate-stderr lc-sessions cache rm -a
	api_state | jq -e '.volumes == []'
	run -2 lc-sessions cache rm
	run -2 lc-sessions cache rm -a lc-cache-us-ord
	run -2 lc-sessions cache frob
}

@test "lc-cache: reconcile lists a volume tagged linode-coder that no session or config knows" {
	run -0 --separate-stderr lc-create < <(spec dev)
	curl -fsS -X POST -H "Authorization: Bearer $LINODE_TOKEN" -H 'Content-Type: application/json' \
		-d '{"label":"stray","region":"us-ord","size":20,"tags":["linode-coder"]}' "$LC_API_URL/volumes" >/dev/null
	run -0 --separate-stderr lc-sessions reconcile
	assert_json 'select(.label == "stray") | .state == "orphan_volume" and .monthly_cost_usd == 2'
	run ! jq -e 'select(.label == "lc-cache-us-ord")' <<<"$output"
	[[ $stderr == *"stray: volume"*"no session or config knows it: it bills \$2.00/month"* ]]
}

@test "lc-cache: coder plan --cache shows the volume to be made, its size and monthly price; -K turns it off" {
	run -0 --separate-stderr coder plan dev --json --cache --preset qwen-coder-7b --region us-ord
	assert_json '.volume == "lc-cache-us-ord" and .cache == true'
	assert_json '.cache_volume == {"label":"lc-cache-us-ord","size_gb":50,"monthly_cost_usd":5,"state":"new"}'
	run -0 --separate-stderr coder plan dev --json --cache --cache-new --cache-size 80 --preset qwen-coder-7b --region us-ord
	assert_json '.volume == "lc-cache-us-ord-dev" and .cache_volume.size_gb == 80 and .cache_volume.monthly_cost_usd == 8'
	LC_CACHE=on run -0 --separate-stderr coder plan dev --json -K --preset qwen-coder-7b --region us-ord
	assert_json '.volume == null and (has("cache_volume") | not)'
}

@test "lc-cache: a group of nodes goes without the cache and the plan says why" {
	LC_CACHE=on run -0 --separate-stderr coder plan big --json --preset qwen3-235b-2node --region us-ord
	assert_json '.nodes == 2 and .volume == null and (has("cache_volume") | not)'
	[[ $stderr == *"a group of 2 nodes runs without the model cache"* ]] || fail "$stderr"
}

@test "lc-cache: coder cache lists the volumes and deletes one" {
	run -0 --separate-stderr lc-create < <(spec dev)
	run -0 --separate-stderr lc-destroy dev
	run -0 --separate-stderr coder cache --json
	assert_json '.label == "lc-cache-us-ord" and .attached_to == null'
	run -0 --separate-stderr coder cache ls
	assert_json '.label == "lc-cache-us-ord" and .monthly_cost_usd == 5'
	run -0 --separate-stderr coder cache rm lc-cache-us-ord
	assert_json '.state == "deleted"'
	[[ $stderr == *"lc-cache-us-ord: deleted; it no longer costs \$5.00/month"* ]]
	api_state | jq -e '.volumes == []'
}

@test "lc-cache: lc-cloudinit refuses a cache size outside 10 to 10240 GB (usage, exit 2)" {
	run -2 lc-cloudinit -N dev -z 5
	[[ $output == *"bad cache size '5'"* ]]
	run -2 lc-cloudinit -N dev --cache-size 20k
}

@test "lc-cache: coder cost gives the sessions' cost, then every cache volume with its monthly price" {
	run -0 --separate-stderr lc-create < <(spec dev)
	run -0 --separate-stderr lc-destroy dev
	run -0 --separate-stderr coder cost --json
	jq -se 'map(select(has("total_cost_usd")))[0].sessions == 1' <<<"$output"
	jq -se 'map(select(.label == "lc-cache-us-ord"))[0] | .monthly_cost_usd == 5 and .attached_to == null' <<<"$output"
}

@test "lc-cache: coder down leaves the volume and prints what it still costs a month" {
	run -0 --separate-stderr lc-create < <(spec dev)
	run -0 --separate-stderr coder down dev
	[[ $stderr == *"dev: the cache volume lc-cache-us-ord (50 GB) is kept for the next session: it still costs \$5.00/month until deleted ('coder cache rm lc-cache-us-ord')"* ]]
	api_state | jq -e '.volumes | length == 1 and .[0].linode_id == null'
}
