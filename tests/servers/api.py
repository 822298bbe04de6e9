#!/usr/bin/env python3
"""A fake Linode API v4 for the bats tests.

    python3 tests/servers/api.py --dir DIR [--port 0] [--token TOKEN]
                                 [--latency-ms N] [--fixtures PATH]

Listens on 127.0.0.1 and answers the endpoints linode-coder uses with the
shapes recorded from the real API (../shared/fixtures/linode/).  Requests are
checked the way the real API checks them (labels, regions, plans, user data,
the request schemas of openapi.yaml), instances move through their states on
a clock, and the server can be told to fail, stall or send garbage through
a small control API under /__ctl/ (no auth).

Files in DIR: `pid`, `port` (written last, by rename: its presence means the
server is listening), `requests.jsonl` (one line per API request, written
before the response is sent, so a test can read it as soon as the client
exits).  The token is never written to DIR.  (tests/helpers/api.bash also
sends the server's stderr, normally empty, to DIR/server.log.)

Python 3 standard library only; jsonschema is used when importable.
"""

import argparse
import base64
import binascii
import copy
import fnmatch
import hashlib
import ipaddress
import json
import math
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

DEFAULT_TOKEN = "test-token-0123456789abcdef"
SPEC_VERSION = "4.189.0"

# Settings the control API changes (set, clock, latency); reset restores
# them.  The *_s entries are the durations of the status timelines.
DEFAULT_CONFIG = {
    "scopes": "*",
    "ipv4": ["127.0.0.1"],
    "provisioning_s": 0.3,
    "booting_s": 0.3,
    "deleting_s": 0.3,
    "volume_s": 0.3,
    "latency_ms": 0,
    "strict": True,          # request-schema checks on create bodies
}

# Statuses in which the real API refuses power actions with "Linode busy.".
BUSY = {"provisioning", "booting", "rebooting", "shutting_down", "deleting",
        "migrating", "rebuilding", "cloning", "restoring", "resizing"}

GONE = "<gone>"  # pseudo status: the instance has been deleted for good

# X-RateLimit-Limit per endpoint, as seen in recorded traffic
# (reference/linode-api.md section 10).  Reported, never enforced.
RATE_LIMITS = [
    ("POST", "/linode/instances", 20),
    ("POST", "/volumes", 100),
    ("GET", "/linode/types", 400),
    ("GET", "/profile", 800),
]
RATE_DEFAULT = 1840
RATE_WINDOW_S = 60

# RTX 4000 Ada plans (reference/linode-api.md section 6); the recorded type
# list predates them.  vCPU, RAM and prices are from the reference; disk,
# transfer and network_out are not documented there and are placeholders.
# (id, label, cards, vcpus, memory GB, $/h, $/mo, disk GB)
ADA_TYPES = [
    ("g2-gpu-rtx4000a1-s", "RTX4000 Ada x1 Small", 1, 4, 16, 0.52, 350, 500),
    ("g2-gpu-rtx4000a1-m", "RTX4000 Ada x1 Medium", 1, 8, 32, 0.67, 446, 500),
    ("g2-gpu-rtx4000a1-l", "RTX4000 Ada x1 Large", 1, 16, 64, 0.96, 638, 500),
    ("g2-gpu-rtx4000a1-xl", "RTX4000 Ada x1 X-Large", 1, 32, 128, 1.53, 1022,
     500),
    ("g2-gpu-rtx4000a2-s", "RTX4000 Ada x2 Small", 2, 8, 32, 1.05, 700, 1000),
    ("g2-gpu-rtx4000a2-m", "RTX4000 Ada x2 Medium", 2, 16, 64, 1.34, 892,
     1000),
    ("g2-gpu-rtx4000a2-hs", "RTX4000 Ada x2 High Storage", 2, 16, 64, 1.49,
     992, 2000),
    ("g2-gpu-rtx4000a4-s", "RTX4000 Ada x4 Small", 4, 32, 128, 2.96, 1976,
     2000),
    ("g2-gpu-rtx4000a4-m", "RTX4000 Ada x4 Medium", 4, 48, 196, 3.57, 2384,
     2000),
]

# Fields the X-Filter may name, per list; from schemas.json when present
# (the spec's __Filterable__ marks).  Instances also take "type", which
# the tests filter on.
FILTERABLE = {
    "instances": ["group", "id", "ipv4", "label", "region", "tags", "type",
                  "placement_group.label",
                  "placement_group.placement_group_type"],
    "firewalls": ["created", "id", "label", "tags", "updated"],
    "volumes": ["label", "tags"],
    "types": ["class", "disk", "gpus", "label", "memory", "network_out",
              "transfer", "vcpus"],
    "regions": ["country", "site-type"],
    "images": ["deprecated", "is_public", "label", "size", "status", "tags",
               "type", "vendor"],
    "tokens": ["created", "label"],
    "vpcs": ["created", "id", "label", "region", "updated"],
    "subnets": ["created", "id", "label", "updated"],
    "availability": ["region", "plan", "available"],
    "devices": [],
    "volume_types": [],
}

# Canned error bodies for injected faults, by status.
FAULT_REASONS = {
    400: "Bad Request", 401: "Invalid Token", 403: "Unauthorized",
    404: "Not found", 408: "Request Timeout", 429: "Too many requests",
    500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
FIXTURE_ERRORS = {
    "linode_busy": "error_400_linode_busy.json",
    "bad_filter": "error_400_bad_filter.json",
    "field_region": "error_400_field_region.json",
    "invalid_token": "error_401_invalid_token.json",
    "not_found": "error_404_not_found.json",
    "too_many_requests": "error_429_too_many_requests.json",
}
HTML_ERROR = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
              b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
              b"</body>\r\n</html>\r\n")

LABEL_RE = re.compile(r"^[a-zA-Z]((?!--|__|\.\.)[a-zA-Z0-9-_.])+$")
VOLUME_LABEL_RE = re.compile(r"^[a-zA-Z]((?!--|__)[a-zA-Z0-9-_])+$")
PORTS_PIECE_RE = re.compile(r"^([1-9][0-9]{0,4})(?:-([1-9][0-9]{0,4}))?$")


def api_time(t=None):
    """Linode's timestamp format: UTC, no zone suffix."""
    t = time.time() if t is None else t
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def parse_api_time(s):
    """Epoch seconds for a Linode timestamp (a trailing Z is tolerated)."""
    s = s[:-1] if s.endswith("Z") else s
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S")
    return dt.replace(tzinfo=timezone.utc).timestamp()


class ApiError(Exception):
    """An error answer: status plus the API's {"errors": [...]} list."""

    def __init__(self, status, errors, headers=None):
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    def body(self):
        return {"errors": self.errors}


def err(reason, field=None):
    e = {"reason": reason}
    if field is not None:
        e["field"] = field
    return e


def bad_request(reason, field=None):
    return ApiError(400, [err(reason, field)])


# ---------------------------------------------------------------- fixtures

def fixtures_root(override=None):
    """The linode fixtures directory.

    $LC_FIXTURES (or --fixtures) may name shared/fixtures or
    shared/fixtures/linode; by default <repo>/../shared/fixtures, which is
    where CI's fresh clone finds shared/ beside it.
    """
    base = override or os.environ.get("LC_FIXTURES") or os.path.join(
        os.path.dirname(REPO), "shared", "fixtures")
    sub = os.path.join(base, "linode")
    return sub if os.path.isdir(sub) else base


class Fixtures:
    def __init__(self, root):
        self.root = root
        self._cache = {}

    def get(self, name):
        """A fresh (deep) copy of fixture NAME (path below linode/)."""
        if name not in self._cache:
            with open(os.path.join(self.root, name), encoding="utf-8") as f:
                self._cache[name] = json.load(f)
        return copy.deepcopy(self._cache[name])

    def error(self, name):
        return self.get("linodego-recorded/" + name)


def build_ada_types():
    types = []
    for row in ADA_TYPES:
        tid, label, cards, vcpus, mem_gb, hourly, monthly, disk_gb = row
        types.append({
            "id": tid,
            "label": label,
            "price": {"hourly": hourly, "monthly": monthly},
            "region_prices": [],
            "addons": {"backups": {
                "price": {"hourly": round(0.03 * cards, 4),
                          "monthly": 20.0 * cards},
                "region_prices": []}},
            "memory": mem_gb * 1024,
            "disk": disk_gb * 1024,
            "transfer": 16000,
            "vcpus": vcpus,
            "gpus": cards,
            "network_out": 10000,
            "class": "gpu",
            "successor": None,
        })
    return types


