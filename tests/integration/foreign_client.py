#!/usr/bin/python3
"""foreign_client.py -- an auditq producer that knows only docs/PROTOCOL.md.

No libauditq: jobs are built with the Python msgpack library and pushed with
a ~20-line RESP client over a raw socket, the way an application in another
language would do it. Run with /usr/bin/python3 (Debian's, which has
python3-msgpack).

  foreign_client.py send --port P [--ns auditq] --expect-tsv FILE --expect-dead FILE
      LPUSHes 50 valid jobs (all four priorities, hostile text, edge values,
      unusual but legal msgpack encodings) and 3 invalid ones. Prints JSON
      {"event_ids": [...], "valid": [...], "invalid": [...]} on stdout.
      FILE (--expect-tsv): one line per valid job, tab-separated, for
      psql's \\copy: event_id, occurred_at_us, priority, then the 13 text
      columns (tenant_id .. metadata) as hex of their UTF-8 bytes, \\N when
      the job has no value. Hex keeps the comparison byte-exact and free of
      any quoting.
      FILE (--expect-dead): the dead-letter records we expect, in the format
      of the `dead` command below, sorted.
  foreign_client.py dead --port P [--ns auditq]
      Prints every record of {ns}:dead as "priority<TAB>attempts<TAB>
      job-hex<TAB>reason", sorted. Accepts the job as msgpack bin (records
      written by the worker) or str (crash-looping records written by the
      recovery script), as PROTOCOL.md asks of readers.
"""
import argparse
import json
import os
import random
import socket
import sys

import msgpack

PRIORITIES = ("critical", "high", "normal", "low")
TEXT_FIELDS = ("tenant_id", "actor_id", "actor_type", "action", "entity_type", "entity_id",
               "outcome", "source_ip", "user_agent", "request_id", "session_id",
               "changes", "metadata")


# ---- RESP ----------------------------------------------------------------

