#!/usr/bin/env bats
# lc-watch guards the account, not only the ledger: lc-create killed at
# every step, damaged records, a read-only or full state directory and a
# second ledger on the same account. After one `lc-watch --destroy` with
# LC_ORPHAN_GRACE=0s nothing of this ledger's is left billing.
load helpers/common
load helpers/lc-api

setup() {
	lc_api_setup '{"provisioning_s":0.1,"booting_s":0.1,"deleting_s":0.1}'
	export LC_ORPHAN_GRACE=0s
	SPEC=$BATS_TEST_TMPDIR/spec
	spec dev >"$SPEC"
}

teardown() {
	if [[ -n ${RO_MOUNT:-} ]]; then umount "$RO_MOUNT" 2>/dev/null || true; fi
	if [[ -n ${TMPFS:-} ]]; then umount "$TMPFS" 2>/dev/null || true; fi
}

spec() {
	jq -nc --arg n "$1" '{name: $n, type: "g2-gpu-rtx4000a1-s"}'
}

# until SECONDS CMD...: run CMD until it succeeds; fail after SECONDS.
until_ok() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < end)) || fail "still not true after ${end}s: $*"
		sleep 0.1
	done
}

instances() { api_state | jq '.instances | length'; }
instances_are() { [[ $(instances) == "$1" ]]; }
firewalls() { api_state | jq '.firewalls | length'; }
stall_taken() { api_state | jq -e '.faults.stall == 0' >/dev/null; }
# logged METHOD PATH-GLOB: the server has answered (or given up on) it.
logged() {
	api_requests | jq -e --arg m "$1" --arg p "$2" \
		'select(.method == $m and (.path | test($p)))' >/dev/null
}
state_is() {
	jq -e --arg s "$1" '.state == $s or .linode_status == $s' \
		"$STATE/sessions/dev.json" >/dev/null 2>&1
}

# create_bg [ARGS...]: lc-create in the background on $SPEC; sets PID.
create_bg() {
	lc-create -q "$@" <"$SPEC" >/dev/null 2>&1 &
	PID=$!
}

held_by_someone() { ! flock -n -x "$STATE/locks/dev.up" true; }

kill_create() {
	kill -9 "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
}

# kill_in METHOD PATH [ARGS...]: lc-create killed while the server holds
# its METHOD PATH request (a glob for the stall, e.g. /linode/instances/*),
# then waits for the server to finish that request.
kill_in() {
	local m=$1 p=$2
	shift 2
	api_ctl stall "$(jq -nc --arg r "$m $p" '{seconds: 2, match: $r}')" >/dev/null
	create_bg "$@"
	until_ok 20 stall_taken
	kill_create
	until_ok 20 logged "$m" "^/v4${p//\*/.*}\$"
}

# Nothing of this ledger left in the account after one lc-watch run.
assert_nothing_bills() {
	run --separate-stderr lc-watch --destroy
	[[ $status == 0 ]] || fail "lc-watch exit $status: $stderr $output"
	[[ $(instances) == 0 ]] || fail "instances left: $(api_state | jq -c '[.instances[] | {id, label, status}]')
$output
$stderr"
	[[ $(firewalls) == 0 ]] || fail "firewalls left: $(api_state | jq -c '[.firewalls[] | {id, label, entities}]')
$output
$stderr"
}

@test "kill -9 of lc-create while the token is checked: nothing made, nothing left" {
	kill_in GET /profile
	assert_nothing_bills
	[[ ! -e $STATE/sessions/dev.json ]]
}

@test "kill -9 of lc-create while it looks for an earlier VM: nothing left" {
	kill_in GET /linode/instances
	assert_nothing_bills
}

@test "kill -9 of lc-create during the firewall POST: the record and the firewall go" {
	kill_in POST /networking/firewalls
	# The record was written before the first POST.
	jq -e '.state == "creating" and .linode_id == null and (.tags | index("lc-owner:" + $o))' \
		--arg o "$(<"$STATE/owner")" "$STATE/sessions/dev.json"
	[[ $(firewalls) == 1 ]]
	assert_nothing_bills
	assert_json_any '.name == "dev" and .orphan == true and .action == "archived"'
	assert_json_any '.firewall_id != null and .action == "destroyed"'
	[[ ! -e $STATE/sessions/dev.json ]]
}

