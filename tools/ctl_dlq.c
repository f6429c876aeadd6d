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
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_dlq_record.h"
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
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 ok, 1 Redis unreachable or error, or nothing to show,\n"
    "2 usage error or purge refused (no --yes, or no filter and no --all).\n";

#define CHUNK_RECORDS 1000
#define CHUNK_BYTES (8 << 20)     /* per fetch, so 1000 huge records stay bounded */
#define BATCH_RECORDS 100         /* records per modify script call (bounds its run time) */
#define BATCH_BYTES (4 << 20)     /* argument bytes per modify script call */
#define ANCHORS 8                 /* last kept records remembered per chunk */
#define ANCHOR_SEARCH 20000       /* records searched left of a lost anchor */
#define ANCHOR_WINDOW 256         /* records searched right of it */
#define SHIFT_SEARCH 2000         /* records searched left of a moved record */
#define SKIP_LINES_MAX 20         /* skipped records listed one by one */
#define PROGRESS_EVERY 10000      /* records between progress lines (not a TTY) */
#define XSTR(v) STR(v)
#define STR(v) #v

/* ---- the scripts ---------------------------------------------------------- */

/* Read-only. KEYS: dead, stats.
 * ARGV: base offset, dead_lettered and removed (requeued + dead_purged) at
 *       the previous fetch ('' = first fetch), records we removed since,
 *       max records, max bytes, then 0..ANCHORS anchor records, oldest first.
 * Returns {dead_lettered, removed, offset used, lost (0|1), LLEN, {records}}. */
static const char fetch_src[] =
    "local dk, sk = KEYS[1], KEYS[2]\n"
    "local st = redis.call('HMGET', sk, 'dead_lettered', 'requeued', 'dead_purged')\n"
    "local c = tonumber(st[1]) or 0\n"
    "local rm = (tonumber(st[2]) or 0) + (tonumber(st[3]) or 0)\n"
    "local off, others = tonumber(ARGV[1]), 0\n"
    "if ARGV[2] ~= '' then\n"
    "  off = off + c - tonumber(ARGV[2])\n"
    "  others = math.max(rm - tonumber(ARGV[3]) - tonumber(ARGV[4]), 0)\n"
    "end\n"
    "if off < 0 then off = 0 end\n"
    "local lost, na = 0, #ARGV - 6\n"
    "if na > 0 and (off == 0 or redis.call('LINDEX', dk, off - 1) ~= ARGV[#ARGV]) then\n"
    "  local set, found = {}, nil\n"
    "  for i = 7, #ARGV do set[ARGV[i]] = true end\n"
    "  local hi, stop = off - 2, off - 2 - math.min(others, " XSTR(ANCHOR_SEARCH) ")\n"
    "  while not found and hi >= 0 and hi > stop do\n"
    "    local lo = math.max(0, hi - 99, stop + 1)\n"
    "    local part = redis.call('LRANGE', dk, lo, hi)\n"
    "    for j = #part, 1, -1 do\n"
    "      if set[part[j]] then found = lo + j - 1 break end\n"
    "    end\n"
    "    hi = lo - 1\n"
    "  end\n"
    "  if not found then\n"
    "    local part = redis.call('LRANGE', dk, off, off + " XSTR(ANCHOR_WINDOW) " - 1)\n"
    "    for j = 1, #part do\n"
    "      if part[j] == ARGV[#ARGV] then found = off + j - 1 break end\n"
    "    end\n"
    "  end\n"
    "  if found then off = found + 1 else lost = 1; off = math.max(off - others, 0) end\n"
    "end\n"
    "local out, bytes, max, budget = {}, 0, tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "while #out < max do\n"
    "  local want = math.min(100, max - #out)\n"
    "  local part = redis.call('LRANGE', dk, off + #out, off + #out + want - 1)\n"
    "  for j = 1, #part do\n"
    "    if #out > 0 and bytes + #part[j] > budget then\n"
    "      return {c, rm, off, lost, redis.call('LLEN', dk), out}\n"
    "    end\n"
    "    out[#out + 1] = part[j]\n"
    "    bytes = bytes + #part[j]\n"
    "  end\n"
    "  if #part < want then break end\n"
    "end\n"
    "return {c, rm, off, lost, redis.call('LLEN', dk), out}\n";

/* KEYS: dead, stats, q0..q3 (critical..low).
 * ARGV: mode ('purge' | 'requeue'), tombstone, dead_lettered and removed
 *       when the records' positions were read, records we removed since,
 *       then per record -- purge: position, record; requeue: position,
 *       record, queue digit, job.
 * Returns per record 1 = removed (and, requeue, pushed), 0 = gone (removed
 * by someone else), 2 = not found within SHIFT_SEARCH (may still be there). */
