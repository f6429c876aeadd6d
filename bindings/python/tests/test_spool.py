"""Redis stopped mid-run with a spool: every acknowledged event lands once
Redis is back."""
import os
import subprocess
import time

import auditq
from conftest import SCALE, count, env, wait_rows


def redis_stop():
    port = env("REDIS_PORT")
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "shutdown"], capture_output=True,
                   stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "ping"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if r.stdout.strip() != "PONG":
            return
        time.sleep(0.05)
    raise AssertionError("redis did not stop")


def redis_start():
    """Restarts the harness's Redis with its config and port, registered for
    the harness's cleanup (tests/lib/harness.sh _aq_redis_launch)."""
    d = env("AQ_REDIS_DIR")
    out = open(os.path.join(d, "stdout.log"), "ab")
    p = subprocess.Popen(["redis-server", os.path.join(d, "redis.conf")], stdin=subprocess.DEVNULL, stdout=out,
                         stderr=out, start_new_session=True)
    with open(os.path.join(d, "pid"), "w") as f:
        f.write(f"{p.pid}\n")
    for reg in (os.path.join(env("AQ_TMP"), ".harness-pids"), os.environ.get("AQ_REGISTRY")):
        if reg:
            with open(reg, "a") as f:
                f.write(f"redis {p.pid} main\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", env("REDIS_PORT"), "ping"], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise AssertionError("redis did not come back")


def test_redis_down_every_acknowledged_event_lands(redis_url, tag, tmp_path):
    spool = str(tmp_path / "app.spool")
    acked = set()
    with auditq.Producer(redis_url=redis_url, spool_path=spool, flush_interval_ms=20, connect_timeout_ms=200,
                         timeout_ms=500) as q:
        for i in range(500):
            acked.add((q.send_sync if i % 2 else q.send)("before", request_id=f"{tag}-a-{i}"))
        q.flush(5000)
        redis_stop()
        try:
            for i in range(1000):
                acked.add((q.send_sync if i % 2 else q.send)("down", request_id=f"{tag}-b-{i}",
                                                             changes={"i": i, "s": "é\t\"x\""}))
            q.flush(10000)  # async batches count once spooled
            st = q.stats()
            assert st["spooled"] >= 1000, st
            assert st["errors"] == 0, st
            assert count(f"request_id LIKE '{tag}-b-%'") == 0
        finally:
            redis_start()
        deadline = time.monotonic() + 30 * SCALE
        while q.stats()["spool_records"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert q.stats()["spool_records"] == 0, q.spool_problem()
    assert len(acked) == 1500
    wait_rows(f"request_id LIKE '{tag}-%'", 1500)
    from conftest import psql
    ids = set(psql(f"SELECT event_id FROM audit_events WHERE request_id LIKE '{tag}-%'").split())
    assert ids == acked
