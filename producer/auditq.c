/* auditq.c -- libauditq: config, events, errors, open/close, sync send.
 *
 * The sync path keeps a small pool of Redis connections (sync_connections);
 * a calling thread borrows one, sends LPUSH and returns the connection. A
 * redisContext is never used by two threads at once (hiredis contexts are
 * not thread-safe). Every wait is bounded: borrowing a slot by timeout_ms,
 * connecting by connect_timeout_ms, the command by timeout_ms. After a
 * connect *timeout* (a host that drops packets) calls fail fast for 200 ms
 * instead of each waiting out the connect timeout again.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "producer.h"
#include "text.h"
#include "uuid7.h"

#define DOWN_WINDOW_US 200000

static __thread char tl_err[512]; /* room for a refusal's explanation after the context */

void producer_clear_error(void)
{
    tl_err[0] = '\0';
}

void producer_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof tl_err, fmt, ap);
    va_end(ap);
}

const char *auditq_last_error(void)
{
    return tl_err;
}

const char *auditq_strerror(auditq_rc rc)
{
    switch (rc) {
    case AUDITQ_OK: return "ok";
    case AUDITQ_ERR_INVALID_ARG: return "invalid argument";
    case AUDITQ_ERR_NOMEM: return "out of memory";
    case AUDITQ_ERR_CONFIG: return "invalid configuration";
    case AUDITQ_ERR_CONNECT: return "cannot connect to Redis";
    case AUDITQ_ERR_TIMEOUT: return "timed out";
    case AUDITQ_ERR_REDIS: return "Redis returned an error";
    case AUDITQ_ERR_AUTH: return "Redis authentication failed";
    case AUDITQ_ERR_BUFFER_FULL: return "async buffer full";
    case AUDITQ_ERR_MISSING_FIELD: return "required field missing";
    case AUDITQ_ERR_INVALID_JSON: return "invalid JSON";
    case AUDITQ_ERR_INVALID_UTF8: return "invalid UTF-8 or NUL byte";
    case AUDITQ_ERR_TOO_LARGE: return "too large";
    case AUDITQ_ERR_CLOSED: return "handle is closing";
    case AUDITQ_ERR_PROTOCOL: return "unexpected reply from Redis";
    case AUDITQ_ERR_SPOOL_FULL: return "spool full";
    case AUDITQ_ERR_SPOOL: return "spool unusable";
    }
    return "unknown error";
}

/* ---- config -------------------------------------------------------------- */

auditq_config *auditq_config_new(void)
{
    auditq_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->redis_url, sizeof c->redis_url, "redis://127.0.0.1:6379");
    snprintf(c->ns, sizeof c->ns, "auditq");
    c->connect_timeout_ms = 500;
    c->timeout_ms = 1000;
    c->sync_connections = 4;
    c->buffer_events = 100000;
    c->batch_size = 500;
    c->flush_interval_ms = 100;
    c->full_policy = FULL_BLOCK;
    c->enqueue_timeout_ms = 50;
    c->close_timeout_ms = 5000;
    c->max_job_bytes = CODEC_DEFAULT_MAX_JOB;
    c->spool_fsync = SPOOL_FSYNC_ALWAYS;
    c->spool_fsync_interval_ms = 1000;
    c->spool_max_bytes = 1LL << 30;
    c->spool_full_policy = SPOOL_FULL_ERROR;
    return c;
}

void auditq_config_free(auditq_config *cfg)
{
    free(cfg);
}

