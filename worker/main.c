/* auditq-worker -- moves audit jobs from Redis into PostgreSQL.
 *
 * DESIGN
 *
 * This file is the launcher: the command line, the configuration and its
 * SIGHUP reload, signals and shutdown. It sets up the modules, which own
 * their threads, timers and state (worker.h names them):
 *   writer.c    N writer threads (default: one per core), each owning one
 *               Redis and one PostgreSQL connection; no connection is ever
 *               shared between threads. Each loops fetch -> decode -> write
 *               -> settle; its DESIGN comment lists every failure window of
 *               that path and what closes each.
 *   upkeep.c    the main loop's timers on the main thread's own Redis
 *               connection: heartbeat, recovery of dead workers, promotion
 *               of due retries, a 1 s sample of the queue numbers (for
 *               /metrics, /readyz and the summary line), partition upkeep,
 *               the periodic summary line.
 *   retainer.c  with retention_interval_s > 0, a retention thread
 *               (common/retention.c, its own PostgreSQL connection) runs
 *               the retention policy at start and then every interval;
 *               shutdown does not wait for it (each of its steps is one
 *               transaction).
 *   seal.c      with seal_key_file set, a sequencer thread (its own
 *               PostgreSQL connection) appends committed evidence to the
 *               Merkle tree and signs checkpoints.
 *   status.c    the HTTP endpoint's answers (the server: http.c).
 *   selfevents.c  the worker's own start, graceful stop, reloads (the
 *               settings that changed) and dead letters as events in the
 *               trail (worker_self_audit), pushed from a main-loop timer
 *               over its own Redis connection; writers only hand over
 *               their dead letters after each settle.
 * The main thread runs a libev loop that owns signals, the timers and the
 * HTTP endpoint.
 *
 * Start, in this order: the configuration (strict: an error exits 2); the
 * HTTP port is bound (a taken port exits 1); thread 0's PostgreSQL
 * connection checks that our login, database, privileges and table are
 * usable, and the sequencer's key is loaded (refusals no retry can fix
 * exit 1); the worker registers in Redis (a refused login or ACL exits 1;
 * a Redis or PostgreSQL that is merely down is waited for); then the
 * writer threads, the sequencer and the timers start.
 *
 * Shutdown. SIGTERM/SIGINT: threads stop fetching, finish and settle the
 * batch in hand, and exit; a thread whose write fails gives its batch back
 * at once instead of waiting out the deadline; a batch that cannot be
 * finished within shutdown_timeout_ms (Redis away too) is released back to
 * its queue before exit (upkeep_stop). A second signal gives up on the
 * batches in hand at once.
 *
 * Observability. Writer threads count into their own metrics_thread with
 * relaxed atomics (worker/metrics.h); the main thread sums them for
 * /metrics, the heartbeat and the summary. The HTTP server (worker/http.h)
 * runs on the main loop with non-blocking sockets and bounded everything;
 * it never touches Redis or PostgreSQL itself: a scrape renders numbers
 * already in memory.
 *
 * SIGHUP reload. The main thread rebuilds the configuration exactly as at
 * start (defaults, -c FILE, AUDITQ_* environment, --set flags, in that
 * order) and, if it parses and validates, copies the settings marked
 * reloadable in the config table into w->cfg under cfg_mu and bumps
 * cfg_gen; anything else that changed is logged as needing a restart.
 * A writer thread copies w->cfg into its own snapshot (t->cfg) under cfg_mu
 * when cfg_gen moved, at the top of each loop -- so a batch runs start to
 * end under one consistent set of settings, and no thread ever reads
 * w->cfg unlocked. The PostgreSQL writers hold boot_cfg, a copy taken at
 * start that never changes (they use only non-reloadable settings).
 */
#include <ev.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "keyhealth.h"
#include "keys.h"
#include "log.h"
#include "redisconn.h"
#include "retainer.h"
#include "seal.h"
#include "selfevents.h"
#include "status.h"
#include "upkeep.h"
#include "uuid7.h"
#include "worker.h"
#include "writer.h"

#define MAX_SETS 128

/* The process: the state the modules share, and what only the launcher
 * touches. */
typedef struct launcher {
    worker w;
    char cfg_path[512];
    char *sets[MAX_SETS];              /* --set KEY=VALUE, in command-line order */
    const char *set_origin[MAX_SETS];  /* the option as typed ("--set", "-b"), for errors */
    int nsets;

    struct ev_loop *loop;
    ev_signal sig_term, sig_int, sig_hup;
    ev_timer t_stop;
    writers *wr;
    upkeep *up;
    retainer *ret;
    status *st;
    const char *stop_signal;           /* the first SIGTERM/SIGINT, for the stop event */
} launcher;

