/*
 * auditq_node.c -- the Node-API addon under bindings/node (index.js wraps it).
 *
 * C over libauditq, node_api.h only (NAPI_VERSION 8: Node >= 12.22).
 * Exports plain functions on an external handle; index.js builds the
 * Producer class, the argument checks that are pure JS (JSON.stringify of
 * changes/metadata, unknown keys) and the AuditqError class, which it hands
 * to setErrorClass() so every error made here is an AuditqError.
 *
 *   open(pairs)                 [[setting, text], ...] -> handle
 *   send(h, f0..f13, prio, at)  async path on the loop thread -> event_id
 *   sendAcked(h, f0..f13, prio, at)  -> Promise<event_id>, auditq_send on
 *                               the libuv pool (napi_async_work)
 *   flush(h, timeoutMs) / close(h) / ping(h)  -> Promise, off the loop
 *   stats(h) -> object;  spoolProblem(h) -> string
 *
 * f0..f13 are the event's fields in auditq_field order (changes/metadata as
 * JSON text), each a string or undefined/null.
 *
 * DESIGN (threads and lifetime). Everything in `struct nq` is touched by the
 * loop thread only, except `q` itself, which the pool threads use through
 * the thread-safe libauditq calls. The window: close() while sendAcked/flush
 * work is still running on the pool would free q under it. It is closed by
 * counting queued work (inflight, loop thread): close() marks the producer
 * closing at once (new calls fail with AUDITQ_ERR_CLOSED) and queues the
 * auditq_close work only when inflight drops to 0, in the last work's
 * complete callback. Every queued work holds a reference on the handle, so
 * its finalizer (which closes a producer nobody closed) cannot run under
 * it. send() never waits: index.js defaults full_policy to `error`, so a
 * full buffer fails at once instead of parking the loop thread up to
 * enqueue_timeout_ms; the flusher and spool threads are libauditq's own
 * pthreads, not libuv handles, so they never keep the process alive, and an
 * env cleanup hook drains a producer still open when the environment stops
 * (process exit without close()).
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditq.h"

#define NFIELDS AUDITQ_FIELD_COUNT
#define SEND_ARGC (1 + NFIELDS + 2)

static const char *const field_names[NFIELDS] = {
    "eventId", "tenantId", "actorId", "actorType", "action", "entityType", "entityId",
    "outcome", "sourceIp", "userAgent", "requestId", "sessionId", "changes", "metadata",
};

static const char *const rc_names[] = {
    "AUDITQ_OK", "AUDITQ_ERR_INVALID_ARG", "AUDITQ_ERR_NOMEM", "AUDITQ_ERR_CONFIG",
    "AUDITQ_ERR_CONNECT", "AUDITQ_ERR_TIMEOUT", "AUDITQ_ERR_REDIS", "AUDITQ_ERR_AUTH",
    "AUDITQ_ERR_BUFFER_FULL", "AUDITQ_ERR_MISSING_FIELD", "AUDITQ_ERR_INVALID_JSON",
    "AUDITQ_ERR_INVALID_UTF8", "AUDITQ_ERR_TOO_LARGE", "AUDITQ_ERR_CLOSED",
    "AUDITQ_ERR_PROTOCOL", "AUDITQ_ERR_SPOOL_FULL", "AUDITQ_ERR_SPOOL",
};

typedef struct modstate {
    napi_ref error_ctor; /* AuditqError, from setErrorClass */
} modstate;

typedef struct nq {
    auditq *q;            /* NULL once closed */
    auditq_event *ev;     /* send()'s scratch event (loop thread) */
    int closing;          /* close() called: new calls fail */
    unsigned inflight;    /* queued works not yet completed */
    struct work *pending_close; /* close work waiting for inflight == 0 */
    int hooked;           /* env cleanup hook registered */
} nq;

typedef enum { W_SEND, W_FLUSH, W_CLOSE, W_PING } wkind;

typedef struct work {
    nq *n;
    wkind kind;
    napi_async_work aw;
    napi_deferred d;
    napi_ref href;        /* keeps the handle alive while queued */
    auditq_event *ev;     /* W_SEND */
    int timeout_ms;       /* W_FLUSH */
    auditq_rc rc;
    char id[AUDITQ_ID_SIZE];
    char err[512];
} work;

/* ---- errors ------------------------------------------------------------ */

