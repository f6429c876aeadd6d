/* it_client -- integration-test driver that uses libauditq like an app
 * would, then checks PostgreSQL with libpq.
 *
 *   it_client exact --events N --mode sync|async --tag T
 *       sends N events whose text fields hold quotes, tabs, newlines,
 *       backslashes, non-ASCII and JSON escapes, each with an explicit
 *       occurred_at; waits (<= 90 s) until all N are in audit_events; then
 *       compares every field of every row byte for byte. Exit 0 = all equal.
 *   it_client bad --valid N --tag T
 *       sends N valid events and, in the same async burst (so in the same
 *       worker batch), one whose changes hold "\u0000" -- valid JSON that
 *       jsonb refuses (SQLSTATE 22P05) -- and pushes one undecodable job
 *       straight into the normal queue. Prints the bad event_id.
 *   it_client send --events N --priority P --tag T
 *       sends N events of one priority (sync); for the priority-order test.
 *   it_client produce --sync N --async M --tag T [--set KEY=VALUE]...
 *                     [--wait-replayed SECS] [--hold]
 *       opens a handle with the settings given (auditq_config_set; e.g.
 *       spool_path), sends events 0..N-1 with auditq_send, then N..N+M-1
 *       with auditq_send_async (priority i % 4, request_id req-T-%06d),
 *       flushes, and prints
 *         sent sync=N async=M ok=K spool_full=F other_errors=E max_call_ms=X
 *         stats: <every auditq_stats counter as key=value>
 *       --secret S: every event also carries S where protect_fields rules
 *       can reach it: source_ip S, user_agent "agent S", metadata
 *       {"email":"S@example.com",...}, changes {"password":["S-old","S-new"],
 *       "api":{"token":"S-tok","scope":"read"},...}; the first async event's
 *       changes also hold "\u0000" (jsonb refuses it: a dead letter).
 *       --hold: then prints "ready" and sleeps until killed (kill -9 tests);
 *       --wait-replayed: polls the stats until nothing waits in the spool or
 *       the buffer, prints "drained" (or "not drained") and the stats again,
 *       the spool problem text if any, then closes and prints "closed rc=R".
 *       Exit 0 unless a call failed with something other than
 *       AUDITQ_ERR_SPOOL_FULL or the wait timed out.
 *   it_client stream --mode sync|async --ack-log FILE --stop-file F --tag T
 *                    [--events MAX] [--rate R]
 *       for the fault tests: sends events (priorities cycling) until F exists
 *       or MAX were sent, at about R events/s (0 = flat out), and appends the
 *       event_id of every event Redis acknowledged to FILE, one per line --
 *       sync: auditq_send returned OK; async: an auditq_flush (every 200
 *       events) returned OK, which covers every event buffered before it. A
 *       failed send or flush is counted, not fatal: that event's fate is
 *       unknown, so the test holds only acknowledged ids to account. Prints
 *       "stream: mode=M sent=N acked=A failed=F".
 *
 * Environment: AUDITQ_REDIS_URL, AUDITQ_DATABASE_URL; AUDITQ_REDIS_SENTINELS,
 * _MASTER_NAME, _SENTINEL_USER, _SENTINEL_PASSWORD, _MIN_REPLICAS, _SHARDS, _SHARD_URLS, _CLUSTER, _SHARD_BY.
 */
#include <hiredis.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auditq.h"

#define BASE_TS 1767225600000000LL /* 2026-01-01T00:00:00Z in microseconds */

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

typedef struct expected {
    char id[AUDITQ_ID_SIZE];
    char f[AUDITQ_FIELD_COUNT][512];
    int priority;
    long long ts;
} expected;

static const char *const prio_names[] = {"critical", "high", "normal", "low"};
static const char *const actor_types[] = {"user", "service", "ai", "system"};
static const char *const outcomes[] = {"success", "failure", "denied"};

