/* _auditq.c -- the CPython extension over libauditq (auditq._auditq).
 *
 * DESIGN
 *
 * One Python Producer wraps one libauditq handle (thread-safe in the
 * library). A send builds the event in a per-thread auditq_event (reset and
 * reused: no malloc per call), with the GIL held while the Python values
 * are read and copied in; then the GIL is released around the library
 * call, which may wait (full buffer: enqueue_timeout_ms; sync: Redis, up to
 * timeout_ms; the spool's fdatasync). auditq_last_error() is per OS thread
 * and read back on the same thread once the GIL is taken again.
 *
 * Close while other threads send: `busy` counts the calls that are inside
 * the library with the GIL released (changed only with the GIL held). close
 * marks the producer closed (new calls raise ClosedError), waits with the
 * GIL released until busy is 0, then closes the handle -- so the handle is
 * never freed under a running call.
 *
 * fork(): the module registers an os.register_at_fork(after_in_child=)
 * hook. In the child it calls auditq_abandon() on every open handle (the
 * child has none of the parent's threads and must not use its sockets,
 * auditq.h) and zeroes busy (the calls it counted run in the parent). The
 * producer reopens itself with the same settings at its first use in the
 * child; a spool_path gets ".<child pid>" appended, since the parent keeps
 * the spool's lock. Until then the child holds no connection and no thread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auditq.h"

#define N_RC 17

static PyObject *exc_base;            /* auditq.AuditqError */
static PyObject *exc_by_rc[N_RC];     /* class per auditq_rc (0 unused) */
static PyObject *json_dumps;          /* JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                         allow_nan=False).encode */

/* Subclass names follow the enum (AUDITQ_ERR_BUFFER_FULL -> BufferFullError);
 * extra bases make them catchable the Python way as well. */
static const struct {
    const char *name;
    const char *extra_base;           /* builtins name or NULL */
    const char *doc;
} exc_table[N_RC] = {
    [AUDITQ_ERR_INVALID_ARG] = {"InvalidArgError", "ValueError", "AUDITQ_ERR_INVALID_ARG: a bad argument (priority, field value)."},
    [AUDITQ_ERR_NOMEM] = {"NoMemError", "MemoryError", "AUDITQ_ERR_NOMEM: an allocation failed."},
    [AUDITQ_ERR_CONFIG] = {"ConfigError", "ValueError", "AUDITQ_ERR_CONFIG: unknown setting or invalid value."},
    [AUDITQ_ERR_CONNECT] = {"ConnectError", "ConnectionError", "AUDITQ_ERR_CONNECT: Redis unreachable."},
    [AUDITQ_ERR_TIMEOUT] = {"TimeoutError", "TimeoutError", "AUDITQ_ERR_TIMEOUT: Redis did not answer in time, or flush/close ran out of time."},
    [AUDITQ_ERR_REDIS] = {"RedisError", NULL, "AUDITQ_ERR_REDIS: Redis answered with an error."},
    [AUDITQ_ERR_AUTH] = {"AuthError", NULL, "AUDITQ_ERR_AUTH: Redis refused the login or the command (ACL)."},
    [AUDITQ_ERR_BUFFER_FULL] = {"BufferFullError", NULL, "AUDITQ_ERR_BUFFER_FULL: the async buffer is full."},
    [AUDITQ_ERR_MISSING_FIELD] = {"MissingFieldError", "ValueError", "AUDITQ_ERR_MISSING_FIELD: a required field is not set."},
    [AUDITQ_ERR_INVALID_JSON] = {"InvalidJSONError", "ValueError", "AUDITQ_ERR_INVALID_JSON: changes/metadata is not a JSON object."},
    [AUDITQ_ERR_INVALID_UTF8] = {"InvalidUTF8Error", "ValueError", "AUDITQ_ERR_INVALID_UTF8: a text field is not valid UTF-8 or holds NUL."},
    [AUDITQ_ERR_TOO_LARGE] = {"TooLargeError", "ValueError", "AUDITQ_ERR_TOO_LARGE: a field or the encoded event is over its limit."},
    [AUDITQ_ERR_CLOSED] = {"ClosedError", NULL, "AUDITQ_ERR_CLOSED: the producer is closed or closing."},
    [AUDITQ_ERR_PROTOCOL] = {"ProtocolError", NULL, "AUDITQ_ERR_PROTOCOL: unexpected reply from Redis."},
    [AUDITQ_ERR_SPOOL_FULL] = {"SpoolFullError", NULL, "AUDITQ_ERR_SPOOL_FULL: Redis failed and the spool is at spool_max_bytes."},
    [AUDITQ_ERR_SPOOL] = {"SpoolError", NULL, "AUDITQ_ERR_SPOOL: the spool is unusable (locked, not a spool, I/O error)."},
};