static const char *rc_name(auditq_rc rc)
{
    if ((unsigned)rc < sizeof rc_names / sizeof rc_names[0])
        return rc_names[rc];
    return "AUDITQ_ERR_UNKNOWN";
}

/* An AuditqError(message, code, rc) value; a plain Error if no class was set. */
static napi_value make_error(napi_env env, auditq_rc rc, const char *msg)
{
    modstate *ms = NULL;
    napi_value ctor, argv[3], err = NULL;
    char fallback[600];

    if (!msg || !*msg) {
        /* A library call failed without detail: name the code at least. */
        snprintf(fallback, sizeof fallback, "%s", auditq_strerror(rc));
        msg = fallback;
    }
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &argv[0]);
    napi_create_string_utf8(env, rc_name(rc), NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_int32(env, (int32_t)rc, &argv[2]);
    napi_get_instance_data(env, (void **)&ms);
    if (ms && ms->error_ctor && napi_get_reference_value(env, ms->error_ctor, &ctor) == napi_ok &&
        ctor && napi_new_instance(env, ctor, 3, argv, &err) == napi_ok)
        return err;
    napi_create_error(env, argv[1], argv[0], &err);
    return err;
}

static napi_value throw_rc(napi_env env, auditq_rc rc, const char *msg)
{
    napi_throw(env, make_error(env, rc, msg));
    return NULL;
}

static napi_value rejected(napi_env env, auditq_rc rc, const char *msg)
{
    napi_deferred d;
    napi_value p;
    napi_create_promise(env, &d, &p);
    napi_reject_deferred(env, d, make_error(env, rc, msg));
    return p;
}

/* ---- strings ----------------------------------------------------------- */

/* UTF-8 of a JS string: into buf when it fits, else into *heap (caller
 * frees). Returns 0, or -1 on OOM / not a string. */
static int get_utf8(napi_env env, napi_value v, char *buf, size_t cap, const char **out, size_t *len,
                    char **heap)
{
    size_t n = 0;
    *heap = NULL;
    if (napi_get_value_string_utf8(env, v, buf, cap, &n) != napi_ok)
        return -1;
    /* Node truncates at a character boundary, so a cut string can leave up
     * to 3 bytes of buf unused (a 4-byte character that did not fit): only
     * n + 4 < cap proves the string was copied whole. */
    if (n + 4 < cap) {
        *out = buf;
        *len = n;
        return 0;
    }
    /* Possibly truncated: ask for the length and copy it whole. */
    if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok)
        return -1;
    *heap = malloc(n + 1);
    if (!*heap)
        return -1;
    napi_get_value_string_utf8(env, v, *heap, n + 1, &n);
    *out = *heap;
    *len = n;
    return 0;
}

/* ---- handle ------------------------------------------------------------ */

static void close_now(nq *n)
{
    if (n->q) {
        auditq_close(n->q);
        n->q = NULL;
    }
}

/* Environment teardown with the producer still open: drain it (bounded by
 * close_timeout_ms) rather than lose the buffered events. */
static void env_hook(void *arg)
{
    nq *n = arg;
    n->hooked = 0;
    /* A pool thread may still be inside auditq_send/flush on q (process.exit()
     * with sendAcked pending): closing under it would free q in use. Those
     * callers were never answered; the handle is left to the exit. */
    if (n->inflight == 0)
        close_now(n);
}

static void handle_finalize(napi_env env, void *data, void *hint)
{
    nq *n = data;
    (void)hint;
    if (n->hooked) {
        napi_remove_env_cleanup_hook(env, env_hook, n);
        n->hooked = 0;
    }
    close_now(n);
    auditq_event_free(n->ev);
    free(n);
}

/* The nq behind argv[0]; throws AUDITQ_ERR_INVALID_ARG when it is not one. */
static nq *get_nq(napi_env env, napi_value v)
{
    void *p = NULL;
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_get_value_external(env, v, &p) != napi_ok || !p) {
        throw_rc(env, AUDITQ_ERR_INVALID_ARG, "not an auditq producer handle");
        return NULL;
    }
    return p;
}

