"""query_model.py -- the rows it_78_query.sh loads, computed independently of
auditqctl and PostgreSQL, to check `auditqctl query` against.

The generated rows mirror GEN_SQL below (the test feeds that same text to
psql): row i of N has fields that are simple functions of i, and groups of
three consecutive rows share one occurred_at, so ties are everywhere. The
crafted rows hold the hard cases (quotes, commas, CR/LF, control and
non-ASCII characters, NULL next to empty strings, nested JSON).

  query_model.py gen-sql T0 N        the INSERT for the generated rows
  query_model.py crafted-sql T0      the INSERT for the crafted rows
  query_model.py counts T0 N         filter lines on stdin (split at blanks, as
                                     the test's `read -a` does) -> one count each
  query_model.py check T0 N FORMAT FILE [FILTERS]
      FILE (ndjson or csv) must hold exactly the matching rows, in order,
      field by field; prints "ok: N rows"
  query_model.py ties T0 N K FILE    rows K and K+1 (1-based) of FILE share
                                     occurred_at (a page boundary in a tie)

T0 is the UTC start of the data as 'YYYY-MM-DD'. FILTERS use auditqctl's
spelling: --tenant --actor --action (exact or PREFIX*) --entity TYPE[:ID]
--outcome --event-id --since --until (ISO, Z) --desc.
"""
import csv
import datetime
import hashlib
import json
import sys
import uuid

COLUMNS = ["event_id", "occurred_at", "received_at", "priority", "tenant_id", "actor_id",
           "actor_type", "action", "entity_type", "entity_id", "outcome", "source_ip",
           "user_agent", "request_id", "session_id", "changes", "metadata", "clock_flag"]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

GEN_SQL = """INSERT INTO audit_events (event_id, occurred_at, received_at, priority, tenant_id,
    actor_id, actor_type, action, entity_type, entity_id, outcome, source_ip, user_agent,
    request_id, session_id, changes, metadata)
SELECT md5('ev' || i)::uuid, ts, ts + interval '1.5 seconds',
       (ARRAY['critical','high','normal','low'])[1 + i % 4],
       'tenant-' || (i % 7), 'user-' || (i % 101),
       (ARRAY['user','service','ai','system'])[1 + i % 4],
       (ARRAY['user.login','user.logout','document.update','document.delete',
              'billing.charge'])[1 + i % 5],
       (ARRAY['document','invoice','user'])[1 + i % 3], 'e-' || (i % 1000),
       (ARRAY['success','failure','denied',NULL])[1 + i % 4],
       '10.0.' || (i % 256) || '.1', 'agent/' || (i % 13), 'req-' || i,
       CASE WHEN i % 2 = 0 THEN 'sess-' || (i % 500) END,
       CASE WHEN i % 10 = 0 THEN jsonb_build_object('n', i) END,
       jsonb_build_object('k', i % 17)
FROM generate_series(0, @LAST@) AS i,
     LATERAL (SELECT timestamptz '@T0@T00:00:00Z' + (i / 3) * interval '108 seconds'
                     + ((i / 3) % 1000) * interval '1 microsecond' AS ts) AS x;
"""


def us_of(text):
    """'YYYY-MM-DD[THH:MM:SS[.ffffff]]Z' -> microseconds since the epoch."""
    text = text.rstrip("Z")
    fmt = ("%Y-%m-%dT%H:%M:%S.%f" if "." in text else
           "%Y-%m-%dT%H:%M:%S" if "T" in text else "%Y-%m-%d")
    d = datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
    return (d - EPOCH) // datetime.timedelta(microseconds=1)