/* Deterministic nasty values for event i. */
static void make_event(expected *e, int i, const char *tag)
{
    memset(e, 0, sizeof *e);
    snprintf(e->f[AUDITQ_TENANT_ID], 512, "tenant-%s-%d", tag, i % 7);
    snprintf(e->f[AUDITQ_ACTOR_ID], 512, "user \"%d\"\twith tab", i);
    snprintf(e->f[AUDITQ_ACTOR_TYPE], 512, "%s", actor_types[i % 4]);
    snprintf(e->f[AUDITQ_ACTION], 512, "page.update.%d", i % 5);
    snprintf(e->f[AUDITQ_ENTITY_TYPE], 512, "page");
    snprintf(e->f[AUDITQ_ENTITY_ID], 512, "C:\\docs\\%d\nline2 Grüße 日本語 🚀", i);
    snprintf(e->f[AUDITQ_OUTCOME], 512, "%s", outcomes[i % 3]);
    snprintf(e->f[AUDITQ_SOURCE_IP], 512, i % 2 ? "2001:db8::%x" : "192.0.2.%d", i % 250);
    snprintf(e->f[AUDITQ_USER_AGENT], 512, "Mozilla/5.0 (X11; Linux) 'quoted' \\N %d", i);
    snprintf(e->f[AUDITQ_REQUEST_ID], 512, "req-%s-%06d", tag, i);
    snprintf(e->f[AUDITQ_SESSION_ID], 512, "sess\r\n%d", i % 13);
    snprintf(e->f[AUDITQ_CHANGES], 512,
             "{\"title\":[\"Old \\\"%d\\\"\",\"New\\tTitle\\n\"],\"path\":\"a\\\\b\",\"n\":%d,"
             "\"emoji\":\"\\ud83d\\ude80\",\"nested\":{\"x\":[1,2.5,true,null]}}",
             i, i);
    if (i % 3 != 0)
        snprintf(e->f[AUDITQ_METADATA], 512, "{\"app\":\"it\",\"i\":%d,\"tag\":\"%s\"}", i, tag);
    else
        e->f[AUDITQ_METADATA][0] = '\0'; /* absent -> NULL */
    if (i % 11 == 0) {
        e->f[AUDITQ_SOURCE_IP][0] = '\0'; /* optional fields left out */
        e->f[AUDITQ_SESSION_ID][0] = '\0';
    }
    e->priority = i % 4;
    e->ts = BASE_TS + (long long)i * 1000003LL + 7; /* odd microseconds on purpose */
}

static int fill(auditq_event *ev, const expected *e)
{
    auditq_event_reset(ev);
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        if (!e->f[f][0])
            continue;
        auditq_rc rc = (f == AUDITQ_CHANGES || f == AUDITQ_METADATA)
                           ? auditq_event_set_json(ev, (auditq_field)f, e->f[f])
                           : auditq_event_set(ev, (auditq_field)f, e->f[f]);
        if (rc != AUDITQ_OK) {
            fprintf(stderr, "set field %d: %s: %s\n", f, auditq_strerror(rc), auditq_last_error());
            return -1;
        }
    }
    auditq_event_set_priority(ev, (auditq_priority)e->priority);
    auditq_event_set_time(ev, e->ts);
    return 0;
}

/* The Redis settings from the environment, the same variables the worker
 * reads: URL, Sentinel (it_43), replicas, shards (it_44, it_45). Checked:
 * a variable the library refuses stops the test. */