static PyObject *raise_rc_msg(auditq_rc rc, const char *msg)
{
    PyObject *cls = (rc > 0 && rc < N_RC && exc_by_rc[rc]) ? exc_by_rc[rc] : exc_base;
    PyErr_SetString(cls, msg && msg[0] ? msg : auditq_strerror(rc));
    return NULL;
}

/* Raises the class of rc with this thread's auditq_last_error(). */
static PyObject *raise_rc(auditq_rc rc)
{
    return raise_rc_msg(rc, auditq_last_error());
}

/* ---- Producer ------------------------------------------------------------ */

typedef struct Producer {
    PyObject_HEAD
    auditq *q;            /* NULL: closed, or abandoned after fork */
    PyObject *settings;   /* list of (key, value) str pairs, for the reopen */
    pid_t pid;            /* process that opened q */
    int closed;           /* close() called */
    int busy;             /* calls inside the library (GIL held to change) */
    struct Producer *next, *prev;  /* open producers, for the fork hook */
    PyObject *weakrefs;
} Producer;

static Producer *live_head;  /* guarded by the GIL */

static void live_add(Producer *p)
{
    p->prev = NULL;
    p->next = live_head;
    if (live_head)
        live_head->prev = p;
    live_head = p;
}

static void live_remove(Producer *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (live_head == p)
        live_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
}

/* Opens p->q from p->settings; spool_suffix (or NULL) is appended to
 * spool_path. Raises on failure. */
static int producer_open(Producer *p, const char *spool_suffix)
{
    auditq_config *cfg = auditq_config_new();
    auditq *q = NULL;
    auditq_rc rc;

    if (!cfg) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(p->settings);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(p->settings, i);
        const char *k = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kv, 0));
        const char *v = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kv, 1));
        if (!k || !v)
            goto fail_py;
        char *owned = NULL;
        if (spool_suffix && v[0] && strcmp(k, "spool_path") == 0) {
            size_t len = strlen(v) + strlen(spool_suffix) + 1;
            owned = PyMem_Malloc(len);
            if (!owned) {
                PyErr_NoMemory();
                goto fail_py;
            }
            snprintf(owned, len, "%s%s", v, spool_suffix);
            v = owned;
        }
        rc = auditq_config_set(cfg, k, v);
        PyMem_Free(owned);
        if (rc != AUDITQ_OK) {
            raise_rc(rc);
            goto fail_py;
        }
    }
    if (spool_suffix) {
        /* The reopen in a forked child keeps the GIL: two threads of the
         * child that both found q NULL must not both open (the second
         * would find its spool locked by the first). The child's spool is
         * new, so the open does not read a long file. */
        rc = auditq_open(cfg, &q);
    } else {
        Py_BEGIN_ALLOW_THREADS
        rc = auditq_open(cfg, &q);
        Py_END_ALLOW_THREADS
    }
    auditq_config_free(cfg);
    if (rc != AUDITQ_OK)
        return raise_rc(rc), -1;
    p->q = q;
    p->pid = getpid();
    return 0;
fail_py:
    auditq_config_free(cfg);
    return -1;
}

/* The handle for a call, reopening it in a forked child; NULL with an
 * exception when closed. Call with the GIL held; the caller increments
 * busy before releasing the GIL. */
static auditq *producer_handle(Producer *p)
{
    if (p->closed)
        return raise_rc_msg(AUDITQ_ERR_CLOSED, "producer is closed"), NULL;
    if (!p->q) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".%ld", (long)getpid());
        if (producer_open(p, suffix) != 0)
            return NULL;
    }
    return p->q;
}

