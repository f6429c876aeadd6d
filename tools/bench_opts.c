/* bench_opts.c -- auditq-bench's one option parser (bench_opts, bench.h),
 * shared by every command: strict numbers, lists, library settings. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auditq.h"
#include "bench.h"
#include "config.h"

/* Strict unsigned parse: digits only (no sign, no trailing junk), within
 * [min, max]. Returns 0 or -1 after printing which option was wrong. */
static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s < '0' || *s > '9')
        goto bad;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto bad;
    *out = (uint64_t)v;
    return 0;
bad:
    fprintf(stderr, "auditq-bench: %s %s: must be an integer in %" PRIu64 "..%" PRIu64 "\n",
            opt, s ? s : "(missing)", min, max);
    return -1;
}

/* "1,2,4" -> out[0..n). Returns 0 or -1 after saying what was wrong. */
static int parse_int_list(const char *opt, const char *s, int *out, int max_items, int min, int max,
                          int *n)
{
    char buf[128];
    char *save = NULL;
    int k = 0;

    if (strlen(s) >= sizeof buf)
        goto bad;
    memcpy(buf, s, strlen(s) + 1);
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (k == max_items || parse_u64(opt, tok, (uint64_t)min, (uint64_t)max, &v) < 0)
            goto bad;
        out[k++] = (int)v;
    }
    if (k == 0)
        goto bad;
    *n = k;
    return 0;
bad:
    fprintf(stderr, "auditq-bench: %s %s: expected up to %d comma-separated integers %d..%d, e.g. 1,2\n",
            opt, s, max_items, min, max);
    return -1;
}

enum {
    OPT_EVENTS = 256, OPT_ASYNC, OPT_THREADS, OPT_REDIS_URL, OPT_NAMESPACE, OPT_SEED, OPT_RATE,
    OPT_BATCH, OPT_FLUSH, OPT_BUFFER, OPT_SET, OPT_DRAIN, OPT_REF_COUNT, OPT_NO_REF, OPT_JSON,
    OPT_PROGRESS, OPT_QUIET, OPT_DB_URL, OPT_CONNS, OPT_PG_BATCH, OPT_WORKER, OPT_WORKERS,
    OPT_WORKER_THREADS, OPT_WORKER_SET, OPT_LOAD_FRACTION, OPT_LATENCY_SECONDS, OPT_NO_CEILING, OPT_POOL,
};

static const struct option LONG_OPTS[] = {
    { "events", required_argument, NULL, OPT_EVENTS },
    { "async", no_argument, NULL, OPT_ASYNC },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "redis-url", required_argument, NULL, OPT_REDIS_URL },
    { "namespace", required_argument, NULL, OPT_NAMESPACE },
    { "seed", required_argument, NULL, OPT_SEED },
    { "rate", required_argument, NULL, OPT_RATE },
    { "batch-size", required_argument, NULL, OPT_BATCH },
    { "flush-interval-ms", required_argument, NULL, OPT_FLUSH },
    { "buffer-events", required_argument, NULL, OPT_BUFFER },
    { "set", required_argument, NULL, OPT_SET },
    { "drain-timeout-ms", required_argument, NULL, OPT_DRAIN },
    { "ref-count", required_argument, NULL, OPT_REF_COUNT },
    { "no-ref", no_argument, NULL, OPT_NO_REF },
    { "json", no_argument, NULL, OPT_JSON },
    { "progress", no_argument, NULL, OPT_PROGRESS },
    { "quiet", no_argument, NULL, OPT_QUIET },
    { "database-url", required_argument, NULL, OPT_DB_URL },
    { "conns", required_argument, NULL, OPT_CONNS },
    { "pg-batch", required_argument, NULL, OPT_PG_BATCH },
    { "worker", required_argument, NULL, OPT_WORKER },
    { "workers", required_argument, NULL, OPT_WORKERS },
    { "worker-threads", required_argument, NULL, OPT_WORKER_THREADS },
    { "worker-set", required_argument, NULL, OPT_WORKER_SET },
    { "load-fraction", required_argument, NULL, OPT_LOAD_FRACTION },
    { "latency-seconds", required_argument, NULL, OPT_LATENCY_SECONDS },
    { "no-ceiling", no_argument, NULL, OPT_NO_CEILING },
    { "pool", required_argument, NULL, OPT_POOL },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

