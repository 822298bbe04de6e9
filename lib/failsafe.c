/*
 * failsafe: the VM's own guard (deadline and idleness): its files and its
 * token's body.
 * No I/O here, so lc-cloudinit links it without libcurl or libssh2;
 * arming and revoking are in failsafe_arm.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "failsafe.h"
#include "lc.h"
#include "lctime.h"

const char lc_failsafe_script[] =
    "#!/bin/sh\n"
    "# linode-coder fail-safe: delete this VM at its deadline, or once "
    "idle.\n"
    "# Run every minute by linode-coder-failsafe.timer (from lc-cloudinit).\n"
    "# Reads etc/linode-coder/{deadline,failsafe.env,idle,last_activity} "
    "under\n"
    "# LC_REMOTE_ROOT (default /), all root-only; does nothing until the "
    "first\n"
    "# two exist. Keeps its clock and status in var/lib/linode-coder.\n"
    "# See lc-watch(1), THE VM'S OWN GUARD.\n"
    "set -u\n"
    "root=${LC_REMOTE_ROOT:-/}\n"
    "dir=${root%/}/etc/linode-coder\n"
    "var=${root%/}/var/lib/linode-coder\n"
    "me=linode-coder-failsafe\n"
    "[ -r \"$dir/deadline\" ] && [ -r \"$dir/failsafe.env\" ] || exit 0\n"
    "umask 077\n"
    "mkdir -p \"$var\" || exit 1\n"
    "num() { case ${1:-} in ''|*[!0-9]*) return 1 ;; esac; }\n"
    "iso() { date -u -d \"@$1\" +%Y-%m-%dT%H:%M:%SZ; }\n"
    "now=$(date -u +%s)\n"
    "gone=$(head -n 1 \"$var/failsafe.deleted\" 2>/dev/null)\n"
    "# Deleted already: the VM stops within minutes; after 10, try again.\n"
    "if num \"$gone\" && [ $((now - gone)) -lt 600 ]; then exit 0; fi\n"
    "deadline=$(head -n 1 \"$dir/deadline\")\n"
    "case $deadline in\n"
    "'') exit 0 ;;\n"
    "*[!0-9]*)\n"
    "\tdeadline=$(date -u -d \"$deadline\" +%s 2>/dev/null) || {\n"
    "\t\techo \"$me: bad time in $dir/deadline\" >&2\n"
    "\t\texit 1\n"
    "\t} ;;\n"
    "esac\n"
    "# Sums of vLLM's gauges and token counters (V1 and V0 names, with or\n"
    "# without _total): \"running waiting tokens\", or nothing.\n"
    "metrics() {\n"
    "\tcurl -sS -m 5 \"http://127.0.0.1:$VLLM_PORT/metrics\" 2>/dev/null |\n"
    "\t    awk '/^#/ { next } { n = $1; sub(/\\{.*/, \"\", n); v = $NF }\n"
    "\t    n == \"vllm:num_requests_running\" { r += v; g = 1 }\n"
    "\t    n == \"vllm:num_requests_waiting\" { w += v; g = 1 }\n"
    "\t    n ~ /^vllm:(prompt|generation)_tokens(_total)?$/ { t += v }\n"
    "\t    END { if (g) printf \"%.0f %.0f %.0f\\n\", r, w, t }'\n"
    "}\n"
    "# The terminals of open SSH sessions (sshd's \"user@pts/N\" processes\n"
    "# under the listener in run/sshd.pid, if it runs); ssh -N has none.\n"
    "ttys() {\n"
    "\tlp=$(head -n 1 \"${root%/}/run/sshd.pid\" 2>/dev/null)\n"
    "\tps -e -o pid= -o ppid= -o args= 2>/dev/null | awk -v lp=\"$lp\" '\n"
    "\t{ pp[$1] = $2 }\n"
    "\t$3 ~ /^sshd(-session)?:$/ && $4 ~ /@(.*,)?pts\\// {\n"
    "\t\ts = $4; sub(/^[^@]*@/, \"\", s); tty[$1] = s }\n"
    "\tEND {\n"
    "\t\tif (!(lp in pp)) lp = \"\"\n"
    "\t\tfor (p in tty) {\n"
    "\t\t\tq = p\n"
    "\t\t\tfor (i = 0; lp != \"\" && q != lp && (q in pp) && i < 64; i++)\n"
    "\t\t\t\tq = pp[q]\n"
    "\t\t\tif (lp == \"\" || q == lp) { print tty[p]; exit }\n"
    "\t\t}\n"
    "\t}'\n"
    "}\n"
    "# The idle guard: lc-watch's rule (lib/watch.h), its own clock, the\n"
    "# later of that and the client's time, the limit from $dir/idle.\n"
    "idle_guard() {\n"
    "\tlast=0 tokens=- seen=0 act=\n"
    "\t[ -r \"$var/failsafe.state\" ] && read -r last tokens seen "
    "<\"$var/failsafe.state\"\n"
    "\tnum \"$last\" || last=0\n"
    "\tnum \"$tokens\" || tokens=-\n"
    "\tnum \"$seen\" || seen=0\n"
    "\tpushed=$(head -n 1 \"$dir/last_activity\" 2>/dev/null)\n"
    "\tnum \"$pushed\" || pushed=0\n"
    "\tm=$(metrics)\n"
    "\tif [ -n \"$m\" ]; then\n"
    "\t\t# shellcheck disable=SC2086 # split on purpose\n"
    "\t\tset -- $m\n"
    "\t\tif [ \"$seen\" = 0 ]; then\n"
    "\t\t\tact=\"vLLM answers (first sample)\"\n"
    "\t\telif [ \"$1\" != 0 ] || [ \"$2\" != 0 ]; then\n"
    "\t\t\tact=\"$1 running, $2 waiting\"\n"
    "\t\telif [ \"$tokens\" != - ] && [ \"$3\" -lt \"$tokens\" ]; then\n"
    "\t\t\tact=\"token counters dropped from $tokens to $3 (vLLM "
    "restarted)\"\n"
    "\t\telif [ \"$tokens\" = - ] || [ \"$3\" -gt \"$tokens\" ]; then\n"
    "\t\t\tact=\"$3 tokens served\"\n"
    "\t\tfi\n"
    "\t\tseen=1 tokens=$3\n"
    "\tfi\n"
    "\tif [ -z \"$act\" ] && t=$(ttys) && [ -n \"$t\" ]; then\n"
    "\t\tact=\"an SSH session with a terminal ($t) is open\"\n"
    "\tfi\n"
    "\tif [ -n \"$act\" ] || [ \"$last\" = 0 ]; then last=$now; fi\n"
    "\techo \"$last $tokens $seen\" >\"$var/failsafe.state.tmp\" &&\n"
    "\t    mv \"$var/failsafe.state.tmp\" \"$var/failsafe.state\"\n"
    "\tfrom=$last\n"
    "\t[ \"$pushed\" -gt \"$from\" ] && from=$pushed\n"
    "\tif [ \"$seen\" = 1 ]; then\n"
    "\t\tlimit=$((IDLE_TIMEOUT_S + IDLE_MARGIN_S)) what=\"idle timeout\"\n"
    "\t\tlim0=$IDLE_TIMEOUT_S\n"
    "\telse\n"
    "\t\tlimit=$((READY_TIMEOUT_S + IDLE_MARGIN_S)) what=\"ready timeout\"\n"
    "\t\tlim0=$READY_TIMEOUT_S\n"
    "\tfi\n"
    "\tidle=$((now - from))\n"
    "\tjlast=\"\\\"$(iso \"$from\")\\\"\" jlimit=$limit\n"
    "\tjdel=\"\\\"$(iso $((from + limit)))\\\"\"\n"
    "\tif [ -n \"$act\" ]; then\n"
    "\t\twhy=\"active: $act\"\n"
    "\telif [ \"$idle\" -ge \"$limit\" ]; then\n"
    "\t\tdecision=idle\n"
    "\t\twhy=\"idle $((idle / 60))m: no request, no new tokens, no terminal "
    "(limit $((limit / 60))m: $what $((lim0 / 60))m + margin "
    "$((IDLE_MARGIN_S / 60))m)\"\n"
    "\telse\n"
    "\t\twhy=\"idle $((idle / 60))m of $((limit / 60))m; deletes itself at "
    "$(iso $((from + limit))) if idle\"\n"
    "\tfi\n"
    "}\n"
    "decision=keep jlast=null jlimit=null jdel=null\n"
    "if [ \"$now\" -ge \"$deadline\" ]; then\n"
    "\tdecision=deadline\n"
    "\twhy=\"the deadline $(iso \"$deadline\") has passed\"\n"
    "elif [ -r \"$dir/idle\" ]; then\n"
    "\tIDLE_TIMEOUT_S='' IDLE_MARGIN_S='' READY_TIMEOUT_S='' VLLM_PORT=''\n"
    "\t. \"$dir/idle\"\n"
    "\tif num \"$IDLE_TIMEOUT_S\" && num \"$IDLE_MARGIN_S\" &&\n"
    "\t    num \"$READY_TIMEOUT_S\" && num \"$VLLM_PORT\"; then\n"
    "\t\tidle_guard\n"
    "\telse\n"
    "\t\twhy=\"$dir/idle holds a value that is not a number: the idle guard "
    "is off\"\n"
    "\tfi\n"
    "else\n"
    "\twhy=\"deadline $(iso \"$deadline\"); the idle guard is off\"\n"
    "fi\n"
    "printf '{\"at\":\"%s\",\"decision\":\"%s\",\"reason\":\"%s\",\"deadline_"
    "at\":\"%s\",\"last_activity_at\":%s,\"idle_limit_s\":%s,\"delete_at\":%s"
    "}\\n' \\\n"
    "    \"$(iso \"$now\")\" \"$decision\" \"$why\" \"$(iso \"$deadline\")\" "
    "\"$jlast\" \\\n"
    "    \"$jlimit\" \"$jdel\" >\"$var/failsafe.status.tmp\" &&\n"
    "    mv \"$var/failsafe.status.tmp\" \"$var/failsafe.status\"\n"
    "echo \"$me: $decision: $why\" >&2\n"
    "[ \"$decision\" = keep ] && exit 0\n"
    "LINODE_TOKEN='' LINODE_ID='' LC_API_URL='' LC_GROUP_IDS=''\n"
    ". \"$dir/failsafe.env\"\n"
    "if [ -z \"$LINODE_TOKEN\" ] || [ -z \"$LINODE_ID\" ]; then\n"
    "\techo \"$me: $dir/failsafe.env lacks LINODE_TOKEN or LINODE_ID\" >&2\n"
    "\texit 1\n"
    "fi\n"
    "# The head of a group (lc-create --nodes) takes its workers with it.\n"
    "for id in $LC_GROUP_IDS; do\n"
    "\techo \"$me: deleting the group's node $id\" >&2\n"
    "\tprintf 'header = \"Authorization: Bearer %s\"\\n' \"$LINODE_TOKEN\" |\n"
    "\t    curl -sS -K - -o /dev/null -m 30 -X DELETE \\\n"
    "\t    \"${LC_API_URL:-https://api.linode.com/v4}/linode/instances/$id\" "
    "|| true\n"
    "done\n"
    "echo \"$me: deleting instance $LINODE_ID\" >&2\n"
    "# The token goes to curl on stdin (printf is built in), never in argv.\n"
    "code=$(printf 'header = \"Authorization: Bearer %s\"\\n' "
    "\"$LINODE_TOKEN\" |\n"
    "    curl -sS -K - -o /dev/null -w '%{http_code}' -m 30 -X DELETE \\\n"
    "    \"${LC_API_URL:-https://api.linode.com/v4}/linode/instances/$LINODE_"
    "ID\")\n"
    "case $code in\n"
    "200|204|404)\n"
    "\techo \"$now\" >\"$var/failsafe.deleted\"\n"
    "\texit 0 ;;\n"
    "esac\n"
    "echo \"$me: the API answered HTTP $code; trying again in a minute\" "
    ">&2\n"
    "exit 1\n"