static const struct int_setting {
    const char *key;
    size_t off;
    long lo, hi;
} int_settings[] = {
    {"connect_timeout_ms", offsetof(auditq_config, connect_timeout_ms), 1, 60000},
    {"timeout_ms", offsetof(auditq_config, timeout_ms), 1, 60000},
    {"sync_connections", offsetof(auditq_config, sync_connections), 1, PRODUCER_MAX_CONNS},
    {"buffer_events", offsetof(auditq_config, buffer_events), 1, 10000000},
    {"batch_size", offsetof(auditq_config, batch_size), 1, 100000},
    {"flush_interval_ms", offsetof(auditq_config, flush_interval_ms), 1, 60000},
    {"enqueue_timeout_ms", offsetof(auditq_config, enqueue_timeout_ms), 0, 60000},
    {"close_timeout_ms", offsetof(auditq_config, close_timeout_ms), 0, 600000},
    {"max_job_bytes", offsetof(auditq_config, max_job_bytes), 1024, 16777216},
    {"spool_fsync_interval_ms", offsetof(auditq_config, spool_fsync_interval_ms), 1, 60000},
};

/* Every key auditq_config_set takes, for the "did you mean" of an unknown
 * one (the same edit distance as the worker's config table). */
static const char *const config_keys[] = {
    "redis_url", "namespace", "connect_timeout_ms", "timeout_ms", "sync_connections",
    "buffer_events", "batch_size", "flush_interval_ms", "full_policy", "enqueue_timeout_ms",
    "close_timeout_ms", "max_job_bytes", "spool_path", "spool_fsync", "spool_fsync_interval_ms",
    "spool_max_bytes", "spool_full_policy",
};

static void unknown_key(const char *key)
{
    const char *best = NULL;
    size_t best_d = 4; /* within 3 edits, as the worker's config */

    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++) {
        size_t d = text_edit_distance(key, config_keys[i]);
        if (d < best_d) {
            best_d = d;
            best = config_keys[i];
        }
    }
    if (best)
        producer_set_error("unknown setting '%s' (did you mean '%s'?)", key, best);
    else
        producer_set_error("unknown setting '%s' (see auditq.h for the list)", key);
}

auditq_rc auditq_config_set(auditq_config *cfg, const char *key, const char *value)
{
    producer_clear_error();
    if (!cfg || !key || !value) {
        producer_set_error("auditq_config_set: NULL argument");
        return AUDITQ_ERR_INVALID_ARG;
    }
    if (strcmp(key, "redis_url") == 0) {
        aq_redis_target t;
        char err[200];
        if (strlen(value) >= sizeof cfg->redis_url)
            snprintf(err, sizeof err, "longer than %zu bytes", sizeof cfg->redis_url - 1);
        if (strlen(value) >= sizeof cfg->redis_url || redis_url_parse(value, &t, err, sizeof err) != 0) {
            producer_set_error("redis_url: %s", err);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->redis_url, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "namespace") == 0) {
        aq_keys k;
        if (keys_init(&k, value) != 0) {
            producer_set_error("namespace = '%s': must be 1..64 characters of A-Z a-z 0-9 _ . -", value);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->ns, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "full_policy") == 0) {
        if (strcmp(value, "block") == 0)
            cfg->full_policy = FULL_BLOCK;
        else if (strcmp(value, "error") == 0)
            cfg->full_policy = FULL_ERROR;
        else {
            producer_set_error("full_policy = '%s': must be block or error", value);
            return AUDITQ_ERR_CONFIG;
        }
        return AUDITQ_OK;
    }
    auditq_rc src;
    if (spooler_config_set(cfg, key, value, &src))
        return src;
    for (size_t i = 0; i < sizeof int_settings / sizeof int_settings[0]; i++) {
        const struct int_setting *s = &int_settings[i];
        if (strcmp(key, s->key) != 0)
            continue;
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < s->lo || v > s->hi) {
            producer_set_error("%s = '%s': must be an integer from %ld to %ld", key, value, s->lo, s->hi);
            return AUDITQ_ERR_CONFIG;
        }
        *(int *)(void *)((char *)cfg + s->off) = (int)v;
        return AUDITQ_OK;
    }
    unknown_key(key);
    return AUDITQ_ERR_CONFIG;
}

/* ---- events -------------------------------------------------------------- */

