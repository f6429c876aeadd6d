"""WSGI and ASGI middleware that record one audit event per HTTP request.

Examples to copy and adapt (Django, Flask, FastAPI, Starlette):

    app.wsgi_app = AuditWSGIMiddleware(app.wsgi_app, producer)      # Flask
    app = AuditASGIMiddleware(app, producer)                         # ASGI

The event: action "http.request", entity ("route", PATH), outcome from the
status (2xx/3xx success, 401/403 denied, other 4xx/5xx or an exception
failure), source_ip, user_agent, request_id from X-Request-Id, and
metadata {method, path, status, duration_ms}. identify(scope_or_environ)
may return extra fields (tenant_id, actor_id, actor_type, session_id, ...).
The send is the async one: it costs microseconds and never waits for
Redis. An auditq error propagates (the request fails) unless
on_error is given, which is then called with the exception.
"""
import time


def _outcome(status):
    if status is None or status >= 500:
        return "failure"
    if status in (401, 403):
        return "denied"
    return "failure" if status >= 400 else "success"


def _record(producer, identify, on_error, source, method, path, status, started, ip, ua, rid):
    fields = dict(
        entity=("route", path or "/"),
        outcome=_outcome(status),
        source_ip=ip,
        user_agent=ua,
        request_id=rid,
        metadata={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
    if identify is not None:
        fields.update(identify(source) or {})
    try:
        producer.send("http.request", **fields)
    except Exception as e:  # auditq errors, or a bad field from identify
        if on_error is None:
            raise
        on_error(e)


class AuditWSGIMiddleware:
    def __init__(self, app, producer, identify=None, on_error=None):
        self.app, self.producer, self.identify, self.on_error = app, producer, identify, on_error

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen = {}

        def start(status, headers, exc_info=None):
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        def record():
            _record(self.producer, self.identify, self.on_error, environ, environ.get("REQUEST_METHOD"),
                    environ.get("PATH_INFO"), seen.get("status"), started, environ.get("REMOTE_ADDR"),
                    environ.get("HTTP_USER_AGENT"), environ.get("HTTP_X_REQUEST_ID"))

        try:
            result = self.app(environ, start)
        except BaseException:
            record()
            raise
        record()
        return result


class AuditASGIMiddleware:
    def __init__(self, app, producer, identify=None, on_error=None):
        self.app, self.producer, self.identify, self.on_error = app, producer, identify, on_error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = {}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = scope.get("client")
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _record(self.producer, self.identify, self.on_error, scope, scope.get("method"), scope.get("path"),
                    seen.get("status"), started, client[0] if client else None, headers.get("user-agent"),
                    headers.get("x-request-id"))
