/* bench_util.c -- what every auditq-bench command uses: the clock, the
 * log-linear latency histogram, number and JSON formatting. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auditq.h"
#include "bench.h"
#include "text.h"

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

void json_lat(FILE *f, const lat_summary *s)
{
    fprintf(f, "{\"n\":%" PRIu64 ",\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f}",
            s->n, s->mean, s->p50, s->p90, s->p99, s->p999, s->max);
}
