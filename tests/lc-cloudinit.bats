#!/usr/bin/env bats
# lc-cloudinit: specs from presets, config, records and flags; the
# cloud-config it renders; the specs it refuses.
# Many strings here are shell text on purpose, not to be expanded:
# shellcheck disable=SC2016
load helpers/common

CC="$BATS_TEST_DIRNAME/helpers/cloudconfig.py"

setup_file() {
	# The Python that runs cloud-init has its schema module and PyYAML.
	PY=$(sed -n '1s/^#! *//p' "$(command -v cloud-init)")
	[[ -x ${PY%% *} ]] || PY=python3
	export PY
	mkdir -p "$BATS_FILE_TMPDIR/ssh"
	ssh-keygen -q -t ed25519 -N '' -C me@laptop -f "$BATS_FILE_TMPDIR/ssh/id_ed25519"
}

setup() {
	common_setup
	mkdir -p "$HOME/.ssh"
	cp "$BATS_FILE_TMPDIR"/ssh/id_ed25519* "$HOME/.ssh/"
}

# render ARGS...: lc-cloudinit --raw ARGS into $BATS_TEST_TMPDIR/cc.yaml,
# read back by PyYAML into cc.json.
render() {
	lc-cloudinit -r "$@" >"$BATS_TEST_TMPDIR/cc.yaml"
	to_json
}

to_json() {
	"$PY" "$CC" json "$BATS_TEST_TMPDIR/cc.yaml" >"$BATS_TEST_TMPDIR/cc.json"
}

# The pinned vLLM image: LC_VLLM_IMAGE's default, as the spec carries it
# (tests/vllm-flags.bats checks the docs name the same).
pinned_image() {
	env -u LC_VLLM_IMAGE lc-cloudinit -q -N pin | jq -r .vllm_image
}

# cc get EXPR | content PATH | vmroot DIR | scripts DIR
cc() {
	case $1 in
	get) jq -r ${3:+"$3"} ".$2" "$BATS_TEST_TMPDIR/cc.json" ;;
	content) jq -j --arg p "$2" '.write_files[] | select(.path == $p) | .content' "$BATS_TEST_TMPDIR/cc.json" ;;
	*) "$PY" "$CC" "$1" "$BATS_TEST_TMPDIR/cc.yaml" "${@:2}" ;;
	esac
}

# vm_run [ARGS]: unpack the rendered files under $VM and run run-vllm
# there with a docker that only records its arguments, one a line.
vm_run() {
	VM="$BATS_TEST_TMPDIR/vm"
	mkdir -p "$VM/bin"
	cc vmroot "$VM"
	printf 'VLLM_API_KEY=k\n' >"$VM/etc/linode-coder/secrets.env"
	cat >"$VM/bin/docker" <<-EOF
		#!/bin/sh
		printf '%s\n' "\$@" >>"$VM/docker.log"
	EOF
	chmod +x "$VM/bin/docker"
	PATH="$VM/bin:$PATH" "$VM/lib/run-vllm"
	# The arguments of "docker run", one a line.
	awk 'f; $0 == "run" { f = 1 }' "$VM/docker.log" >"$VM/run.args"
}

