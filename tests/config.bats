#!/usr/bin/env bats
# Configuration: the precedence chain, the .env reader, the token chain and
# the secrets file's mode, seen through `coder validate --json`.
load helpers/common

# key_of KEY: the validate row for KEY from $output.
key_of() {
	jq -c --arg k "$1" 'select(.key == $k)' <<<"$output"
}

@test "config: defaults, then config file, secrets file, .env, .env.secrets, environment" {
	run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .value) == us-ord ]]
	[[ $(key_of LC_REGION | jq -r .source) == default ]]
	echo 'LC_REGION=fr-par' >"$XDG_CONFIG_HOME/linode-coder/config"
	run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .value) == fr-par ]]
	echo 'LC_REGION=nl-ams' >"$XDG_CONFIG_HOME/linode-coder/secrets"
	chmod 600 "$XDG_CONFIG_HOME/linode-coder/secrets"
	run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .source) == "$XDG_CONFIG_HOME/linode-coder/secrets" ]]
	echo 'LC_REGION=jp-osa' >.env
	run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .value) == jp-osa ]]
	[[ $(key_of LC_REGION | jq -r .source) == .env ]]
	echo 'LC_REGION=us-sea' >.env.secrets
	chmod 600 .env.secrets
	run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .value) == us-sea ]]
	LC_REGION=de-fra-2 run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .value) == de-fra-2 ]]
	[[ $(key_of LC_REGION | jq -r .source) == environment ]]
}

@test "config: .env takes comments, blank lines, export, quotes and trailing comments" {
	cat >.env <<-'EOT'
	# a comment

	export LC_REGION=us-sea
	LC_PRESET = "qwen coder"   # spaces inside quotes stay
	LC_IMAGE='linode/ubuntu24.04-nvidia'
	LC_VOLUME=cache # trailing comment
	LC_SSH_USER="a \"quoted\" name"
	OTHER_TOOL_KEY=ignored
	EOT
	run -1 coder validate --json
	[[ $(key_of LC_REGION | jq -r .value) == us-sea ]]
	[[ $(key_of LC_PRESET | jq -r .value) == "qwen coder" ]]
	[[ $(key_of LC_IMAGE | jq -r .value) == linode/ubuntu24.04-nvidia ]]
	[[ $(key_of LC_VOLUME | jq -r .value) == cache ]]
	[[ $(key_of LC_SSH_USER | jq -r .value) == 'a "quoted" name' ]]
	# Another program's key is ignored, and said to be, without its value.
	[[ $(key_of OTHER_TOOL_KEY | jq -c '[.level, .value, .ok]') == '["ignored",null,true]' ]]
}

@test "config: a .env line with no '=' names the file and line, exit 3" {
	printf 'LC_REGION=us-ord\nthis line is wrong\n' >.env
	run -3 --separate-stderr coder validate
	[[ $stderr == *".env:2: no '=' in the line (write KEY=VALUE)"* ]]
	run -3 --separate-stderr lc-sessions extend dev
	[[ $stderr == *".env:2"* ]]
}

@test "config: an unterminated quote is refused" {
	echo "LC_REGION='us-ord" >.env
	run -3 --separate-stderr coder validate
	[[ $stderr == *".env:1: unterminated single quote"* ]]
}

@test "config: a secrets file readable by others is refused, naming chmod 600" {
	echo 'LINODE_TOKEN=abc123secret' >.env.secrets
	chmod 644 .env.secrets
	run -3 --separate-stderr coder validate
	[[ $stderr == *"chmod 600 .env.secrets"* ]]
	[[ $stderr != *abc123secret* ]]
	chmod 600 .env.secrets
	run coder validate --json
	[[ $(key_of token | jq -r .ok) == true ]]
	[[ $(key_of token | jq -r .source) == .env.secrets ]]
	[[ $output != *abc123secret* ]]
}

@test "config: any file holding a token must be private, even the config file" {
	echo 'LINODE_TOKEN=abc123secret' >"$XDG_CONFIG_HOME/linode-coder/config"
	chmod 640 "$XDG_CONFIG_HOME/linode-coder/config"
	run -3 --separate-stderr coder validate
	[[ $stderr == *"holds secrets"*"chmod 600"* ]]
}