static napi_value js_open(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], ext;
    uint32_t i, count = 0;
    auditq_config *cfg;
    auditq_rc rc = AUDITQ_OK;
    nq *n;
    char msg[600];

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 1 || napi_get_array_length(env, argv[0], &count) != napi_ok)
        return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "open: expected an array of [setting, value] pairs");
    cfg = auditq_config_new();
    if (!cfg)
        return throw_rc(env, AUDITQ_ERR_NOMEM, "out of memory allocating the config");
    for (i = 0; i < count; i++) {
        napi_value pair, kv, vv;
        char key[128], val[4096];
        size_t kl = 0, vl = 0;
        if (napi_get_element(env, argv[0], i, &pair) != napi_ok ||
            napi_get_element(env, pair, 0, &kv) != napi_ok || napi_get_element(env, pair, 1, &vv) != napi_ok ||
            napi_get_value_string_utf8(env, kv, key, sizeof key, &kl) != napi_ok ||
            napi_get_value_string_utf8(env, vv, val, sizeof val, &vl) != napi_ok) {
            auditq_config_free(cfg);
            return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "open: expected an array of [setting, value] text pairs");
        }
        if (vl + 1 >= sizeof val) {
            auditq_config_free(cfg);
            snprintf(msg, sizeof msg, "%s: value is longer than %zu bytes", key, sizeof val - 2);
            return throw_rc(env, AUDITQ_ERR_CONFIG, msg);
        }
        rc = auditq_config_set(cfg, key, val);
        if (rc != AUDITQ_OK) {
            snprintf(msg, sizeof msg, "%s", auditq_last_error());
            auditq_config_free(cfg);
            return throw_rc(env, rc, msg);
        }
    }
    n = calloc(1, sizeof *n);
    if (!n || !(n->ev = auditq_event_new(NULL))) {
        free(n);
        auditq_config_free(cfg);
        return throw_rc(env, AUDITQ_ERR_NOMEM, "out of memory allocating the producer");
    }
    rc = auditq_open(cfg, &n->q);
    auditq_config_free(cfg);
    if (rc != AUDITQ_OK) {
        snprintf(msg, sizeof msg, "%s", auditq_last_error());
        auditq_event_free(n->ev);
        free(n);
        return throw_rc(env, rc, msg);
    }
    if (napi_create_external(env, n, handle_finalize, NULL, &ext) != napi_ok) {
        auditq_close(n->q);
        auditq_event_free(n->ev);
        free(n);
        return throw_rc(env, AUDITQ_ERR_NOMEM, "cannot create the producer handle");
    }
    if (napi_add_env_cleanup_hook(env, env_hook, n) == napi_ok)
        n->hooked = 1;
    return ext;
}

/* ---- building an event from the arguments ------------------------------ */

static const struct { const char *name; auditq_priority p; } prio_names[] = {
    {"critical", AUDITQ_PRIORITY_CRITICAL}, {"high", AUDITQ_PRIORITY_HIGH},
    {"normal", AUDITQ_PRIORITY_NORMAL}, {"low", AUDITQ_PRIORITY_LOW},
};

/* Fills ev from argv[1..] (fields, priority, occurredAt in microseconds).
 * On failure returns the rc with the reason in msg. */
