#!/usr/bin/env python3
"""Fake vLLM server for linode-coder's tests (Python 3 stdlib only).

Speaks the parts of vLLM's OpenAI-compatible server the tools use, with the
same shapes and quirks: /health, /v1/models (with max_model_len),
/v1/chat/completions and /v1/completions (streaming and not), and /metrics
with vLLM's Prometheus names. The gauges and counters are real: a long
streaming request keeps vllm:num_requests_running at 1, and the token counters
grow by the tokens requests actually used, so lc-watch's idle logic and
lc-bench's timings are tested against behaviour, not canned text.

    python3 tests/servers/vllm.py --dir DIR [--port 0] [--api-key KEY]
        [--model coder] [--model-path REPO] [--max-model-len 32768]
        [--ready-after-s S] [--not-ready refuse|503] [--ttft-ms N]
        [--token-ms N] [--reply TEXT] [--max-num-seqs N]
        [--metrics-style v1|v0] [--host 127.0.0.1] [--eos-after N]
        [--stop-early N] [--fail-every K] [--cut-after N] [--cut-every K]
        [--stall-every K] [--tokens-per-chunk K]

Tokens are paced on a fixed schedule from the first (token i at TTFT +
i * token_ms), so a late wake-up on a loaded machine is made up by the
next token, as a GPU's steady decode rate is: a client measuring the rate
of a whole reply sees the rate set. With max_tokens the reply has that many
tokens when the request asks for ignore_eos, as vLLM's has; without it,
--eos-after N ends it after N (the model's end of sequence). Faults for
lc-bench's tests, counted over chat and text completions: --stop-early N
ends every reply after N tokens (finish "stop", usage says N);
--fail-every K answers every K-th request with a 500; --cut-after N closes
the connection after N tokens of every --cut-every K-th stream (default
every one), without [DONE]; --stall-every K makes every K-th stream go
silent after its first token and never finish. --tokens-per-chunk K sends
K tokens in each content chunk, as a server with multi-step scheduling or
speculative decoding does.

Writes DIR/port and DIR/pid (atomically, once the port is bound) and appends
one JSON line per request (never the API key) to DIR/requests.jsonl.

Control, no auth, as real vLLM has none of it:
    POST /__ctl/set        {"healthy", "ttft_ms", "token_ms", "running",
                            "waiting", "ready_after_s", "reply",
                            "max_num_seqs", "api_key"}
    POST /__ctl/restart    zero the counters as a container restart does;
                           optional {"ready_after_s": S}
    POST /__ctl/add_tokens {"prompt": N, "generation": N}
    GET  /__ctl/state
"""

import argparse
import json
import math
import os
import re
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# vLLM's own bucket boundaries (vllm/v1/metrics/loggers.py), so a parser
# that works here works on the real thing.
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
                640.0, 2560.0]
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
               0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
               30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
               7680.0]
FINISH_REASONS = ("stop", "length", "abort")
DEFAULT_REPLY = ("Sure. Here is a function that adds two numbers:\n\n"
                 "def add(a, b):\n    return a + b\n")
SETTABLE = {"healthy", "ttft_ms", "token_ms", "running", "waiting",
            "ready_after_s", "reply", "max_num_seqs", "api_key",
            "fail_completions", "eos_after", "stop_early", "fail_every",
            "cut_after", "cut_every", "stall_every", "tokens_per_chunk"}
FAULTS = ("eos_after", "stop_early", "fail_every", "cut_after", "cut_every",
          "stall_every", "tokens_per_chunk")


def go_float(d):
    """Format a number the way prometheus_client does (Go style)."""
    d = float(d)
    if d == math.inf:
        return "+Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return s


def tokenize(text):
    """Split text into word-ish tokens, each keeping its leading space."""
    return re.findall(r"\s*\S+", text) or [text]


def count_tokens(text):
    """A deterministic stand-in for a tokenizer: words and punctuation."""
    return len(re.findall(r"\w+|[^\w\s]", text))


class Histogram:
    """A Prometheus histogram: cumulative buckets, sum and count."""

    def __init__(self, buckets):
        self.bounds = list(buckets) + [math.inf]
        self.reset()

    def reset(self):
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.n = 0
        self.created = time.time()

    def observe(self, v):
        for i, b in enumerate(self.bounds):
            if v <= b:
                self.counts[i] += 1
        self.total += v
        self.n += 1


