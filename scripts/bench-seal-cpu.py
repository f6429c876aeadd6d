#!/usr/bin/python3
"""bench-seal-cpu.py off|on -- PostgreSQL's CPU time per stored row with the
evidence trigger (sql/005_integrity.sql) disabled or enabled: 100 INSERT
statements of 1,000 rows each (the worker's batch shape) from one psql
session, measured as the backend's utime + stime from /proc (so other load
on the machine does not count). Run it on the database host, as the owner
of audit_events, against a scratch database (PG* environment variables):

    for m in off on off on; do python3 scripts/bench-seal-cpu.py $m; done

It leaves the trigger enabled and the rows in place."""
import subprocess
import sys

mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode not in ("off", "on"):
    sys.exit("usage: bench-seal-cpu.py off|on")
p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True)


def q(sql):
    p.stdin.write(sql + "\n\\echo __END__\n")
    p.stdin.flush()
    out = []
    while True:
        line = p.stdout.readline()
        if line == "":
            sys.exit("psql exited")
        line = line.rstrip("\n")
        if line == "__END__":
            return out
        out.append(line)


def ticks(pid):
    fields = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


pid = q("SELECT pg_backend_pid();")[0]
q("ALTER TABLE audit_events %s TRIGGER audit_events_evidence;" % ("ENABLE" if mode == "on" else "DISABLE"))
t0 = ticks(pid)
for _ in range(100):
    q("""INSERT INTO audit_events (event_id, occurred_at, priority, tenant_id, actor_id, actor_type,
             action, entity_type, entity_id, outcome, source_ip, user_agent, request_id, metadata, changes)
         SELECT gen_random_uuid(), now() - (g || ' ms')::interval, 'normal', 'tenant-' || (g % 50),
                'user-' || g, 'user', 'document.update', 'document', 'doc-' || g, 'success', '10.0.0.1',
                'Mozilla/5.0 (X11; Linux x86_64)', 'req-' || g,
                jsonb_build_object('k', 'v', 'n', g, 'arr', jsonb_build_array(1, 2.5, g)),
                '{"before": {"title": "a"}, "after": {"title": "b"}}'
           FROM generate_series(1, 1000) AS g ON CONFLICT DO NOTHING;""")
t1 = ticks(pid)
q("ALTER TABLE audit_events ENABLE TRIGGER audit_events_evidence;")
hz = 100
print("%s: backend CPU %.2f s for 100,000 rows = %.1f us/row" % (mode, (t1 - t0) / hz, (t1 - t0) * 1e6 / hz / 100000))
p.stdin.close()
p.wait()
