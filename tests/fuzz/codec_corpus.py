#!/usr/bin/python3
"""codec_corpus.py -- hostile and valid jobs for the job decoder, each hostile
one with the exact reason the decoder gives (docs/PROTOCOL.md, section 8).

Two users:
  * the seed corpus of the codec fuzzer:
        /usr/bin/python3 tests/fuzz/codec_corpus.py seed tests/fuzz/corpus/codec
    (small inputs only; the files are committed, rerun after changing cases)
  * tests/integration/it_96_hostile_corpus.sh imports this module and pushes
    hostile() and valid() jobs straight into the queues (full size: 100 000
    levels of nesting, a 1 MiB job).

The same directory also holds found-<sha1> files: inputs libFuzzer found
that add coverage (see tests/fuzz/run.sh); this script leaves them alone.

Every builder records where it put each value, so the offsets in the
expected reasons are computed from the bytes, not copied from the decoder.
"""
import json
import os
import struct
import sys

import msgpack

MAX_JOB = 65536          # the worker's default max_job_bytes
TS = 1767225600000000    # 2026-01-01T00:00:00Z in microseconds
SLACK = 64               # CODEC_REENCODE_SLACK


def p(x):
    """msgpack of a Python value (str -> str, bytes -> bin)."""
    return msgpack.packb(x, use_bin_type=True)


def s(b):
    """A msgpack str holding raw bytes (which need not be UTF-8)."""
    n = len(b)
    if n < 32:
        h = bytes([0xA0 | n])
    elif n < 256:
        h = b"\xd9" + bytes([n])
    elif n < 65536:
        h = b"\xda" + struct.pack(">H", n)
    else:
        h = b"\xdb" + struct.pack(">I", n)
    return h + b


def maphdr(n):
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + struct.pack(">H", n)


class Job:
    """A msgpack map built entry by entry from already packed keys/values;
    remembers the offset of every key and value."""

    def __init__(self, entries, declare=None):
        n = len(entries) if declare is None else declare
        out = bytearray(maphdr(n))
        self.koff, self.voff = [], []
        for k, v in entries:
            kb = s(k.encode()) if isinstance(k, str) else k
            self.koff.append(len(out))
            out += kb
            self.voff.append(len(out))
            out += v
        self.bytes = bytes(out)
        self.keys = [k for k, _ in entries]

    def off(self, key, nth=0):
        """Offset of the value of key (its nth occurrence)."""
        idx = [i for i, k in enumerate(self.keys) if k == key][nth]
        return self.voff[idx]

    def key_off(self, i):
        return self.koff[i]


def eid(kind, i):
    """Distinct UUIDs: valid jobs 0190f0c4-..., hostile ones 0190dead-..."""
    return "%s-8a9b-7def-8123-%012x" % ("0190f0c4" if kind == "valid" else "0190dead", i)


def base(i, kind="hostile", priority="normal"):
    return [("v", p(1)), ("event_id", p(eid(kind, i))), ("occurred_at", p(TS + i)),
            ("priority", p(priority)), ("action", p("hostile.case"))]


def replace(entries, key, value):
    return [(k, value if k == key else v) for k, v in entries]


def drop(entries, key):
    return [(k, v) for k, v in entries if k != key]


def padded_to(entries, total, key="metadata"):
    """(job, json): entries plus key = a JSON object padded so that the job
    is exactly total bytes."""
    for pad in range(max(0, total - 200), total + 1):
        text = '{"pad":"%s"}' % ("x" * pad)
        j = Job(entries + [(key, s(text.encode()))])
        if len(j.bytes) == total:
            return j, text
        if len(j.bytes) > total:
            break
    raise ValueError("cannot pad to %d bytes" % total)


TYPES = "(a job holds only nil, bool, int, str and bin values)"