def load_schemas():
    """schemas.json (see extract_schemas.py), or None when absent."""
    path = os.path.join(HERE, "schemas.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- filters

def dotted(obj, name):
    for part in name.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def check_filter(flt, allowed):
    """Raise the API's 400 for a filter naming a field it cannot filter on."""
    if not isinstance(flt, dict):
        raise bad_request("Filter must be a JSON object", "X-Filter")
    for key, val in flt.items():
        if key in ("+and", "+or"):
            if not isinstance(val, list):
                raise bad_request(f"{key} must be a list", "X-Filter")
            for sub in val:
                check_filter(sub, allowed)
        elif key == "+order_by":
            if val not in allowed:
                raise bad_request(f"Cannot filter on {val}", "X-Filter")
        elif key == "+order":
            if val not in ("asc", "desc"):
                raise bad_request("+order must be asc or desc", "X-Filter")
        elif key.startswith("+"):
            raise bad_request(f"Unknown operator {key}", "X-Filter")
        elif key not in allowed:
            raise bad_request(f"Cannot filter on {key}", "X-Filter")
        elif isinstance(val, dict):
            for op in val:
                if op not in ("+contains", "+neq", "+gt", "+gte", "+lt",
                              "+lte"):
                    raise bad_request(f"Unknown operator {op}", "X-Filter")


def _cmp(actual, op, arg):
    try:
        if op == "+gt":
            return actual > arg
        if op == "+gte":
            return actual >= arg
        if op == "+lt":
            return actual < arg
        return actual <= arg
    except TypeError:
        return False


def match_value(actual, cond):
    if isinstance(cond, dict):
        for op, arg in cond.items():
            if op == "+contains":
                if isinstance(actual, list):
                    ok = any(isinstance(a, str) and str(arg) in a
                             for a in actual)
                else:
                    ok = isinstance(actual, str) and str(arg) in actual
            elif op == "+neq":
                ok = (arg not in actual) if isinstance(actual, list) \
                    else actual != arg
            else:
                ok = _cmp(actual, op, arg)
            if not ok:
                return False
        return True
    if isinstance(actual, list):  # tags: the list includes the value
        return cond in actual
    return actual == cond


def match_filter(obj, flt):
    for key, val in flt.items():
        if key == "+and":
            if not all(match_filter(obj, f) for f in val):
                return False
        elif key == "+or":
            if not any(match_filter(obj, f) for f in val):
                return False
        elif key.startswith("+"):
            continue
        elif not match_value(dotted(obj, key), val):
            return False
    return True


def sort_key(v):
    """Order numbers numerically and everything else as text, None last."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v, "")
    return (1 if v is not None else 2, 0, "" if v is None else str(v))


def paginate(items, query, flt, allowed):
    """The API's list envelope, after X-Filter and page/page_size."""
    if flt is not None:
        check_filter(flt, allowed)
        items = [i for i in items if match_filter(i, flt)]
        if "+order_by" in flt:
            key = flt["+order_by"]
            items.sort(key=lambda i: sort_key(dotted(i, key)),
                       reverse=flt.get("+order") == "desc")
    page = query_int(query, "page", 1)
    size = query_int(query, "page_size", 100)
    if page < 1:
        raise bad_request("Must be 1 or greater", "page")
    if not 25 <= size <= 500:
        raise bad_request("Must be between 25 and 500", "page_size")
    pages = max(1, math.ceil(len(items) / size))
    start = (page - 1) * size
    return {"data": items[start:start + size], "page": page, "pages": pages,
            "results": len(items)}


def query_int(query, name, default):
    vals = query.get(name)
    if not vals:
        return default
    try:
        return int(vals[-1])
    except ValueError:
        raise bad_request("Must be an integer", name) from None


# ---------------------------------------------------------------- faults

class Match:
    """A "METHOD path" request pattern for fault rules.

    The method is optional, the path is relative to /v4 (a leading /v4 or
    /v4beta is ignored).  The path matches as a prefix; a trailing "$" asks
    for an exact match and "*" makes it a glob.  No pattern matches every API
    request (never /__ctl/).
    """

    def __init__(self, text):
        self.method = None
        self.path = ""
        if text:
            parts = str(text).split(None, 1)
            if len(parts) == 2 or parts[0].isupper():
                self.method = parts[0].upper()
                parts = parts[1:]
            self.path = strip_version(parts[0]) if parts else ""

    def __call__(self, method, path):
        if self.method and self.method != method:
            return False
        p = self.path
        if not p:
            return True
        if "*" in p:
            return fnmatch.fnmatchcase(path, p)
        if p.endswith("$"):
            return path == p[:-1]
        return path.startswith(p)


def strip_version(path):
    for prefix in ("/v4beta", "/v4"):
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix):] or "/"
    return path


def take(rules, method, path):
    """Consume one use of the first rule matching; return it or None."""
    for rule in rules:
        if rule["match"](method, path):
            if rule.get("after", 0) > 0:  # let this many through first
                rule["after"] -= 1
                continue
            if rule["count"] > 0:
                rule["count"] -= 1
                if rule["count"] == 0:
                    rules.remove(rule)
            return rule
    return None


# ---------------------------------------------------------------- state

