#!/usr/bin/env python3
"""Opens COUNT connections to a Unix socket and holds them (the attacker of
tests/tests/workload_api_limits.rs, run as another uid).

Usage: hold_conns.py SOCKET COUNT

After opening them all it waits SETTLE seconds, then prints one JSON line:
{"uid": ..., "opened": connects that succeeded, "failed": connects that failed,
 "open": connections still open, "closed": connections the server closed}.
Each later line on stdin repeats the check and the report; it exits at end of input,
closing everything. Nothing is sent on the connections: they are idle.
"""
import json
import os
import select
import socket
import sys
import time

SETTLE = 2.0


def check(conns):
    """Drops the connections the server closed; returns how many it closed."""
    closed = 0
    alive = []
    poller = select.poll()
    for c in conns:
        poller.register(c, select.POLLIN | select.POLLHUP)
    ready = {fd for fd, _ in poller.poll(0)}
    for c in conns:
        if c.fileno() not in ready:
            alive.append(c)
            continue
        try:
            data = c.recv(65536)
        except (BlockingIOError, InterruptedError):
            alive.append(c)
            continue
        except OSError:
            data = b""
        if data:
            alive.append(c)  # the server's HTTP/2 SETTINGS: still open
        else:
            closed += 1
            c.close()
    return alive, closed


def main():
    path, count = sys.argv[1], int(sys.argv[2])
    conns, failed, closed = [], 0, 0
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(path)
        except OSError:
            failed += 1
            s.close()
            continue
        s.setblocking(False)
        conns.append(s)
    opened = len(conns)
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        conns, n = check(conns)
        closed += n
        time.sleep(0.1)

    def report():
        nonlocal conns, closed
        conns, n = check(conns)
        closed += n
        print(json.dumps({"uid": os.getuid(), "opened": opened, "failed": failed,
                          "open": len(conns), "closed": closed}), flush=True)

    report()
    for _ in sys.stdin:
        report()


if __name__ == "__main__":
    main()
