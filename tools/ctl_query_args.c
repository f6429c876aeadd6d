/* ctl_query_args.c -- `auditqctl query`'s command line: the times it
 * accepts, the cursor token, the options, and the SQL of one page built
 * from them. Pure (no I/O), so tests/unit/test_query.c covers it whole.
 * The paging and the cursor's design: ctl_query.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl_query.h"
#include "text.h"
#include "uuid7.h"

/* ------------------------------------------------------------------ time */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil: exact for every year, no libc time zone involved). */
static int64_t q_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void q_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int q_days_in_month(int64_t y, int m)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/* Formats us as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, the format the server
 * sends, see Q_TS_SQL) into out. */
void q_format_time(int64_t us, char out[Q_TS_LEN])
{
    int64_t secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t frac = us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t sod = secs - days * 86400, y;
    int m, d;

    q_civil_from_days(days, &y, &m, &d);
    snprintf(out, Q_TS_LEN, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d,
             (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), (int)frac);
}

/* Reads exactly n digits at *p into *v, advancing *p. 0 or -1. */
static int q_digits(const char **p, int n, int64_t *v)
{
    int64_t x = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return 0;
}

/* Parses an ISO-8601 time: DATE, or DATE{T| }HH:MM[:SS[.f{1,6}]][OFFSET]
 * with OFFSET Z, +HH, +HHMM or +HH:MM (- likewise) and no offset meaning
 * UTC. The year has 4..max_year_digits (<= 5) digits: users type 4, rows
 * from the server may have 5. Returns 0 with *out set, or -1. */
int q_parse_iso(const char *s, int max_year_digits, int64_t *out)
{
    const char *p = s;
    int64_t y = 0, mo, d, h = 0, mi = 0, sec = 0, frac = 0, oh = 0, om = 0, v;
    int ydigits = 0, sign = 0;

    while (p[ydigits] >= '0' && p[ydigits] <= '9')
        ydigits++;
    if (ydigits < 4 || ydigits > max_year_digits || q_digits(&p, ydigits, &y) != 0 || y < 1)
        return -1;
    if (*p++ != '-' || q_digits(&p, 2, &mo) != 0 || *p++ != '-' || q_digits(&p, 2, &d) != 0)
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > q_days_in_month(y, (int)mo))
        return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (q_digits(&p, 2, &h) != 0 || *p++ != ':' || q_digits(&p, 2, &mi) != 0)
            return -1;
        if (*p == ':') {
            p++;
            if (q_digits(&p, 2, &sec) != 0)
                return -1;
            if (*p == '.' || *p == ',') {
                int n = 0;

                p++;
                while (p[n] >= '0' && p[n] <= '9')
                    n++;
                if (n < 1 || n > 6 || q_digits(&p, n, &frac) != 0)
                    return -1;
                for (; n < 6; n++)
                    frac *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return -1;
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            sign = *p++ == '+' ? 1 : -1;
            if (q_digits(&p, 2, &oh) != 0)
                return -1;
            if (*p == ':' && (p++, q_digits(&p, 2, &om) != 0))
                return -1;
            if (*p >= '0' && *p <= '9' && q_digits(&p, 2, &om) != 0)
                return -1;
            if (oh > 23 || om > 59)
                return -1;
        }
    }
    if (*p != '\0')
        return -1;
    v = ((q_days_from_civil(y, (int)mo, (int)d) * 86400 + h * 3600 + mi * 60 + sec)
         - sign * (oh * 3600 + om * 60)) * 1000000 + frac;
    *out = v;
    return 0;
}

/* Parses a --since/--until value: an ISO-8601 time, or an age before now_us
 * ("90s", "30m", "24h", "7d", "2w"). Returns 0 with *out set, or -1 with
 * the reason in err. */