class State:
    """Everything the fake account holds, behind one lock.

    Handlers are quick and run entirely under the lock; sleeps (latency,
    stalls) happen outside it, so concurrent clients never wait on each
    other's stalls.
    """

    def __init__(self, fixtures, token, latency_ms, schemas):
        self.fx = fixtures
        self.lock = threading.RLock()
        self.start_token = token
        self.start_latency = latency_ms
        self.schemas = schemas
        self.spec_version = (schemas or {}).get("spec_version", SPEC_VERSION)
        # Some jsonschema versions take most of a second to import: build
        # the validators in the background so the port file comes at once.
        self._validators = {}
        self._validators_ready = threading.Thread(
            target=self._load_validators, daemon=True)
        self._validators_ready.start()
        self.filterable = dict(FILTERABLE)
        if schemas:
            for key, fields in schemas.get("filterable", {}).items():
                extra = ["type"] if key == "instances" else []
                self.filterable[key] = sorted(set(fields) | set(extra))
        self.types = {t["id"]: t for t in
                      fixtures.get("linodego-recorded/linode_types_list.json"
                                   )["data"]}
        for t in build_ada_types():
            self.types[t["id"]] = t
        self.base_types = copy.deepcopy(self.types)
        self.regions = {r["id"]: r for r in
                        fixtures.get("linodego-recorded/regions_list.json"
                                     )["data"]}
        self.base_regions = copy.deepcopy(self.regions)
        self.images = {i["id"]: i for i in
                       fixtures.get("linodego-recorded/images_list.json"
                                    )["data"]}
        self.reset()

    def _load_validators(self):
        try:
            import jsonschema
        except ImportError:  # validation by schema is optional
            return
        for key, schema in (self.schemas or {}).get("requests", {}).items():
            self._validators[key] = jsonschema.Draft7Validator(schema)

    @property
    def validators(self):
        self._validators_ready.join()
        return self._validators

    def reset(self):
        with self.lock:
            self.config = copy.deepcopy(DEFAULT_CONFIG)
            self.config["latency_ms"] = self.start_latency
            self.token = self.start_token
            self.types = copy.deepcopy(self.base_types)
            self.regions = copy.deepcopy(self.base_regions)
            self.instances = {}   # id -> record: obj (the API's view),
            #                       phases/since/final (its timeline),
            #                       create_body, user_data, firewall_id
            self.deleted = []     # what deleted instances looked like
            self.firewalls = {}
            self.volumes = {}
            self.vpcs = {}        # id -> VPC object, subnets with linodes
            self.tokens = {}      # id -> token object incl. full "token"
            self.next_id = {"instance": 50000000, "firewall": 3100000,
                            "volume": 1500000, "token": 900000,
                            "vpc": 120000, "subnet": 340000,
                            "interface": 770000}
            self.fails = []       # fail and delete_fails rules
            self.fail_rate = None
            self.stalls = []
            self.garbage = []
            self.ctt = []         # create_then_timeout rules
            self.rate = {}        # (method, key) -> [window start, count]

    def new_id(self, kind):
        self.next_id[kind] += 1
        return self.next_id[kind] - 1

    # -- the clock

    def tick(self):
        """Move every instance and volume along its timeline.

        A timeline is a list of (status, config key) phases; each phase lasts
        config[key] seconds, read when it is checked, so a clock change also
        affects phases in progress.  Phases already over stay over.
        """
        now = time.monotonic()
        for rec in list(self.instances.values()):
            if self._advance(rec, now) and rec["obj"]["status"] == GONE:
                self._forget_instance(rec)
        for vol in self.volumes.values():
            self._advance(vol, now)
            vol["obj"]["io_ready"] = (vol["obj"]["status"] == "active" and
                                      vol["obj"]["linode_id"] is not None)

    def _advance(self, rec, now):
        changed = False
        while rec["phases"]:
            status, key = rec["phases"][0]
            if rec["obj"]["status"] != status:
                rec["obj"]["status"] = status
                rec["obj"]["updated"] = api_time()
                changed = True
            dur = float(self.config.get(key, 0))
            if now - rec["since"] < dur:
                break
            rec["since"] += dur
            rec["phases"].pop(0)
        if not rec["phases"] and rec["obj"]["status"] != rec["final"]:
            rec["obj"]["status"] = rec["final"]
            rec["obj"]["updated"] = api_time()
            changed = True
        return changed

    def set_timeline(self, rec, phases, final):
        rec["phases"] = list(phases)
        rec["final"] = final
        rec["since"] = time.monotonic()
        self._advance(rec, rec["since"])

    def _forget_instance(self, rec):
        iid = rec["obj"]["id"]
        del self.instances[iid]
        gone = copy.deepcopy(rec["obj"])
        gone["status"] = "deleted"
        gone["deleted_at"] = api_time()
        self.deleted.append(gone)
        for fw in self.firewalls.values():
            fw["entities"] = [e for e in fw["entities"] if e["id"] != iid]
        for vol in self.volumes.values():
            if vol["obj"]["linode_id"] == iid:
                vol["obj"]["linode_id"] = None
                vol["obj"]["linode_label"] = None
                vol["obj"]["io_ready"] = False
        for _vpc, sub in self.all_subnets():
            sub["linodes"] = [n for n in sub["linodes"] if n["id"] != iid]

    def live_instance(self, iid):
        rec = self.instances.get(iid)
        if rec is None:
            raise ApiError(404, self.fx.error("error_404_not_found.json")
                           ["errors"])
        return rec

    def not_found(self):
        return ApiError(404, self.fx.error("error_404_not_found.json")
                        ["errors"])

    # -- auth

    def token_scopes(self, token):
        """The scopes of a valid token, or None when it is not valid."""
        if token is None:
            return None
        if secrets.compare_digest(token.encode(), self.token.encode()):
            return self.config["scopes"]
        for tok in self.tokens.values():
            if secrets.compare_digest(token.encode(), tok["token"].encode()):
                exp = tok.get("expiry")
                if exp and parse_api_time(exp) <= time.time():
                    return None
                return tok["scopes"]
        return None

    def rate_headers(self, method, path):
        key, limit = path, RATE_DEFAULT
        for m, prefix, lim in RATE_LIMITS:
            if m == method and path.startswith(prefix) and \
                    (method == "GET" or path == prefix):
                key, limit = prefix, lim
                break
        now = time.time()
        start = now - (now % RATE_WINDOW_S)
        slot = self.rate.get((method, key))
        if slot is None or slot[0] != start:
            slot = self.rate[(method, key)] = [start, 0]
        slot[1] += 1
        return {"X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - slot[1])),
                "X-RateLimit-Reset": str(int(start + RATE_WINDOW_S))}

    # -- request schema checks

    def validate(self, key, body, semantic):
        """Check a create body; return it with nulls dropped, or raise 400.

        The spec's request schema first (when jsonschema and schemas.json
        are there and strict is on), then semantic(body) for what the API
        looks up (regions, labels in use, ...).  Like the API, it reports
        every error at once; a field the schema already faulted is not
        reported twice.
        """
        body = drop_nulls(body)
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        errors = []
        validator = self.validators.get(key)
        if validator is not None and self.config.get("strict", True):
            for e in sorted(validator.iter_errors(body),
                            key=lambda e: [str(p) for p in e.absolute_path]):
                errors.extend(schema_error(e))
        seen = {e.get("field") for e in errors}
        try:
            more = semantic(body)
        except TypeError:  # a wrongly typed field the schema let through
            more = [err("Invalid request body")]
        errors += [e for e in more if e.get("field") not in seen]
        if errors:
            raise ApiError(400, errors)
        return body

    # -- instances

    def public_instance(self, rec):
        return copy.deepcopy(rec["obj"])

    def create_instance(self, body):
        body = self.validate("POST /linode/instances", body,
                             self.instance_errors)

        iid = self.new_id("instance")
        typ = self.types[body["type"]]
        region = self.regions[body["region"]]
        image = body.get("image")
        ipv4 = list(self.config["ipv4"])
        if self.config.get("ipv4_next"):
            ipv4 = self.config["ipv4_next"].pop(0)
        if body.get("private_ip"):
            ipv4.append(f"192.168.{(iid >> 8) & 0x7f | 0x80}.{iid & 0xff}")
        user_data_b64 = (body.get("metadata") or {}).get("user_data")
        obj = self.fx.get("linodego-recorded/instance_create_response.json")
        now = api_time()
        obj.update({
            "id": iid,
            "label": body.get("label") or f"linode{iid}",
            "group": body.get("group", ""),
            "status": "provisioning",
            "created": now,
            "updated": now,
            "type": typ["id"],
            "ipv4": ipv4,
            "ipv6": f"2001:db8::{(iid >> 16) & 0xffff:x}:{iid & 0xffff:x}/128",
            "image": image,
            "region": region["id"],
            "site_type": region.get("site_type", "core"),
            "specs": {"disk": typ["disk"], "memory": typ["memory"],
                      "vcpus": typ["vcpus"], "gpus": typ["gpus"],
                      "transfer": typ["transfer"], "accelerated_devices": 0},
            "tags": list(body.get("tags") or []),
            "host_uuid": hashlib.sha1(str(iid).encode()).hexdigest(),
            "has_user_data": user_data_b64 is not None,
        })
        obj["backups"]["enabled"] = bool(body.get("backups_enabled"))
        if body.get("disk_encryption"):
            obj["disk_encryption"] = body["disk_encryption"]
        rec = {"obj": obj, "create_body": copy.deepcopy(body),
               "user_data_b64": user_data_b64,
               "user_data": decode_user_data(user_data_b64),
               "firewall_id": body.get("firewall_id"),
               "interfaces": self.make_interfaces(iid, body)}
        self.instances[iid] = rec
        # booted defaults to true only when there is something to boot.
        booted = body.get("booted", image is not None)
        if booted:
            self.set_timeline(rec, [("provisioning", "provisioning_s"),
                                    ("booting", "booting_s")], "running")
        else:
            self.set_timeline(rec, [("provisioning", "provisioning_s")],
                              "offline")
        if rec["firewall_id"] is not None:
            self.attach_firewall(rec["firewall_id"], obj)
        out = self.public_instance(rec)
        out["status"] = "provisioning"  # what the API answers, clock or not
        return out

    def instance_errors(self, body):
        """Semantic checks after the schema: what the API looks up."""
        errors = []
        region = self.regions.get(str(body.get("region")))
        typ = self.types.get(str(body.get("type")))
        image_id = body.get("image")
        image = self.images.get(str(image_id)) if image_id is not None \
            else None
        if "region" not in body:
            errors.append(err("region is required", "region"))
        elif region is None:
            errors.append(err("region is not valid", "region"))
        if "type" not in body:
            errors.append(err("type is required", "type"))
        elif typ is None:
            errors.append(err("A valid plan type by that ID was not found",
                              "type"))
        elif region is not None and typ.get("gpus", 0) > 0 and \
                "GPU Linodes" not in region.get("capabilities", []):
            errors.append(err("The requested plan type is not available in "
                              "this region", "type"))
        if image_id is not None and image is None:
            errors.append(err("image is not valid", "image"))
        if "label" in body:
            e = label_error(body["label"], 3, 64, LABEL_RE)
            if e:
                errors.append(err(e, "label"))
            elif any(r["obj"]["label"] == body["label"]
                     for r in self.instances.values()):
                errors.append(err("Label must be unique among your linodes",
                                  "label"))
        errors += tag_errors(body.get("tags"))
        errors += root_pass_errors(body)
        metadata = body.get("metadata")
        user_data = metadata.get("user_data") \
            if isinstance(metadata, dict) else None
        if user_data is not None:
            e = user_data_error(user_data)
            if e:
                errors.append(err(e, "metadata.user_data"))
            if region is not None and \
                    "Metadata" not in region.get("capabilities", []):
                errors.append(err("Metadata is not supported in this region",
                                  "metadata.user_data"))
            if image is not None and \
                    "cloud-init" not in (image.get("capabilities") or []):
                errors.append(err("Image does not support cloud-init "
                                  "metadata", "metadata.user_data"))
        fw = body.get("firewall_id")
        if fw is not None and (not isinstance(fw, int) or
                               fw not in self.firewalls):
            errors.append(err("firewall_id is not valid", "firewall_id"))
        errors += self.interface_errors(body.get("interfaces"),
                                        body.get("region"))
        return errors

    def instance_action(self, iid, action):
        rec = self.live_instance(iid)
        status = rec["obj"]["status"]
        if status in BUSY:
            raise ApiError(400, self.fx.error("error_400_linode_busy.json")
                           ["errors"])
        if action == "shutdown":
            self.set_timeline(rec, [("shutting_down", "booting_s")],
                              "offline")
        elif action == "boot" and status == "running":
            pass
        else:
            label = "rebooting" if action == "reboot" else "booting"
            self.set_timeline(rec, [(label, "booting_s")], "running")
        return {}

    def delete_instance(self, iid):
        rec = self.live_instance(iid)
        if rec["obj"]["status"] != "deleting":
            self.set_timeline(rec, [("deleting", "deleting_s")], GONE)
            if rec["obj"]["status"] == GONE:  # deleting_s is 0
                self._forget_instance(rec)
        return {}

    def update_instance(self, iid, body):
        rec = self.live_instance(iid)
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        errors = []
        if "label" in body:
            e = label_error(body["label"], 3, 64, LABEL_RE)
            if e:
                errors.append(err(e, "label"))
            elif any(r is not rec and r["obj"]["label"] == body["label"]
                     for r in self.instances.values()):
                errors.append(err("Label must be unique among your linodes",
                                  "label"))
        errors += tag_errors(body.get("tags"))
        if errors:
            raise ApiError(400, errors)
        for key in ("label", "tags", "group"):
            if key in body:
                rec["obj"][key] = body[key]
        rec["obj"]["updated"] = api_time()
        return self.public_instance(rec)

    def ctl_instance(self, body):
        """Add an instance the client never created, or change one.

        With the "id" of a live instance, the given fields replace its own
        (a "status" is then fixed until changed again).  Otherwise a new
        running instance; no checks, so a test can build any orphan.
        """
        iid = body.get("id")
        if iid in self.instances:
            rec = self.instances[iid]
        else:
            iid = iid if isinstance(iid, int) else self.new_id("instance")
            typ = self.types.get(body.get("type", "g2-gpu-rtx4000a1-s"), {})
            obj = self.fx.get(
                "linodego-recorded/instance_create_response.json")
            now = api_time()
            obj.update({
                "id": iid, "label": f"linode{iid}", "created": now,
                "updated": now, "type": typ.get("id", body.get("type")),
                "region": "us-ord", "image": "linode/ubuntu24.04",
                "ipv4": list(self.config["ipv4"]),
                "ipv6": f"2001:db8::{iid & 0xffff:x}/128", "tags": [],
                "specs": {k: typ.get(k, 0) for k in
                          ("disk", "memory", "vcpus", "gpus", "transfer")},
                "host_uuid": hashlib.sha1(str(iid).encode()).hexdigest(),
            })
            obj["specs"]["accelerated_devices"] = 0
            rec = {"obj": obj, "create_body": None, "user_data_b64": None,
                   "user_data": None, "firewall_id": None, "phases": [],
                   "interfaces": [],
                   "since": time.monotonic(), "final": "running"}
            self.instances[iid] = rec
        obj = rec["obj"]
        for key, val in body.items():
            if key in ("id", "status", "ipv4", "type", "user_data"):
                continue
            obj[key] = val
        if "type" in body:
            obj["type"] = body["type"]
            typ = self.types.get(body["type"])
            if typ:
                for k in ("disk", "memory", "vcpus", "gpus", "transfer"):
                    obj["specs"][k] = typ[k]
        if "ipv4" in body:
            ipv4 = body["ipv4"]
            obj["ipv4"] = [ipv4] if isinstance(ipv4, str) else list(ipv4)
        if "status" in body or not rec["phases"]:
            rec["phases"] = []
            rec["final"] = body.get("status", rec["final"])
            obj["status"] = rec["final"]
        if "user_data" in body:
            raw = str(body["user_data"]).encode()
            rec["user_data"] = body["user_data"]
            rec["user_data_b64"] = base64.b64encode(raw).decode()
            obj["has_user_data"] = True
        return self.public_instance(rec)

    # -- firewalls

    def firewall_errors(self, body):
        errors = []
        label = body.get("label")
        if label is None:
            errors.append(err("label is required", "label"))
        else:
            e = label_error(label, 3, 32, LABEL_RE)
            if e:
                errors.append(err(e, "label"))
            elif any(f["label"] == label for f in self.firewalls.values()):
                errors.append(err("Label must be unique among your "
                                  "firewalls", "label"))
        errors += tag_errors(body.get("tags"))
        rules = body.get("rules")
        if not isinstance(rules, dict):
            errors.append(err("rules is required", "rules"))
        else:
            errors += rules_errors(rules)
        devices = body.get("devices")
        devices = devices.get("linodes") if isinstance(devices, dict) \
            else None
        for lid in devices or []:
            if lid not in self.instances:
                errors.append(err(f"Linode {lid} not found",
                                  "devices.linodes"))
        return errors

    def create_firewall(self, body):
        body = self.validate("POST /networking/firewalls", body,
                             self.firewall_errors)
        label, rules = body["label"], body["rules"]
        devices = (body.get("devices") or {}).get("linodes") or []
        fid = self.new_id("firewall")
        now = api_time()
        out_rules = copy.deepcopy(rules)
        out_rules.setdefault("inbound", [])
        out_rules.setdefault("outbound", [])
        out_rules["version"] = 1
        out_rules["fingerprint"] = hashlib.sha1(
            json.dumps(rules, sort_keys=True).encode()).hexdigest()[:8]
        fw = {"id": fid, "label": label, "created": now, "updated": now,
              "status": "enabled", "rules": out_rules,
              "tags": list(body.get("tags") or []), "entities": []}
        self.firewalls[fid] = fw
        for lid in devices:
            self.instances[lid]["firewall_id"] = fid
            self.attach_firewall(fid, self.instances[lid]["obj"])
        return copy.deepcopy(fw)

    def put_firewall_rules(self, fid, body):
        """Replace a firewall's rules whole, as the API does; 200 with the
        new rules (version bumped, new fingerprint)."""
        fw = self.firewalls.get(fid)
        if fw is None:
            raise self.not_found()
        body = self.validate("PUT /networking/firewalls/rules", body,
                             rules_errors_put)
        rules = {"inbound": body.get("inbound", []),
                 "inbound_policy": body.get("inbound_policy",
                                            fw["rules"]["inbound_policy"]),
                 "outbound": body.get("outbound", []),
                 "outbound_policy": body.get("outbound_policy",
                                             fw["rules"]["outbound_policy"])}
        out_rules = copy.deepcopy(rules)
        out_rules["version"] = fw["rules"].get("version", 1) + 1
        out_rules["fingerprint"] = hashlib.sha1(
            json.dumps(rules, sort_keys=True).encode()).hexdigest()[:8]
        fw["rules"] = out_rules
        fw["updated"] = api_time()
        return copy.deepcopy(out_rules)

    def attach_firewall(self, fid, inst):
        fw = self.firewalls[fid]
        fw["entities"].append({
            "id": inst["id"], "type": "linode", "label": inst["label"],
            "url": f"/v4/linode/instances/{inst['id']}"})
        fw["updated"] = api_time()

    def firewall_devices(self, fid):
        fw = self.firewalls.get(fid)
        if fw is None:
            raise self.not_found()
        return [{"id": e["id"], "created": fw["created"],
                 "updated": fw["updated"], "entity": copy.deepcopy(e)}
                for e in fw["entities"]]

    # -- volumes

    def volume_errors(self, body):
        errors = []
        label = body.get("label")
        e = label_error(label, 1, 32, VOLUME_LABEL_RE) if label is not None \
            else "label is required"
        if e:
            errors.append(err(e, "label"))
        elif any(v["obj"]["label"] == label for v in self.volumes.values()):
            errors.append(err("Label must be unique among your volumes",
                              "label"))
        size = body.get("size", 20)
        if not isinstance(size, int) or not 10 <= size <= 10240:
            errors.append(err("Size must be between 10 and 10240", "size"))
        inst = self.instances.get(body.get("linode_id"))
        if "linode_id" in body and inst is None:
            errors.append(err("linode_id is not valid", "linode_id"))
        region = body.get("region") or (inst["obj"]["region"] if inst
                                        else None)
        if region is None:
            errors.append(err("region is required when linode_id is not "
                              "given", "region"))
        elif region not in self.regions:
            errors.append(err("region is not valid", "region"))
        elif inst is not None and inst["obj"]["region"] != region:
            errors.append(err("Volume and Linode must be in the same region",
                              "region"))
        errors += tag_errors(body.get("tags"))
        return errors

    def create_volume(self, body):
        body = self.validate("POST /volumes", body, self.volume_errors)
        label, size = body["label"], body.get("size", 20)
        inst = self.instances.get(body.get("linode_id"))
        region = body.get("region") or inst["obj"]["region"]
        vid = self.new_id("volume")
        obj = self.fx.get("linodego-recorded/volume_create_response.json")
        now = api_time()
        obj.update({
            "id": vid, "label": label, "status": "creating", "created": now,
            "updated": now, "size": size, "region": region,
            "filesystem_path": f"/dev/disk/by-id/scsi-0Linode_Volume_{label}",
            "linode_id": inst["obj"]["id"] if inst else None,
            "linode_label": inst["obj"]["label"] if inst else None,
            "tags": list(body.get("tags") or []),
            "encryption": body.get("encryption", "enabled"),
            "io_ready": False,
        })
        rec = {"obj": obj}
        self.volumes[vid] = rec
        self.set_timeline(rec, [("creating", "volume_s")], "active")
        return copy.deepcopy(obj)

    def volume(self, vid):
        rec = self.volumes.get(vid)
        if rec is None:
            raise self.not_found()
        return rec

    # -- VPCs and their subnets

    def all_subnets(self):
        for vpc in self.vpcs.values():
            for sub in vpc["subnets"]:
                yield vpc, sub

    def subnet(self, sid):
        for vpc, sub in self.all_subnets():
            if sub["id"] == sid:
                return vpc, sub
        return None, None

    def vpc(self, vid):
        vpc = self.vpcs.get(vid)
        if vpc is None:
            raise self.not_found()
        return vpc

    def subnet_range_errors(self, vpc_subnets, ipv4, field):
        """A subnet is a private IPv4 range, /1 to /29, overlapping none
        of its VPC's other subnets."""
        try:
            net = ipaddress.ip_network(str(ipv4), strict=True)
        except ValueError:
            return [err("Must be a valid IPv4 network range", field)]
        if net.version != 4 or not net.is_private or \
                not 1 <= net.prefixlen <= 29:
            return [err("Must be an RFC1918 IPv4 range of prefix length "
                        "29 or shorter", field)]
        for other in vpc_subnets:
            if net.overlaps(ipaddress.ip_network(other)):
                return [err("Subnet ranges must not overlap", field)]
        return []

    def vpc_errors(self, body):
        errors = []
        label = body.get("label")
        if label is None:
            errors.append(err("label is required", "label"))
        elif not re.match(r"^[a-zA-Z0-9-]{1,64}$", str(label)) or \
                "--" in str(label):
            errors.append(err("Label must include only ASCII letters, "
                              "numbers, and dashes", "label"))
        elif any(v["label"] == label for v in self.vpcs.values()):
            errors.append(err("Label must be unique among your VPCs",
                              "label"))
        region = self.regions.get(str(body.get("region")))
        if "region" not in body:
            errors.append(err("region is required", "region"))
        elif region is None:
            errors.append(err("region is not valid", "region"))
        elif "VPCs" not in region.get("capabilities", []):
            errors.append(err("VPCs are not available in this region",
                              "region"))
        seen, labels = [], set()
        for i, sub in enumerate(body.get("subnets") or []):
            errors += self.subnet_errors(sub, seen, labels,
                                         f"subnets[{i}]")
            seen.append(str(sub.get("ipv4")))
            labels.add(sub.get("label"))
        return errors

    def subnet_errors(self, sub, ranges, labels, prefix=""):
        dot = prefix + "." if prefix else ""
        errors = []
        if sub.get("label") in labels:
            errors.append(err("Label must be unique among the VPC's "
                              "subnets", dot + "label"))
        if "ipv4" in sub:
            errors += self.subnet_range_errors(ranges, sub["ipv4"],
                                               dot + "ipv4")
        return errors

    def new_subnet(self, sub):
        now = api_time()
        return {"id": self.new_id("subnet"), "label": sub["label"],
                "ipv4": sub["ipv4"], "linodes": [], "created": now,
                "updated": now}

    def create_vpc(self, body):
        body = self.validate("POST /vpcs", body, self.vpc_errors)
        vid = self.new_id("vpc")
        now = api_time()
        vpc = {"id": vid, "label": body["label"], "region": body["region"],
               "description": body.get("description", ""),
               "subnets": [self.new_subnet(s)
                           for s in body.get("subnets") or []],
               "created": now, "updated": now}
        self.vpcs[vid] = vpc
        return copy.deepcopy(vpc)

    def create_subnet(self, vid, body):
        vpc = self.vpc(vid)
        body = self.validate(
            "POST /vpcs/subnets", body,
            lambda b: self.subnet_errors(
                b, [s["ipv4"] for s in vpc["subnets"]],
                {s["label"] for s in vpc["subnets"]}))
        sub = self.new_subnet(body)
        vpc["subnets"].append(sub)
        vpc["updated"] = sub["created"]
        return copy.deepcopy(sub)

    def delete_vpc(self, vid):
        vpc = self.vpc(vid)
        if any(s["linodes"] for s in vpc["subnets"]):
            raise bad_request("Cannot delete a VPC with Linodes attached "
                              "to its subnets")
        del self.vpcs[vid]
        return {}

    def delete_subnet(self, vid, sid):
        vpc = self.vpc(vid)
        sub = next((s for s in vpc["subnets"] if s["id"] == sid), None)
        if sub is None:
            raise self.not_found()
        if sub["linodes"]:
            raise bad_request("Cannot delete a subnet with Linodes "
                              "attached")
        vpc["subnets"].remove(sub)
        return {}

    def used_vpc_addresses(self, sid):
        return {i["ipv4"]["vpc"] for r in self.instances.values()
                for i in r.get("interfaces") or []
                if i.get("subnet_id") == sid}

    def interface_errors(self, interfaces, region):
        """What the API looks up in "interfaces": a vpc one needs a subnet
        of a VPC in the instance's region, and a free address in it."""
        errors = []
        if not isinstance(interfaces, list):
            return errors
        if sum(1 for i in interfaces if isinstance(i, dict) and
               i.get("purpose") == "public") > 1:
            errors.append(err("Only one public interface is allowed",
                              "interfaces"))
        asked = set()
        for n, itf in enumerate(interfaces):
            if not isinstance(itf, dict):
                continue
            field = f"interfaces[{n}]"
            if itf.get("purpose") == "vlan" and not itf.get("label"):
                errors.append(err("label is required for a vlan interface",
                                  field + ".label"))
            if itf.get("purpose") != "vpc":
                continue
            vpc, sub = self.subnet(itf.get("subnet_id"))
            if sub is None:
                errors.append(err("subnet_id is not valid",
                                  field + ".subnet_id"))
                continue
            if vpc["region"] != region:
                errors.append(err("The VPC must be in the same region as "
                                  "the Linode", field + ".subnet_id"))
            addr = (itf.get("ipv4") or {}).get("vpc")
            if addr is None:
                continue
            net = ipaddress.ip_network(sub["ipv4"])
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                ip = None
            if ip is None or ip not in net or ip in (
                    net.network_address, net.network_address + 1,
                    net.broadcast_address):
                errors.append(err(f"{addr} is not a usable address of "
                                  f"subnet {sub['ipv4']}",
                                  field + ".ipv4.vpc"))
            elif addr in self.used_vpc_addresses(sub["id"]) or \
                    (sub["id"], addr) in asked:
                errors.append(err(f"{addr} is already in use",
                                  field + ".ipv4.vpc"))
            asked.add((sub["id"], addr))
        return errors

    def make_interfaces(self, iid, body):
        """The instance's interfaces as the API keeps them (eth0.. in
        order), each vpc one with its address and listed in its subnet."""
        out = []
        for n, itf in enumerate(body.get("interfaces") or []):
            one = {"id": self.new_id("interface"), "purpose": itf["purpose"],
                   "name": f"eth{n}", "primary": bool(itf.get("primary")),
                   "label": itf.get("label"), "subnet_id": None,
                   "vpc_id": None, "ipv4": {"vpc": None, "nat_1_1": None}}
            if itf["purpose"] == "vpc":
                vpc, sub = self.subnet(itf["subnet_id"])
                addr = (itf.get("ipv4") or {}).get("vpc")
                if addr is None:
                    net = ipaddress.ip_network(sub["ipv4"])
                    used = self.used_vpc_addresses(sub["id"])
                    addr = next(str(h) for h in list(net.hosts())[1:]
                                if str(h) not in used)
                nat = (itf.get("ipv4") or {}).get("nat_1_1")
                one.update({"subnet_id": sub["id"], "vpc_id": vpc["id"],
                            "ipv4": {"vpc": addr, "nat_1_1": nat}})
                sub["linodes"].append(
                    {"id": iid, "interfaces": [{"id": one["id"],
                                                "active": True}]})
            out.append(one)
        return out

    # -- tokens

    def create_token(self, body, scopes_now):
        if not scopes_allow_tokens(scopes_now):
            raise ApiError(403, [err("Unauthorized")])
        body = self.validate("POST /profile/tokens", body, token_errors)
        label = body.get("label", "")
        expiry = body.get("expiry")
        if expiry is not None:
            expiry = api_time(parse_api_time(expiry))
        scopes = body.get("scopes", "*")
        if scopes == "*":
            scopes = scopes_now
        tid = self.new_id("token")
        tok = {"id": tid, "label": label, "scopes": scopes,
               "created": api_time(), "expiry": expiry,
               "token": secrets.token_hex(32)}
        self.tokens[tid] = tok
        return copy.deepcopy(tok)

    # -- control

    def snapshot(self):
        instances = []
        for rec in self.instances.values():
            inst = self.public_instance(rec)
            inst.update({"user_data": rec["user_data"],
                         "user_data_b64": rec["user_data_b64"],
                         "create_body": rec["create_body"],
                         "firewall_id": rec["firewall_id"],
                         "interfaces": copy.deepcopy(
                             rec.get("interfaces") or [])})
            instances.append(inst)
        cfg = copy.deepcopy(self.config)
        return {
            "instances": instances,
            "deleted_instances": copy.deepcopy(self.deleted),
            "firewalls": copy.deepcopy(list(self.firewalls.values())),
            "volumes": [copy.deepcopy(v["obj"])
                        for v in self.volumes.values()],
            "vpcs": copy.deepcopy(list(self.vpcs.values())),
            "tokens": copy.deepcopy(list(self.tokens.values())),
            "config": cfg,
            "faults": {
                "fail": [{k: v for k, v in r.items() if k != "match"}
                         for r in self.fails],
                "fail_rate": None if self.fail_rate is None else
                {k: v for k, v in self.fail_rate.items()
                 if k not in ("match", "rng")},
                "stall": len(self.stalls), "garbage": len(self.garbage),
                "create_then_timeout": len(self.ctt),
            },
        }