static const char modify_src[] =
    "local dk, sk = KEYS[1], KEYS[2]\n"
    "local st = redis.call('HMGET', sk, 'dead_lettered', 'requeued', 'dead_purged')\n"
    "local shift = (tonumber(st[1]) or 0) - tonumber(ARGV[3])\n"
    "local others = (tonumber(st[2]) or 0) + (tonumber(st[3]) or 0) - tonumber(ARGV[4]) - tonumber(ARGV[5])\n"
    "local reach = math.min(math.max(others, 0), " XSTR(SHIFT_SEARCH) ")\n"
    "local requeue = ARGV[1] == 'requeue'\n"
    "local step = requeue and 4 or 2\n"
    "local tomb, marked, done, res = ARGV[2], 0, 0, {}\n"
    "for i = 6, #ARGV, step do\n"
    "  local want, rec = tonumber(ARGV[i]) + shift, ARGV[i + 1]\n"
    "  local at\n"
    "  if want >= 0 and redis.call('LINDEX', dk, want) == rec then at = want end\n"
    "  local hi = math.min(want - 1, redis.call('LLEN', dk) - 1)\n"
    "  while not at and hi >= 0 and hi >= want - reach do\n"
    "    local lo = math.max(0, hi - 99, want - reach)\n"
    "    local part = redis.call('LRANGE', dk, lo, hi)\n"
    "    for j = #part, 1, -1 do\n"
    "      if part[j] == rec then at = lo + j - 1 break end\n"
    "    end\n"
    "    hi = lo - 1\n"
    "  end\n"
    "  if at then\n"
    "    shift = shift + at - want\n"
    "    redis.call('LSET', dk, at, tomb)\n"
    "    marked = marked + 1\n"
    "    done = done + 1\n"
    "    if requeue then redis.call('RPUSH', KEYS[3 + tonumber(ARGV[i + 2])], ARGV[i + 3]) end\n"
    "    res[#res + 1] = 1\n"
    "  elseif others > " XSTR(SHIFT_SEARCH) " then\n"
    "    res[#res + 1] = 2\n"
    "  else\n"
    "    res[#res + 1] = 0\n"
    "  end\n"
    "end\n"
    "if marked > 0 then redis.call('LREM', dk, marked, tomb) end\n"
    "if done > 0 then redis.call('HINCRBY', sk, requeue and 'requeued' or 'dead_purged', done) end\n"
    "return res\n";

/* ---- command state -------------------------------------------------------- */

enum { SUB_LIST, SUB_SHOW, SUB_REQUEUE, SUB_PURGE };
static const char *const sub_names[] = {"list", "show", "requeue", "purge"};

/* Why a matching record was not requeued. */
enum { SKIP_UNREADABLE, SKIP_NO_JOB, SKIP_TOO_BIG, SKIP_UNDECODABLE, SKIP_N };
static const char *const skip_names[SKIP_N] = {
    "not a dead-letter record", "no job in the record", "job larger than max_job_bytes",
    "undecodable job"};
static const char *const skip_plurals[SKIP_N] = {
    "not dead-letter records", "no job in the records", "jobs larger than max_job_bytes",
    "undecodable jobs"};

typedef struct dlq_ctx {
    const aq_config *cfg;
    redisContext *c;
    aq_keys k;
    int sub;
    dlq_filter flt;
    long long limit;        /* 0 = no limit */
    long long index;        /* show INDEX; 0 = none */
    int json, raw, dry_run, all, yes;
    int purge_go;           /* purge may delete: (a filter or --all) and --yes */
    long long now_ms;       /* Redis' clock at the start: ages and age filters */
    int idx_width;          /* digits of the list length at the first fetch */
    char tomb[64];
    /* results */
    long long scanned, matched, shown, done, gone, missed, skipped[SKIP_N], skip_lines;
    long long llen;         /* the list's length at the last fetch */
    int lost, progress_tty;
    long long progress_next;
    aq_buf argbuf;          /* requeue: re-encoded jobs of one batch */
} dlq_ctx;

/* One record read from the list, parsed and (if possible) decoded. */
typedef struct dlq_entry {
    long long index;        /* 1-based position when read */
    const char *bytes;      /* the record as stored (points into a reply) */
    size_t len;
    int parsed;
    dlq_record rec;
    char perr[160];         /* why it did not parse */
    int job_ok;
    aq_job job;
    char jerr[256];         /* why the job did not decode */
    int has_id;             /* the job's event_id, also when it does not decode */
    uint8_t id[16];
} dlq_entry;

static void entry_load(dlq_entry *e, long long index, const char *bytes, size_t len)
{
    e->index = index;
    e->bytes = bytes;
    e->len = len;
    e->parsed = dlq_record_parse(bytes, len, &e->rec, e->perr, sizeof e->perr) == 0;
    e->job_ok = 0;
    e->has_id = 0;
    e->jerr[0] = '\0';
    if (!e->parsed)
        return;
    if (!e->rec.job) {
        snprintf(e->jerr, sizeof e->jerr, "the record has no job");
        return;
    }
    /* For display the size limit is the job's own: a job refused for its
     * size can still be shown decoded. requeue checks max_job_bytes. */
    e->job_ok = codec_decode(e->rec.job, e->rec.job_len, e->rec.job_len, &e->job, e->jerr,
                             sizeof e->jerr) == 0;
    /* A job dead-lettered for failing to decode usually still names its
     * event: show it, so the operator can find the producer's record. */
    if (e->job_ok) {
        memcpy(e->id, e->job.id, sizeof e->id);
        e->has_id = 1;
    } else {
        e->has_id = dlq_job_event_id(e->rec.job, e->rec.job_len, e->id);
    }
}