/* ---- main thread: configuration ------------------------------------------- */

/* Builds a configuration the one way, at start and on SIGHUP: defaults,
 * the file (if any), AUDITQ_* variables, then the --set flags in order,
 * then the cross-field checks. 0, or -1 with the reason in err. */
static int build_config(aq_config *c, const char *path, char *const *sets,
                        const char *const *origins, int nsets, char *err, size_t errlen)
{
    config_defaults(c);
    if (path[0] && config_load_file(c, path, err, errlen) != 0)
        return -1;
    if (config_load_env(c, err, errlen) != 0)
        return -1;
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        /* The shape was checked when the flag was read. */
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (config_set(c, key, eq + 1, origins[i], err, errlen) != 0)
            return -1;
    }
    return config_validate(c, err, errlen);
}

typedef struct reload_report {
    config_change ch[64];
    int n, applied, restart;
} reload_report;

static void collect_change(void *ctx, const config_change *ch)
{
    reload_report *r = ctx;
    if (r->n < (int)(sizeof r->ch / sizeof r->ch[0]))
        r->ch[r->n++] = *ch;
    if (ch->applied)
        r->applied++;
    else
        r->restart++;
}

/* SIGHUP. Tolerant where start is strict: a file that does not parse or
 * validate leaves everything as it was, and says why (file:line). */
static void reload_config(launcher *l)
{
    worker *w = &l->w;
    static aq_config next; /* main thread only; 2.5 KB off the stack */
    static reload_report rep;
    char err[1024], q[1100], fq[600], oq[220], nq[220];
    const char *file = l->cfg_path[0] ? l->cfg_path : "(none: environment and --set only)";
    int old_level = w->cfg.log_level;
    int was_self_audit = w->cfg.worker_self_audit;

    log_q(fq, sizeof fq, file);
    if (build_config(&next, l->cfg_path, l->sets, l->set_origin, l->nsets, err, sizeof err) != 0) {
        w->reloads_failed++;
        log_error("config reload failed; keeping the running configuration", " file=%s error=%s", fq,
                  log_q(q, sizeof q, err));
        return;
    }
    memset(&rep, 0, sizeof rep);
    pthread_mutex_lock(&w->cfg_mu);
    int rc = config_reload(&w->cfg, &next, collect_change, &rep, err, sizeof err);
    if (rc > 0)
        atomic_fetch_add_explicit(&w->cfg_gen, 1, memory_order_release);
    pthread_mutex_unlock(&w->cfg_mu);
    if (rc < 0) {
        w->reloads_failed++;
        log_error("config reload failed; keeping the running configuration", " file=%s error=%s", fq,
                  log_q(q, sizeof q, err));
        return;
    }
    w->reloads_ok++;
    /* Report under the more verbose of the two levels, so switching to a
     * quieter level still says so. */
    atomic_store(&log_level, old_level > w->cfg.log_level ? old_level : w->cfg.log_level);
    for (int i = 0; i < rep.n; i++) {
        const config_change *ch = &rep.ch[i];
        char msg[600];
        log_q(oq, sizeof oq, ch->old_value);
        log_q(nq, sizeof nq, ch->new_value);
        if (ch->applied) {
            snprintf(msg, sizeof msg, "setting %s changed from %s to %s", ch->name, ch->old_value,
                     ch->new_value);
            log_info(msg, " setting=%s old=%s new=%s applied=1", ch->name, oq, nq);
        } else {
            snprintf(msg, sizeof msg, "setting %s changed from %s to %s; restart to apply", ch->name,
                     ch->old_value, ch->new_value);
            log_warn(msg, " setting=%s old=%s new=%s applied=0", ch->name, oq, nq);
        }
    }
    if (rep.n == 0)
        log_info("config reloaded: nothing changed", " file=%s", fq);
    else
        log_info("config reloaded", " file=%s changed=%d applied=%d restart_needed=%d", fq, rep.n,
                 rep.applied, rep.restart);
    atomic_store(&log_level, w->cfg.log_level);
    /* Recorded in the trail: exactly the settings that differ (rep.ch[]
     * holds them all: 64 > the number of settings). */
    selfevents_reload(w->se, was_self_audit, rep.ch, rep.n);
    upkeep_reload(l->up);
}

