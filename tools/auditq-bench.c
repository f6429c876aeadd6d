/* auditq-bench.c -- load generator and latency meter for libauditq.
 *
 * DESIGN
 *   auditq-bench COMMAND [options]. Commands live in one table (COMMANDS);
 *   all of them share the option parser (bench_opts) and three building
 *   blocks, so new ones (e2e: time to the PostgreSQL row; ceiling: highest
 *   sustainable rate) are a function plus a table row:
 *     producers_run()  T threads, each with its own generator (gen.h) and
 *                      event, call auditq_send or auditq_send_async N/T
 *                      times, optionally paced; every call is timed into a
 *                      per-thread histogram, merged at the end.
 *     ref_run()        the yardstick: bare hiredis LPUSH round trips of a
 *                      ~300-byte value on one connection. auditq's sync
 *                      latency cannot beat this; the ratio shows its cost.
 *     report_*()       human table on stdout, or one JSON object (--json).
 *   Latencies go into a log-linear histogram (128 sub-buckets per power of
 *   two: values are reported as bucket midpoints, within 0.4%), so memory
 *   stays constant however many events a run sends, and per-thread
 *   histograms merge by addition.
 *
 *   Generation cost (gen_fill) is outside the timed call but inside the wall
 *   time: throughput is what one process achieves building real events.
 *
 * Exit status: 0 all sends succeeded, 1 some failed (or Redis unusable),
 * 2 usage or configuration errors.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis.h>

#include "auditq.h"
#include "config.h"
#include "gen.h"
#include "redisconn.h"
#include "text.h"
#include "bench.h"


#define REF_VALUE_BYTES 300

/* ---- time ---------------------------------------------------------------- */

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sleep_until_ns(int64_t t)
{
    struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

void sleep_ms(int ms)
{
    sleep_until_ns(now_ns() + (int64_t)ms * 1000000);
}

/* ---- histogram ------------------------------------------------------------ */


void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

/* Values below 128 have their own bucket; above, each power of two is
 * split into 128 equal buckets, so a bucket is at most 1/128 of its value. */
static size_t hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v);
    int shift = e - HIST_SUB_BITS;
    return (size_t)shift * HIST_SUB + (size_t)(v >> shift);
}

/* Midpoint of bucket i (the reported value). */
static uint64_t hist_value(size_t i)
{
    if (i < HIST_SUB)
        return i;
    int shift = (int)(i / HIST_SUB) - 1;
    uint64_t m = i - (size_t)shift * HIST_SUB;
    uint64_t lower = m << shift, width = (uint64_t)1 << shift;
    return lower + width / 2;
}

