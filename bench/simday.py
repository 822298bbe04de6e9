#!/usr/bin/env python3
"""A simulated day for lc-watch: scripted sessions, a compressed clock.

Run by bench/simday.sh, which starts the test sshd, the fake Linode API and
one fake vLLM per session, and passes their coordinates in the environment
(SIM_SESSIONS: a JSON file of {name: {"vllm": URL, "port": vLLM port}},
SIM_TEMPLATE: a session record pointing at the test sshd, API_URL, STATE).

Every simulated minute the script's events for that minute happen (bursts
of short requests, long streams, a container crash, an SSH outage, a user's
extend), then `lc-watch --destroy --ledger` runs with its clock at that
minute (tests/helpers/clock-at, libfaketime), as cron would run it. From each session's script the ideal stop
is known: the first minute the rules (idle 30m, unreachable 15m, deadline,
budget, ready timeout) say to stop, with full knowledge of the activity.
Reported: billed minutes beyond that ideal plus one cron period (goal 0),
and sessions destroyed while active (must be 0).

Laptop closed (SIM_CLOSE=M): cron stops at minute M, and every session's VM
runs its own guard, the fail-safe script lc-cloudinit ships (SIM_FAILSAFE),
every simulated minute under libfaketime, with that session's files (token,
deadline, idle limits) under its own LC_REMOTE_ROOT. SIM_VM_GUARD=off gives
the VM its deadline only. Reported: billed minutes beyond the idle limit
(the first minute the idle, ready or deadline rule says stop; the VM knows
no budget), per session and in all, and of those the minutes billed while
idle past the limit (activity within the margin keeps a VM, and its later
use is not idleness).

Python 3 standard library only.
"""

import json
import os
import random
import subprocess
import sys
import time
import urllib.request

IDLE = 30        # idle_timeout_s / 60
MARGIN = 10      # LC_VM_IDLE_MARGIN_S / 60 (lib/failsafe.h)
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
UNREACH = 15     # LC_UNREACHABLE_TIMEOUT / 60
READY = 30       # LC_READY_TIMEOUT / 60
HOURLY = 0.52