static int entry_matches(const dlq_ctx *x, const dlq_entry *e)
{
    aq_job id_only;   /* --event-id also finds a job that does not decode */

    if (!e->job_ok && e->has_id) {
        memset(&id_only, 0, sizeof id_only);
        memcpy(id_only.id, e->id, sizeof id_only.id);
    }
    return dlq_filter_match(&x->flt, e->parsed ? &e->rec : NULL,
                            e->job_ok ? &e->job : e->has_id ? &id_only : NULL, x->now_ms);
}

static void put_str_or_dash(FILE *f, const char *p, size_t len, size_t max_cols)
{
    if (p)
        ctl_put_text(f, p, len, max_cols);
    else
        fputc('-', f);
}

/* ---- output: list --------------------------------------------------------- */

/* Two lines per record (80 columns): a UUID (36) and an ISO time (20) leave
 * no room for the reason on the same line, and the reason is what one reads
 * first, so it gets a line of its own:
 *     3 2026-01-01T12:00:00Z normal     3 0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70
 *       5m ago, 23514: postgres rejected the row 3 times: new row for relat...
 */
static void list_header(const dlq_ctx *x)
{
    printf("%*s %-20s %-8s %3s %s\n", x->idx_width, "#", "FAILED AT (UTC)", "PRIORITY", "ATT",
           "EVENT ID");
    printf("%*s %s\n", x->idx_width, "", "AGE, SQLSTATE: REASON");
}

static void list_line(const dlq_ctx *x, const dlq_entry *e)
{
    char t[40] = "-", att[24] = "-", id[40] = "-", age[16], lead[64];
    const dlq_record *r = &e->rec;
    int w = x->idx_width;

    if (!e->parsed) {
        printf("%*lld %-20s %-8s %3s %s\n", w, e->index, "-", "-", "-", "-");
        snprintf(lead, sizeof lead, "%*s not a dead-letter record: ", w, "");
        fputs(lead, stdout);
        ctl_put_text(stdout, e->perr, strlen(e->perr), 80 - strlen(lead));
        putchar('\n');
        return;
    }
    if (r->has_failed_at)
        ctl_fmt_iso(t, sizeof t, r->failed_at_ms, 0);
    if (r->has_attempts)
        snprintf(att, sizeof att, "%lld", r->attempts);
    if (e->has_id)
        uuid_format(e->id, id);
    printf("%*lld %-20s ", w, e->index, t);
    size_t pc = 1;
    if (r->priority)
        pc = ctl_put_text(stdout, r->priority, r->priority_len, 8);
    else
        fputc('-', stdout);
    printf("%*s %3s %s\n", (int)(8 - pc), "", att, id);

    ctl_fmt_age_short(age, sizeof age, r->has_failed_at ? x->now_ms - r->failed_at_ms : -1);
    int n = snprintf(lead, sizeof lead, "%*s %s ago", w, "", age);
    fputs(lead, stdout);
    if (r->sqlstate) {
        fputs(", ", stdout);
        n += 2 + (int)ctl_put_text(stdout, r->sqlstate, r->sqlstate_len, 8);
    }
    fputs(": ", stdout);
    n += 2;
    put_str_or_dash(stdout, r->reason, r->reason_len, n < 78 ? (size_t)(80 - n) : 2);
    putchar('\n');
}

static void json_kv_str(const char *key, const char *p, size_t len, int comma)
{
    printf("%s\"%s\":", comma ? "," : "", key);
    if (p)
        ctl_json_str(stdout, p, len);
    else
        printf("null");
}

/* The fields list --json and show --json share. */
static void json_entry_common(const dlq_ctx *x, const dlq_entry *e)
{
    const dlq_record *r = &e->rec;
    char t[40], id[40];

    printf("{\"index\":%lld", e->index);
    if (!e->parsed) {
        printf(",\"error\":");
        char msg[200];
        snprintf(msg, sizeof msg, "not a dead-letter record: %s", e->perr);
        ctl_json_str(stdout, msg, strlen(msg));
        printf(",\"record_bytes\":%zu", e->len);
        return;
    }
    if (r->has_failed_at) {
        ctl_fmt_iso(t, sizeof t, r->failed_at_ms, 1);
        printf(",\"failed_at_ms\":%lld,\"failed_at\":\"%s\",\"age_ms\":%lld", r->failed_at_ms, t,
               x->now_ms - r->failed_at_ms);
    } else {
        printf(",\"failed_at_ms\":null,\"failed_at\":null,\"age_ms\":null");
    }
    json_kv_str("priority", r->priority, r->priority_len, 1);
    if (r->has_attempts)
        printf(",\"attempts\":%lld", r->attempts);
    else
        printf(",\"attempts\":null");
    if (e->has_id) {
        uuid_format(e->id, id);
        printf(",\"event_id\":\"%s\"", id);
    } else {
        printf(",\"event_id\":null");
    }
    json_kv_str("reason", r->reason, r->reason_len, 1);
    json_kv_str("sqlstate", r->sqlstate, r->sqlstate_len, 1);
    json_kv_str("worker", r->worker, r->worker_len, 1);
    if (r->job)
        printf(",\"job_bytes\":%zu", r->job_len);
    else
        printf(",\"job_bytes\":null");
}

/* ---- output: show --------------------------------------------------------- */

