#!/usr/bin/env bats
# coder plan (and the README's first command) never spends money: whatever
# token there is, the API server sees no POST.
load helpers/common

setup_file() {
	start_api_server
}

teardown_file() {
	stop_api_server
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset '{}' >/dev/null
	unset LINODE_TOKEN
}

# plan_makes_nothing: coder plan prints the plan with its cost, exit 0, and
# the API answered no POST, PUT or DELETE.
plan_makes_nothing() {
	# The tools find the token here (reconcile needs one, and only reads).
	run -0 --separate-stderr lc-sessions reconcile
	api_reset_log
	run -0 --separate-stderr coder plan
	[[ $output == *hourly_cost_usd* && $output == *"#cloud-config"* ]] ||
		fail "no plan: $output"
	api_saw 'POST *' 0
	api_saw 'PUT *' 0
	api_saw 'DELETE *' 0
	[[ $(api_state | jq '.instances | length') == 0 ]]
	[[ ! -e $STATE/sessions/dev.json ]]
}

@test "coder plan with a token in the environment: a plan, no POST" {
	export LINODE_TOKEN=$TEST_TOKEN
	plan_makes_nothing
}

@test "coder plan with the token in ./.env.secrets: a plan, no POST" {
	printf 'LINODE_TOKEN=%s\n' "$TEST_TOKEN" >.env.secrets
	chmod 600 .env.secrets
	plan_makes_nothing
}

@test "coder plan with the token in linode-cli's config: a plan, no POST" {
	mkdir -p "$XDG_CONFIG_HOME"
	printf '[DEFAULT]\ndefault-user = me\n\n[me]\ntoken = %s\n' "$TEST_TOKEN" \
		>"$XDG_CONFIG_HOME/linode-cli"
	plan_makes_nothing
}

@test "the README's first command runs the plan" {
	line=$(grep -m1 '&& make && ' "$REPO/README.md")
	[[ $line == *"./bin/coder plan" ]] || fail "README: $line"
}

@test "coder plan takes up's options and refuses an unknown one" {
	export LINODE_TOKEN=$TEST_TOKEN
	run -0 --separate-stderr coder plan mine --region us-ord
	[[ $output == *'"name":"mine"'* ]]
	run -2 --separate-stderr coder plan --bogus
	[[ $stderr == *"--bogus"* ]]
	api_saw 'POST *' 0
}

@test "coder up takes --launch-aider, the old tool's word, as --aider" {
	export LINODE_TOKEN=$TEST_TOKEN
	run -0 --separate-stderr coder up --dry-run mine --launch-aider
	[[ $output == *'"name":"mine"'* && $output == *"#cloud-config"* ]]
	run -0 --separate-stderr coder up --dry-run mine --aider
	run -2 --separate-stderr coder up --dry-run mine --launch-aidr
	[[ $stderr == *"--launch-aidr"* ]]
	run -0 coder help up
	[[ $output == *"--launch-aider"* ]]
	api_saw 'POST *' 0
}