static auditq_rc fill_event(napi_env env, napi_value *argv, auditq_event *ev, char *msg, size_t msglen)
{
    char buf[2048];
    napi_valuetype t;
    auditq_rc rc;
    int i;

    for (i = 0; i < NFIELDS; i++) {
        const char *s;
        size_t len;
        char *heap;
        napi_value v = argv[1 + i];
        if (napi_typeof(env, v, &t) != napi_ok)
            t = napi_undefined;
        if (t == napi_undefined || t == napi_null)
            continue;
        if (t != napi_string) {
            snprintf(msg, msglen, "%s must be a string", field_names[i]);
            return AUDITQ_ERR_INVALID_ARG;
        }
        if (get_utf8(env, v, buf, sizeof buf, &s, &len, &heap) != 0) {
            snprintf(msg, msglen, "out of memory copying %s", field_names[i]);
            return AUDITQ_ERR_NOMEM;
        }
        if (i == AUDITQ_CHANGES || i == AUDITQ_METADATA) {
            /* JSON.stringify output has no NUL (it escapes U+0000). */
            rc = auditq_event_set_json(ev, (auditq_field)i, s);
        } else {
            rc = auditq_event_setn(ev, (auditq_field)i, s, len);
        }
        free(heap);
        if (rc != AUDITQ_OK) {
            snprintf(msg, msglen, "%s", auditq_last_error());
            return rc;
        }
    }
    {
        napi_value v = argv[1 + NFIELDS];
        if (napi_typeof(env, v, &t) == napi_ok && t != napi_undefined && t != napi_null) {
            char p[16];
            size_t pl = 0;
            size_t k, found = 0;
            if (t == napi_string && napi_get_value_string_utf8(env, v, p, sizeof p, &pl) == napi_ok) {
                for (k = 0; k < sizeof prio_names / sizeof prio_names[0]; k++) {
                    if (!strcmp(p, prio_names[k].name)) {
                        auditq_event_set_priority(ev, prio_names[k].p);
                        found = 1;
                        break;
                    }
                }
            }
            if (!found) {
                snprintf(msg, msglen, "priority must be one of critical, high, normal, low");
                return AUDITQ_ERR_INVALID_ARG;
            }
        }
    }
    {
        napi_value v = argv[2 + NFIELDS];
        if (napi_typeof(env, v, &t) == napi_ok && t != napi_undefined && t != napi_null) {
            int64_t us = 0;
            if (t != napi_number || napi_get_value_int64(env, v, &us) != napi_ok) {
                snprintf(msg, msglen, "occurredAt must be a Date or microseconds since the epoch");
                return AUDITQ_ERR_INVALID_ARG;
            }
            rc = auditq_event_set_time(ev, us);
            if (rc != AUDITQ_OK) {
                snprintf(msg, msglen, "%s", auditq_last_error());
                return rc;
            }
        }
    }
    return AUDITQ_OK;
}

/* send(h, f0..f13, priority, occurredAtUs) -> event_id; throws AuditqError. */
static napi_value js_send(napi_env env, napi_callback_info info)
{
    size_t argc = SEND_ARGC;
    napi_value argv[SEND_ARGC], out;
    char msg[600], id[AUDITQ_ID_SIZE];
    auditq_rc rc;
    nq *n;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < SEND_ARGC)
        return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "send: wrong number of arguments");
    if (!(n = get_nq(env, argv[0])))
        return NULL;
    if (n->closing || !n->q)
        return throw_rc(env, AUDITQ_ERR_CLOSED, "send: the producer is closed (close() was called)");
    auditq_event_reset(n->ev);
    rc = fill_event(env, argv, n->ev, msg, sizeof msg);
    if (rc != AUDITQ_OK)
        return throw_rc(env, rc, msg);
    rc = auditq_send_async(n->q, n->ev, id);
    if (rc != AUDITQ_OK) {
        snprintf(msg, sizeof msg, "%s", auditq_last_error());
        return throw_rc(env, rc, msg);
    }
    napi_create_string_latin1(env, id, AUDITQ_ID_SIZE - 1, &out);
    return out;
}

/* ---- work off the loop ------------------------------------------------- */

static void work_execute(napi_env env, void *data)
{
    work *w = data;
    const char *e;
    (void)env;
    switch (w->kind) {
    case W_SEND: w->rc = auditq_send(w->n->q, w->ev, w->id); break;
    case W_FLUSH: w->rc = auditq_flush(w->n->q, w->timeout_ms); break;
    case W_PING: w->rc = auditq_ping(w->n->q); break;
    case W_CLOSE: w->rc = auditq_close(w->n->q); break;
    }
    e = auditq_last_error();
    snprintf(w->err, sizeof w->err, "%s", e ? e : "");
}

static void queue_work(napi_env env, work *w);

static void work_complete(napi_env env, napi_status status, void *data)
{
    work *w = data;
    nq *n = w->n;
    napi_value v;

    if (w->kind == W_CLOSE) {
        n->q = NULL; /* auditq_close freed it, whatever it returned */
        if (n->hooked) {
            napi_remove_env_cleanup_hook(env, env_hook, n);
            n->hooked = 0;
        }
    }
    n->inflight--;
    if (status != napi_ok) {
        napi_reject_deferred(env, w->d, make_error(env, AUDITQ_ERR_CLOSED, "the operation was cancelled"));
    } else if (w->rc != AUDITQ_OK) {
        napi_reject_deferred(env, w->d, make_error(env, w->rc, w->err));
    } else {
        if (w->kind == W_SEND)
            napi_create_string_latin1(env, w->id, AUDITQ_ID_SIZE - 1, &v);
        else
            napi_get_undefined(env, &v);
        napi_resolve_deferred(env, w->d, v);
    }
    napi_delete_async_work(env, w->aw);
    napi_delete_reference(env, w->href);
    auditq_event_free(w->ev);
    free(w);
    if (n->closing && n->inflight == 0 && n->pending_close) {
        work *c = n->pending_close;
        n->pending_close = NULL;
        queue_work(env, c);
    }
}