auditq_event *auditq_event_new(const char *action)
{
    auditq_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    ev->priority = AUDITQ_PRIORITY_NORMAL;
    if (action && auditq_event_set(ev, AUDITQ_ACTION, action) != AUDITQ_OK) {
        /* an invalid action is reported again at send time */
        ev->val[AUDITQ_ACTION] = NULL;
    }
    return ev;
}

void auditq_event_free(auditq_event *ev)
{
    if (!ev)
        return;
    for (int i = 0; i < AUDITQ_FIELD_COUNT; i++)
        free(ev->val[i]);
    free(ev);
}

void auditq_event_reset(auditq_event *ev)
{
    if (!ev)
        return;
    /* Keep the allocations: a reused event costs no malloc. */
    for (int i = 0; i < AUDITQ_FIELD_COUNT; i++)
        ev->len[i] = (size_t)-1;
    ev->priority = AUDITQ_PRIORITY_NORMAL;
    ev->occurred_at_us = 0;
}

static int field_set(const auditq_event *ev, int f)
{
    return ev->val[f] && ev->len[f] != (size_t)-1;
}

static auditq_rc store(auditq_event *ev, auditq_field f, const char *value, size_t len)
{
    if (len + 1 > ev->cap[f]) {
        char *p = realloc(ev->val[f], len + 1);
        if (!p) {
            producer_set_error("out of memory copying %s", codec_field_key(f));
            return AUDITQ_ERR_NOMEM;
        }
        ev->val[f] = p;
        ev->cap[f] = len + 1;
    }
    memcpy(ev->val[f], value, len);
    ev->val[f][len] = '\0';
    ev->len[f] = len;
    return AUDITQ_OK;
}

auditq_rc auditq_event_setn(auditq_event *ev, auditq_field f, const char *value, size_t len)
{
    char err[200];
    auditq_rc rc;

    producer_clear_error();
    if (!ev || (int)f < 0 || f >= AUDITQ_FIELD_COUNT) {
        producer_set_error("auditq_event_set: NULL event or unknown field %d", (int)f);
        return AUDITQ_ERR_INVALID_ARG;
    }
    if (!value) {
        if (ev->val[f])
            ev->len[f] = (size_t)-1;
        return AUDITQ_OK;
    }
    if (f == AUDITQ_CHANGES || f == AUDITQ_METADATA) {
        producer_set_error("%s: set JSON fields with auditq_event_set_json", codec_field_key(f));
        return AUDITQ_ERR_INVALID_ARG;
    }
    rc = codec_check_field(f, value, len, err, sizeof err);
    if (rc != AUDITQ_OK) {
        producer_set_error("%s", err);
        return rc;
    }
    return store(ev, f, value, len);
}

auditq_rc auditq_event_set(auditq_event *ev, auditq_field f, const char *value)
{
    return auditq_event_setn(ev, f, value, value ? strlen(value) : 0);
}

auditq_rc auditq_event_set_json(auditq_event *ev, auditq_field f, const char *json)
{
    char err[200];
    auditq_rc rc;

    producer_clear_error();
    if (!ev || (f != AUDITQ_CHANGES && f != AUDITQ_METADATA)) {
        producer_set_error("auditq_event_set_json: field must be AUDITQ_CHANGES or AUDITQ_METADATA");
        return AUDITQ_ERR_INVALID_ARG;
    }
    if (!json) {
        if (ev->val[f])
            ev->len[f] = (size_t)-1;
        return AUDITQ_OK;
    }
    size_t len = strlen(json);
    rc = codec_check_field(f, json, len, err, sizeof err);
    if (rc != AUDITQ_OK) {
        producer_set_error("%s", err);
        return rc;
    }
    return store(ev, f, json, len);
}

auditq_rc auditq_event_set_priority(auditq_event *ev, auditq_priority p)
{
    producer_clear_error();
    if (!ev || (int)p < 0 || (int)p > AUDITQ_PRIORITY_LOW) {
        producer_set_error("priority must be AUDITQ_PRIORITY_CRITICAL..AUDITQ_PRIORITY_LOW");
        return AUDITQ_ERR_INVALID_ARG;
    }
    ev->priority = (int)p;
    return AUDITQ_OK;
}