# ------------------------------------------------------- validation helpers

def drop_nulls(body):
    """Top-level null fields count as absent, as the live API treats them
    (linodego sends "tags": null in volume creates)."""
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if v is not None}
    return {} if body is None else body


def field_name(path):
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def schema_error(e):
    """API-style errors for one jsonschema error."""
    path = list(e.absolute_path)
    field = field_name(path) or None
    v = e.validator
    if v == "required":
        missing = [r for r in e.validator_value
                   if isinstance(e.instance, dict) and r not in e.instance]
        return [err(f"{field_name(path + [m])} is required",
                    field_name(path + [m])) for m in missing]
    if v == "additionalProperties":
        known = set((e.schema.get("properties") or {}).keys())
        extra = sorted(set(e.instance) - known) if isinstance(e.instance,
                                                               dict) else []
        return [err(f"{field_name(path + [x])} is not a recognised field",
                    field_name(path + [x])) for x in extra]
    if v in ("minLength", "maxLength"):
        lo, hi = e.schema.get("minLength"), e.schema.get("maxLength")
        if lo is not None and hi is not None:
            return [err(f"Length must be {lo}-{hi} characters", field)]
    if v == "enum":
        return [err("Must be one of " + ", ".join(map(str, e.validator_value)),
                    field)]
    if v == "type":
        want = e.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return [err(f"Must be of type {want}", field)]
    if v == "pattern" and path and path[-1] == "label":
        return [err(LABEL_RULES, field)]
    return [err(e.message, field)]


