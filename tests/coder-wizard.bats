#!/usr/bin/env bats
# coder wizard with its answers piped in, against the fake Linode API: each
# answer checked when given, the secrets in the user's config directory
# (found from any folder), cron installed last.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup
	fake_crontab
	SECRETS=$XDG_CONFIG_HOME/linode-coder/secrets
	CONFIG=$XDG_CONFIG_HOME/linode-coder/config
}

# wizard STATUS [ANSWER...]: coder wizard, expecting exit STATUS (-0, -3),
# given the test token, no Hugging Face token (Enter), then these answers,
# one a line; the token is then only in what the wizard writes.
wizard() {
	local expect=$1
	shift
	unset LINODE_TOKEN
	run "$expect" --separate-stderr coder wizard < <(printf '%s\n' "$TEST_TOKEN" "" "$@")
}

@test "coder wizard: writes the token to the user's secrets file (0600), settings to config, nothing here" {
	wizard -0 us-ord qwen-coder-7b 45m 6h "$HOME/.ssh/id_ed25519" n
	[[ $(stat -c %a "$SECRETS") == 600 && $(stat -c %a "$CONFIG") == 600 ]]
	grep -qx "LINODE_TOKEN='$TEST_TOKEN'" "$SECRETS"
	grep -qx "LC_IDLE_TIMEOUT='45m'" "$CONFIG"
	grep -qx "LC_DEADLINE='6h'" "$CONFIG"
	if grep -q "$TEST_TOKEN" "$CONFIG"; then fail "the token is in the config file"; fi
	[[ ! -e .env.secrets ]]
	[[ $stderr == *"wrote $CONFIG and $SECRETS (mode 0600)"* ]]
	[[ $output != *"$TEST_TOKEN"* && $stderr != *"$TEST_TOKEN"* ]]
	# validate ran last, naming where the values come from.
	assert_line --regexp "^token \(set\) +from $SECRETS\$"
	assert_line --regexp "^LC_REGION=us-ord +from $CONFIG\$"
	[[ ${lines[-1]} == "configuration ok"* ]]
	api_saw 'GET /v4/profile'
}

@test "coder wizard: the token then works from any folder (reconcile, down, up)" {
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	jq -nc '{name: "dev", type: "g2-gpu-rtx4000a1-s"}' |
		LINODE_TOKEN=$TEST_TOKEN lc-create -q >/dev/null
	id=$(jq .linode_id "$STATE/sessions/dev.json")
	mkdir -p "$HOME/projects/app"
	cd "$HOME/projects/app"
	[[ -z ${LINODE_TOKEN:-} && ! -e .env.secrets ]]
	run -0 --separate-stderr lc-sessions reconcile
	run -0 --separate-stderr coder down dev
	assert_json '.name == "dev" and .state == "destroyed"'
	api_saw "DELETE /v4/linode/instances/$id" 1
	run -0 coder validate --json
	jq -e -s --arg s "$SECRETS" 'any(.[]; .key == "token" and .ok and .source == $s)' <<<"$output"
}

@test "coder wizard: ./.env.secrets in a folder still wins over the user's secrets file" {
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	mkdir -p "$HOME/old-project" && cd "$HOME/old-project"
	echo 'LINODE_TOKEN=not-the-token' >.env.secrets
	chmod 600 .env.secrets
	run -1 --separate-stderr lc-sessions reconcile
	[[ $stderr == *"401"* || $output == *api_auth* ]]
	run -0 coder validate --json
	jq -e -s 'any(.[]; .key == "token" and .source == ".env.secrets")' <<<"$output"
	# And the wizard says so when it writes a token such a file overrides.
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	[[ $stderr == *"warning: LINODE_TOKEN from .env.secrets wins over the one just written to $SECRETS"* ]]
}

@test "coder wizard: keeps the other keys of the secrets and config files" {
	printf 'HF_TOKEN=hf_keepme\nLINODE_TOKEN=old\n' >"$SECRETS"
	chmod 600 "$SECRETS"
	printf 'LC_BUDGET_USD=5\n' >"$CONFIG"
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	grep -qx "HF_TOKEN='hf_keepme'" "$SECRETS"
	grep -qx "LINODE_TOKEN='$TEST_TOKEN'" "$SECRETS"
	[[ $(grep -c LINODE_TOKEN "$SECRETS") == 1 ]]
	grep -qx "LC_BUDGET_USD='5'" "$CONFIG"
	[[ $stderr != *hf_keepme* && $output != *hf_keepme* ]]
}

@test "coder wizard: a Hugging Face token goes to the secrets file, never to the output" {
	unset LINODE_TOKEN
	run -0 --separate-stderr coder wizard < <(printf '%s\n' "$TEST_TOKEN" hf_Wizard0123 us-ord \
		qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n)
	grep -qx "HF_TOKEN='hf_Wizard0123'" "$SECRETS"
	[[ $(stat -c %a "$SECRETS") == 600 ]]
	if grep -q hf_Wizard "$CONFIG"; then fail "the HF token is in the config file"; fi
	[[ $output != *hf_Wizard* && $stderr != *hf_Wizard* ]]
	[[ $stderr != *"wins over"* ]]
	run -0 coder validate --json
	jq -e -s --arg s "$SECRETS" 'any(.[]; .key == "HF_TOKEN" and .value == "(set)" and .source == $s)' <<<"$output"
}