/* Microseconds -> "2026-01-01T00:00:00.000007Z". */
static void fmt_iso_us(char *out, size_t n, long long us)
{
    char base[40];
    ctl_fmt_iso(base, sizeof base, us / 1000000 * 1000, 0); /* ...T00:00:00Z */
    snprintf(out, n, "%.19s.%06lldZ", base, us % 1000000);
}

static void hex_dump(const char *p, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    for (size_t off = 0; off < n; off += 16) {
        printf("  %08zx  ", off);
        for (size_t i = 0; i < 16; i++) {
            if (off + i < n)
                printf("%02x ", (unsigned char)p[off + i]);
            else
                printf("   ");
            if (i == 7)
                putchar(' ');
        }
        printf(" |");
        for (size_t i = 0; i < 16 && off + i < n; i++) {
            unsigned char b = (unsigned char)p[off + i];
            putchar(b >= 0x20 && b < 0x7f ? b : '.');
        }
        printf("|\n");
    }
    if (len > n)
        printf("  ... %zu more bytes (--raw writes them all)\n", len - n);
}

static void show_value(const dlq_value *v)
{
    switch (v->type) {
    case DLQ_NIL: printf("nil"); break;
    case DLQ_BOOL: printf("%s", v->i ? "true" : "false"); break;
    case DLQ_INT: printf("%lld", v->i); break;
    case DLQ_FLOAT: printf("%.17g", v->d); break;
    case DLQ_STR: ctl_json_str(stdout, v->s, v->len); break;
    case DLQ_BIN: printf("(%zu bytes, msgpack bin)", v->len); break;
    }
}

static int is_known_key(const dlq_field *f)
{
    static const char *const known[] = {"job", "reason", "attempts", "failed_at", "priority",
                                        "worker", "sqlstate"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (f->klen == strlen(known[i]) && memcmp(f->key, known[i], f->klen) == 0)
            return 1;
    return 0;
}

static void show_job_text(const aq_job *j)
{
    char id[40], t[64];
    uuid_format(j->id, id);
    fmt_iso_us(t, sizeof t, j->occurred_at_us);
    printf("  %-12s %u\n", "v", j->version);
    printf("  %-12s %s\n", "event_id", id);
    printf("  %-12s %s (%lld us)\n", "occurred_at", t, (long long)j->occurred_at_us);
    printf("  %-12s %s\n", "priority", codec_priority_name(j->priority));
    printf("  %-12s %u\n", "attempts", j->attempts);
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        if (!j->f[f].p)
            continue;
        printf("  %-12s ", codec_field_key((auditq_field)f));
        ctl_json_str(stdout, j->f[f].p, j->f[f].len);
        putchar('\n');
    }
}

static void show_text(const dlq_ctx *x, const dlq_entry *e)
{
    const dlq_record *r = &e->rec;
    char t[40], age[32];

    printf("dead letter #%lld\n", e->index);
    if (!e->parsed) {
        printf("  not a dead-letter record: %s\n", e->perr);
        printf("record (%zu bytes):\n", e->len);
        hex_dump(e->bytes, e->len, 256);
        return;
    }
    if (r->has_failed_at) {
        ctl_fmt_iso(t, sizeof t, r->failed_at_ms, 1);
        ctl_fmt_age(age, sizeof age, x->now_ms - r->failed_at_ms);
        printf("  %-12s %s (%s ago)\n", "failed_at", t, age);
    } else {
        printf("  %-12s -\n", "failed_at");
    }
    printf("  %-12s ", "reason");
    put_str_or_dash(stdout, r->reason, r->reason_len, (size_t)-1);
    printf("\n  %-12s ", "sqlstate");
    put_str_or_dash(stdout, r->sqlstate, r->sqlstate_len, 64);
    printf("\n  %-12s ", "attempts");
    if (r->has_attempts)
        printf("%lld", r->attempts);
    else
        putchar('-');
    printf("\n  %-12s ", "priority");
    put_str_or_dash(stdout, r->priority, r->priority_len, 64);
    printf("\n  %-12s ", "worker");
    put_str_or_dash(stdout, r->worker, r->worker_len, 300);
    putchar('\n');
    for (int i = 0; i < r->nf; i++) {
        if (is_known_key(&r->f[i]))
            continue;
        printf("  ");
        size_t kc = ctl_put_text(stdout, r->f[i].key, r->f[i].klen, 40);
        printf("%*s ", kc < 12 ? (int)(12 - kc) : 0, "");
        show_value(&r->f[i].v);
        putchar('\n');
    }
    if (!r->job) {
        printf("  %-12s -\n", "job");
        return;
    }
    printf("  %-12s %zu bytes (msgpack %s)\n", "job", r->job_len, r->job_is_str ? "str" : "bin");
    if (e->job_ok) {
        printf("job:\n");
        show_job_text(&e->job);
    } else {
        printf("job: undecodable: %s\n", e->jerr);
        hex_dump(r->job, r->job_len, 256);
    }
}

static void json_b64(const char *p, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)p;
    char q[4];

    putchar('"');
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < len ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < len ? u[i + 2] : 0);
        q[0] = tbl[v >> 18 & 63];
        q[1] = tbl[v >> 12 & 63];
        q[2] = i + 1 < len ? tbl[v >> 6 & 63] : '=';
        q[3] = i + 2 < len ? tbl[v & 63] : '=';
        fwrite(q, 1, 4, stdout);
    }
    putchar('"');
}