static int Producer_init(Producer *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Producer() takes settings as keyword arguments only, "
                                         "e.g. Producer(redis_url='redis://127.0.0.1:6379')");
        return -1;
    }
    if (self->q || self->settings) {
        PyErr_SetString(PyExc_RuntimeError, "Producer.__init__ called twice");
        return -1;
    }
    self->settings = PyList_New(0);
    if (!self->settings)
        return -1;
    if (kwds) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kwds, &pos, &k, &v)) {
            PyObject *sv;
            if (v == Py_None)
                continue;  /* None = the library's default */
            if (PyBool_Check(v)) {
                PyErr_Format(PyExc_TypeError, "setting %S: expected str or int, got bool", k);
                return -1;
            }
            if (PyUnicode_Check(v)) {
                sv = Py_NewRef(v);
            } else if (PyLong_Check(v)) {
                sv = PyObject_Str(v);
            } else if (PyObject_HasAttrString(v, "__fspath__")) {
                PyObject *fs = PyOS_FSPath(v);
                if (!fs)
                    return -1;
                if (!PyUnicode_Check(fs)) {
                    Py_DECREF(fs);
                    PyErr_Format(PyExc_TypeError, "setting %S: expected a str path", k);
                    return -1;
                }
                sv = fs;
            } else {
                PyErr_Format(PyExc_TypeError, "setting %S: expected str or int, got %s", k, Py_TYPE(v)->tp_name);
                return -1;
            }
            if (!sv)
                return -1;
            PyObject *kv = PyTuple_Pack(2, k, sv);
            Py_DECREF(sv);
            if (!kv || PyList_Append(self->settings, kv) != 0) {
                Py_XDECREF(kv);
                return -1;
            }
            Py_DECREF(kv);
        }
    }
    if (producer_open(self, NULL) != 0)
        return -1;
    live_add(self);
    return 0;
}

/* Closes the handle; waits (GIL released) for calls still inside it. */
static auditq_rc producer_close(Producer *self)
{
    auditq_rc rc = AUDITQ_OK;
    self->closed = 1;
    while (self->busy > 0) {
        Py_BEGIN_ALLOW_THREADS
        usleep(1000);
        Py_END_ALLOW_THREADS
    }
    auditq *q = self->q;
    self->q = NULL;
    live_remove(self);
    if (q && self->pid == getpid()) {
        Py_BEGIN_ALLOW_THREADS
        rc = auditq_close(q);
        Py_END_ALLOW_THREADS
    } else if (q) {
        auditq_abandon(q);  /* inherited across a fork the hook did not see */
    }
    return rc;
}

static void Producer_dealloc(Producer *self)
{
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (!self->closed) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        (void)producer_close(self);
        PyErr_Restore(et, ev, tb);
    }
    live_remove(self);
    Py_CLEAR(self->settings);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Field keywords of send(): name -> auditq_field (or a special). */
enum { K_ENTITY = 100, K_PRIORITY, K_CHANGES, K_METADATA, K_OCCURRED_AT };
static const struct {
    const char *name;
    int field;
} kw_table[] = {
    {"tenant_id", AUDITQ_TENANT_ID},   {"actor_id", AUDITQ_ACTOR_ID},     {"actor_type", AUDITQ_ACTOR_TYPE},
    {"entity_type", AUDITQ_ENTITY_TYPE}, {"entity_id", AUDITQ_ENTITY_ID}, {"outcome", AUDITQ_OUTCOME},
    {"source_ip", AUDITQ_SOURCE_IP},   {"user_agent", AUDITQ_USER_AGENT}, {"request_id", AUDITQ_REQUEST_ID},
    {"session_id", AUDITQ_SESSION_ID}, {"event_id", AUDITQ_EVENT_ID},     {"entity", K_ENTITY},
    {"priority", K_PRIORITY},          {"changes", K_CHANGES},            {"metadata", K_METADATA},
    {"occurred_at_us", K_OCCURRED_AT},
};
#define N_KW (sizeof kw_table / sizeof kw_table[0])
static PyObject *kw_names[N_KW];  /* interned */

static const char *const prio_names[4] = {"critical", "high", "normal", "low"};
static const char *const field_names[AUDITQ_FIELD_COUNT] = {
    "event_id", "tenant_id", "actor_id", "actor_type", "action", "entity_type", "entity_id",
    "outcome", "source_ip", "user_agent", "request_id", "session_id", "changes", "metadata"};

static _Thread_local auditq_event *tl_event;