void hist_add(hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *into, const hist *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

/* Value at quantile q (0..1): the smallest recorded bucket whose cumulative
 * count reaches ceil(q * n), never above the exact max. 0 when empty. */
uint64_t hist_quantile(const hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            uint64_t v = hist_value(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}


lat_summary hist_summary(const hist *h)
{
    lat_summary s = { 0 };
    s.n = h->n;
    if (h->n == 0)
        return s;
    s.mean = (double)h->sum / (double)h->n / 1000.0;
    s.p50 = (double)hist_quantile(h, 0.50) / 1000.0;
    s.p90 = (double)hist_quantile(h, 0.90) / 1000.0;
    s.p99 = (double)hist_quantile(h, 0.99) / 1000.0;
    s.p999 = (double)hist_quantile(h, 0.999) / 1000.0;
    s.max = (double)h->max / 1000.0;
    return s;
}

/* ---- options --------------------------------------------------------------- */


typedef int (*bench_cmd_fn)(const bench_opts *o);

static int cmd_enqueue(const bench_opts *o);

static const struct bench_cmd {
    const char *name;
    bench_cmd_fn run;
    const char *summary;
} COMMANDS[] = {
    { "enqueue", cmd_enqueue, "time auditq_send / auditq_send_async calls into Redis" },
    { "ceiling", cmd_ceiling, "raw PostgreSQL ceiling: the worker's COPY + INSERT path, 1..K connections" },
    { "e2e", cmd_e2e, "events through producer -> Redis -> worker(s) -> PostgreSQL" },
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *out)
{
    fprintf(out,
        "usage: auditq-bench COMMAND [options]\n"
        "       auditq-bench --version\n"
        "\n"
        "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out,
        "\n"
        "options:\n"
        "  --events N            events to send in all (default 100000)\n"
        "  --async               use auditq_send_async (default: sync auditq_send)\n"
        "  --threads T           producer threads, events split evenly (default 1, max %d)\n"
        "  --rate R              events/s for the whole run, 0 = as fast as possible (default 0)\n"
        "  --seed S              generator seed; thread i uses S+i (default 1)\n"
        "  --pool N              build N events per thread before the clock starts and send\n"
        "                        them in turn (an app has its event already; the library's\n"
        "                        cost is what is measured); 0 = generate each event in the\n"
        "                        loop, its cost outside the timed call but inside the wall\n"
        "                        time (default 0)\n"
        "  --redis-url URL       default $AUDITQ_REDIS_URL or redis://127.0.0.1:6379\n"
        "  --namespace NS        default $AUDITQ_NAMESPACE or auditq\n"
        "  --batch-size N        library batch_size (async events per pipelined push)\n"
        "  --flush-interval-ms N library flush_interval_ms\n"
        "  --buffer-events N     library buffer_events (async buffer capacity)\n"
        "  --set KEY=VALUE       any other library setting (repeatable), e.g.\n"
        "                        --set full_policy=error --set sync_connections=8\n"
        "  --drain-timeout-ms N  async: longest wait for the final auditq_flush (default 120000)\n"
        "  --ref-count K         reference LPUSH round trips (default 10000)\n"
        "  --no-ref              skip the reference LPUSH measurement\n"
        "\n"
        "ceiling and e2e:\n"
        "  --database-url URL    default $AUDITQ_DATABASE_URL or postgresql://localhost/auditq\n"
        "  --pg-batch N          rows per transaction; e2e passes it as the workers' batch_size\n"
        "                        (default 1000)\n"
        "  --conns LIST          ceiling: connection counts to measure (default 1,2)\n"
        "e2e:\n"
        "  --workers P           auditq-worker processes to start (default 1, max 16)\n"
        "  --worker-threads T    threads per worker (default 2)\n"
        "  --worker-set KEY=VAL  any other worker setting (repeatable)\n"
        "  --worker PATH         the worker binary (default: auditq-worker next to this one)\n"
        "  --load-fraction F     latency phase rate = F x the full-load rate (default 0.5)\n"
        "  --latency-seconds S   length of the latency phase; 0 = skip it (default 10)\n"
        "  --no-ceiling          do not measure the ceiling in the same run\n"
        "  (e2e sends --events as fast as it can with auditq_send_async from --threads\n"
        "  threads, then runs the latency phase; it needs empty queues in its namespace and\n"
        "  writes real rows to audit_events: run it against a benchmark database.\n"
        "  ceiling writes to a scratch schema auditq_bench_ceiling it creates and drops.)\n"
        "\n"
        "  --json                print one JSON object on stdout instead of the table\n"
        "  --progress            progress line on stderr even when it is not a terminal\n"
        "  --quiet               no progress line (wins over --progress)\n"
        "  -h, --help            this text\n"
        "  -V, --version         print the version and exit\n"
        "\n"
        "The reference is a bare hiredis LPUSH of a %d-byte value to {NS}:bench:ref on one\n"
        "connection (the key is deleted afterwards); the report shows auditq's p99 against it.\n"
        "Exit status: 0 all sends succeeded (e2e: and every event stored once), 1 failed,\n"
        "2 usage error.\n"
        "\n"
        "example:\n"
        "  auditq-bench enqueue --events 50000 --async --threads 2 \\\n"
        "      --redis-url redis://127.0.0.1:6379 --namespace auditq --progress\n"
        "  auditq-bench e2e --events 200000 --workers 1 --worker-threads 2 \\\n"
        "      --database-url postgresql://postgres@127.0.0.1:5432/bench\n",
        MAX_THREADS, REF_VALUE_BYTES);
}

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

static void print_version(void)
{
    printf("auditq-bench %s\n", AUDITQ_VERSION);
}

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
static int opts_parse(bench_opts *o, int argc, char **argv)
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
            usage(stdout);
            return 1;
        case 'V':
            print_version();
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

/* ---- formatting ------------------------------------------------------------ */

/* 1234567 -> "1,234,567" into buf. */
const char *fmt_count(uint64_t v, char *buf, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Prints s as a JSON string literal (text_json_string, common/text.h). */
void json_str(FILE *f, const char *s)
{
    (void)text_json_fput(f, s, strlen(s), 0);
}

const char *const PRIO_NAMES[4] = { "critical", "high", "normal", "low" };

/* Enum names of result codes (auditq_strerror gives prose; reports and JSON
 * keys want the stable identifier). */
const char *rc_name(int rc)
{
    static const char *const names[] = {
        "AUDITQ_OK", "AUDITQ_ERR_INVALID_ARG", "AUDITQ_ERR_NOMEM", "AUDITQ_ERR_CONFIG",
        "AUDITQ_ERR_CONNECT", "AUDITQ_ERR_TIMEOUT", "AUDITQ_ERR_REDIS", "AUDITQ_ERR_AUTH",
        "AUDITQ_ERR_BUFFER_FULL", "AUDITQ_ERR_MISSING_FIELD", "AUDITQ_ERR_INVALID_JSON",
        "AUDITQ_ERR_INVALID_UTF8", "AUDITQ_ERR_TOO_LARGE", "AUDITQ_ERR_CLOSED", "AUDITQ_ERR_PROTOCOL",
    };
    if (rc >= 0 && (size_t)rc < sizeof names / sizeof names[0])
        return names[rc];
    return "AUDITQ_ERR_UNKNOWN";
}

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

/* ---- reference: bare LPUSH ------------------------------------------------- */

typedef struct ref_result {
    int done;                    /* measured */
    uint64_t count;
    double wall_s;
    hist lat;
} ref_result;

/* K LPUSH round trips of a REF_VALUE_BYTES value to "{NS}:bench:ref" on one
 * connection, then DEL. Returns 0, or -1 with the reason in err. */
static int ref_run(const bench_opts *o, ref_result *r, char *err, size_t errlen)
{
    int rc = -1;
    aq_redis_target t;
    redisContext *c = NULL;
    redisReply *rep = NULL;
    char key[256], value[REF_VALUE_BYTES];
    gen g;

    hist_init(&r->lat);
    r->count = o->ref_count;
    if (redis_url_parse(o->redis_url, &t, err, errlen) < 0)
        goto out;
    c = redis_connect(&t, 2000, 5000, err, errlen, NULL);
    if (c == NULL)
        goto out;
    snprintf(key, sizeof key, "{%s}:bench:ref", o->ns);
    /* Printable bytes, like the text-heavy jobs; content does not matter
     * to Redis but keeps MONITOR output readable. */
    gen_init(&g, o->seed);
    for (size_t i = 0; i < sizeof value; i++)
        value[i] = (char)('a' + gen_u64(&g) % 26);

    rep = redisCommand(c, "DEL %b", key, strlen(key));
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        goto cmd_err;
    freeReplyObject(rep);
    rep = NULL;

    int64_t w0 = now_ns();
    for (uint64_t k = 0; k < o->ref_count; k++) {
        int64_t s0 = now_ns();
        rep = redisCommand(c, "LPUSH %b %b", key, strlen(key), value, sizeof value);
        int64_t s1 = now_ns();
        if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
            goto cmd_err;
        freeReplyObject(rep);
        rep = NULL;
        hist_add(&r->lat, (uint64_t)(s1 - s0));
    }
    r->wall_s = (double)(now_ns() - w0) / 1e9;

    rep = redisCommand(c, "DEL %b", key, strlen(key));
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        goto cmd_err;
    r->done = 1;
    rc = 0;
    goto out;
cmd_err:
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        snprintf(err, errlen, "reference LPUSH: Redis error: %s", rep->str);
    else if (rep != NULL)
        snprintf(err, errlen, "reference LPUSH: unexpected reply type %d", rep->type);
    else
        snprintf(err, errlen, "reference LPUSH: %s", c->errstr);
out:
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
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

/* ---- enqueue ----------------------------------------------------------------- */

typedef struct enqueue_report {
    const bench_opts *o;
    run_result *run;
    ref_result *ref;             /* NULL: skipped */
    const char *ref_err;         /* non-empty: reference failed */
    double drain_s;              /* async only */
    auditq_rc drain_rc;
    char drain_err[512];
    auditq_rc close_rc;
    auditq_stats stats;
    int have_stats;
} enqueue_report;

/* Async "into Redis" rate: events Redis acknowledged (library counter; an
 * accepted-but-undelivered event does not count) over send + drain time. */
static double into_redis_eps(const enqueue_report *e)
{
    double total = e->run->send_s + e->drain_s;
    uint64_t acked = e->have_stats ? e->stats.sent_async : e->run->ok;
    return total > 0 ? (double)acked / total : 0.0;
}

static void report_table(const enqueue_report *e)
{
    const bench_opts *o = e->o;
    const run_result *r = e->run;
    lat_summary a = hist_summary(&r->lat);
    char b1[32], b2[32];

    printf("auditq-bench enqueue  events=%" PRIu64 " mode=%s threads=%d", o->events,
           o->async ? "async" : "sync", o->threads);
    if (o->rate > 0)
        printf(" rate=%" PRIu64 "/s", o->rate);
    printf("\n");
    printf("             %9s %9s %9s %9s %9s %10s\n", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "ev/s");
    printf("%-12s %9.1f %9.1f %9.1f %9.1f %9.1f %10s\n", o->async ? "auditq async" : "auditq",
           a.p50, a.p90, a.p99, a.p999, a.max,
           fmt_count((uint64_t)((double)r->events / r->send_s + 0.5), b1, sizeof b1));
    if (e->ref && e->ref->done) {
        lat_summary l = hist_summary(&e->ref->lat);
        printf("%-12s %9.1f %9.1f %9.1f %9.1f %9.1f %10s\n", "lpush ref", l.p50, l.p90, l.p99, l.p999,
               l.max, fmt_count((uint64_t)((double)e->ref->count / e->ref->wall_s + 0.5), b2, sizeof b2));
        if (l.p99 > 0)
            printf("p99 ratio auditq/lpush: %.2f\n", a.p99 / l.p99);
    } else if (e->ref_err && *e->ref_err) {
        printf("lpush ref    failed: %s\n", e->ref_err);
    }
    if (o->pool)
        printf("wall %.3f s (send)   events: a pool of %d per thread, built before the clock started\n",
               r->send_s, o->pool);
    else
        printf("wall %.3f s (send)   generator %.2f us/event (outside the timed call)\n", r->send_s,
               r->gen_us_per_event);
    if (o->async) {
        printf("drain (auditq_flush) %.1f ms   into Redis: %s ev/s", e->drain_s * 1000.0,
               fmt_count((uint64_t)(into_redis_eps(e) + 0.5), b1, sizeof b1));
        if (e->drain_rc != AUDITQ_OK)
            printf("   FLUSH FAILED: %s: %s", rc_name(e->drain_rc), e->drain_err);
        printf("\n");
    }
    printf("by priority:");
    for (int k = 0; k < 4; k++)
        printf(" %s=%" PRIu64, PRIO_NAMES[k], r->by_prio[k]);
    printf("   errors: %" PRIu64, r->errors);
    if (r->errors) {
        printf(" (");
        const char *sep = "";
        for (int k = 0; k < RC_SLOTS; k++) {
            if (r->err_by_rc[k]) {
                printf("%s%s=%" PRIu64, sep, rc_name(k), r->err_by_rc[k]);
                sep = " ";
            }
        }
        printf(")");
    }
    printf("\n");
    if (e->have_stats && o->async)
        printf("library: queued_async=%" PRIu64 " sent_async=%" PRIu64 " rejected_full=%" PRIu64
               " redis_retries=%" PRIu64 "\n", e->stats.queued_async, e->stats.sent_async,
               e->stats.rejected_full, e->stats.redis_retries);
    if (r->errors)
        printf("first error: %s (%s): %s\n", rc_name(r->first_rc),
               auditq_strerror((auditq_rc)r->first_rc), r->first_err);
    if (e->close_rc != AUDITQ_OK)
        printf("auditq_close: %s (%s)\n", rc_name(e->close_rc), auditq_strerror(e->close_rc));
}

void json_lat(FILE *f, const lat_summary *s)
{
    fprintf(f, "{\"n\":%" PRIu64 ",\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f}",
            s->n, s->mean, s->p50, s->p90, s->p99, s->p999, s->max);
}

static void report_json(const enqueue_report *e)
{
    const bench_opts *o = e->o;
    const run_result *r = e->run;
    lat_summary a = hist_summary(&r->lat);
    FILE *f = stdout;

    fprintf(f, "{\"command\":\"enqueue\",\"mode\":\"%s\",\"events\":%" PRIu64 ",\"threads\":%d,"
               "\"rate\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"pool\":%d,\"namespace\":",
            o->async ? "async" : "sync", o->events, o->threads, o->rate, o->seed, o->pool);
    json_str(f, o->ns);
    fprintf(f, ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"errors_by_code\":{", r->ok, r->errors);
    const char *sep = "";
    for (int k = 0; k < RC_SLOTS; k++) {
        if (r->err_by_rc[k]) {
            fputs(sep, f);
            json_str(f, rc_name(k));
            fprintf(f, ":%" PRIu64, r->err_by_rc[k]);
            sep = ",";
        }
    }
    fprintf(f, "},\"first_error\":");
    if (r->errors)
        json_str(f, r->first_err);
    else
        fputs("null", f);
    fprintf(f, ",\"send_s\":%.6f,\"throughput_eps\":%.1f,\"gen_us_per_event\":%.3f,\"latency_us\":",
            r->send_s, (double)r->events / r->send_s, r->gen_us_per_event);
    json_lat(f, &a);
    fprintf(f, ",\"by_priority\":{");
    for (int k = 0; k < 4; k++)
        fprintf(f, "%s\"%s\":%" PRIu64, k ? "," : "", PRIO_NAMES[k], r->by_prio[k]);
    fputc('}', f);
    if (o->async) {
        fprintf(f, ",\"drain_ms\":%.3f,\"drain_ok\":%s,\"into_redis_eps\":%.1f", e->drain_s * 1000.0,
                e->drain_rc == AUDITQ_OK ? "true" : "false", into_redis_eps(e));
        fputs(",\"drain_error\":", f);
        if (e->drain_rc != AUDITQ_OK)
            json_str(f, e->drain_err);
        else
            fputs("null", f);
    }
    if (e->have_stats)
        fprintf(f, ",\"library\":{\"sent_sync\":%" PRIu64 ",\"queued_async\":%" PRIu64
                   ",\"sent_async\":%" PRIu64 ",\"rejected_full\":%" PRIu64 ",\"errors\":%" PRIu64
                   ",\"redis_retries\":%" PRIu64 "}", e->stats.sent_sync, e->stats.queued_async,
                e->stats.sent_async, e->stats.rejected_full, e->stats.errors, e->stats.redis_retries);
    fprintf(f, ",\"ref\":");
    if (e->ref && e->ref->done) {
        lat_summary l = hist_summary(&e->ref->lat);
        fprintf(f, "{\"count\":%" PRIu64 ",\"value_bytes\":%d,\"wall_s\":%.6f,\"throughput_eps\":%.1f,\"latency_us\":",
                e->ref->count, REF_VALUE_BYTES, e->ref->wall_s, (double)e->ref->count / e->ref->wall_s);
        json_lat(f, &l);
        fprintf(f, "},\"p99_ratio\":");
        if (l.p99 > 0)
            fprintf(f, "%.3f", a.p99 / l.p99);
        else
            fputs("null", f);
    } else if (e->ref_err && *e->ref_err) {
        fputs("{\"error\":", f);
        json_str(f, e->ref_err);
        fputs("},\"p99_ratio\":null", f);
    } else {
        fputs("null,\"p99_ratio\":null", f);
    }
    fprintf(f, ",\"close_ok\":%s}\n", e->close_rc == AUDITQ_OK ? "true" : "false");
}

static int cmd_enqueue(const bench_opts *o)
{
    int rc = EXIT_FAILED;
    auditq *q = NULL;
    run_result *run = calloc(1, sizeof *run);
    ref_result *ref = calloc(1, sizeof *ref);
    char ref_err[512] = "";
    enqueue_report e = { .o = o, .run = run, .drain_rc = AUDITQ_OK, .close_rc = AUDITQ_OK };

    if (run == NULL || ref == NULL) {
        fprintf(stderr, "auditq-bench: out of memory\n");
        goto out;
    }
    /* Reference first: same server, same moment, before our lists grow. */
    if (!o->no_ref) {
        if (ref_run(o, ref, ref_err, sizeof ref_err) == 0)
            e.ref = ref;
        else
            fprintf(stderr, "auditq-bench: %s\n", ref_err);
        e.ref_err = ref_err;
    }

    rc = bench_open(o, &q);
    if (rc != EXIT_OK)
        goto out;
    rc = EXIT_FAILED;
    if (producers_run(o, q, run) < 0)
        goto out;

    if (o->async) {
        int64_t d0 = now_ns();
        e.drain_rc = auditq_flush(q, o->drain_timeout_ms);
        e.drain_s = (double)(now_ns() - d0) / 1e9;
        if (e.drain_rc != AUDITQ_OK)
            snprintf(e.drain_err, sizeof e.drain_err, "%s", auditq_last_error());
    }
    e.have_stats = auditq_get_stats(q, &e.stats) == AUDITQ_OK;
    e.close_rc = auditq_close(q);
    q = NULL;

    if (o->json)
        report_json(&e);
    else
        report_table(&e);
    fflush(stdout);

    if (run->errors == 0 && e.drain_rc == AUDITQ_OK && e.close_rc == AUDITQ_OK && ref_err[0] == '\0')
        rc = EXIT_OK;
    if (run->errors)
        fprintf(stderr, "auditq-bench: %" PRIu64 " of %" PRIu64 " sends failed; first: %s: %s\n",
                run->errors, run->events, rc_name(run->first_rc), run->first_err);
out:
    if (q)
        auditq_close(q);
    free(run);
    free(ref);
    return rc;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bench_opts o;

    /* A Redis that goes away mid-write must surface as an error from the
     * library, not kill the benchmark with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        print_version();
        return EXIT_OK;
    }
    const struct bench_cmd *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            cmd = &COMMANDS[i];
    if (cmd == NULL) {
        fprintf(stderr, "auditq-bench: unknown command '%s'; see auditq-bench --help\n", argv[1]);
        return EXIT_USAGE;
    }
    int prc = opts_parse(&o, argc - 1, argv + 1);
    if (prc < 0)
        return EXIT_USAGE;
    if (prc > 0)
        return EXIT_OK;
    return cmd->run(&o);
}