# has_args A B ...: the docker run arguments contain A B ... in a row.
has_args() {
	local -a args want=("$@")
	local i j
	mapfile -t args <"$VM/run.args"
	for ((i = 0; i + $# <= ${#args[@]}; i++)); do
		for ((j = 0; j < $#; j++)); do
			[[ ${args[i + j]} == "${want[j]}" ]] || continue 2
		done
		return 0
	done
	fail "missing '$*' in: ${args[*]}"
}

@test "lc-cloudinit: -N makes one spec from the default preset, with every documented field" {
	run -0 --separate-stderr lc-cloudinit -N dev
	assert_ndjson
	[[ $(json_count) == 1 ]]
	assert_json '.name == "dev" and .preset == "qwen-coder-7b" and .type == "g2-gpu-rtx4000a1-s"'
	assert_json '.model == "Qwen/Qwen2.5-Coder-7B-Instruct" and .served_model_name == "coder" and .gpus == 1'
	assert_json '.region == "us-ord" and .image == "linode/ubuntu24.04" and .public == false and .volume == null'
	assert_json '.endpoint == "http://127.0.0.1:8000/v1" and (.vllm_image | startswith("vllm/vllm-openai:v"))'
	assert_json '.vllm | .tensor_parallel_size == 1 and .max_model_len == 32768 and .min_max_model_len == 8192 and .dtype == "auto" and .tool_call_parser == "hermes" and .enforce_eager == false and .extra_args == [] and .env == {}'
	assert_json '.compute_capability == 8.9 and .vram_gib == 20 and .hourly_usd_estimate == 0.52'
	assert_json '.host_key.type == "ssh-ed25519" and (.host_key.public | test("^AAAA[A-Za-z0-9+/=]+$"))'
	assert_json '.user_data | startswith("#cloud-config\n")'
}

@test "lc-cloudinit: every preset, volume or not, public or not, driver image or not, passes cloud-init schema" {
	local p vol pub img n=0 dir="$BATS_TEST_TMPDIR/all"
	mkdir -p "$dir"
	mapfile -t presets < <(lc-cloudinit -L | jq -r .name)
	[[ ${#presets[@]} -ge 3 ]]
	for p in "${presets[@]}"; do
		for vol in "" "-V models"; do
			for pub in "" "-P"; do
				for img in linode/ubuntu24.04 linode/ubuntu24.04-nvidia; do
					n=$((n + 1))
					# shellcheck disable=SC2086 # vol and pub are flags or nothing
					lc-cloudinit -r -N "s$n" -p "$p" $vol $pub -i "$img" >"$dir/$n.yaml"
				done
			done
		done
	done
	[[ $n -eq $((${#presets[@]} * 8)) ]]
	# The command itself on two, cloud-init's same check on all at once.
	run -0 cloud-init schema --config-file "$dir/1.yaml"
	[[ $output == *"Valid cloud-config: $dir/1.yaml"* ]]
	run -0 cloud-init schema --config-file "$dir/$n.yaml"
	run -0 "$PY" "$CC" schema "$dir"/*.yaml
	[[ $(grep -c '^Valid cloud-config' <<<"$output") -eq $n ]]
}

# units_verify: systemd-analyze verify on the three units; prints what it
# says beyond what this host lacks (the scripts, docker.service).
units_verify() {
	local d="$BATS_TEST_TMPDIR/units" u
	mkdir -p "$d"
	for u in fetch vllm serving; do
		cc content "/etc/systemd/system/linode-coder-$u.service" >"$d/linode-coder-$u.service"
	done
	systemd-analyze verify "$d"/*.service 2>&1 |
		grep -v 'is not executable: No such file\|Unit docker.service not found' || true
}

@test "lc-cloudinit: the unit waits for nvidia-smi and secrets.env, recreates the container and backs off" {
	render -N dev
	unit=$(cc content /etc/systemd/system/linode-coder-vllm.service)
	grep -qx 'ExecStart=/usr/local/lib/linode-coder/start-vllm' <<<"$unit"
	grep -qx 'Restart=on-failure' <<<"$unit"
	grep -q '^RestartSec=' <<<"$unit"
	pre=$(cc content /usr/local/lib/linode-coder/start-vllm)
	grep -q 'wait_for 600 .*driver_ok' <<<"$pre"
	grep -q 'nvidia-smi' <<<"$pre"
	grep -q 'secrets=/etc/linode-coder/secrets.env' <<<"$pre"
	grep -q 'wait_for 1800 .*secrets_ok' <<<"$pre"
	grep -qx 'exec "$lib/run-vllm"' <<<"$pre"
	runv=$(cc content /usr/local/lib/linode-coder/run-vllm)
	grep -q 'docker rm -f vllm' <<<"$runv"
	grep -q -- '--env-file /etc/linode-coder/secrets.env' <<<"$runv"
}

@test "lc-cloudinit: the vLLM unit does not hold up the boot: Type=exec, the waits in its main process" {
	render -N dev -V cache
	unit=$(cc content /etc/systemd/system/linode-coder-vllm.service)
	# cloud-final is ordered after multi-user.target, which waits for
	# every unit it wants to finish starting: no blocking start step.
	grep -qx 'Type=exec' <<<"$unit"
	run ! grep -q '^ExecStartPre=\|^TimeoutStartSec=infinity' <<<"$unit"
	[[ -z $(units_verify) ]] || fail "systemd-analyze verify: $(units_verify)"
}

@test "lc-cloudinit: the container command carries every vLLM argument of the spec, private by default" {
	render -N dev -p qwen-coder-32b -c 16384
	vm_run
	img=$(pinned_image)
	[[ $img == vllm/vllm-openai:v* ]] || fail "pinned image: $img"
	has_args --name vllm --gpus all --ipc=host
	has_args -p 127.0.0.1:8000:8000
	has_args -v "$VM/state/hf:/root/.cache/huggingface"
	has_args --env-file "$VM/etc/linode-coder/secrets.env"
	has_args "$img" Qwen/Qwen2.5-Coder-32B-Instruct-AWQ --served-model-name coder
	has_args --tensor-parallel-size 2
	has_args --gpu-memory-utilization 0.92
	has_args --max-model-len 16384
	has_args --dtype auto
	has_args --quantization awq_marlin
	has_args --kv-cache-dtype auto
	has_args --enable-auto-tool-choice --tool-call-parser hermes
	# The old container is removed first.
	head -n 3 "$VM/docker.log" | tr '\n' ' ' | grep -q '^rm -f vllm '
	[[ $(cat "$VM/state/phase") == load ]]
}

@test "lc-cloudinit: -P and LC_VLLM_PORT bind the port as asked; extra args and env reach the container verbatim" {
	export LC_VLLM_PORT=8123
	render -P -N pub
	vm_run
	has_args -p 0.0.0.0:8123:8000
	run -0 lc-cloudinit -P -N pub
	assert_json '.endpoint == "http://127.0.0.1:8123/v1" and .public == true'
	rm -rf "$VM"
	# Shell metacharacters in a spec stay data: nothing runs.
	echo '{"name":"odd","vllm":{"extra_args":["--chat-template=$(touch '"$BATS_TEST_TMPDIR"'/pwned); x'"'"'y`id`","--x=a: b #c","--y=trailing  ","é ünï"],"env":{"NCCL_P2P_DISABLE":"1 $(touch '"$BATS_TEST_TMPDIR"'/pwned2)"}}}' |
		lc-cloudinit -r >"$BATS_TEST_TMPDIR/cc.yaml"
	to_json
	vm_run
	has_args "--chat-template=\$(touch $BATS_TEST_TMPDIR/pwned); x'y\`id\`" "--x=a: b #c" "--y=trailing  " "é ünï"
	has_args -e "NCCL_P2P_DISABLE=1 \$(touch $BATS_TEST_TMPDIR/pwned2)"
	[[ ! -e $BATS_TEST_TMPDIR/pwned && ! -e $BATS_TEST_TMPDIR/pwned2 ]]
}

@test "lc-cloudinit: only vllm.env and vm.env vary with the spec; every other file is fixed text" {
	render -N a
	cc get write_files | jq -c '.[] | select(.path | test("/(vllm|vm)\\.env$") | not)' >"$BATS_TEST_TMPDIR/a.json"
	render -P -N b -p qwen-coder-14b-rtx6000 -V cache -m Org/Other -c 9000 -g fr-par
	cc get write_files | jq -c '.[] | select(.path | test("/(vllm|vm)\\.env$") | not)' >"$BATS_TEST_TMPDIR/b.json"
	cmp "$BATS_TEST_TMPDIR/a.json" "$BATS_TEST_TMPDIR/b.json"
	cc content /etc/linode-coder/vm.env | grep -qx "LC_VOLUME_DEVICE='/dev/disk/by-id/scsi-0Linode_Volume_cache'"
	cc content /etc/linode-coder/vm.env | grep -qx "LC_SESSION='b'"
}

@test "lc-cloudinit: the pinned host key: private half in user data, public half in host_key and known_hosts form" {
	run -0 lc-cloudinit -N dev
	jq -r .user_data <<<"$output" >"$BATS_TEST_TMPDIR/cc.yaml"
	to_json
	pub=$(jq -r .host_key.public <<<"$output")
	[[ $(cc get ssh_keys.ed25519_public | cut -d' ' -f2) == "$pub" ]]
	[[ $(cc get ssh_keys.ed25519_public | cut -d' ' -f3) == lc-dev ]]
	cc get ssh_keys.ed25519_private >"$BATS_TEST_TMPDIR/hostkey"
	chmod 600 "$BATS_TEST_TMPDIR/hostkey"
	[[ $(ssh-keygen -y -f "$BATS_TEST_TMPDIR/hostkey" | cut -d' ' -f2) == "$pub" ]]
	# A known_hosts line made from the record verifies that key.
	echo "203.0.113.7 $(jq -r '.host_key | "\(.type) \(.public)"' <<<"$output")" >"$BATS_TEST_TMPDIR/known_hosts"
	ssh-keygen -F 203.0.113.7 -f "$BATS_TEST_TMPDIR/known_hosts" | grep -q "$pub"
	[[ $(cc get ssh_deletekeys) == true ]]
	# Every run makes a new key; no key file is left behind.
	run -0 lc-cloudinit -N dev
	[[ $(jq -r .host_key.public <<<"$output") != "$pub" ]]
	[[ -z $(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'lc-cloudinit.*' -user "$(id -u)" -newer "$BATS_TEST_TMPDIR/cc.yaml" 2>/dev/null) ]]
}

@test "lc-cloudinit: the user's key goes in; password and root password logins are off" {
	render -N dev
	[[ $(cc get "ssh_authorized_keys[0]") == "$(cat "$HOME/.ssh/id_ed25519.pub")" ]]
	[[ $(cc get ssh_pwauth) == false ]]
	sshd=$(cc content /etc/ssh/sshd_config.d/10-linode-coder.conf)
	grep -qx 'PasswordAuthentication no' <<<"$sshd"
	grep -qx 'KbdInteractiveAuthentication no' <<<"$sshd"
	grep -qx 'PermitRootLogin prohibit-password' <<<"$sshd"
	grep -qx 'HostKey /etc/ssh/ssh_host_ed25519_key' <<<"$sshd"
}

@test "lc-cloudinit: no secret from the config or the environment reaches user data" {
	printf 'HF_TOKEN=hf_SeCrEtFrOmFiLe123\nLINODE_TOKEN=lin0de-SeCrEt-FiLe\n' >.env.secrets
	chmod 600 .env.secrets
	export HF_TOKEN=hf_SeCrEtFrOmEnV456 LINODE_TOKEN=lin0de-SeCrEt-EnV VLLM_API_KEY=sk-SeCrEt-ApIkEy
	printf 'HF_TOKEN=hf_SeCrEtFrOmCoNfIg789\n' >"$XDG_CONFIG_HOME/linode-coder/config"
	chmod 600 "$XDG_CONFIG_HOME/linode-coder/config"
	run -0 --separate-stderr lc-cloudinit -N dev
	for s in SeCrEt hf_SeCrEt lin0de sk-SeCrEt; do
		[[ $output != *"$s"* && $stderr != *"$s"* ]] || fail "found $s"
	done
	run -0 lc-cloudinit -r -N dev -P -V cache
	[[ $output != *SeCrEt* ]]
}

@test "lc-cloudinit: precedence is preset < config < record < flags" {
	export LC_TYPE=g2-gpu-rtx4000a2-s LC_REGION=fr-par
	run -0 lc-cloudinit -N dev
	assert_json '.type == "g2-gpu-rtx4000a2-s" and .gpus == 2 and .region == "fr-par"'
	run -0 lc-cloudinit <<<'{"name":"dev","region":"jp-osa","type":"g2-gpu-rtx4000a1-m","owner":"ana"}'
	assert_json '.region == "jp-osa" and .type == "g2-gpu-rtx4000a1-m" and .owner == "ana"'
	run -0 lc-cloudinit -g sg-sin-2 <<<'{"name":"dev","region":"jp-osa"}'
	assert_json '.region == "sg-sin-2"'
	printf 'LC_PRESET=qwen-coder-32b\n' >.env
	run -0 lc-cloudinit -N dev
	assert_json '.preset == "qwen-coder-32b" and .vllm.quantization == "awq_marlin"'
	run -0 lc-cloudinit -N dev -p qwen-coder-7b
	assert_json '.preset == "qwen-coder-7b"'
}

@test "lc-cloudinit: operands and stdin records; foreign fields kept; failed records pass untouched" {
	run -0 lc-cloudinit a b
	[[ $(json_count) == 2 ]]
	assert_json_any '.name == "a"'
	assert_json_any '.name == "b"'
	run -1 lc-cloudinit <<<'{"name":"x","linode_id":7,"error":{"code":"http_status","message":"m","tool":"lc-create"}}'
	assert_json '.error.tool == "lc-create" and (has("user_data") | not)'
}

@test "lc-cloudinit: a type whose GPU count does not divide the heads gets the largest TP that does, with a warning" {
	run -0 --separate-stderr lc-cloudinit -N dev -p qwen-coder-14b-rtx6000 -T g1-gpu-rtx6000-3
	assert_json '.vllm.tensor_parallel_size == 2 and .gpus == 3 and (.warnings | length) == 1'
	[[ $stderr == *"dev: warning: tensor parallel size 2 uses only 2 of the 3 GPUs"* ]]
	run -0 --separate-stderr lc-cloudinit -q -N dev -p qwen-coder-14b-rtx6000 -T g1-gpu-rtx6000-3
	[[ -z $stderr ]]
}

@test "lc-cloudinit: a tensor parallel size that cannot divide the heads is tp_heads" {
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","type":"g1-gpu-rtx6000-4","vllm":{"tensor_parallel_size":3}}'
	assert_json '.error.code == "tp_heads" and .error.tool == "lc-cloudinit" and (has("user_data") | not)'
	[[ $stderr == "lc-cloudinit: dev: tensor_parallel_size 3 does not divide the model's 28 attention heads: use 2" ]]
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","vllm":{"tensor_parallel_size":2}}'
	assert_json '.error.code == "tp_gpus"'
	[[ $stderr == *"more than the 1 GPU(s) of g2-gpu-rtx4000a1-s"* ]]
}

@test "lc-cloudinit: bfloat16 on an RTX 6000 is dtype_unsupported; auto becomes half there" {
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","type":"g1-gpu-rtx6000-1","vllm":{"dtype":"bfloat16"}}'
	assert_json '.error.code == "dtype_unsupported"'
	[[ $stderr == *"compute capability 7.5"*"use dtype half"* ]]
	run -0 lc-cloudinit -N dev -T g1-gpu-rtx6000-1
	assert_json '.vllm.dtype == "half" and .compute_capability == 7.5'
	run -0 lc-cloudinit -N dev -p qwen-coder-14b-rtx6000
	assert_json '.vllm.dtype == "half"'
}

@test "lc-cloudinit: a model too large for the type is vram_too_small, naming a type that fits" {
	run -1 --separate-stderr lc-cloudinit -N dev -p qwen-coder-32b -T g2-gpu-rtx4000a1-s
	assert_json '.error.code == "vram_too_small" and .name == "dev"'
	[[ $stderr == *"needs 24 GiB of GPU memory but g2-gpu-rtx4000a1-s gives it 20 GiB"*"use --type g2-gpu-rtx4000a2-s"* ]]
}

@test "lc-cloudinit: unknown preset and unknown type name the choices" {
	run -1 --separate-stderr lc-cloudinit -N dev -p nope
	assert_json '.error.code == "unknown_preset"'
	[[ $stderr == *"no preset named 'nope': use one of "*"qwen-coder-7b"* ]]
	run -1 --separate-stderr lc-cloudinit -N dev -T g9-gpu-nope
	assert_json '.error.code == "unknown_type"'
	[[ $stderr == *"g2-gpu-rtx4000a1-s"* ]]
}

@test "lc-cloudinit: user data over 65,535 bytes is user_data_too_large" {
	big=$(head -c 70000 /dev/zero | tr '\0' x)
	run -1 --separate-stderr lc-cloudinit <<<"{\"name\":\"dev\",\"vllm\":{\"extra_args\":[\"--x=$big\"]}}"
	assert_json '.error.code == "user_data_too_large" and (has("user_data") | not)'
	[[ $stderr == *"over Linode's limit of 65535"* ]]
}

@test "lc-cloudinit: names and words with shell metacharacters are refused" {
	run -1 --separate-stderr lc-cloudinit 'dev;reboot'
	assert_json '.error.code == "bad_name"'
	run -1 --separate-stderr lc-cloudinit -N dev -m 'Org/M$(id)'
	assert_json '.error.code == "bad_spec"'
	[[ $stderr == *"model 'Org/M\$(id)' is not valid"* ]]
	run -1 --separate-stderr lc-cloudinit -N dev -V 'a b'
	assert_json '.error.code == "bad_spec"'
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","served_model_name":"c\"o`d`"}'
	assert_json '.error.code == "bad_spec"'
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","vllm":{"env":{"A;B":"1"}}}'
	assert_json '.error.code == "bad_spec"'
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","vllm":{"extra_args":["a\nb"]}}'
	assert_json '.error.code == "bad_spec"'
	run -1 --separate-stderr lc-cloudinit <<<'{"name":"dev","vllm":{"max_model_len":4096}}'
	assert_json '.error.code == "bad_spec"'
	[[ $stderr == *"below the preset's minimum context 8192"* ]]
}

@test "lc-cloudinit: a missing SSH public key is no_ssh_key, saying how to make one" {
	export LC_SSH_KEY="$HOME/.ssh/nothing"
	run -1 --separate-stderr lc-cloudinit -N dev
	assert_json '.error.code == "no_ssh_key"'
	[[ $stderr == *"ssh-keygen -t ed25519"* ]]
}

@test "lc-cloudinit: the shell the cloud-config runs passes shellcheck" {
	render -N dev -V cache -P
	mkdir "$BATS_TEST_TMPDIR/sh"
	run -0 cc scripts "$BATS_TEST_TMPDIR/sh"
	[[ $output -ge 7 ]]
	run -0 shellcheck -x "$BATS_TEST_TMPDIR"/sh/*
	# vllm.env and vm.env are bash too.
	for f in /etc/linode-coder/vllm.env /etc/linode-coder/vm.env; do
		{ echo '#!/bin/bash'; cc content "$f"; } >"$BATS_TEST_TMPDIR/env.sh"
		shellcheck -e SC2034 "$BATS_TEST_TMPDIR/env.sh"
	done
}

@test "lc-cloudinit: boot order: packages, pull and driver in parallel, one conditional reboot" {
	render -N dev
	prov=$(cc content /usr/local/lib/linode-coder/provision)
	# The download starts (in the background) before the driver install.
	start=$(grep -n 'systemctl start --no-block linode-coder-fetch' <<<"$prov" | cut -d: -f1)
	drv=$(grep -n 'ubuntu-drivers install --gpgpu' <<<"$prov" | cut -d: -f1)
	[[ $start -lt $drv ]]
	grep -q 'nvidia-ctk runtime configure --runtime=docker' <<<"$prov"
	grep -q 'if nvidia-smi >/dev/null 2>&1; then' <<<"$prov"
	[[ $(cc get runcmd -c) == '[["systemctl","enable","--now","linode-coder-failsafe.timer"],["/usr/local/lib/linode-coder/provision"]]' ]]
	[[ $(cc get power_state.mode) == reboot ]]
	[[ $(cc get power_state.condition -c) == '["test","-f","/var/lib/linode-coder/reboot-needed"]' ]]
	unit=$(cc content /etc/systemd/system/linode-coder-vllm.service)
	grep -q '^After=.*linode-coder-fetch.service' <<<"$unit"
	mc=$(cc content /usr/local/lib/linode-coder/mount-cache)
	# Format only when blkid finds nothing; mount with nofail.
	grep -q 'blkid -p "$dev"' <<<"$mc"
	grep -q 'if \[ "$rc" -eq 2 \]; then' <<<"$mc"
	grep -q 'nofail' <<<"$mc"
}

@test "lc-cloudinit: the phase marker moves forward only, except load after serving" {
	render -N dev
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	for p in packages driver reboot pull load serving packages driver; do
		"$VM/lib/phase" "$p"
	done
	[[ $(cat "$VM/state/phase") == serving ]]
	"$VM/lib/phase" load
	[[ $(cat "$VM/state/phase") == load ]]
	[[ $(wc -l <"$VM/state/phase.log") == 9 ]]
	grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z serving$' "$VM/state/phase.log"
}

@test "lc-cloudinit: three phase writers at once, 150 rounds: every call succeeds, the phase never goes back" {
	render -N dev
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	writer() {
		local i p fail=0
		for ((i = 0; i < 150; i++)); do
			for p in "$@"; do "$VM/lib/phase" "$p" || fail=$((fail + 1)); done
		done
		echo "$fail" >"$VM/fail.$BASHPID"
	}
	writer packages driver &
	writer reboot packages &
	writer pull driver &
	wait
	[[ $(cat "$VM"/fail.*) == $'0\n0\n0' ]] || fail "failed calls: $(cat "$VM"/fail.*)"
	[[ $(cat "$VM/state/phase") == pull ]]
	[[ $(wc -l <"$VM/state/phase.log") == 900 ]]
	[[ -z $(find "$VM/state" -name 'phase.??????') ]]
}

@test "lc-cloudinit: -L lists the presets; -H makes a table" {
	run -0 lc-cloudinit -L
	assert_ndjson
	assert_json 'has("name") and has("model") and has("served_model_name") and has("type") and has("gpus") and has("max_model_len") and has("hourly_usd_estimate") and has("vram_gib") and has("vram_need_gib")'
	assert_json_any '.type == "g2-gpu-rtx4000a1-s" and .gpus == 1 and (.model | test("7B"))'
	assert_json_any '(.model | test("32B.*AWQ")) and .gpus <= 2'
	assert_json_any '.type | startswith("g1-gpu-rtx6000")'
	run -0 lc-cloudinit -L -H
	[[ ${lines[0]} == "NAME "*"MODEL"*"TYPE"*"\$/H"*"CONTEXT" ]]
	[[ $output == *"qwen-coder-7b "*"g2-gpu-rtx4000a1-s"*"~0.52"*"32768"* ]]
}

@test "lc-cloudinit: the user's presets.yaml overrides by name and adds; LC_PRESETS replaces the shipped file" {
	cat >"$XDG_CONFIG_HOME/linode-coder/presets.yaml" <<-'EOF'
		types:
		  g2-gpu-rtx4000a1-s: {gpus: 1, gpu: RTX 4000 Ada, vram_gib: 20, compute_capability: 8.9, hourly_usd: 0.61}
		presets:
		  mine:
		    model: Org/Tiny-1B
		    served_model_name: tiny
		    type: g2-gpu-rtx4000a1-s
		    gpus: 1
		    num_attention_heads: 16
		    vram_need_gib: 4
		    vllm: {max_model_len: 8192, dtype: 'auto'}
	EOF
	run -0 lc-cloudinit -L
	assert_json_any '.name == "mine" and .model == "Org/Tiny-1B" and .hourly_usd_estimate == 0.61'
	assert_json_any '.name == "qwen-coder-7b" and .hourly_usd_estimate == 0.61'
	run -0 lc-cloudinit -N dev -p mine
	assert_json '.served_model_name == "tiny" and .vllm.max_model_len == 8192 and .vllm.gpu_memory_utilization == 0.9'
	printf 'presets: {}\ntypes: {}\n' >"$BATS_TEST_TMPDIR/p.yaml"
	LC_PRESETS="$BATS_TEST_TMPDIR/p.yaml" run -0 lc-cloudinit -L
	[[ $(json_count) == 1 ]]
	assert_json '.name == "mine"'
}

@test "lc-cloudinit: a broken presets file is fatal (exit 3) and names the line" {
	printf 'presets:\n  a: [1,\n' >"$BATS_TEST_TMPDIR/bad.yaml"
	LC_PRESETS="$BATS_TEST_TMPDIR/bad.yaml" run -3 --separate-stderr lc-cloudinit -N dev
	[[ $stderr == "lc-cloudinit: $BATS_TEST_TMPDIR/bad.yaml:3:1: "* ]]
	printf 'presets: [a, b]\n' >"$BATS_TEST_TMPDIR/bad.yaml"
	LC_PRESETS="$BATS_TEST_TMPDIR/bad.yaml" run -3 --separate-stderr lc-cloudinit -L
	[[ $stderr == *'"presets:" must be a map'* ]]
	LC_PRESETS="$BATS_TEST_TMPDIR/none.yaml" run -3 --separate-stderr lc-cloudinit -L
	[[ $stderr == *"cannot read $BATS_TEST_TMPDIR/none.yaml"* ]]
	printf 'types:\n  t: {gpus: 1}\npresets:\n  p: {model: a/b, type: t}\n' >"$BATS_TEST_TMPDIR/bad.yaml"
	LC_PRESETS="$BATS_TEST_TMPDIR/bad.yaml" run -1 --separate-stderr lc-cloudinit -N dev -p p
	assert_json '.error.code == "bad_presets"'
	[[ $stderr == *"GPU type t needs gpus and vram_gib"* ]]
}

@test "lc-cloudinit: a model no preset knows is taken unchecked, with a warning" {
	run -0 --separate-stderr lc-cloudinit -N dev -m Org/Unknown-3B
	assert_json '.model == "Org/Unknown-3B" and .num_attention_heads == null and .vllm.quantization == null and .vllm.max_model_len == null'
	[[ $stderr == *"attention heads and memory need are unknown"* ]]
	# A model another preset has borrows that preset's facts.
	run -0 --separate-stderr lc-cloudinit -N dev -T g2-gpu-rtx4000a2-s -m Qwen/Qwen2.5-Coder-32B-Instruct-AWQ
	assert_json '.num_attention_heads == 40 and .vram_need_gib == 24 and .vllm.quantization == "awq_marlin"'
}

@test "lc-cloudinit: -i takes only the images the VM was tested on, unless --image-unchecked" {
	run -2 --separate-stderr lc-cloudinit -N dev -i linode/debian12
	[[ ${stderr_lines[0]} == "lc-cloudinit: image 'linode/debian12' is not one lc-cloudinit was tested with (linode/ubuntu24.04, linode/ubuntu24.04-nvidia): give --image-unchecked to use it" ]]
	[[ -z $output ]]
	run -0 lc-cloudinit -N dev -i linode/debian12 --image-unchecked
	assert_json '.image == "linode/debian12"'
	run -0 lc-cloudinit -U -N dev -i linode/ubuntu22.04
	assert_json '.image == "linode/ubuntu22.04"'
	run -0 lc-cloudinit -N dev -i linode/ubuntu24.04-nvidia
	assert_json '.image == "linode/ubuntu24.04-nvidia"'
}

@test "lc-cloudinit: usage errors exit 2; --help exits 0" {
	run -2 --separate-stderr lc-cloudinit --bogus
	[[ $stderr == *"usage: lc-cloudinit"* ]]
	run -2 --separate-stderr lc-cloudinit -N a b
	run -2 --separate-stderr lc-cloudinit -H -N a
	run -2 --separate-stderr lc-cloudinit -N a -c lots
	run -0 lc-cloudinit --help
	[[ $output == *"--list-presets"* ]]
}

@test "lc-cloudinit: presets YAML is typed as YAML reads it: quoted words stay strings" {
	cat >"$BATS_TEST_TMPDIR/p.yaml" <<-'EOF'
		# comments, flow and block styles, quoting
		types:
		  t1: {gpus: 1, gpu: "X", vram_gib: 20, compute_capability: 8.9, hourly_usd: ~}
		presets:
		  quoted:
		    model: "Org/1.5"
		    served_model_name: 'yes'
		    type: t1
		    num_attention_heads: 16
		    vram_need_gib: 2
		    vllm:
		      max_model_len: 4096
		      tool_call_parser: null
		  plain:
		    model: Org/M
		    served_model_name: yes
		    type: t1
	EOF
	export LC_PRESETS="$BATS_TEST_TMPDIR/p.yaml"
	run -0 lc-cloudinit -N dev -p quoted
	assert_json '.model == "Org/1.5" and .served_model_name == "yes" and .vllm.max_model_len == 4096 and .vllm.tool_call_parser == null and .hourly_usd_estimate == null'
	# The cloud-config quotes what a YAML reader would take for a number.
	jq -r .user_data <<<"$output" >"$BATS_TEST_TMPDIR/cc.yaml"
	grep -q "permissions: '0755'" "$BATS_TEST_TMPDIR/cc.yaml"
	run -1 --separate-stderr lc-cloudinit -N dev -p plain
	assert_json '.error.code == "bad_spec"'
	[[ $stderr == *"served_model_name '(not text)'"* ]]
}

# vm_fakes: stand-ins for what provision runs, under $VM; each logs its
# name and arguments to $VM/calls. The cache is mounted once $VM/mounted
# exists; mount mounts it only when $VM/volume-ok does, and exits 0 either
# way (as mount does with nofail). apt-get "installs" docker, nvidia-ctk
# and nvidia-smi by copying them from $VM/pkg to $VM/installed (on PATH);
# nvidia-smi answers once $VM/loaded exists; modprobe loads the driver
# only when $VM/modprobe-ok exists.
vm_fakes() {
	local f
	mkdir -p "$VM/fakes" "$VM/pkg" "$VM/installed" "$VM/sys/usr/lib/x86_64-linux-gnu"
	for f in systemctl curl ubuntu-drivers modprobe dpkg-query apt-get docker nvidia-ctk nvidia-smi mountpoint mount; do
		printf '#!/bin/bash\necho "%s $*" >>"%s/calls"\n' "$f" "$VM" >"$VM/fakes/$f"
		chmod +x "$VM/fakes/$f"
	done
	cat >>"$VM/fakes/curl" <<-EOF
		while [[ \$# -gt 1 && \$1 != -o ]]; do shift; done
		echo key >"\$2"
	EOF
	cat >>"$VM/fakes/apt-get" <<-EOF
		for p in "\$@"; do
			case \$p in
			docker.io) mv "$VM/pkg/docker" "$VM/installed/" ;;
			nvidia-container-toolkit) mv "$VM/pkg/nvidia-ctk" "$VM/installed/" ;;
			nvidia-utils-570-server) mv "$VM/pkg/nvidia-smi" "$VM/installed/" ;;
			esac
		done
	EOF
	echo "[[ -e $VM/loaded ]]" >>"$VM/fakes/nvidia-smi"
	echo "[[ -e $VM/modprobe-ok ]] && touch $VM/loaded" >>"$VM/fakes/modprobe"
	echo "[[ -e $VM/mounted ]]" >>"$VM/fakes/mountpoint"
	# With nofail in fstab, mount exits 0 when the device is missing.
	echo "[[ -e $VM/volume-ok ]] && touch $VM/mounted; exit 0" >>"$VM/fakes/mount"
	cat >>"$VM/fakes/ubuntu-drivers" <<-EOF
		touch "$VM/sys/usr/lib/x86_64-linux-gnu/libcuda.so.1"
		echo 'libnvidia-compute-570-server install ok installed' >"$VM/dpkg"
	EOF
	echo "cat $VM/dpkg 2>/dev/null" >>"$VM/fakes/dpkg-query"
	echo "echo '{\"runtimes\":{\"nvidia\":{}}}' >$VM/sys/etc/docker/daemon.json" >>"$VM/fakes/nvidia-ctk"
	mv "$VM/fakes/docker" "$VM/fakes/nvidia-ctk" "$VM/fakes/nvidia-smi" "$VM/pkg/"
	mkdir -p "$VM/sys/etc/docker" "$VM/sys/etc/apt/sources.list.d" "$VM/sysbin"
	# Only these from the host, so that its own docker or nvidia-smi, if
	# any, cannot answer.
	for f in bash cat date mv rm touch grep awk sed head sleep seq mkdir flock mktemp chmod; do
		ln -s "$(command -v "$f")" "$VM/sysbin/$f"
	done
	# The interpreter itself (a pyenv shim needs its PATH).
	ln -s "$(python3 -c 'import sys; print(sys.executable)')" "$VM/sysbin/python3"
}

# vm_sh SCRIPT: run one of the VM's scripts with the stand-ins.
vm_sh() {
	PATH="$VM/installed:$VM/fakes:$VM/sysbin" "$VM/lib/$1"
}

provision() {
	vm_sh provision
}

# vm_booted: the stand-ins after the reboot: docker and the driver in
# place, the secrets pushed; sleep only logs how long it was asked for.
vm_booted() {
	VM="$BATS_TEST_TMPDIR/vm"
	rm -rf "$VM"
	cc vmroot "$VM"
	vm_fakes
	mv "$VM/pkg/docker" "$VM/pkg/nvidia-smi" "$VM/installed/"
	touch "$VM/loaded"
	echo VLLM_API_KEY=k >"$VM/etc/linode-coder/secrets.env"
	printf '#!/bin/bash\necho "sleep $*" >>"%s/calls"\n' "$VM" >"$VM/fakes/sleep"
	chmod +x "$VM/fakes/sleep"
}

# sleeps: the back-off delays start-vllm asked for (not wait_for's 2 s).
sleeps() {
	grep '^sleep ' "$VM/calls" | grep -vx 'sleep 2' | cut -d' ' -f2 | tr '\n' ' '
}

@test "lc-cloudinit: a cache volume missing at a later boot leaves the cache on the root disk, noted once; vLLM still starts" {
	render -N dev -V cache
	for u in vllm fetch; do
		unit=$(cc content "/etc/systemd/system/linode-coder-$u.service")
		run ! grep -q '^RequiresMountsFor=' <<<"$unit"
		grep -qx 'After=var-lib-linode\\x2dcoder-hf.mount' <<<"$unit"
	done
	[[ -z $(units_verify) ]] || fail "systemd-analyze verify: $(units_verify)"
	vm_booted
	vm_sh start-vllm
	vm_sh start-vllm
	grep -qx "mount $VM/state/hf" "$VM/calls"
	[[ $(grep -c '^docker run --name vllm ' "$VM/calls") == 2 ]]
	[[ $(grep -c 'reboot (/dev/disk/by-id/scsi-0Linode_Volume_cache missing: the cache is on the root disk)$' "$VM/state/phase.log") == 1 ]]
	# The volume is back: mounted, and a later loss is noted again.
	touch "$VM/volume-ok"
	vm_sh start-vllm
	[[ -e $VM/mounted && ! -e $VM/state/cache-on-root ]]
	rm "$VM/mounted" "$VM/volume-ok"
	vm_sh start-vllm
	[[ $(grep -c 'the cache is on the root disk)$' "$VM/state/phase.log") == 2 ]]
	# Without a volume nothing is mounted.
	render -N dev
	vm_booted
	vm_sh start-vllm
	run ! grep -q '^mount' "$VM/calls"
}

@test "lc-cloudinit: wait-serving polls quietly while vLLM loads: one line in the journal, not one per poll" {
	render -N dev
	vm_booted
	# Nothing listens on port 9: the real curl fails to connect three
	# times, then vLLM answers.
	echo 'VLLM_PORT=9' >>"$VM/etc/linode-coder/vllm.env"
	cat >"$VM/fakes/curl" <<-EOF
		#!/bin/bash
		n=\$(cat "$VM/polls" 2>/dev/null || echo 0)
		echo \$((n + 1)) >"$VM/polls"
		[[ \$n -lt 3 ]] || exit 0
		exec $(command -v curl) "\$@"
	EOF
	run -0 --separate-stderr vm_sh wait-serving
	[[ $stderr == "linode-coder: waiting for vLLM to answer /health" ]] || fail "stderr: $stderr"
	[[ $(cat "$VM/polls") == 4 && $(cat "$VM/state/phase") == serving ]]
}

@test "lc-cloudinit: a restart marks the phase load at once, and logs reboot and pull only the first time" {
	render -N dev
	vm_booted
	vm_sh start-vllm
	vm_sh wait-serving 2>/dev/null
	vm_sh start-vllm
	vm_sh wait-serving 2>/dev/null
	vm_sh start-vllm
	log=$(cut -d' ' -f2- "$VM/state/phase.log")
	[[ $log == $'reboot\npull\nload\nserving\nload (restarting)\nserving\nload (restarting)' ]] || fail "phase.log: $log"
	# It is load before the waits: with the driver gone, start-vllm gives
	# up, and the phase does not claim vLLM serves.
	vm_sh wait-serving 2>/dev/null
	rm "$VM/loaded"
	run -1 vm_sh start-vllm
	[[ $(cat "$VM/state/phase") == load ]]
}

@test "lc-cloudinit: a driver with no answer LC_DRIVER_WAIT_S into the boot is the phase driver_failed, once, with nvidia-smi's line; an answer moves on" {
	render -N dev
	vm_booted
	rm "$VM/loaded"
	printf '%s\n' 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."' \
		'exit 9' >>"$VM/installed/nvidia-smi"
	"$VM/lib/phase" driver
	# Within the limit (3 min by default) the phase stays.
	run -1 vm_sh start-vllm
	[[ $(cat "$VM/state/phase") == driver ]]
	# The boot began 200 s ago.
	echo $(($(date +%s) - 200)) >"$VM/run/boot-start"
	run -1 --separate-stderr vm_sh start-vllm
	[[ $(cat "$VM/state/phase") == driver_failed ]]
	[[ $stderr == *"the NVIDIA driver does not answer 180s into the boot: NVIDIA-SMI has failed"* ]]
	run -1 vm_sh start-vllm
	[[ $(grep -c ' driver_failed (no answer 180s into the boot: NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.)$' "$VM/state/phase.log") == 1 ]]
	# vm.env's LC_DRIVER_WAIT_S sets the limit.
	echo 'LC_DRIVER_WAIT_S=500' >>"$VM/etc/linode-coder/vm.env"
	"$VM/lib/phase" reboot
	run -1 vm_sh start-vllm
	[[ $(cat "$VM/state/phase") == reboot ]]
	# The driver answers at last: the steps go on from driver_failed.
	"$VM/lib/phase" driver_failed "x"
	touch "$VM/loaded"
	sed -i '$d' "$VM/installed/nvidia-smi"
	sed -i '$d' "$VM/installed/nvidia-smi"
	vm_sh start-vllm
	[[ $(cat "$VM/state/phase") == load ]]
}

@test "lc-cloudinit: start-vllm backs off 10 s doubling to 5 min on systemd 252, and starts afresh once vLLM served" {
	render -N dev
	vm_booted
	run ! grep -q '^RestartSteps=\|^RestartMaxDelaySec=' <<<"$(cc content /etc/systemd/system/linode-coder-vllm.service)"
	for _ in 1 2 3 4 5 6 7 8; do
		vm_sh start-vllm
	done
	[[ $(sleeps) == "10 20 40 80 160 300 300 " ]] || fail "slept: $(sleeps)"
	[[ $(grep -c '^docker run --name vllm ' "$VM/calls") == 8 ]]
	# Serving resets the count: the next start does not wait.
	vm_sh wait-serving
	[[ $(cat "$VM/state/phase") == serving ]]
	: >"$VM/calls"
	vm_sh start-vllm
	[[ -z $(sleeps) ]]
	vm_sh start-vllm
	[[ $(sleeps) == "10 " ]]
}

@test "lc-cloudinit: provision on a plain image installs, waits for the fetch, asks for one reboot; a re-run changes nothing" {
	render -N dev
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	vm_fakes
	provision
	grep -qx 'apt-get -y -q -o DPkg::Lock::Timeout=600 update' "$VM/calls"
	grep -q '^apt-get .* install --no-install-recommends docker.io nvidia-container-toolkit' "$VM/calls"
	grep -qx 'nvidia-ctk runtime configure --runtime=docker' "$VM/calls"
	grep -qx 'ubuntu-drivers install --gpgpu' "$VM/calls"
	grep -q '^apt-get .* install --no-install-recommends nvidia-utils-570-server$' "$VM/calls"
	# The fetch starts before the driver; the reboot waits for it.
	[[ $(grep -n 'start --no-block linode-coder-fetch' "$VM/calls" | cut -d: -f1) -lt $(grep -n '^ubuntu-drivers' "$VM/calls" | cut -d: -f1) ]]
	[[ $(tail -n 1 "$VM/calls") == "systemctl start linode-coder-fetch.service" ]]
	[[ -e $VM/state/reboot-needed && $(cat "$VM/state/phase") == driver ]]
	grep -q 'libnvidia-container/stable/deb/$(ARCH) /' "$VM/sys/etc/apt/sources.list.d/nvidia-container-toolkit.list"
	# The reboot: start-vllm finds the driver and the secrets and runs
	# the container.
	touch "$VM/loaded"
	mkdir -p "$VM/etc/linode-coder"
	echo VLLM_API_KEY=k >"$VM/etc/linode-coder/secrets.env"
	vm_sh start-vllm
	[[ ! -e $VM/state/reboot-needed && $(cat "$VM/state/phase") == load ]]
	grep -q ' pull$' "$VM/state/phase.log"
	grep -q '^docker run --name vllm ' "$VM/calls"
	"$VM/lib/phase" serving
	# cloud-init runs the script again: no install, no reboot, same phase.
	: >"$VM/calls"
	provision
	run ! grep -q '^apt-get\|^ubuntu-drivers\|^nvidia-ctk' "$VM/calls"
	[[ ! -e $VM/state/reboot-needed && $(cat "$VM/state/phase") == serving ]]
}

@test "lc-cloudinit: provision on the driver image skips the driver and the reboot" {
	render -N dev -i linode/ubuntu24.04-nvidia
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	vm_fakes
	mv "$VM/pkg/nvidia-smi" "$VM/installed/"
	touch "$VM/loaded"
	provision
	run ! grep -q '^ubuntu-drivers\|nvidia-utils' "$VM/calls"
	grep -qx 'systemctl start --no-block linode-coder-vllm.service' "$VM/calls"
	[[ ! -e $VM/state/reboot-needed && $(cat "$VM/state/phase") == reboot ]]
	grep -q 'driver (already in the image)' "$VM/state/phase.log"
	grep -q 'reboot (not needed)' "$VM/state/phase.log"
}

@test "lc-cloudinit: provision loads a fresh driver with modprobe when it can, and then needs no reboot" {
	render -N dev
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	vm_fakes
	touch "$VM/modprobe-ok"
	provision
	grep -qx 'ubuntu-drivers install --gpgpu' "$VM/calls"
	grep -qx 'modprobe nvidia' "$VM/calls"
	[[ ! -e $VM/state/reboot-needed && $(cat "$VM/state/phase") == reboot ]]
	grep -qx 'systemctl start --no-block linode-coder-vllm.service' "$VM/calls"
}

# fetch_vm: the 32B preset's files under $VM, Docker installed there.
fetch_vm() {
	render -N dev -p qwen-coder-32b
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	vm_fakes
	mv "$VM/pkg/docker" "$VM/installed/"
}

@test "lc-cloudinit: fetch pulls the image and downloads the model inside it, once; a failed download is harmless" {
	fetch_vm
	# The download fails first (a gated model without a token).
	echo '[[ $1 != image ]] || exit 1; [[ $1 != run || -e '"$VM"'/hf-ok ]]' >>"$VM/installed/docker"
	vm_sh fetch
	img=$(pinned_image)
	[[ $img == vllm/vllm-openai:v* ]] || fail "pinned image: $img"
	grep -qxF "docker pull -q $img" "$VM/calls"
	# (the Python program spans lines of the log)
	grep -qF "docker run --rm --name lc-fetch --entrypoint python3 -v $VM/state/hf:/root/.cache/huggingface $img -c " "$VM/calls"
	grep -q 'snapshot_download(sys.argv\[1\]' "$VM/calls"
	grep -q '^ Qwen/Qwen2.5-Coder-32B-Instruct-AWQ$' "$VM/calls"
	[[ ! -e $VM/state/fetched ]]
	# After the reboot it tries again, with the token once it is there.
	touch "$VM/hf-ok"
	echo HF_TOKEN=t >"$VM/etc/linode-coder/secrets.env"
	: >"$VM/calls"
	vm_sh fetch
	grep -q -- "--entrypoint python3 --env-file $VM/etc/linode-coder/secrets.env -v" "$VM/calls"
	[[ $(cat "$VM/state/fetched") == "$img Qwen/Qwen2.5-Coder-32B-Instruct-AWQ" ]]
	: >"$VM/calls"
	vm_sh fetch
	[[ ! -s $VM/calls ]]
}

@test "lc-cloudinit: fetch takes the image and the model from a kept cache, says so, and downloads neither" {
	fetch_vm
	mkdir -p "$VM/state/hf/hub/models--Qwen--Qwen2.5-Coder-32B-Instruct-AWQ/snapshots/abc"
	echo '{}' >"$VM/state/hf/hub/models--Qwen--Qwen2.5-Coder-32B-Instruct-AWQ/snapshots/abc/config.json"
	vm_sh fetch
	img=$(pinned_image)
	grep -qxF "docker image inspect $img" "$VM/calls"
	run ! grep -q 'docker pull\|docker run' "$VM/calls"
	grep -q " note (image from cache: $img)$" "$VM/state/phase.log"
	grep -q ' note (model from cache: Qwen/Qwen2.5-Coder-32B-Instruct-AWQ)$' "$VM/state/phase.log"
	[[ ! -e $VM/state/phase ]]
	[[ $(cat "$VM/state/fetched") == "$img Qwen/Qwen2.5-Coder-32B-Instruct-AWQ" ]]
}

@test "lc-cloudinit: docker-root puts Docker's data-root on the mounted volume, keeps daemon.json's keys, and leaves the root disk's alone" {
	render -N dev -V cache
	VM="$BATS_TEST_TMPDIR/vm"
	cc vmroot "$VM"
	vm_fakes
	grep -q '"$lib/docker-root"' "$VM/lib/provision"
	run -0 cc content /etc/systemd/system/docker.service.d/10-linode-coder.conf
	[[ $output == *'After=var-lib-linode\x2dcoder-hf.mount'* && $output != *Requires* ]]
	echo '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}' >"$VM/sys/etc/docker/daemon.json"
	touch "$VM/mounted"
	vm_sh docker-root
	jq -e --arg r "$VM/state/hf/docker" '."data-root" == $r and .runtimes.nvidia.path == "nvidia-container-runtime"' \
		"$VM/sys/etc/docker/daemon.json"
	[[ -d $VM/state/hf/docker && $(grep -c 'systemctl restart docker' "$VM/calls") == 1 ]]
	vm_sh docker-root
	[[ $(grep -c 'systemctl restart docker' "$VM/calls") == 1 ]]
	# No volume mounted: the root disk's Docker stays as it is.
	echo '{}' >"$VM/sys/etc/docker/daemon.json"
	rm "$VM/mounted"
	vm_sh docker-root
	[[ $(cat "$VM/sys/etc/docker/daemon.json") == '{}' ]]
}

@test "lc-cloudinit: its own output resolves to the same spec; a null TP is derived again for a new type" {
	run -0 lc-cloudinit -N dev -p qwen-coder-32b -V cache -c 16384
	first=$output
	run -0 lc-cloudinit <<<"$first"
	[[ $(jq -cS 'del(.user_data, .host_key)' <<<"$output") == "$(jq -cS 'del(.user_data, .host_key)' <<<"$first")" ]]
	run -0 lc-cloudinit <<<"$(jq -c '.type = "g2-gpu-rtx4000a4-s" | .vllm.tensor_parallel_size = null' <<<"$first")"
	assert_json '.vllm.tensor_parallel_size == 4 and .gpus == 4 and .vram_gib == 80'
}

@test "lc-cloudinit: fields of the wrong kind are bad_spec, never a crash" {
	local r
	for r in '{"vllm":{"tensor_parallel_size":0.5}}' '{"vllm":{"max_model_len":"big"}}' \
		'{"num_attention_heads":0}' '{"volume":5}' '{"public":"yes"}' \
		'{"endpoint":"http://127.0.0.1:99999/v1"}' '{"model":null}' '{"vllm":"fast"}' \
		'{"vllm":{"gpu_memory_utilization":1.5}}' '{"vllm":{"env":["A=1"]}}'; do
		run -1 --separate-stderr lc-cloudinit <<<"$(jq -c '. + {name: "dev"}' <<<"$r")"
		assert_json '.error.code == "bad_spec" and (has("user_data") | not)'
	done
}

@test "lc-cloudinit -R: resolves and checks a running VM's new spec; no config layer, no cloud-config" {
	# A model in the configuration must not replace the preset's.
	LC_MODEL=Some/Other-Model run -0 --separate-stderr lc-cloudinit -R \
		<<<'{"name":"dev","preset":"qwen-coder-7b","type":"g2-gpu-rtx4000a1-s","vllm":{"tensor_parallel_size":null}}'
	assert_json '.name == "dev" and .model == "Qwen/Qwen2.5-Coder-7B-Instruct"'
	assert_json '.vllm.tensor_parallel_size == 1 and .served_model_name == "coder"'
	assert_json 'has("user_data") | not'
	assert_json 'has("host_key") | not'
	# Too large for the type: refused as a record, exit 1.
	run -1 --separate-stderr lc-cloudinit -R \
		<<<'{"name":"dev","preset":"qwen-coder-32b-1gpu","type":"g2-gpu-rtx4000a1-s"}'
	assert_json '.error.code == "vram_too_small"'
	run -2 --separate-stderr lc-cloudinit -R -r dev
	[[ $stderr == *"-R and -r exclude each other"* ]]
}

@test "lc-cloudinit --nodes: head and worker cloud-configs pass cloud-init schema; Ray over the VPC, then one vllm serve pipeline parallel" {
	run -0 --separate-stderr lc-cloudinit -N big -p qwen3-235b-2node
	rec=$output
	jq -e '.nodes == 2 and (.user_data | startswith("#cloud-config\n")) and
		(.user_data_worker | startswith("#cloud-config\n")) and
		.user_data != .user_data_worker' <<<"$rec"
	jq -r .user_data <<<"$rec" >"$BATS_TEST_TMPDIR/head.yaml"
	jq -r .user_data_worker <<<"$rec" >"$BATS_TEST_TMPDIR/worker.yaml"
	run -0 cloud-init schema --config-file "$BATS_TEST_TMPDIR/head.yaml"
	run -0 cloud-init schema --config-file "$BATS_TEST_TMPDIR/worker.yaml"
	for role in head worker; do
		cp "$BATS_TEST_TMPDIR/$role.yaml" "$BATS_TEST_TMPDIR/cc.yaml"
		to_json
		env=$(cc content /etc/linode-coder/vllm.env)
		[[ $env == *"LC_RAY_ROLE='$role'"* && $env == *"LC_RAY_NODES='2'"* &&
			$env == *"LC_RAY_GPUS='8'"* && $env == *"LC_RAY_HEAD='10.64.0.2'"* &&
			$env == *"LC_RAY_IFACE='eth1'"* ]] || fail "$role: $env"
		# vLLM's flags: TP = a node's GPUs, PP = the nodes, the Ray backend.
		[[ $env == *"'--tensor-parallel-size' '4'"* &&
			$env == *"'--pipeline-parallel-size' '2'"* &&
			$env == *"'--distributed-executor-backend' 'ray'"* ]] || fail "$env"
		{ echo '#!/bin/bash'; echo "$env"; } >"$BATS_TEST_TMPDIR/env.sh"
		shellcheck -e SC2034 "$BATS_TEST_TMPDIR/env.sh"
	done
	# run-ray: NCCL and Gloo on the VPC interface, the head's Ray bound to
	# its VPC address, the wait for every node before vllm serve.
	ray=$(cc content /usr/local/lib/linode-coder/run-ray)
	[[ $ray == *'NCCL_SOCKET_IFNAME=$LC_RAY_IFACE'* && $ray == *'GLOO_SOCKET_IFNAME=$LC_RAY_IFACE'* ]]
	[[ $ray == *'ray start --head --node-ip-address="$VLLM_HOST_IP"'* ]]
	[[ $ray == *'--address="$LC_RAY_HEAD:6379"'* ]]
	[[ $ray == *'exec vllm serve "$@"'* ]]
	mkdir "$BATS_TEST_TMPDIR/sh"
	run -0 cc scripts "$BATS_TEST_TMPDIR/sh"
	run -0 shellcheck -x "$BATS_TEST_TMPDIR"/sh/*
	# The one host key for every node.
	run -0 --separate-stderr lc-cloudinit -N one
	jq -e 'has("user_data_worker") | not' <<<"$output"
}
