"""The WSGI and ASGI middleware examples record one event per request."""
import asyncio
import io
from wsgiref.util import setup_testing_defaults

import pytest

from auditq.middleware import AuditASGIMiddleware, AuditWSGIMiddleware
from conftest import rows, wait_rows


def test_wsgi_one_event_per_request(producer, tag):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        status = "403 Forbidden" if environ["PATH_INFO"] == "/admin" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    mw = AuditWSGIMiddleware(app, producer, identify=lambda env: {"tenant_id": env.get("HTTP_X_TENANT")})
    for i, path in enumerate(["/pages/7", "/admin", "/boom"]):
        env = {"PATH_INFO": path, "REQUEST_METHOD": "POST", "HTTP_X_REQUEST_ID": f"{tag}-{i}",
               "HTTP_X_TENANT": "acme", "HTTP_USER_AGENT": "pytest \"ua\"", "REMOTE_ADDR": "10.0.0.9",
               "wsgi.input": io.BytesIO()}
        setup_testing_defaults(env)
        if path == "/boom":
            with pytest.raises(RuntimeError):
                mw(env, lambda s, h, e=None: None)
        else:
            assert mw(env, lambda s, h, e=None: None) == [b"ok"]
    producer.flush(5000)
    wait_rows(f"request_id LIKE '{tag}-%'", 3)
    got = {r["request_id"]: r for r in rows(f"request_id LIKE '{tag}-%'")}
    assert [(got[f"{tag}-{i}"]["outcome"], got[f"{tag}-{i}"]["metadata"]["status"]) for i in range(3)] == \
        [("success", 200), ("denied", 403), ("failure", None)]
    r = got[f"{tag}-0"]
    assert (r["action"], r["entity_type"], r["entity_id"], r["tenant_id"], r["source_ip"], r["user_agent"]) == \
        ("http.request", "route", "/pages/7", "acme", "10.0.0.9", "pytest \"ua\"")
    assert r["metadata"]["method"] == "POST" and r["metadata"]["path"] == "/pages/7"


def test_asgi_one_event_per_request(producer, tag):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 201 if scope["path"] == "/ok" else 500,
                    "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    mw = AuditASGIMiddleware(app, producer, identify=lambda scope: {"actor_id": "u-42", "actor_type": "user"})
    sent = []

    async def run():
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(m):
            sent.append(m)

        for i, path in enumerate(["/ok", "/fail"]):
            scope = {"type": "http", "method": "GET", "path": path, "client": ("192.0.2.1", 5555),
                     "headers": [(b"x-request-id", f"{tag}-{i}".encode()), (b"user-agent", b"asgi-agent/1")]}
            await mw(scope, receive, send)

    asyncio.run(run())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] * 2
    producer.flush(5000)
    wait_rows(f"request_id LIKE '{tag}-%'", 2)
    got = {r["request_id"]: r for r in rows(f"request_id LIKE '{tag}-%'")}
    assert (got[f"{tag}-0"]["outcome"], got[f"{tag}-0"]["metadata"]["status"], got[f"{tag}-0"]["actor_id"]) == \
        ("success", 201, "u-42")
    assert got[f"{tag}-1"]["outcome"] == "failure"
    assert got[f"{tag}-0"]["source_ip"] == "192.0.2.1"
    assert got[f"{tag}-0"]["user_agent"] == "asgi-agent/1"