@test "coder plan on a terminal: a short summary, the cost last; --json and --cloud-config give the rest" {
	export LINODE_TOKEN=$TEST_TOKEN
	run -0 script -qec "coder plan" /dev/null
	output=${output//$'\r'/}
	[[ $output == *"Plan for dev (nothing is created):"* ]]
	[[ $output == *"model     Qwen/"* && $output == *"VM        g2-gpu-"* ]]
	[[ $output != *'{"'* && $output != *"#cloud-config"* ]]
	last=$(grep -v "^The full spec" <<<"$output" | tail -1)
	[[ $last == "  cost      \$0.52/hour, \$12.48/day" ]] || fail "last line: $last"
	run -0 script -qec "coder plan --json" /dev/null
	output=${output//$'\r'/}
	jq -e 'select(.name == "dev") | .hourly_cost_usd == 0.52' <<<"$(grep '^{' <<<"$output")"
	[[ $output != *"#cloud-config"* ]]
	run -0 --separate-stderr coder plan --cloud-config
	[[ $output == "#cloud-config"* ]]
	api_saw 'POST *' 0
}

@test "coder plan and up refuse an untested image unless --image-unchecked" {
	run -2 --separate-stderr coder plan -i linode/debian12
	[[ $stderr == *"--image-unchecked"* ]]
	run -0 --separate-stderr coder plan --json -i linode/debian12 --image-unchecked
	jq -e 'select(.name == "dev") | .image == "linode/debian12"' <<<"$output"
	api_saw 'POST *' 0
}

@test "coder up and plan: --allow wider than /16 needs --allow-world, which they pass to lc-create" {
	run --separate-stderr coder plan --public --allow 0.0.0.0/0
	((status != 0))
	[[ $stderr == *"give --allow-world to mean it"* ]]
	run -0 --separate-stderr coder plan --json --public --allow 0.0.0.0/0 --allow-world
	[[ $stderr == *"would be open to 0.0.0.0/0 (every IPv4 address)"* ]]
	run -2 --separate-stderr coder plan --allow-world
	[[ $stderr == *"--allow-world goes with --public"* ]]
	api_saw 'POST *' 0
}

@test "coder plan --nodes: N nodes, their GPUs, memory and price in all; a model too big for N names the fewest that hold it" {
	export LINODE_TOKEN=$TEST_TOKEN
	run -0 script -qec "coder plan big -p qwen3-235b-2node" /dev/null
	output=${output//$'\r'/}
	[[ $output == *"VM        g2-gpu-rtx4000a4-s: 4 x RTX 4000 Ada, 80 GiB"* ]]
	[[ $output == *"nodes     2 VMs of that type on one VPC: 8 GPUs, 160 GiB of GPU memory, \$5.92/hour in all (vLLM over Ray: tensor parallel 4, pipeline parallel 2)"* ]] ||
		fail "no group line: $output"
	[[ $output == *"cost      \$5.92/hour, \$142.08/day"* ]]
	run -0 --separate-stderr coder plan big --json -p qwen3-235b-2node
	jq -e 'select(.name == "big") | .nodes == 2 and .gpus_total == 8 and
		.vram_gib_total == 160 and .hourly_cost_usd == 5.92 and
		.hourly_cost_usd_node == 2.96 and
		.vllm.tensor_parallel_size == 4 and .vllm.pipeline_parallel_size == 2' <<<"$output"
	# One node does not hold it: refused, with the fewest that do.
	run -1 --separate-stderr coder plan big --json -p qwen3-235b-2node --nodes 1
	[[ $stderr == *"needs 132 GiB"*"use --nodes 2 (2 x g2-gpu-rtx4000a4-s, 8 GPUs, 160 GiB, ~\$5.92/h in all)"* ]] ||
		fail "$stderr"
	run -1 --separate-stderr coder plan big --json -p qwen3-235b-2node -T g2-gpu-rtx4000a2-s
	[[ $stderr == *"use --nodes 4 (4 x g2-gpu-rtx4000a2-s"* ]] || fail "$stderr"
	run -0 --separate-stderr coder plan big --json -p qwen3-235b-2node -T g2-gpu-rtx4000a2-s --nodes 4
	jq -e 'select(.name == "big") | .nodes == 4 and .vllm.tensor_parallel_size == 2 and
		.hourly_cost_usd == 4.2' <<<"$output"
	run -2 --separate-stderr coder plan --nodes 0
	run -2 --separate-stderr coder plan --nodes 9
	# lc-create --nodes must agree with the spec's.
	run -1 --separate-stderr bash -c 'lc-cloudinit -R -N big -p qwen3-235b-2node |
		lc-create --dry-run --nodes 3'
	[[ $stderr == *"--nodes 3, but the spec is for 2 nodes"* ]] || fail "$stderr"
	api_saw 'POST *' 0
}
