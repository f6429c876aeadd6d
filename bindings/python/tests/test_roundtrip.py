"""10,000 events, sync and async, with hostile text in every free-text field
and nested JSON: exactly 10,000 rows, every field byte-exact."""
import auditq
from conftest import rows, wait_rows

HOSTILE = ['q"uo\'te', "tab\there", "new\nline\r\n", "back\\slash\\\\", "emoji \U0001F600\U0001F9D1\u200d\U0001F4BB",
           "non-ASCII é ß 中文 Ωmega", "{\"not\": json}", "\u2028sep\u2029", "nul-free \x01\x1f ctl"]
TEXT = ("tenant_id", "actor_id", "entity_type", "entity_id", "source_ip", "user_agent", "session_id")
N = 10000


def event(i, tag):
    h = HOSTILE[i % len(HOSTILE)]
    f = {k: f"{k}:{h}:{i}" for k in TEXT}
    f["request_id"] = f"{tag}-{i}-{h}"
    f["actor_type"] = ("user", "service", "ai", "system")[i % 4]
    f["outcome"] = ("success", "failure", "denied")[i % 3]
    f["priority"] = auditq.PRIORITIES[i % 4]
    f["changes"] = {"title": [f"Old {h}", f"New {h}"], "n": i, "nested": {"deep": [1, 2.5, None, True, {h: h}]}}
    f["metadata"] = {"k\"ey\\": h, "list": [h, {"x": [h]}], "empty": {}, "e": []}
    return f"page.update {h}", f


def test_10k_sync_and_async_byte_exact(redis_url, tag):
    want = {}
    with auditq.Producer(redis_url=redis_url, flush_interval_ms=20) as q:
        for i in range(N):
            action, f = event(i, tag)
            send = q.send_sync if i % 2 else q.send
            eid = send(action, **f)
            want[eid] = (action, f)
        q.flush(10000)
        st = q.stats()
    assert st["sent_sync"] == N // 2 and st["queued_async"] == N // 2 and st["errors"] == 0
    assert len(want) == N
    wait_rows(f"request_id LIKE '{tag}-%'", N)
    got = rows(f"request_id LIKE '{tag}-%'")
    assert len(got) == N
    for r in got:
        action, f = want.pop(r["event_id"])
        assert r["action"] == action
        for k in TEXT + ("request_id", "actor_type", "outcome", "priority"):
            assert r[k] == f[k], (k, r[k], f[k])
        assert r["changes"] == f["changes"]
        assert r["metadata"] == f["metadata"]
    assert want == {}
