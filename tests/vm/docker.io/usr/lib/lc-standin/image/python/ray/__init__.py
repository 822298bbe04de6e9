"""Stand-in Ray (linode-coder VM boot test), in the stand-in vLLM image.

`ray start --head` starts a head that keeps the nodes which join it over
TCP, at the head's address (port 6379); `ray start --block --address=HEAD`
joins from the node's own address and stays, joining again every 2 s; a
node not heard from for 10 s is dead. `ray status` prints the head's nodes
and GPUs as Ray does; ray.init() and ray.nodes() answer the same for
`docker exec vllm python3 -c`. Standard library only.
"""
import datetime
import hashlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time

ADDRESS_FILE = "/tmp/ray/ray_current_cluster"
TTL_S = 10
_address = None


def _gpus():
    """The GPUs nvidia-smi lists on this node."""
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=index",
                            "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if p.returncode != 0:
        return 0
    return len([line for line in p.stdout.splitlines() if line.strip()])


def _ask(address, line, source=None, timeout=5):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout,
                                  source_address=(source, 0) if source
                                  else None) as s:
        s.sendall((line + "\n").encode())
        f = s.makefile("r")
        return f.readline()


def _node(addr, gpus):
    return {"NodeID": hashlib.sha1(addr.encode()).hexdigest(),
            "Alive": True, "NodeManagerAddress": addr,
            "Resources": {"GPU": float(gpus)}}


def _serve(addr, port, gpus, watch):
    """The head: NODES by address; ends with the container (pid watch)."""
    nodes = {addr: (gpus, float("inf"))}
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            words = self.rfile.readline().decode().split()
            if len(words) == 3 and words[0] == "join":
                with lock:
                    nodes[words[1]] = (int(words[2]), time.time() + TTL_S)
                self.wfile.write(b"ok\n")
            elif words == ["nodes"]:
                now = time.time()
                with lock:
                    alive = [_node(a, g) for a, (g, until) in nodes.items()
                             if until > now]
                self.wfile.write((json.dumps(alive) + "\n").encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer((addr, port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    while True:
        try:
            os.kill(watch, 0)
        except OSError:
            srv.shutdown()
            return
        time.sleep(1)


def _opt(args, name, default=None):
    for a in args:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def _start(args):
    addr = _opt(args, "--node-ip-address", "127.0.0.1")
    if "--head" in args:
        port = int(_opt(args, "--port", "6379"))
        subprocess.Popen([sys.executable, "-c",
                          "import ray, sys; ray._serve(sys.argv[1], "
                          "int(sys.argv[2]), int(sys.argv[3]), "
                          "int(sys.argv[4]))",
                          addr, str(port), str(_gpus()), str(os.getppid())],
                         start_new_session=True, stdin=subprocess.DEVNULL)
        address = f"{addr}:{port}"
        for _ in range(100):
            try:
                _ask(address, "nodes")
                break
            except OSError:
                time.sleep(0.1)
        else:
            print(f"ray: the head did not listen on {address}",
                  file=sys.stderr)
            return 1
        os.makedirs(os.path.dirname(ADDRESS_FILE), exist_ok=True)
        with open(ADDRESS_FILE, "w", encoding="ascii") as f:
            f.write(address + "\n")
        print(f"Ray runtime started. Local node IP: {addr}", flush=True)
        return 0
    head = _opt(args, "--address")
    gpus = _gpus()
    said = False
    while True:
        try:
            _ask(head, f"join {addr} {gpus}", source=addr)
            if not said:
                print(f"Ray runtime started. Joined {head} from {addr} "
                      f"with {gpus} GPUs", flush=True)
                said = True
        except OSError as e:
            print(f"ray: cannot reach the head at {head}: {e}", flush=True)
        time.sleep(2)


def _current():
    if os.environ.get("RAY_ADDRESS", "auto") != "auto":
        return os.environ["RAY_ADDRESS"]
    with open(ADDRESS_FILE, encoding="ascii") as f:
        return f.read().strip()


def init(address="auto", **_kw):
    """Connect to the running head."""
    global _address
    _address = _current() if address == "auto" else address
    _ask(_address, "nodes")


def nodes():
    """The nodes alive in the cluster."""
    return json.loads(_ask(_address or _current(), "nodes"))


def _status():
    try:
        alive = json.loads(_ask(_current(), "nodes"))
    except (OSError, ValueError):
        print("ConnectionError: Could not find any running Ray instance. "
              "Please specify the one to connect to by setting `--address` "
              "flag or `RAY_ADDRESS` environment variable.", file=sys.stderr)
        return 1
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
    gpus = sum(n["Resources"]["GPU"] for n in alive)
    print(f"======== Autoscaler status: {now} ========")
    print("Node status")
    print("-" * 63)
    print("Active:")
    for n in alive:
        print(f" 1 node_{n['NodeID']}")
    print("Pending:\n (no pending nodes)\nRecent failures:\n (no failures)")
    print()
    print("Resources")
    print("-" * 63)
    print("Usage:")
    print(f" 0.0/{gpus:.1f} GPU")
    return 0


def main(argv):
    if argv[:1] == ["start"]:
        return _start(argv[1:])
    if argv[:1] == ["status"]:
        return _status()
    print(f"ray stand-in: unsupported command {' '.join(argv)}",
          file=sys.stderr)
    return 1
