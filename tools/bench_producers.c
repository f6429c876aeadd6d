/* bench_producers.c -- auditq-bench's producer threads (producers_run:
 * T threads, each with its own generator and event, timing every
 * auditq_send / auditq_send_async call into a per-thread histogram) and the
 * handle they share (bench_open). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auditq.h"
#include "bench.h"
#include "gen.h"

/* ---- producers ------------------------------------------------------------- */

/* One producer thread's state and results. `done` is read by the progress
 * loop while the thread runs; everything else is read after join. */
typedef struct producer {
    _Alignas(64) _Atomic uint64_t done;
    pthread_t tid;
    int index;
    int started;
    uint64_t n;                  /* events this thread sends */
    int64_t interval_ns;         /* pacing: 0 = unpaced */
    int64_t offset_ns;           /* pacing: stagger between threads */
    auditq *q;
    const bench_opts *o;
    struct producer_gate *gate;
    /* results */
    uint64_t ok;
    uint64_t by_prio[4];
    uint64_t err_by_rc[RC_SLOTS];
    uint64_t errors;
    int64_t gen_ns;              /* time spent in gen_fill */
    int first_rc;
    int64_t first_err_at;
    char first_err[512];
    int setup_failed;            /* could not allocate its event */
    hist lat;                    /* per-call latency, ns */
    auditq_event **pool;         /* --pool: pre-built events sent in turn */
    int *pool_prio;
    size_t npool;
} producer;

/* Start line: threads are created first and released together, so thread
 * creation is not inside the measured time. */
typedef struct producer_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;                      /* 1 = run, -1 = abort */
    int64_t t0;                  /* start, monotonic ns (pacing origin) */
} producer_gate;

/* --pool: builds the thread's events before the clock starts, from the
 * same generator stream the unpooled run would use. -1 on OOM. */
static int producer_pool_fill(producer *p, const bench_opts *o)
{
    gen g;
    size_t n = (size_t)o->pool < p->n ? (size_t)o->pool : (size_t)p->n;

    p->pool = calloc(n, sizeof *p->pool);
    p->pool_prio = calloc(n, sizeof *p->pool_prio);
    if (p->pool == NULL || p->pool_prio == NULL)
        return -1;
    gen_init(&g, o->seed + (uint64_t)p->index);
    for (size_t k = 0; k < n; k++) {
        p->pool[k] = auditq_event_new(NULL);
        if (p->pool[k] == NULL)
            return -1;
        p->npool = k + 1;
        gen_fill(&g, p->pool[k]);
        p->pool_prio[k] = gen_last_priority(&g);
    }
    return 0;
}

static void *producer_main(void *arg)
{
    producer *p = arg;
    gen g;
    auditq_event *ev = auditq_event_new(NULL);
    int go;

    pthread_mutex_lock(&p->gate->mu);
    while (p->gate->go == 0)
        pthread_cond_wait(&p->gate->cv, &p->gate->mu);
    go = p->gate->go;
    pthread_mutex_unlock(&p->gate->mu);
    if (go < 0 || ev == NULL) {
        p->setup_failed = ev == NULL;
        goto out;
    }

    gen_init(&g, p->o->seed + (uint64_t)p->index);
    int64_t t0 = p->gate->t0;
    for (uint64_t k = 0; k < p->n; k++) {
        auditq_event *cur = ev;
        int prio;
        int64_t g0 = now_ns();
        if (p->npool) {
            cur = p->pool[k % p->npool];
            prio = p->pool_prio[k % p->npool];
        } else {
            gen_fill(&g, ev);
            prio = gen_last_priority(&g);
        }
        int64_t g1 = now_ns();
        p->gen_ns += g1 - g0;
        if (p->interval_ns > 0) {
            int64_t due = t0 + p->offset_ns + (int64_t)k * p->interval_ns;
            if (due > g1)
                sleep_until_ns(due);
        }
        int64_t s0 = now_ns();
        auditq_rc rc = p->o->async ? auditq_send_async(p->q, cur, NULL) : auditq_send(p->q, cur, NULL);
        int64_t s1 = now_ns();
        hist_add(&p->lat, (uint64_t)(s1 - s0));
        if (rc == AUDITQ_OK) {
            p->ok++;
            p->by_prio[prio & 3]++;
        } else {
            p->errors++;
            p->err_by_rc[(unsigned)rc < RC_SLOTS ? (unsigned)rc : RC_SLOTS - 1]++;
            if (p->first_rc == 0) {
                /* auditq_last_error is per thread: copy it here, now. */
                p->first_rc = (int)rc;
                p->first_err_at = s1;
                snprintf(p->first_err, sizeof p->first_err, "%s", auditq_last_error());
            }
        }
        atomic_store_explicit(&p->done, k + 1, memory_order_relaxed);
    }
out:
    auditq_event_free(ev);
    return NULL;
}

