# The on-VM deadline (lib/failsafe): the script the VM's timer runs, its
# units, and the token it uses, against the fake Linode API. The script is
# taken from the library itself, so what is tested is what lc-cloudinit
# ships.
# shellcheck disable=SC2016 # $names in single quotes are jq's
bats_require_minimum_version 1.5.0
load helpers/common
load helpers/failsafe

setup_file() {
	start_api_server
	start_vm
	build_failsafe_print
	"$BATS_FILE_TMPDIR/print" script >"$BATS_FILE_TMPDIR/failsafe.sh"
}

teardown_file() {
	stop_vm
	stop_api_server
}

setup() {
	common_setup
	api_reset_log
	api_ctl reset >/dev/null
	vm_reset
	ROOT=$BATS_TEST_TMPDIR/root
	mkdir -p "$ROOT/etc/linode-coder"
	export LC_REMOTE_ROOT=$ROOT
}

# arm SECONDS_FROM_NOW: an instance, a fail-safe token made with the
# library's body, and both files; exports ID.
arm() {
	local body tok
	ID=$(api_ctl instance '{"label":"lc-dev","tags":["linode-coder","lc-session:dev"]}' | jq .id)
	body=$(print body dev "$(($(date +%s) + 14400))")
	tok=$(curl -fsS -X POST -H "Authorization: Bearer $TEST_TOKEN" \
	    -H 'Content-Type: application/json' -d "$body" \
	    "$LC_API_URL/profile/tokens" | jq -r .token)
	print env "$tok" "$ID" "$LC_API_URL" >"$ROOT/etc/linode-coder/failsafe.env"
	echo $(($(date +%s) + $1)) >"$ROOT/etc/linode-coder/deadline"
	api_reset_log
}

@test "failsafe: the script is valid sh and does nothing without its files" {
	run -0 sh -n "$BATS_FILE_TMPDIR/failsafe.sh"
	run -0 sh "$BATS_FILE_TMPDIR/failsafe.sh"
	api_saw 'DELETE /v4/linode/instances/*' 0
}

@test "failsafe: before the deadline the VM is left alone" {
	arm 600
	run -0 sh "$BATS_FILE_TMPDIR/failsafe.sh"
	api_saw 'DELETE /v4/linode/instances/*' 0
}

@test "failsafe: past the deadline the VM deletes itself with its own token" {
	arm -60
	run -0 sh "$BATS_FILE_TMPDIR/failsafe.sh"
	api_saw "DELETE /v4/linode/instances/$ID" 1
	api_requests | jq -e -s '.[0].auth_ok == true'
	api_state | jq -e --argjson id "$ID" '[.instances[] | select(.id == $id)] == [] or
	    (.instances[] | select(.id == $id) | .status == "deleting")'
	# Already gone (404) is done, too.
	run -0 sh "$BATS_FILE_TMPDIR/failsafe.sh"
}

@test "failsafe: past the deadline a group's head deletes its workers, then itself" {
	arm -60
	w1=$(api_ctl instance '{"label":"lc-dev.w1","tags":["linode-coder","lc-session:dev","lc-group:dev"]}' | jq .id)
	w2=$(api_ctl instance '{"label":"lc-dev.w2","tags":["linode-coder","lc-session:dev","lc-group:dev"]}' | jq .id)
	echo "LC_GROUP_IDS='$w1 $w2'" >>"$ROOT/etc/linode-coder/failsafe.env"
	run -0 sh "$BATS_FILE_TMPDIR/failsafe.sh"
	api_saw "DELETE /v4/linode/instances/$w1" 1
	api_saw "DELETE /v4/linode/instances/$w2" 1
	api_saw "DELETE /v4/linode/instances/$ID" 1
}

@test "failsafe: an RFC 3339 deadline works the same" {
	arm 0
	date -u -d @$(($(date +%s) - 5)) +%FT%TZ >"$ROOT/etc/linode-coder/deadline"
	run -0 sh "$BATS_FILE_TMPDIR/failsafe.sh"
	api_saw "DELETE /v4/linode/instances/$ID" 1
}

@test "failsafe: an API failure exits 1 so the timer tries again" {
	arm -60
	api_ctl fail '{"status": 500, "count": 10, "match": "DELETE /linode/instances"}' >/dev/null
	run -1 sh "$BATS_FILE_TMPDIR/failsafe.sh"
	assert_output --partial "HTTP 500"
	refute_output --partial "$(sed -n "s/^LINODE_TOKEN='\(.*\)'/\1/p" "$ROOT/etc/linode-coder/failsafe.env")"
}

@test "failsafe: the token is scoped to linodes and expires 15 minutes after the deadline" {
	run -0 print body dev 1800000000
	assert_json '.label == "lc-failsafe-dev" and .scopes == "linodes:read_write" and
	    .expiry == "2027-01-15T08:15:00Z"'
	run -1 print env "bad'token" 1 "$LC_API_URL"
}