static void json_value(const dlq_value *v)
{
    switch (v->type) {
    case DLQ_NIL: printf("null"); break;
    case DLQ_BOOL: printf("%s", v->i ? "true" : "false"); break;
    case DLQ_INT: printf("%lld", v->i); break;
    case DLQ_FLOAT: printf("%.17g", v->d); break;
    case DLQ_STR: ctl_json_str(stdout, v->s, v->len); break;
    case DLQ_BIN: json_b64(v->s, v->len); break;
    }
}

static void show_json(const dlq_ctx *x, const dlq_entry *e)
{
    const dlq_record *r = &e->rec;

    json_entry_common(x, e);
    if (!e->parsed) {
        printf(",\"record_base64\":");
        json_b64(e->bytes, e->len);
        putchar('}');
        return;
    }
    printf(",\"extra\":{");
    int first = 1;
    for (int i = 0; i < r->nf; i++) {
        if (is_known_key(&r->f[i]))
            continue;
        printf("%s", first ? "" : ",");
        ctl_json_str(stdout, r->f[i].key, r->f[i].klen);
        putchar(':');
        json_value(&r->f[i].v);
        first = 0;
    }
    putchar('}');
    if (r->job) {
        printf(",\"job_encoding\":\"%s\",\"job_base64\":", r->job_is_str ? "str" : "bin");
        json_b64(r->job, r->job_len);
    }
    if (e->job_ok) {
        const aq_job *j = &e->job;
        char id[40], t[64];
        uuid_format(j->id, id);
        fmt_iso_us(t, sizeof t, j->occurred_at_us);
        printf(",\"job\":{\"v\":%u,\"event_id\":\"%s\",\"occurred_at_us\":%lld,\"occurred_at\":\"%s\","
               "\"priority\":\"%s\",\"attempts\":%u",
               j->version, id, (long long)j->occurred_at_us, t, codec_priority_name(j->priority),
               j->attempts);
        for (int f = 1; f < AUDITQ_FIELD_COUNT; f++)
            if (j->f[f].p)
                json_kv_str(codec_field_key((auditq_field)f), j->f[f].p, j->f[f].len, 1);
        printf("},\"job_error\":null}");
    } else {
        printf(",\"job\":null,\"job_error\":");
        ctl_json_str(stdout, e->jerr, strlen(e->jerr));
        putchar('}');
    }
}

/* ---- scanning ------------------------------------------------------------- */

static redisReply *eval(dlq_ctx *x, const char *src, int nkeys, int argc, const char **argv,
                        size_t *argl)
{
    char nk[8];
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVAL";
    argl[0] = 4;
    argv[1] = src;
    argl[1] = strlen(src);
    argv[2] = nk;
    argl[2] = strlen(nk);
    return redisCommandArgv(x->c, argc, argv, argl);
}

static int redis_fail(dlq_ctx *x, redisReply *r, const char *what)
{
    char why[300];
    /* An ACL refusal says which user lacks what (dlq requeue/purge need the
     * admin rules of docs/SECURITY.md). */
    fprintf(stderr, "auditqctl dlq %s: %s failed: %s\n", sub_names[x->sub], what,
            r ? (r->type == REDIS_REPLY_ERROR
                     ? ctl_redis_why(strcmp(what, "LINDEX") == 0 ? NULL : "the dlq script", r->str, why, sizeof why)
                     : "unexpected reply")
              : (x->c->errstr[0] ? x->c->errstr : "connection lost"));
    if (r)
        freeReplyObject(r);
    return -1;
}

typedef struct scanner {
    long long base;         /* next offset if the list did not change */
    char dl[24], rm[24];    /* dead_lettered and requeued + dead_purged at the
                             * last fetch; "" before the first */
    char ours[24];          /* records we removed from the previous chunk */
    aq_buf anchor[ANCHORS]; /* the last records we left in the list, oldest first */
    int nanchors;
    redisReply *reply;      /* the current chunk's reply */
    redisReply *records;    /* its records */
    long long off;          /* position of the chunk's first record */
} scanner;

/* Fetches the next chunk into s. Returns 1 with records, 0 at the end, -1 on
 * error (printed). */
static int scan_next(dlq_ctx *x, scanner *s)
{
    char sbase[24], smax[16], sbytes[16];
    const char *argv[3 + 8 + ANCHORS];
    size_t argl[3 + 8 + ANCHORS];

    if (s->reply) {
        freeReplyObject(s->reply);
        s->reply = NULL;
    }
    snprintf(sbase, sizeof sbase, "%lld", s->base);
    snprintf(smax, sizeof smax, "%d", CHUNK_RECORDS);
    snprintf(sbytes, sizeof sbytes, "%d", CHUNK_BYTES);
    if (!s->ours[0])
        snprintf(s->ours, sizeof s->ours, "0");
    const char *v[8] = {x->k.dead, x->k.stats, sbase, s->dl, s->rm, s->ours, smax, sbytes};
    for (int i = 0; i < 8; i++) {
        argv[3 + i] = v[i];
        argl[3 + i] = strlen(v[i]);
    }
    for (int i = 0; i < s->nanchors; i++) {
        argv[11 + i] = s->anchor[i].data;
        argl[11 + i] = s->anchor[i].len;
    }
    redisReply *r = eval(x, fetch_src, 2, 11 + s->nanchors, argv, argl);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
        r->element[5]->type != REDIS_REPLY_ARRAY)
        return redis_fail(x, r, "reading the dead list");
    s->reply = r;
    s->records = r->element[5];
    snprintf(s->dl, sizeof s->dl, "%lld", r->element[0]->integer);
    snprintf(s->rm, sizeof s->rm, "%lld", r->element[1]->integer);
    s->off = r->element[2]->integer;
    if (r->element[3]->integer)
        x->lost = 1;
    x->llen = r->element[4]->integer;
    if (x->idx_width == 0) {
        long long llen = x->llen;
        for (x->idx_width = 1; llen >= 10; llen /= 10)
            x->idx_width++;
    }
    return s->records->elements > 0;
}

