# shellcheck shell=bash
#
# Set-up shared by the tests of the tools that call the Linode API
# (lc-create, lc-destroy, lc-sessions cleanup/reconcile): one fake API
# server per file, a clean account, a quick clock and an SSH public key
# per test.  Load after helpers/common:
#
#   load helpers/common
#   load helpers/lc-api

setup_file() {
	start_api_server
}

teardown_file() {
	stop_api_server
}

# lc_api_setup [CLOCK-JSON]: per-test state; the token is kept.
lc_api_setup() {
	local clock=${1:-'{"provisioning_s":0.1,"booting_s":0.1,"deleting_s":0.2}'}
	KEEP_TOKEN=1 common_setup
	export LINODE_TOKEN=$TEST_TOKEN
	api_ctl reset >/dev/null
	api_ctl clock "$clock" >/dev/null
	api_reset_log
	mkdir -p "$HOME/.ssh"
	echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyForLcTests test@lc" >"$HOME/.ssh/id_ed25519.pub"
	export LC_HTTP_RETRIES=2
}

setup() {
	lc_api_setup ""
}