@test "config: token chain LINODE_TOKEN, LINODE_CLI_TOKEN, .env.secrets, linode-cli config" {
	mkdir -p "$XDG_CONFIG_HOME"
	printf '[DEFAULT]\ndefault-user = ana\n\n[bob]\ntoken = bobtoken\n\n[ana]\ntoken = anatoken\nregion = us-east\n' \
		>"$XDG_CONFIG_HOME/linode-cli"
	run coder validate --json
	[[ $(key_of token | jq -r .source) == "linode-cli config" ]]
	echo 'LINODE_TOKEN=filetoken' >.env.secrets
	chmod 600 .env.secrets
	run coder validate --json
	[[ $(key_of token | jq -r .source) == .env.secrets ]]
	LINODE_CLI_TOKEN=clitoken run coder validate --json
	[[ $(key_of token | jq -r .source) == LINODE_CLI_TOKEN ]]
	LINODE_TOKEN=envtoken LINODE_CLI_TOKEN=clitoken run coder validate --json
	[[ $(key_of token | jq -r .source) == LINODE_TOKEN ]]
	[[ $output != *envtoken* && $output != *clitoken* && $output != *filetoken* && $output != *anatoken* ]]
}

@test "config: an empty token is a clear error" {
	LINODE_TOKEN='' run -1 --separate-stderr coder validate
	[[ $stderr == *"LINODE_TOKEN is set but empty"* ]]
}

@test "config: no token at all says how to provide one" {
	run -1 --separate-stderr coder validate
	[[ $stderr == *"no Linode token"*"coder wizard"*"$XDG_CONFIG_HOME/linode-coder/secrets (chmod 600"* ]]
}

@test "config: validate names bad types and ranges with the fix" {
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	export LINODE_TOKEN=t0k3n
	LC_IDLE_TIMEOUT=soon LC_SSH_PORT=70000 LC_PUBLIC=maybe LC_BUDGET_USD=-3 \
		run -1 --separate-stderr coder validate
	[[ $stderr == *"LC_IDLE_TIMEOUT=soon"*"not a duration"* ]]
	[[ $stderr == *"LC_SSH_PORT=70000"*"1 to 65535"* ]]
	[[ $stderr == *"LC_PUBLIC=maybe: write yes or no"* ]]
	[[ $stderr == *"LC_BUDGET_USD=-3"* ]]
	LC_DEADLINE=48h run -1 --separate-stderr coder validate
	[[ $stderr == *"LC_DEADLINE is longer than LC_MAX_DEADLINE"* ]]
	run -0 coder validate
	[[ ${lines[-1]} == "configuration ok: "* ]]
}

@test "config: validate checks the SSH key exists" {
	export LINODE_TOKEN=t0k3n
	run -1 --separate-stderr coder validate
	[[ $stderr == *"LC_SSH_KEY: no public key"*"ssh-keygen -t ed25519"* ]]
}

@test "config: the user's secrets file gives the token in any folder; ./.env.secrets still wins" {
	secrets=$XDG_CONFIG_HOME/linode-coder/secrets
	echo 'LINODE_TOKEN=fromsecrets' >"$secrets"
	chmod 600 "$secrets"
	mkdir -p "$HOME/elsewhere/deeper"
	cd "$HOME/elsewhere/deeper"
	run -1 coder validate --json
	[[ $(key_of token | jq -c '[.ok, .source]') == "[true,\"$secrets\"]" ]]
	printf 'LINODE_TOKEN=fromproject\n' >.env.secrets
	chmod 600 .env.secrets
	run -1 coder validate --json
	[[ $(key_of token | jq -r .source) == .env.secrets ]]
	[[ $output != *fromsecrets* && $output != *fromproject* ]]
}

@test "config: the user's secrets file readable by others is refused, naming chmod 600" {
	secrets=$XDG_CONFIG_HOME/linode-coder/secrets
	echo 'HF_TOKEN=hf_abc123secret' >"$secrets"
	chmod 640 "$secrets"
	run -3 --separate-stderr coder validate
	[[ $stderr == *"$secrets holds secrets"*"chmod 600 $secrets"* ]]
	[[ $stderr != *abc123secret* ]]
	run -3 --separate-stderr lc-sessions reconcile
	[[ $stderr == *"chmod 600"* ]]
}