/* After a chunk: `removed` of its records were removed by us (flags 1);
 * those with flag 0 are still in the list and become the anchors, after
 * the older ones. */
static int scan_advance(scanner *s, size_t removed, const char *removed_flags)
{
    const redisReply *recs = s->records;
    size_t kept[ANCHORS], nk = 0;

    s->base = s->off + (long long)recs->elements - (long long)removed;
    snprintf(s->ours, sizeof s->ours, "%zu", removed);
    for (size_t i = recs->elements; i-- > 0 && nk < ANCHORS;)
        if (!removed_flags[i])
            kept[nk++] = i;
    /* Drop the oldest anchors to make room, then append, oldest first. */
    int drop = s->nanchors + (int)nk - ANCHORS;
    if (drop > 0) {
        for (int i = 0; i < s->nanchors - drop; i++) {
            aq_buf t = s->anchor[i];
            s->anchor[i] = s->anchor[i + drop];
            s->anchor[i + drop] = t;
        }
        s->nanchors -= drop;
    }
    for (size_t j = nk; j-- > 0;) {
        aq_buf *a = &s->anchor[s->nanchors];
        a->len = 0;
        if (aq_buf_append(a, recs->element[kept[j]]->str, recs->element[kept[j]]->len) != 0)
            return -1;
        s->nanchors++;
    }
    return 0;
}

static void scan_free(scanner *s)
{
    if (s->reply)
        freeReplyObject(s->reply);
    for (int i = 0; i < ANCHORS; i++)
        free(s->anchor[i].data);
}

static void progress(dlq_ctx *x, int final)
{
    if (x->sub != SUB_REQUEUE && x->sub != SUB_PURGE)
        return;
    if (x->dry_run || (x->sub == SUB_PURGE && !x->purge_go))
        return;
    const char *verb = x->sub == SUB_PURGE ? "purged" : "requeued";
    if (x->progress_tty) {
        if (final)
            fputs("\r\033[K", stderr);
        else
            fprintf(stderr, "\rauditqctl dlq %s: scanned %lld, %s %lld", sub_names[x->sub], x->scanned,
                    verb, x->done);
    } else if (!final && x->scanned >= x->progress_next) {
        fprintf(stderr, "auditqctl dlq %s: scanned %lld, %s %lld\n", sub_names[x->sub], x->scanned, verb,
                x->done);
        while (x->progress_next <= x->scanned)
            x->progress_next += PROGRESS_EVERY;
    }
}

/* ---- requeue / purge batches ---------------------------------------------- */

/* One record waiting in a batch: its position in the chunk, and (requeue)
 * where its re-encoded job lies in x->argbuf. */
typedef struct pending {
    size_t chunk_i;
    int prio;
    size_t job_off, job_len;
} pending;

typedef struct batch {
    pending p[BATCH_RECORDS];
    int n;
    size_t bytes;
    char *removed;          /* per chunk record: 1 removed by us, 2 not there
                             * (gone, or not found), 0 still in the list */
    size_t removed_n;
} batch;

