#!/usr/bin/env python3
"""A loopback TCP proxy that delays each direction, standing in for distance.

    python3 bench/delayproxy.py --target 127.0.0.1:PORT [--delay-ms 150]
                                [--port 0] [--port-file FILE]

Every byte read from one side is written to the other delay-ms later, in
order, so a round trip through the proxy takes twice delay-ms more than it
would. Connections are independent; any number may be open at once. Writes
the port it listens on to --port-file (atomically) once it listens.
Python 3 standard library only.
"""

import argparse
import asyncio
import os


async def pipe(reader, writer, delay):
    """Copy reader to writer, each chunk delay seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def pump():
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError):
                data = b""
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return

    await asyncio.gather(pump(), deliver())


async def handle(creader, cwriter, target, delay):
    host, port = target
    try:
        sreader, swriter = await asyncio.open_connection(host, port)
    except OSError:
        cwriter.close()
        return
    await asyncio.gather(pipe(creader, swriter, delay),
                         pipe(sreader, cwriter, delay))
    for w in (cwriter, swriter):
        try:
            w.close()
        except OSError:
            pass


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="HOST:PORT")
    p.add_argument("--delay-ms", type=float, default=150.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    args = p.parse_args()
    host, _, port = args.target.rpartition(":")
    target = (host or "127.0.0.1", int(port))
    delay = args.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target, delay), "127.0.0.1", args.port,
        backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{bound}\n")
        os.replace(tmp, args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
