#!/usr/bin/env bats
# lc-gpuprobe: nvidia-smi over a real sshd playing the VM, every output
# format from the fixtures, and every health problem.
# shellcheck disable=SC2016 # $ in single quotes is jq's
load helpers/common

setup_file() {
	start_vm
}

teardown_file() {
	stop_vm
}

setup() {
	common_setup
	vm_reset
	SMI="$LC_FIXTURES/nvidia-smi"
	OWN="$REPO/tests/fixtures/nvidia-smi"
}

# probe_vm TABLE [QUERY [APPS]]: the VM's nvidia-smi prints these.
probe_vm() {
	vm_set_file nvidia_smi_fixture "$1"
	if [[ -n ${2:-} ]]; then vm_set_file nvidia_smi_query "$2"; fi
	if [[ -n ${3:-} ]]; then vm_set_file nvidia_smi_apps "$3"; fi
}

@test "lc-gpuprobe: one GPU: table and CSV merged, foreign fields kept" {
	probe_vm "$SMI/01-table-h200-table.txt" "$OWN/csv-1gpu-h200.csv"
	run -0 --separate-stderr lc-gpuprobe < <(vm_session_json dev '.owner = "ana"')
	assert_json '.name == "dev" and .owner == "ana" and .state == "ready"'
	assert_json '.gpus | length == 1'
	assert_json '.gpus[0] == {"index":0,"name":"NVIDIA H200","uuid":"GPU-5a1c3e2b-7d4f-4b8e-9c0a-1f2e3d4c5b6a","pci_bus_id":"00000000:83:00.0","memory_total_mib":143771,"memory_used_mib":0,"utilization_pct":0,"temperature_c":28,"power_w":77.35,"power_limit_w":700,"compute_capability":9}'
	assert_json '.driver_version == "590.48.01" and .cuda_version == "13.1"'
	assert_json '.gpu_health == {"ok": true, "problems": []} and .gpus_expected == 1'
	# The exact query the issue names, over one connection.
	run vm_calls
	assert_line 'nvidia-smi'
	assert_line 'nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,power.limit,compute_cap,driver_version --format=csv,noheader,nounits'
	assert_line --partial 'nvidia-smi --query-compute-apps='
}

@test "lc-gpuprobe: two GPUs from a 2-GPU type" {
	probe_vm "$OWN/table-89col-rtx4000ada-x2.txt" "$OWN/csv-2gpu-l40s.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev '.gpus = 2')
	assert_json '[.gpus[].index] == [0, 1] and .gpus[1].pci_bus_id == "00000000:41:00.0"'
	assert_json '.gpus[1].temperature_c == 52 and .gpus[1].power_w == 108.91'
	assert_json '.gpu_health.ok and .cuda_version == "12.4"'
}

@test "lc-gpuprobe: four GPUs" {
	probe_vm "$OWN/table-h100x4.txt" "$OWN/csv-4gpu-h100.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev '.gpus = 4')
	assert_json '(.gpus | length) == 4 and all(.gpus[]; .name == "NVIDIA H100 80GB HBM3" and .memory_total_mib == 81559)'
	assert_json '.gpu_health.ok and .driver_version == "565.57.01" and .cuda_version == "12.7"'
}

@test "lc-gpuprobe: eight GPUs, each with its own readings" {
	probe_vm "$SMI/06-table-h100x8-table.txt" "$OWN/csv-8gpu-h100.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev '.gpus = 8')
	assert_json '[.gpus[].index] == [0,1,2,3,4,5,6,7]'
	assert_json '[.gpus[].power_w] == [100,82,85,85,84,85,86,75] and .gpus[7].pci_bus_id == "00000000:DB:00.0"'
	assert_json '.gpu_health.ok and .gpus_expected == 8'
}

