# shellcheck shell=bash
#
# tests/helpers/boot.bash: "boot" the test VM as cloud-init would, from the
# user data the fake Linode API received: install the session's pinned
# host key from the cloud-config's ssh_keys, then restart sshd on the same
# port. With this, lc-create's ssh stage meets the real pinned key.

# vm_install_host_key USER_DATA_FILE: host key from the cloud-config.
vm_install_host_key() {
	python3 - "$1" "$VM_DIR/host_key" <<-'PY' || return 1
	import sys, yaml
	cfg = yaml.safe_load(open(sys.argv[1]))
	keys = cfg["ssh_keys"]
	with open(sys.argv[2], "w") as f:
	    f.write(keys["ed25519_private"])
	with open(sys.argv[2] + ".pub", "w") as f:
	    f.write(keys["ed25519_public"] + "\n")
	PY
	chmod 600 "$VM_DIR/host_key"
	vm_restart_sshd
}

# vm_halt: the VM is down (sshd stopped) until vm_restart_sshd or
# vm_install_host_key boots it: connections are refused meanwhile.
vm_halt() {
	local pid
	pid=$(<"$VM_DIR/sshd.pid")
	kill "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	return 0
}

# vm_restart_sshd: restart the current VM's sshd with its config and port.
vm_restart_sshd() {
	local pid
	pid=$(<"$VM_DIR/sshd.pid")
	kill "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	: >"$VM_DIR/sshd.log"
	/usr/sbin/sshd -D -f "$VM_DIR/sshd_config" -E "$VM_DIR/sshd.log" \
	    </dev/null >/dev/null 2>&1 3>&- &
	pid=$!
	echo "$pid" >"$VM_DIR/sshd.pid"
	_vm_wait "$pid" "$VM_DIR/sshd.log" \
	    "Server listening on ${VM_ADDRESS:-127.0.0.1} port $VM_PORT." || {
		echo "vm_restart_sshd: sshd did not come back; its log:" >&2
		sed 's/^/  /' "$VM_DIR/sshd.log" >&2
		return 1
	}
}

# vm_boot_when_created [PHASES...]: wait (10 s) for the API to have an
# instance, boot the VM from its user data, then walk the phase file
# through PHASES (default: packages driver reboot pull load).
vm_boot_when_created() {
	local i ud=$BATS_TEST_TMPDIR/user_data.yaml phases=("$@") p
	((${#phases[@]})) || phases=(packages driver reboot pull load)
	for ((i = 0; i < 100; i++)); do
		api_state | jq -er '.instances | map(select(.status != "deleting")) | .[0].user_data // empty' \
			>"$ud" 2>/dev/null && [[ -s $ud ]] && break
		sleep 0.1
	done
	[[ -s $ud ]] || { echo "vm_boot_when_created: no instance" >&2; return 1; }
	vm_install_host_key "$ud" || return 1
	for p in "${phases[@]}"; do
		echo "$p" >"$VM_ROOT/var/lib/linode-coder/phase"
		sleep 0.2
	done
}