;

const char lc_failsafe_service[] =
    "[Unit]\n"
    "Description=linode-coder fail-safe: delete this VM at its deadline or "
    "when idle\n"
    "Wants=network-online.target\n"
    "After=network-online.target\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    "ExecStart=" LC_FAILSAFE_SCRIPT "\n";

const char lc_failsafe_timer[] =
    "[Unit]\n"
    "Description=linode-coder fail-safe: check the VM every minute\n"
    "\n"
    "[Timer]\n"
    "OnBootSec=30s\n"
    "OnCalendar=*-*-* *:*:00\n"
    "AccuracySec=5s\n"
    "Persistent=true\n"
    "\n"
    "[Install]\n"
    "WantedBy=timers.target\n";

jv
lc_failsafe_token_body(const char *name, time_t deadline)
{
	char label[64], ts[32];

	snprintf(label, sizeof(label), "lc-failsafe-%s", name);
	lc_time_fmt(deadline + LC_FAILSAFE_GRACE_S, ts, sizeof(ts));
	return jv_object_set(jv_object_set(jv_object_set(jv_object(),
	    jv_string("label"), jv_string(label)), jv_string("scopes"),
	    jv_string("linodes:read_write")), jv_string("expiry"),
	    jv_string(ts));
}

/* One NAME='value' line; values with a quote or a newline are refused. */
static int
env_line(struct lc_buf *b, const char *key, const char *val)
{
	if (strpbrk(val, "'\n\r") != NULL)
		return -1;
	return lc_buf_printf(b, "%s='%s'\n", key, val);
}

