#!/usr/bin/python3
"""auditq_verify.py -- an independent verifier of auditq's signed checkpoints,
inclusion proofs and consistency proofs.

Written from docs/INTEGRITY.md alone (not from auditq's C sources), to show
that the formats are documented well enough for an auditor's own tools.
Python 3 standard library plus PyNaCl (Debian: python3-nacl) for Ed25519.

  auditq_verify.py checkpoint FILE --key PUB [--key PUB]... [--origin NAME]
  auditq_verify.py inclusion FILE [--key PUB]... [--json]
  auditq_verify.py consistency FILE [--key PUB]... [--json]
  auditq_verify.py proof FILE [--key PUB]... [--json]     (either kind)

Exit status: 0 verified; 1 a check failed ("FAILED (<check>): <why>" on
stdout and stderr); 2 a file cannot be read or a --key is not a verifier key.
"""

import argparse
import base64
import binascii
import hashlib
import json
import sys

try:
    import nacl.exceptions
    import nacl.signing
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("auditq_verify.py: PyNaCl is missing; install the Debian package "
                     "python3-nacl (and run this with /usr/bin/python3)\n")
    sys.exit(2)

INCLUSION_FORMAT = "auditq-inclusion-proof/1"
CONSISTENCY_FORMAT = "auditq-consistency-proof/1"
EM_DASH = "\u2014"
MAX_NOTE_BYTES = 4096   # docs/INTEGRITY.md: the limits a verifier applies
MAX_SIGNATURES = 16
NULL_LEN = 0xFFFFFFFF
EVENT_FIELDS = ["event_id", "occurred_at", "received_at", "priority", "tenant_id",
                "actor_id", "actor_type", "action", "entity_type", "entity_id", "outcome",
                "source_ip", "user_agent", "request_id", "session_id", "changes",
                "metadata", "clock_flag"]
UNICODE_SPACES = {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} | set(
    range(0x2000, 0x200B))


class CheckFailed(Exception):
    """A check of the proof failed: .check names it (as auditqctl does)."""

    def __init__(self, check, why):
        super().__init__(why)
        self.check = check
        self.why = why


class UsageError(Exception):
    """A file or key cannot be read: exit status 2."""


# ---------------------------------------------------------------- hashing

def sha256(b):
    return hashlib.sha256(b).digest()


def leaf_hash(entry):
    return sha256(b"\x00" + entry)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def b64(b):
    return base64.b64encode(b).decode("ascii")


def b64_exact(text, nbytes, what):
    """Standard padded base64 of exactly nbytes bytes, canonical."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("%s is not base64 (standard, padded)" % what)
    if len(raw) != nbytes or b64(raw) != text:
        raise ValueError("%s is not base64 (standard, padded) of %d bytes" % (what, nbytes))
    return raw


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 2.1.3.2 as docs/INTEGRITY.md restates it; returns None or why."""
    if index >= size:
        return "leaf index %d is not below the tree size %d" % (index, size)
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return "the path is longer than the tree is high"
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "the path is shorter than the tree is high"
    if r != root:
        return "the path leads to root %s, not the checkpoint's root %s" % (b64(r), b64(root))
    return None