/* Runs the modify script on the pending records of one chunk. */
static int batch_flush(dlq_ctx *x, scanner *s, batch *b)
{
    enum { FIXED = 3 + 6 + 5 };
    char ours[24];
    size_t argc = FIXED + (size_t)b->n * (x->sub == SUB_REQUEUE ? 4 : 2);
    const char **argv = calloc(argc, sizeof *argv);
    size_t *argl = calloc(argc, sizeof *argl);
    char (*pos)[24] = calloc((size_t)b->n + 1, sizeof *pos);
    static const char *const digits[AQ_PRIORITIES] = {"0", "1", "2", "3"};
    int rc = -1;

    if (b->n == 0) {
        rc = 0;
        goto out;
    }
    if (!argv || !argl || !pos) {
        fprintf(stderr, "auditqctl dlq %s: out of memory\n", sub_names[x->sub]);
        goto out;
    }
    snprintf(ours, sizeof ours, "%zu", b->removed_n);
    const char *fixed[11] = {x->k.dead, x->k.stats, x->k.queue[0], x->k.queue[1], x->k.queue[2],
                             x->k.queue[3], x->sub == SUB_REQUEUE ? "requeue" : "purge", x->tomb,
                             s->dl, s->rm, ours};
    for (int i = 0; i < 11; i++) {
        argv[3 + i] = fixed[i];
        argl[3 + i] = strlen(fixed[i]);
    }
    size_t a = FIXED;
    for (int i = 0; i < b->n; i++) {
        const pending *p = &b->p[i];
        const redisReply *rec = s->records->element[p->chunk_i];
        /* Its position now, as far as our own removals go: those earlier in
         * this chunk moved it left. The script adds the pushes. */
        size_t before = 0;
        for (size_t j = 0; j < p->chunk_i; j++)
            before += b->removed[j] == 1;
        snprintf(pos[i], sizeof pos[i], "%lld", s->off + (long long)p->chunk_i - (long long)before);
        argv[a] = pos[i];
        argl[a++] = strlen(pos[i]);
        argv[a] = rec->str;
        argl[a++] = rec->len;
        if (x->sub == SUB_REQUEUE) {
            argv[a] = digits[p->prio];
            argl[a++] = 1;
            argv[a] = x->argbuf.data + p->job_off;
            argl[a++] = p->job_len;
        }
    }
    redisReply *r = eval(x, modify_src, 6, (int)a, argv, argl);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)b->n) {
        redis_fail(x, r, x->sub == SUB_REQUEUE ? "requeueing" : "purging");
        goto out;
    }
    for (int i = 0; i < b->n; i++) {
        if (r->element[i]->integer == 1) {
            b->removed[b->p[i].chunk_i] = 1;
            b->removed_n++;
            x->done++;
        } else if (r->element[i]->integer == 2) {
            b->removed[b->p[i].chunk_i] = 2;
            x->missed++;
        } else {
            b->removed[b->p[i].chunk_i] = 2;  /* not an anchor: it is not there */
            x->gone++;
        }
    }
    freeReplyObject(r);
    rc = 0;
out:
    b->n = 0;
    b->bytes = 0;
    x->argbuf.len = 0;
    free(argv);
    free(argl);
    free(pos);
    return rc;
}

static void skip_record(dlq_ctx *x, const dlq_entry *e, int why, const char *detail)
{
    x->skipped[why]++;
    if (x->skip_lines++ < SKIP_LINES_MAX) {
        char id[40] = "-";
        if (e->has_id)
            uuid_format(e->id, id);
        printf("skipped #%lld (event %s): %s: ", e->index, id, skip_names[why]);
        ctl_put_text(stdout, detail, strlen(detail), 200);
        printf("; left in the dead list\n");
    }
}

/* Decides what requeue does with one matching record: returns 1 with *prio
 * and the re-encoded job appended to x->argbuf, or 0 after reporting the
 * skip. -1 on out of memory. */
static int requeue_prepare(dlq_ctx *x, const dlq_entry *e, int *prio, size_t *off, size_t *len)
{
    char detail[300];
    aq_job j;

    if (!e->parsed) {
        skip_record(x, e, SKIP_UNREADABLE, e->perr);
        return 0;
    }
    if (!e->rec.job) {
        skip_record(x, e, SKIP_NO_JOB, "the record has no job field");
        return 0;
    }
    if (e->rec.job_len > (size_t)x->cfg->max_job_bytes) {
        snprintf(detail, sizeof detail, "job is %zu bytes, larger than max_job_bytes=%d (a worker "
                 "would refuse it; raise max_job_bytes first)", e->rec.job_len, x->cfg->max_job_bytes);
        skip_record(x, e, SKIP_TOO_BIG, detail);
        return 0;
    }
    if (!e->job_ok) {
        skip_record(x, e, SKIP_UNDECODABLE, e->jerr);
        return 0;
    }
    j = e->job;
    j.attempts = 0;
    /* The record's priority names the queue the job came from (or its own
     * priority); it is where a replay belongs (docs/PROTOCOL.md 8). */
    *prio = e->rec.prio >= 0 ? e->rec.prio : j.priority;
    *off = x->argbuf.len;
    if (codec_encode(&j, &x->argbuf) != 0)
        return -1;
    *len = x->argbuf.len - *off;
    return 1;
}

/* ---- the scan loop shared by every subcommand ----------------------------- */

/* Handles one matching record. Returns 0, 1 to stop the scan, -1 on error. */
static int on_match(dlq_ctx *x, scanner *s, batch *b, size_t i, const dlq_entry *e)
{
    if (x->limit && x->matched > x->limit) {
        /* Over the limit: list keeps counting, the others are done. */
        return x->sub == SUB_LIST ? 0 : 1;
    }
    switch (x->sub) {
    case SUB_LIST:
        if (x->json) {
            printf("%s\n", x->shown ? "," : "");
            json_entry_common(x, e);
            putchar('}');
        } else {
            if (x->shown == 0)
                list_header(x);
            list_line(x, e);
        }
        x->shown++;
        return 0;
    case SUB_SHOW:
        if (x->raw) {
            if (!e->parsed || !e->rec.job) {
                fprintf(stderr, "auditqctl dlq show: dead letter #%lld has no job to write (%s)\n",
                        e->index, e->parsed ? "no job field" : e->perr);
                return -1;
            }
            fwrite(e->rec.job, 1, e->rec.job_len, stdout);
            x->shown++;
            return 1;
        }
        if (x->json) {
            printf("%s\n", x->shown ? "," : "");
            show_json(x, e);
        } else {
            if (x->shown)
                putchar('\n');
            show_text(x, e);
        }
        x->shown++;
        return 0;
    case SUB_PURGE:
        if (!x->purge_go)
            return 0;  /* counting only */
        if (b->n == BATCH_RECORDS || b->bytes + e->len > BATCH_BYTES)
            if (batch_flush(x, s, b) != 0)
                return -1;
        b->p[b->n].chunk_i = i;
        b->n++;
        b->bytes += e->len;
        return 0;
    case SUB_REQUEUE: {
        int prio = 0;
        size_t off = 0, len = 0;
        if (b->n == BATCH_RECORDS || b->bytes + e->len * 2 > BATCH_BYTES)
            if (batch_flush(x, s, b) != 0)
                return -1;
        int ok = requeue_prepare(x, e, &prio, &off, &len);
        if (ok < 0) {
            fprintf(stderr, "auditqctl dlq requeue: out of memory\n");
            return -1;
        }
        if (ok == 0)
            return 0;
        if (x->dry_run) {
            x->argbuf.len = 0;
            if (x->shown++ == 0)
                list_header(x);
            list_line(x, e);
            x->done++;
            return 0;
        }
        b->p[b->n] = (pending){i, prio, off, len};
        b->n++;
        b->bytes += e->len + len;
        return 0;
    }
    }
    return 0;
}