char *
lc_failsafe_env(const char *token, double linode_id, const char *api_url)
{
	struct lc_buf b = LC_BUF_INIT;
	char id[32];

	snprintf(id, sizeof(id), "%.0f", linode_id);
	if (lc_buf_addstr(&b, "# linode-coder fail-safe (root only)\n") ==
	    -1 || env_line(&b, "LINODE_TOKEN", token) == -1 ||
	    env_line(&b, "LINODE_ID", id) == -1 ||
	    (api_url != NULL && env_line(&b, "LC_API_URL", api_url) == -1)) {
		if (b.data != NULL)
			memset(b.data, 0, b.cap);
		lc_buf_free(&b);
		return NULL;
	}
	return b.data;
}

char *
lc_failsafe_deadline(time_t deadline, char *buf, size_t len)
{
	snprintf(buf, len, "%lld\n", (long long)deadline);
	return buf;
}

char *
lc_failsafe_idle(long idle_s, long ready_s, int port, char *buf, size_t len)
{
	snprintf(buf, len, "IDLE_TIMEOUT_S=%ld\nIDLE_MARGIN_S=%d\n"
	    "READY_TIMEOUT_S=%ld\nVLLM_PORT=%d\n", idle_s,
	    LC_VM_IDLE_MARGIN_S, ready_s, port);
	return buf;
}

time_t
lc_failsafe_activity(jv rec)
{
	static const char *const keys[] = { "last_activity_at", "ready_at",
	    "created_at" };
	time_t best = 0, t;
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (lc_str(rec, keys[i]) != NULL &&
		    lc_time_parse(lc_str(rec, keys[i]), &t) == 0 && t > best)
			best = t;
	return best;
}
