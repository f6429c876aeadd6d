#!/usr/bin/python3
"""faultproxy.py -- a TCP proxy for fault-injection tests: it forwards one
listening port to one target and, on command, delays, stalls or resets the
connections that pass through it. Standard library only (asyncio).

Run (tests/lib/faultproxy.sh does this for you: proxy_start NAME TARGET_PORT):

  faultproxy.py --target HOST:PORT --listen PORT --control PORT [--ready-file F]

  --listen PORT     port on 127.0.0.1 that clients connect to (0 = any free one)
  --control PORT    port on 127.0.0.1 for the control commands below (0 = any)
  --ready-file F    written once both ports listen: "listen=P control=C\\n"
                    (write then rename, so a reader never sees half a line)
  Log lines ("faultproxy: ...", one per connection, mode change and fault)
  go to stderr.

Control protocol: connect to the control port, send one command per line,
read one reply line per command ("ok ..." or "error ..."). From bash:
  exec 3<>/dev/tcp/127.0.0.1/$CONTROL; echo "mode stall" >&3; read -r reply <&3

  mode pass         forward everything as it comes (the start mode)
  mode delay MS     hold every chunk MS milliseconds before forwarding it, in
                    both directions (order is kept; a slow link)
  mode stall        move no byte in either direction and stop reading, so the
                    senders' socket buffers fill as on a dead link; every
                    connection stays open. New connections are accepted but
                    not connected onward: they get no byte back (a TCP
                    connect succeeds, the protocol handshake never answers).
                    Leaving the stall (any other mode) lets everything flow
                    again, pending data included.
  mode reset        reset (RST, SO_LINGER 0) every open connection now, and
                    every new connection as soon as it is accepted
  kill              reset every open connection now; the mode stays as it is
  reset-on DIR PATTERN [COUNT]
                    arm a pattern: the next COUNT times (default 1) a
                    connection's DIR stream contains PATTERN, that connection
                    is reset at once -- the chunk holding the pattern is NOT
                    delivered to the other side; the target side is closed.
                    DIR is c2s (client to target) or s2c (target to client).
                    PATTERN is text with Python escapes (\\x00, \\n, \\\\) or
                    hex:414243. Matches across chunk boundaries. Examples for
                    PostgreSQL (the worker pipelines INSERT, COMMIT, Sync):
                      reset-on c2s COMMIT\\x00   the COMMIT never reaches the
                                                server: rolled back, and the
                                                client cannot know
                      reset-on s2c COMMIT\\x00   the server committed, its
                                                answer is lost: committed, and
                                                the client cannot know
  disarm            forget the armed pattern
  stats             one JSON object: mode, delay_ms, conns_total, conns_open,
                    c2s_bytes, s2c_bytes, resets (connections reset by mode
                    reset, kill or a pattern), pattern_hits, armed (hits left)
  get KEY           one value from stats
  quit              stop the proxy (resets nothing: connections are closed)

Every command is handled in order on the proxy's one event loop, so after
the reply the change is in force: "mode stall" answered means no further
byte moves; "kill" answered means every connection open at that moment
has been reset.
"""
import argparse
import asyncio
import codecs
import json
import os
import socket
import struct
import sys
import time

LINGER_RST = struct.pack("ii", 1, 0)
CHUNK = 65536


def log(msg):
    t = time.time()
    sys.stderr.write("faultproxy: %s.%03d %s\n" % (time.strftime("%H:%M:%S", time.localtime(t)),
                                                  int(t * 1000) % 1000, msg))
    sys.stderr.flush()