static void queue_work(napi_env env, work *w)
{
    w->n->inflight++;
    napi_queue_async_work(env, w->aw);
}

/* A work of kind k on argv[0]'s handle, with its promise in *promise; NULL
 * (and *promise a rejected one) when the handle is closed. */
static work *new_work(napi_env env, napi_value h, wkind k, napi_value *promise)
{
    napi_value name;
    work *w;
    nq *n = get_nq(env, h);
    if (!n)
        return NULL;
    if (n->closing || !n->q) {
        *promise = rejected(env, AUDITQ_ERR_CLOSED, "the producer is closed (close() was called)");
        return NULL;
    }
    w = calloc(1, sizeof *w);
    if (!w) {
        *promise = rejected(env, AUDITQ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->n = n;
    w->kind = k;
    napi_create_string_utf8(env, "auditq", NAPI_AUTO_LENGTH, &name);
    if (napi_create_promise(env, &w->d, promise) != napi_ok ||
        napi_create_async_work(env, NULL, name, work_execute, work_complete, w, &w->aw) != napi_ok ||
        napi_create_reference(env, h, 1, &w->href) != napi_ok) {
        free(w);
        napi_throw_error(env, "AUDITQ_ERR_NOMEM", "cannot queue the operation");
        return NULL;
    }
    return w;
}

static void drop_work(napi_env env, work *w)
{
    napi_delete_async_work(env, w->aw);
    napi_delete_reference(env, w->href);
    auditq_event_free(w->ev);
    free(w);
}

/* sendAcked(h, f0..f13, priority, occurredAtUs) -> Promise<event_id>. The
 * event is built and checked here, so an invalid one rejects before any
 * work is queued and nothing is sent. */
static napi_value js_send_acked(napi_env env, napi_callback_info info)
{
    size_t argc = SEND_ARGC;
    napi_value argv[SEND_ARGC], promise = NULL;
    char msg[600];
    auditq_rc rc;
    work *w;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < SEND_ARGC)
        return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "sendAcked: wrong number of arguments");
    w = new_work(env, argv[0], W_SEND, &promise);
    if (!w)
        return promise;
    w->ev = auditq_event_new(NULL);
    if (!w->ev) {
        napi_reject_deferred(env, w->d, make_error(env, AUDITQ_ERR_NOMEM, "out of memory"));
        drop_work(env, w);
        return promise;
    }
    rc = fill_event(env, argv, w->ev, msg, sizeof msg);
    if (rc != AUDITQ_OK) {
        napi_reject_deferred(env, w->d, make_error(env, rc, msg));
        drop_work(env, w);
        return promise;
    }
    queue_work(env, w);
    return promise;
}

static napi_value js_flush(napi_env env, napi_callback_info info)
{
    size_t argc = 2;
    napi_value argv[2], promise = NULL;
    int32_t ms = 0;
    work *w;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 2 || napi_get_value_int32(env, argv[1], &ms) != napi_ok || ms < 0)
        return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "flush: timeoutMs must be a number >= 0");
    w = new_work(env, argv[0], W_FLUSH, &promise);
    if (!w)
        return promise;
    w->timeout_ms = ms;
    queue_work(env, w);
    return promise;
}

static napi_value js_ping(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], promise = NULL;
    work *w;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 1)
        return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "ping: missing handle");
    w = new_work(env, argv[0], W_PING, &promise);
    if (!w)
        return promise;
    queue_work(env, w);
    return promise;
}

/* close(h) -> Promise: marks the producer closed now, runs auditq_close on
 * the pool once the works already queued are done (see DESIGN above). */
static napi_value js_close(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], promise = NULL;
    work *w;
    nq *n;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 1)
        return throw_rc(env, AUDITQ_ERR_INVALID_ARG, "close: missing handle");
    w = new_work(env, argv[0], W_CLOSE, &promise);
    if (!w)
        return promise;
    n = w->n;
    n->closing = 1;
    if (n->inflight == 0)
        queue_work(env, w);
    else
        n->pending_close = w;
    return promise;
}