auditq_rc auditq_event_set_time(auditq_event *ev, int64_t occurred_at_us)
{
    producer_clear_error();
    if (!ev || occurred_at_us < 0 || occurred_at_us > 253402300799999999LL) {
        producer_set_error("occurred_at must be 0 (now) or microseconds within 1970..9999");
        return AUDITQ_ERR_INVALID_ARG;
    }
    ev->occurred_at_us = occurred_at_us;
    return AUDITQ_OK;
}

auditq_rc producer_fill_job(const auditq_event *ev, aq_job *j)
{
    memset(j, 0, sizeof *j);
    if (!field_set(ev, AUDITQ_ACTION)) {
        producer_set_error("action is required (e.g. \"page.update\")");
        return AUDITQ_ERR_MISSING_FIELD;
    }
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        if (field_set(ev, f)) {
            j->f[f].p = ev->val[f];
            j->f[f].len = (uint32_t)ev->len[f];
        }
    }
    if (field_set(ev, AUDITQ_EVENT_ID))
        uuid_parse(ev->val[AUDITQ_EVENT_ID], ev->len[AUDITQ_EVENT_ID], j->id);
    else
        uuid7_new(j->id);
    j->version = AUDITQ_SCHEMA_VERSION;
    j->occurred_at_us = ev->occurred_at_us ? ev->occurred_at_us : clock_now_us();
    j->priority = ev->priority;
    return AUDITQ_OK;
}

auditq_rc producer_encode(auditq *q, const auditq_event *ev, aq_buf *out, int *prio, char *id_out)
{
    aq_job j;
    auditq_rc rc = producer_fill_job(ev, &j);

    if (rc != AUDITQ_OK)
        return rc;
    if (codec_encode(&j, out) != 0) {
        producer_set_error("out of memory encoding the event");
        return AUDITQ_ERR_NOMEM;
    }
    if (out->len > (size_t)q->cfg.max_job_bytes) {
        producer_set_error("encoded event is %zu bytes, over max_job_bytes=%d", out->len,
                           q->cfg.max_job_bytes);
        return AUDITQ_ERR_TOO_LARGE;
    }
    if (id_out)
        uuid_format(j.id, id_out);
    *prio = j.priority;
    return AUDITQ_OK;
}

/* ---- open / close -------------------------------------------------------- */

auditq_rc producer_redis_error(const redisContext *c, const char *what)
{
    if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT ||
                                   strstr(c->errstr, "temporarily unavailable"))) {
        producer_set_error("%s: Redis did not answer in time (%s)", what, c->errstr);
        return AUDITQ_ERR_TIMEOUT;
    }
    producer_set_error("%s: connection to Redis lost (%s)", what, c->errstr);
    return AUDITQ_ERR_CONNECT;
}

auditq_rc auditq_open(const auditq_config *cfg, auditq **out)
{
    auditq *q = NULL;
    char err[256];
    auditq_rc rc;

    producer_clear_error();
    if (!cfg || !out) {
        producer_set_error("auditq_open: NULL argument");
        return AUDITQ_ERR_INVALID_ARG;
    }
    *out = NULL;
    q = calloc(1, sizeof *q);
    if (!q) {
        producer_set_error("out of memory allocating the handle");
        return AUDITQ_ERR_NOMEM;
    }
    q->cfg = *cfg;
    if (redis_url_parse(cfg->redis_url, &q->target, err, sizeof err) != 0 ||
        keys_init(&q->keys, cfg->ns) != 0) {
        producer_set_error("redis_url: %s", err);
        free(q);
        return AUDITQ_ERR_CONFIG;
    }
    pthread_mutex_init(&q->pool_mu, NULL);
    pthread_cond_init(&q->pool_cv, NULL);
    rc = spooler_open(q);
    if (rc != AUDITQ_OK) {
        pthread_mutex_destroy(&q->pool_mu);
        pthread_cond_destroy(&q->pool_cv);
        free(q);
        return rc;
    }
    rc = async_start(q);
    if (rc != AUDITQ_OK) {
        spooler_close(q, 0);
        pthread_mutex_destroy(&q->pool_mu);
        pthread_cond_destroy(&q->pool_cv);
        free(q);
        return rc;
    }
    *out = q;
    /* One connection now, so a misconfigured URL shows up early in the
     * app's logs via auditq_ping(); failure here is not fatal. */
    return AUDITQ_OK;
}