def hostile(full=True, r=0):
    """[(name, bytes, reason)]: every way a job can be refused at decode.
    full=False keeps every input small (the fuzzer's seed corpus); r makes the
    event_ids of a repeat round distinct."""
    out = []
    n = [r * 1000]

    def add(name, data, reason):
        out.append((name, bytes(data), reason))

    def nb(**kw):
        n[0] += 1
        return base(n[0], **kw)

    # Nesting that fits under max_job_bytes reaches the decoder's type check;
    # 100 000 levels (100 kB) are refused by size first.
    deep = 60000 if full else 1000
    deepmap = 20000 if full else 300

    # ---- truncated msgpack
    j = Job(nb())
    a = j.off("action")
    add("truncated inside the action string", j.bytes[:-3],
        "truncated string (declared length exceeds job) at offset %d" % (a + 1))
    add("only a map header", b"\x85",
        "truncated job: map declares more entries than bytes present at offset 1")
    j = Job(nb()[:3])
    t = j.off("occurred_at")
    add("truncated inside a uint64", j.bytes[:t + 4], "truncated integer at offset %d" % t)
    add("truncated map16 header", b"\xde\x00", "truncated map header at offset 0")
    add("empty job", b"", "empty job")
    add("plain text", b"this is not msgpack", "job is not a msgpack map at offset 0")
    j = Job(nb())
    add("trailing bytes", j.bytes + b"\xc0", "1 trailing bytes after the job map")

    # ---- huge declared lengths (5-byte headers declaring 4 G)
    add("map32 declaring 4G entries", b"\xdf\xff\xff\xff\xff",
        "map declares 4294967295 entries, more than the limit of 64")
    add("array32 declaring 4G elements", b"\xdd\xff\xff\xff\xff", "job is not a msgpack map at offset 0")
    add("str32 declaring 4 GB", b"\xdb\xff\xff\xff\xff", "job is not a msgpack map at offset 0")
    j = Job(replace(nb(), "action", b"\xdb\xff\xff\xff\xffabc"))
    add("action str32 declaring 4 GB", j.bytes,
        "truncated string (declared length exceeds job) at offset %d" % (j.off("action") + 5))
    j = Job(nb() + [("blob", b"\xc6\xff\xff\xff\xff")])
    add("bin32 declaring 4 GB", j.bytes,
        "truncated binary (declared length exceeds job) at offset %d" % (j.off("blob") + 5))
    j = Job(nb() + [("metadata", b"\xdf\xff\xff\xff\xff")])
    add("metadata map32 declaring 4G entries", j.bytes,
        "key metadata: must be a string of JSON text, got msgpack map at offset %d" % j.off("metadata"))
    j = Job(nb() + [("x", b"\xdd\xff\xff\xff\xff")])
    add("unknown key array32 declaring 4G elements", j.bytes,
        "key x: msgpack array not allowed %s at offset %d" % (TYPES, j.off("x")))
    e = nb()
    j = Job(e, declare=len(e) + 1)
    add("key str32 declaring 4 GB", j.bytes + b"\xdb\xff\xff\xff\xff",
        "truncated string (declared length exceeds job) at offset %d" % (len(j.bytes) + 5))
    add("map16 declaring 65 entries", Job([("k%d" % k, p(k)) for k in range(65)]).bytes,
        "map declares 65 entries, more than the limit of 64")

    # ---- deep nesting
    add("%d nested arrays as the job" % deep, b"\x91" * deep + b"\x01",
        "job is not a msgpack map at offset 0")
    j = Job(nb() + [("metadata", b"\x91" * deep + b"\xc0")])
    add("%d nested arrays as metadata" % deep, j.bytes,
        "key metadata: must be a string of JSON text, got msgpack array at offset %d" % j.off("metadata"))
    j = Job(nb() + [("deep", b"\x81\xa1k" * deepmap + b"\x01")])
    add("%d nested maps under an unknown key" % deepmap, j.bytes,
        "key deep: msgpack map not allowed %s at offset %d" % (TYPES, j.off("deep")))

    if full:
        add("100000 nested arrays", b"\x91" * 100000 + b"\x01",
            "job is 100001 bytes, larger than max_job_bytes=%d" % MAX_JOB)

    # ---- wrong types
    j = Job(replace(nb(), "v", p("1")))
    add("v as a string", j.bytes,
        "key v: schema version must be a positive integer, got msgpack str at offset %d" % j.off("v"))
    add("v = 2", Job(replace(nb(), "v", p(2))).bytes,
        "key v: unsupported schema version 2 (this worker reads 1)")
    add("v = 0", Job(replace(nb(), "v", p(0))).bytes,
        "key v: schema version must be a positive integer, got 0")
    j = Job(replace(nb(), "occurred_at", p(1.5e15)))
    add("occurred_at as a float", j.bytes,
        "key occurred_at: must be an integer (microseconds since epoch), got msgpack float at offset %d"
        % j.off("occurred_at"))
    add("occurred_at negative", Job(replace(nb(), "occurred_at", p(-1))).bytes,
        "key occurred_at: -1 is outside 1970..9999 (microseconds since epoch)")
    add("occurred_at past 9999", Job(replace(nb(), "occurred_at", p(2**64 - 1))).bytes,
        "key occurred_at: 18446744073709551615 is outside 1970..9999 (microseconds since epoch)")
    j = Job(nb() + [("tenant_id", p(42))])
    add("tenant_id as an int", j.bytes,
        "key tenant_id: must be a string, got msgpack int at offset %d" % j.off("tenant_id"))
    j = Job(replace(nb(), "event_id", p(b"0123456789abcdef")))
    add("event_id as bin", j.bytes,
        "key event_id: must be a string, got msgpack bin at offset %d" % j.off("event_id"))
    j = Job(nb() + [("changes", p(True))])
    add("changes as a bool", j.bytes,
        "key changes: must be a string of JSON text, got msgpack bool at offset %d" % j.off("changes"))
    j = Job(replace(nb(), "priority", p(None)))
    add("priority nil", j.bytes,
        "key priority: must be one of critical, high, normal, low, got msgpack nil at offset %d"
        % j.off("priority"))
    add("priority unknown", Job(replace(nb(), "priority", p("urgent"))).bytes,
        "key priority: must be one of critical, high, normal, low, got 'urgent'")
    j = Job(nb() + [("attempts", p("3"))])
    add("attempts as a string", j.bytes,
        "key attempts: must be an integer 0..1000000, got msgpack str at offset %d" % j.off("attempts"))
    add("attempts negative", Job(nb() + [("attempts", p(-4))]).bytes,
        "key attempts: must be an integer 0..1000000, got -4")
    j = Job(nb() + [(p(7), p(1))])
    add("int key", j.bytes, "map key is not a string (msgpack int) at offset %d" % j.key_off(5))
    j = Job(nb() + [(p(b"action"), p("x"))])
    add("bin key", j.bytes, "map key is not a string (msgpack bin) at offset %d" % j.key_off(5))
    j = Job(nb() + [(b"\x91\x01", p("x"))])
    add("array as a key", j.bytes, "map key is not a string (msgpack array) at offset %d" % j.key_off(5))
    j = Job(nb() + [("ratio", p(0.5))])
    add("float under an unknown key", j.bytes,
        "key ratio: msgpack float not allowed %s at offset %d" % (TYPES, j.off("ratio")))
    j = Job(nb() + [("ext", b"\xd4\x01\x01")])
    add("ext under an unknown key", j.bytes,
        "key ext: msgpack ext not allowed %s at offset %d" % (TYPES, j.off("ext")))
    j = Job(nb() + [("never", b"\xc1")])
    add("byte 0xc1", j.bytes,
        "key never: msgpack byte 0xc1 not allowed %s at offset %d" % (TYPES, j.off("never")))

    # ---- missing required fields
    add("no action", Job(drop(nb(), "action")).bytes, "missing required key action")
    add("no event_id", Job(drop(nb(), "event_id")).bytes, "missing required key event_id")
    add("no v", Job(drop(nb(), "v")).bytes, "missing required key v")
    add("no occurred_at", Job(drop(nb(), "occurred_at")).bytes, "missing required key occurred_at")
    add("action nil", Job(replace(nb(), "action", p(None))).bytes, "missing required key action")
    add("event_id nil", Job(replace(nb(), "event_id", p(None))).bytes, "missing required key event_id")
    add("empty action", Job(replace(nb(), "action", p(""))).bytes, "action: must not be empty")
    add("event_id not a UUID", Job(replace(nb(), "event_id", p("not-a-uuid"))).bytes,
        "event_id: not a UUID in 8-4-4-4-12 hex form")

    # ---- field lengths
    add("tenant_id of 257 bytes", Job(nb() + [("tenant_id", p("t" * 257))]).bytes,
        "tenant_id: 257 bytes, longer than the limit of 256")
    add("user_agent of 1025 bytes", Job(nb() + [("user_agent", p("u" * 1025))]).bytes,
        "user_agent: 1025 bytes, longer than the limit of 1024")
    add("source_ip of 129 bytes", Job(nb() + [("source_ip", p("1" * 129))]).bytes,
        "source_ip: 129 bytes, longer than the limit of 128")

    # ---- invalid UTF-8
    add("tenant_id overlong UTF-8", Job(nb() + [("tenant_id", s(b"ab\xc0\xaf"))]).bytes,
        "tenant_id: invalid UTF-8 at byte 2")
    add("actor_id UTF-16 surrogate", Job(nb() + [("actor_id", s(b"x\xed\xa0\x80"))]).bytes,
        "actor_id: invalid UTF-8 at byte 1")
    add("action truncated sequence", Job(replace(nb(), "action", s(b"login\xe2\x82"))).bytes,
        "action: invalid UTF-8 at byte 5")
    add("user_agent above U+10FFFF", Job(nb() + [("user_agent", s(b"\xf4\x90\x80\x80"))]).bytes,
        "user_agent: invalid UTF-8 at byte 0")
    j = Job(nb() + [(s(b"\xff\xfe"), p(1))])
    add("unknown key invalid UTF-8", j.bytes, "map key at offset %d: invalid UTF-8 at byte 0" % j.key_off(5))

    # ---- invalid JSON in changes/metadata
    add("changes unquoted key", Job(nb() + [("changes", p("{a}"))]).bytes,
        "changes: invalid JSON object: offset 1: expected string key, got 'a'")
    add("metadata an array", Job(nb() + [("metadata", p("[]"))]).bytes,
        "metadata: invalid JSON object: offset 0: expected '{' (top level must be a JSON object)")
    add("changes truncated", Job(nb() + [("changes", p('{"a":'))]).bytes,
        "changes: invalid JSON object: offset 5: unexpected end of input")
    add("metadata trailing comma", Job(nb() + [("metadata", p('{"a":1,}'))]).bytes,
        "metadata: invalid JSON object: offset 7: trailing comma before '}'")
    add("metadata NaN", Job(nb() + [("metadata", p('{"a":NaN}'))]).bytes,
        "metadata: invalid JSON object: offset 5: expected a JSON value, got 'N'")
    add("metadata JSON nested 65 deep", Job(nb() + [("metadata", p('{"a":' + "[" * 64 + "]" * 64 + "}"))]).bytes,
        "metadata: invalid JSON object: offset 68: nesting deeper than 64")
    jd = 30000 if full else 500
    add("changes JSON nested %d deep" % jd, Job(nb() + [("changes", p('{"a":' + "[" * jd + "]" * jd + "}"))]).bytes,
        "changes: invalid JSON object: offset 68: nesting deeper than 64")
    add("changes JSON invalid UTF-8", Job(nb() + [("changes", s(b'{"a":"\xff"}'))]).bytes,
        "changes: invalid JSON object: offset 6: invalid UTF-8 in string")
    add("metadata JSON raw NUL", Job(nb() + [("metadata", s(b'{"a":"x\x00"}'))]).bytes,
        "metadata: invalid JSON object: offset 7: unescaped control character 0x00 in string")

    # ---- NUL bytes
    add("tenant_id with NUL", Job(nb() + [("tenant_id", s(b"a\x00b"))]).bytes, "tenant_id: NUL byte at byte 1")
    add("action NUL", Job(replace(nb(), "action", s(b"\x00"))).bytes, "action: NUL byte at byte 0")
    bad_id = (eid("hostile", r * 1000 + 999)[:32] + "\x0001").encode()
    add("event_id with NUL", Job(replace(nb(), "event_id", s(bad_id))).bytes, "event_id: NUL byte at byte 32")
    j = Job(nb() + [(s(b"k\x00"), p(1))])
    add("unknown key with NUL", j.bytes, "map key at offset %d: NUL byte at byte 1" % j.key_off(5))

    # ---- duplicates, enums, injection-looking values that are invalid
    add("duplicate action", Job(nb() + [("action", p("again"))]).bytes, "duplicate key action")
    add("duplicate unknown key", Job(nb() + [("note", p(1)), ("note", p(2))]).bytes, "duplicate key note")
    add("duplicate event_id after nil", Job([("event_id", p(None))] + nb()).bytes, "duplicate key event_id")
    add("actor_type SQL injection", Job(nb() + [("actor_type", p("robot'; DROP TABLE x; --"))]).bytes,
        "actor_type: 'robot'; DROP TABLE x; --' is not one of user, service, ai, system")
    add("outcome terminal escape", Job(nb() + [("outcome", s(b"\x1b[31mok"))]).bytes,
        "outcome: '\\x1b[31mok' is not one of success, failure, denied")

    # ---- oversized (max_job_bytes = 65536)
    for total in ([MAX_JOB + SLACK + 1, MAX_JOB + 10] + ([1 << 20] if full else [])):
        if not full and total > 4096:
            continue
        j, _ = padded_to(nb(), total)
        add("%d-byte job" % total, j.bytes, "job is %d bytes, larger than max_job_bytes=%d" % (total, MAX_JOB))
    return out