def rst_close(sock):
    """Closes sock so that the peer gets a RST, not a FIN."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def parse_pattern(text):
    if text.startswith("hex:"):
        return bytes.fromhex(text[4:])
    return codecs.decode(text.encode("latin-1"), "unicode_escape").encode("latin-1")


class Conn:
    def __init__(self, proxy, num, client):
        self.proxy = proxy
        self.num = num
        self.client = client
        self.target = None
        self.tasks = []
        self.closed = False
        self.tail = {"c2s": b"", "s2c": b""}


class Proxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.loop = asyncio.get_running_loop()
        self.mode = "pass"
        self.delay_ms = 0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.conns = set()
        self.st = {"conns_total": 0, "c2s_bytes": 0, "s2c_bytes": 0, "resets": 0, "pattern_hits": 0}
        self.pattern = None      # (dir, bytes)
        self.armed = 0

    # ---- connections ----------------------------------------------------

    async def serve_client(self, client):
        self.st["conns_total"] += 1
        c = Conn(self, self.st["conns_total"], client)
        self.conns.add(c)
        log("conn %d accepted (mode %s)" % (c.num, self.mode))
        try:
            if self.mode == "reset":
                self.reset(c, "mode reset")
                return
            await self.flowing.wait()
            if c.closed:
                return
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.setblocking(False)
            t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                await self.loop.sock_connect(t, self.target)
            except OSError as e:
                log("conn %d: target %s:%d: %s; resetting the client" % (c.num, self.target[0], self.target[1], e))
                t.close()
                self.reset(c, "target unreachable")
                return
            if c.closed:
                t.close()
                return
            c.target = t
            c.tasks = [asyncio.ensure_future(self.pump(c, "c2s", client, t)),
                       asyncio.ensure_future(self.pump(c, "s2c", t, client))]
            await asyncio.gather(*c.tasks, return_exceptions=True)
        finally:
            self.close(c)

    async def pump(self, c, d, src, dst):
        try:
            while True:
                await self.flowing.wait()
                data = await self.loop.sock_recv(src, CHUNK)
                if not data:
                    # Half-close onward, keep the other direction going.
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if self.match(c, d, data):
                    self.st["pattern_hits"] += 1
                    self.reset(c, "pattern %r seen %s" % (self.pattern[1], d))
                    return
                if self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000.0)
                await self.flowing.wait()
                if c.closed:
                    return
                await self.loop.sock_sendall(dst, data)
                self.st[d + "_bytes"] += len(data)
        except (OSError, ConnectionError):
            self.close(c)

    def match(self, c, d, data):
        if not self.armed or self.pattern[0] != d:
            c.tail[d] = b""
            return False
        pat = self.pattern[1]
        buf = c.tail[d] + data
        if pat in buf:
            self.armed -= 1
            c.tail[d] = b""
            return True
        c.tail[d] = buf[-(len(pat) - 1):] if len(pat) > 1 else b""
        return False

    def reset(self, c, why):
        if c.closed:
            return
        self.st["resets"] += 1
        log("conn %d reset (%s)" % (c.num, why))
        self.close(c, rst=True)

    def close(self, c, rst=False):
        if c.closed:
            return
        c.closed = True
        self.conns.discard(c)
        me = asyncio.current_task()
        for t in c.tasks:
            if t is not me:
                t.cancel()
        if rst:
            rst_close(c.client)
            # The target sees a plain close: for PostgreSQL, a client gone
            # mid-transaction (rolled back) or after its COMMIT (kept).
            if c.target is not None:
                c.target.close()
        else:
            c.client.close()
            if c.target is not None:
                c.target.close()

    # ---- control --------------------------------------------------------

    def set_mode(self, mode, arg):
        if mode == "pass":
            self.mode, self.delay_ms = "pass", 0
        elif mode == "delay":
            ms = int(arg)
            if ms < 0:
                raise ValueError("delay must be >= 0 ms")
            self.mode, self.delay_ms = "delay", ms
        elif mode == "stall":
            self.mode, self.delay_ms = "stall", 0
        elif mode == "reset":
            self.mode, self.delay_ms = "reset", 0
        else:
            raise ValueError("unknown mode %r (pass, delay MS, stall, reset)" % mode)
        if self.mode == "stall":
            self.flowing.clear()
        else:
            self.flowing.set()
        n = 0
        if self.mode == "reset":
            for c in list(self.conns):
                self.reset(c, "mode reset")
                n += 1
        log("mode %s%s%s" % (self.mode, " %d ms" % self.delay_ms if self.mode == "delay" else "",
                             " (reset %d open connections)" % n if self.mode == "reset" else ""))

    def stats(self):
        d = dict(self.st)
        d.update(mode=self.mode, delay_ms=self.delay_ms, conns_open=len(self.conns), armed=self.armed)
        return d

    def command(self, line):
        parts = line.split(None, 3)
        if not parts:
            return "error empty command"
        cmd = parts[0]
        if cmd == "mode" and len(parts) >= 2:
            self.set_mode(parts[1], parts[2] if len(parts) > 2 else None)
            return "ok mode=%s delay_ms=%d" % (self.mode, self.delay_ms)
        if cmd == "kill":
            n = 0
            for c in list(self.conns):
                self.reset(c, "kill")
                n += 1
            return "ok killed=%d" % n
        if cmd == "reset-on" and len(parts) >= 3:
            if parts[1] not in ("c2s", "s2c"):
                return "error direction must be c2s or s2c"
            rest = parts[2:]
            count = 1
            if len(rest) == 2:
                count = int(rest[1])
            pat = parse_pattern(rest[0])
            if not pat:
                return "error empty pattern"
            self.pattern, self.armed = (parts[1], pat), count
            for c in self.conns:
                c.tail = {"c2s": b"", "s2c": b""}
            log("armed: reset on %r %s, %d time(s)" % (pat, parts[1], count))
            return "ok armed=%d" % count
        if cmd == "disarm":
            self.armed = 0
            return "ok armed=0"
        if cmd == "stats":
            return json.dumps(self.stats(), sort_keys=True)
        if cmd == "get" and len(parts) == 2:
            s = self.stats()
            if parts[1] not in s:
                return "error unknown key %r (one of %s)" % (parts[1], ", ".join(sorted(s)))
            return str(s[parts[1]])
        if cmd == "quit":
            self.loop.call_soon(self.loop.stop)
            return "ok bye"
        return "error unknown command %r (mode, kill, reset-on, disarm, stats, get, quit)" % line

    async def serve_control(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    reply = self.command(line.decode("utf-8", "replace").strip())
                except (ValueError, UnicodeError) as e:
                    reply = "error %s" % e
                writer.write((reply + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def main():
    ap = argparse.ArgumentParser(description="TCP proxy that can delay, stall and reset connections")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--listen", type=int, default=0, help="port on 127.0.0.1 (0 = any free one)")
    ap.add_argument("--control", type=int, default=0, help="control port on 127.0.0.1 (0 = any free one)")
    ap.add_argument("--ready-file", help="write 'listen=P control=C' here once listening")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    p = Proxy(host or "127.0.0.1", int(port))
    loop = asyncio.get_running_loop()

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(128)
    ls.setblocking(False)
    ctl = await asyncio.start_server(p.serve_control, "127.0.0.1", a.control)
    lport = ls.getsockname()[1]
    cport = ctl.sockets[0].getsockname()[1]

    async def accept_loop():
        while True:
            s, _ = await loop.sock_accept(ls)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            asyncio.ensure_future(p.serve_client(s))

    asyncio.ensure_future(accept_loop())
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("listen=%d control=%d\n" % (lport, cport))
        os.rename(tmp, a.ready_file)
    log("listening on 127.0.0.1:%d -> %s:%d, control on 127.0.0.1:%d" % (lport, p.target[0], p.target[1], cport))
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, RuntimeError) as e:
        # loop.stop() from "quit" ends asyncio.run with RuntimeError.
        if isinstance(e, RuntimeError) and "Event loop stopped" not in str(e):
            raise