auditq_rc auditq_close(auditq *q)
{
    auditq_rc rc;
    producer_clear_error();
    if (!q)
        return AUDITQ_OK;
    /* One budget for both: the buffer drains first (to Redis or the
     * spool), then the replay uses what is left. */
    int64_t deadline = clock_mono_us() + (int64_t)q->cfg.close_timeout_ms * 1000;
    rc = async_stop(q);
    spooler_close(q, deadline);
    for (int i = 0; i < PRODUCER_MAX_CONNS; i++)
        if (q->slots[i].ctx)
            redisFree(q->slots[i].ctx);
    pthread_mutex_destroy(&q->pool_mu);
    pthread_cond_destroy(&q->pool_cv);
    free(q);
    return rc;
}

/* ---- sync path ----------------------------------------------------------- */

/* Borrows a connected slot. Returns its index, or -1 with *rc set. */
static int slot_get(auditq *q, auditq_rc *rc)
{
    int idx = -1;
    struct timespec deadline = clock_abs_after_ms(q->cfg.timeout_ms);

    pthread_mutex_lock(&q->pool_mu);
    for (;;) {
        for (int i = 0; i < q->cfg.sync_connections; i++) {
            if (!q->slots[i].busy) {
                idx = i;
                break;
            }
        }
        if (idx >= 0)
            break;
        if (pthread_cond_timedwait(&q->pool_cv, &q->pool_mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&q->pool_mu);
            producer_set_error("all %d sync connections stayed busy for timeout_ms=%d",
                               q->cfg.sync_connections, q->cfg.timeout_ms);
            *rc = AUDITQ_ERR_TIMEOUT;
            return -1;
        }
    }
    q->slots[idx].busy = 1;
    int64_t down_until = q->down_until_us;
    pthread_mutex_unlock(&q->pool_mu);

    if (q->slots[idx].ctx)
        return idx;
    if (clock_mono_us() < down_until) {
        char shown[256];
        redis_url_mask(q->cfg.redis_url, shown, sizeof shown); /* no password in app logs */
        producer_set_error("Redis at %s timed out on connect moments ago; failing fast", shown);
        *rc = AUDITQ_ERR_CONNECT;
        goto release;
    }
    char err[256];
    int auth_failed = 0;
    int64_t t0 = clock_mono_us();
    q->slots[idx].ctx = redis_connect(&q->target, q->cfg.connect_timeout_ms, q->cfg.timeout_ms, err,
                                      sizeof err, &auth_failed);
    if (q->slots[idx].ctx)
        return idx;
    producer_set_error("%s", err);
    *rc = auth_failed ? AUDITQ_ERR_AUTH : AUDITQ_ERR_CONNECT;
    if (clock_mono_us() - t0 >= (int64_t)q->cfg.connect_timeout_ms * 1000) {
        pthread_mutex_lock(&q->pool_mu);
        q->down_until_us = clock_mono_us() + DOWN_WINDOW_US;
        pthread_mutex_unlock(&q->pool_mu);
        *rc = AUDITQ_ERR_TIMEOUT;
    }
release:
    pthread_mutex_lock(&q->pool_mu);
    q->slots[idx].busy = 0;
    pthread_cond_signal(&q->pool_cv);
    pthread_mutex_unlock(&q->pool_mu);
    return -1;
}