@test "coder wizard: a region without GPUs is refused at the prompt and asked again" {
	wizard -0 ca-central us-nowhere us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	[[ $stderr == *"ca-central is not a region with GPU Linodes: give one of "*"us-ord"*"('coder regions' describes them)"* ]]
	[[ $stderr == *"us-nowhere is not a region with GPU Linodes"* ]]
	grep -qx "LC_REGION='us-ord'" "$CONFIG"
	api_saw 'GET /v4/regions'
	# The hint names a verb that exists.
	run -0 coder help regions
}

@test "coder wizard: with the API out of reach, the region is taken with a warning" {
	mkdir -p "$HOME/.ssh" && ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	# A port with nothing listening on it: no API, no network.
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	LC_API_URL=http://127.0.0.1:$port/v4 LC_HTTP_RETRIES=0 \
		wizard -0 xx-made-up qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	[[ $stderr == *"warning: cannot check the token"*"keeping it unchecked"* ]]
	[[ $stderr == *"warning: cannot list the regions with GPUs"* ]]
	[[ $stderr == *"warning: region xx-made-up taken unchecked"* ]]
	grep -qx "LC_REGION='xx-made-up'" "$CONFIG"
	grep -qx "LINODE_TOKEN='$TEST_TOKEN'" "$SECRETS"
}

@test "coder wizard: a deadline past LC_MAX_DEADLINE or a zero idle timeout is refused at the prompt" {
	wizard -0 us-ord qwen-coder-7b 0 soon 20m 100h 12h "$HOME/.ssh/id_ed25519" n
	[[ $stderr == *"LC_IDLE_TIMEOUT=0: give more than 0"* ]]
	[[ $stderr == *"LC_IDLE_TIMEOUT=soon is not a duration"* ]]
	[[ $stderr == *"LC_DEADLINE is longer than LC_MAX_DEADLINE (24h, from default): give at most 24h"* ]]
	grep -qx "LC_IDLE_TIMEOUT='20m'" "$CONFIG"
	grep -qx "LC_DEADLINE='12h'" "$CONFIG"
	# The maximum is the configured one, and the question says where it is.
	echo 'LC_MAX_DEADLINE=4h' >.env
	wizard -0 us-ord qwen-coder-7b 20m 12h 3h "$HOME/.ssh/id_ed25519" n
	[[ $stderr == *"LC_DEADLINE is longer than LC_MAX_DEADLINE (4h, from .env)"* ]]
	[[ $stderr == *"Region (now from $CONFIG) [us-ord]"* ]]
	grep -qx "LC_DEADLINE='3h'" "$CONFIG"
}

@test "coder wizard: answers that end on a refused one write nothing" {
	wizard -3 us-ord qwen-coder-7b 30m 100h
	[[ $stderr == *"the answers ended early: nothing was written"* ]]
	[[ ! -e $SECRETS && ! -e $CONFIG && ! -e .env.secrets ]]
}

@test "coder wizard: cron is installed after the secrets are written, so it warns of no missing token" {
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" y
	grep -q 'lc-watch.*# linode-coder: lc-watch$' "$BATS_TEST_TMPDIR/crontab.txt"
	[[ $stderr != *"no Linode token"* && $stderr != *"cron runs cannot"* && $stderr != *"which cron"* ]]
	if grep -q "$TEST_TOKEN" "$BATS_TEST_TMPDIR/crontab.txt"; then fail "the token is in the crontab"; fi
	[[ $stderr == *"wrote $CONFIG and $SECRETS"* ]]
	[[ $output == *'"installed":true'* && ${lines[-1]} == "configuration ok"* ]]
}

@test "coder wizard: a refused token from a pipe writes nothing" {
	unset LINODE_TOKEN
	run -3 --separate-stderr coder wizard <<<"not-the-token"
	[[ $stderr == *"the token was refused"* ]]
	[[ ! -e $SECRETS && ! -e $CONFIG && ! -e .env.secrets ]]
	[[ $stderr != *"not-the-token"* ]]
}

@test "coder wizard: no terminal and no input is refused" {
	run -2 --separate-stderr coder wizard </dev/null
	[[ $stderr == *"no terminal and no answers"* ]]
}

@test "coder wizard: asks whether to keep a model cache, with its size and monthly cost, and writes LC_CACHE" {
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n y
	[[ $stderr == *"Keep a model cache volume in us-ord"*"About 50 GB: \$5.00/month, billed until 'coder cache rm'"* ]]
	grep -qx "LC_CACHE='on'" "$CONFIG"
	wizard -0 us-ord qwen-coder-32b 30m 8h "$HOME/.ssh/id_ed25519" n n
	[[ $stderr == *"About 60 GB: \$6.00/month"* ]]
	grep -qx "LC_CACHE='off'" "$CONFIG"
	# Answers that end before the question (an older script): no cache.
	wizard -0 us-ord qwen-coder-7b 30m 8h "$HOME/.ssh/id_ed25519" n
	grep -qx "LC_CACHE='off'" "$CONFIG"
}