/* Copies a str into field f. Returns 0, or -1 with an exception. */
static int set_text(auditq_event *ev, int f, PyObject *v)
{
    Py_ssize_t len;
    if (v == Py_None)
        return 0;
    if (!PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s: expected str, got %s", field_names[f], Py_TYPE(v)->tp_name);
        return -1;
    }
    const char *s = PyUnicode_AsUTF8AndSize(v, &len);
    if (!s) {
        /* A lone surrogate: not UTF-8. */
        PyErr_Clear();
        PyErr_Format(exc_by_rc[AUDITQ_ERR_INVALID_UTF8], "%s: not valid UTF-8 (a lone surrogate)", field_names[f]);
        return -1;
    }
    auditq_rc rc = auditq_event_setn(ev, (auditq_field)f, s, (size_t)len);
    if (rc != AUDITQ_OK)
        return raise_rc(rc), -1;
    return 0;
}

/* changes/metadata: a str is JSON text, anything else goes through the
 * json module (UTF-8 kept as is, no NaN/Infinity, compact). */
static int set_json(auditq_event *ev, int f, PyObject *v)
{
    PyObject *text;
    Py_ssize_t len;
    if (v == Py_None)
        return 0;
    if (PyUnicode_Check(v)) {
        text = Py_NewRef(v);
    } else {
        text = PyObject_CallOneArg(json_dumps, v);
        if (!text) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_ValueError) &&
                !PyErr_ExceptionMatches(PyExc_RecursionError))
                return -1;
            PyObject *et, *ev2, *tb;
            PyErr_Fetch(&et, &ev2, &tb);
            PyErr_NormalizeException(&et, &ev2, &tb);
            PyErr_Format(exc_by_rc[AUDITQ_ERR_INVALID_JSON], "%s: not JSON-serializable: %S", field_names[f],
                         ev2 ? ev2 : Py_None);
            /* chain the json error as the cause */
            PyObject *nt, *nv, *ntb;
            PyErr_Fetch(&nt, &nv, &ntb);
            PyErr_NormalizeException(&nt, &nv, &ntb);
            if (ev2)
                PyException_SetCause(nv, ev2); /* steals ev2 */
            else
                Py_XDECREF(ev2);
            Py_XDECREF(et);
            Py_XDECREF(tb);
            PyErr_Restore(nt, nv, ntb);
            return -1;
        }
    }
    const char *s = PyUnicode_AsUTF8AndSize(text, &len);
    if (!s) {
        Py_DECREF(text);
        PyErr_Clear();
        PyErr_Format(exc_by_rc[AUDITQ_ERR_INVALID_UTF8], "%s: not valid UTF-8 (a lone surrogate)", field_names[f]);
        return -1;
    }
    /* auditq_event_set_json wants NUL-terminated text; PyUnicode's UTF-8 is. */
    if (strlen(s) != (size_t)len) {
        Py_DECREF(text);
        PyErr_Format(exc_by_rc[AUDITQ_ERR_INVALID_UTF8], "%s: JSON text holds a NUL byte", field_names[f]);
        return -1;
    }
    auditq_rc rc = auditq_event_set_json(ev, (auditq_field)f, s);
    Py_DECREF(text);
    if (rc != AUDITQ_OK)
        return raise_rc(rc), -1;
    return 0;
}

static int set_priority(auditq_event *ev, PyObject *v)
{
    if (v == Py_None)
        return 0;
    if (PyUnicode_Check(v)) {
        for (int i = 0; i < 4; i++)
            if (PyUnicode_CompareWithASCIIString(v, prio_names[i]) == 0)
                return auditq_event_set_priority(ev, (auditq_priority)i) == AUDITQ_OK ? 0 : -1;
        PyErr_Format(exc_by_rc[AUDITQ_ERR_INVALID_ARG],
                     "priority %R: must be 'critical', 'high', 'normal' or 'low'", v);
        return -1;
    }
    PyErr_Format(PyExc_TypeError, "priority: expected str ('critical', 'high', 'normal', 'low'), got %s",
                 Py_TYPE(v)->tp_name);
    return -1;
}