/* ---- stats ------------------------------------------------------------- */

static napi_value js_stats(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], o, v;
    auditq_stats st;
    auditq_rc rc;
    nq *n;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 1 || !(n = get_nq(env, argv[0])))
        return NULL;
    if (n->closing || !n->q)
        return throw_rc(env, AUDITQ_ERR_CLOSED, "stats: the producer is closed (close() was called)");
    rc = auditq_get_stats(n->q, &st);
    if (rc != AUDITQ_OK)
        return throw_rc(env, rc, auditq_last_error());
    napi_create_object(env, &o);
#define PUT(js, f) do { napi_create_double(env, (double)st.f, &v); napi_set_named_property(env, o, js, v); } while (0)
    PUT("sentSync", sent_sync);
    PUT("queuedAsync", queued_async);
    PUT("sentAsync", sent_async);
    PUT("rejectedFull", rejected_full);
    PUT("errors", errors);
    PUT("redisRetries", redis_retries);
    PUT("buffered", buffered);
    PUT("spooled", spooled);
    PUT("replayed", replayed);
    PUT("spoolRejectedFull", spool_rejected_full);
    PUT("spoolCorruptRecords", spool_corrupt_records);
    PUT("spoolErrors", spool_errors);
    PUT("replayRetries", replay_retries);
    PUT("spoolRecords", spool_records);
    PUT("spoolBytes", spool_bytes);
#undef PUT
    return o;
}

static napi_value js_spool_problem(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], v;
    char buf[1024];
    nq *n;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 1 || !(n = get_nq(env, argv[0])))
        return NULL;
    if (n->closing || !n->q)
        return throw_rc(env, AUDITQ_ERR_CLOSED, "spoolProblem: the producer is closed (close() was called)");
    buf[0] = '\0';
    auditq_spool_problem(n->q, buf, sizeof buf);
    napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
    return v;
}

/* ---- module ------------------------------------------------------------ */

static void modstate_free(napi_env env, void *data, void *hint)
{
    modstate *ms = data;
    (void)hint;
    if (ms->error_ctor)
        napi_delete_reference(env, ms->error_ctor);
    free(ms);
}

static napi_value js_set_error_class(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1];
    modstate *ms = NULL;

    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    napi_get_instance_data(env, (void **)&ms);
    if (argc < 1 || !ms)
        return NULL;
    if (ms->error_ctor)
        napi_delete_reference(env, ms->error_ctor);
    napi_create_reference(env, argv[0], 1, &ms->error_ctor);
    return NULL;
}

static napi_value js_strerror(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], v;
    int32_t rc = 0;
    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc >= 1)
        napi_get_value_int32(env, argv[0], &rc);
    napi_create_string_utf8(env, auditq_strerror((auditq_rc)rc), NAPI_AUTO_LENGTH, &v);
    return v;
}

static napi_value init(napi_env env, napi_value exports)
{
    static const struct { const char *name; napi_callback fn; } fns[] = {
        {"open", js_open}, {"send", js_send}, {"sendAcked", js_send_acked},
        {"flush", js_flush}, {"ping", js_ping}, {"close", js_close},
        {"stats", js_stats}, {"spoolProblem", js_spool_problem},
        {"setErrorClass", js_set_error_class}, {"strerror", js_strerror},
    };
    modstate *ms = calloc(1, sizeof *ms);
    size_t i;
    napi_value f, v;

    if (!ms || napi_set_instance_data(env, ms, modstate_free, NULL) != napi_ok) {
        free(ms);
        napi_throw_error(env, "AUDITQ_ERR_NOMEM", "auditq: cannot allocate the module state");
        return NULL;
    }
    for (i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
        napi_set_named_property(env, exports, fns[i].name, f);
    }
    napi_create_string_utf8(env, AUDITQ_VERSION, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, exports, "version", v);
    return exports;
}

/* The two entry points NAPI_MODULE defines, declared for -Wmissing-prototypes. */
NAPI_MODULE_EXPORT int32_t node_api_module_get_api_version_v1(void);
NAPI_MODULE_EXPORT napi_value napi_register_module_v1(napi_env env, napi_value exports);
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