def iso(us):
    return (EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lite(t0_us, i):
    """The fields filters look at, cheaply (no md5, no time formatting)."""
    g = i // 3
    return {
        "_i": i, "_us": t0_us + g * 108_000_000 + g % 1000,
        "tenant_id": f"tenant-{i % 7}", "actor_id": f"user-{i % 101}",
        "action": ["user.login", "user.logout", "document.update", "document.delete",
                   "billing.charge"][i % 5],
        "entity_type": ["document", "invoice", "user"][i % 3], "entity_id": f"e-{i % 1000}",
        "outcome": ["success", "failure", "denied", None][i % 4],
    }


def event_id_of(i):
    return str(uuid.UUID(hashlib.md5(f"ev{i}".encode()).hexdigest()))


def gen(t0_us, i):
    r = lite(t0_us, i)
    del r["_i"]
    us = r["_us"]
    r.update({
        "event_id": event_id_of(i),
        "occurred_at": iso(us), "received_at": iso(us + 1_500_000),
        "priority": ["critical", "high", "normal", "low"][i % 4],
        "actor_type": ["user", "service", "ai", "system"][i % 4],
        "source_ip": f"10.0.{i % 256}.1", "user_agent": f"agent/{i % 13}",
        "request_id": f"req-{i}", "session_id": f"sess-{i % 500}" if i % 2 == 0 else None,
        "changes": {"n": i} if i % 10 == 0 else None, "metadata": {"k": i % 17},
    })
    return r


def crafted(t0_us):
    """Five hand-made rows of tenant 'crafted' on day T0 + 40, 10:00-12:00 UTC."""
    day = t0_us + 40 * 86_400_000_000
    h = 3_600_000_000
    base = {c: None for c in COLUMNS}
    rows = [
        dict(base, event_id="00000000-0000-7000-8000-000000000001", _us=day + 10 * h + 1,
             priority="high", actor_id='O\'Brien, "Bob"', actor_type="user", action="user.login",
             entity_type="document", entity_id="line1\nline2", outcome="success", source_ip="::1",
             user_agent='Mozilla/5.0 (X11; Linux) "quoted"', request_id="cr\r\nlf",
             changes={"title": ["Old", 'New "q"'], "n": 1},
             metadata={"emoji": "\U0001F600", "path": "C:\\dir"}),
        # 0003 and 0002 share a microsecond: event_id orders them (0002 first).
        dict(base, event_id="00000000-0000-7000-8000-000000000003", _us=day + 11 * h,
             priority="normal", actor_id="Zo\u00eb \u65e5\u672c\u8a9e \U0001F600",
             action="document.update", entity_type="doc", source_ip=""),
        dict(base, event_id="00000000-0000-7000-8000-000000000002", _us=day + 11 * h,
             priority="low", actor_id="ctl\x01\x1f\x7f", action="x", entity_type="a,b",
             entity_id='"', outcome="denied", user_agent="tab\there", request_id=" spaced ",
             changes={}, metadata={"nested": {"a": [1, 2.5, None, True]}}),
        dict(base, event_id="00000000-0000-7000-8000-000000000004", _us=day + 12 * h,
             priority="critical", actor_id="a-very-long-actor-name",
             action="document.permission.granted", entity_type="folder",
             entity_id="\u65e5\u672c\u8a9e\u306e\u30d5\u30a9\u30eb\u30c0", outcome="failure"),
        dict(base, event_id="00000000-0000-7000-8000-000000000005", _us=day + 12 * h + 500_000,
             priority="low", actor_id="evil\u202egnp.exe", action="user.logout"),
    ]
    for r in rows:
        r["tenant_id"] = "crafted"
        r["occurred_at"] = iso(r["_us"])
        r["received_at"] = iso(r["_us"] + 1_000_000)
    return rows


def sql_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, dict):
        v = json.dumps(v, ensure_ascii=False)
    assert "$q$" not in v
    return "$q$" + v + "$q$"


def crafted_sql(t0_us):
    lines = []
    for r in crafted(t0_us):
        lines.append("INSERT INTO audit_events (%s) VALUES (%s);" % (
            ", ".join(COLUMNS), ", ".join(sql_literal(r.get(c)) for c in COLUMNS)))
    return "\n".join(lines)


def all_rows(t0_us, n):
    """Every row, generated ones in their cheap form (see full())."""
    for i in range(n):
        yield lite(t0_us, i)
    yield from crafted(t0_us)


def full(t0_us, r):
    return gen(t0_us, r["_i"]) if "_i" in r else r