/* Fills the thread's event from the call's arguments. */
static auditq_event *build_event(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "send() takes the action as its one positional argument (%zd given)", nargs);
        return NULL;
    }
    if (!tl_event) {
        tl_event = auditq_event_new(NULL);
        if (!tl_event)
            return (auditq_event *)PyErr_NoMemory();
    }
    auditq_event *ev = tl_event;
    auditq_event_reset(ev);
    if (set_text(ev, AUDITQ_ACTION, args[0]) != 0)
        return NULL;
    if (args[0] == Py_None) {
        PyErr_SetString(exc_by_rc[AUDITQ_ERR_MISSING_FIELD], "action: required (e.g. \"page.update\")");
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *v = args[nargs + i];
        size_t k;
        for (k = 0; k < N_KW; k++)
            if (kw_names[k] == name)
                break;
        if (k == N_KW)
            for (k = 0; k < N_KW; k++)
                if (PyUnicode_Compare(kw_names[k], name) == 0)
                    break;
        if (k == N_KW) {
            PyErr_Format(PyExc_TypeError, "send() got an unexpected keyword argument %R", name);
            return NULL;
        }
        int f = kw_table[k].field, r = 0;
        switch (f) {
        case K_ENTITY:
            if (v == Py_None)
                break;
            if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2) {
                PyErr_SetString(PyExc_TypeError, "entity: expected a (entity_type, entity_id) tuple");
                return NULL;
            }
            r = set_text(ev, AUDITQ_ENTITY_TYPE, PyTuple_GET_ITEM(v, 0));
            if (r == 0)
                r = set_text(ev, AUDITQ_ENTITY_ID, PyTuple_GET_ITEM(v, 1));
            break;
        case K_PRIORITY:
            r = set_priority(ev, v);
            break;
        case K_CHANGES:
            r = set_json(ev, AUDITQ_CHANGES, v);
            break;
        case K_METADATA:
            r = set_json(ev, AUDITQ_METADATA, v);
            break;
        case K_OCCURRED_AT:
            if (v == Py_None)
                break;
            if (!PyLong_Check(v) || PyBool_Check(v)) {
                PyErr_SetString(PyExc_TypeError, "occurred_at_us: expected int (microseconds since the Unix epoch)");
                return NULL;
            }
            {
                long long us = PyLong_AsLongLong(v);
                if (us == -1 && PyErr_Occurred())
                    return NULL;
                auditq_rc rc = auditq_event_set_time(ev, (int64_t)us);
                if (rc != AUDITQ_OK)
                    return raise_rc(rc), NULL;
            }
            break;
        default:
            r = set_text(ev, f, v);
        }
        if (r != 0)
            return NULL;
    }
    return ev;
}

static PyObject *do_send(Producer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int sync)
{
    char id[AUDITQ_ID_SIZE];
    auditq_rc rc;
    auditq_event *ev = build_event(args, nargs, kwnames);
    if (!ev)
        return NULL;
    auditq *q = producer_handle(self);
    if (!q)
        return NULL;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sync ? auditq_send(q, ev, id) : auditq_send_async(q, ev, id);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != AUDITQ_OK)
        return raise_rc(rc);
    return PyUnicode_FromStringAndSize(id, 36);
}

static PyObject *Producer_send(Producer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return do_send(self, args, nargs, kwnames, 0);
}

static PyObject *Producer_send_sync(Producer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return do_send(self, args, nargs, kwnames, 1);
}

static PyObject *Producer_flush(Producer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout_ms", NULL};
    int timeout_ms = 5000;
    auditq_rc rc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i:flush", kwlist, &timeout_ms))
        return NULL;
    auditq *q = producer_handle(self);
    if (!q)
        return NULL;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = auditq_flush(q, timeout_ms);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != AUDITQ_OK)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Producer_ping(Producer *self, PyObject *Py_UNUSED(ignored))
{
    auditq_rc rc;
    auditq *q = producer_handle(self);
    if (!q)
        return NULL;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = auditq_ping(q);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != AUDITQ_OK)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Producer_close(Producer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->closed)
        Py_RETURN_NONE;
    auditq_rc rc = producer_close(self);
    if (rc != AUDITQ_OK)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

static PyObject *Producer_stats(Producer *self, PyObject *Py_UNUSED(ignored))
{
    auditq_stats st;
    auditq *q = producer_handle(self);
    if (!q)
        return NULL;
    auditq_rc rc = auditq_get_stats(q, &st);  /* takes short locks only */
    if (rc != AUDITQ_OK)
        return raise_rc(rc);
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsK}", "sent_sync", (unsigned long long)st.sent_sync, "queued_async",
        (unsigned long long)st.queued_async, "sent_async", (unsigned long long)st.sent_async, "rejected_full",
        (unsigned long long)st.rejected_full, "errors", (unsigned long long)st.errors, "redis_retries",
        (unsigned long long)st.redis_retries, "buffered", (unsigned long long)st.buffered, "spooled",
        (unsigned long long)st.spooled, "replayed", (unsigned long long)st.replayed, "spool_rejected_full",
        (unsigned long long)st.spool_rejected_full, "spool_corrupt_records",
        (unsigned long long)st.spool_corrupt_records, "spool_errors", (unsigned long long)st.spool_errors,
        "replay_retries", (unsigned long long)st.replay_retries, "spool_records",
        (unsigned long long)st.spool_records, "spool_bytes", (unsigned long long)st.spool_bytes);
}

