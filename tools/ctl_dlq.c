/* ctl_dlq.c -- `auditqctl dlq list|show|requeue|purge`: the dead-letter
 * list {ns}:dead (docs/PROTOCOL.md section 8).
 *
 * DESIGN
 *
 * Bounded memory. The list may hold dead_letter_max records (100k by
 * default, up to 100M). It is read in chunks (CHUNK_RECORDS records or
 * CHUNK_BYTES bytes, whichever comes first); every record is handled and
 * forgotten before the next chunk. Every script call is bounded too (chunk,
 * batch and search sizes), so Redis -- and the workers using it -- are
 * never blocked for long.
 *
 * The list moves while we read it. Workers LPUSH new records at the head
 * and LTRIM the tail when the list is full; requeue and purge (ours or
 * another operator's) remove records anywhere. Tail trims do not move head
 * positions; the other two are counted in {ns}:stats, in the same script
 * that does them: dead_lettered (every LPUSH, by settle and recover) and
 * requeued + dead_purged (every removal, by the modify script below). Each
 * script reads those counters atomically with what it does, so:
 *   - the next chunk starts at: previous offset + records read - records we
 *     removed + pushes since the previous fetch;
 *   - as a check, the record before that offset must be the last record
 *     we left in the list (the anchor). Removals by others move it left by
 *     at most their count, so if it is not there the fetch script searches
 *     that far left (up to ANCHOR_SEARCH) for the newest of the last
 *     ANCHORS records we left -- another operator may have removed the very
 *     last one -- then a little to the right (an uncounted change: a
 *     hand-made LPUSH, a reset of the stats), and resumes after it. If none
 *     is found it backs off by the others' removals (re-reading a few
 *     records is harmless; skipping some is not) and the command warns that
 *     records may have been missed or seen twice.
 * The index `dlq list` shows (1 = newest) is the record's position when it
 * was read; `dlq show INDEX` reads that position now. --event-id does not
 * move.
 *
 * Removing a record. LREM key 1 <record bytes> would be the natural
 * primitive -- it removes one copy of exactly that value or nothing, so two
 * operators requeueing at once cannot both push the job -- but it scans
 * from the head: removing k scattered records from a list of n costs
 * O(k*n) (a 100k list: seconds of blocked Redis per batch), and a record
 * someone else already removed costs a full scan each (~12 ms at 100k;
 * two requeues racing over the same records made thousands). So the modify
 * script finds each record by position AND value: LINDEX at the expected
 * position (read position + pushes since); if the bytes there are the
 * record's, it LSETs a tombstone unique to this run, and one LREM of the
 * tombstone at the end of the batch removes them all in one pass. If not,
 * only removals by others can have moved it, so it searches exactly that
 * many positions to the left (at most SHIFT_SEARCH) and adopts the shift it
 * finds for the rest of the batch; a record not within that reach is gone.
 * The job is pushed only when its record was removed, the batch is one
 * script (nobody ever sees a tombstone), and a job is never pushed twice.
 *
 * Requeued jobs are re-encoded with attempts = 0 (codec_encode: unknown keys
 * are dropped, as for every retry) and RPUSHed: the right end of a queue is
 * its oldest end, where workers take jobs next -- these jobs are old.
 *
 * This file holds the arguments and the subcommands; the scripts and the
 * scan are ctl_dlq_scan.c, the output ctl_dlq_out.c (ctl_dlq.h lists the
 * parts).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_common.h"
#include "ctl_dlq.h"
#include "selfaudit.h"
#include "uuid7.h"

const char ctl_dlq_synopsis[] =
    "dlq list|show|requeue|purge      inspect, replay or delete dead letters";
const char ctl_dlq_help[] =
    "Usage: auditqctl [OPTIONS] dlq list    [FILTERS] [--limit N] [--json]\n"
    "       auditqctl [OPTIONS] dlq show    INDEX | FILTERS [--limit N] [--json | --raw]\n"
    "       auditqctl [OPTIONS] dlq requeue FILTERS | --all [--limit N] [--dry-run]\n"
    "       auditqctl [OPTIONS] dlq purge   FILTERS | --all [--limit N] --yes\n"
    "\n"
    "Dead letters are jobs the workers could not write: undecodable jobs, rows\n"
    "PostgreSQL rejected max_attempts times, jobs that crashed workers. They\n"
    "are kept in Redis ({ns}:dead, newest first) until you requeue or purge them.\n"
    "\n"
    "  list     one entry per dead letter, newest first: its INDEX (1 = newest),\n"
    "           when it failed (UTC), priority, attempts, event id (also of a job\n"
    "           that does not decode; \"-\" if it carries none), then how long ago,\n"
    "           the SQLSTATE and the\n"
    "           reason; then \"N of M dead letters match\".\n"
    "  show     every field of the record and of the decoded job (or the\n"
    "           decoder's error and a hex dump). INDEX is the number `list`\n"
    "           printed; new dead letters shift it, --event-id does not move.\n"
    "  requeue  puts each matching job back at the oldest end of its queue with\n"
    "           attempts reset to 0 and removes its record. A job that cannot\n"
    "           be decoded is skipped and stays. Counted in stats 'requeued'.\n"
    "  purge    deletes the matching records. Needs a filter or --all, and\n"
    "           --yes; without --yes it only says how many it would delete.\n"
    "           Counted in stats 'dead_purged'.\n"
    "\n"
    "Filters (all that are given must match):\n"
    "  --reason TEXT        the reason contains TEXT (case-sensitive)\n"
    "  --sqlstate CODE      rejected by PostgreSQL with this SQLSTATE, e.g. 23514\n"
    "  --priority P         critical, high, normal or low\n"
    "  --older-than DUR     failed more than DUR ago (30s, 15m, 2h, 7d, 1h30m)\n"
    "  --newer-than DUR     failed less than DUR ago\n"
    "  --event-id UUID      the job's event_id\n"
    "Options:\n"
    "  --limit N            at most N records (the newest matching ones)\n"
    "  --json               list: one JSON object {records, matched, total};\n"
    "                       show: a JSON array of records\n"
    "  --raw                show: write the job's bytes to stdout exactly\n"
    "                       (needs INDEX or --event-id; the newest match)\n"
    "  --dry-run            requeue: list what would be requeued, change nothing\n"
    "  --all                requeue/purge: every record (no filter needed)\n"
    "  --yes                purge: really delete\n"
    "  --shard N            with redis_shards > 1: only shard N (0..redis_shards-1);\n"
    "                       without it every shard is done in turn, each under a\n"
    "                       \"shard N (server):\" line (with --json: one document\n"
    "                       per shard, each with \"shard\"). INDEX and --raw need it:\n"
    "                       INDEX numbers are per shard\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 ok, 1 Redis unreachable or error, or nothing to show,\n"
    "2 usage error or purge refused (no --yes, or no filter and no --all).\n";

const char *const dlq_sub_names[] = {"list", "show", "requeue", "purge"};
const char *const dlq_skip_names[SKIP_N] = {
    "not a dead-letter record", "no job in the record", "job larger than max_job_bytes",
    "undecodable job"};
static const char *const skip_plurals[SKIP_N] = {
    "not dead-letter records", "no job in the records", "jobs larger than max_job_bytes",
    "undecodable jobs"};

/* ---- subcommands ---------------------------------------------------------- */