def parse_filters(args):
    f = {"desc": False}
    it = iter(args)
    for a in it:
        if a == "--desc":
            f["desc"] = True
            continue
        v = next(it)
        f[a.lstrip("-")] = v
    return f


def matches(r, f):
    if "tenant" in f and r["tenant_id"] != f["tenant"]:
        return False
    if "actor" in f and r["actor_id"] != f["actor"]:
        return False
    if "action" in f:
        a = f["action"]
        if a.endswith("*"):
            if not r["action"].startswith(a[:-1]):
                return False
        elif r["action"] != a:
            return False
    if "entity" in f:
        t, _, i = f["entity"].partition(":")
        if r["entity_type"] != t or (":" in f["entity"] and r["entity_id"] != i):
            return False
    if "outcome" in f and r["outcome"] != f["outcome"]:
        return False
    if "event-id" in f:
        eid = event_id_of(r["_i"]) if "_i" in r else r["event_id"]
        if eid != f["event-id"].lower():
            return False
    if "since" in f and r["_us"] < us_of(f["since"]):
        return False
    if "until" in f and r["_us"] >= us_of(f["until"]):
        return False
    return True


def expected(t0_us, n, f):
    rows = [full(t0_us, r) for r in all_rows(t0_us, n) if matches(r, f)]
    rows.sort(key=lambda r: (r["_us"], r["event_id"]), reverse=f["desc"])
    return rows


def check(t0_us, n, fmt, path, f):
    want = expected(t0_us, n, f)
    with open(path, newline="", encoding="utf-8") as fh:
        if fmt == "ndjson":
            got = []
            for lineno, line in enumerate(fh, 1):
                assert line.endswith("\n"), f"line {lineno}: no newline at the end"
                obj = json.loads(line)
                assert list(obj) == COLUMNS, f"line {lineno}: keys {list(obj)}"
                got.append(obj)
        else:
            rd = csv.reader(fh, strict=True)
            assert next(rd) == COLUMNS, "csv header"
            got = []
            for rec in rd:
                assert len(rec) == len(COLUMNS), f"csv record {len(got) + 1}: {len(rec)} fields"
                obj = dict(zip(COLUMNS, rec))
                for c in ("changes", "metadata"):
                    obj[c] = json.loads(obj[c]) if obj[c] != "" else None
                got.append(obj)
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want), 1):
        for c in COLUMNS:
            wv = w.get(c)  # clock_flag: NULL on every row the model makes
            if fmt == "csv" and wv is None and c not in ("changes", "metadata"):
                wv = ""  # csv.reader cannot tell NULL from "": the exact-bytes test does
            if g[c] != wv:
                raise AssertionError(f"row {k} ({w['event_id']}) column {c}: got {g[c]!r}, "
                                     f"expected {wv!r}")
    print(f"ok: {len(got)} rows")


def main():
    cmd, t0_us = sys.argv[1], us_of(sys.argv[2])
    if cmd == "gen-sql":
        print(GEN_SQL.replace("@LAST@", str(int(sys.argv[3]) - 1)).replace("@T0@", sys.argv[2]))
    elif cmd == "crafted-sql":
        print(crafted_sql(t0_us))
    elif cmd == "counts":
        n = int(sys.argv[3])
        filters = [parse_filters(line.split()) for line in sys.stdin]
        counts = [0] * len(filters)
        for r in all_rows(t0_us, n):
            for k, f in enumerate(filters):
                if matches(r, f):
                    counts[k] += 1
        print("\n".join(map(str, counts)))
    elif cmd == "check":
        check(t0_us, int(sys.argv[3]), sys.argv[4], sys.argv[5], parse_filters(sys.argv[6:]))
    elif cmd == "ties":
        k = int(sys.argv[4])
        with open(sys.argv[5], encoding="utf-8") as fh:
            lines = fh.readlines()
        a, b = json.loads(lines[k - 1]), json.loads(lines[k])
        assert a["occurred_at"] == b["occurred_at"], (a["occurred_at"], b["occurred_at"])
        print("tie:", a["occurred_at"])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
