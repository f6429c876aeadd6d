/* bench.h -- what auditq-bench's files share. Internal to the tool.
 *   auditq-bench.c       the command table, --help, main()
 *   bench_opts.c         the option parser (bench_opts)
 *   bench_util.c         clock, latency histogram, formatting
 *   bench_producers.c    the producer threads and the handle they share
 *   bench_enqueue.c      `enqueue` and its bare-LPUSH reference
 *   bench_pg.c           `ceiling`
 *   bench_e2e.c          `e2e`
 *   bench_shards.c       `shards`
 *   gen.c                the synthetic event generator (gen.h) */
#ifndef AQ_BENCH_H
#define AQ_BENCH_H
#include <stdint.h>
#include <stdio.h>
#include <libpq-fe.h>

#include "auditq.h"

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_USAGE 2

#define MAX_THREADS 256
#define MAX_SETS 32
#define RC_SLOTS 32            /* auditq_rc values we count individually */
#define MAX_CONNS_LIST 8
#define REF_VALUE_BYTES 300     /* enqueue's reference LPUSH value */

/* ---- time ---- */
int64_t now_ns(void);                 /* CLOCK_MONOTONIC */
void sleep_until_ns(int64_t t);
void sleep_ms(int ms);

/* ---- histogram: log-linear, 128 sub-buckets per power of two ---- */
#define HIST_SUB_BITS 7
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t n, sum, min, max;   /* exact */
    uint64_t counts[HIST_BUCKETS];
} hist;
void hist_init(hist *h);
void hist_add(hist *h, uint64_t v);
void hist_merge(hist *into, const hist *from);
/* Value at quantile q (0..1); 0 when empty. */
uint64_t hist_quantile(const hist *h, double q);

/* Latency summary in microseconds. */
typedef struct lat_summary {
    uint64_t n;
    double mean, p50, p90, p99, p999, max;
} lat_summary;
/* Summary in microseconds of a histogram of nanoseconds. */
lat_summary hist_summary(const hist *h);

/* ---- options (one parser for every command) ---- */
typedef struct bench_opts {
    const char *command;
    uint64_t events;
    int async;
    int threads;
    const char *redis_url;
    const char *ns;
    uint64_t seed;
    uint64_t rate;               /* events/s for the whole run; 0 = unpaced */
    const char *lib_sets[MAX_SETS][2];  /* auditq_config_set key/value pairs, in order */
    int nsets;
    int json;
    int quiet;
    int progress;                /* -1 = auto (stderr is a tty) */
    uint64_t ref_count;
    int no_ref;
    int drain_timeout_ms;
    /* ceiling and e2e */
    const char *database_url;
    int conns[MAX_CONNS_LIST];   /* ceiling: connection counts to measure, e.g. 1,2 */
    int nconns;
    int pg_batch;                /* rows per transaction (ceiling) = worker batch_size (e2e) */
    const char *worker_path;     /* e2e: the auditq-worker binary */
    int workers;                 /* e2e: worker processes */
    int worker_threads;          /* e2e: threads per worker process */
    const char *worker_sets[MAX_SETS];  /* e2e: extra KEY=VALUE for the workers */
    int nworker_sets;
    double load_fraction;        /* e2e: latency phase rate = this x full-load throughput */
    int latency_seconds;         /* e2e: length of the latency phase; 0 = skip it */
    int no_ceiling;              /* e2e: do not measure the ceiling in the same run */
    int pool;                    /* pre-built events per producer thread; 0 = generate in the loop */
} bench_opts;

/* Merged result of one producers_run. */
typedef struct run_result {
    uint64_t events, ok, errors;
    uint64_t by_prio[4];
    uint64_t err_by_rc[RC_SLOTS];
    int first_rc;
    char first_err[512];
    double send_s;               /* wall time from release to last thread done */
    double gen_us_per_event;
    hist lat;
} run_result;

/* ---- formatting ---- */
const char *fmt_count(uint64_t v, char *buf, size_t len);   /* 1234567 -> "1,234,567" */
void json_str(FILE *f, const char *s);
void json_lat(FILE *f, const lat_summary *s);
const char *rc_name(int rc);
extern const char *const PRIO_NAMES[4];
void progress_print(uint64_t done, uint64_t total, double rate);

/* ---- producers ---- */
/* Opens a handle with the run's settings: EXIT_OK and *out, else prints why
 * and returns EXIT_USAGE or EXIT_FAILED. Close it with auditq_close. */
int bench_open(const bench_opts *o, auditq **out);
/* Runs o->threads producers sending o->events (paced by o->rate) through q.
 * 0, or -1 if the threads could not be set up (reported). */
int producers_run(const bench_opts *o, auditq *q, run_result *r);

/* ---- the command line (auditq-bench.c, bench_opts.c) ---- */
void bench_usage(FILE *out);
void bench_print_version(void);
/* Parses argv after the command. Returns -1 on a usage error (already
 * reported), 1 when --help or --version was printed, else 0. */
int bench_opts_parse(bench_opts *o, int argc, char **argv);

/* ---- the commands: bench_enqueue.c, bench_pg.c ---- */
int cmd_enqueue(const bench_opts *o);
int cmd_ceiling(const bench_opts *o);
int cmd_e2e(const bench_opts *o);
int cmd_shards(const bench_opts *o);   /* bench_shards.c */

/* ---- the ceiling, for e2e to measure in the same run (bench_pg.c) ---- */
/* Connects to url as application_name=auditq-bench (pgconn_open). NULL
 * with the reason in err. */
PGconn *bench_pg_open(const char *url, char *err, size_t errlen);
typedef struct ceil_result {
    int conns;
    uint64_t rows;
    double secs;
    double rows_per_s;
} ceil_result;
/* Measures every K in o->conns. res[] gets one entry per K. 0 or -1 (err). */
int ceiling_measure(const bench_opts *o, ceil_result *res, char *err, size_t errlen);
/* The ceiling as a table on stdout, or as a JSON array on f. */
void ceiling_print(const ceil_result *res, int n, uint64_t events, int batch);
void ceiling_json(FILE *f, const ceil_result *res, int n);
#endif