static int scan(dlq_ctx *x)
{
    scanner s;
    batch b;
    int rc = -1, more;

    memset(&s, 0, sizeof s);
    memset(&b, 0, sizeof b);
    b.removed = calloc(CHUNK_RECORDS, 1);
    if (!b.removed) {
        fprintf(stderr, "auditqctl dlq: out of memory\n");
        return -1;
    }
    while ((more = scan_next(x, &s)) > 0) {
        int stop = 0;

        memset(b.removed, 0, CHUNK_RECORDS);
        b.removed_n = 0;
        for (size_t i = 0; i < s.records->elements && !stop; i++) {
            const redisReply *el = s.records->element[i];
            dlq_entry e;

            x->scanned++;
            entry_load(&e, s.off + (long long)i + 1, el->str, el->len);
            if (!entry_matches(x, &e))
                continue;
            x->matched++;
            int r = on_match(x, &s, &b, i, &e);
            if (r < 0)
                goto out;
            stop = r == 1;
        }
        if (batch_flush(x, &s, &b) != 0)
            goto out;
        if (scan_advance(&s, b.removed_n, b.removed) != 0) {
            fprintf(stderr, "auditqctl dlq: out of memory\n");
            goto out;
        }
        progress(x, 0);
        if (stop)
            break;
    }
    if (more < 0)
        goto out;
    rc = 0;
out:
    progress(x, 1);
    free(b.removed);
    free(x->argbuf.data);
    x->argbuf = (aq_buf){0};
    scan_free(&s);
    return rc;
}

/* ---- subcommands ---------------------------------------------------------- */

static int show_index(dlq_ctx *x)
{
    redisReply *r = redisCommand(x->c, "LINDEX %s %lld", x->k.dead, x->index - 1);
    dlq_entry e;

    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        redis_fail(x, r, "LINDEX");
        return CTL_FAILED;
    }
    if (r->type == REDIS_REPLY_NIL) {
        redisReply *l = redisCommand(x->c, "LLEN %s", x->k.dead);
        fprintf(stderr, "auditqctl dlq show: there is no dead letter #%lld; the list holds %lld "
                "(see 'auditqctl dlq list')\n", x->index, l ? ctl_reply_ll(l) : 0);
        if (l)
            freeReplyObject(l);
        freeReplyObject(r);
        return CTL_FAILED;
    }
    x->idx_width = 1;
    entry_load(&e, x->index, r->str, r->len);
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
        show_json(x, &e);
        printf("\n]\n");
    } else {
        show_text(x, &e);
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
        const char *name = x->skipped[i] == 1 ? skip_names[i] : skip_plurals[i];
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
                "been missed or seen twice; run the command again\n", sub_names[x->sub]);
}

static const char *plural(long long n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static int run_sub(dlq_ctx *x)
{
    if (x->sub == SUB_SHOW && x->index > 0)
        return show_index(x);
    if (x->json && (x->sub == SUB_LIST || x->sub == SUB_SHOW))
        printf(x->sub == SUB_LIST ? "{\"records\":[" : "[");
    if (scan(x) != 0)
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
           O_DRY, O_ALL, O_YES };
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
        {NULL, 0, NULL, 0}};
    const char *sub;
    char err[256];
    int o;

    if (argc < 2)
        return usage_err(NULL, "%s", "give a subcommand: list, show, requeue or purge");
    sub = argv[1];
    for (x->sub = 0; x->sub < 4 && strcmp(sub_names[x->sub], sub) != 0; x->sub++)
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
    dlq_filter_init(&x.flt);
    if ((rc = parse_args(&x, argc, argv)) != CTL_OK)
        return rc;
    char cmd[16];
    snprintf(cmd, sizeof cmd, "dlq %s", sub_names[x.sub]);
    x.c = ctl_redis_open(cfg, cmd, &x.k, &rc);
    if (!x.c)
        return rc;
    if (ctl_redis_now_ms(x.c, &x.now_ms, err, sizeof err) != 0) {
        fprintf(stderr, "auditqctl dlq %s: %s\n", sub_names[x.sub], err);
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
    return rc;
}