LABEL_RULES = ("Label must begin with a letter and contain only letters, "
               "numbers, dashes (-), underscores (_) and periods (.), with no "
               "two dashes, underscores or periods in a row")


def label_error(label, lo, hi, regex):
    if not isinstance(label, str):
        return "Label must be a string"
    if not lo <= len(label) <= hi:
        return f"Length must be {lo}-{hi} characters"
    if not regex.match(label):
        return LABEL_RULES
    return None


def tag_errors(tags):
    if tags is None:
        return []
    if not isinstance(tags, list) or \
            not all(isinstance(t, str) for t in tags):
        return [err("tags must be a list of strings", "tags")]
    return [err("Length must be 3-50 characters", "tags")
            for t in tags if not 3 <= len(t) <= 50][:1]


def root_pass_errors(body):
    """root_pass: 7-128 characters and not trivially weak.

    v4.189 requires it whenever an image is given; current API versions take
    authorized_keys or authorized_users instead, so any one of them passes.
    """
    pw = body.get("root_pass")
    if pw is None:
        if body.get("image") is not None and not body.get("authorized_keys") \
                and not body.get("authorized_users"):
            return [err("root_pass is required when deploying an image",
                        "root_pass")]
        return []
    if not isinstance(pw, str):
        return [err("Must be of type string", "root_pass")]
    if not 7 <= len(pw) <= 128:
        return [err("Length must be 7-128 characters", "root_pass")]
    classes = sum(bool(re.search(p, pw)) for p in
                  (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^a-zA-Z0-9]"))
    # Stands in for the server's strength score: one character class and
    # short, or a run of one repeated character, is weak.
    if (classes < 2 and len(pw) < 16) or len(set(pw)) < 4:
        return [err("Password does not meet strength requirement",
                    "root_pass")]
    return []


def user_data_error(value):
    if not isinstance(value, str):
        return "user_data must be a base64-encoded string"
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return "user_data must be valid base64 (no line breaks)"
    if len(raw) > 65535:
        return "user_data must be 65535 bytes or less once decoded"
    return None


def decode_user_data(value):
    if value is None:
        return None
    return base64.b64decode(value).decode("utf-8", errors="replace")


def rules_errors(rules):
    errors = []
    for pol in ("inbound_policy", "outbound_policy"):
        if rules.get(pol) not in ("ACCEPT", "DROP"):
            errors.append(err("Must be one of ACCEPT, DROP", f"rules.{pol}"))
    total = 0
    for way in ("inbound", "outbound"):
        lst = rules.get(way, [])
        if not isinstance(lst, list):
            errors.append(err("Must be a list", f"rules.{way}"))
            continue
        total += len(lst)
        for i, rule in enumerate(lst):
            errors += rule_errors(rule, f"rules.{way}[{i}]")
    if total > 25:
        errors.append(err("A firewall may hold at most 25 rules", "rules"))
    return errors


def rules_errors_put(rules):
    """rules_errors for a PUT, where each policy may be left out."""
    full = {"inbound_policy": "DROP", "outbound_policy": "ACCEPT"}
    full.update(rules)
    return rules_errors(full)


def rule_errors(rule, where):
    if not isinstance(rule, dict):
        return [err("Must be an object", where)]
    errors = []
    proto = rule.get("protocol")
    if proto not in ("TCP", "UDP", "ICMP", "IPENCAP"):
        errors.append(err("Must be one of TCP, UDP, ICMP, IPENCAP",
                          f"{where}.protocol"))
    if rule.get("action") not in ("ACCEPT", "DROP"):
        errors.append(err("Must be one of ACCEPT, DROP", f"{where}.action"))
    addrs = rule.get("addresses")
    if not isinstance(addrs, dict) or \
            not (addrs.get("ipv4") or addrs.get("ipv6")):
        errors.append(err("At least one IPv4 or IPv6 address is required",
                          f"{where}.addresses"))
    elif len(addrs.get("ipv4") or []) + len(addrs.get("ipv6") or []) > 255:
        errors.append(err("At most 255 addresses", f"{where}.addresses"))
    if "label" in rule and rule["label"] is not None and \
            not 3 <= len(str(rule["label"])) <= 32:
        errors.append(err("Length must be 3-32 characters", f"{where}.label"))
    ports = rule.get("ports")
    if ports is not None:
        if proto not in ("TCP", "UDP"):
            errors.append(err("Ports are only allowed for TCP and UDP",
                              f"{where}.ports"))
        elif not ports_ok(ports):
            errors.append(err("Ports must be a comma-separated list of ports "
                              "and ranges within 1-65535, at most 15 pieces",
                              f"{where}.ports"))
    return errors


def ports_ok(ports):
    if not isinstance(ports, str):
        return False
    pieces = 0
    for part in ports.split(","):
        m = PORTS_PIECE_RE.match(part.strip())
        if not m:
            return False
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if not 1 <= lo <= hi <= 65535:
            return False
        pieces += 2 if m.group(2) else 1
    return pieces <= 15


def token_errors(body):
    errors = []
    label = body.get("label", "")
    if not isinstance(label, str) or not 1 <= len(label) <= 100:
        errors.append(err("Length must be 1-100 characters", "label"))
    expiry = body.get("expiry")
    if expiry is not None:
        try:
            if parse_api_time(expiry) <= time.time():
                errors.append(err("expiry must be in the future", "expiry"))
        except (TypeError, ValueError, AttributeError):
            errors.append(err("expiry must be a date-time like "
                              "2018-01-01T00:01:01", "expiry"))
    if not isinstance(body.get("scopes", "*"), str):
        errors.append(err("Must be of type string", "scopes"))
    return errors


def scopes_allow_tokens(scopes):
    return scopes == "*" or "account:read_write" in scopes.split()


# Which OAuth scope area guards which path (None: any valid token will do).
SCOPE_AREAS = [
    ("/linode/instances", "linodes"),
    ("/networking/firewalls", "firewall"),
    ("/volumes", "volumes"),
    ("/vpcs", "vpc"),
    ("/account", "account"),
]


def scopes_allow(scopes, method, path):
    if scopes == "*":
        return True
    have = dict(s.split(":", 1) for s in scopes.split() if ":" in s)
    for prefix, area in SCOPE_AREAS:
        if path.startswith(prefix):
            level = have.get(area)
            if method == "GET":
                return level in ("read_only", "read_write")
            return level == "read_write"
    return True


# ---------------------------------------------------------------- routing

ROUTES = []  # (method, compiled regex, handler name, public)


def route(method, pattern, public=False):
    def deco(fn):
        ROUTES.append((method, re.compile("^" + pattern + "$"), fn, public))
        return fn
    return deco


@route("GET", "/profile")
def get_profile(st, req):
    return st.fx.get("linode_api4-python/profile.json")


@route("GET", "/profile/tokens")
def list_tokens(st, req):
    toks = []
    for tok in st.tokens.values():
        t = copy.deepcopy(tok)
        t["token"] = t["token"][:16]  # the API shows only the start
        toks.append(t)
    return req.page(toks, "tokens")


@route("POST", "/profile/tokens")
def post_token(st, req):
    return st.create_token(req.body, req.scopes)


@route("DELETE", r"/profile/tokens/(\d+)")
def delete_token(st, req, tid):
    if not scopes_allow_tokens(req.scopes):
        raise ApiError(403, [err("Unauthorized")])
    if st.tokens.pop(int(tid), None) is None:
        raise st.not_found()
    return {}


@route("GET", "/regions", public=True)
def list_regions(st, req):
    return req.page(copy.deepcopy(list(st.regions.values())), "regions")


@route("GET", "/regions/availability", public=True)
def list_availability(st, req):
    data = st.fx.get(
        "linodego-recorded/regions_availability_2025-08.json")["data"]
    return req.page(data, "availability")


@route("GET", r"/regions/([^/]+)", public=True)
def get_region(st, req, rid):
    if rid not in st.regions:
        raise st.not_found()
    return copy.deepcopy(st.regions[rid])


@route("GET", "/linode/types", public=True)
def list_types(st, req):
    return req.page(copy.deepcopy(list(st.types.values())), "types")


@route("GET", r"/linode/types/([^/]+)", public=True)
def get_type(st, req, tid):
    if tid not in st.types:
        raise st.not_found()
    return copy.deepcopy(st.types[tid])


@route("GET", "/images", public=True)
def list_images(st, req):
    return req.page(copy.deepcopy(list(st.images.values())), "images")


@route("GET", r"/images/(.+)", public=True)
def get_image(st, req, iid):
    if iid not in st.images:
        raise st.not_found()
    return copy.deepcopy(st.images[iid])


@route("GET", "/linode/instances")
def list_instances(st, req):
    return req.page([st.public_instance(r) for r in st.instances.values()],
                    "instances")


@route("POST", "/linode/instances")
def post_instance(st, req):
    return st.create_instance(req.body)


@route("GET", r"/linode/instances/(\d+)")
def get_instance(st, req, iid):
    return st.public_instance(st.live_instance(int(iid)))


@route("PUT", r"/linode/instances/(\d+)")
def put_instance(st, req, iid):
    return st.update_instance(int(iid), req.body)


@route("DELETE", r"/linode/instances/(\d+)")
def delete_instance(st, req, iid):
    return st.delete_instance(int(iid))


@route("POST", r"/linode/instances/(\d+)/(reboot|boot|shutdown)")
def instance_action(st, req, iid, action):
    return st.instance_action(int(iid), action)


@route("GET", r"/linode/instances/(\d+)/firewalls")
def instance_firewalls(st, req, iid):
    rec = st.live_instance(int(iid))
    fws = [copy.deepcopy(st.firewalls[rec["firewall_id"]])] \
        if rec["firewall_id"] in st.firewalls else []
    return req.page(fws, "firewalls")


@route("GET", "/networking/firewalls")
def list_firewalls(st, req):
    return req.page(copy.deepcopy(list(st.firewalls.values())), "firewalls")


@route("POST", "/networking/firewalls")
def post_firewall(st, req):
    return st.create_firewall(req.body)


@route("GET", r"/networking/firewalls/(\d+)")
def get_firewall(st, req, fid):
    fw = st.firewalls.get(int(fid))
    if fw is None:
        raise st.not_found()
    return copy.deepcopy(fw)


@route("GET", r"/networking/firewalls/(\d+)/rules")
def get_firewall_rules(st, req, fid):
    fw = st.firewalls.get(int(fid))
    if fw is None:
        raise st.not_found()
    return copy.deepcopy(fw["rules"])


@route("PUT", r"/networking/firewalls/(\d+)/rules")
def put_firewall_rules(st, req, fid):
    return st.put_firewall_rules(int(fid), req.body)


@route("GET", r"/networking/firewalls/(\d+)/devices")
def get_firewall_devices(st, req, fid):
    return req.page(st.firewall_devices(int(fid)), "devices")


@route("DELETE", r"/networking/firewalls/(\d+)")
def delete_firewall(st, req, fid):
    fw = st.firewalls.pop(int(fid), None)
    if fw is None:
        raise st.not_found()
    for rec in st.instances.values():
        if rec["firewall_id"] == fw["id"]:
            rec["firewall_id"] = None
    return {}


@route("GET", "/vpcs")
def list_vpcs(st, req):
    return req.page(copy.deepcopy(list(st.vpcs.values())), "vpcs")


@route("POST", "/vpcs")
def post_vpc(st, req):
    return st.create_vpc(req.body)


@route("GET", r"/vpcs/(\d+)")
def get_vpc(st, req, vid):
    return copy.deepcopy(st.vpc(int(vid)))


@route("PUT", r"/vpcs/(\d+)")
def put_vpc(st, req, vid):
    vpc = st.vpc(int(vid))
    body = req.body if isinstance(req.body, dict) else {}
    for key in ("label", "description"):
        if key in body:
            vpc[key] = body[key]
    vpc["updated"] = api_time()
    return copy.deepcopy(vpc)


@route("DELETE", r"/vpcs/(\d+)")
def delete_vpc(st, req, vid):
    return st.delete_vpc(int(vid))


@route("GET", r"/vpcs/(\d+)/subnets")
def list_subnets(st, req, vid):
    return req.page(copy.deepcopy(st.vpc(int(vid))["subnets"]), "subnets")


@route("POST", r"/vpcs/(\d+)/subnets")
def post_subnet(st, req, vid):
    return st.create_subnet(int(vid), req.body)


@route("GET", r"/vpcs/(\d+)/subnets/(\d+)")
def get_subnet(st, req, vid, sid):
    sub = next((s for s in st.vpc(int(vid))["subnets"]
                if s["id"] == int(sid)), None)
    if sub is None:
        raise st.not_found()
    return copy.deepcopy(sub)


@route("DELETE", r"/vpcs/(\d+)/subnets/(\d+)")
def delete_subnet(st, req, vid, sid):
    return st.delete_subnet(int(vid), int(sid))


@route("GET", "/volumes")
def list_volumes(st, req):
    return req.page([copy.deepcopy(v["obj"]) for v in st.volumes.values()],
                    "volumes")


@route("POST", "/volumes")
def post_volume(st, req):
    return st.create_volume(req.body)


@route("GET", r"/volumes/(\d+)")
def get_volume(st, req, vid):
    return copy.deepcopy(st.volume(int(vid))["obj"])


@route("DELETE", r"/volumes/(\d+)")
def delete_volume(st, req, vid):
    rec = st.volume(int(vid))
    if rec["obj"]["linode_id"] is not None:
        raise bad_request("Volume must be detached before it can be deleted")
    del st.volumes[int(vid)]
    return {}


@route("POST", r"/volumes/(\d+)/attach")
def attach_volume(st, req, vid):
    rec = st.volume(int(vid))
    body = req.body if isinstance(req.body, dict) else {}
    inst = st.instances.get(body.get("linode_id"))
    if inst is None:
        raise bad_request("linode_id is not valid", "linode_id")
    if inst["obj"]["region"] != rec["obj"]["region"]:
        raise bad_request("Volume and Linode must be in the same region",
                          "linode_id")
    if rec["obj"]["linode_id"] not in (None, inst["obj"]["id"]):
        raise bad_request("Volume is already attached to a Linode",
                          "linode_id")
    rec["obj"]["linode_id"] = inst["obj"]["id"]
    rec["obj"]["linode_label"] = inst["obj"]["label"]
    return copy.deepcopy(rec["obj"])


@route("POST", r"/volumes/(\d+)/detach")
def detach_volume(st, req, vid):
    rec = st.volume(int(vid))
    rec["obj"]["linode_id"] = None
    rec["obj"]["linode_label"] = None
    rec["obj"]["io_ready"] = False
    return {}


@route("GET", "/volumes/types", public=True)
def list_volume_types(st, req):
    data = st.fx.get("linodego-recorded/volumes_types_list.json")["data"]
    return req.page(copy.deepcopy(data), "volume_types")


def find_route(method, path):
    """(handler, args, public); None for an unknown path; 405 raised for a
    known path with another method."""
    path_known = False
    for m, rx, fn, public in ROUTES:
        mt = rx.match(path)
        if mt:
            path_known = True
            if m == method:
                return fn, mt.groups(), public
    if path_known:
        raise ApiError(405, [err("Method Not Allowed")])
    return None


# ---------------------------------------------------------------- HTTP

LOGGED_HEADERS = ("X-Filter", "User-Agent", "Content-Type", "Accept")


class Request:
    """What a route handler sees of a request."""

    def __init__(self, query, body, xfilter, scopes, filterable):
        self.query = query
        self.body = body
        self.xfilter = xfilter
        self.scopes = scopes
        self.filterable = filterable

    def page(self, items, kind):
        """items as one page of the API's list envelope."""
        return paginate(items, self.query, self.xfilter,
                        self.filterable[kind])


class Handler(BaseHTTPRequestHandler):
    # Small answers must not wait for Nagle: ~40 ms a request otherwise.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl expects to reuse
    server_version = "fake-linode-api"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection does not hold a thread

    # -- plumbing

    def log_message(self, fmt, *args):  # quiet: requests.jsonl is the log
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, headers=None, ctype="application/json"):
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout, reset, broken pipe)
            self.close_connection = True

    # -- control API

    def handle_ctl(self, method, name, raw):
        st = self.server.state
        try:
            body = json.loads(raw) if raw.strip() else {}
            # Only "instance" takes a list: many orphans in one call.
            if not isinstance(body, dict) and not (
                    name == "instance" and isinstance(body, list)):
                raise ValueError("body must be a JSON object")
        except ValueError as e:
            self.send(400, {"ok": False, "error": f"bad JSON: {e}"})
            return
        if method == "GET" and name == "state":
            with st.lock:
                st.tick()
                snap = st.snapshot()
            self.send(200, snap)
            return
        fn = CTL.get(name)
        if method != "POST" or fn is None:
            self.send(404, {"ok": False, "error": f"no control {method} "
                                                  f"/__ctl/{name}"})
            return
        try:
            with st.lock:
                st.tick()
                out = fn(st, body)
        except (KeyError, TypeError, ValueError) as e:
            self.send(400, {"ok": False, "error": f"{type(e).__name__}: {e}"})
            return
        self.send(200, out if out is not None else {"ok": True})

    # -- the API

    def dispatch(self, method):
        t0 = time.time()
        st = self.server.state
        url = urlsplit(self.path)
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if url.path.startswith("/__ctl/"):
            self.handle_ctl(method, url.path[len("/__ctl/"):], raw)
            return

        entry = {"time": datetime.now(timezone.utc).isoformat(
                     timespec="milliseconds").replace("+00:00", "Z"),
                 "t": round(t0, 3), "method": method, "path": url.path,
                 "query": url.query, "headers": {}, "auth": "<none>",
                 "auth_ok": False, "body": None, "status": None,
                 "fault": None}
        for h in LOGGED_HEADERS:
            if h in self.headers:
                entry["headers"][h] = self.headers[h]
        authz = self.headers.get("Authorization")
        token = None
        if authz is not None:
            scheme, _, token = authz.strip().partition(" ")
            if scheme.lower() == "bearer":
                entry["auth"] = "Bearer <redacted>"
                token = token.strip()
            else:  # the "scheme" may be the bare token itself
                entry["auth"] = "<redacted>"
                token = None
        entry["headers"]["Authorization"] = entry["auth"]
        body, body_bad = None, False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body_bad = True
                entry["body_error"] = "malformed JSON"
        entry["body"] = body

        api_path = strip_version(url.path)
        versioned = api_path != url.path

        latency = st.config.get("latency_ms", 0)
        if latency:
            time.sleep(latency / 1000.0)
        try:
            status, payload, headers, ctype, after = self.process(
                method, api_path, versioned, url, body, body_bad, token,
                entry)
        except Exception:  # a bug here must not take the server down
            traceback.print_exc()
            status, payload, ctype, after = 500, {"errors": [err(
                "fake API internal error")]}, "application/json", None
            headers = {}
        entry["status"] = status
        entry["duration_ms"] = round((time.time() - t0) * 1000, 1)
        self.server.log(entry)
        if after is not None:
            after()
            return
        self.send(status, payload, headers, ctype)

    def process(self, method, path, versioned, url, body, body_bad, token,
                entry):
        """Decide the answer.  Returns (status, body, headers, content type,
        after) where after, when set, writes the answer itself."""
        st = self.server.state
        json_ct = "application/json"
        with st.lock:
            stall = take(st.stalls, method, path)
        if stall:
            entry["fault"] = "stall"
            time.sleep(float(stall["seconds"]))

        with st.lock:
            st.tick()
            headers = st.rate_headers(method, path)
            headers["X-Spec-Version"] = st.spec_version
            scopes = st.token_scopes(token)
            entry["auth_ok"] = scopes is not None
            fault = self.fault(method, path, headers, entry)
            if fault is not None:
                return fault
            try:
                found = find_route(method, path) if versioned else None
            except ApiError as e:
                return (e.status, e.body(), headers, json_ct, None)
            if found is None:
                return (404, st.fx.error("error_404_not_found.json"),
                        headers, json_ct, None)
            fn, args, public = found
            # Public endpoints answer whatever the token: they need none.
            if scopes is None and not public:
                return (401, st.fx.error("error_401_invalid_token.json"),
                        headers, json_ct, None)
            if scopes is not None:
                headers["X-OAuth-Scopes"] = scopes
                if not public and not scopes_allow(scopes, method, path):
                    return (401, {"errors": [err(
                        "Your OAuth token is not authorized to use this "
                        "endpoint.")]}, headers, json_ct, None)
            if body_bad:
                return (400, {"errors": [err("Malformed JSON")]}, headers,
                        json_ct, None)
            xfilter = None
            if "X-Filter" in self.headers:
                try:
                    xfilter = json.loads(self.headers["X-Filter"])
                except ValueError:
                    return (400, {"errors": [err("Malformed X-Filter JSON",
                                                 "X-Filter")]},
                            headers, json_ct, None)
            req = Request(parse_qs(url.query), body, xfilter, scopes or "",
                          st.filterable)
            try:
                result = fn(st, req, *args)
            except ApiError as e:
                headers.update(e.headers)
                return (e.status, e.body(), headers, json_ct, None)
            ctt = None
            if method == "POST" and path == "/linode/instances":
                ctt = take(st.ctt, method, path)
        if ctt:
            # The instance exists now; the answer comes too late for a
            # client with a shorter timeout.
            entry["fault"] = "create_then_timeout"
            delay = float(ctt["seconds"])

            def late():
                time.sleep(delay)
                self.send(200, result, headers)
            return (200, result, headers, json_ct, late)
        return (200, result, headers, json_ct, None)

    def fault(self, method, path, headers, entry):
        """An injected failure for this request, or None.  Called locked;
        a failure happens before any side effect."""
        st = self.server.state
        rule = take(st.fails, method, path)
        if rule is None and st.fail_rate is not None:
            fr = st.fail_rate
            if fr["match"](method, path) and fr["rng"].random() < fr["rate"]:
                rule = dict(fr, status=fr["rng"].choice(fr["statuses"]))
        if rule is not None:
            entry["fault"] = rule.get("kind", "fail")
            return self.fail_answer(rule, headers)
        rule = take(st.garbage, method, path)
        if rule is not None:
            mode = rule["mode"]
            entry["fault"] = "garbage:" + mode
            if mode == "truncated":
                return (200, b'{"id": 50000123, "label": "lc-trunc',
                        headers, "application/json", None)
            if mode == "nonjson":
                return (200, HTML_ERROR, headers, "text/html", None)
            if mode == "empty":
                return (200, b"", headers, "application/json", None)
            if mode == "cut":
                return (200, None, headers, None, lambda: self.cut(headers))
            if mode == "hangup":
                return (None, None, headers, None, self.hangup)
        return None

    def fail_answer(self, rule, headers):
        st = self.server.state
        status = int(rule["status"])
        body = rule.get("body")
        ctype = "application/json"
        if isinstance(body, (dict, list)):
            payload = body
        elif body == "html":
            payload, ctype = HTML_ERROR, "text/html"
        elif body in FIXTURE_ERRORS:
            payload = st.fx.error(FIXTURE_ERRORS[body])
        elif isinstance(body, str):
            payload = {"errors": [err(body)]}
        elif status == 429:
            payload = st.fx.error("error_429_too_many_requests.json")
        elif status == 401:
            payload = st.fx.error("error_401_invalid_token.json")
        elif status == 404:
            payload = st.fx.error("error_404_not_found.json")
        else:
            payload = {"errors": [err(FAULT_REASONS.get(status, "Error"))]}
        retry = rule.get("retry_after")
        if retry is None and status == 429:
            retry = 1  # the live API always sends it with a 429
        if retry is not None:
            headers["Retry-After"] = str(retry)
        if rule.get("maintenance"):
            headers["X-Maintenance-Mode"] = "API maintenance in progress"
        return (status, payload, headers, ctype, None)

    def cut(self, headers):
        """Promise a body, send part of it, drop the connection."""
        body = b'{"data": [{"id": 50000123, "label": "lc-cut", "status": "'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) * 4))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def hangup(self):
        """Close the connection without a byte of answer."""
        self.close_connection = True