void progress_print(uint64_t done, uint64_t total, double rate)
{
    char a[32], b[32], c[32];
    fprintf(stderr, "\rsent %s/%s (%d%%)  %s ev/s   ", fmt_count(done, a, sizeof a),
            fmt_count(total, b, sizeof b), (int)(done * 100 / (total ? total : 1)),
            fmt_count((uint64_t)(rate + 0.5), c, sizeof c));
}

/* Runs o->threads producers against q. Returns 0, or -1 if the threads
 * could not be set up (reported on stderr); send failures are results. */
int producers_run(const bench_opts *o, auditq *q, run_result *r)
{
    int rc = -1;
    int T = o->threads;
    producer **ps = calloc((size_t)T, sizeof *ps);
    producer_gate gate = { .go = 0 };
    pthread_mutex_init(&gate.mu, NULL);
    pthread_cond_init(&gate.cv, NULL);
    int created = 0;

    memset(r, 0, sizeof *r);
    hist_init(&r->lat);
    r->events = o->events;
    if (ps == NULL)
        goto oom;
    for (int i = 0; i < T; i++) {
        /* aligned_alloc for the _Alignas(64) member; size must be a multiple. */
        size_t sz = (sizeof(producer) + 63) / 64 * 64;
        ps[i] = aligned_alloc(64, sz);
        if (ps[i] == NULL)
            goto oom;
        memset(ps[i], 0, sz);
        producer *p = ps[i];
        atomic_init(&p->done, 0);
        p->index = i;
        p->n = o->events / (uint64_t)T + ((uint64_t)i < o->events % (uint64_t)T ? 1 : 0);
        p->q = q;
        p->o = o;
        p->gate = &gate;
        hist_init(&p->lat);
        if (o->pool > 0 && producer_pool_fill(p, o) < 0)
            goto oom;
        if (o->rate > 0) {
            /* Each thread carries rate/T; threads are offset by a fraction
             * of the interval so the sends interleave instead of bunching. */
            p->interval_ns = (int64_t)(1e9 * (double)T / (double)o->rate);
            p->offset_ns = p->interval_ns * i / T;
        }
    }
    for (int i = 0; i < T; i++) {
        int e = pthread_create(&ps[i]->tid, NULL, producer_main, ps[i]);
        if (e != 0) {
            fprintf(stderr, "auditq-bench: pthread_create: %s\n", strerror(e));
            break;
        }
        ps[i]->started = 1;
        created++;
    }

    pthread_mutex_lock(&gate.mu);
    gate.go = created == T ? 1 : -1;
    gate.t0 = now_ns();
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    int64_t t0 = gate.t0;

    if (created == T) {
        int64_t last_t = t0, next_print = t0 + 500000000;
        uint64_t last_done = 0;
        for (;;) {
            uint64_t done = 0;
            for (int i = 0; i < T; i++)
                done += atomic_load_explicit(&ps[i]->done, memory_order_relaxed);
            int64_t t = now_ns();
            if (done >= o->events)
                break;
            if (o->progress && t >= next_print) {
                progress_print(done, o->events, (double)(done - last_done) * 1e9 / (double)(t - last_t));
                last_t = t;
                last_done = done;
                next_print = t + 500000000;
            }
            sleep_ms(20);
        }
    }
    for (int i = 0; i < created; i++)
        pthread_join(ps[i]->tid, NULL);
    int64_t t1 = now_ns();
    r->send_s = (double)(t1 - t0) / 1e9;
    if (created != T)
        goto out;
    if (o->progress) {
        progress_print(o->events, o->events, (double)o->events / (r->send_s > 0 ? r->send_s : 1));
        fputc('\n', stderr);
    }

    int64_t gen_ns = 0, first_at = INT64_MAX;
    for (int i = 0; i < T; i++) {
        producer *p = ps[i];
        if (p->setup_failed) {
            fprintf(stderr, "auditq-bench: thread %d: out of memory creating its event\n", i);
            goto out;
        }
        r->ok += p->ok;
        r->errors += p->errors;
        for (int k = 0; k < 4; k++)
            r->by_prio[k] += p->by_prio[k];
        for (int k = 0; k < RC_SLOTS; k++)
            r->err_by_rc[k] += p->err_by_rc[k];
        if (p->first_rc != 0 && p->first_err_at < first_at) {
            first_at = p->first_err_at;
            r->first_rc = p->first_rc;
            memcpy(r->first_err, p->first_err, sizeof r->first_err);
        }
        gen_ns += p->gen_ns;
        hist_merge(&r->lat, &p->lat);
    }
    r->gen_us_per_event = (double)gen_ns / 1000.0 / (double)o->events;
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "auditq-bench: out of memory setting up %d threads\n", T);
out:
    if (ps) {
        for (int i = 0; i < T; i++) {
            if (ps[i] && ps[i]->pool) {
                for (size_t k = 0; k < ps[i]->npool; k++)
                    auditq_event_free(ps[i]->pool[k]);
                free(ps[i]->pool);
                free(ps[i]->pool_prio);
            }
            free(ps[i]);
        }
        free(ps);
    }
    pthread_cond_destroy(&gate.cv);
    pthread_mutex_destroy(&gate.mu);
    return rc;
}