static int show_index(dlq_ctx *x)
{
    redisReply *r = redisCommand(x->c, "LINDEX %s %lld", x->k.dead, x->index - 1);
    dlq_entry e;

    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        dlq_redis_fail(x, r, "LINDEX");
        return CTL_FAILED;
    }
    if (r->type == REDIS_REPLY_NIL) {
        redisReply *l = redisCommand(x->c, "LLEN %s", x->k.dead);
        fprintf(stderr, "auditqctl dlq show: there is no dead letter #%lld; the list holds %lld "
                "(see 'auditqctl dlq list')\n", x->index, l ? redis_reply_ll(l) : 0);
        if (l)
            freeReplyObject(l);
        freeReplyObject(r);
        return CTL_FAILED;
    }
    x->idx_width = 1;
    dlq_entry_load(&e, x->index, r->str, r->len);
    if (x->raw) {
        if (!e.parsed || !e.rec.job) {
            fprintf(stderr, "auditqctl dlq show: dead letter #%lld has no job to write (%s)\n", x->index,
                    e.parsed ? "no job field" : e.perr);
            freeReplyObject(r);
            return CTL_FAILED;
        }
        fwrite(e.rec.job, 1, e.rec.job_len, stdout);
    } else if (x->json) {
        printf("[\n");
        dlq_show_json(x, &e);
        printf("\n]\n");
    } else {
        dlq_show_text(x, &e);
    }
    freeReplyObject(r);
    return CTL_OK;
}