@test "lc-gpuprobe: a driver without the CSV fields: the table's values stand" {
	probe_vm "$OWN/table-79col-v100x2.txt" "$OWN/error-bad-field.txt"
	vm_set nvidia_smi_query_rc 2
	vm_set nvidia_smi_apps_rc 2
	run -0 lc-gpuprobe < <(vm_session_json dev '.gpus = 2')
	assert_json '(.gpus | length) == 2 and .gpus[0].name == "Tesla V100-SXM2..." and .gpus[0].compute_capability == 7'
	assert_json '.gpus[0].memory_used_mib == 15230 and .gpus[1].utilization_pct == 85 and .gpus[0].power_limit_w == 300'
	assert_json '.driver_version == "440.64.00" and .cuda_version == "10.2"'
	# The compute apps query also failed: the table's processes stand.
	assert_json '.gpu_processes[0] == {"gpu":0,"pid":2912,"type":"C","name":"python3","memory_mib":15219}'
}

@test "lc-gpuprobe: gpu_count: fewer GPUs than the type promises" {
	probe_vm "$SMI/01-table-h200-table.txt" "$OWN/csv-1gpu-h200.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev '.gpus = 2')
	assert_json '.gpu_health.ok == false and [.gpu_health.problems[].code] == ["gpu_count"]'
	assert_json '.gpu_health.problems[0].message | test("shows 1 GPU but the type promises 2")'
}

@test "lc-gpuprobe: a second probe of a probed record still knows the promise" {
	probe_vm "$SMI/01-table-h200-table.txt" "$OWN/csv-1gpu-h200.csv"
	run -0 bash -c 'lc-gpuprobe | lc-gpuprobe' < <(vm_session_json dev '.gpus = 2')
	assert_json '.gpus_expected == 2 and .gpu_health.problems[0].code == "gpu_count"'
}

@test "lc-gpuprobe: hot: a GPU over 90 C" {
	probe_vm "$SMI/02-table-l40s-table.txt" "$OWN/csv-hot.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev)
	assert_json '[.gpu_health.problems[].code] == ["hot"] and .gpus[0].temperature_c == 93'
	assert_json '.gpu_health.problems[0].message | test("GPU 0 is at 93 C, over 90 C")'
}

@test "lc-gpuprobe: memory_full with no vLLM process; none when vLLM holds it" {
	probe_vm "$SMI/02-table-l40s-table.txt" "$OWN/csv-full.csv" "$OWN/apps-stale.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev)
	assert_json '[.gpu_health.problems[].code] == ["memory_full"]'
	assert_json '.gpu_processes == [{"gpu_uuid":"GPU-00000000-0000-0000-0000-000000000000","pid":2211,"name":"/opt/train/stale-job","memory_mib":45800,"gpu":0}]'
	vm_set_file nvidia_smi_apps "$OWN/apps-vllm.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev)
	assert_json '.gpu_health.ok and .gpu_processes[0].name == "VLLM::EngineCore"'
}

@test "lc-gpuprobe: no_driver: the driver is not loaded" {
	vm_set_file nvidia_smi_fixture "$SMI/07-error-err-no-driver-gcp.txt"
	vm_set nvidia_smi_rc 9
	run -0 lc-gpuprobe < <(vm_session_json dev)
	assert_json '.gpus == [] and .driver_version == null and [.gpu_health.problems[].code] == ["no_driver"]'
	# Nothing more is asked of a broken nvidia-smi.
	[[ $(vm_calls | wc -l) == 1 ]]
}

@test "lc-gpuprobe: driver_mismatch: kernel driver and library differ" {
	vm_set_file nvidia_smi_fixture "$SMI/08-error-err-nvml-mismatch-video2x.txt"
	vm_set nvidia_smi_rc 18
	run -0 lc-gpuprobe < <(vm_session_json dev)
	assert_json '[.gpu_health.problems[].code] == ["driver_mismatch"]'
	assert_json '.gpu_health.problems[0].message | test("NVML 565.57")'
}

@test "lc-gpuprobe: nvidia_smi_missing: the remote builder's exit 127 and message" {
	export REMOTE_PATH=/usr/bin:/bin
	run -0 --separate-stderr lc-gpuprobe < <(vm_session_json dev)
	assert_json '[.gpu_health.problems[].code] == ["nvidia_smi_missing"] and .gpus == []'
	[[ $stderr == *"lc: nvidia-smi not found on dev: is the driver installed?"* ]]
	[[ -z $(vm_calls) ]]
}