/* ---- handle ---------------------------------------------------------------- */

/* Opens a handle with the run's settings. Returns 0 and *out, or prints why
 * and returns EXIT_USAGE (bad setting) or EXIT_FAILED (open failed). */
int bench_open(const bench_opts *o, auditq **out)
{
    int rc = EXIT_FAILED;
    auditq_config *cfg = auditq_config_new();
    if (cfg == NULL) {
        fprintf(stderr, "auditq-bench: out of memory\n");
        goto out;
    }
    if (auditq_config_set(cfg, "redis_url", o->redis_url) != AUDITQ_OK ||
        auditq_config_set(cfg, "namespace", o->ns) != AUDITQ_OK) {
        fprintf(stderr, "auditq-bench: %s\n", auditq_last_error());
        rc = EXIT_USAGE;
        goto out;
    }
    for (int i = 0; i < o->nsets; i++) {
        if (auditq_config_set(cfg, o->lib_sets[i][0], o->lib_sets[i][1]) != AUDITQ_OK) {
            /* The library's message names the key, the value and the fix. */
            fprintf(stderr, "auditq-bench: %s\n", auditq_last_error());
            rc = EXIT_USAGE;
            goto out;
        }
    }
    auditq_rc arc = auditq_open(cfg, out);
    if (arc != AUDITQ_OK) {
        fprintf(stderr, "auditq-bench: auditq_open: %s: %s\n", rc_name(arc), auditq_last_error());
        goto out;
    }
    rc = EXIT_OK;
out:
    auditq_config_free(cfg);
    return rc;
}
