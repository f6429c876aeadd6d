/* ctl_dlq_scan.c -- `auditqctl dlq`'s Redis side: the fetch and modify
 * scripts, the scan that reads {ns}:dead in bounded chunks while others
 * change it, and the requeue/purge batches. The design (the offsets, the
 * anchors, removing a record by position and value): ctl_dlq.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_dlq.h"
#include "uuid7.h"

#define CHUNK_RECORDS 1000
#define CHUNK_BYTES (8 << 20)     /* per fetch, so 1000 huge records stay bounded */
#define BATCH_RECORDS 100         /* records per modify script call (bounds its run time) */
#define BATCH_BYTES (4 << 20)     /* argument bytes per modify script call */
#define ANCHORS 8                 /* last kept records remembered per chunk */
#define ANCHOR_SEARCH 20000       /* records searched left of a lost anchor */
#define ANCHOR_WINDOW 256         /* records searched right of it */
#define SHIFT_SEARCH 2000         /* records searched left of a moved record */
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

/* ---- records -------------------------------------------------------------- */

void dlq_entry_load(dlq_entry *e, long long index, const char *bytes, size_t len)
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

int dlq_redis_fail(dlq_ctx *x, redisReply *r, const char *what)
{
    char why[300];
    /* An ACL refusal says which user lacks what (dlq requeue/purge need the
     * admin rules of docs/SECURITY.md). */
    fprintf(stderr, "auditqctl dlq %s: %s failed: %s\n", dlq_sub_names[x->sub], what,
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
        return dlq_redis_fail(x, r, "reading the dead list");
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
            fprintf(stderr, "\rauditqctl dlq %s: scanned %lld, %s %lld", dlq_sub_names[x->sub], x->scanned,
                    verb, x->done);
    } else if (!final && x->scanned >= x->progress_next) {
        fprintf(stderr, "auditqctl dlq %s: scanned %lld, %s %lld\n", dlq_sub_names[x->sub], x->scanned, verb,
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
        fprintf(stderr, "auditqctl dlq %s: out of memory\n", dlq_sub_names[x->sub]);
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
        dlq_redis_fail(x, r, x->sub == SUB_REQUEUE ? "requeueing" : "purging");
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
        printf("skipped #%lld (event %s): %s: ", e->index, id, dlq_skip_names[why]);
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
            dlq_json_entry(x, e);
            putchar('}');
        } else {
            if (x->shown == 0)
                dlq_list_header(x);
            dlq_list_line(x, e);
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
            dlq_show_json(x, e);
        } else {
            if (x->shown)
                putchar('\n');
            dlq_show_text(x, e);
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
                dlq_list_header(x);
            dlq_list_line(x, e);
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

int dlq_scan(dlq_ctx *x)
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
            dlq_entry_load(&e, s.off + (long long)i + 1, el->str, el->len);
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
