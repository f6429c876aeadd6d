/* ctl_dlq_out.c -- what `auditqctl dlq list` and `dlq show` print, as
 * text for a terminal (untrusted bytes made safe by ctl_put_text) or as
 * JSON (--json). */
#include <stdio.h>
#include <string.h>

#include "ctl_common.h"
#include "ctl_dlq.h"
#include "uuid7.h"

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
void dlq_list_header(const dlq_ctx *x)
{
    printf("%*s %-20s %-8s %3s %s\n", x->idx_width, "#", "FAILED AT (UTC)", "PRIORITY", "ATT",
           "EVENT ID");
    printf("%*s %s\n", x->idx_width, "", "AGE, SQLSTATE: REASON");
}

void dlq_list_line(const dlq_ctx *x, const dlq_entry *e)
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
void dlq_json_entry(const dlq_ctx *x, const dlq_entry *e)
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

void dlq_show_text(const dlq_ctx *x, const dlq_entry *e)
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

void dlq_show_json(const dlq_ctx *x, const dlq_entry *e)
{
    const dlq_record *r = &e->rec;

    dlq_json_entry(x, e);
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