static void slot_put(auditq *q, int idx, int broken)
{
    if (broken && q->slots[idx].ctx) {
        redisFree(q->slots[idx].ctx);
        q->slots[idx].ctx = NULL;
    }
    pthread_mutex_lock(&q->pool_mu);
    q->slots[idx].busy = 0;
    pthread_cond_signal(&q->pool_cv);
    pthread_mutex_unlock(&q->pool_mu);
}

/* Runs one command on a pooled connection; *reply owned by caller. */
static auditq_rc sync_command(auditq *q, int argc, const char **argv, const size_t *argl,
                              redisReply **reply)
{
    auditq_rc rc = AUDITQ_OK;
    int idx = slot_get(q, &rc);
    if (idx < 0)
        return rc;
    redisContext *c = q->slots[idx].ctx;
    redisReply *r = redisCommandArgv(c, argc, argv, argl);
    if (!r) {
        rc = producer_redis_error(c, argv[0]);
        slot_put(q, idx, 1);
        return rc;
    }
    slot_put(q, idx, 0);
    if (r->type == REDIS_REPLY_ERROR) {
        char why[400];
        /* An ACL refusal names the user, the command and the fix. */
        if (redis_explain_refusal(&q->target, "producer", argv[0], argc > 1 ? argv[1] : NULL, r->str,
                                  why, sizeof why) != REDIS_REFUSED_NONE) {
            producer_set_error("%s", why);
            rc = AUDITQ_ERR_AUTH;
        } else if (argc > 1 && redis_is_wrongtype(r->str)) {
            /* A queue key someone overwrote (SET, a stray tool): name it. */
            redis_explain_wrongtype(argv[1], NULL, "list", PRODUCER_WRONGTYPE_EFFECT, why, sizeof why);
            producer_set_error("Redis refused %s: %s", argv[0], why);
            rc = AUDITQ_ERR_REDIS;
        } else {
            producer_set_error("Redis refused %s: %.*s", argv[0], (int)r->len, r->str);
            rc = AUDITQ_ERR_REDIS;
        }
        freeReplyObject(r);
        return rc;
    }
    *reply = r;
    return AUDITQ_OK;
}

auditq_rc auditq_ping(auditq *q)
{
    redisReply *r = NULL;
    const char *argv[1] = {"PING"};
    size_t argl[1] = {4};
    producer_clear_error();
    if (!q) {
        producer_set_error("auditq_ping: NULL handle");
        return AUDITQ_ERR_INVALID_ARG;
    }
    auditq_rc rc = sync_command(q, 1, argv, argl, &r);
    if (rc == AUDITQ_OK)
        freeReplyObject(r);
    return rc;
}

/* Per-thread encode buffer, freed by a key destructor when the thread exits
 * (a bare __thread pointer would leak the buffer of every exited thread). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    aq_buf *b = p;
    free(b->data);
    free(b);
}

static void scratch_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

aq_buf *producer_scratch(void)
{
    pthread_once(&scratch_once, scratch_init);
    aq_buf *b = pthread_getspecific(scratch_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b || pthread_setspecific(scratch_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    /* Don't let one huge event pin megabytes per thread forever. */
    if (b->cap > 1 << 20) {
        free(b->data);
        memset(b, 0, sizeof *b);
    }
    b->len = 0;
    return b;
}