# ---------------------------------------------------------------- control

def ctl_rule(body, kind):
    """A fault rule: count uses (-1: until reset) of a Match."""
    count = int(body.get("count", 1))
    if count == 0 or count < -1:
        raise ValueError("count must be a positive number or -1")
    after = int(body.get("after", 0))
    if after < 0:
        raise ValueError("after must not be negative")
    return {"kind": kind, "count": count, "match": Match(body.get("match")),
            "match_text": body.get("match"), "after": after}


def ctl_fail(st, body):
    rule = ctl_rule(body, "fail")
    rule.update({k: body[k] for k in ("status", "retry_after", "body",
                                      "maintenance") if k in body})
    rule["status"] = int(body.get("status", 500))
    st.fails.append(rule)


def ctl_fail_rate(st, body):
    rate = float(body.get("rate", 0))
    if rate <= 0:
        st.fail_rate = None
        return
    st.fail_rate = {"kind": "fail_rate", "rate": rate,
                    "statuses": [int(s) for s in
                                 body.get("statuses", [500, 503])],
                    "match": Match(body.get("match")),
                    "match_text": body.get("match"),
                    "retry_after": body.get("retry_after"),
                    "rng": random.Random(body.get("seed"))}


def ctl_stall(st, body):
    rule = ctl_rule(body, "stall")
    rule["seconds"] = float(body.get("seconds", 5))
    st.stalls.append(rule)


