/* ctl_dlq.h -- the parts of `auditqctl dlq` (internal to tools/).
 *
 *   ctl_dlq.c         the command: arguments, the subcommands, the summary
 *                     lines (DESIGN: bounded memory, the moving list,
 *                     removing a record)
 *   ctl_dlq_scan.c    the Redis side: the fetch and modify scripts, the
 *                     chunked scan, requeue/purge batches
 *   ctl_dlq_out.c     what list and show print (text and --json)
 *   ctl_dlq_record.c  reading one dead-letter record, the filters
 *                     (ctl_dlq_record.h, tested by tests/unit/test_dlq.c) */
#ifndef AQ_CTL_DLQ_H
#define AQ_CTL_DLQ_H
#include <stddef.h>
#include <stdint.h>

#include <hiredis.h>

#include "codec.h"
#include "config.h"
#include "ctl_dlq_record.h"
#include "keys.h"

#define SKIP_LINES_MAX 20         /* skipped records listed one by one */
#define PROGRESS_EVERY 10000      /* records between progress lines (not a TTY) */

enum { SUB_LIST, SUB_SHOW, SUB_REQUEUE, SUB_PURGE };
/* The subcommands' names, by SUB_*. */
extern const char *const dlq_sub_names[];

/* Why a matching record was not requeued. */
enum { SKIP_UNREADABLE, SKIP_NO_JOB, SKIP_TOO_BIG, SKIP_UNDECODABLE, SKIP_N };
/* Their names, one record each ("undecodable job"). */
extern const char *const dlq_skip_names[SKIP_N];

typedef struct dlq_ctx {
    const aq_config *cfg;
    redisContext *c;
    aq_keys k;
    int sub;
    int shard;              /* --shard N; -1 = every shard in turn */
    int nshards;            /* redis_shards */
    int shard_now;          /* the shard being done */
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

/* ---- ctl_dlq_scan.c ------------------------------------------------------- */

/* Fills e from the record bytes[0..len) read at 1-based position index:
 * parses it and decodes its job (bytes must outlive e). */
void dlq_entry_load(dlq_entry *e, long long index, const char *bytes, size_t len);

/* Reports a failed Redis call (what: the command). Frees r (may be NULL).
 * Returns -1. */
int dlq_redis_fail(dlq_ctx *x, redisReply *r, const char *what);

/* Reads the whole list chunk by chunk and hands each matching record to the
 * subcommand (list, show, requeue, purge), counting into x. 0, or -1
 * (reported). */
int dlq_scan(dlq_ctx *x);

/* ---- ctl_dlq_out.c -------------------------------------------------------- */

/* The two header lines of `dlq list`. */
void dlq_list_header(const dlq_ctx *x);

/* One record of `dlq list` (two lines, 80 columns). */
void dlq_list_line(const dlq_ctx *x, const dlq_entry *e);

/* The fields list --json and show --json share, from the opening '{' on
 * (the caller closes the object). */
void dlq_json_entry(const dlq_ctx *x, const dlq_entry *e);

/* One record of `dlq show`: every field and the decoded job. */
void dlq_show_text(const dlq_ctx *x, const dlq_entry *e);

/* One record of `dlq show --json`, as one JSON object. */
void dlq_show_json(const dlq_ctx *x, const dlq_entry *e);
#endif