/* Records a library setting; KEY=VALUE text for --set is split in place
 * (argv strings are writable and live for the whole run). */
static int opts_add_set(bench_opts *o, const char *key, const char *value)
{
    if (o->nsets >= MAX_SETS) {
        fprintf(stderr, "auditq-bench: too many library settings (max %d)\n", MAX_SETS);
        return -1;
    }
    o->lib_sets[o->nsets][0] = key;
    o->lib_sets[o->nsets][1] = value;
    o->nsets++;
    return 0;
}

/* Parses argv after the command. Returns -1 on a usage error (already
 * reported), 1 when --help was printed, else 0. */
int bench_opts_parse(bench_opts *o, int argc, char **argv)
{
    uint64_t v;
    const char *env;

    memset(o, 0, sizeof *o);
    o->command = argv[0];
    o->events = 100000;
    o->threads = 1;
    o->seed = 1;
    o->ref_count = 10000;
    o->progress = -1;
    o->drain_timeout_ms = 120000;
    env = getenv("AUDITQ_REDIS_URL");
    o->redis_url = env && *env ? env : "redis://127.0.0.1:6379";
    env = getenv("AUDITQ_NAMESPACE");
    o->ns = env && *env ? env : "auditq";
    env = getenv("AUDITQ_DATABASE_URL");
    o->database_url = env && *env ? env : "postgresql://localhost/auditq";
    o->conns[0] = 1;
    o->conns[1] = 2;
    o->nconns = 2;
    o->pg_batch = 1000;
    o->workers = 1;
    o->worker_threads = 2;
    o->load_fraction = 0.5;
    o->latency_seconds = 10;

    optind = 1;
    opterr = 0; /* the messages below name the option and the fix */
    for (;;) {
        char err[512];
        int c = getopt_long(argc, argv, ":hV", LONG_OPTS, NULL);
        if (c == -1)
            break;
        /* The one rule for values (config.h): "--redis-url --async" is refused. */
        if (c != ':' && optarg != NULL && config_getopt_value(argv, optind, optarg, err, sizeof err) != 0) {
            fprintf(stderr, "auditq-bench: %s; see auditq-bench --help\n", err);
            return -1;
        }
        switch (c) {
        case OPT_EVENTS:
            if (parse_u64("--events", optarg, 1, UINT64_C(1) << 40, &o->events) < 0)
                return -1;
            break;
        case OPT_ASYNC:
            o->async = 1;
            break;
        case OPT_THREADS:
            if (parse_u64("--threads", optarg, 1, MAX_THREADS, &v) < 0)
                return -1;
            o->threads = (int)v;
            break;
        case OPT_REDIS_URL:
            o->redis_url = optarg;
            break;
        case OPT_NAMESPACE:
            o->ns = optarg;
            break;
        case OPT_SEED:
            if (parse_u64("--seed", optarg, 0, UINT64_MAX, &o->seed) < 0)
                return -1;
            break;
        case OPT_RATE:
            if (parse_u64("--rate", optarg, 0, 100000000, &o->rate) < 0)
                return -1;
            break;
        case OPT_BATCH:
        case OPT_FLUSH:
        case OPT_BUFFER: {
            /* Numeric form checked here; the library checks the bounds and
             * names them in its error. */
            const char *name = c == OPT_BATCH ? "--batch-size" : c == OPT_FLUSH ? "--flush-interval-ms"
                                                                                : "--buffer-events";
            const char *key = c == OPT_BATCH ? "batch_size" : c == OPT_FLUSH ? "flush_interval_ms"
                                                                             : "buffer_events";
            if (parse_u64(name, optarg, 0, INT32_MAX, &v) < 0 || opts_add_set(o, key, optarg) < 0)
                return -1;
            break;
        }
        case OPT_SET: {
            char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg) {
                fprintf(stderr, "auditq-bench: --set %s: expected KEY=VALUE\n", optarg);
                return -1;
            }
            *eq = '\0';
            if (opts_add_set(o, optarg, eq + 1) < 0)
                return -1;
            break;
        }
        case OPT_DRAIN:
            if (parse_u64("--drain-timeout-ms", optarg, 1, INT32_MAX, &v) < 0)
                return -1;
            o->drain_timeout_ms = (int)v;
            break;
        case OPT_REF_COUNT:
            if (parse_u64("--ref-count", optarg, 1, 100000000, &o->ref_count) < 0)
                return -1;
            break;
        case OPT_NO_REF:
            o->no_ref = 1;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_PROGRESS:
            o->progress = 1;
            break;
        case OPT_QUIET:
            o->quiet = 1;
            break;
        case OPT_DB_URL:
            o->database_url = optarg;
            break;
        case OPT_CONNS:
            if (parse_int_list("--conns", optarg, o->conns, MAX_CONNS_LIST, 1, 64, &o->nconns) < 0)
                return -1;
            break;
        case OPT_PG_BATCH:
            if (parse_u64("--pg-batch", optarg, 1, 100000, &v) < 0)
                return -1;
            o->pg_batch = (int)v;
            break;
        case OPT_WORKER:
            o->worker_path = optarg;
            break;
        case OPT_WORKERS:
            if (parse_u64("--workers", optarg, 1, 16, &v) < 0)
                return -1;
            o->workers = (int)v;
            break;
        case OPT_WORKER_THREADS:
            if (parse_u64("--worker-threads", optarg, 1, 256, &v) < 0)
                return -1;
            o->worker_threads = (int)v;
            break;
        case OPT_WORKER_SET:
            if (strchr(optarg, '=') == NULL || o->nworker_sets >= MAX_SETS) {
                fprintf(stderr, "auditq-bench: --worker-set %s: expected KEY=VALUE (at most %d)\n",
                        optarg, MAX_SETS);
                return -1;
            }
            o->worker_sets[o->nworker_sets++] = optarg;
            break;
        case OPT_LOAD_FRACTION: {
            char *end;
            errno = 0;
            o->load_fraction = strtod(optarg, &end);
            if (errno != 0 || *end != '\0' || !(o->load_fraction > 0.0 && o->load_fraction <= 1.0)) {
                fprintf(stderr, "auditq-bench: --load-fraction %s: must be a number in (0, 1]\n", optarg);
                return -1;
            }
            break;
        }
        case OPT_LATENCY_SECONDS:
            if (parse_u64("--latency-seconds", optarg, 0, 3600, &v) < 0)
                return -1;
            o->latency_seconds = (int)v;
            break;
        case OPT_NO_CEILING:
            o->no_ceiling = 1;
            break;
        case OPT_POOL:
            if (parse_u64("--pool", optarg, 0, 1000000, &v) < 0)
                return -1;
            o->pool = (int)v;
            break;
        case 'h':
            bench_usage(stdout);
            return 1;
        case 'V':
            bench_print_version();
            return 1;
        case ':':
            config_arg_value(argv[optind - 1], NULL, err, sizeof err);
            fprintf(stderr, "auditq-bench: %s; see auditq-bench --help\n", err);
            return -1;
        default:
            fprintf(stderr, "auditq-bench: unknown option '%s'; see auditq-bench --help\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "auditq-bench: unexpected argument '%s'; see auditq-bench --help\n", argv[optind]);
        return -1;
    }
    if ((uint64_t)o->threads > o->events) {
        fprintf(stderr, "auditq-bench: --threads %d is more than --events %" PRIu64 "\n",
                o->threads, o->events);
        return -1;
    }
    if (o->quiet)
        o->progress = 0;
    else if (o->progress < 0)
        o->progress = isatty(STDERR_FILENO);
    return 0;
}