def ctl_create_then_timeout(st, body):
    rule = ctl_rule({"count": body.get("count", 1),
                     "match": "POST /linode/instances$"},
                    "create_then_timeout")
    rule["seconds"] = float(body.get("seconds", 5))
    st.ctt.append(rule)


def ctl_garbage(st, body):
    mode = body.get("mode", "truncated")
    if mode not in ("truncated", "nonjson", "empty", "cut", "hangup"):
        raise ValueError(f"unknown garbage mode {mode}")
    rule = ctl_rule(body, "garbage")
    rule["mode"] = mode
    st.garbage.append(rule)


def ctl_latency(st, body):
    st.config["latency_ms"] = float(body.get("ms", 0))


def ctl_clock(st, body):
    for key in ("provisioning_s", "booting_s", "deleting_s", "volume_s"):
        if key in body:
            st.config[key] = float(body[key])


def ctl_delete_fails(st, body):
    iid = body.get("id")
    match = f"DELETE /linode/instances/{iid}$" if iid is not None \
        else "DELETE /linode/instances/"
    rule = ctl_rule({"count": body.get("count", 1), "match": match},
                    "delete_fails")
    rule.update({k: body[k] for k in ("retry_after", "body") if k in body})
    rule["status"] = int(body.get("status", 500))
    st.fails.append(rule)