@test "lc-gpuprobe: gpu_lost: a CSV row of [GPU is lost]" {
	probe_vm "$SMI/02-table-l40s-table.txt" "$OWN/csv-gpu-lost.csv"
	run -0 lc-gpuprobe < <(vm_session_json dev)
	assert_json '[.gpu_health.problems[].code] == ["gpu_lost"] and (.gpus | length) == 1'
	assert_json '.gpu_health.problems[0].message | test("reboot the VM")'
}

@test "lc-gpuprobe --parse: [N/A] and [Not Supported] are null, not errors" {
	run -0 lc-gpuprobe --parse <"$OWN/csv-na.csv"
	assert_json '.gpus[0].power_w == null and .gpus[0].power_limit_w == null and .gpus[0].compute_capability == 6'
}

@test "lc-gpuprobe: --deep adds PCIe, ECC, throttling and topology" {
	probe_vm "$SMI/01-table-h200-table.txt" "$OWN/csv-4gpu-h100.csv"
	sed -e 's/\(        HW Slowdown  *: \)Not Active/\1Active/' \
	    -e '0,/DRAM Uncorrectable  *: N\/A/s//DRAM Uncorrectable                         : 2/' \
	    "$SMI/04-q-text-rtx2080s-q.txt" >"$BATS_TEST_TMPDIR/q.txt"
	vm_set_file nvidia_smi_q "$BATS_TEST_TMPDIR/q.txt"
	vm_set_file nvidia_smi_topo "$OWN/topo-4gpu.txt"
	run -0 lc-gpuprobe --deep < <(vm_session_json dev '.gpus = 4')
	assert_json '.gpus[0].pcie == {"gen_max":3,"gen_current":1,"width_max":16,"width_current":16}'
	assert_json '.gpus[0].ecc_errors.uncorrected_volatile == 2 and .gpus[0].throttle_reasons == ["hw_slowdown"]'
	assert_json '(.gpu_topology | length) == 6 and .gpu_topology[0] == {"gpus":[0,1],"link":"NV18"}'
	assert_json '[.gpu_health.problems[].code] == ["ecc_errors", "throttled"]'
	run vm_calls
	assert_line 'nvidia-smi -q'
	assert_line 'nvidia-smi topo -m'
}

@test "lc-gpuprobe: operands are names looked up in the ledger" {
	probe_vm "$SMI/02-table-l40s-table.txt"
	put_session dev "$(vm_session_json dev)"
	run -0 lc-gpuprobe dev
	assert_json '.name == "dev" and .gpus[0].name == "NVIDIA L40S" and .gpus[0].uuid == null'
	run -1 --separate-stderr lc-gpuprobe nope
	assert_json '.name == "nope" and .error.code == "not_found"'
}

@test "lc-gpuprobe: -T prints a verdict for people and exits 1 when unhealthy" {
	probe_vm "$SMI/02-table-l40s-table.txt" "$OWN/csv-hot.csv"
	run -1 lc-gpuprobe -T < <(vm_session_json dev)
	assert_line --index 0 'dev: UNHEALTHY: 1 GPU, driver 595.80, CUDA 13.2'
	assert_line --partial 'GPU 0  NVIDIA L40S'
	assert_line --partial '! hot: GPU 0 is at 93 C'
	probe_vm "$SMI/02-table-l40s-table.txt" "$OWN/csv-2gpu-l40s.csv"
	run -0 lc-gpuprobe --table < <(vm_session_json dev '.gpus = 2')
	assert_line --index 0 'dev: healthy: 2 GPUs, driver 595.80, CUDA 13.2'
}