# Valid values that look like injections or escapes: stored byte for byte.
INJECTIONS = {
    "tenant_id": "'; DROP TABLE audit_events; --",
    "actor_id": "\\.",                                  # COPY's end-of-data marker
    "entity_type": "\\N",                               # COPY's NULL marker
    "entity_id": "a\tb\nc\rd\\e\\\\N",                  # COPY's delimiters and escapes
    "user_agent": "Robert'); DELETE FROM audit_events;--\u00e9\u2028 \U0001F600",
    "request_id": "$$ $q$ E'\\x00' %s%n%x {{7*7}} ${jndi:ldap://x/a}",
    "session_id": "\x1b[2J\x07\x7f\x01",               # control characters are allowed
    "source_ip": "127.0.0.1' OR '1'='1",
    "action": 'user.login" OR "1"="1',
}
CHANGES = json.dumps({"sql": "'; DROP TABLE x; --", "copy": "\\.\n\\N\t", "ctl": "\u0001\u001f",
                      "nested": {"a": [1, 2.5e-3, {"b": None}]}, "u": "\u00e9\U0001F600"})
METADATA = '{"k":"\\\\N","deep":' + "[" * 62 + "{}" + "]" * 62 + "}"     # depth 64: the limit


def valid(count, r=0, small=False):
    """[(name, bytes, event_id, fields)] of jobs the worker must store.
    fields maps column -> expected text (changes/metadata: JSON text). The
    first ones exercise edges; the rest are plain jobs with injection-looking
    values."""
    out = []
    k = [r * 1000000]

    def add(name, j, fields):
        out.append((name, j.bytes, fields["event_id"], fields))

    def fresh():
        k[0] += 1
        return k[0], eid("valid", k[0])

    i, e = fresh()
    fields = dict(INJECTIONS, event_id=e, changes=CHANGES, metadata=METADATA, actor_type="ai",
                  outcome="denied", priority="critical")
    ent = [("v", p(1)), ("event_id", p(e)), ("occurred_at", p(TS + i)), ("priority", p("critical"))]
    ent += [(key, p(val)) for key, val in INJECTIONS.items()]
    ent += [("actor_type", p("ai")), ("outcome", p("denied")), ("changes", p(CHANGES)), ("metadata", p(METADATA))]
    add("every field, injection-looking values", Job(ent), fields)

    i, e = fresh()
    ent = [("v", b"\xd3" + struct.pack(">q", 1)), ("event_id", p(e.upper())),
           ("occurred_at", b"\xd3" + struct.pack(">q", TS + i)), ("action", p("go.style")),
           ("future_key", p("ignored")), ("future_bin", p(b"\x00\xff")), ("tenant_id", p(None)),
           ("attempts", b"\xd0\x00")]
    add("int64 encodings, upper-case UUID, unknown scalar keys, nil field", Job(ent),
        {"event_id": e, "action": "go.style", "priority": "normal"})

    if not small:
        i, e = fresh()
        ent = [("v", p(1)), ("event_id", p(e)), ("occurred_at", p(TS + i)), ("action", p("at.cap"))]
        j, text = padded_to(ent, MAX_JOB)
        add("exactly max_job_bytes", j, {"event_id": e, "action": "at.cap", "priority": "normal", "metadata": text})
        i, e = fresh()
        ent = [("v", p(1)), ("event_id", p(e)), ("occurred_at", p(TS + i)), ("action", p("retry.slack")),
               ("attempts", p(1))]
        j, text = padded_to(ent, MAX_JOB + 20)
        add("a retry 20 bytes over max_job_bytes", j,
            {"event_id": e, "action": "retry.slack", "priority": "normal", "metadata": text})

    prios = ["critical", "high", "normal", "low"]
    while len(out) < count:
        i, e = fresh()
        pr = prios[i % 4]
        inj = list(INJECTIONS.items())[i % len(INJECTIONS)]
        fields = {"event_id": e, "action": "valid.%d" % i, "priority": pr, "tenant_id": "tenant-%d" % (i % 7)}
        if inj[0] not in ("action", "tenant_id"):
            fields[inj[0]] = inj[1]
        ent = [("v", p(1)), ("event_id", p(e)), ("occurred_at", p(TS + i)), ("priority", p(pr))]
        ent += [(key, p(val)) for key, val in fields.items() if key not in ("event_id", "priority")]
        add("plain %d" % i, Job(ent), fields)
    return out


def write_seed(d):
    os.makedirs(d, exist_ok=True)
    n = 0
    for idx, (name, data, _reason) in enumerate(hostile(full=False)):
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        with open(os.path.join(d, "bad-%02d-%s" % (idx, slug[:40])), "wb") as f:
            f.write(data)
        n += 1
    for idx, (name, data, _e, _f) in enumerate(valid(6, small=True)):
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        with open(os.path.join(d, "ok-%02d-%s" % (idx, slug[:40])), "wb") as f:
            f.write(data)
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "seed":
        print("%d seed inputs written to %s" % (write_seed(sys.argv[2]), sys.argv[2]))
    else:
        sys.exit("usage: codec_corpus.py seed DIR")