static PyObject *Producer_spool_problem(Producer *self, PyObject *Py_UNUSED(ignored))
{
    char buf[2048];
    auditq *q = producer_handle(self);
    if (!q)
        return NULL;
    auditq_rc rc = auditq_spool_problem(q, buf, sizeof buf);
    if (rc != AUDITQ_OK)
        return raise_rc(rc);
    return PyUnicode_DecodeUTF8(buf, (Py_ssize_t)strlen(buf), "replace");
}

static PyObject *Producer_enter(Producer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->closed)
        return raise_rc_msg(AUDITQ_ERR_CLOSED, "producer is closed");
    return Py_NewRef((PyObject *)self);
}

static PyObject *Producer_exit(Producer *self, PyObject *args)
{
    (void)args;
    PyObject *r = Producer_close(self, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *Producer_get_closed(Producer *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static PyMethodDef Producer_methods[] = {
    {"send", (PyCFunction)(void (*)(void))Producer_send, METH_FASTCALL | METH_KEYWORDS,
     "send(action, **fields) -> event_id: async; returns once the event is in the buffer."},
    {"send_sync", (PyCFunction)(void (*)(void))Producer_send_sync, METH_FASTCALL | METH_KEYWORDS,
     "send_sync(action, **fields) -> event_id: returns once Redis (or the spool) has the event."},
    {"flush", (PyCFunction)(void (*)(void))Producer_flush, METH_VARARGS | METH_KEYWORDS,
     "flush(timeout_ms=5000): waits until every event sent before is acknowledged."},
    {"ping", (PyCFunction)Producer_ping, METH_NOARGS, "ping(): one round trip to Redis."},
    {"close", (PyCFunction)Producer_close, METH_NOARGS,
     "close(): drains the buffer (close_timeout_ms) and releases the handle; idempotent."},
    {"stats", (PyCFunction)Producer_stats, METH_NOARGS, "stats() -> dict: the library's counters."},
    {"spool_problem", (PyCFunction)Producer_spool_problem, METH_NOARGS,
     "spool_problem() -> str: the spool's last damage or replay failure; '' when all is well."},
    {"__enter__", (PyCFunction)Producer_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Producer_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Producer_getset[] = {
    {"closed", (getter)Producer_get_closed, NULL, "True once close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProducerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "auditq.Producer",
    .tp_basicsize = sizeof(Producer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Producer(**settings): a libauditq handle; settings are the auditq_config_set keys "
              "(redis_url, spool_path, flush_interval_ms, ...), as str or int.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Producer_init,
    .tp_dealloc = (destructor)Producer_dealloc,
    .tp_methods = Producer_methods,
    .tp_getset = Producer_getset,
    .tp_weaklistoffset = offsetof(Producer, weakrefs),
};

/* ---- module -------------------------------------------------------------- */

/* os.register_at_fork(after_in_child=...): see DESIGN. */
static PyObject *after_fork_child(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    for (Producer *p = live_head; p; p = p->next) {
        if (p->q) {
            auditq_abandon(p->q);
            p->q = NULL;
        }
        p->busy = 0;
    }
    Py_RETURN_NONE;
}

/* atexit (and multiprocessing's exit finalizers): closes every open
 * producer so that buffered events are drained before the process ends. */
static PyObject *close_all(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    while (live_head) {
        Producer *p = live_head;
        Py_INCREF(p);
        (void)producer_close(p);  /* unlinks p; a loss at exit has no caller to tell */
        Py_DECREF(p);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_strerror(PyObject *Py_UNUSED(m), PyObject *arg)
{
    long rc = PyLong_AsLong(arg);
    if (rc == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(auditq_strerror((auditq_rc)rc));
}

static PyMethodDef module_methods[] = {
    {"_after_fork_child", after_fork_child, METH_NOARGS, "fork hook (registered by the module)."},
    {"_close_all", close_all, METH_NOARGS, "closes every open producer (atexit)."},
    {"strerror", mod_strerror, METH_O, "strerror(code) -> str: the name of a result code."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "auditq._auditq", "libauditq for Python (see the auditq package).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__auditq(void);
PyMODINIT_FUNC PyInit__auditq(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    PyObject *builtins = NULL, *json = NULL, *os = NULL;
    if (!m)
        return NULL;
    if (PyType_Ready(&ProducerType) < 0 || PyModule_AddObjectRef(m, "Producer", (PyObject *)&ProducerType) < 0)
        goto fail;
    exc_base = PyErr_NewExceptionWithDoc("auditq.AuditqError",
                                         "Base of every auditq error; .code is the auditq_rc number.", NULL, NULL);
    if (!exc_base || PyObject_SetAttrString(exc_base, "code", Py_None) < 0 ||
        PyModule_AddObjectRef(m, "AuditqError", exc_base) < 0)
        goto fail;
    builtins = PyImport_ImportModule("builtins");
    if (!builtins)
        goto fail;
    for (int rc = 1; rc < N_RC; rc++) {
        char qual[64];
        PyObject *bases, *dict = PyDict_New(), *code = PyLong_FromLong(rc);
        if (!dict || !code || PyDict_SetItemString(dict, "code", code) < 0) {
            Py_XDECREF(dict);
            Py_XDECREF(code);
            goto fail;
        }
        Py_DECREF(code);
        if (exc_table[rc].extra_base) {
            PyObject *eb = PyObject_GetAttrString(builtins, exc_table[rc].extra_base);
            bases = eb ? PyTuple_Pack(2, exc_base, eb) : NULL;
            Py_XDECREF(eb);
        } else {
            bases = PyTuple_Pack(1, exc_base);
        }
        snprintf(qual, sizeof qual, "auditq.%s", exc_table[rc].name);
        exc_by_rc[rc] = bases ? PyErr_NewExceptionWithDoc(qual, exc_table[rc].doc, bases, dict) : NULL;
        Py_XDECREF(bases);
        Py_DECREF(dict);
        if (!exc_by_rc[rc] || PyModule_AddObjectRef(m, exc_table[rc].name, exc_by_rc[rc]) < 0)
            goto fail;
    }
    for (size_t k = 0; k < N_KW; k++) {
        kw_names[k] = PyUnicode_InternFromString(kw_table[k].name);
        if (!kw_names[k])
            goto fail;
    }
    /* One encoder for every call: json.dumps with options builds a new
     * JSONEncoder each time (about 1.5 us); its encode() is reentrant. */
    json = PyImport_ImportModule("json");
    if (!json)
        goto fail;
    {
        PyObject *cls = PyObject_GetAttrString(json, "JSONEncoder");
        PyObject *kw = Py_BuildValue("{sOs(ss)sO}", "ensure_ascii", Py_False, "separators", ",", ":", "allow_nan",
                                     Py_False);
        PyObject *empty = PyTuple_New(0);
        PyObject *enc = cls && kw && empty ? PyObject_Call(cls, empty, kw) : NULL;
        Py_XDECREF(cls);
        Py_XDECREF(kw);
        Py_XDECREF(empty);
        json_dumps = enc ? PyObject_GetAttrString(enc, "encode") : NULL;
        Py_XDECREF(enc);
        if (!json_dumps)
            goto fail;
    }
    os = PyImport_ImportModule("os");
    if (!os)
        goto fail;
    {
        PyObject *reg = PyObject_GetAttrString(os, "register_at_fork");
        PyObject *hook = PyObject_GetAttrString(m, "_after_fork_child");
        PyObject *kw = (reg && hook) ? Py_BuildValue("{sO}", "after_in_child", hook) : NULL;
        PyObject *empty = PyTuple_New(0);
        PyObject *r = kw && empty ? PyObject_Call(reg, empty, kw) : NULL;
        Py_XDECREF(reg);
        Py_XDECREF(hook);
        Py_XDECREF(kw);
        Py_XDECREF(empty);
        if (!r)
            goto fail;
        Py_DECREF(r);
    }
    if (PyModule_AddStringConstant(m, "LIBAUDITQ_VERSION", AUDITQ_VERSION) < 0)
        goto fail;
    Py_DECREF(builtins);
    Py_DECREF(json);
    Py_DECREF(os);
    return m;
fail:
    Py_XDECREF(builtins);
    Py_XDECREF(json);
    Py_XDECREF(os);
    Py_DECREF(m);
    return NULL;
}