@test "lc-gpuprobe: host key mismatch: ssh_hostkey error, exit 1, nothing run" {
	probe_vm "$SMI/01-table-h200-table.txt"
	ssh-keygen -q -t ed25519 -N '' -f "$BATS_TEST_TMPDIR/other" </dev/null
	printf '[127.0.0.1]:%s %s\n' "$VM_PORT" "$(cut -d' ' -f1,2 "$BATS_TEST_TMPDIR/other.pub")" >"$BATS_TEST_TMPDIR/kh"
	run -1 --separate-stderr lc-gpuprobe < <(vm_session_json dev --arg kh "$BATS_TEST_TMPDIR/kh" '.ssh.known_hosts = $kh | .x = 1')
	assert_json '.error.code == "ssh_hostkey" and .error.tool == "lc-gpuprobe" and .x == 1 and (has("gpus") | not) or (.gpus | type) == "number"'
	[[ $stderr == "lc-gpuprobe: dev: "*"does not match the one pinned for this session"*"nothing was run"* ]]
	[[ -z $(vm_calls) ]]
}

@test "lc-gpuprobe: a record that failed upstream passes through untouched" {
	run -1 --separate-stderr lc-gpuprobe <<<'{"name":"dev","error":{"code":"x","message":"m","tool":"lc-create"}}'
	[[ $output == '{"name":"dev","error":{"code":"x","message":"m","tool":"lc-create"}}' ]]
	[[ -z $stderr ]]
}

@test "lc-gpuprobe: a time limit holds when nvidia-smi hangs" {
	vm_set_file nvidia_smi_fixture "$SMI/01-table-h200-table.txt"
	vm_set nvidia_smi_sleep 30
	SECONDS=0
	run -1 --separate-stderr lc-gpuprobe -t 2 < <(vm_session_json dev)
	((SECONDS < 10))
	assert_json '.error.code == "ssh_timeout"'
	[[ $stderr == *"did not finish in time"* ]]
}

# --parse and --local: no sessions.

@test "lc-gpuprobe --parse: every file of the shared fixtures, as labelled" {
	local f n names drv fmt
	while IFS=$'\t' read -r f fmt n names drv; do
		run -0 --separate-stderr lc-gpuprobe --parse <"$SMI/$f"
		assert_ndjson
		[[ $(jq '.gpus | length' <<<"$output") == "$n" ]] ||
			fail "$f: expected $n GPUs: $output"
		# A table cuts long names with "...": a prefix of the label's.
		jq -e --argjson want "$names" '[.gpus[].name] as $got |
		    ($got | length) == ($want | length) and
		    all(range(0; $got | length); . as $i | $got[$i] == $want[$i] or
		    ($got[$i] | endswith("...")) and ($want[$i] |
		    startswith($got[$i] | .[:-3])))' <<<"$output" >/dev/null ||
			fail "$f: expected names $names: $output"
		if [[ -n $drv ]]; then
			[[ $(jq -r .driver_version <<<"$output") == "$drv" ]] ||
				fail "$f: expected driver $drv: $output"
		fi
		if [[ $fmt == error ]]; then
			jq -e '.gpu_health.ok == false' <<<"$output" >/dev/null ||
				fail "$f: an error output must be unhealthy: $output"
		else
			jq -e 'all(.gpus[]; .memory_total_mib > 0)' <<<"$output" >/dev/null ||
				fail "$f: no memory total: $output"
		fi
	done < <(jq -r '.[] | [.file, .format, .gpu_count, (.gpu_names | tojson), .driver_version] | @tsv' "$SMI/labels.json")
}

@test "lc-gpuprobe --parse: CSV without header and units, with both, with header only" {
	run -0 lc-gpuprobe -p <"$OWN/csv-2gpu-l40s.csv"
	local want
	want=$(jq -c '.gpus' <<<"$output")
	run -0 lc-gpuprobe -p <"$OWN/csv-header-units-2gpu.csv"
	[[ $(jq -c '.gpus' <<<"$output") == "$want" ]]
	run -0 lc-gpuprobe -p <"$OWN/csv-header-nounits.csv"
	assert_json '.gpus[0].memory_total_mib == 46068 and .gpus[0].utilization_pct == 9'
}

@test "lc-gpuprobe --parse: the 79-column table of older drivers" {
	run -0 lc-gpuprobe -p <"$OWN/table-79col-v100x2.txt"
	assert_json '[.gpus[].name] == ["Tesla V100-SXM2...", "Tesla V100-SXM2..."] and .gpus[1].temperature_c == 39'
	assert_json '.gpus[0].memory_total_mib == 16160 and .cuda_version == "10.2"'
}