int q_parse_time(const char *s, int64_t now_us, int64_t *out, char *err, size_t errlen)
{
    size_t n = strlen(s), digits = strspn(s, "0123456789");

    if (digits > 0 && digits + 1 == n && strchr("smhdw", s[n - 1]) != NULL) {
        static const int64_t unit_s[] = { 1, 60, 3600, 86400, 604800 };
        int64_t unit = unit_s[strchr("smhdw", s[n - 1]) - "smhdw"];
        int64_t v = 0;

        for (size_t i = 0; i < digits; i++) {
            v = v * 10 + (s[i] - '0');
            if (v > Q_AGE_MAX_S) {
                snprintf(err, errlen, "'%.64s': an age must be at most 100 years (36525d)", s);
                return -1;
            }
        }
        if (v * unit > Q_AGE_MAX_S) {
            snprintf(err, errlen, "'%.64s': an age must be at most 100 years (36525d)", s);
            return -1;
        }
        *out = now_us - v * unit * 1000000;
        return 0;
    }
    if (q_parse_iso(s, 4, out) != 0 || *out < Q_USER_MIN_US || *out > Q_USER_MAX_US) {
        snprintf(err, errlen, "'%.64s': not a time; use ISO-8601 (2024-07-19, "
                 "2024-07-19T12:00:00Z, 2024-07-19T14:00:00+02:00) or an age "
                 "before now (90s, 30m, 24h, 7d, 2w)", s);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ cursor */

const char q_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Low byte of FNV-1a 32 over the first 26 bytes: catches a mistyped token. */
uint8_t q_cursor_check(const uint8_t *b)
{
    uint32_t h = UINT32_C(2166136261);

    for (int i = 0; i < Q_CURSOR_BYTES - 1; i++) {
        h ^= b[i];
        h *= UINT32_C(16777619);
    }
    return (uint8_t)(h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24));
}

/* Writes the 36-character token of c plus NUL into out. */
void q_cursor_encode(const q_cursor *c, char out[Q_CURSOR_CHARS + 1])
{
    uint8_t b[Q_CURSOR_BYTES];
    uint64_t u = (uint64_t)c->us;

    b[0] = Q_CURSOR_VERSION;
    b[1] = c->desc ? Q_CURSOR_DESC : 0;
    for (int i = 0; i < 8; i++)
        b[2 + i] = (uint8_t)(u >> (56 - 8 * i));
    memcpy(b + 10, c->id, 16);
    b[26] = q_cursor_check(b);
    for (int i = 0, o = 0; i < Q_CURSOR_BYTES; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];

        out[o++] = q_b64[v >> 18 & 63];
        out[o++] = q_b64[v >> 12 & 63];
        out[o++] = q_b64[v >> 6 & 63];
        out[o++] = q_b64[v & 63];
    }
    out[Q_CURSOR_CHARS] = '\0';
}

/* Decodes a token made by q_cursor_encode. Returns 0, or -1 with the reason
 * in err. */
int q_cursor_decode(const char *s, q_cursor *c, char *err, size_t errlen)
{
    uint8_t b[Q_CURSOR_BYTES];
    size_t n = strlen(s);
    uint64_t u = 0;

    if (n != Q_CURSOR_CHARS) {
        snprintf(err, errlen, "it has %zu characters, a cursor has %d", n, Q_CURSOR_CHARS);
        return -1;
    }
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;

        for (size_t k = 0; k < 4; k++) {
            const char *pos = s[i + k] != '\0' ? strchr(q_b64, s[i + k]) : NULL;

            if (pos == NULL) {
                snprintf(err, errlen, "character %zu ('%c') is not in a cursor's alphabet "
                         "(A-Z a-z 0-9 - _)", i + k + 1,
                         s[i + k] > ' ' && s[i + k] < 127 ? s[i + k] : '?');
                return -1;
            }
            v = v << 6 | (uint32_t)(pos - q_b64);
        }
        b[i / 4 * 3] = (uint8_t)(v >> 16);
        b[i / 4 * 3 + 1] = (uint8_t)(v >> 8);
        b[i / 4 * 3 + 2] = (uint8_t)v;
    }
    if (b[26] != q_cursor_check(b)) {
        snprintf(err, errlen, "its check digit does not match (mistyped or truncated?)");
        return -1;
    }
    if (b[0] != Q_CURSOR_VERSION) {
        snprintf(err, errlen, "cursor version %d is not known to this auditqctl", b[0]);
        return -1;
    }
    if ((b[1] & ~Q_CURSOR_DESC) != 0) {
        snprintf(err, errlen, "unknown flags 0x%02x", b[1]);
        return -1;
    }
    for (int i = 0; i < 8; i++)
        u = u << 8 | b[2 + i];
    c->us = (int64_t)u;
    if (c->us < Q_USER_MIN_US || c->us > Q_ROW_MAX_US) {
        snprintf(err, errlen, "its time is out of range");
        return -1;
    }
    c->desc = (b[1] & Q_CURSOR_DESC) != 0;
    memcpy(c->id, b + 10, 16);
    return 0;
}

/* ------------------------------------------------------------------ options */

