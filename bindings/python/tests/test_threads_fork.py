"""Many threads at once; a forked child (os.fork, multiprocessing) sends and
its events land while the parent keeps working."""
import multiprocessing
import os
import threading

import auditq
from conftest import count, psql, wait_rows

THREADS, PER = 16, 500


def test_many_threads(producer, tag):
    ids = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def work(t):
        start.wait()
        for i in range(PER):
            send = producer.send_sync if i % 5 == 0 else producer.send
            ids[t].append(send("thread.send", request_id=f"{tag}-{t}-{i}", actor_id=f"t{t}",
                               changes={"t": t, "i": i}))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    producer.flush(10000)
    all_ids = {e for per in ids for e in per}
    assert len(all_ids) == THREADS * PER
    wait_rows(f"request_id LIKE '{tag}-%'", THREADS * PER)
    for t in range(THREADS):
        assert count(f"request_id LIKE '{tag}-{t}-%' AND actor_id = 't{t}'") == PER


def child_sends(q, tag, n):
    for i in range(n):
        (q.send_sync if i % 2 else q.send)("child.send", request_id=f"{tag}-child-{i}")


def test_os_fork_child_sends_parent_keeps_working(redis_url, tag, tmp_path):
    spool = str(tmp_path / "p.spool")
    with auditq.Producer(redis_url=redis_url, spool_path=spool, flush_interval_ms=20) as q:
        # The parent has a flusher with buffered events and open connections.
        for i in range(300):
            q.send("parent.before", request_id=f"{tag}-parent-{i}")
        q.send_sync("parent.before", request_id=f"{tag}-parent-sync")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child_sends(q, tag, 400)
                code = 0 if os.path.exists(f"{spool}.{os.getpid()}") else 2
                q.close()
            finally:
                os._exit(code)
        for i in range(300, 600):
            q.send("parent.after", request_id=f"{tag}-parent-{i}")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        q.send_sync("parent.after", request_id=f"{tag}-parent-sync2")
        q.flush(10000)
        st = q.stats()
        assert st["queued_async"] == 600 and st["sent_sync"] == 2 and st["errors"] == 0, st
    wait_rows(f"request_id LIKE '{tag}-child-%'", 400)
    wait_rows(f"request_id LIKE '{tag}-parent-%'", 602)
    # The parent's 300 buffered events were sent once, by the parent.
    assert psql(f"SELECT count(DISTINCT event_id) FROM audit_events WHERE request_id LIKE '{tag}-%'").strip() \
        == "1002"


def mp_child(q, tag, k):
    # No close(): the binding drains the producer at the child's exit.
    for i in range(250):
        (q.send_sync if i % 10 == 0 else q.send)("mp.send", request_id=f"{tag}-mp{k}-{i}")


def test_multiprocessing_fork_children(producer, tag):
    ctx = multiprocessing.get_context("fork")
    for i in range(100):
        producer.send("parent.mp", request_id=f"{tag}-parent-{i}")
    procs = [ctx.Process(target=mp_child, args=(producer, tag, k)) for k in range(3)]
    for p in procs:
        p.start()
    for i in range(100, 200):
        producer.send("parent.mp", request_id=f"{tag}-parent-{i}")
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    producer.flush(10000)
    wait_rows(f"request_id LIKE '{tag}-parent-%'", 200)
    for k in range(3):
        wait_rows(f"request_id LIKE '{tag}-mp{k}-%'", 250)