/* ---- main thread: signals and shutdown ------------------------------------ */

static void on_stop_check(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)revents;
    launcher *l = tm->data;
    worker *w = &l->w;
    /* Threads bound their own work by the deadline; the extra 2 s cover a
     * libpq/hiredis call already in progress (bounded by its timeout). */
    if (atomic_load(&w->running) == 0 || worker_deadline_left_ms(w) < -2000)
        ev_break(loop, EVBREAK_ALL);
}

static void begin_shutdown(launcher *l, const char *why)
{
    worker *w = &l->w;

    if (atomic_load(&w->stopping)) {
        log_warn("second stop signal: giving up on the batches in hand now", " signal=%s", why);
        atomic_store(&w->stop_deadline_us, clock_mono_us());
        return;
    }
    /* shutdown_timeout_ms = 0: no limit (a second signal still sets one). */
    atomic_store(&w->stop_deadline_us, w->cfg.shutdown_timeout_ms == 0
                                           ? INT64_MAX / 4
                                           : clock_mono_us() + (int64_t)w->cfg.shutdown_timeout_ms * 1000);
    l->stop_signal = why;
    atomic_store(&w->stopping, 1);
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    log_info("shutting down: finishing the batches in hand", " signal=%s timeout_ms=%d", why,
             w->cfg.shutdown_timeout_ms);
    ev_timer_start(l->loop, &l->t_stop);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    launcher *l = s->data;
    if (s->signum == SIGHUP) {
        reload_config(l);
        return;
    }
    begin_shutdown(l, s->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start ---------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: auditq-worker [-c FILE] [--set KEY=VALUE]... [OPTIONS]\n"
            "\n"
            "Moves audit events from Redis queues into PostgreSQL, reliably: a job leaves\n"
            "Redis only after PostgreSQL committed it; a crashed worker's jobs are recovered\n"
            "by the others within heartbeat_timeout_ms.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE     read settings from FILE (see config/auditq.conf)\n"
            "  -s, --set KEY=VALUE   override one setting (repeatable)\n"
            "  -t, --threads N       writer threads (default: number of cores)\n"
            "  -b, --batch-size N    jobs per batch\n"
            "      --check           validate the configuration and exit\n"
            "      --print-config    print the effective configuration and exit\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n"
            "\n"
            "Precedence: defaults < config file < AUDITQ_<SETTING> environment variables\n"
            "(e.g. AUDITQ_REDIS_URL, AUDITQ_DATABASE_URL, AUDITQ_THREADS, AUDITQ_BATCH_SIZE)\n"
            "< command-line flags.\n"
            "\n"
            "HTTP: with http_listen = HOST:PORT (e.g. --set http_listen=127.0.0.1:9187;\n"
            "\":9187\" = every address) the worker serves GET /metrics (Prometheus text\n"
            "format), /healthz (200 while it runs) and /readyz (200 when Redis and\n"
            "PostgreSQL are reachable, else 503 naming what is down). It refuses to start\n"
            "if it cannot bind. Off by default.\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit 0 (a second one stops at once).\n"
            "SIGHUP reloads the configuration (the -c file, environment and --set flags,\n"
            "as at start): reloadable settings (batch_size, idle_poll_ms, max_attempts,\n"
            "backoff_*, pg_release_after_ms, dead_letter_max, priority_mode, weights,\n"
            "log_level, summary_interval_ms, retention settings) apply at once; others\n"
            "are logged as needing a restart; a file with an error is ignored, the error\n"
            "logged.\n"
            "Logs: logfmt lines on stderr (ts=... level=... msg=... key=value).\n"
            "Exit codes: 0 clean stop, 2 configuration error, 1 other failure.\n");
}

/* config_env_unknown's callback: a typo'd AUDITQ_* variable is a warning. */
static void warn_env(void *ctx, const char *msg)
{
    (void)ctx;
    log_warn(msg, NULL);
}