/* Parses a whole number in [lo, hi]. 0 or -1. */
int q_parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Turns an --action value ending in '*' into a LIKE pattern: the prefix
 * with \ % _ escaped (LIKE's default escape is \), then %. 0 or -1. */
static int q_action_pattern(const char *a, q_opts *o, char *err, size_t errlen)
{
    size_t n = strlen(a), j = 0;

    if (strchr(a, '*') != a + n - 1) {
        snprintf(err, errlen, "--action '%.64s': '*' may only end a prefix, as in 'user.*'", a);
        return -1;
    }
    if (n == 1) {
        snprintf(err, errlen, "--action '*': give a prefix before the '*', or leave --action out");
        return -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if (a[i] == '\\' || a[i] == '%' || a[i] == '_')
            o->action_like[j++] = '\\';
        o->action_like[j++] = a[i];
    }
    o->action_like[j++] = '%';
    o->action_like[j] = '\0';
    o->action_prefix = 1;
    return 0;
}

/* Applies one option that takes a value. 0, or -1 with err filled. */
static int q_apply(q_opts *o, const char *name, const char *v, int64_t now_us,
                   char *err, size_t errlen)
{
    char why[256];
    long long n;

    if (strlen(v) > Q_VALUE_MAX) {
        snprintf(err, errlen, "%s: the value is longer than %d bytes", name, Q_VALUE_MAX);
        return -1;
    }
    if (strcmp(name, "--tenant") == 0) {
        o->tenant = v;
    } else if (strcmp(name, "--actor") == 0) {
        o->actor = v;
    } else if (strcmp(name, "--action") == 0) {
        o->action = v;
        if (strchr(v, '*') != NULL && q_action_pattern(v, o, err, errlen) != 0)
            return -1;
    } else if (strcmp(name, "--entity") == 0) {
        const char *colon = strchr(v, ':');

        if (v[0] == '\0' || v[0] == ':') {
            snprintf(err, errlen, "--entity '%.64s': give TYPE or TYPE:ID, "
                     "e.g. --entity document:42", v);
            return -1;
        }
        memcpy(o->entity_buf, v, strlen(v) + 1);
        o->entity_type = o->entity_buf;
        if (colon != NULL) {
            o->entity_buf[colon - v] = '\0';
            o->entity_id = o->entity_buf + (colon - v) + 1;
        }
    } else if (strcmp(name, "--metadata") == 0) {
        const char *eq = strchr(v, '=');

        if (eq == NULL || eq == v) {
            snprintf(err, errlen, "--metadata '%.64s': give KEY=VALUE, e.g. --metadata email=a@b.example", v);
            return -1;
        }
        memcpy(o->meta_buf, v, strlen(v) + 1);
        o->meta_buf[eq - v] = '\0';
        o->meta_key = o->meta_buf;
        o->meta_val = o->meta_buf + (eq - v) + 1;
    } else if (strcmp(name, "--source-ip") == 0) {
        o->source_ip = v;
    } else if (strcmp(name, "--outcome") == 0) {
        if (strcmp(v, "success") != 0 && strcmp(v, "failure") != 0 && strcmp(v, "denied") != 0) {
            snprintf(err, errlen, "--outcome '%.64s': must be success, failure or denied", v);
            return -1;
        }
        o->outcome = v;
    } else if (strcmp(name, "--clock-flag") == 0) {
        if (strcmp(v, "future") != 0 && strcmp(v, "backfill") != 0 && strcmp(v, "any") != 0 &&
            strcmp(v, "none") != 0) {
            snprintf(err, errlen, "--clock-flag '%.64s': must be future, backfill, any or none", v);
            return -1;
        }
        o->clock_flag = v;
    } else if (strcmp(name, "--event-id") == 0) {
        uint8_t id[16];

        if (uuid_parse(v, strlen(v), id) != 0) {
            snprintf(err, errlen, "--event-id '%.64s': not a UUID (8-4-4-4-12 hex digits)", v);
            return -1;
        }
        o->event_id = v;
    } else if (strcmp(name, "--since") == 0 || strcmp(name, "--until") == 0) {
        int since = name[2] == 's';

        if (q_parse_time(v, now_us, since ? &o->since_us : &o->until_us, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s %s", name, why);
            return -1;
        }
        *(since ? &o->has_since : &o->has_until) = 1;
    } else if (strcmp(name, "--limit") == 0) {
        if (q_parse_ll(v, 0, INT64_C(1000000000000000), &n) != 0) {
            snprintf(err, errlen, "--limit '%.64s': must be a whole number of rows, "
                     "0 for no limit", v);
            return -1;
        }
        o->limit = n;
        o->limit_set = 1;
    } else if (strcmp(name, "--page-size") == 0) {
        if (q_parse_ll(v, 1, Q_PAGE_MAX, &n) != 0) {
            snprintf(err, errlen, "--page-size '%.64s': must be 1..%d", v, Q_PAGE_MAX);
            return -1;
        }
        o->page_size = (int)n;
    } else if (strcmp(name, "--format") == 0) {
        if (strcmp(v, "table") == 0)
            o->format = Q_FMT_TABLE;
        else if (strcmp(v, "csv") == 0)
            o->format = Q_FMT_CSV;
        else if (strcmp(v, "ndjson") == 0)
            o->format = Q_FMT_NDJSON;
        else if (strcmp(v, "ocsf") == 0)
            o->format = Q_FMT_OCSF;
        else if (strcmp(v, "cef") == 0)
            o->format = Q_FMT_CEF;
        else {
            snprintf(err, errlen, "--format '%.64s': must be table, csv, ndjson, ocsf or cef", v);
            return -1;
        }
    } else if (strcmp(name, "--after") == 0) {
        if (q_cursor_decode(v, &o->after, why, sizeof why) != 0) {
            snprintf(err, errlen, "--after '%.64s': not a cursor printed by auditqctl query: %s",
                     v, why);
            return -1;
        }
        o->has_after = 1;
    } else if (strcmp(name, "--explain") == 0) {
        if (strcmp(v, "text") == 0)
            o->explain = Q_EXPLAIN_TEXT;
        else if (strcmp(v, "json") == 0)
            o->explain = Q_EXPLAIN_JSON;
        else if (strcmp(v, "analyze") == 0)
            o->explain = Q_EXPLAIN_ANALYZE;
        else {
            snprintf(err, errlen, "--explain='%.64s': must be text, json or analyze", v);
            return -1;
        }
    }
    return 0;
}

static const char *const q_valued[] = {
    "--tenant", "--actor", "--action", "--entity", "--outcome", "--event-id", "--since",
    "--until", "--limit", "--page-size", "--format", "--after", "--clock-flag", "--metadata",
    "--source-ip",
};
#define Q_NVALUED (sizeof q_valued / sizeof q_valued[0])

/* Parses argv[1..argc) into o (argv[0] is "query"); now_us is the time
 * relative --since/--until count back from. Pure: no I/O. Returns 0, or -1
 * with the reason in err (a usage error). Strings in o point into argv. */
int q_parse_args(int argc, char **argv, int64_t now_us, q_opts *o, char *err, size_t errlen)
{
    unsigned seen = 0;  /* bit per q_valued[] entry: each may be given once */

    memset(o, 0, sizeof *o);
    o->page_size = Q_PAGE_DEFAULT;
    o->progress = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '='), *value;
        size_t nlen = eq != NULL && strncmp(a, "--", 2) == 0 ? (size_t)(eq - a) : strlen(a);
        size_t k;

        if (strcmp(a, "--desc") == 0) {
            o->desc = 1;
            continue;
        }
        if (strcmp(a, "--progress") == 0 || strcmp(a, "--no-progress") == 0) {
            o->progress = a[2] == 'p';
            continue;
        }
        if (strcmp(a, "--explain") == 0) {
            o->explain = Q_EXPLAIN_TEXT;
            continue;
        }
        if (strncmp(a, "--explain=", 10) == 0) {
            if (q_apply(o, "--explain", a + 10, now_us, err, errlen) != 0)
                return -1;
            continue;
        }
        for (k = 0; k < Q_NVALUED; k++)
            if (strlen(q_valued[k]) == nlen && strncmp(a, q_valued[k], nlen) == 0)
                break;
        if (k == Q_NVALUED) {
            snprintf(err, errlen, "unknown argument '%.64s'; run 'auditqctl query --help'", a);
            return -1;
        }
        if (seen & (1u << k)) {
            snprintf(err, errlen, "%s given twice", q_valued[k]);
            return -1;
        }
        seen |= 1u << k;
        if (eq != NULL) {
            value = eq + 1;     /* attached: taken as written, even "--tenant=-x" */
        } else if (config_arg_value(a, i + 1 < argc ? argv[i + 1] : NULL, err, errlen) == 0) {
            value = argv[++i];
        } else {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, "; run 'auditqctl query --help'");
            return -1;
        }
        if (q_apply(o, q_valued[k], value, now_us, err, errlen) != 0)
            return -1;
    }
    if (o->has_since && o->has_until && o->since_us >= o->until_us) {
        char s[Q_TS_LEN], u[Q_TS_LEN];

        q_format_time(o->since_us, s);
        q_format_time(o->until_us, u);
        snprintf(err, errlen, "--since (%s) must be before --until (%s)", s, u);
        return -1;
    }
    if (o->has_after && o->after.desc != o->desc) {
        snprintf(err, errlen, o->after.desc
                 ? "--after: this cursor continues a --desc run; add --desc"
                 : "--after: this cursor continues an oldest-first run; drop --desc");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ SQL */

static void q_cat(q_query *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void q_cat(q_query *q, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (q->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(q->sql + q->len, sizeof q->sql - q->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof q->sql - q->len)
        q->overflow = 1;
    else
        q->len += (size_t)n;
}

/* Adds a parameter; returns its number for "$n". */
static int q_param(q_query *q, const char *value)
{
    if (q->nparams == Q_MAX_PARAMS) {
        q->overflow = 1;
        return Q_MAX_PARAMS;
    }
    q->params[q->nparams++] = value;
    return q->nparams;
}

/* Adds " WHERE cond" or " AND cond"; cond holds one %d for a new parameter
 * bound to value. */
static void q_where(q_query *q, const char *cond, const char *value)
{
    q_cat(q, q->nwhere++ == 0 ? " WHERE " : " AND ");
    q_cat(q, cond, q_param(q, value));
}

/* Builds the statement of one page: o's filters, after cur (NULL: from the
 * start) and at most `want` rows. q holds pointers into o (see q_query).
 * Returns 0, or -1 if the text would not fit (a bug: the shape is fixed). */
int q_build(const q_opts *o, const q_cursor *cur, long long want, q_query *q)
{
    const char *cmp = o->desc ? "<" : ">";

    memset(q, 0, sizeof *q);
    q_cat(q, "%s", Q_SELECT);
    if (o->event_id != NULL)
        q_where(q, "event_id = $%d::uuid", o->event_id);
    if (o->tenant != NULL)
        q_where(q, "tenant_id = $%d", o->tenant);
    if (o->actor != NULL)
        q_where(q, "actor_id = $%d", o->actor);
    if (o->action != NULL && o->action_prefix)
        q_where(q, "action LIKE $%d", o->action_like);
    else if (o->action != NULL)
        q_where(q, "action = $%d", o->action);
    if (o->entity_type != NULL)
        q_where(q, "entity_type = $%d", o->entity_type);
    if (o->entity_id != NULL)
        q_where(q, "entity_id = $%d", o->entity_id);
    if (o->outcome != NULL)
        q_where(q, "outcome = $%d", o->outcome);
    if (o->source_ip != NULL)
        q_where(q, "source_ip = $%d", o->source_ip);
    if (o->meta_key != NULL) {
        int k = q_param(q, o->meta_key), v = q_param(q, o->meta_val);
        q_cat(q, q->nwhere++ == 0 ? " WHERE " : " AND ");
        q_cat(q, "metadata @> jsonb_build_object($%d::text, $%d::text)", k, v);
    }
    if (o->clock_flag != NULL && (strcmp(o->clock_flag, "none") == 0 || strcmp(o->clock_flag, "any") == 0)) {
        q_cat(q, q->nwhere++ == 0 ? " WHERE " : " AND ");
        q_cat(q, o->clock_flag[0] == 'n' ? "clock_flag IS NULL" : "clock_flag IS NOT NULL");
    } else if (o->clock_flag != NULL) {
        q_where(q, "clock_flag = $%d", o->clock_flag);
    }
    if (o->has_since) {
        q_format_time(o->since_us, q->since);
        q_where(q, "occurred_at >= $%d::timestamptz", q->since);
    }
    if (o->has_until) {
        q_format_time(o->until_us, q->until);
        q_where(q, "occurred_at < $%d::timestamptz", q->until);
    }
    if (cur != NULL) {
        int ts, id;

        q_format_time(cur->us, q->cur_ts);
        uuid_format(cur->id, q->cur_id);
        ts = q_param(q, q->cur_ts);
        id = q_param(q, q->cur_id);
        q_cat(q, "%s occurred_at %s= $%d::timestamptz AND (occurred_at, event_id) %s "
              "($%d::timestamptz, $%d::uuid)", q->nwhere++ == 0 ? " WHERE" : " AND",
              cmp, ts, cmp, ts, id);
    }
    snprintf(q->limit, sizeof q->limit, "%lld", want);
    q_cat(q, o->desc ? " ORDER BY occurred_at DESC, event_id DESC LIMIT $%d::bigint"
                     : " ORDER BY occurred_at, event_id LIMIT $%d::bigint",
          q_param(q, q->limit));
    return q->overflow ? -1 : 0;
}

