"""Fixtures for the binding's tests. Run by tests/integration/it_17_python.sh,
which starts a private Redis, PostgreSQL and an auditq-worker (the harness)
and exports their addresses; see that script."""
import json
import os
import subprocess
import time
import uuid

import pytest

SCALE = float(os.environ.get("AQ_TIME_SCALE", "1"))


def env(name):
    v = os.environ.get(name)
    if not v:
        pytest.fail(f"{name} is not set: run through tests/integration/it_17_python.sh")
    return v


def psql(sql):
    out = subprocess.run([os.environ.get("AQ_PSQL", "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                          "-c", sql], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return out.stdout


def count(where):
    return int(psql(f"SELECT count(*) FROM audit_events WHERE {where}").strip())


def wait_rows(where, n, timeout_s=30):
    """Waits until exactly n rows match (fails on more, or on a timeout)."""
    deadline = time.monotonic() + timeout_s * SCALE
    got = -1
    while time.monotonic() < deadline:
        got = count(where)
        if got >= n:
            break
        time.sleep(0.1)
    assert got == n, f"rows WHERE {where}: {got}, want {n}"
    return got


def rows(where):
    """The matching rows as dicts (row_to_json: strings exact, jsonb parsed)."""
    out = psql(f"SELECT row_to_json(t) FROM (SELECT event_id, priority, tenant_id, actor_id, actor_type, "
               f"action, entity_type, entity_id, outcome, source_ip, user_agent, request_id, session_id, "
               f"changes, metadata, (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_at_us "
               f"FROM audit_events WHERE {where}) t")
    return [json.loads(line) for line in out.split("\n") if line]


@pytest.fixture
def tag():
    """A request_id prefix of this test's events."""
    return "py-" + uuid.uuid4().hex[:12]


@pytest.fixture
def redis_url():
    return env("AUDITQ_REDIS_URL")


@pytest.fixture
def producer(redis_url):
    import auditq
    with auditq.Producer(redis_url=redis_url, flush_interval_ms=20) as q:
        yield q