static int load_config(launcher *l, int argc, char **argv, int *check, int *print)
{
    worker *w = &l->w;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'}, {"batch-size", required_argument, NULL, 'b'},
        {"check", no_argument, NULL, 1},           {"print-config", no_argument, NULL, 2},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    static char flagbuf[MAX_SETS][128];
    char err[1024];
    int o;

    opterr = 0; /* getopt's own messages are replaced by the ones below */
    while ((o = getopt_long(argc, argv, ":c:s:t:b:hV", opts, NULL)) != -1) {
        /* The one rule for values (config.h): "-c --check" is refused. */
        if ((o == 'c' || o == 's' || o == 't' || o == 'b') &&
            config_getopt_value(argv, optind, optarg, err, sizeof err) != 0) {
            fprintf(stderr, "auditq-worker: %s\n", err);
            return 2;
        }
        switch (o) {
        case 'c': snprintf(l->cfg_path, sizeof l->cfg_path, "%s", optarg); break;
        case 's':
        case 't':
        case 'b':
            if (l->nsets == MAX_SETS) {
                fprintf(stderr, "auditq-worker: too many --set options (at most %d)\n", MAX_SETS);
                return 2;
            }
            if (o == 's') {
                const char *eq = strchr(optarg, '=');
                if (!eq || eq == optarg || (size_t)(eq - optarg) >= 128) {
                    fprintf(stderr, "auditq-worker: --set '%s': expected KEY=VALUE\n", optarg);
                    return 2;
                }
                l->set_origin[l->nsets] = "--set";
                l->sets[l->nsets++] = optarg;
            } else {
                char *buf = flagbuf[l->nsets];
                snprintf(buf, sizeof flagbuf[0], "%s=%.100s", o == 't' ? "threads" : "batch_size", optarg);
                /* Errors name the option the user typed, not --set: the
                 * argument before a separate value, else the one holding
                 * it ("--batch-size=5", "-b5"). */
                const char *typed = optarg == argv[optind - 1] ? argv[optind - 2] : argv[optind - 1];
                int is_long = strncmp(typed, "--", 2) == 0;
                l->set_origin[l->nsets] = o == 't' ? (is_long ? "--threads" : "-t")
                                                   : (is_long ? "--batch-size" : "-b");
                l->sets[l->nsets++] = buf;
            }
            break;
        case 1: *check = 1; break;
        case 2: *print = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("auditq-worker %s\n", AUDITQ_VERSION); exit(0);
        case ':':
            config_arg_value(argv[optind - 1], NULL, err, sizeof err);
            fprintf(stderr, "auditq-worker: %s; see --help\n", err);
            return 2;
        default:
            fprintf(stderr, "auditq-worker: unknown option '%s'; see --help\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "auditq-worker: unexpected argument '%s'; see --help\n", argv[optind]);
        return 2;
    }
    if (build_config(&w->cfg, l->cfg_path, l->sets, l->set_origin, l->nsets, err, sizeof err) != 0)
        goto bad;
    atomic_store(&log_level, w->cfg.log_level);
    config_env_unknown(warn_env, NULL);
    if (redis_url_parse(w->cfg.redis_url, &w->rt, err, sizeof err) != 0 ||
        redis_target_sentinels(&w->rt, w->cfg.redis_sentinels, w->cfg.redis_master_name, err,
                               sizeof err) != 0 ||
        redis_target_sentinel_auth(&w->rt, w->cfg.redis_sentinel_user, w->cfg.redis_sentinel_password, err,
                                   sizeof err) != 0 ||
        keys_init(&w->keys, w->cfg.namespace_) != 0 ||
        shards_init(&w->shards, w->cfg.namespace_, w->cfg.redis_shards, &w->rt, w->cfg.redis_shard_urls,
                    w->cfg.redis_cluster, err, sizeof err) != 0)
        goto bad;
    return 0;
bad:
    fprintf(stderr, "auditq-worker: %s\n", err);
    return 2;
}

static void make_identity(worker *w)
{
    uint8_t rnd[16];
    w->nthreads = w->cfg.threads > 0 ? w->cfg.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (w->nthreads < 1)
        w->nthreads = 1;
    w->pid = (int)getpid();
    if (gethostname(w->host, sizeof w->host) != 0)
        snprintf(w->host, sizeof w->host, "unknown");
    w->host[sizeof w->host - 1] = '\0';
    uuid7_new(rnd);
    snprintf(w->id, sizeof w->id, "%.100s:%d:%02x%02x%02x", w->host, w->pid, rnd[13], rnd[14], rnd[15]);
    w->started_us = clock_now_us();
    w->started_ms = w->started_us / 1000;
}

int main(int argc, char **argv)
{
    static launcher L;
    launcher *l = &L;
    worker *w = &l->w;
    int check = 0, print = 0, rc;
    char err[512], q[600];

    rc = load_config(l, argc, argv, &check, &print);
    if (rc)
        return rc;
    if (print) {
        config_print(&w->cfg, stdout);
        return 0;
    }
    if (check) {
        printf("configuration OK\n");
        return 0;
    }
    atomic_store(&log_level, w->cfg.log_level);
    keyhealth_init(&w->kh, &w->keys);
    signal(SIGPIPE, SIG_IGN);
    w->boot_cfg = w->cfg;
    make_identity(w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_mutex_init(&w->cfg_mu, NULL);

    l->loop = EV_DEFAULT;
    ev_signal_init(&l->sig_term, on_signal, SIGTERM);
    ev_signal_init(&l->sig_int, on_signal, SIGINT);
    ev_signal_init(&l->sig_hup, on_signal, SIGHUP);
    l->sig_term.data = l->sig_int.data = l->sig_hup.data = l;
    ev_signal_start(l->loop, &l->sig_term);
    ev_signal_start(l->loop, &l->sig_int);
    ev_signal_start(l->loop, &l->sig_hup);
    ev_timer_init(&l->t_stop, on_stop_check, 0.02, 0.02);
    l->t_stop.data = l;

    l->up = upkeep_setup(l->loop, w);
    l->wr = l->up ? writers_setup(w) : NULL;
    w->se = l->wr ? selfevents_setup(l->loop, w) : NULL;
    if (!w->se) {
        log_error("out of memory", NULL);
        return 1;
    }
    /* Bind before anything registers in Redis: a taken port is a
     * configuration problem the operator must see at once. */
    if (status_setup(l->loop, w, l->up, &l->st, err, sizeof err) != 0) {
        log_error("cannot start the HTTP endpoint", " error=%s", log_q(q, sizeof q, err));
        return 1;
    }
    /* PostgreSQL refusing us (login, database, privilege, table) is fatal
     * before anything registers, as a refused Redis login is. */
    if (writers_check_pg(l->wr) != 0)
        return 1;
    /* A seal_key_file that cannot be used is refused before any work. */
    if (seal_setup(&w->boot_cfg, &w->seal, err, sizeof err) != 0) {
        log_error("cannot start sealing", " error=%s", log_q(q, sizeof q, err));
        return 1;
    }
    /* Register before the threads take work, so our in-flight lists are
     * never unowned. */
    if (upkeep_register(l->up) != 0)
        return 1;
    if (writers_start(l->wr) != 0)
        return 1;
    log_info("worker started", " id=%s threads=%d batch_size=%d namespace=%s redis_shards=%d%s priority_mode=%s "
             "write_method=%s http=%s", w->id, w->nthreads, w->cfg.batch_size, w->cfg.namespace_, w->shards.n,
             w->shards.cluster ? " redis_cluster=on" : "",
             w->cfg.priority_mode == PRIO_WEIGHTED ? "weighted" : "strict",
             w->cfg.write_method == WRITE_INSERT ? "insert" : "copy", status_address(l->st));

    if (seal_start(w->seal, err, sizeof err) != 0) {
        log_error("cannot start sealing", " error=%s", log_q(q, sizeof q, err));
        return 1;
    }
    upkeep_start(l->up);
    selfevents_start(w->se);  /* auditq.worker.start, pushed once Redis and PostgreSQL answer */
    l->ret = retainer_setup(l->loop, w);
    if (!l->ret) {
        log_error("out of memory", NULL);
        return 1;
    }
    ev_run(l->loop, 0);

    /* Shutdown: threads have stopped (or are stuck in a bounded call). */
    int stuck = atomic_load(&w->running);
    int abandoned = stuck > 0 || writers_join(l->wr);
    retainer_stop(l->ret);
    seal_stop(w->seal);  /* bounded: one tick (statement_timeout_ms) at most */
    /* auditq.worker.stop and the dead letters' events still pending, before
     * upkeep_stop deregisters us; bounded (selfevents.h). */
    selfevents_stop(w->se, l->stop_signal ? l->stop_signal : "SIGTERM", abandoned);
    upkeep_stop(l->up, abandoned); /* the last summary line, then Redis left tidy */
    status_stop(l->st);
    log_info("worker stopped", " id=%s", w->id);
    if (stuck)
        _exit(0); /* threads still inside a bounded call: don't free under them */
    writers_free(l->wr);
    selfevents_free(w->se);
    shards_free(&w->shards);
    ev_loop_destroy(l->loop);
    return 0;
}