def verify_consistency(m, n, old_root, new_root, path):
    """RFC 9162 2.1.4.2 as docs/INTEGRITY.md restates it; returns None or why."""
    if m > n:
        return "the old tree size %d is larger than the new tree size %d" % (m, n)
    if m == n:
        if path:
            return "the path has %d hashes; trees of equal size need none" % len(path)
        if old_root != new_root:
            return "two trees of size %d have different roots" % m
        return None
    if m == 0:
        return None if not path else "a proof from the empty tree has no hashes"
    path = list(path)
    if m & (m - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return "the path is empty"
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return "the path is longer than the new tree is high"
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != old_root:
        return "the path leads to old root %s, not the old checkpoint's root %s" % (
            b64(fr), b64(old_root))
    if sn != 0 or sr != new_root:
        return "the path leads to new root %s, not the new checkpoint's root %s" % (
            b64(sr), b64(new_root))
    return None


# ---------------------------------------------------------------- entries

def decode_entry(entry):
    """Type byte, then (4-byte big-endian length | FF FF FF FF) fields."""
    if not entry:
        raise ValueError("entry is empty")
    etype, off, fields = entry[0], 1, []
    while off < len(entry):
        if len(entry) - off < 4:
            raise ValueError("field %d is cut short" % (len(fields) + 1))
        n = int.from_bytes(entry[off:off + 4], "big")
        off += 4
        if n == NULL_LEN:
            fields.append(None)
            continue
        if n > len(entry) - off:
            raise ValueError("field %d runs past the end" % (len(fields) + 1))
        fields.append(entry[off:off + n])
        off += n
    if etype == 0x01 and len(fields) != len(EVENT_FIELDS):
        raise ValueError("event entry has %d fields, version 1 has %d"
                         % (len(fields), len(EVENT_FIELDS)))
    return etype, fields


def entry_names(etype, fields):
    if etype == 0x01:
        return EVENT_FIELDS
    return ["field%d" % (i + 1) for i in range(len(fields))]


# ---------------------------------------------------------------- keys

def key_hash(name, pub):
    return sha256(name.encode("utf-8") + b"\x0a\x01" + pub)[:4]


def name_ok(name):
    if not name or len(name.encode("utf-8", "surrogatepass")) > 128:
        return False
    for ch in name:
        cp = ord(ch)
        if cp <= 0x20 or cp == 0x7F or 0x80 <= cp < 0xA0 or ch == "+" or cp in UNICODE_SPACES:
            return False
    return True


class VerifierKey:
    def __init__(self, text):
        text = text.rstrip("\n")
        if text.startswith("PRIVATE+KEY+"):
            raise ValueError("this is a private (signing) key; give the verifier key (PATH.pub)")
        parts = text.split("+", 2)  # the base64 may itself hold "+"
        if len(parts) != 3:
            raise ValueError("the verifier key is not <name>+<key hash>+<key>")
        name, hexhash, keyb64 = parts
        if not name_ok(name):
            raise ValueError("the verifier key's name is not printable without spaces or '+'")
        if len(hexhash) != 8 or any(c not in "0123456789abcdef" for c in hexhash):
            raise ValueError("the key hash '%s' is not 8 lowercase hex digits" % hexhash)
        raw = b64_exact(keyb64, 33, "the key")
        if raw[0] != 0x01:
            raise ValueError("key type %d is not Ed25519 (1)" % raw[0])
        self.name, self.pub = name, raw[1:]
        self.hash = key_hash(name, self.pub)
        if self.hash.hex() != hexhash:
            raise ValueError("the key hash %s does not match its name and key (%s)"
                             % (hexhash, self.hash.hex()))
        self.text = text

    def same(self, other):
        return self.name == other.name and self.pub == other.pub


def load_key(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError("--key %s: %s" % (path, e))
    try:
        return VerifierKey(text)
    except ValueError as e:
        raise UsageError("--key %s: %s" % (path, e))


# ---------------------------------------------------------------- checkpoints

class Checkpoint:
    pass


def decimal(text, signed):
    """Canonical decimal ("0" or no leading zero; "-" only when signed and
    not "-0"), within 64 bits; None when it is not."""
    neg = signed and text.startswith("-")
    digits = text[1:] if neg else text
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 20 \
            or (len(digits) > 1 and digits[0] == "0") or (neg and digits == "0"):
        return None
    v = int(digits)
    if (not signed and v >= 1 << 64) or (signed and v > (1 << 63) - (0 if neg else 1)):
        return None
    return -v if neg else v


def open_checkpoint(note, keys, check):
    """Parses and verifies a signed note with any of keys; returns a Checkpoint."""
    if not note:
        raise CheckFailed(check, "malformed: the checkpoint is empty")
    if len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise CheckFailed(check, "malformed: the checkpoint is longer than %d bytes"
                          % MAX_NOTE_BYTES)
    for i, ch in enumerate(note):
        cp = ord(ch)
        if ch != "\n" and (cp < 0x20 or cp == 0x7F or 0x80 <= cp < 0xA0):
            raise CheckFailed(check, "malformed: a control character at offset %d" % i)
    if not note.endswith("\n"):
        raise CheckFailed(check, "malformed: the checkpoint does not end with a newline")
    sep = note.rfind("\n\n")
    if sep < 0:
        raise CheckFailed(check, "malformed: no blank line before the signatures")
    body = note[:sep + 1]
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckFailed(check, "malformed: the body needs origin, tree size and root hash")
    if any(line == "" for line in lines):
        raise CheckFailed(check, "malformed: empty line in the checkpoint body")
    c = Checkpoint()
    c.origin = lines[0]
    if not name_ok(c.origin):
        raise CheckFailed(check, "malformed: line 1: the origin is not printable without "
                                 "spaces or '+'")
    c.size = decimal(lines[1], False)
    if c.size is None:
        raise CheckFailed(check, "malformed: line 2: tree size '%s' is not a decimal number"
                          % lines[1])
    try:
        c.root = b64_exact(lines[2], 32, "line 3: root hash")
    except ValueError as e:
        raise CheckFailed(check, "malformed: %s" % e)
    c.events = c.time = None
    for line in lines[3:]:
        if line.startswith("events "):
            v = decimal(line[7:], False)
            if c.events is not None or v is None:
                raise CheckFailed(check, "malformed: bad events line '%s'" % line)
            c.events = v
        elif line.startswith("time "):
            v = decimal(line[5:], True)
            if c.time is not None or v is None:
                raise CheckFailed(check, "malformed: bad time line '%s'" % line)
            c.time = v
    sigs = []
    for line in note[sep + 2:].split("\n")[:-1]:
        if not line.startswith(EM_DASH + " "):
            raise CheckFailed(check, "malformed: '%s' is not a signature line" % line)
        parts = line[2:].split(" ")
        if len(parts) != 2 or not name_ok(parts[0]):
            raise CheckFailed(check, "malformed: bad signature line '%s'" % line)
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise CheckFailed(check, "malformed: signature of '%s' is not base64" % parts[0])
        if len(raw) < 5:
            raise CheckFailed(check, "malformed: signature of '%s' is too short" % parts[0])
        sigs.append((parts[0], raw[:4], raw[4:]))
        if len(sigs) > MAX_SIGNATURES:
            raise CheckFailed(check, "malformed: more than %d signatures" % MAX_SIGNATURES)
    if not sigs:
        raise CheckFailed(check, "malformed: no signature line after the blank line")
    bad = mismatch = None
    for k in keys:
        for name, khash, sig in sigs:
            if name != k.name:
                continue
            if khash != k.hash:
                mismatch = (name, khash, k)
                continue
            try:
                nacl.signing.VerifyKey(k.pub).verify(body.encode("utf-8"), sig)
            except (nacl.exceptions.BadSignatureError, ValueError):
                bad = k
                continue
            c.key = k
            return c
    if bad is not None:
        raise CheckFailed(check, "bad signature: the signature by key '%s' (%s) does not verify"
                          % (bad.name, bad.hash.hex()))
    if mismatch is not None:
        raise CheckFailed(check, "key mismatch: signed by a key named '%s' with key hash %s, "
                                 "but the verifier key has hash %s"
                          % (mismatch[0], mismatch[1].hex(), mismatch[2].hash.hex()))
    raise CheckFailed(check, "unknown key: signed by %s, not by %s" % (
        ", ".join("'%s' (%s)" % (n, h.hex()) for n, h, _ in sigs),
        ", ".join("'%s' (%s)" % (k.name, k.hash.hex()) for k in keys) or "(no key)"))


# ---------------------------------------------------------------- proofs

def no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError('"%s" appears twice' % k)
        obj[k] = v
    return obj


def read_json(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e))
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckFailed("format", "not a proof file: %s" % e)
    if not isinstance(obj, dict):
        raise CheckFailed("format", "not a proof file: not a JSON object")
    for v in obj.values():
        for t in (v if isinstance(v, list) else [v]):
            if isinstance(t, str) and any(0xD800 <= ord(ch) <= 0xDFFF for ch in t):
                raise CheckFailed("format", "not a proof file: an unpaired surrogate escape")
    return obj


def field(obj, name, kind):
    if name not in obj:
        raise CheckFailed("format", 'the proof has no "%s"' % name)
    v = obj[name]
    if kind == "str" and not isinstance(v, str):
        raise CheckFailed("format", '"%s" must be a string' % name)
    if kind == "int" and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
        raise CheckFailed("format", '"%s" must be a non-negative integer' % name)
    if kind == "list" and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
        raise CheckFailed("format", '"%s" must be an array of strings' % name)
    return v


def check_key(obj, given, result):
    text = field(obj, "key", "str")
    try:
        emb = VerifierKey(text)
    except ValueError as e:
        raise CheckFailed("key", "the proof's key: %s" % e)
    result["key"] = emb.text
    if not given:
        result["key_trusted_from_proof"] = True
        return [emb]
    result["key_trusted_from_proof"] = False
    if not any(emb.same(k) for k in given):
        raise CheckFailed("key", "the proof's key %s is none of the --key files given" % emb.text)
    return given


def decode_path(obj):
    out = []
    for i, h in enumerate(field(obj, "path", "list")):
        try:
            out.append(b64_exact(h, 32, "path element %d" % i))
        except ValueError as e:
            raise CheckFailed("path", str(e))
    return out


def ckpt_json(c):
    d = {"origin": c.origin, "tree_size": c.size, "root": b64(c.root),
         "key_name": c.key.name, "key_hash": c.key.hash.hex()}
    if c.events is not None:
        d["events"] = c.events
    if c.time is not None:
        d["time"] = c.time
    return d


def do_inclusion(obj, keys, result):
    for name, kind in (("event_id", "str"), ("leaf_index", "int"), ("tree_size", "int"),
                       ("entry", "str"), ("leaf_hash", "str"), ("path", "list"),
                       ("checkpoint", "str"), ("key", "str")):
        field(obj, name, kind)
    accepted = check_key(obj, keys, result)
    c = open_checkpoint(obj["checkpoint"], accepted, "checkpoint")
    result["checkpoint"] = ckpt_json(c)
    result["event_id"], result["leaf_index"] = obj["event_id"], obj["leaf_index"]
    if obj["tree_size"] != c.size:
        raise CheckFailed("tree_size", "the proof says tree size %d, its checkpoint is of size %d"
                          % (obj["tree_size"], c.size))
    try:
        entry = base64.b64decode(obj["entry"], validate=True)
    except (binascii.Error, ValueError):
        raise CheckFailed("entry", '"entry" is not base64 (standard, padded)')
    try:
        etype, fields = decode_entry(entry)
    except ValueError as e:
        raise CheckFailed("entry", "the entry is not a canonical entry: %s" % e)
    names = entry_names(etype, fields)
    result["entry"] = dict({"type": etype}, **{
        n: (None if v is None else v.decode("utf-8", "replace")) for n, v in zip(names, fields)})
    if etype == 0x01 and fields[0] != obj["event_id"].encode("utf-8"):
        raise CheckFailed("entry", "the entry is of another event than the proof's event_id %s"
                          % obj["event_id"])
    leaf = leaf_hash(entry)
    try:
        claimed = b64_exact(obj["leaf_hash"], 32, '"leaf_hash"')
    except ValueError as e:
        raise CheckFailed("leaf_hash", str(e))
    if claimed != leaf:
        raise CheckFailed("leaf_hash", "the entry hashes to %s, the proof's leaf_hash is %s: "
                                       "the entry was altered" % (b64(leaf), b64(claimed)))
    path = decode_path(obj)
    why = verify_inclusion(obj["leaf_index"], c.size, leaf, path, c.root)
    if why:
        raise CheckFailed("path", why)
    return ("verified: event %s is leaf %d of the tree of size %d (origin %s), whose root is "
            "signed by %s; the path has %d hashes"
            % (obj["event_id"], obj["leaf_index"], c.size, c.origin, c.key.name, len(path)))


def do_consistency(obj, keys, result):
    for name in ("old_checkpoint", "new_checkpoint", "key"):
        field(obj, name, "str")
    field(obj, "path", "list")
    accepted = check_key(obj, keys, result)
    old = open_checkpoint(obj["old_checkpoint"], accepted, "old_checkpoint")
    result["old_checkpoint"] = ckpt_json(old)
    new = open_checkpoint(obj["new_checkpoint"], accepted, "new_checkpoint")
    result["new_checkpoint"] = ckpt_json(new)
    if old.origin != new.origin:
        raise CheckFailed("origin", "the checkpoints are of two logs: origin '%s' and origin '%s'"
                          % (old.origin, new.origin))
    if old.size > new.size:
        raise CheckFailed("path", "the old checkpoint's tree (size %d) is larger than the new "
                                  "one's (size %d)" % (old.size, new.size))
    path = decode_path(obj)
    why = verify_consistency(old.size, new.size, old.root, new.root, path)
    if why:
        raise CheckFailed("path", why)
    return ("verified: the tree of size %d is a prefix of the tree of size %d (origin %s); "
            "the path has %d hashes" % (old.size, new.size, new.origin, len(path)))


def run(args):
    keys = [load_key(p) for p in args.key]
    result = {"verified": False, "file": args.file}
    try:
        if args.command == "checkpoint":
            if not keys:
                raise UsageError("checkpoint: give the verifier key with --key PATH.pub")
            result["proof"] = "checkpoint"
            try:
                with open(args.file, "rb") as f:
                    note = f.read().decode("utf-8")
            except OSError as e:
                raise UsageError("cannot read %s: %s" % (args.file, e))
            except UnicodeDecodeError:
                raise CheckFailed("checkpoint", "malformed: not UTF-8")
            c = open_checkpoint(note, keys, "checkpoint")
            result["checkpoint"] = ckpt_json(c)
            if args.origin is not None and c.origin != args.origin:
                raise CheckFailed("origin", "the checkpoint's origin is '%s', not '%s'"
                                  % (c.origin, args.origin))
            msg = ("verified: checkpoint of origin %s, tree size %d, root %s, signed by %s (%s)"
                   % (c.origin, c.size, b64(c.root), c.key.name, c.key.hash.hex()))
        else:
            obj = read_json(args.file)
            fmt = obj.get("format")
            kind = {INCLUSION_FORMAT: "inclusion", CONSISTENCY_FORMAT: "consistency"}.get(fmt)
            result["proof"] = kind or "unknown"
            if kind is None:
                raise CheckFailed("format", "unknown format %r" % (fmt,))
            if args.command in ("inclusion", "consistency") and kind != args.command:
                raise CheckFailed("format", "this is a %s proof, not a%s %s proof"
                                  % (kind, "n" if args.command[0] == "i" else "", args.command))
            msg = (do_inclusion if kind == "inclusion" else do_consistency)(obj, keys, result)
    except CheckFailed as e:
        result.update(failed=e.check, error=e.why)
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            print("FAILED (%s): %s" % (e.check, e.why))
        sys.stderr.write("auditq_verify.py: %s: %s check failed: %s\n" % (args.file, e.check, e.why))
        return 1
    result.update(verified=True, failed=None, error=None)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        if "key" in result:
            print("key: %s (%s)" % (result["key"], "trusted as embedded in the proof: no --key "
                                    "given" if result.get("key_trusted_from_proof")
                                    else "equals a --key"))
        print(msg)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="Verify auditq checkpoints and proofs offline "
                                             "(docs/INTEGRITY.md).")
    ap.add_argument("command", choices=["checkpoint", "inclusion", "consistency", "proof"])
    ap.add_argument("file")
    ap.add_argument("--key", action="append", default=[],
                    help="a verifier key file (PATH.pub); repeatable (rotation)")
    ap.add_argument("--origin", help="checkpoint: the origin it must have")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except UsageError as e:
        sys.stderr.write("auditq_verify.py: %s\n" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
