"""auditq: record audit events from Python through libauditq.

    import auditq
    with auditq.Producer(redis_url="redis://127.0.0.1:6379",
                         spool_path="/var/lib/app/auditq.spool",
                         flush_interval_ms=50) as q:
        q.send("page.update", tenant_id="acme", actor_id="u-42", actor_type="user",
               entity=("page", "p-7"), outcome="success",
               changes={"title": ["Old", "New"]}, priority="high")   # async
        q.send_sync("user.login", tenant_id="acme", actor_id="u-42")  # acknowledged

Every libauditq error is raised as the AuditqError subclass named after its
code (AUDITQ_ERR_BUFFER_FULL -> BufferFullError) with auditq_last_error()
as its message. The GIL is released while the library may wait.

fork(): a Producer inherited by a child (gunicorn --preload, uwsgi,
multiprocessing with the fork start method) reopens itself at its first
use in the child, with its own connections and flusher thread; with a
spool_path the child's spool is "<spool_path>.<child pid>". Open producers
are closed (drained) at interpreter exit and at the end of a
multiprocessing child; a child that ends with os._exit() must call close()
or flush() itself first.
"""
import atexit as _atexit
import os as _os
import sys as _sys

from ._auditq import (  # noqa: F401
    LIBAUDITQ_VERSION,
    AuditqError,
    AuthError,
    BufferFullError,
    ClosedError,
    ConfigError,
    ConnectError,
    InvalidArgError,
    InvalidJSONError,
    InvalidUTF8Error,
    MissingFieldError,
    NoMemError,
    ProtocolError,
    Producer,
    RedisError,
    SpoolError,
    SpoolFullError,
    TimeoutError,
    TooLargeError,
    strerror,
)
from . import _auditq

__version__ = LIBAUDITQ_VERSION
PRIORITIES = ("critical", "high", "normal", "low")

_atexit.register(_auditq._close_all)


class _Anchor:
    """Weak-referenceable key for multiprocessing.util.register_after_fork."""


_anchor = _Anchor()


def _mp_child(_obj):
    # Runs in a multiprocessing child after it cleared the finalizers it
    # inherited: a child process ends with os._exit(), so atexit never
    # runs there, but its exit finalizers do.
    _sys.modules["multiprocessing.util"].Finalize(None, _auditq._close_all, exitpriority=0)


def _after_fork_child():
    util = _sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(_anchor, _mp_child)


_os.register_at_fork(after_in_child=_after_fork_child)