@test "kill -9 of lc-create during the instance POST: the VM it made is found and deleted" {
	kill_in POST /linode/instances
	[[ $(instances) == 1 ]]
	assert_nothing_bills
	assert_json_any '.name == "dev" and .action == "recorded"'
	assert_json_any '.name == "dev" and .decision == "interrupted" and .action == "destroyed"'
}

@test "kill -9 of lc-create after the VM exists, before the answer: deleted" {
	api_ctl create_then_timeout '{"seconds":4}' >/dev/null
	create_bg
	until_ok 20 instances_are 1
	kill_create
	assert_nothing_bills
}

@test "kill -9 of lc-create right after saving the VM: deleted" {
	kill_in GET '/linode/instances/*' -w -u running
	jq -e '.linode_id > 0' "$STATE/sessions/dev.json"
	assert_nothing_bills
	assert_json '.decision == "interrupted" and .action == "destroyed"'
	[[ ! -e $STATE/sessions/dev.json ]]
}

@test "kill -9 of lc-create while the VM provisions, boots, or waits for SSH: deleted" {
	for stage in provisioning booting running; do
		api_ctl reset >/dev/null
		api_ctl clock '{"provisioning_s":3,"booting_s":3,"deleting_s":0.1}' >/dev/null
		create_bg -w -u ssh
		until_ok 30 state_is "$stage"
		kill_create
		assert_nothing_bills
		assert_json '.decision == "interrupted" and .action == "destroyed"'
	done
}

@test "kill -9 of lc-create while it removes the firewall of a failed create: nothing left" {
	api_ctl fail '{"status":400,"count":1,"match":"POST /linode/instances"}' >/dev/null
	kill_in DELETE '/networking/firewalls/*'
	assert_nothing_bills
}

@test "a create under way is left alone, however short the grace" {
	api_ctl clock '{"provisioning_s":6,"booting_s":0.1,"deleting_s":0.1}' >/dev/null
	create_bg -w -u running
	until_ok 20 state_is provisioning
	run -0 --separate-stderr lc-watch --destroy
	assert_json '.name == "dev" and .decision == "keep"'
	[[ $(instances) == 1 ]]
	api_saw 'DELETE /v4/linode/instances/*' 0
	wait "$PID"
	jq -e '.linode_status == "running"' "$STATE/sessions/dev.json"
}

@test "kill -9 of lc-create at random moments, twelve times: one lc-watch run leaves nothing" {
	local i
	api_ctl clock '{"provisioning_s":1,"booting_s":1,"deleting_s":0.1}' >/dev/null
	for i in {0..11}; do
		spec "k$i" >"$SPEC"
		create_bg -w -u running
		sleep "0.$((i * 7 % 10))$i"
		kill_create
	done
	# Let every request the server still works on finish.
	sleep 2
	assert_nothing_bills
	[[ -z $(find "$STATE/sessions" -name '*.json') ]]
}

# ---- damaged records: no crash, the VM is guarded as an orphan ----

damaged() {
	run -0 lc-create -q <"$SPEC"
	ID=$(jq .linode_id "$STATE/sessions/dev.json")
}

@test "a truncated record: reported, and its VM deleted as an orphan" {
	damaged
	head -c 40 "$STATE/sessions/dev.json" >"$BATS_TEST_TMPDIR/t"
	mv "$BATS_TEST_TMPDIR/t" "$STATE/sessions/dev.json"
	run --separate-stderr lc-watch --destroy
	((status == 1)) || fail "exit $status"
	assert_json_any '.error.code == "corrupt_record"'
	assert_json_any ".linode_id == $ID and .orphan == true and .action == \"destroyed\""
	[[ $(instances) == 0 && $(firewalls) == 0 ]]
}

