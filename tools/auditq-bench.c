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
 *   (producers_run: bench_producers.c; ref_run and report_*:
 *   bench_enqueue.c; the histogram: bench_util.c.)
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
 *
 * This file holds the command table, --help and main(); bench.h lists the
 * other parts (options, histogram, producers, the commands).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditq.h"
#include "bench.h"

/* ---- commands -------------------------------------------------------------- */

typedef int (*bench_cmd_fn)(const bench_opts *o);

static const struct bench_cmd {
    const char *name;
    bench_cmd_fn run;
    const char *summary;
} COMMANDS[] = {
    { "enqueue", cmd_enqueue, "time auditq_send / auditq_send_async calls into Redis" },
    { "ceiling", cmd_ceiling, "raw PostgreSQL ceiling: the worker's COPY + INSERT path, 1..K connections" },
    { "e2e", cmd_e2e, "events through producer -> Redis -> worker(s) -> PostgreSQL" },
    { "shards", cmd_shards, "Redis side over redis_shards shards: produce, then drain with the worker's scripts, no PostgreSQL" },
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

void bench_usage(FILE *out)
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

void bench_print_version(void)
{
    printf("auditq-bench %s\n", AUDITQ_VERSION);
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bench_opts o;

    /* A Redis that goes away mid-write must surface as an error from the
     * library, not kill the benchmark with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        bench_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        bench_usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        bench_print_version();
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
    int prc = bench_opts_parse(&o, argc - 1, argv + 1);
    if (prc < 0)
        return EXIT_USAGE;
    if (prc > 0)
        return EXIT_OK;
    return cmd->run(&o);
}
