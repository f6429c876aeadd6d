"""Errors: the exception class of the library's code, its message, and
nothing sent."""
import pytest

import auditq
from conftest import count


def check_nothing_sent(q, before, tag):
    q.flush(5000)
    st = q.stats()
    assert st["queued_async"] == before["queued_async"]
    assert st["sent_sync"] == before["sent_sync"]
    assert count(f"request_id LIKE '{tag}%'") == 0


@pytest.mark.parametrize("sync", [False, True])
def test_errors_raise_the_code_class_and_send_nothing(producer, tag, sync):
    send = producer.send_sync if sync else producer.send
    before = producer.stats()
    with pytest.raises(auditq.InvalidJSONError) as e:
        send("a.b", request_id=tag, changes={"when": object()})
    assert str(e.value) == "changes: not JSON-serializable: Object of type object is not JSON serializable"
    assert e.value.code == 10 and isinstance(e.value, ValueError) and isinstance(e.value.__cause__, TypeError)
    with pytest.raises(auditq.InvalidJSONError) as e:
        send("a.b", request_id=tag, metadata={"x": float("nan")})
    assert str(e.value) == "metadata: not JSON-serializable: Out of range float values are not JSON compliant"
    with pytest.raises(auditq.InvalidJSONError) as e:
        send("a.b", request_id=tag, changes="[1, 2]")
    assert str(e.value) == "changes: invalid JSON object: offset 0: expected '{' (top level must be a JSON object)"
    with pytest.raises(auditq.TooLargeError) as e:
        send("a.b", request_id=tag, tenant_id="t" * 257)
    assert str(e.value) == "tenant_id: 257 bytes, longer than the limit of 256"
    assert e.value.code == 12
    with pytest.raises(auditq.InvalidArgError) as e:
        send("a.b", request_id=tag, priority="urgent")
    assert str(e.value) == "priority 'urgent': must be 'critical', 'high', 'normal' or 'low'"
    assert e.value.code == 1
    with pytest.raises(auditq.InvalidUTF8Error) as e:
        send("a.b", request_id=tag, actor_id="bad \ud800 surrogate")
    assert str(e.value) == "actor_id: not valid UTF-8 (a lone surrogate)"
    with pytest.raises(auditq.AuditqError) as e:
        send("a.b", request_id=tag, actor_type="robot")
    assert type(e.value) is auditq.InvalidArgError
    assert str(e.value) == "actor_type: 'robot' is not one of user, service, ai, system"
    with pytest.raises(TypeError) as e:
        send("a.b", request_id=tag, colour="red")
    assert str(e.value) == "send() got an unexpected keyword argument 'colour'"
    check_nothing_sent(producer, before, tag)


def test_config_errors_name_the_fix(redis_url):
    with pytest.raises(auditq.ConfigError) as e:
        auditq.Producer(redis_url=redis_url, batchsize=10)
    assert str(e.value) == "unknown setting 'batchsize' (did you mean 'batch_size'?)"
    assert e.value.code == 3


def test_unreachable_redis_is_a_connect_error():
    with auditq.Producer(redis_url="redis://127.0.0.1:1", connect_timeout_ms=500) as q:
        with pytest.raises(auditq.ConnectError) as e:
            q.send_sync("a.b")
        assert str(e.value) == "cannot connect to Redis at 127.0.0.1:1: Connection refused"
        assert isinstance(e.value, ConnectionError)


def test_closed_producer(redis_url):
    q = auditq.Producer(redis_url=redis_url)
    q.close()
    q.close()  # idempotent
    assert q.closed
    with pytest.raises(auditq.ClosedError) as e:
        q.send("a.b")
    assert str(e.value) == "producer is closed"