@test "failsafe: the timer runs every minute and catches up after a reboot" {
	run -0 print timer
	assert_line 'OnCalendar=*-*-* *:*:00'
	assert_line 'Persistent=true'
	assert_line 'WantedBy=timers.target'
	run -0 print service
	assert_line 'ExecStart=/usr/local/sbin/linode-coder-failsafe'
	assert_line 'Type=oneshot'
}

@test "failsafe: lc-cloudinit ships the script and units and enables the timer first" {
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
	lc-cloudinit -r -N dev >"$BATS_TEST_TMPDIR/cc.yaml"
	python3 -c 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' \
	    "$BATS_TEST_TMPDIR/cc.yaml" >"$BATS_TEST_TMPDIR/cc.json"
	content() {
		jq -j --arg p "$1" '.write_files[] | select(.path == $p) | .content' \
		    "$BATS_TEST_TMPDIR/cc.json"
	}
	[[ $(content /usr/local/sbin/linode-coder-failsafe) == "$(print script)" ]]
	[[ $(content /etc/systemd/system/linode-coder-failsafe.timer) == "$(print timer)" ]]
	[[ $(content /etc/systemd/system/linode-coder-failsafe.service) == "$(print service)" ]]
	jq -e '.runcmd[0] == ["systemctl", "enable", "--now", "linode-coder-failsafe.timer"]' \
	    "$BATS_TEST_TMPDIR/cc.json"
	# Secrets are pushed over SSH, never in user data.
	run ! grep -q 'failsafe.env' <(jq -r '.write_files[].path' "$BATS_TEST_TMPDIR/cc.json")
}

# armed_session: a session of ours on the fake API and the test VM, in the
# ledger, deadline in 4 hours. Prints its record.
armed_session() {
	local id
	id=$(api_ctl instance '{"label":"lc-dev","tags":["linode-coder","lc-session:dev"]}' | jq .id)
	vm_session_json dev --argjson id "$id" '.linode_id = $id'
}

@test "failsafe: arming mints a linodes-only token and pushes both files, root-only" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	run -0 --separate-stderr print arm <<<"$rec"
	assert_json '.rc == 0 and .failsafe == "armed" and .failsafe_token_id > 0 and
	    .failsafe_deadline_at == .deadline_at'
	api_saw 'POST /v4/profile/tokens' 1
	api_state | jq -e '.tokens | to_entries | map(.value) | .[0].scopes == "linodes:read_write" and
	    .[0].label == "lc-failsafe-dev"'
	d=$VM_ROOT/etc/linode-coder
	[[ $(stat -c %a "$d/failsafe.env") == 600 ]]
	grep -q "^LINODE_ID='$(jq .linode_id <<<"$rec")'$" "$d/failsafe.env"
	[[ $(<"$d/deadline") == "$(date -u -d "$(jq -r .deadline_at <<<"$rec")" +%s)" ]]
	# The token never reaches the record or stdout.
	tok=$(sed -n "s/^LINODE_TOKEN='\(.*\)'/\1/p" "$d/failsafe.env")
	[[ -n $tok && $output != *"$tok"* ]]
}

@test "failsafe: a token that cannot make tokens leaves the watch alone on guard" {
	api_ctl set '{"scopes": "linodes:read_write"}' >/dev/null
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	run -0 --separate-stderr print arm <<<"$rec"
	assert_json '.rc == 1 and .failsafe == "unavailable" and (has("failsafe_token_id") | not)'
	[[ ! -e $VM_ROOT/etc/linode-coder/failsafe.env ]]
}

# token_expiry ID: the expiry the API server keeps for token ID, in epoch
# seconds (the API writes UTC without a zone).
token_expiry() {
	date -u -d "$(api_state | jq -r --argjson id "$1" \
	    '.tokens[] | select(.id == $id) | .expiry')Z" +%s
}

# vm_token: the token in the VM's failsafe.env.
vm_token() {
	sed -n "s/^LINODE_TOKEN='\(.*\)'/\1/p" "$VM_ROOT/etc/linode-coder/failsafe.env"
}

@test "failsafe: the token expires at most 15 minutes after the session's deadline, not the longest one" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	run -0 --separate-stderr print arm <<<"$rec"
	tid=$(jq .failsafe_token_id <<<"$output")
	dl=$(date -u -d "$(jq -r .deadline_at <<<"$rec")" +%s)
	exp=$(token_expiry "$tid")
	((exp > dl && exp <= dl + 900))
	jq -e '.failsafe_expires_at != null' <<<"$output"
	[[ $(date -u -d "$(jq -r .failsafe_expires_at <<<"$output")" +%s) == "$exp" ]]
}