class Redis:
    """Minimal RESP2 client: commands as arrays of bulk strings."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.f = self.sock.makefile("rb")

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by Redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("Redis error: " + rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("unexpected RESP reply %r" % line)


# ---- job building (docs/PROTOCOL.md) ---------------------------------------

def uuid7(rng, unix_ms):
    """UUIDv7 text: 48-bit Unix ms, version 7, variant 10, 74 random bits."""
    r = bytes(rng.getrandbits(8) for _ in range(10))
    b = unix_ms.to_bytes(6, "big") + bytes([0x70 | (r[0] & 0x0F), r[1], 0x80 | (r[2] & 0x3F)]) + r[3:]
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class Raw:
    """A value whose msgpack bytes are given verbatim (to mimic other encoders)."""

    def __init__(self, data):
        self.data = data


def pack_map(items):
    """Packs (key, value) pairs as one msgpack map, in the given order."""
    n = len(items)
    if n < 16:
        out = [bytes([0x80 | n])]
    else:
        out = [b"\xde" + n.to_bytes(2, "big")]
    for k, v in items:
        out.append(msgpack.packb(k))
        out.append(v.data if isinstance(v, Raw) else msgpack.packb(v))
    return b"".join(out)


TRICKY = [
    'double "quotes" and \'single\'',
    "tab\there\tand\ttwo",
    "line1\nline2\nline3",
    "crlf\r\nend",
    "back\\slash \\\\ double",
    "trailing backslash \\",
    "\\N",                       # COPY's NULL marker, as a literal 2-char string
    "\\.",                       # COPY's end-of-data marker
    "emoji 😀🎉 family 👨‍👩‍👧‍👦 flag 🇯🇵",
    "CJK 漢字かなカナ한국어 中文",
    "RTL שלום مرحبا",
    "combining e\u0301 and U+2028\u2028 U+FEFF\ufeff",
    "  leading and trailing spaces  ",
    "NULL",
    "{\"not\": \"json, just text\"}",
    "comma, semi; pipe | quote\" end",
    "\x01\x07\x1b control bytes",
    "",                          # empty string: stored as '' (not NULL)
]

JSON_DOCS = [
    '{}',
    '{"title": ["Old", "New"], "n": 1}',
    '{"nested": {"a": {"b": {"c": [1, 2, {"d": null}]}}}, "t": true, "f": false}',
    '{"esc": "quote \\" backslash \\\\ slash \\/ nl \\n tab \\t", "u": "\\u00e9\\ud83d\\ude00"}',
    '{"raw": "漢字 😀 שלום", "ключ": "значение"}',
    '  {\n\t"spaced" :  1 ,\r\n "big": 123456789012345678901234567890, "neg": -0.5e-3 }  \n',
    '{"arr": [[], {}, [[]], ""], "num": 1E+2}',
    '{"tab\\tkey": "v", "": "empty key"}',
]


def cut(s, nbytes):
    """s shortened to at most nbytes of UTF-8, on a character boundary."""
    return s.encode("utf-8")[:nbytes].decode("utf-8", errors="ignore")


def full_job(rng, eid, ts, prio, texts):
    """A job with every field, text picked from `texts`."""
    return [
        ("v", 1), ("event_id", eid), ("occurred_at", ts), ("priority", prio),
        ("tenant_id", rng.choice(texts)), ("actor_id", rng.choice(texts)),
        ("actor_type", rng.choice(["user", "service", "ai", "system"])),
        ("action", rng.choice([t for t in texts if t]) + ".act"),
        ("entity_type", rng.choice(texts)), ("entity_id", rng.choice(texts)),
        ("outcome", rng.choice(["success", "failure", "denied"])),
        ("source_ip", rng.choice(["192.0.2.1", "2001:db8::1", "", "not an ip \\N"])),
        ("user_agent", rng.choice(texts)), ("request_id", rng.choice(texts)),
        ("session_id", rng.choice(texts)),
        ("changes", rng.choice(JSON_DOCS)), ("metadata", rng.choice(JSON_DOCS)),
    ]


def build(rng):
    """Returns (valid, invalid): lists of dicts with the job bytes and the expectation."""
    now_ms = 1_721_390_400_000
    specs = []   # (queue, items)

    def eid():
        return uuid7(rng, now_ms + len(specs))

    # 1. Only the required keys (no priority key: stored as "normal").
    specs.append(("normal", [("v", 1), ("event_id", eid()), ("occurred_at", 1_721_390_400_000_001),
                             ("action", "only.required")]))
    # 2. Unknown extra scalar keys of every scalar type: ignored.
    specs.append(("high", [("v", 1), ("x_note", "ignored by v1 workers"), ("event_id", eid()),
                           ("x_trace_flags", 3), ("occurred_at", 1_721_390_400_000_002),
                           ("x_neg", -5), ("x_flag", True), ("x_nil", None),
                           ("x_bin", b"\x00\x01\xff"), ("x_big", 2**64 - 1),
                           ("priority", "high"), ("action", "unknown.keys.ignored"),
                           ("tenant_id", "acme")]))
    # 3. Limits: ids of exactly 256 bytes (4-byte characters), action 256,
    #    source_ip 64, user_agent 1024 (str16).
    specs.append(("critical", [
        ("v", 1), ("event_id", eid()), ("occurred_at", 1_721_390_400_000_003), ("priority", "critical"),
        ("tenant_id", "🦀" * 64), ("actor_id", "a" * 256), ("actor_type", "ai"),
        ("action", "x" * 255 + "."), ("entity_type", "ж" * 128), ("entity_id", "e" * 256),
        ("outcome", "denied"), ("source_ip", "f" * 64), ("user_agent", "Mozilla/5.0 " + "u" * 1012),
        ("request_id", "r" * 256), ("session_id", "s" * 256),
        ("changes", '{"big": "' + "b" * 5000 + '"}'), ("metadata", '{"k": "' + "漢" * 1000 + '"}')]))
    # 4. Explicit nil = absent.
    specs.append(("low", [("v", 1), ("event_id", eid()), ("occurred_at", 1_721_390_400_000_004),
                          ("priority", "low"), ("action", "explicit.nil"), ("tenant_id", None),
                          ("changes", None), ("outcome", None), ("actor_id", "someone")]))
    # 5. Edge timestamps: 1 us after the epoch, and 9999-12-31T23:59:59.999999Z.
    specs.append(("normal", [("v", 1), ("event_id", eid()), ("occurred_at", 1),
                             ("priority", "normal"), ("action", "epoch.plus.one")]))
    specs.append(("low", [("v", 1), ("event_id", eid()), ("occurred_at", 253_402_300_799_999_999),
                          ("priority", "low"), ("action", "end.of.9999")]))
    # 6. Integers as Go's vmihailenco/msgpack writes them by default:
    #    occurred_at as int64 (0xd3), v as uint8 (0xcc 01).
    specs.append(("high", [("v", Raw(b"\xcc\x01")), ("event_id", eid()),
                           ("occurred_at", Raw(b"\xd3" + (1_721_390_400_123_457).to_bytes(8, "big"))),
                           ("priority", "high"), ("action", "go.style.ints")]))
    # 7. Upper-case UUID, and not a v7 (v4): accepted, stored canonically.
    specs.append(("critical", [("v", 1), ("event_id", "9F1C2B3A-4D5E-4F60-8A7B-0C1D2E3F4A5B"),
                               ("occurred_at", 1_721_390_400_000_007), ("priority", "critical"),
                               ("action", "uppercase.uuid.v4")]))
    # 8. Every hostile string in every text column, once each.
    for i, t in enumerate(TRICKY):
        q = PRIORITIES[i % 4]
        specs.append((q, [("v", 1), ("event_id", eid()), ("occurred_at", 1_721_390_500_000_000 + i),
                          ("priority", q), ("action", "tricky." + (t or "empty")),
                          ("tenant_id", t), ("actor_id", t), ("entity_type", t), ("entity_id", t),
                          ("source_ip", cut(t, 64)), ("user_agent", t), ("request_id", t),
                          ("session_id", t), ("changes", JSON_DOCS[i % len(JSON_DOCS)]),
                          ("metadata", JSON_DOCS[(i + 3) % len(JSON_DOCS)])]))
    # 9. The rest: full jobs, random mixes, key order shuffled.
    while len(specs) < 50:
        q = PRIORITIES[len(specs) % 4]
        items = full_job(rng, eid(), 1_600_000_000_000_000 + rng.randrange(10**15), q, TRICKY)
        rng.shuffle(items)
        specs.append((q, items))

    valid = []
    for q, items in specs:
        d = dict((k, v) for k, v in items)
        if isinstance(d["occurred_at"], Raw):
            ts = int.from_bytes(d["occurred_at"].data[1:], "big", signed=True)
        else:
            ts = d["occurred_at"]
        fields = {f: d.get(f) for f in TEXT_FIELDS}
        valid.append({
            "queue": q,
            "job": pack_map(items),
            "event_id": d["event_id"].lower(),
            "occurred_at": ts,
            "priority": d.get("priority") or "normal",
            "fields": fields,
        })

    ok = dict(v=1, event_id=uuid7(rng, now_ms + 100), occurred_at=1_721_390_600_000_000,
              priority="high")
    invalid = [
        {"queue": "high", "job": msgpack.packb(dict(ok, tenant_id="acme")),
         "reason": "undecodable job: missing required key action"},
        {"queue": "low", "job": msgpack.packb(dict(ok, v=2, action="from.the.future", priority="low")),
         "reason": "undecodable job: key v: unsupported schema version 2 (this worker reads 1)"},
        {"queue": "critical", "job": msgpack.packb(["not", "a", "map"]),
         "reason": "undecodable job: job is not a msgpack map at offset 0"},
    ]
    return valid, invalid


def dead_line(priority, attempts, job, reason):
    return "%s\t%d\t%s\t%s" % (priority, attempts, job.hex(), reason)


def hexcol(v):
    return "\\N" if v is None else v.encode("utf-8").hex()


def cmd_send(args):
    rng = random.Random(int(args.seed))
    valid, invalid = build(rng)
    r = Redis(args.port)
    queue = lambda q: "{%s}:queue:%s" % (args.ns, q)

    # Push the valid jobs partly one per LPUSH, partly several per LPUSH
    # (a variadic LPUSH pushes left to right: the first argument is the
    # oldest of the group).
    by_queue = {}
    for j in valid:
        by_queue.setdefault(j["queue"], []).append(j["job"])
    pushed = 0
    for q, jobs in by_queue.items():
        half = len(jobs) // 2
        for job in jobs[:half]:
            pushed += 1
            n = r.call("LPUSH", queue(q), job)
            if n < 1:
                raise SystemExit("LPUSH %s answered %r" % (q, n))
        if jobs[half:]:
            r.call("LPUSH", queue(q), *jobs[half:])
            pushed += len(jobs[half:])
    for j in invalid:
        r.call("LPUSH", queue(j["queue"]), j["job"])
    if pushed != len(valid):
        raise SystemExit("pushed %d of %d valid jobs" % (pushed, len(valid)))

    with open(args.expect_tsv, "w", encoding="ascii") as f:
        for j in valid:
            cols = [j["event_id"], str(j["occurred_at"]), j["priority"]]
            cols += [hexcol(j["fields"][k]) for k in TEXT_FIELDS]
            f.write("\t".join(cols) + "\n")
    with open(args.expect_dead, "w", encoding="utf-8") as f:
        lines = sorted(dead_line(j["queue"], 0, j["job"], j["reason"]) for j in invalid)
        f.write("".join(line + "\n" for line in lines))

    out = {
        "event_ids": [j["event_id"] for j in valid],
        "valid": [{k: j[k] for k in ("event_id", "occurred_at", "priority", "queue", "fields")}
                  for j in valid],
        "invalid": [{"queue": j["queue"], "job_hex": j["job"].hex(), "reason": j["reason"]}
                    for j in invalid],
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


def cmd_dead(args):
    r = Redis(args.port)
    lines = []
    for raw in r.call("LRANGE", "{%s}:dead" % args.ns, 0, -1):
        # raw=True: the job may be a msgpack str holding non-UTF-8 bytes.
        rec = {k.decode(): v for k, v in msgpack.unpackb(raw, raw=True).items()}
        job = rec["job"]          # bytes either way (bin, or str under raw=True)
        lines.append(dead_line(rec["priority"].decode(), rec["attempts"], job,
                               rec["reason"].decode()))
    for line in sorted(lines):
        print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ns", default="auditq")
    s.add_argument("--seed", default=os.environ.get("AQ_SEED", "60"))
    s.add_argument("--expect-tsv", required=True)
    s.add_argument("--expect-dead", required=True)
    d = sub.add_parser("dead")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--ns", default="auditq")
    args = ap.parse_args()
    if args.cmd == "send":
        cmd_send(args)
    else:
        cmd_dead(args)


if __name__ == "__main__":
    main()
