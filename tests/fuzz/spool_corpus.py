#!/usr/bin/env python3
"""spool_corpus.py -- writes the seed corpus of tests/fuzz/fuzz_spool.c
into tests/fuzz/corpus/spool/.

An independent writer of the spool format, from docs/PROTOCOL.md ("Producer
spool file") alone -- so it also checks that document: `auditqctl spool
inspect` reads valid-3.spool as 3 good records (critical, high, low).

    python3 tests/fuzz/spool_corpus.py [OUTDIR]
"""
import os
import struct
import sys


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def header(ns=b"auditq", spool_id=0x0123456789ABCDEF):
    h = b"AUDITQSP" + struct.pack("<HHIQB", 1, 96, 0, spool_id, len(ns)) + ns.ljust(64, b"\0") + b"\0" * 3
    assert len(h) == 92
    return h + struct.pack("<I", crc32c(h))


def record(payload, prio):
    h = b"\xf5REC" + struct.pack("<IB3xI", len(payload), prio, crc32c(payload))
    return h + struct.pack("<I", crc32c(h)) + payload


def job(i, prio):
    """A real job (msgpack map, docs/PROTOCOL.md section 3), hand-packed."""
    def s(x):
        return bytes([0xA0 | len(x)]) + x if len(x) < 32 else b"\xd9" + bytes([len(x)]) + x
    names = [b"critical", b"high", b"normal", b"low"]
    eid = b"0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b7%d" % i
    return (b"\x85" + s(b"v") + b"\x01" + s(b"event_id") + s(eid) + s(b"occurred_at") +
            b"\xcf" + struct.pack(">Q", 1721390400000000 + i) + s(b"priority") + s(names[prio]) +
            s(b"action") + s(b"user.login"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "spool")
    os.makedirs(out, exist_ok=True)
    recs = [record(job(0, 0), 0), record(job(1, 1), 1), record(job(2, 3), 3)]
    valid = header() + b"".join(recs)
    files = {
        "valid-3.spool": valid,
        "header-only.spool": header(),
        "torn-tail.spool": valid[:-10],
        "torn-header.spool": valid[:96 + len(recs[0]) + 7],
    }
    corrupt = bytearray(valid)
    corrupt[96 + len(recs[0]) + 20 + 5] ^= 0x5A          # payload byte of record 1
    files["corrupt-payload.spool"] = bytes(corrupt)
    corrupt = bytearray(valid)
    corrupt[96 + len(recs[0]) + 5] ^= 0x01               # length byte of record 1
    files["corrupt-length.spool"] = bytes(corrupt)
    files["bad-marker.spool"] = header() + b"\xf5REX" + recs[1][4:] + recs[2]
    files["huge-length.spool"] = header() + b"\xf5REC" + struct.pack("<I", 0xFFFFFFF0) + recs[0][8:]
    damaged = bytearray(valid)
    damaged[40] ^= 0xFF                                  # namespace byte: header CRC fails
    files["bad-header-crc.spool"] = bytes(damaged)
    files["records-only.bin"] = b"".join(recs)           # fed behind a valid header by mode 2
    files["garbage-between.bin"] = recs[0] + b"\xf5\xf5RE" * 9 + recs[1]
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(files), out))


if __name__ == "__main__":
    main()