@test "empty, non-object, symlinked and mistyped records: no crash, every VM deleted" {
	local n
	for n in empty notobj link name5 idx; do
		spec "$n" | lc-create -q >/dev/null
	done
	: >"$STATE/sessions/empty.json"
	echo '[1,2]' >"$STATE/sessions/notobj.json"
	cp "$STATE/sessions/link.json" "$BATS_TEST_TMPDIR/elsewhere.json"
	ln -sf "$BATS_TEST_TMPDIR/elsewhere.json" "$STATE/sessions/link.json"
	jq -c '.name = 5' "$STATE/sessions/name5.json" >"$BATS_TEST_TMPDIR/t"
	mv "$BATS_TEST_TMPDIR/t" "$STATE/sessions/name5.json"
	jq -c '.linode_id = "x"' "$STATE/sessions/idx.json" >"$BATS_TEST_TMPDIR/t"
	mv "$BATS_TEST_TMPDIR/t" "$STATE/sessions/idx.json"
	[[ $(instances) == 5 ]]
	run --separate-stderr lc-watch --destroy
	((status == 1)) || fail "exit $status: $stderr"
	[[ $(jq -s '[.[] | select(.error)] | length' <<<"$output") == 5 ]]
	assert_json_any '.error.code == "unsafe_file"'
	[[ $(jq -s '[.[] | select(.orphan and .action == "destroyed")] | length' <<<"$output") == 5 ]]
	[[ $(instances) == 0 && $(firewalls) == 0 ]]
	# Named on the command line too: an error record, never a crash.
	run --separate-stderr lc-watch -n name5
	((status == 1)) || fail "exit $status: $stderr"
	assert_json '.error.code == "corrupt_record"'
	run --separate-stderr lc-destroy name5
	((status == 1 || status == 0)) || fail "exit $status: $stderr"
}

@test "lc-destroy NAME deletes the VM of a damaged record, found in the account" {
	damaged
	echo '{"name":' >"$STATE/sessions/dev.json"
	run -0 --separate-stderr lc-destroy dev
	assert_json '.name == "dev" and .state == "destroyed"'
	[[ $(instances) == 0 && $(firewalls) == 0 ]]
}

# ---- a state directory that cannot be written ----

@test "a read-only state directory: the VM past its deadline is deleted, and the exit says the ledger could not be written" {
	damaged
	jq -c --arg d "$(now_rfc3339 -60)" '.deadline_at = $d' "$STATE/sessions/dev.json" >"$BATS_TEST_TMPDIR/t"
	mv "$BATS_TEST_TMPDIR/t" "$STATE/sessions/dev.json"
	mount --bind "$STATE" "$STATE" 2>/dev/null &&
		mount -o remount,bind,ro "$STATE" 2>/dev/null ||
		skip "cannot make a read-only bind mount here (needs root)"
	RO_MOUNT=$STATE
	! touch "$STATE/x" 2>/dev/null || skip "root writes through a read-only mount here"
	run --separate-stderr lc-watch --destroy
	((status == 1)) || fail "exit $status: $stderr"
	assert_json '.decision == "deadline" and .action == "destroyed" and .error.code == "ledger_write"'
	[[ $stderr == *"VM $ID deleted"*"the ledger could not be written"* ]]
	[[ $(instances) == 0 ]]
	umount "$STATE"
	RO_MOUNT=
	# The next run, with a writable ledger, tidies it from the account.
	run -0 --separate-stderr lc-watch --destroy
	[[ ! -e $STATE/sessions/dev.json ]]
	[[ $(firewalls) == 0 ]]
}

