import builtins
from types import TracebackType
from typing import Any, Literal, Mapping, Optional, Tuple, Type, Union
import os

LIBAUDITQ_VERSION: str
__version__: str
PRIORITIES: Tuple[str, str, str, str]

Priority = Literal["critical", "high", "normal", "low"]
JSONObject = Union[Mapping[str, Any], str]

class AuditqError(Exception):
    code: Optional[int]

class InvalidArgError(AuditqError, ValueError): ...
class NoMemError(AuditqError, MemoryError): ...
class ConfigError(AuditqError, ValueError): ...
class ConnectError(AuditqError, ConnectionError): ...
class TimeoutError(AuditqError, builtins.TimeoutError): ...
class RedisError(AuditqError): ...
class AuthError(AuditqError): ...
class BufferFullError(AuditqError): ...
class MissingFieldError(AuditqError, ValueError): ...
class InvalidJSONError(AuditqError, ValueError): ...
class InvalidUTF8Error(AuditqError, ValueError): ...
class TooLargeError(AuditqError, ValueError): ...
class ClosedError(AuditqError): ...
class ProtocolError(AuditqError): ...
class SpoolFullError(AuditqError): ...
class SpoolError(AuditqError): ...

def strerror(code: int) -> str: ...

class Producer:
    def __init__(
        self,
        *,
        redis_url: Optional[str] = ...,
        namespace: Optional[str] = ...,
        spool_path: Union[str, os.PathLike[str], None] = ...,
        connect_timeout_ms: Optional[int] = ...,
        timeout_ms: Optional[int] = ...,
        sync_connections: Optional[int] = ...,
        buffer_events: Optional[int] = ...,
        batch_size: Optional[int] = ...,
        flush_interval_ms: Optional[int] = ...,
        full_policy: Optional[Literal["block", "error"]] = ...,
        enqueue_timeout_ms: Optional[int] = ...,
        close_timeout_ms: Optional[int] = ...,
        max_job_bytes: Optional[int] = ...,
        spool_fsync: Optional[Literal["always", "interval", "never"]] = ...,
        spool_fsync_interval_ms: Optional[int] = ...,
        spool_max_bytes: Optional[int] = ...,
        spool_full_policy: Optional[Literal["error", "block"]] = ...,
    ) -> None: ...
    def send(
        self,
        action: str,
        *,
        tenant_id: Optional[str] = ...,
        actor_id: Optional[str] = ...,
        actor_type: Optional[Literal["user", "service", "ai", "system"]] = ...,
        entity: Optional[Tuple[str, str]] = ...,
        entity_type: Optional[str] = ...,
        entity_id: Optional[str] = ...,
        outcome: Optional[Literal["success", "failure", "denied"]] = ...,
        source_ip: Optional[str] = ...,
        user_agent: Optional[str] = ...,
        request_id: Optional[str] = ...,
        session_id: Optional[str] = ...,
        event_id: Optional[str] = ...,
        changes: Optional[JSONObject] = ...,
        metadata: Optional[JSONObject] = ...,
        priority: Optional[Priority] = ...,
        occurred_at_us: Optional[int] = ...,
    ) -> str: ...
    def send_sync(
        self,
        action: str,
        *,
        tenant_id: Optional[str] = ...,
        actor_id: Optional[str] = ...,
        actor_type: Optional[Literal["user", "service", "ai", "system"]] = ...,
        entity: Optional[Tuple[str, str]] = ...,
        entity_type: Optional[str] = ...,
        entity_id: Optional[str] = ...,
        outcome: Optional[Literal["success", "failure", "denied"]] = ...,
        source_ip: Optional[str] = ...,
        user_agent: Optional[str] = ...,
        request_id: Optional[str] = ...,
        session_id: Optional[str] = ...,
        event_id: Optional[str] = ...,
        changes: Optional[JSONObject] = ...,
        metadata: Optional[JSONObject] = ...,
        priority: Optional[Priority] = ...,
        occurred_at_us: Optional[int] = ...,
    ) -> str: ...
    def flush(self, timeout_ms: int = ...) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def spool_problem(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> "Producer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