@test "failsafe: an extend makes a token for the new deadline, pushes it, and revokes the old one" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	run -0 --separate-stderr print arm <<<"$rec"
	old=$(jq .failsafe_token_id <<<"$output")
	oldtok=$(vm_token)
	put_session dev "$output"
	lc-sessions extend dev --by 2h >/dev/null
	new=$(jq -r .deadline_at "$STATE/sessions/dev.json")
	api_reset_log
	run -0 --separate-stderr lc-watch
	[[ $(<"$VM_ROOT/etc/linode-coder/deadline") == "$(date -u -d "$new" +%s)" ]]
	jq -e --arg d "$new" '.failsafe_deadline_at == $d' "$STATE/sessions/dev.json"
	tid=$(jq .failsafe_token_id "$STATE/sessions/dev.json")
	((tid != old))
	api_saw 'POST /v4/profile/tokens' 1
	api_saw "DELETE /v4/profile/tokens/$old" 1
	# The old token is gone from the account; the new one expires with
	# the new deadline and is the one on the VM.
	api_state | jq -e --argjson o "$old" '[.tokens[] | select(.id == $o)] == []'
	exp=$(token_expiry "$tid")
	dl=$(date -u -d "$new" +%s)
	((exp > dl && exp <= dl + 900))
	[[ $(vm_token) != "$oldtok" ]]
	api_state | jq -e --arg t "$(vm_token)" --argjson id "$tid" \
	    '.tokens[] | select(.id == $id) | .token == $t'
	# Never the token itself in a record, a log or on stdout/stderr.
	run ! grep -rqF -- "$(vm_token)" "$STATE"
	[[ $output != *"$(vm_token)"* && $stderr != *"$(vm_token)"* ]]
	# Nothing more to do on the next run.
	api_reset_log
	run -0 lc-watch
	api_saw 'POST /v4/profile/tokens' 0
}

@test "failsafe: lc-destroy revokes the token the VM has now, after an extend made a new one" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	run -0 --separate-stderr print arm <<<"$rec"
	put_session dev "$output"
	lc-sessions extend dev --by 2h >/dev/null
	run -0 lc-watch
	tid=$(jq .failsafe_token_id "$STATE/sessions/dev.json")
	api_reset_log
	run -0 lc-destroy dev
	api_saw "DELETE /v4/profile/tokens/$tid" 1
	api_state | jq -e '.tokens == []'
}

@test "failsafe: LC_FAILSAFE=off makes no token and puts nothing on the VM; the record says so" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	LC_FAILSAFE=off run -0 --separate-stderr print arm <<<"$rec"
	assert_json '.rc == 1 and .failsafe == "off" and .vm_idle_guard == "off" and
	    (has("failsafe_token_id") | not)'
	api_saw 'POST /v4/profile/tokens' 0
	api_state | jq -e '.tokens == []'
	[[ ! -e $VM_ROOT/etc/linode-coder/failsafe.env && ! -e $VM_ROOT/etc/linode-coder/deadline ]]
	# lc-watch leaves such a session's VM alone.
	put_session dev "$output"
	lc-sessions extend dev --by 2h >/dev/null
	run -0 lc-watch
	api_saw 'POST /v4/profile/tokens' 0
	[[ ! -e $VM_ROOT/etc/linode-coder/deadline ]]
}

@test "failsafe: coder extend moves the VM's own deadline at once, and says so when it cannot" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	run -0 --separate-stderr print arm <<<"$rec"
	put_session dev "$output"
	old=$(<"$VM_ROOT/etc/linode-coder/deadline")
	# Resetting the idle clock alone leaves the VM's deadline as it is.
	run -0 --separate-stderr coder extend dev
	[[ $(<"$VM_ROOT/etc/linode-coder/deadline") == "$old" && -z $stderr ]]
	run -0 --separate-stderr coder extend dev --by 2h
	new=$(jq -r .deadline_at "$STATE/sessions/dev.json")
	[[ $(<"$VM_ROOT/etc/linode-coder/deadline") == "$(date -u -d "$new" +%s)" ]]
	jq -e --arg d "$new" '.failsafe_deadline_at == $d' "$STATE/sessions/dev.json"
	# Only lc-sessions' record reaches stdout.
	[[ $(json_count) == 1 ]] && assert_json '.name == "dev" and .deadline_at == "'"$new"'"'
	# A VM that cannot be reached: the extend stands, with a warning.
	jq '.ssh.port = 1' "$STATE/sessions/dev.json" >"$BATS_TEST_TMPDIR/r" &&
		cat "$BATS_TEST_TMPDIR/r" >"$STATE/sessions/dev.json"
	run -0 --separate-stderr coder extend dev --by 1h
	[[ $stderr == *"dev: the VM's own deadline is still $new"*"cron runs it every minute"* ]]
	[[ $(<"$VM_ROOT/etc/linode-coder/deadline") == "$(date -u -d "$new" +%s)" ]]
}

@test "failsafe: only a clear LC_FAILSAFE=off takes the VM's guard away, not a typo" {
	export LC_REMOTE_ROOT=$VM_ROOT	# the test VM's "/"
	rec=$(armed_session)
	LC_FAILSAFE=of LC_VM_IDLE_GUARD=of run -0 --separate-stderr print arm <<<"$rec"
	assert_json '.rc == 0 and .failsafe == "armed" and .vm_idle_guard == "on"'
}
