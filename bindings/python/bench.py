"""Per-call cost of Producer.send (async) from one Python thread.

    PYTHONPATH=build/python python3 -P bindings/python/bench.py --redis-url URL [--events N] [--json-as dict|str] [--json]

Events come from a pre-built pool of 4096 (as `auditq-bench enqueue --pool
4096`: the application already has its event; the call is measured).
Phase 1 times every call with perf_counter_ns (p50/p90/p99/p99.9; the two
clock reads, ~0.1 us, are inside the figure). Phase 2 sends the same
number again without a clock per call: calls/s from one thread. Each phase
ends with flush(); its time is reported. --json-as str passes changes and
metadata as JSON text (no json.dumps in the call), dict as dicts.
"""
import argparse
import json
import random
import time

import auditq

ACTIONS = ["page.update", "page.create", "user.login", "invoice.pay", "doc.share", "role.grant"]


def make_pool(n, json_as, rnd):
    pool = []
    for i in range(n):
        changes = {"title": [f"Old title {i}", f"New title {i}"], "tags": ["a", "b", str(i % 7)]}
        metadata = {"route": "/pages/:id", "status": 200, "ms": round(rnd.random() * 50, 2)}
        ev = dict(tenant_id=f"tenant-{rnd.randrange(200)}", actor_id=f"user-{rnd.randrange(100000)}",
                  actor_type="user", entity=("page", f"p-{rnd.randrange(10 ** 6)}"), outcome="success",
                  source_ip=f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}",
                  user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", request_id=f"req-{i:08d}",
                  changes=json.dumps(changes) if json_as == "str" else changes,
                  metadata=json.dumps(metadata) if json_as == "str" else metadata)
        pool.append((ACTIONS[i % len(ACTIONS)], ev))
    return pool


def pct(sorted_ns, p):
    return sorted_ns[min(len(sorted_ns) - 1, int(p / 100.0 * len(sorted_ns)))] / 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--json-as", choices=("dict", "str"), default="dict")
    ap.add_argument("--buffer-events", type=int, default=1000000,
                    help="buffer_events (default 1000000: the call, not backpressure, is measured)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of text")
    a = ap.parse_args()
    pool = make_pool(4096, a.json_as, random.Random(1))
    lat = [0] * a.events
    clock = time.perf_counter_ns
    with auditq.Producer(redis_url=a.redis_url, buffer_events=a.buffer_events) as q:
        send = q.send
        for i in range(a.events):
            action, ev = pool[i & 4095]
            t0 = clock()
            send(action, **ev)
            lat[i] = clock() - t0
        t0 = time.perf_counter()
        q.flush(120000)
        drain1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(a.events):
            action, ev = pool[i & 4095]
            send(action, **ev)
        loop = time.perf_counter() - t0
        q.flush(120000)
        total = time.perf_counter() - t0
        st = q.stats()
    lat.sort()
    out = {"mode": "python async", "json_as": a.json_as, "events": a.events,
           "p50_us": pct(lat, 50), "p90_us": pct(lat, 90), "p99_us": pct(lat, 99), "p999_us": pct(lat, 99.9),
           "max_us": lat[-1] / 1000.0, "calls_per_s": a.events / loop, "to_redis_per_s": a.events / total,
           "drain_ms": drain1 * 1000, "errors": st["errors"], "sent_async": st["sent_async"]}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"python async send (json as {a.json_as}), {a.events} events, 1 thread")
        print(f"  per call us: p50 {out['p50_us']:.1f}  p90 {out['p90_us']:.1f}  p99 {out['p99_us']:.1f}  "
              f"p99.9 {out['p999_us']:.1f}  max {out['max_us']:.1f}")
        print(f"  calls/s {out['calls_per_s']:,.0f}; into Redis incl. final flush {out['to_redis_per_s']:,.0f}/s; "
              f"errors {st['errors']}, acknowledged {st['sent_async']}")
    if st["errors"] or st["sent_async"] != 2 * a.events:
        raise SystemExit("bench: not every event was acknowledged")


if __name__ == "__main__":
    main()