def ctl_instance(st, body):
    if isinstance(body, list):
        return [st.ctl_instance(b) for b in body]
    return st.ctl_instance(body)


def ctl_type(st, body):
    """Add a plan or change one (e.g. its price) by id."""
    tid = body["id"]
    base = st.types.get(tid) or copy.deepcopy(st.types["g2-gpu-rtx4000a1-s"])
    base.update(body)
    st.types[tid] = base


def ctl_region(st, body):
    """Change a region's fields by id (e.g. drop "Block Storage" from its
    capabilities)."""
    st.regions[body["id"]].update(body)


def ctl_set(st, body):
    if "token" in body:
        st.token = str(body["token"])
    if "scopes" in body:
        st.config["scopes"] = str(body["scopes"])
    if "ipv4" in body:
        v = body["ipv4"]
        st.config["ipv4"] = [v] if isinstance(v, str) else list(v)
    if "strict" in body:
        st.config["strict"] = bool(body["strict"])
    if "ipv4_next" in body:  # the next creates' addresses, one list each
        st.config["ipv4_next"] = [[v] if isinstance(v, str) else list(v)
                                  for v in body["ipv4_next"]]


def ctl_reset(st, body):
    st.reset()


CTL = {
    "fail": ctl_fail, "fail_rate": ctl_fail_rate, "stall": ctl_stall,
    "create_then_timeout": ctl_create_then_timeout, "garbage": ctl_garbage,
    "latency": ctl_latency, "clock": ctl_clock,
    "delete_fails": ctl_delete_fails, "instance": ctl_instance,
    "type": ctl_type, "region": ctl_region, "set": ctl_set, "reset": ctl_reset,
}


# ---------------------------------------------------------------- main

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state, log_path):
        super().__init__(addr, Handler)
        self.state = state
        self.log_path = log_path
        self.log_lock = threading.Lock()

    def log(self, entry):
        """Append one line to requests.jsonl before the answer goes out.

        Authorization is logged as "Bearer <redacted>" (or "<redacted>",
        or "<none>" when absent); any token found elsewhere in the line
        becomes "<TOKEN-LEAKED>".

        The file is opened per line (O_APPEND) so a test may truncate or
        remove it between requests.
        """
        line = json.dumps(entry, separators=(",", ":"))
        # A client that leaks a token elsewhere (body, query, User-Agent)
        # must not get it written here either; the marker lets a test
        # catch the leak.
        with self.state.lock:
            tokens = [self.state.token] + [t["token"] for t in
                                           self.state.tokens.values()]
        for tok in tokens:
            if tok and tok in line:
                line = line.replace(tok, "<TOKEN-LEAKED>")
        line += "\n"
        with self.log_lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()


def write_atomic(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Fake Linode API v4 for tests.")
    ap.add_argument("--dir", required=True,
                    help="where port, pid and requests.jsonl go")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=DEFAULT_TOKEN)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--fixtures", help="fixtures dir (default $LC_FIXTURES "
                                       "or <repo>/../shared/fixtures)")
    args = ap.parse_args()

    root = fixtures_root(args.fixtures)
    if not os.path.isfile(os.path.join(root, "linodego-recorded",
                                       "regions_list.json")):
        sys.exit(f"api.py: no Linode fixtures in {root} "
                 "(set LC_FIXTURES to shared/fixtures)")
    os.makedirs(args.dir, exist_ok=True)
    schemas = load_schemas()
    state = State(Fixtures(root), args.token, args.latency_ms, schemas)
    server = Server(("127.0.0.1", args.port), state,
                    os.path.join(args.dir, "requests.jsonl"))

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    port_path = os.path.join(args.dir, "port")
    write_atomic(os.path.join(args.dir, "pid"), f"{os.getpid()}\n")
    write_atomic(port_path, f"{server.server_address[1]}\n")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        try:
            os.unlink(port_path)
        except OSError:
            pass


if __name__ == "__main__":
    main()