class Engine:
    """Everything the handlers share; one lock guards it all."""

    def __init__(self, args):
        self.lock = threading.Condition()
        self.served = args.model
        self.root = args.model_path
        self.max_model_len = args.max_model_len
        self.style = args.metrics_style
        self.not_ready = args.not_ready
        self.started = time.time()
        self.settings = {
            "healthy": True, "ttft_ms": args.ttft_ms,
            "token_ms": args.token_ms, "running": None, "waiting": None,
            "reply": args.reply, "max_num_seqs": args.max_num_seqs,
            "api_key": args.api_key, "fail_completions": False,
        }
        for k in FAULTS:
            self.settings[k] = getattr(args, k)
        self.completions = 0
        self.ready_at = time.monotonic() + args.ready_after_s
        self.live_running = 0
        self.live_waiting = 0
        self.requests = 0
        self.restarts = 0
        self.log_path = os.path.join(args.dir, "requests.jsonl")
        self.zero()

    def zero(self):
        """Counters as a fresh process has them (lock held or at init)."""
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = {r: 0 for r in FINISH_REASONS}
        self.counters_created = time.time()
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)

    def get(self, key):
        with self.lock:
            return self.settings[key]

    def ready(self):
        return time.monotonic() >= self.ready_at

    def next_completion(self):
        """The number of this completion request, from 1."""
        with self.lock:
            self.completions += 1
            return self.completions

    def admit(self):
        """Wait for a batch slot like vLLM's scheduler (max_num_seqs)."""
        with self.lock:
            self.live_waiting += 1
            while self.live_running >= self.settings["max_num_seqs"]:
                self.lock.wait()
            self.live_waiting -= 1
            self.live_running += 1
            self.requests += 1

    def release(self, reason):
        with self.lock:
            self.live_running -= 1
            self.success[reason] += 1
            self.lock.notify()

    def add(self, prompt=0, generation=0):
        with self.lock:
            self.prompt_tokens += prompt
            self.generation_tokens += generation

    def observe(self, hist, v):
        with self.lock:
            hist.observe(v)

    def log(self, rec):
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)

    def state(self):
        with self.lock:
            s = dict(self.settings)
            s["api_key"] = s["api_key"] is not None   # never echo the key
            return {
                "settings": s, "ready": self.ready(),
                "running": self.live_running, "waiting": self.live_waiting,
                "prompt_tokens_total": self.prompt_tokens,
                "generation_tokens_total": self.generation_tokens,
                "request_success_total": dict(self.success),
                "requests": self.requests, "restarts": self.restarts,
                "model": self.served, "root": self.root,
                "max_model_len": self.max_model_len,
            }

    def metrics(self):
        """Prometheus text in vLLM's names, units and label order."""
        with self.lock:
            return self._metrics()

    def _metrics(self):
        if self.style == "v1":
            lab = f'model_name="{self.served}",engine="0"'
        else:
            lab = f'model_name="{self.served}"'
        out = []

        def metric(name, kind, help_, samples):
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for suffix, labels, value in samples:
                out.append(f"{name}{suffix}{{{labels}}} {go_float(value)}")

        def counter(name, help_, value, labels=lab, created=None):
            created = created or self.counters_created
            out.append(f"# HELP {name}_total {help_}")
            out.append(f"# TYPE {name}_total counter")
            out.append(f"{name}_total{{{labels}}} {go_float(value)}")
            # prometheus_client adds a _created series to every counter.
            out.append(f"{name}_created{{{labels}}} {go_float(created)}")

        def histogram(name, help_, h):
            samples = []
            for b, c in zip(h.bounds, h.counts):
                samples.append(("_bucket", f'{lab},le="{go_float(b)}"', c))
            samples += [("_count", lab, h.n), ("_sum", lab, h.total),
                        ("_created", lab, h.created)]
            metric(name, "histogram", help_, samples)

        s = self.settings
        running = self.live_running if s["running"] is None else s["running"]
        waiting = self.live_waiting if s["waiting"] is None else s["waiting"]
        out += [
            "# HELP python_gc_objects_collected_total Objects collected "
            "during gc",
            "# TYPE python_gc_objects_collected_total counter",
            'python_gc_objects_collected_total{generation="0"} 12873.0',
            "# HELP process_start_time_seconds Start time of the process "
            "since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {go_float(round(self.started, 2))}",
        ]
        metric("vllm:num_requests_running", "gauge",
               "Number of requests in model execution batches.",
               [("", lab, running)])
        metric("vllm:num_requests_waiting", "gauge",
               "Number of requests waiting to be processed.",
               [("", lab, waiting)])
        if self.style == "v1":
            metric("vllm:kv_cache_usage_perc", "gauge",
                   "KV-cache usage. 1 means 100 percent usage.",
                   [("", lab, min(1.0, running * 0.01))])
        else:
            metric("vllm:gpu_cache_usage_perc", "gauge",
                   "GPU KV-cache usage. 1 means 100 percent usage.",
                   [("", lab, min(1.0, running * 0.01))])
        counter("vllm:num_preemptions", "Cumulative number of preemption "
                "from the engine.", 0)
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                self.prompt_tokens)
        counter("vllm:generation_tokens", "Number of generation tokens "
                "processed.", self.generation_tokens)
        out.append("# HELP vllm:request_success_total Count of successfully "
                   "processed requests.")
        out.append("# TYPE vllm:request_success_total counter")
        for r in FINISH_REASONS:
            rl = f'{lab},finished_reason="{r}"'
            out.append(f"vllm:request_success_total{{{rl}}} "
                       f"{go_float(self.success[r])}")
            out.append(f"vllm:request_success_created{{{rl}}} "
                       f"{go_float(self.counters_created)}")
        histogram("vllm:time_to_first_token_seconds",
                  "Histogram of time to first token in seconds.", self.ttft)
        if self.style == "v1":
            histogram("vllm:inter_token_latency_seconds",
                      "Histogram of inter-token latency in seconds.",
                      self.itl)
        else:
            histogram("vllm:time_per_output_token_seconds",
                      "Histogram of time per output token in seconds.",
                      self.itl)
        histogram("vllm:e2e_request_latency_seconds",
                  "Histogram of e2e request latency in seconds.", self.e2e)
        return "\n".join(out) + "\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # lc-bench opens up to 200 connections at once; the default backlog
    # of 5 would turn that into SYN retries and bogus latencies.
    request_queue_size = 1024
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    # Stream chunks and small answers go out at once, not after Nagle.
    disable_nagle_algorithm = True
    # HTTP/1.1 with chunked streaming and keep-alive, as uvicorn does.
    protocol_version = "HTTP/1.1"
    timeout = 120
    engine = None   # set in main()

    def version_string(self):
        return "uvicorn"

    def log_message(self, fmt, *args):
        sys.stderr.write("vllm.py: %s %s\n" % (self.address_string(),
                                              fmt % args))

    # -- plumbing ---------------------------------------------------------

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def reply(self, code, body, ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"))
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, message, type_="BadRequestError", param=None):
        self.reply(code, {"error": {"message": message, "type": type_,
                                    "param": param, "code": code}})

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def json_body(self):
        """The request's JSON object, or None after answering 400."""
        try:
            body = json.loads(self.read_body() or b"{}")
        except ValueError as e:
            self.error(400, f"invalid JSON body: {e}")
            return None
        if not isinstance(body, dict):
            self.error(400, "the body must be a JSON object")
            return None
        return body

    def reset_connection(self):
        """Abort with a TCP RST: what a client sees from a port that is
        not listening yet, as while real vLLM loads its weights."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
        self._status = 0

    def authorized(self):
        key = self.engine.get("api_key")
        if key is None:
            return True
        got = self.headers.get("authorization", "")
        return got == f"Bearer {key}"

    # -- dispatch ---------------------------------------------------------

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        # TTFT counts from here, when the request has arrived, as a
        # server's queueing is part of what a client waits for.
        self._arrived = time.monotonic()
        self._status = 0
        self._note = {}
        path = self.path.split("?", 1)[0]
        started = time.time()
        try:
            if path.startswith("/__ctl/"):
                return self.control(method, path[len("/__ctl/"):])
            if not self.engine.ready():
                if self.engine.not_ready == "refuse":
                    return self.reset_connection()
                return self.reply(503, "", "text/plain")
            self.route(method, path)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                socket.timeout):
            self.close_connection = True
        finally:
            if not path.startswith("/__ctl/"):
                rec = {"t": round(started, 3), "method": method, "path": path,
                       "status": self._status}
                rec.update(self._note)
                self.engine.log(rec)

    def route(self, method, path):
        routes = {
            ("GET", "/health"): self.health,
            ("GET", "/ping"): self.health,
            ("POST", "/ping"): self.health,
            ("GET", "/version"): lambda: self.reply(200,
                                                    {"version": "0.11.0"}),
            ("GET", "/metrics"): lambda: self.reply(
                200, self.engine.metrics(),
                "text/plain; version=0.0.4; charset=utf-8"),
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/chat/completions"): lambda: self.generate(True),
            ("POST", "/v1/completions"): lambda: self.generate(False),
        }
        # vLLM's auth middleware covers /v1 only; /health and /metrics
        # stay open even with --api-key.
        if path.startswith("/v1"):
            ok = self.authorized()
            self._note["auth_ok"] = ok
            if not ok:
                self.read_body()    # keep the connection in step
                return self.reply(401, {"error": "Unauthorized"})
        fn = routes.get((method, path))
        if fn is None:
            if any(p == path for _, p in routes):
                return self.reply(405, {"detail": "Method Not Allowed"})
            return self.reply(404, {"detail": "Not Found"})
        fn()

    # -- OpenAI / vLLM endpoints -------------------------------------------

    def health(self):
        self.reply(200 if self.engine.get("healthy") else 503, "",
                   "text/plain")

    def models(self):
        e = self.engine
        self.reply(200, {"object": "list", "data": [{
            "id": e.served, "object": "model", "created": int(time.time()),
            "owned_by": "vllm", "root": e.root, "parent": None,
            "max_model_len": e.max_model_len,
            "permission": [{"id": "modelperm-" + uuid.uuid4().hex,
                            "object": "model_permission",
                            "created": int(time.time()),
                            "allow_create_engine": False,
                            "allow_sampling": True, "allow_logprobs": True,
                            "allow_search_indices": False,
                            "allow_view": True, "allow_fine_tuning": False,
                            "organization": "*", "group": None,
                            "is_blocking": False}]}]})

    def prompt_of(self, body, chat):
        """Prompt token count, or None after answering 400."""
        if chat:
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs:
                self.error(400, "'messages' must be a non-empty list",
                           param="messages")
                return None
            n = 3   # the chat template's closing tokens
            for m in msgs:
                content = m.get("content") if isinstance(m, dict) else None
                if isinstance(content, list):
                    content = " ".join(p.get("text", "") for p in content
                                       if isinstance(p, dict))
                n += 4 + count_tokens(content or "")
            return n
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = " ".join(str(p) for p in prompt)
        if not isinstance(prompt, str):
            self.error(400, "'prompt' is required", param="prompt")
            return None
        return max(1, count_tokens(prompt))

    def generate(self, chat):
        e = self.engine
        body = self.json_body()
        if body is None:
            return
        model = body.get("model")
        stream = bool(body.get("stream"))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        ignore_eos = body.get("ignore_eos") is True
        self._note.update(model=model, stream=stream, max_tokens=max_tokens,
                          ignore_eos=ignore_eos)
        k = e.next_completion()
        fail_every = e.get("fail_every")
        if model is not None and model not in (e.served, e.root):
            return self.error(404, f"The model `{model}` does not exist.",
                              "NotFoundError", "model")
        if (not e.get("healthy") or e.get("fail_completions") or
                (fail_every and k % fail_every == 0)):
            # What clients get once the engine core has died (or, with
            # fail_completions, while /health still says 200).
            return self.error(500, "EngineCore encountered an issue. See "
                              "stack trace (above) for the root cause.",
                              "InternalServerError")
        prompt = self.prompt_of(body, chat)
        if prompt is None:
            return
        if max_tokens is not None and (not isinstance(max_tokens, int) or
                                       isinstance(max_tokens, bool) or
                                       max_tokens < 1):
            return self.error(400, "max_tokens must be at least 1, got "
                              f"{max_tokens}.", param="max_tokens")
        if prompt + (max_tokens or 0) > e.max_model_len:
            return self.error(400, "This model's maximum context length is "
                              f"{e.max_model_len} tokens. However, you "
                              f"requested {prompt + (max_tokens or 0)} tokens "
                              f"({prompt} in the messages, {max_tokens or 0} "
                              "in the completion). Please reduce the length "
                              "of the messages or completion.",
                              param="input_tokens")
        words = tokenize(e.get("reply"))
        if max_tokens is None:
            n = min(len(words), e.max_model_len - prompt)
            finish = "stop"
        else:
            n, finish = max_tokens, "length"
            eos = e.get("eos_after")
            if eos is not None and not ignore_eos and eos < n:
                n, finish = eos, "stop"
        early = e.get("stop_early")
        if early is not None and early < n:
            n, finish = early, "stop"
        tokens = [words[i % len(words)] for i in range(n)]
        cut_every, stall_every = e.get("cut_every") or 1, e.get("stall_every")
        self._note["prompt_tokens"] = prompt
        opts = body.get("stream_options") or {}
        usage_wanted = isinstance(opts, dict) and opts.get("include_usage")
        ctx = {"chat": chat, "prompt": prompt, "tokens": tokens,
               "finish": finish, "usage": bool(usage_wanted),
               "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
               "created": int(time.time()),
               "cut": (e.get("cut_after") if k % cut_every == 0 else None),
               "stall": bool(stall_every and k % stall_every == 0)}
        e.admit()
        reason, sent = "abort", 0
        try:
            if stream:
                sent = self.stream(ctx)
            else:
                sent = self.complete(ctx)
            reason = finish
        finally:
            self._note["completion_tokens"] = sent
            e.release(reason)

    def produce(self, ctx):
        """Yield tokens at the configured pace, updating the metrics the
        way the engine does: prompt tokens at prefill, then one
        generation token per step."""
        e = self.engine
        t0 = self._arrived
        sleep_until(t0 + e.get("ttft_ms") / 1000.0)
        e.add(prompt=ctx["prompt"])
        first = last = time.monotonic()
        e.observe(e.ttft, last - t0)
        for i, tok in enumerate(ctx["tokens"]):
            if i > 0:
                sleep_until(first + i * e.get("token_ms") / 1000.0)
                now = time.monotonic()
                e.observe(e.itl, now - last)
                last = now
            e.add(generation=1)
            yield tok
        e.observe(e.e2e, time.monotonic() - t0)

    def usage(self, ctx, sent):
        return {"prompt_tokens": ctx["prompt"],
                "total_tokens": ctx["prompt"] + sent,
                "completion_tokens": sent, "prompt_tokens_details": None}

    def complete(self, ctx):
        text = "".join(self.produce(ctx))
        n = len(ctx["tokens"])
        if ctx["chat"]:
            choice = {"index": 0, "message": {
                "role": "assistant", "content": text, "refusal": None,
                "annotations": None, "audio": None, "function_call": None,
                "tool_calls": [], "reasoning_content": None},
                "logprobs": None, "finish_reason": ctx["finish"],
                "stop_reason": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None,
                      "finish_reason": ctx["finish"], "stop_reason": None,
                      "prompt_logprobs": None}
            obj = "text_completion"
        self.reply(200, {"id": ctx["id"], "object": obj,
                         "created": ctx["created"],
                         "model": self.engine.served, "choices": [choice],
                         "usage": self.usage(ctx, n),
                         "prompt_logprobs": None, "kv_transfer_params": None})
        return n

    def chunk(self, data):
        """One HTTP chunk holding one server-sent event."""
        payload = ("data: " + (data if isinstance(data, str) else
                               json.dumps(data, separators=(",", ":")))
                   + "\n\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def stream(self, ctx):
        """Server-sent events as vLLM sends them; returns tokens sent.
        A client that goes away raises out of here (counted as abort)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        obj = "chat.completion.chunk" if ctx["chat"] else "text_completion"
        head = {"id": ctx["id"], "object": obj, "created": ctx["created"],
                "model": self.engine.served}
        n = len(ctx["tokens"])
        per = self.engine.get("tokens_per_chunk") or 1
        sent, held = 0, ""
        for i, tok in enumerate(self.produce(ctx)):
            if per > 1:
                held += tok
                if (i + 1) % per and i != n - 1:
                    continue    # more tokens go in this chunk
                tok, held = held, ""
            if ctx["cut"] is not None and i == ctx["cut"]:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return sent
            if ctx["stall"] and i == 1:
                while True:     # silent until the client gives up
                    time.sleep(0.5)
            finish = ctx["finish"] if i == n - 1 else None
            if ctx["chat"]:
                if sent == 0:
                    # vLLM opens with the role in its own delta.
                    self.chunk(dict(head, choices=[{
                        "index": 0, "delta": {"role": "assistant",
                                              "content": ""},
                        "logprobs": None, "finish_reason": None}]))
                choice = {"index": 0, "delta": {"content": tok},
                          "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": tok, "logprobs": None,
                          "finish_reason": finish, "stop_reason": None}
            if finish is not None:
                choice["stop_reason"] = None
            self.chunk(dict(head, choices=[choice]))
            sent = i + 1
        if ctx["usage"]:
            self.chunk(dict(head, choices=[], usage=self.usage(ctx, sent)))
        self.chunk("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return sent

    # -- control --------------------------------------------------------------

    def control(self, method, name):
        e = self.engine
        if method == "GET" and name == "state":
            return self.reply(200, e.state())
        if method != "POST":
            return self.reply(405, {"detail": "Method Not Allowed"})
        body = self.json_body()
        if body is None:
            return
        if name == "set":
            bad = sorted(set(body) - SETTABLE)
            if bad:
                return self.error(400, f"unknown settings {bad}; known: "
                                  f"{sorted(SETTABLE)}")
            with e.lock:
                if "ready_after_s" in body:
                    e.ready_at = (time.monotonic() +
                                  float(body.pop("ready_after_s")))
                e.settings.update(body)
                e.lock.notify_all()   # max_num_seqs may have grown
        elif name == "restart":
            with e.lock:
                e.zero()
                e.restarts += 1
                e.ready_at = (time.monotonic() +
                              float(body.get("ready_after_s", 0)))
        elif name == "add_tokens":
            e.add(prompt=int(body.get("prompt", 0)),
                  generation=int(body.get("generation", 0)))
        else:
            return self.reply(404, {"detail": f"no control '{name}'"})
        self.reply(200, e.state())


def sleep_until(t):
    """Sleep until monotonic time t (at once when it has passed)."""
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (vLLM's --host)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key")
    p.add_argument("--model", default="coder", help="served model name")
    p.add_argument("--model-path", default="Qwen/Qwen2.5-Coder-7B-Instruct",
                   help="what /v1/models reports as root")
    p.add_argument("--max-model-len", type=int, default=32768)
    p.add_argument("--ready-after-s", type=float, default=0.0)
    p.add_argument("--not-ready", choices=("refuse", "503"), default="refuse",
                   help="refuse: the port does not accept until ready, "
                   "like vllm serve while it loads; 503: answer 503")
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--token-ms", type=float, default=0.0)
    p.add_argument("--reply", default=DEFAULT_REPLY)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--metrics-style", choices=("v1", "v0"), default="v1")
    p.add_argument("--eos-after", type=int,
                   help="without ignore_eos, end a reply after N tokens")
    p.add_argument("--stop-early", type=int,
                   help="end every reply after N tokens")
    p.add_argument("--fail-every", type=int,
                   help="answer every K-th completion request with a 500")
    p.add_argument("--cut-after", type=int,
                   help="close the connection after N tokens of a stream")
    p.add_argument("--cut-every", type=int,
                   help="--cut-after only every K-th stream (default all)")
    p.add_argument("--stall-every", type=int,
                   help="every K-th stream goes silent after one token")
    p.add_argument("--tokens-per-chunk", type=int,
                   help="send K tokens in each content chunk")
    args = p.parse_args()
    # Many streams share one interpreter: hand the GIL over often, so
    # that a token due now is not held up 5 ms (the default) by others.
    sys.setswitchinterval(0.0005)
    os.makedirs(args.dir, exist_ok=True)

    Handler.engine = Engine(args)
    srv = Server((args.host, args.port), Handler, bind_and_activate=False)
    srv.server_bind()   # the port is ours from here; nobody can take it
    # A bound socket that is not listening refuses connections, which is
    # what real vLLM's port does until the weights are loaded.
    delay = args.ready_after_s if args.not_ready == "refuse" else 0
    if delay <= 0:
        srv.server_activate()
    write_atomic(os.path.join(args.dir, "pid"), f"{os.getpid()}\n")
    write_atomic(os.path.join(args.dir, "port"),
                 f"{srv.server_address[1]}\n")
    if delay > 0:
        time.sleep(delay)
        srv.server_activate()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
