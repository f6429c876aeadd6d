/* event.c -- the event builder and encoder: see event.h. */
#include "event.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "uuid7.h"

struct auditq_event {
    char *val[AUDITQ_FIELD_COUNT]; /* owned copies; NULL = unset */
    size_t len[AUDITQ_FIELD_COUNT];
    size_t cap[AUDITQ_FIELD_COUNT];
    int priority;
    int64_t occurred_at_us;        /* 0 = now at enqueue */
};

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

const char *event_field(const auditq_event *ev, auditq_field f, size_t *len)
{
    if ((int)f < 0 || (int)f >= AUDITQ_FIELD_COUNT || !ev->val[f]) {
        *len = 0;
        return NULL;
    }
    *len = ev->len[f];
    return ev->val[f];
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

auditq_rc event_fill_job(const auditq_event *ev, aq_job *j)
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

static aq_buf *thread_buf(const pthread_key_t *key);
static pthread_key_t scratch_key, arena_key;

auditq_rc event_encode(const auditq_event *ev, int max_job_bytes, const protect *pr, aq_buf *out, int *prio,
                       char *id_out)
{
    aq_job j;
    auditq_rc rc = event_fill_job(ev, &j);

    if (rc != AUDITQ_OK)
        return rc;
    if (pr) {
        char err[200];
        aq_buf *arena = thread_buf(&arena_key);
        if (!arena) {
            producer_set_error("out of memory protecting the event's fields");
            return AUDITQ_ERR_NOMEM;
        }
        if (protect_job(pr, &j, arena, err, sizeof err) != 0) {
            producer_set_error("%s", err);
            return AUDITQ_ERR_NOMEM;
        }
    }
    if (codec_encode(&j, out) != 0) {
        producer_set_error("out of memory encoding the event");
        return AUDITQ_ERR_NOMEM;
    }
    if (out->len > (size_t)max_job_bytes) {
        producer_set_error("encoded event is %zu bytes, over max_job_bytes=%d", out->len,
                           max_job_bytes);
        return AUDITQ_ERR_TOO_LARGE;
    }
    if (id_out)
        uuid_format(j.id, id_out);
    *prio = j.priority;
    return AUDITQ_OK;
}

/* Per-thread encode buffers (the job, and the protected fields' new text),
 * freed by a key destructor when the thread exits (a bare __thread pointer
 * would leak the buffer of every exited thread). */
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
    pthread_key_create(&arena_key, scratch_free);
}

aq_buf *event_scratch(void)
{
    return thread_buf(&scratch_key);
}

static aq_buf *thread_buf(const pthread_key_t *key)
{
    pthread_once(&scratch_once, scratch_init);
    aq_buf *b = pthread_getspecific(*key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b || pthread_setspecific(*key, b) != 0) {
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