@test "lc-gpuprobe --parse: the 610 driver's KMD and CUDA UMD headers, and a cut name" {
	run -0 lc-gpuprobe -p <"$SMI/10-table-rtx2080s-610-table.txt"
	assert_json '.driver_version == "610.57.04" and .cuda_version == "13.3"'
	assert_json '.gpus[0].name == "NVIDIA GeForce RTX 2080 ..." and .gpus[0].compute_capability == 7.5'
	assert_json '[.gpu_processes[].name] == ["/usr/bin/gnome-shell", "/usr/bin/Xwayland"]'
}

@test "lc-gpuprobe --parse: -q text and XML give the same GPU fields" {
	run -0 lc-gpuprobe -p <"$SMI/04-q-text-rtx2080s-q.txt"
	assert_json '.gpus[0] | .name == "NVIDIA GeForce RTX 2080 SUPER" and .memory_used_mib == 211 and .power_w == 38.89 and .power_limit_w == 250 and .temperature_c == 33'
	assert_json '.driver_version == "610.57.04" and .cuda_version == "13.3"'
	run -0 lc-gpuprobe -p <"$SMI/05-xml-telegraf-tesla-t4.xml"
	assert_json '.gpus[0] | .name == "Tesla T4" and .memory_total_mib == 15360 and .power_w == 26.78 and .pcie.width_current == 8'
	assert_json '.cuda_version == "11.7" and (.gpu_processes | length) == 2'
}

@test "lc-gpuprobe --parse: command not found, no devices, NVML errors, and garbage" {
	run -0 lc-gpuprobe -p <"$OWN/error-command-not-found.txt"
	assert_json '[.gpu_health.problems[].code] == ["nvidia_smi_missing"]'
	run -0 lc-gpuprobe -p <"$OWN/error-no-devices.txt"
	assert_json '.gpus == [] and [.gpu_health.problems[].code] == ["gpu_count"]'
	run -0 lc-gpuprobe -p <<<'Failed to initialize NVML: Unknown Error'
	assert_json '[.gpu_health.problems[].code] == ["nvml_error"]'
	run -0 lc-gpuprobe -p <<<'Unable to determine the device handle for GPU0000:01:00.0: GPU is lost.  Reboot the system to recover this GPU'
	assert_json '[.gpu_health.problems[].code] == ["gpu_lost"]'
	run -0 lc-gpuprobe -p <<<'hello, world'
	assert_json '[.gpu_health.problems[].code] == ["probe_failed"]'
	run -0 lc-gpuprobe -p </dev/null
	assert_json '.gpu_health.problems[0].message == "nvidia-smi printed nothing"'
}

@test "lc-gpuprobe --local: runs nvidia-smi here; missing is nvidia_smi_missing" {
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat >"$BATS_TEST_TMPDIR/bin/nvidia-smi" <<-EOF
	#!/bin/sh
	case "\$1" in --query-gpu=*) cat "$OWN/csv-1gpu-h200.csv" ;; --query-compute-apps=*) ;; *) cat "$SMI/01-table-h200-table.txt" ;; esac
	EOF
	chmod +x "$BATS_TEST_TMPDIR/bin/nvidia-smi"
	PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 lc-gpuprobe --local
	assert_json '.gpus[0].uuid == "GPU-5a1c3e2b-7d4f-4b8e-9c0a-1f2e3d4c5b6a" and .cuda_version == "13.1" and .gpu_processes == []'
	PATH="$REPO/bin:/usr/bin:/bin" run -0 lc-gpuprobe --local
	assert_json '[.gpu_health.problems[].code] == ["nvidia_smi_missing"]'
}

@test "lc-gpuprobe: usage errors exit 2" {
	run -2 lc-gpuprobe --bogus
	run -2 lc-gpuprobe --parse dev
	run -2 lc-gpuprobe -t zero dev
	run -0 lc-gpuprobe --help
	[[ $output == *"usage: lc-gpuprobe [-dlpqTv] [-t seconds] [name ...]"* ]]
}