static void print_skips(const dlq_ctx *x)
{
    long long total = 0;
    int kinds = 0;

    for (int i = 0; i < SKIP_N; i++) {
        total += x->skipped[i];
        kinds += x->skipped[i] > 0;
    }
    if (total == 0)
        return;
    printf(" (%lld skipped: ", total);
    for (int i = 0, first = 1; i < SKIP_N; i++) {
        if (!x->skipped[i])
            continue;
        const char *name = x->skipped[i] == 1 ? dlq_skip_names[i] : skip_plurals[i];
        if (kinds == 1)
            printf("%s", name);
        else
            printf("%s%lld %s", first ? "" : ", ", x->skipped[i], name);
        first = 0;
    }
    printf(")");
}

/* Ends the summary line of requeue and purge. */
static void print_gone(const dlq_ctx *x)
{
    if (x->gone)
        printf("; %lld already gone (removed by another process meanwhile)", x->gone);
    if (x->missed)
        printf("; %lld not found where expected (another process moved the list a lot); "
               "run the command again", x->missed);
    putchar('\n');
}

static void warn_lost(const dlq_ctx *x)
{
    if (x->lost)
        fprintf(stderr, "auditqctl dlq %s: warning: the dead list changed during the scan in a way "
                "that could not be followed (another requeue or purge?); some records may have "
                "been missed or seen twice; run the command again\n", dlq_sub_names[x->sub]);
}