@test "config: an unknown key in our own config or secrets file is an error with the nearest key" {
	mkdir -p "$HOME/.ssh" && ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	export LINODE_TOKEN=t0k3n
	printf 'LC_REGON=us-sea\nLC_PRESET=qwen-coder-7b\n' >"$XDG_CONFIG_HOME/linode-coder/config"
	run -1 --separate-stderr coder validate
	[[ $stderr == *"LC_REGON: unknown key in $XDG_CONFIG_HOME/linode-coder/config: did you mean LC_REGION?"* ]]
	[[ $output != *"configuration ok"* ]]
	run -1 coder validate --json
	[[ $(key_of LC_REGON | jq -c '[.ok, .level, .suggest, .value]') == '[false,"error","LC_REGION",null]' ]]
	# Nothing near: still an error, pointing at the list of keys.
	printf 'LC_COLOUR_SCHEME=dark\n' >"$XDG_CONFIG_HOME/linode-coder/config"
	run -1 --separate-stderr coder validate
	[[ $stderr == *"LC_COLOUR_SCHEME: unknown key in "*"(coder(1) lists the keys)"* ]]
	# The secrets file is ours too; its values are never shown.
	: >"$XDG_CONFIG_HOME/linode-coder/config"
	printf 'HF_TOKN=hf_s3cr3t\n' >"$XDG_CONFIG_HOME/linode-coder/secrets"
	chmod 600 "$XDG_CONFIG_HOME/linode-coder/secrets"
	run -1 --separate-stderr coder validate
	[[ $stderr == *"HF_TOKN: unknown key in $XDG_CONFIG_HOME/linode-coder/secrets: did you mean HF_TOKEN?"* ]]
	[[ $stderr != *hf_s3cr3t* && $output != *hf_s3cr3t* ]]
	# Spelt right, it is fine.
	printf 'HF_TOKEN=hf_s3cr3t\n' >"$XDG_CONFIG_HOME/linode-coder/secrets"
	run -0 coder validate
}

@test "config: in a project's .env, unknown keys are warnings and the ignored ones are listed" {
	mkdir -p "$HOME/.ssh" && ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	export LINODE_TOKEN=t0k3n
	cat >.env <<-'EOT'
	DATABASE_URL=postgres://u:pw@db/app
	OPENAI_API_KEY=sk-other-program
	LC_IDLE_TIMOUT=10m
	lc_region=us-sea
	LC_REGION=us-ord
	EOT
	run -0 --separate-stderr coder validate
	[[ $stderr == *"warning: LC_IDLE_TIMOUT: not a linode-coder key, ignored (in .env): did you mean LC_IDLE_TIMEOUT?"* ]]
	[[ $stderr == *"warning: lc_region: "*"did you mean LC_REGION?"* ]]
	[[ $output == *"ignored in .env (not linode-coder keys): DATABASE_URL, OPENAI_API_KEY"* ]]
	[[ ${lines[-1]} == "configuration ok: "*"(see the warnings)" ]]
	[[ $output != *pw@db* && $output != *sk-other* && $stderr != *sk-other* ]]
	run -0 coder validate --json
	[[ $(key_of DATABASE_URL | jq -r .level) == ignored ]]
	[[ $(key_of LC_IDLE_TIMOUT | jq -c '[.ok, .level, .suggest]') == '[true,"warning","LC_IDLE_TIMEOUT"]' ]]
}

@test "config: validate says which file each value came from" {
	mkdir -p "$HOME/.ssh" && ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	echo 'LC_REGION=fr-par' >"$XDG_CONFIG_HOME/linode-coder/config"
	echo 'LINODE_TOKEN=s3cr3t-t0k3n' >"$XDG_CONFIG_HOME/linode-coder/secrets"
	chmod 600 "$XDG_CONFIG_HOME/linode-coder/secrets"
	echo 'LC_PRESET=qwen-coder-32b' >.env
	run -0 --separate-stderr coder validate
	assert_line --regexp "^LC_REGION=fr-par +from $XDG_CONFIG_HOME/linode-coder/config\$"
	assert_line --regexp "^token \(set\) +from $XDG_CONFIG_HOME/linode-coder/secrets\$"
	assert_line --regexp '^LC_PRESET=qwen-coder-32b +from \.env$'
	# Defaults only with -v.
	[[ $output != *"LC_IMAGE="* ]]
	[[ $output != *s3cr3t* ]]
}
