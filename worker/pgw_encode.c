/* pgw_encode.c -- the writer's encoders: COPY text fields and rows for
 * auditq_stage, and text[] array literal elements for the INSERT method
 * (contracts in pgw_internal.h; the writer is pgw.c).
 */
#include "pgw.h"
#include "pgw_internal.h"

#include <stdint.h>
#include <string.h>

#include "clockskew.h"
#include "uuid7.h"

/* ---- buffers and encoders ------------------------------------------------ */

/* 1 for the bytes COPY text format must escape. */
static const unsigned char copy_special[256] = {
    ['\0'] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\\'] = 1,
};

int pgw_copy_field(aq_buf *b, const char *p, size_t len)
{
    if (!p)
        return aq_buf_append(b, "\\N", 2);
    /* Worst case: every byte becomes a 4-byte \000. */
    if (len > SIZE_MAX / 4 || aq_buf_reserve(b, len * 4) < 0)
        return -1;
    char *o = b->data + b->len;
    size_t i = 0;
    while (i < len) {
        /* Copy the run of ordinary bytes in one go (most fields have no
         * special byte at all), then escape one byte. */
        size_t run = i;
        while (run < len && !copy_special[(unsigned char)p[run]])
            run++;
        memcpy(o, p + i, run - i);
        o += run - i;
        if (run == len)
            break;
        switch (p[run]) {
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        default: memcpy(o, "\\000", 4); o += 4; break;  /* NUL */
        }
        i = run + 1;
    }
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Decimal digits of v (any int64) into out; returns the length. */
static size_t fmt_i64(int64_t v, char out[24])
{
    char tmp[24];
    size_t n = 0, o = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[o++] = '-';
    while (n)
        out[o++] = tmp[--n];
    return o;
}

int pgw_copy_row(aq_buf *b, const aq_job *j, size_t n)
{
    char id[37];
    char ts[24];
    char num[24];
    const char *prio = codec_priority_name(j->priority);

    uuid_format(j->id, id);
    size_t numlen = fmt_i64((int64_t)n, num);
    size_t tslen = fmt_i64(j->occurred_at_us, ts);
    if (aq_buf_append(b, num, numlen) < 0 || aq_buf_append(b, "\t", 1) < 0 ||
        aq_buf_append(b, id, 36) < 0 || aq_buf_append(b, "\t", 1) < 0 ||
        aq_buf_append(b, ts, tslen) < 0 || aq_buf_append(b, "\t", 1) < 0)
        return -1;
    /* An out-of-range priority is sent as NULL so that the NOT NULL
     * constraint rejects that row (a data error), not the whole batch. */
    if (pgw_copy_field(b, prio, prio ? strlen(prio) : 0) < 0)
        return -1;
    for (int f = AUDITQ_TENANT_ID; f <= AUDITQ_METADATA; f++) {
        if (aq_buf_append(b, "\t", 1) < 0 ||
            pgw_copy_field(b, j->f[f].p, j->f[f].len) < 0)
            return -1;
    }
    /* clock_flag: NULL for a plain event (worker/clockskew.h). */
    const char *flag = clockskew_name(j->clock_flag);
    if (aq_buf_append(b, "\t", 1) < 0 || pgw_copy_field(b, flag, flag ? strlen(flag) : 0) < 0)
        return -1;
    return aq_buf_append(b, "\n", 1);
}

int pgw_array_elem(aq_buf *b, const char *p, size_t len)
{
    if (!p)
        return aq_buf_append(b, "NULL", 4);
    if (len > SIZE_MAX / 2 - 2 || aq_buf_reserve(b, len * 2 + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '"' || p[i] == '\\')
            *o++ = '\\';
        *o++ = p[i];
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