static const char *plural(long long n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static int run_sub(dlq_ctx *x)
{
    if (x->sub == SUB_SHOW && x->index > 0)
        return show_index(x);
    if (x->json && x->sub == SUB_LIST && x->nshards > 1)
        printf("{\"shard\":%d,\"records\":[", x->shard_now);
    else if (x->json && (x->sub == SUB_LIST || x->sub == SUB_SHOW))
        printf(x->sub == SUB_LIST ? "{\"records\":[" : "[");
    if (dlq_scan(x) != 0)
        return CTL_FAILED;
    warn_lost(x);
    switch (x->sub) {
    case SUB_LIST:
        if (x->json) {
            printf("%s],\"matched\":%lld,\"total\":%lld}\n", x->shown ? "\n" : "", x->matched, x->scanned);
        } else {
            printf("%lld of %lld dead letters match", x->matched, x->scanned);
            if (x->shown < x->matched)
                printf(" (the newest %lld shown: --limit %lld)", x->shown, x->limit);
            putchar('\n');
        }
        return CTL_OK;
    case SUB_SHOW:
        if (x->json && !x->raw)
            printf("%s]\n", x->shown ? "\n" : "");
        if (x->shown == 0) {
            fprintf(stderr, "auditqctl dlq show: no dead letter matches (%lld in the list)\n", x->scanned);
            return CTL_FAILED;
        }
        return CTL_OK;
    case SUB_REQUEUE:
        if (x->skip_lines > SKIP_LINES_MAX)
            printf("... and %lld more skipped records, not listed\n", x->skip_lines - SKIP_LINES_MAX);
        printf("%s %lld %s", x->dry_run ? "would requeue" : "requeued", x->done, plural(x->done, "job", "jobs"));
        selfaudit_count("requeued", x->done);
        selfaudit_count("matched", x->matched);
        print_skips(x);
        print_gone(x);
        return CTL_OK;
    case SUB_PURGE: {
        long long n = x->limit && x->matched > x->limit ? x->limit : x->matched;
        if (!x->purge_go) {
            if (!dlq_filter_active(&x->flt) && !x->all)
                fprintf(stderr, "auditqctl dlq purge: refusing to purge without a filter; --all --yes "
                        "would purge %lld of %lld dead letters. Give a filter (--reason, --sqlstate, "
                        "--priority, --older-than, --newer-than, --event-id) or --all, and --yes\n",
                        n, x->llen);
            else
                fprintf(stderr, "auditqctl dlq purge: would purge %lld of %lld dead letters; nothing "
                        "deleted; add --yes to delete them\n", n, x->llen);
            return CTL_USAGE;
        }
        printf("purged %lld dead %s", x->done, plural(x->done, "letter", "letters"));
        selfaudit_count("purged", x->done);
        selfaudit_count("matched", x->matched);
        print_gone(x);
        return CTL_OK;
    }
    }
    return CTL_OK;
}

/* ---- arguments ------------------------------------------------------------ */

static int usage_err(const char *sub, const char *fmt, const char *arg)
{
    fprintf(stderr, "auditqctl dlq%s%s: ", sub ? " " : "", sub ? sub : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "; see 'auditqctl dlq --help'\n");
    return CTL_USAGE;
}

static int parse_count(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < 1)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(dlq_ctx *x, int argc, char **argv)
{
    enum { O_REASON = 256, O_SQLSTATE, O_PRIO, O_OLDER, O_NEWER, O_EVENT, O_LIMIT, O_JSON, O_RAW,
           O_DRY, O_ALL, O_YES, O_SHARD };
    static const struct option opts[] = {
        {"reason", required_argument, NULL, O_REASON},
        {"sqlstate", required_argument, NULL, O_SQLSTATE},
        {"priority", required_argument, NULL, O_PRIO},
        {"older-than", required_argument, NULL, O_OLDER},
        {"newer-than", required_argument, NULL, O_NEWER},
        {"event-id", required_argument, NULL, O_EVENT},
        {"limit", required_argument, NULL, O_LIMIT},
        {"json", no_argument, NULL, O_JSON},
        {"raw", no_argument, NULL, O_RAW},
        {"dry-run", no_argument, NULL, O_DRY},
        {"all", no_argument, NULL, O_ALL},
        {"yes", no_argument, NULL, O_YES},
        {"shard", required_argument, NULL, O_SHARD},
        {NULL, 0, NULL, 0}};
    const char *sub;
    char err[256];
    int o;

    if (argc < 2)
        return usage_err(NULL, "%s", "give a subcommand: list, show, requeue or purge");
    sub = argv[1];
    for (x->sub = 0; x->sub < 4 && strcmp(dlq_sub_names[x->sub], sub) != 0; x->sub++)
        ;
    if (x->sub == 4)
        return usage_err(NULL, "unknown subcommand '%s' (list, show, requeue, purge)", sub);
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc - 1, argv + 1, ":", opts, NULL)) != -1) {
        const char *a = optarg;
        long long ms;
        /* The one rule for values (config.h): "--reason --json" is refused. */
        if (a != NULL && config_getopt_value(argv + 1, optind, a, err, sizeof err) != 0)
            return usage_err(sub, "%s", err);
        switch (o) {
        case O_REASON: x->flt.reason = a; break;
        case O_SHARD: {
            long long v;
            if (parse_count(a, &v) != 0 && strcmp(a, "0") != 0)
                return usage_err(sub, "--shard '%s': give a shard number, 0..redis_shards-1", a);
            x->shard = strcmp(a, "0") == 0 ? 0 : (int)v;
            if (x->shard >= x->nshards) {
                char m[160];
                snprintf(m, sizeof m, "--shard %s: redis_shards is %d, so give 0..%d", a, x->nshards, x->nshards - 1);
                return usage_err(sub, "%s", m);
            }
            break;
        }
        case O_SQLSTATE:
            if (strlen(a) != 5 || strspn(a, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 5)
                return usage_err(sub, "--sqlstate '%s': a SQLSTATE is 5 characters of 0-9 A-Z, e.g. 23514", a);
            x->flt.sqlstate = a;
            break;
        case O_PRIO:
            x->flt.priority = codec_priority_parse(a, strlen(a));
            if (x->flt.priority < 0)
                return usage_err(sub, "--priority '%s': use critical, high, normal or low", a);
            break;
        case O_OLDER:
        case O_NEWER:
            if (ctl_parse_duration_ms(a, &ms, err, sizeof err) != 0)
                return usage_err(sub, "%s", err);
            *(o == O_OLDER ? &x->flt.older_than_ms : &x->flt.newer_than_ms) = ms;
            break;
        case O_EVENT:
            if (uuid_parse(a, strlen(a), x->flt.event_id) != 0)
                return usage_err(sub, "--event-id '%s': not a UUID in 8-4-4-4-12 hex form", a);
            x->flt.has_event_id = 1;
            break;
        case O_LIMIT:
            if (parse_count(a, &x->limit) != 0)
                return usage_err(sub, "--limit '%s': give a number of records, 1 or more", a);
            break;
        case O_JSON: x->json = 1; break;
        case O_RAW: x->raw = 1; break;
        case O_DRY: x->dry_run = 1; break;
        case O_ALL: x->all = 1; break;
        case O_YES: x->yes = 1; break;
        case ':':
            config_arg_value(argv[optind], NULL, err, sizeof err);
            return usage_err(sub, "%s", err);
        default:
            return usage_err(sub, "unknown option '%s'", argv[optind]);
        }
    }
    /* argv + 1 was scanned: optind counts from the subcommand. */
    if (optind < argc - 1) {
        if (x->sub != SUB_SHOW || optind + 1 < argc - 1)
            return usage_err(sub, "unexpected argument '%s'", argv[1 + optind]);
        if (parse_count(argv[1 + optind], &x->index) != 0)
            return usage_err(sub, "INDEX '%s': give the number `dlq list` shows, 1 or more",
                             argv[1 + optind]);
    }
    if (x->json && x->sub != SUB_LIST && x->sub != SUB_SHOW)
        return usage_err(sub, "%s", "--json applies to list and show");
    if (x->raw && x->sub != SUB_SHOW)
        return usage_err(sub, "%s", "--raw applies to show");
    if (x->dry_run && x->sub != SUB_REQUEUE)
        return usage_err(sub, "%s", "--dry-run applies to requeue (purge without --yes only counts)");
    if (x->all && x->sub != SUB_REQUEUE && x->sub != SUB_PURGE)
        return usage_err(sub, "%s", "--all applies to requeue and purge");
    if (x->yes && x->sub != SUB_PURGE)
        return usage_err(sub, "%s", "--yes applies to purge");
    if (x->sub == SUB_SHOW) {
        if (x->index && (dlq_filter_active(&x->flt) || x->limit))
            return usage_err(sub, "%s", "give INDEX or filters, not both");
        if (!x->index && !dlq_filter_active(&x->flt))
            return usage_err(sub, "%s", "name the record: INDEX (from 'dlq list') or --event-id UUID "
                             "(or any filter)");
        if (x->raw && x->json)
            return usage_err(sub, "%s", "--raw and --json exclude each other");
        if (x->raw && !x->index && !x->flt.has_event_id)
            return usage_err(sub, "%s", "--raw writes one job: give INDEX or --event-id");
    }
    /* Nothing is deleted unless both say so; otherwise purge only counts,
     * to say in its refusal how many it would delete. */
    x->purge_go = x->sub == SUB_PURGE && x->yes && (dlq_filter_active(&x->flt) || x->all);
    if (x->sub == SUB_REQUEUE && !dlq_filter_active(&x->flt) && !x->all)
        return usage_err(sub, "%s", "requeue needs a filter (--reason, --sqlstate, --priority, "
                         "--older-than, --newer-than, --event-id) or --all");
    return CTL_OK;
}