/* LPUSH of one encoded job on the sync pool. */
static auditq_rc sync_push(auditq *q, const aq_buf *job, int prio)
{
    redisReply *r = NULL;
    const char *argv[3] = {"LPUSH", q->keys.queue[prio], job->data};
    size_t argl[3] = {5, strlen(q->keys.queue[prio]), job->len};
    auditq_rc rc = sync_command(q, 3, argv, argl, &r);
    if (rc == AUDITQ_OK) {
        if (r->type != REDIS_REPLY_INTEGER) {
            producer_set_error("LPUSH answered with reply type %d, expected an integer", r->type);
            rc = AUDITQ_ERR_PROTOCOL;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* Sync send with a spool (spooler.c DESIGN, "Routing"). */
static auditq_rc sync_send_spool(auditq *q, const aq_buf *job, int prio)
{
    spool_item it = {job->data, (uint32_t)job->len, (uint8_t)prio};
    char why[256];
    int r;

    if (spooler_backlog(q)) {
        r = spooler_put(q, &it, 1, 1, 0);
        if (r == AUDITQ_OK)
            return AUDITQ_OK;
        /* No backlog any more, or the spool is full or failing: Redis. */
    }
    auditq_rc rc = sync_push(q, job, prio);
    if (rc == AUDITQ_OK) {
        atomic_fetch_add(&q->st_sent_sync, 1);
        return AUDITQ_OK;
    }
    if (rc != AUDITQ_ERR_CONNECT && rc != AUDITQ_ERR_TIMEOUT)
        return rc;
    snprintf(why, sizeof why, "%s", auditq_last_error());
    r = spooler_put(q, &it, 1, 0, q->cfg.spool_full_policy == SPOOL_FULL_BLOCK ? q->cfg.timeout_ms : 0);
    if (r == AUDITQ_OK)
        return AUDITQ_OK;
    if (r == AUDITQ_ERR_SPOOL_FULL)
        atomic_fetch_add(&q->st_spool_rejected_full, 1);
    char sp[300];
    snprintf(sp, sizeof sp, "%s", auditq_last_error());
    producer_set_error("%s; Redis: %s", sp, why);
    return (auditq_rc)r;
}

auditq_rc auditq_send(auditq *q, const auditq_event *ev, char *id_out)
{
    int prio = 0;
    auditq_rc rc;

    producer_clear_error();
    if (!q || !ev) {
        producer_set_error("auditq_send: NULL handle or event");
        return AUDITQ_ERR_INVALID_ARG;
    }
    aq_buf *scratch = producer_scratch();
    if (!scratch) {
        producer_set_error("out of memory");
        atomic_fetch_add(&q->st_errors, 1);
        return AUDITQ_ERR_NOMEM;
    }
    rc = producer_encode(q, ev, scratch, &prio, id_out);
    if (rc == AUDITQ_OK && q->sp) {
        rc = sync_send_spool(q, scratch, prio);
    } else if (rc == AUDITQ_OK) {
        rc = sync_push(q, scratch, prio);
        if (rc == AUDITQ_OK)
            atomic_fetch_add(&q->st_sent_sync, 1);
    }
    if (rc != AUDITQ_OK)
        atomic_fetch_add(&q->st_errors, 1);
    return rc;
}

auditq_rc auditq_get_stats(auditq *q, auditq_stats *out)
{
    producer_clear_error();
    if (!q || !out) {
        producer_set_error("auditq_get_stats: NULL argument");
        return AUDITQ_ERR_INVALID_ARG;
    }
    out->sent_sync = atomic_load(&q->st_sent_sync);
    out->queued_async = atomic_load(&q->st_queued_async);
    out->sent_async = atomic_load(&q->st_sent_async);
    out->rejected_full = atomic_load(&q->st_rejected_full);
    out->errors = atomic_load(&q->st_errors);
    out->redis_retries = atomic_load(&q->st_redis_retries);
    pthread_mutex_lock(&q->mu);
    out->buffered = q->count;
    pthread_mutex_unlock(&q->mu);
    out->spooled = atomic_load(&q->st_spooled);
    out->replayed = atomic_load(&q->st_replayed);
    out->spool_rejected_full = atomic_load(&q->st_spool_rejected_full);
    out->spool_corrupt_records = atomic_load(&q->st_spool_corrupt);
    out->spool_errors = atomic_load(&q->st_spool_errors);
    out->replay_retries = atomic_load(&q->st_replay_retries);
    out->spool_records = out->spool_bytes = 0;
    if (q->sp) {
        pthread_mutex_lock(&q->spool_mu);
        out->spool_records = spool_pending(q->sp);
        out->spool_bytes = spool_size(q->sp);
        pthread_mutex_unlock(&q->spool_mu);
    }
    return AUDITQ_OK;
}