@test "a full state filesystem during lc-create: the VM is deleted at once" {
	TMPFS=$BATS_TEST_TMPDIR/small
	mkdir -p "$TMPFS"
	mount -t tmpfs -o size=64k tmpfs "$TMPFS" 2>/dev/null ||
		skip "cannot mount a tmpfs here (needs root)"
	export XDG_STATE_HOME=$TMPFS
	STATE=$TMPFS/linode-coder
	mkdir -p "$STATE/sessions"
	# The record of intent fits; the space left is filled before the POST
	# of the instance answers, so the save after it cannot be written.
	api_ctl stall '{"seconds":2,"match":"POST /linode/instances"}' >/dev/null
	create_bg
	until_ok 20 stall_taken
	dd if=/dev/zero of="$TMPFS/fill" bs=4k 2>/dev/null || true
	wait "$PID" && fail "lc-create succeeded on a full disk"
	until_ok 20 instances_are 0
	[[ $(firewalls) == 0 ]]
	api_saw 'DELETE /v4/linode/instances/*' 1
}

# ---- two ledgers on one account ----

@test "two ledgers on one account: each guards its own and neither deletes the other's" {
	damaged
	mine=$ID
	# A second machine: its own state directory, so its own owner id.
	other=$BATS_TEST_TMPDIR/other
	XDG_STATE_HOME=$other run -0 lc-create -q < <(spec theirs)
	theirs=$(jq .linode_id "$other/linode-coder/sessions/theirs.json")
	[[ $(<"$other/linode-coder/owner") != "$(<"$STATE/owner")" ]]
	# This ledger loses its record: its VM is an orphan; theirs is not.
	rm "$STATE/sessions/dev.json"
	run -0 --separate-stderr lc-watch --destroy
	assert_json_any ".linode_id == $mine and .orphan == true and .action == \"destroyed\""
	jq -se "[.[] | select(.linode_id == $theirs)] | length == 0" <<<"$output"
	[[ $(api_state | jq -c '[.instances[].id]') == "[$theirs]" ]]
	# And the other ledger, with no record at all, leaves ours alone too.
	spec dev | lc-create -q >/dev/null
	ours=$(jq .linode_id "$STATE/sessions/dev.json")
	rm "$other/linode-coder/sessions/theirs.json"
	XDG_STATE_HOME=$other run -0 --separate-stderr lc-watch --destroy
	[[ $(api_state | jq -c '[.instances[].id]') == "[$ours]" ]]
	# Reconcile names the other machine's VMs, and never deletes them.
	spec two | XDG_STATE_HOME=$other lc-create -q >/dev/null
	run -0 --separate-stderr lc-sessions reconcile
	assert_json '.name == "two" and .state == "foreign" and .owner_id != null'
	[[ $stderr == *"another machine"* ]]
	# coder status on a terminal says so under the table.
	run -0 script -qec "coder status" /dev/null
	[[ $output == *dev* && $output == *"VM "*"(lc-two) belongs to another machine's ledger"* ]]
	# Two deletions in all: each ledger's own orphan, nothing else.
	api_saw 'DELETE /v4/linode/instances/*' 2
}

@test "a session being brought up (its up lock held) is kept past the ready timeout; once nobody holds it, it goes" {
	unset LC_ORPHAN_GRACE
	id=$(api_ctl instance '{"label":"lc-dev","tags":["linode-coder","lc-session:dev"]}' | jq .id)
	put_session dev "$(jq -nc --argjson id "$id" --arg t "$(now_rfc3339 -7200)" --arg d "$(now_rfc3339 7200)" \
		'{state: "provisioning", linode_id: $id, label: "lc-dev", created_at: $t, deadline_at: $d, hourly_cost_usd: 0.52}')"
	# A model switch, say, on a session made two hours ago: it holds the lock.
	mkdir -p "$STATE/locks"
	# (One process holds it: the shell that took it becomes the sleep.)
	(exec 9>"$STATE/locks/dev.up" && flock -s 9 && exec sleep 60) &
	holder=$!
	until_ok 20 held_by_someone
	run -0 --separate-stderr lc-watch --destroy dev
	assert_json '.decision == "keep" and (.reason | test("bringing it up"))'
	api_saw 'DELETE /v4/linode/instances/*' 0
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	run -0 --separate-stderr lc-watch --destroy dev
	assert_json '.decision == "unready" and .action == "destroyed"'
	[[ $(instances) == 0 ]]
}