int ctl_dlq(const aq_config *cfg, int argc, char **argv)
{
    dlq_ctx x;
    char err[512];
    uint8_t rnd[16];
    int rc;

    memset(&x, 0, sizeof x);
    x.cfg = cfg;
    x.shard = -1;
    x.nshards = ctl_shards_n(cfg);
    dlq_filter_init(&x.flt);
    if ((rc = parse_args(&x, argc, argv)) != CTL_OK)
        return rc;
    char cmd[16];
    snprintf(cmd, sizeof cmd, "dlq %s", dlq_sub_names[x.sub]);
    if (x.nshards > 1 && x.shard < 0 && ((x.sub == SUB_SHOW && x.index > 0) || x.raw)) {
        fprintf(stderr, "auditqctl %s: redis_shards is %d and INDEX numbers are per shard: give --shard "
                "0..%d (dlq list prints each shard's)\n", cmd, x.nshards, x.nshards - 1);
        return CTL_USAGE;
    }
    int first = x.shard < 0 ? 0 : x.shard, last = x.shard < 0 ? x.nshards - 1 : x.shard, worst = CTL_OK;
    dlq_ctx fresh = x;
    for (int sh = first; sh <= last; sh++) {
        x = fresh;
        x.shard_now = sh;
        x.c = ctl_shard_open(cfg, cmd, sh, &x.k, &rc);
        if (!x.c)
            return rc;
        if (x.nshards > 1 && fresh.shard < 0 && !x.json && !x.raw) {
            char where[300];
            ctl_shard_where(sh, where, sizeof where);
            printf("%sshard %d (%s):\n", sh > first ? "\n" : "", sh, where);
        }
        if (ctl_redis_now_ms(x.c, &x.now_ms, err, sizeof err) != 0) {
            fprintf(stderr, "auditqctl dlq %s: %s\n", dlq_sub_names[x.sub], err);
            redisFree(x.c);
            return CTL_FAILED;
        }
        /* Unique to this run: a record (msgpack, or whatever else was pushed)
         * cannot be equal to it by accident. */
        uuid7_new(rnd);
        snprintf(x.tomb, sizeof x.tomb, "auditqctl-dlq-tombstone:%d:", (int)getpid());
        for (int i = 0; i < 16; i++)
            snprintf(x.tomb + strlen(x.tomb), sizeof x.tomb - strlen(x.tomb), "%02x", rnd[i]);
        x.progress_tty = isatty(STDERR_FILENO);
        x.progress_next = PROGRESS_EVERY;
        rc = run_sub(&x);
        fflush(stdout);
        redisFree(x.c);
        if (rc > worst)
            worst = rc;
    }
    rc = worst;
    return rc;
}