static void env_settings(auditq_config *cfg)
{
    static const char *const kv[][3] = {
        {"redis_url", "AUDITQ_REDIS_URL", "redis://127.0.0.1:6379"},
        {"redis_sentinels", "AUDITQ_REDIS_SENTINELS", ""},
        {"redis_master_name", "AUDITQ_REDIS_MASTER_NAME", ""},
        {"redis_sentinel_user", "AUDITQ_REDIS_SENTINEL_USER", ""},
        {"redis_sentinel_password", "AUDITQ_REDIS_SENTINEL_PASSWORD", ""},
        {"redis_min_replicas", "AUDITQ_REDIS_MIN_REPLICAS", "0"},
        {"redis_shards", "AUDITQ_REDIS_SHARDS", "1"},
        {"redis_shard_urls", "AUDITQ_REDIS_SHARD_URLS", ""},
        {"redis_cluster", "AUDITQ_REDIS_CLUSTER", "off"},
        {"redis_shard_by", "AUDITQ_REDIS_SHARD_BY", "spread"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (auditq_config_set(cfg, kv[i][0], env_or(kv[i][1], kv[i][2])) != AUDITQ_OK) {
            fprintf(stderr, "%s: %s\n", kv[i][1], auditq_last_error());
            exit(1);
        }
}

static auditq *open_q(void)
{
    auditq_config *cfg = auditq_config_new();
    auditq *q = NULL;
    env_settings(cfg);
    auditq_config_set(cfg, "batch_size", "2000");
    auditq_config_set(cfg, "flush_interval_ms", "200");
    if (auditq_open(cfg, &q) != AUDITQ_OK) {
        fprintf(stderr, "auditq_open: %s\n", auditq_last_error());
        exit(1);
    }
    auditq_config_free(cfg);
    return q;
}

static PGconn *pg(void)
{
    const char *k[] = {"dbname", NULL};
    const char *v[] = {env_or("AUDITQ_DATABASE_URL", ""), NULL};
    PGconn *c = PQconnectdbParams(k, v, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "postgres: %s", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

static long long count_tag(PGconn *c, const char *tag)
{
    char like[128];
    snprintf(like, sizeof like, "req-%s-%%", tag);
    const char *p[1] = {like};
    PGresult *r = PQexecParams(c, "SELECT count(*) FROM audit_events WHERE request_id LIKE $1", 1, NULL,
                               p, NULL, NULL, 0);
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

/* How long `exact` waits for Redis to take the events: IT_FLUSH_MS, else
 * 10 s (it_88 shortens it to see a refused login's message quickly). */
static int flush_ms(void)
{
    long v = strtol(env_or("IT_FLUSH_MS", "10000"), NULL, 10);
    return v > 0 && v <= 600000 ? (int)v : 10000;
}

static int cmd_exact(int n, int async, const char *tag)
{
    auditq *q = open_q();
    auditq_event *ev = auditq_event_new(NULL);
    expected *ex = calloc((size_t)n, sizeof *ex);
    int bad = 0;

    int failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        make_event(&ex[i], i, tag);
        if (fill(ev, &ex[i]) != 0) {
            failed = 1;
            break;
        }
        auditq_rc rc = async ? auditq_send_async(q, ev, ex[i].id) : auditq_send(q, ev, ex[i].id);
        if (rc != AUDITQ_OK) {
            fprintf(stderr, "send %d: %s: %s\n", i, auditq_strerror(rc), auditq_last_error());
            failed = 1;
        }
    }
    if (!failed && auditq_flush(q, flush_ms()) != AUDITQ_OK) {
        fprintf(stderr, "flush/close: %s\n", auditq_last_error());
        failed = 1;
    }
    /* Closed and freed on every path: valgrind checks the failing ones (it_88). */
    if (auditq_close(q) != AUDITQ_OK && !failed) {
        fprintf(stderr, "flush/close: %s\n", auditq_last_error());
        failed = 1;
    }
    auditq_event_free(ev);
    if (failed) {
        free(ex);
        return 1;
    }

    PGconn *c = pg();
    long long got = 0;
    for (int t = 0; t < 900 && (got = count_tag(c, tag)) < n; t++)
        usleep(100000);
    if (got != n) {
        fprintf(stderr, "FAIL: expected %d rows tagged %s, found %lld after 90 s\n", n, tag, got);
        return 1;
    }
    static const char *cols[AUDITQ_FIELD_COUNT] = {
        NULL, "tenant_id", "actor_id", "actor_type", "action", "entity_type", "entity_id",
        "outcome", "source_ip", "user_agent", "request_id", "session_id", NULL, NULL};
    for (int i = 0; i < n; i++) {
        const expected *e = &ex[i];
        const char *p[3] = {e->id, e->f[AUDITQ_CHANGES], e->f[AUDITQ_METADATA][0] ? e->f[AUDITQ_METADATA] : NULL};
        PGresult *r = PQexecParams(
            c,
            "SELECT tenant_id, actor_id, actor_type, action, entity_type, entity_id, outcome, "
            "source_ip, user_agent, request_id, session_id, "
            "(extract(epoch FROM occurred_at) * 1000000)::bigint, priority, "
            "changes = $2::jsonb, metadata IS NOT DISTINCT FROM $3::jsonb, received_at >= occurred_at - interval '100 years' "
            "FROM audit_events WHERE event_id = $1::uuid",
            3, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            fprintf(stderr, "FAIL: event %d (%s): %d rows: %s\n", i, e->id, PQntuples(r), PQerrorMessage(c));
            return 1;
        }
        for (int f = 1; f <= AUDITQ_SESSION_ID; f++) {
            int col = f - 1;
            int isnull = PQgetisnull(r, 0, col);
            const char *v = PQgetvalue(r, 0, col);
            int len = PQgetlength(r, 0, col);
            int want_null = e->f[f][0] == '\0';
            if (want_null != isnull || (!isnull && ((size_t)len != strlen(e->f[f]) || memcmp(v, e->f[f], (size_t)len)))) {
                fprintf(stderr, "FAIL: event %d field %s: expected '%s'%s, got '%s'%s\n", i, cols[f],
                        e->f[f], want_null ? " (NULL)" : "", v, isnull ? " (NULL)" : "");
                bad++;
            }
        }
        if (strtoll(PQgetvalue(r, 0, 11), NULL, 10) != e->ts) {
            fprintf(stderr, "FAIL: event %d occurred_at: expected %lld us, got %s\n", i, e->ts, PQgetvalue(r, 0, 11));
            bad++;
        }
        if (strcmp(PQgetvalue(r, 0, 12), prio_names[e->priority]) != 0) {
            fprintf(stderr, "FAIL: event %d priority: expected %s got %s\n", i, prio_names[e->priority], PQgetvalue(r, 0, 12));
            bad++;
        }
        if (strcmp(PQgetvalue(r, 0, 13), "t") != 0 || strcmp(PQgetvalue(r, 0, 14), "t") != 0) {
            fprintf(stderr, "FAIL: event %d changes/metadata differ from what was sent\n", i);
            bad++;
        }
        PQclear(r);
        if (bad > 20)
            break;
    }
    PQfinish(c);
    free(ex);
    if (bad) {
        fprintf(stderr, "FAIL: %d field mismatches\n", bad);
        return 1;
    }
    printf("exact: %d events (%s) stored, every field byte-exact\n", n, async ? "async" : "sync");
    return 0;
}

static int cmd_bad(int n, const char *tag)
{
    auditq *q = open_q();
    auditq_event *ev = auditq_event_new(NULL);
    expected e;
    char badid[AUDITQ_ID_SIZE];

    for (int i = 0; i <= n; i++) {
        make_event(&e, i, tag);
        e.priority = AUDITQ_PRIORITY_NORMAL;
        if (fill(ev, &e) != 0)
            return 1;
        if (i == n / 2) {
            /* Valid JSON (the library accepts it), refused by jsonb. */
            if (auditq_event_set_json(ev, AUDITQ_CHANGES, "{\"note\":\"nul \\u0000 inside\"}") != AUDITQ_OK) {
                fprintf(stderr, "set_json: %s\n", auditq_last_error());
                return 1;
            }
        }
        if (i == n)
            break;
        auditq_rc rc = auditq_send_async(q, ev, i == n / 2 ? badid : NULL);
        if (rc != AUDITQ_OK) {
            fprintf(stderr, "send: %s\n", auditq_last_error());
            return 1;
        }
    }
    if (auditq_flush(q, 10000) != AUDITQ_OK) {
        fprintf(stderr, "flush: %s\n", auditq_last_error());
        return 1;
    }
    auditq_close(q);
    auditq_event_free(ev);
    printf("%s\n", badid);
    return 0;
}

static int cmd_send(int n, int prio, const char *tag)
{
    auditq *q = open_q();
    auditq_event *ev = auditq_event_new(NULL);
    expected e;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        make_event(&e, i, tag);
        e.priority = prio;
        e.ts = 0;
        if (fill(ev, &e) != 0) {
            rc = 1;
        } else {
            auditq_event_set_time(ev, 0);
            if (auditq_send(q, ev, NULL) != AUDITQ_OK) {
                fprintf(stderr, "send: %s\n", auditq_last_error());
                rc = 1;
            }
        }
    }
    auditq_close(q);   /* also on failure: valgrind checks this path (it_88) */
    auditq_event_free(ev);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_stream(int max, int async, const char *tag, const char *ack_path, const char *stop_path,
                      double rate)
{
    enum { FLUSH_EVERY = 200 };
    auditq *q = open_q();
    auditq_event *ev = auditq_event_new(NULL);
    FILE *ack = fopen(ack_path, "a");
    char (*pending)[AUDITQ_ID_SIZE] = NULL; /* async: sent, not yet covered by a good flush */
    size_t npend = 0, cap = 0;
    long long sent = 0, acked = 0, failed = 0;
    double t0 = now_s();
    expected e;

    if (!ack || !ev) {
        fprintf(stderr, "stream: cannot open %s\n", ack_path);
        return 1;
    }
    for (int i = 0; max <= 0 || i < max; i++) {
        if (i % 50 == 0) {
            if (access(stop_path, F_OK) == 0)
                break;
            double ahead = rate > 0 ? (double)i / rate - (now_s() - t0) : 0;
            if (ahead > 0)
                usleep((useconds_t)(ahead * 1e6));
        }
        make_event(&e, i, tag);
        if (fill(ev, &e) != 0)
            return 1;
        auditq_event_set_time(ev, 0);
        char id[AUDITQ_ID_SIZE];
        sent++;
        if (!async) {
            if (auditq_send(q, ev, id) == AUDITQ_OK) {
                fprintf(ack, "%s\n", id);
                acked++;
            } else {
                failed++;
            }
            continue;
        }
        if (npend == cap) {
            cap = cap ? cap * 2 : 1024;
            pending = realloc(pending, cap * sizeof *pending);
            if (!pending)
                return 1;
        }
        if (auditq_send_async(q, ev, pending[npend]) != AUDITQ_OK) {
            failed++;
            continue;
        }
        npend++;
        if (npend % FLUSH_EVERY == 0) {
            if (auditq_flush(q, 10000) != AUDITQ_OK) {
                failed++;
                continue;
            }
            for (size_t k = 0; k < npend; k++)
                fprintf(ack, "%s\n", pending[k]);
            acked += (long long)npend;
            npend = 0;
        }
    }
    if (npend > 0) {
        if (auditq_flush(q, 30000) == AUDITQ_OK) {
            for (size_t k = 0; k < npend; k++)
                fprintf(ack, "%s\n", pending[k]);
            acked += (long long)npend;
        } else {
            failed++;
        }
    }
    auditq_close(q);
    auditq_event_free(ev);
    free(pending);
    if (fclose(ack) != 0) {
        fprintf(stderr, "stream: writing %s failed\n", ack_path);
        return 1;
    }
    printf("stream: mode=%s sent=%lld acked=%lld failed=%lld\n", async ? "async" : "sync", sent, acked,
           failed);
    return 0;
}

static long long ms_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_stats(auditq *q)
{
    auditq_stats st;
    auditq_get_stats(q, &st);
    printf("stats: sent_sync=%llu queued_async=%llu sent_async=%llu rejected_full=%llu errors=%llu "
           "redis_retries=%llu buffered=%llu spooled=%llu replayed=%llu spool_rejected_full=%llu "
           "spool_corrupt_records=%llu spool_errors=%llu replay_retries=%llu spool_records=%llu spool_bytes=%llu\n",
           (unsigned long long)st.sent_sync, (unsigned long long)st.queued_async,
           (unsigned long long)st.sent_async, (unsigned long long)st.rejected_full,
           (unsigned long long)st.errors, (unsigned long long)st.redis_retries,
           (unsigned long long)st.buffered, (unsigned long long)st.spooled, (unsigned long long)st.replayed,
           (unsigned long long)st.spool_rejected_full, (unsigned long long)st.spool_corrupt_records,
           (unsigned long long)st.spool_errors, (unsigned long long)st.replay_retries,
           (unsigned long long)st.spool_records, (unsigned long long)st.spool_bytes);
}

/* The --secret fields of produce event i (it_client.c header). */
static void add_secret(expected *e, int i, int poison, const char *secret)
{
    snprintf(e->f[AUDITQ_SOURCE_IP], 512, "%s", secret);
    snprintf(e->f[AUDITQ_USER_AGENT], 512, "agent %s", secret);
    snprintf(e->f[AUDITQ_METADATA], 512, "{\"email\":\"%s@example.com\",\"i\":%d}", secret, i);
    snprintf(e->f[AUDITQ_CHANGES], 512,
             "{\"password\":[\"%s-old\",\"%s-new\"],\"api\":{\"token\":\"%s-tok\",\"scope\":\"read\"},"
             "\"title\":[\"a\",\"b\"]%s}", secret, secret, secret, poison ? ",\"note\":\"\\u0000\"" : "");
}

static int cmd_produce(int nsync, int nasync, const char *tag, char **sets, int nsets, int wait_s, int hold,
                       const char *secret)
{
    auditq_config *cfg = auditq_config_new();
    auditq *q = NULL;
    auditq_event *ev = auditq_event_new(NULL);
    expected e;
    int ok = 0, full = 0, other = 0;
    long long slowest = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    env_settings(cfg);
    auditq_config_set(cfg, "batch_size", "2000");
    auditq_config_set(cfg, "flush_interval_ms", "200");
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        if (!eq || (size_t)(eq - sets[i]) >= sizeof key) {
            fprintf(stderr, "--set %s: expected KEY=VALUE\n", sets[i]);
            return 2;
        }
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (auditq_config_set(cfg, key, eq + 1) != AUDITQ_OK) {
            fprintf(stderr, "--set %s: %s\n", sets[i], auditq_last_error());
            return 2;
        }
    }
    if (auditq_open(cfg, &q) != AUDITQ_OK) {
        fprintf(stderr, "auditq_open: %s\n", auditq_last_error());
        return 1;
    }
    auditq_config_free(cfg);
    for (int i = 0; i < nsync + nasync; i++) {
        make_event(&e, i, tag);
        if (secret)
            add_secret(&e, i, i == nsync && nasync > 0, secret);
        if (fill(ev, &e) != 0)
            return 1;
        long long t0 = ms_mono();
        auditq_rc rc = i < nsync ? auditq_send(q, ev, NULL) : auditq_send_async(q, ev, NULL);
        long long took = ms_mono() - t0;
        if (took > slowest)
            slowest = took;
        if (rc == AUDITQ_OK) {
            ok++;
        } else if (rc == AUDITQ_ERR_SPOOL_FULL) {
            if (full++ == 0)
                printf("first spool_full: event %d: %s\n", i, auditq_last_error());
            fflush(stdout);
        } else {
            if (other++ < 5)
                fprintf(stderr, "send %d: %s: %s\n", i, auditq_strerror(rc), auditq_last_error());
        }
    }
    auditq_rc frc = auditq_flush(q, 30000);
    if (frc != AUDITQ_OK)
        fprintf(stderr, "flush: %s\n", auditq_last_error());
    printf("sent sync=%d async=%d ok=%d spool_full=%d other_errors=%d max_call_ms=%lld\n", nsync, nasync, ok, full,
           other, slowest);
    print_stats(q);
    if (hold) {
        printf("ready\n");
        for (;;)
            pause();
    }
    int drained = 1;
    if (wait_s > 0) {
        long long until = ms_mono() + wait_s * 1000LL;
        auditq_stats st;
        for (;;) {
            auditq_get_stats(q, &st);
            if (st.spool_records == 0 && st.buffered == 0)
                break;
            if (ms_mono() > until) {
                drained = 0;
                break;
            }
            usleep(20000);
        }
        printf("%s\n", drained ? "drained" : "not drained");
        print_stats(q);
        char prob[2048];
        auditq_spool_problem(q, prob, sizeof prob);
        if (prob[0])
            printf("problem: %s\n", prob);
    }
    auditq_rc crc = auditq_close(q);
    printf("closed rc=%d%s%s\n", (int)crc, crc ? " " : "", crc ? auditq_last_error() : "");
    auditq_event_free(ev);
    return other || !drained || frc != AUDITQ_OK ? 1 : 0;
}

int main(int argc, char **argv)
{
    int n = 1000, async = 0, prio = 2;
    int nsync = 0, nasync = 0, wait_s = 0, hold = 0, nsets = 0;
    char *sets[32];
    const char *tag = "t", *secret = NULL;
    const char *ack_path = NULL, *stop_path = NULL;
    double rate = 0;
    int n_given = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: it_client exact|bad|send|stream [--events N] [--valid N] [--mode sync|async] [--priority P] [--tag T]\n"
                        "                 [--ack-log FILE --stop-file F [--rate R]]\n");
        return 2;
    }
    for (int i = 2; i < argc; i += 2) {
        if (!strcmp(argv[i], "--hold")) {
            hold = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc)
            break;
        if (!strcmp(argv[i], "--sync"))
            nsync = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--async"))
            nasync = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--wait-replayed"))
            wait_s = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--set") && nsets < 32)
            sets[nsets++] = argv[i + 1];
        else if (!strcmp(argv[i], "--events") || !strcmp(argv[i], "--valid")) {
            n = (int)strtol(argv[i + 1], NULL, 10);
            n_given = 1;
        }
        else if (!strcmp(argv[i], "--mode"))
            async = !strcmp(argv[i + 1], "async");
        else if (!strcmp(argv[i], "--priority"))
            prio = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--tag"))
            tag = argv[i + 1];
        else if (!strcmp(argv[i], "--secret"))
            secret = argv[i + 1];
        else if (!strcmp(argv[i], "--ack-log"))
            ack_path = argv[i + 1];
        else if (!strcmp(argv[i], "--stop-file"))
            stop_path = argv[i + 1];
        else if (!strcmp(argv[i], "--rate"))
            rate = strtod(argv[i + 1], NULL);
    }
    if (!strcmp(argv[1], "exact"))
        return cmd_exact(n, async, tag);
    if (!strcmp(argv[1], "bad"))
        return cmd_bad(n, tag);
    if (!strcmp(argv[1], "send"))
        return cmd_send(n, prio, tag);
    if (!strcmp(argv[1], "produce"))
        return cmd_produce(nsync, nasync, tag, sets, nsets, wait_s, hold, secret);
    if (!strcmp(argv[1], "stream") && ack_path && stop_path)
        return cmd_stream(n_given ? n : 0, async, tag, ack_path, stop_path, rate);
    fprintf(stderr, "unknown command %s\n", argv[1]);
    return 2;
}