def ctl(url, name, body):
    req = urllib.request.Request(f"{url}/__ctl/{name}",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Session:
    def __init__(self, name, created, kind):
        self.name, self.created, self.kind = name, created, kind
        self.bursts = set()      # minutes with short requests
        self.streams = []        # (start, end): running during [start, end)
        self.crash = None        # minute vLLM restarts (counters drop)
        self.unreachable = None  # minute SSH stops answering for good
        self.extend = None       # minute the user runs lc-sessions extend
        self.deadline = None     # minute of deadline_at
        self.budget = None       # budget_usd
        self.never_ready = False
        self.stopped = None      # (minute, decision) from lc-watch

    def activity(self):
        """Minutes at which a sample sees activity."""
        act = set(self.bursts)
        for a, b in self.streams:
            act.update(range(a, b + 1))     # tokens grow until the end
        if self.crash is not None:
            act.add(self.crash)
        if self.extend is not None:
            act.add(self.extend)
        return act

    def ideal(self, end, vm=False):
        """The first minute the rules, knowing everything, stop it. vm:
        what the VM can know of itself (no budget; it always reaches
        itself), the idle limit its own guard keeps."""
        act = sorted(self.activity())
        for t in range(self.created + 1, end + 1):
            if self.deadline is not None and t >= self.deadline:
                return t, "deadline"
            if self.budget is not None and not vm:
                hours = -(-(t + 1 - self.created) * 60 // 3600)
                if hours * HOURLY > self.budget + 1e-9:
                    return t, "budget"
            if self.never_ready:
                if t - self.created >= READY:
                    return t, "unready"
                continue
            if self.unreachable is not None and t >= self.unreachable \
                    and not vm:
                if t - self.unreachable >= UNREACH:
                    return t, "idle"
                continue
            last = max([a for a in act if a <= t] + [self.created])
            if t - last >= IDLE:
                return t, "idle"
        return None, None


class VM:
    """A session's VM guarding itself: its root (etc/linode-coder and
    var/lib/linode-coder), as lc_failsafe_arm leaves it."""

    def __init__(self, x, linode_id, port, t0, guard):
        self.root = os.path.join(os.environ["SIM_VMROOTS"], x.name)
        self.t0 = t0
        etc = os.path.join(self.root, "etc", "linode-coder")
        os.makedirs(etc, mode=0o700)
        os.makedirs(os.path.join(self.root, "var", "lib", "linode-coder"))
        os.makedirs(os.path.join(self.root, "run"))
        # The bench's sshd: terminals are looked for among its sessions.
        with open(os.path.join(self.root, "run", "sshd.pid"), "w") as f:
            f.write(os.environ["SIM_SSHD_PID"] + "\n")
        deadline = t0 + 60 * (x.deadline if x.deadline else 24 * 60)
        tok = api_token(x.name, deadline)
        files = {
            "failsafe.env": f"LINODE_TOKEN='{tok}'\nLINODE_ID='{linode_id}'"
                            f"\nLC_API_URL='{os.environ['LC_API_URL']}'\n",
            "deadline": f"{deadline}\n",
        }
        if guard:
            files["idle"] = (f"IDLE_TIMEOUT_S={IDLE * 60}\nIDLE_MARGIN_S="
                             f"{MARGIN * 60}\nREADY_TIMEOUT_S={READY * 60}"
                             f"\nVLLM_PORT={port}\n")
            files["last_activity"] = f"{t0 + 60 * x.created}\n"
        for name, text in files.items():
            with open(os.path.join(etc, name), "w") as f:
                f.write(text)
        self.etc = etc

    def push_activity(self, minute):
        """What coder extend pushes: the user's last activity."""
        if os.path.exists(os.path.join(self.etc, "idle")):
            with open(os.path.join(self.etc, "last_activity"), "w") as f:
                f.write(f"{self.t0 + 60 * minute}\n")

    def tick(self, minute):
        """The VM's timer fires; the decision when it deleted itself."""
        at = time.strftime("%Y-%m-%d %H:%M:%S",
                           time.gmtime(self.t0 + minute * 60))
        env = dict(os.environ, LC_REMOTE_ROOT=self.root, TZ="UTC",
                   LD_PRELOAD=FAKETIME, FAKETIME=f"@{at}",
                   FAKETIME_DONT_FAKE_MONOTONIC="1")
        subprocess.run(["sh", os.environ["SIM_FAILSAFE"]], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        var = os.path.join(self.root, "var", "lib", "linode-coder")
        if not os.path.exists(os.path.join(var, "failsafe.deleted")):
            return None
        with open(os.path.join(var, "failsafe.status")) as f:
            return json.load(f)["decision"]


def api_token(name, deadline):
    """A token for the VM, as lc-create makes it (POST /profile/tokens)."""
    body = {"label": f"lc-failsafe-{name}", "scopes": "linodes:read_write",
            "expiry": time.strftime("%Y-%m-%dT%H:%M:%S",
                                    time.gmtime(deadline + 900))}
    req = urllib.request.Request(
        f"{os.environ['LC_API_URL']}/profile/tokens",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {os.environ['LINODE_TOKEN']}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["token"]


def script(seed):
    """Twenty sessions: the named cases, then seeded random mixes."""
    rnd = random.Random(seed)
    s = []

    def new(kind, created=0):
        x = Session(f"d{len(s) + 1:02d}", created, kind)
        s.append(x)
        return x

    x = new("bursts then silence")
    x.bursts = {5, 12, 40}
    x = new("one 2-hour stream", 3)
    x.streams = [(10, 130)]
    new("never used", 2)
    x = new("bursts, a crash, silence")
    x.bursts = set(range(5, 21, 3))
    x.crash = 25
    x = new("unreachable VM", 1)
    x.bursts = {4, 9, 15}
    x.unreachable = 20
    x = new("deadline under load")
    x.streams = [(2, 400)]
    x.deadline = 90
    x = new("budget under load")
    x.bursts = set(range(2, 400, 2))
    x.budget = 1.04
    x = new("bursts every 20m for 4h", 5)
    x.bursts = set(range(10, 245, 20))
    x = new("bursts every 29m", 0)
    x.bursts = set(range(29, 400, 29))
    x = new("an extend, no requests", 4)
    x.extend = 25
    x = new("never ready", 6)
    x.never_ready = True
    x = new("stream, gap of 29m, stream", 0)
    x.streams = [(5, 40), (69, 100)]
    while len(s) < 20:
        x = new("random mix", rnd.randrange(0, 60))
        t = x.created + rnd.randrange(1, 10)
        while t < x.created + 240:
            if rnd.random() < 0.3:
                n = rnd.randrange(3, 60)
                x.streams.append((t, t + n))
                t += n
            else:
                x.bursts.add(t)
            t += rnd.choice([1, 2, 5, 10, 15, 25, 28, 29, 31, 45])
        if rnd.random() < 0.3 and x.bursts:
            x.crash = min(x.bursts) + 1
    return s


def main():
    end = int(os.environ.get("SIM_MINUTES", "360"))
    t0 = int(os.environ["SIM_T0"])
    state = os.environ["STATE"]
    vllms = json.load(open(os.environ["SIM_SESSIONS"]))
    tmpl = json.load(open(os.environ["SIM_TEMPLATE"]))
    dead_port = int(os.environ["SIM_DEAD_PORT"])
    sessions = script(int(os.environ.get("SIM_SEED", "7")))
    by_name = {x.name: x for x in sessions}
    env = dict(os.environ)
    clock_at = os.path.join(os.environ["REPO"], "tests/helpers/clock-at")
    close = os.environ.get("SIM_CLOSE")
    close = int(close) if close not in (None, "") else None
    guard = os.environ.get("SIM_VM_GUARD", "on") != "off"
    vms = {}

    def iso(minute):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ",
                             time.gmtime(t0 + minute * 60))

    def put(x):
        v = vllms[x.name]
        rec = dict(tmpl, name=x.name, linode_id=v["linode_id"],
                   endpoint=f"http://127.0.0.1:{v['port']}/v1",
                   created_at=iso(x.created), ready_at=iso(x.created),
                   last_activity_at=iso(x.created), idle_timeout_s=IDLE * 60,
                   deadline_at=iso(x.deadline if x.deadline else 24 * 60),
                   budget_usd=x.budget, hourly_cost_usd=HOURLY)
        if x.never_ready:
            rec.update(state="booting", ready_at=None, last_activity_at=None)
        path = os.path.join(state, "sessions", f"{x.name}.json")
        with open(path, "w") as f:
            json.dump(rec, f)
        os.chmod(path, 0o600)

    def edit(name, **kw):
        path = os.path.join(state, "sessions", f"{name}.json")
        with open(path) as f:
            rec = json.load(f)
        rec.update(kw)
        with open(path, "w") as f:
            json.dump(rec, f)

    runs, slowest = 0, 0.0
    for m in range(0, end + 1):
        for x in sessions:
            url = vllms[x.name]["vllm"]
            if x.stopped:
                continue
            if m == x.created:
                put(x)
                if close is not None:
                    v = vllms[x.name]
                    vms[x.name] = VM(x, v["linode_id"], v["port"], t0, guard)
                    if x.never_ready:   # its vLLM never answers
                        ctl(url, "set", {"ready_after_s": 10 ** 6})
            if m < x.created:
                continue
            if m in x.bursts:
                ctl(url, "add_tokens", {"prompt": 200, "generation": 50})
            for a, b in x.streams:
                if m == a:
                    ctl(url, "set", {"running": 1})
                if a <= m <= b:
                    ctl(url, "add_tokens", {"generation": 600})
                if m == b:
                    ctl(url, "set", {"running": None})
            if m == x.crash:
                ctl(url, "restart", {})
            if m == x.unreachable:
                edit(x.name, ssh=dict(tmpl["ssh"], port=dead_port))
            if m == x.extend:
                subprocess.run([clock_at, str(t0 + m * 60), "lc-sessions",
                                "extend", x.name], env=env,
                               stdout=subprocess.DEVNULL, check=True)
                if x.name in vms:
                    vms[x.name].push_activity(m)
        if all(x.stopped for x in sessions):
            break
        if close is not None:
            for x in sessions:
                if x.name in vms and not x.stopped:
                    d = vms[x.name].tick(m)
                    if d is not None:
                        x.stopped = (m, d)
            if m >= close:
                continue    # the laptop is closed: no cron
        started = time.monotonic()
        out = subprocess.run([clock_at, str(t0 + m * 60), "lc-watch",
                              "--destroy", "--ledger", "-q", "-t", "5"],
                             env=env, stdout=subprocess.PIPE, text=True)
        slowest = max(slowest, time.monotonic() - started)
        runs += 1
        for line in out.stdout.splitlines():
            ev = json.loads(line)
            x = by_name.get(ev.get("name"))
            if x and ev.get("action") == "destroyed" and not x.stopped:
                x.stopped = (m, ev["decision"])
            elif ev.get("error"):
                print(f"minute {m}: {line}", file=sys.stderr)

    if close is not None:
        return laptop_report(sessions, end, close, guard, runs)
    excess_total, active_kills = 0, 0
    print(f"{'session':8} {'script':28} {'ideal':>12} {'lc-watch':>14} "
          f"{'excess':>6}")
    for x in sessions:
        ideal, why = x.ideal(end)
        got, dec = x.stopped if x.stopped else (None, "kept")
        excess = 0
        if got is not None and ideal is not None:
            excess = max(0, got - (ideal + 1))
        elif got is None and ideal is not None:
            excess = end - (ideal + 1)
        excess_total += excess
        act = x.activity()
        if x.unreachable is not None:
            # What happens on a VM we cannot reach is unknown to all; the
            # rule stops it UNREACH minutes into the outage.
            act = {a for a in act if a >= x.unreachable}
        active_kills += killed_active(x, got, dec, ideal, act)
        row(x, ideal, why, got, dec, excess)
    print(f"\n{runs} lc-watch runs over {end} simulated minutes "
          f"(slowest run {slowest:.2f} s)")
    print(f"billed minutes beyond the ideal stop + one period: {excess_total}"
          " (goal 0)")
    print(f"sessions destroyed while active: {active_kills} (must be 0)")
    return 0 if excess_total == 0 and active_kills == 0 else 1


def killed_active(x, got, dec, ideal, act):
    """1 when the session was stopped as idle while it was active."""
    if got is not None and dec in ("idle", "unready") and \
            (any(got - IDLE < a <= got for a in act) or
             (ideal is not None and got < ideal)):
        print(f"{x.name}: destroyed while active at minute {got}",
              file=sys.stderr)
        return 1
    return 0


def row(x, ideal, why, got, dec, n):
    print(f"{x.name:8} {x.kind:28} "
          f"{(f'{ideal} {why}' if ideal is not None else '-'):>12} "
          f"{(f'{got} {dec}' if got is not None else 'kept'):>14} "
          f"{n:>6}")


def idle_billed(x, got, end):
    """Minutes billed while the rules said stop: idle for IDLE or more,
    not ready READY after creation, or past the deadline."""
    act, n = x.activity(), 0
    for t in range(x.created + 1, got if got is not None else end):
        last = max([a for a in act if a <= t] + [x.created])
        if (x.deadline is not None and t > x.deadline) or \
                (x.never_ready and t - x.created >= READY) or \
                (not x.never_ready and t - last >= IDLE):
            n += 1
    return n


def laptop_report(sessions, end, close, guard, runs):
    """Billed minutes beyond the idle limit with the laptop closed."""
    beyond_total, active_kills, late, idle_total = 0, 0, 0, 0
    print(f"laptop closed at minute {close}; the VM's idle guard "
          f"{'on' if guard else 'off'}")
    print(f"{'session':8} {'script':28} {'idle limit':>12} {'stopped':>14} "
          f"{'beyond':>6}")
    for x in sessions:
        limit, why = x.ideal(end, vm=True)
        got, dec = x.stopped if x.stopped else (None, "kept")
        beyond = 0
        if limit is not None:
            beyond = max(0, (got if got is not None else end) - limit)
        beyond_total += beyond
        idle_total += idle_billed(x, got, end)
        act = x.activity()
        # Activity within the margin keeps the VM, as it should.
        if beyond > MARGIN + 1 and not any(
                limit < a <= limit + MARGIN + 1 for a in act):
            late += 1
        active_kills += killed_active(x, got, dec, limit, act)
        row(x, limit, why, got, dec, beyond)
    print(f"\n{runs} lc-watch runs before the laptop closed; {end} "
          "simulated minutes")
    print(f"billed minutes idle past the idle limit: {idle_total}")
    print(f"billed minutes beyond the idle limit: {beyond_total}"
          f" ({late} sessions more than the {MARGIN}-minute margin + one "
          "minute late with no activity in it)")
    print(f"sessions destroyed while active: {active_kills} (must be 0)")
    if not guard:
        return 0 if active_kills == 0 else 1
    return 0 if late == 0 and active_kills == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
