/* ctl_query.c -- `auditqctl query`: the auditor's export of audit_events.
 *
 * DESIGN
 *   Filters become a WHERE clause of fixed shape with every value a
 *   parameter ($n, PQexecParams): nothing a user types is ever pasted into
 *   SQL text. Each filter maps onto one of the schema's indexes, all of which
 *   end in occurred_at (sql/001_schema.sql):
 *       --tenant          audit_events_tenant_idx  (tenant_id, occurred_at)
 *       --actor           audit_events_actor_idx   (actor_id, occurred_at)
 *       --action exact    audit_events_action_idx  (action, occurred_at)
 *       --entity          audit_events_entity_idx  (entity_type, entity_id, occurred_at)
 *       --event-id        the primary key          (event_id, occurred_at)
 *       --since/--until   audit_events_occurred_at_idx, and partition pruning
 *   Two filters have no index of their own and only narrow what the others
 *   select: --outcome, and the prefix form --action 'user.*' (LIKE: a btree
 *   serves a prefix only under the C collation, and the action index has no
 *   text_pattern_ops). tests/integration/it_78_query.sh checks with EXPLAIN
 *   on ~200k ANALYZEd rows that no common filter Seq Scans a partition that
 *   holds rows.
 *
 *   Rows are streamed in keyset pages ordered by (occurred_at, event_id):
 *       WHERE <filters> AND occurred_at >= $c AND (occurred_at, event_id) > ($c, $id)
 *       ORDER BY occurred_at, event_id LIMIT $page
 *   event_id breaks ties between rows of the same microsecond, so the order
 *   is total and a page boundary can never skip or repeat a row. The plain
 *   `occurred_at >= $c` is implied by the row comparison; it is spelled out
 *   because partition pruning and the index bounds use it, so a late page
 *   skips the months already exported. Only one page is held at a time and
 *   the output is flushed after each, so memory does not grow with the
 *   export. --desc runs the same keyset backwards (indexes scan both ways).
 *
 *   All pages run in one REPEATABLE READ READ ONLY transaction: a single run
 *   is one consistent snapshot, as of its start, even while workers insert.
 *   (Events are inserted after they occur, so an export of a window that
 *   reaches "now" can miss events still queued; export closed windows.)
 *
 *   The cursor (--after, "next cursor: ...") is the last row's
 *   (occurred_at in microseconds, event_id) plus the direction, packed into
 *   27 bytes (version, flags, int64 BE, uuid, check byte) and written as 36
 *   base64url characters. It is opaque to users so the format can change
 *   under a new version byte; the check byte catches most mistyped tokens.
 *   A run stopped by --limit prints the cursor only when more rows exist
 *   (it fetches one row beyond the limit to know).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "text.h"
#include "uuid7.h"

#define Q_PROG "auditqctl query"

const char ctl_query_synopsis[] =
    "query [FILTERS] [--format F]     export audit events (table, CSV, NDJSON)";

const char ctl_query_help[] =
    "Usage: auditqctl [OPTIONS] query [FILTERS] [OUTPUT OPTIONS]\n"
    "\n"
    "Exports audit events from PostgreSQL (database_url), oldest first, ordered\n"
    "by (occurred_at, event_id). Filters combine with AND and match exactly.\n"
    "\n"
    "Filters:\n"
    "  --tenant T           tenant_id = T\n"
    "  --actor A            actor_id = A\n"
    "  --action A           action = A. 'PREFIX*' matches every action starting\n"
    "                       with PREFIX, but only narrows the rows the other\n"
    "                       filters select (the action index serves a prefix\n"
    "                       only in a C-collation database): add --since\n"
    "  --entity TYPE[:ID]   entity_type = TYPE (and entity_id = ID; the first ':'\n"
    "                       separates them)\n"
    "  --outcome O          success, failure or denied (no index of its own)\n"
    "  --event-id UUID      the event with this id\n"
    "  --clock-flag F       future or backfill: events the worker flagged for an\n"
    "                       occurred_at far from its clock (clock_skew_future_ms,\n"
    "                       backfill_max_age_ms); any: both; none: neither (no\n"
    "                       index of its own)\n"
    "  --since TIME         occurred_at >= TIME\n"
    "  --until TIME         occurred_at <  TIME\n"
    "      TIME is ISO-8601, 2024-07-19, 2024-07-19T12:00:00Z or\n"
    "      '2024-07-19 14:00:00.250+02:00' (without an offset: UTC), or an age\n"
    "      before now: 90s, 30m, 24h, 7d, 2w.\n"
    "\n"
    "Output:\n"
    "  --format F           table, csv or ndjson. Default: table when stdout is a\n"
    "                       terminal, else ndjson (scripts: always pass --format)\n"
    "  --limit N            at most N rows; 0 = no limit. Default: 50 for table,\n"
    "                       none for csv and ndjson\n"
    "  --after TOKEN        continue after the row TOKEN was printed for\n"
    "  --desc               newest first\n"
    "  --page-size N        rows per query, 1..100000 (default 1000); memory\n"
    "                       holds one page\n"
    "  --progress           rows so far and rows/s on stderr (default: when\n"
    "                       stderr is a terminal and stdout is not)\n"
    "  --no-progress        never show progress\n"
    "  --explain[=text|json|analyze]\n"
    "                       print PostgreSQL's plan for the first page instead of\n"
    "                       rows (analyze also runs it and shows timings)\n"
    "  -h, --help           show this help\n"
    "\n"
    "When --limit (or the table's default 50) stops the output while more rows\n"
    "match, the last line on stderr is 'next cursor: TOKEN'; run the same\n"
    "command with --after TOKEN to get the next rows. A cursor keeps its\n"
    "direction: use it with --desc only if it came from a --desc run.\n"
    "\n"
    "Formats (every column; times in UTC with microseconds, e.g.\n"
    "2024-07-19T12:00:00.000000Z):\n"
    "  csv     RFC 4180: a header row, CRLF line ends, fields quoted when they\n"
    "          hold '\"', ',', CR or LF ('\"' doubled). NULL is an empty field,\n"
    "          an empty string is \"\". Text is UTF-8 exactly as stored; changes\n"
    "          and metadata are JSON text. Spreadsheets may evaluate a cell that\n"
    "          starts with = + - @ as a formula.\n"
    "  ndjson  one JSON object per line, keys in column order; NULL is null,\n"
    "          changes and metadata are JSON objects.\n"
    "  table   occurred_at (to the second), tenant, actor, action, entity,\n"
    "          outcome (and event_id from 120 columns), cut with '\xe2\x80\xa6' to the\n"
    "          terminal width (COLUMNS when stdout is not a terminal, at least\n"
    "          80); control characters are shown as '?'.\n"
    "\n"
    "One run reads one consistent snapshot (a read-only REPEATABLE READ\n"
    "transaction). Events are stored some time after they occur (the queue\n"
    "lag): a window that ends further back than that is complete.\n"
    "\n"
    "Exit status: 0 ok (also when no row matches), 1 connection/SQL/output error,\n"
    "2 usage error (bad option, time, UUID or cursor).\n";

/* ------------------------------------------------------------------ limits */

#define Q_PAGE_DEFAULT 1000
#define Q_PAGE_MAX 100000
#define Q_TABLE_LIMIT_DEFAULT 50
#define Q_VALUE_MAX 1024          /* longest filter value accepted */
#define Q_SQL_MAX 2048
#define Q_MAX_PARAMS 16
#define Q_TS_LEN 64               /* "99999-12-31T23:59:59.999999Z" + NUL, with room */
#define Q_CURSOR_BYTES 27
#define Q_CURSOR_CHARS 36         /* base64url of 27 bytes, no padding */
#define Q_CURSOR_VERSION 1
#define Q_CURSOR_DESC 0x01
#define Q_AGE_MAX_S (INT64_C(36525) * 86400)       /* relative times: <= 100 years */

/* Times are microseconds since the Unix epoch. Users may type years
 * 0001..9999. Rows may hold later years (PostgreSQL's timestamptz goes on
 * to 294276, beyond an int64 of microseconds): the cursor round-trips years
 * up to 99999, and a row after that is reported rather than paged wrongly. */
#define Q_USER_MIN_US (INT64_C(-62135596800) * 1000000)            /* 0001-01-01 */
#define Q_USER_MAX_US (INT64_C(253402300800) * 1000000 - 1)        /* 9999-12-31T23:59:59.999999 */
#define Q_ROW_MAX_US  (INT64_C(3093527980800) * 1000000 - 1)       /* 99999-12-31T23:59:59.999999 */

enum { Q_FMT_AUTO, Q_FMT_TABLE, Q_FMT_CSV, Q_FMT_NDJSON };
enum { Q_EXPLAIN_NONE, Q_EXPLAIN_TEXT, Q_EXPLAIN_JSON, Q_EXPLAIN_ANALYZE };

/* The exported columns, in output order; the SELECT list below matches. */
static const char *const q_columns[] = {
    "event_id", "occurred_at", "received_at", "priority", "tenant_id", "actor_id",
    "actor_type", "action", "entity_type", "entity_id", "outcome", "source_ip",
    "user_agent", "request_id", "session_id", "changes", "metadata", "clock_flag",
};
#define Q_NCOLS ((int)(sizeof q_columns / sizeof q_columns[0]))
enum {
    Q_COL_EVENT_ID = 0, Q_COL_OCCURRED_AT = 1, Q_COL_TENANT = 4, Q_COL_ACTOR = 5,
    Q_COL_ACTION = 7, Q_COL_ENTITY_TYPE = 8, Q_COL_ENTITY_ID = 9, Q_COL_OUTCOME = 10,
    Q_COL_CHANGES = 15, Q_COL_METADATA = 16
};

/* Timestamps leave the server already in the output format, so no client
 * code converts them and the cursor reads them back exactly. */
#define Q_TS_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define Q_SELECT                                                               \
    "SELECT event_id, " Q_TS_SQL("occurred_at") ", " Q_TS_SQL("received_at") \
    ", priority, tenant_id, actor_id, actor_type, action, entity_type,"        \
    " entity_id, outcome, source_ip, user_agent, request_id, session_id,"      \
    " changes, metadata, clock_flag FROM audit_events"

/* ------------------------------------------------------------------ types */

/* A position in the export order: the last row written. */
typedef struct q_cursor {
    int64_t us;        /* occurred_at, microseconds since the epoch */
    uint8_t id[16];    /* event_id */
    int desc;          /* made by a --desc run */
} q_cursor;

/* The parsed command line. The string fields point into argv or into the
 * buffers of this struct; nothing is allocated. */
typedef struct q_opts {
    const char *tenant, *actor, *action, *outcome, *event_id;
    const char *clock_flag;               /* future, backfill, none or any */
    const char *entity_type, *entity_id;  /* into entity_buf */
    char entity_buf[Q_VALUE_MAX + 1];
    int action_prefix;                    /* --action ended in '*' */
    char action_like[2 * Q_VALUE_MAX + 2]; /* the LIKE pattern for it */
    int has_since, has_until;
    int64_t since_us, until_us;
    long long limit;                      /* 0 = none */
    int limit_set;
    int page_size;
    int format;                           /* Q_FMT_* */
    int has_after;
    q_cursor after;
    int desc;
    int progress;                         /* -1 auto, 0 off, 1 on */
    int explain;                          /* Q_EXPLAIN_* */
} q_opts;

/* One page's statement and its parameters. params[] point into this struct
 * and into the q_opts it was built from: do not copy or move it while the
 * parameters are in use. */
typedef struct q_query {
    char sql[Q_SQL_MAX];
    size_t len;
    int overflow;
    int nwhere;
    const char *params[Q_MAX_PARAMS];
    int nparams;
    char since[Q_TS_LEN], until[Q_TS_LEN], cur_ts[Q_TS_LEN];
    char cur_id[37];
    char limit[24];
} q_query;

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
static void q_format_time(int64_t us, char out[Q_TS_LEN])
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
static int q_parse_iso(const char *s, int max_year_digits, int64_t *out)
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
static int q_parse_time(const char *s, int64_t now_us, int64_t *out, char *err, size_t errlen)
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

static const char q_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Low byte of FNV-1a 32 over the first 26 bytes: catches a mistyped token. */
static uint8_t q_cursor_check(const uint8_t *b)
{
    uint32_t h = UINT32_C(2166136261);

    for (int i = 0; i < Q_CURSOR_BYTES - 1; i++) {
        h ^= b[i];
        h *= UINT32_C(16777619);
    }
    return (uint8_t)(h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24));
}

/* Writes the 36-character token of c plus NUL into out. */
static void q_cursor_encode(const q_cursor *c, char out[Q_CURSOR_CHARS + 1])
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
static int q_cursor_decode(const char *s, q_cursor *c, char *err, size_t errlen)
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
static int q_parse_ll(const char *s, long long lo, long long hi, long long *out)
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
        else {
            snprintf(err, errlen, "--format '%.64s': must be table, csv or ndjson", v);
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
    "--until", "--limit", "--page-size", "--format", "--after", "--clock-flag",
};
#define Q_NVALUED (sizeof q_valued / sizeof q_valued[0])

/* Parses argv[1..argc) into o (argv[0] is "query"); now_us is the time
 * relative --since/--until count back from. Pure: no I/O. Returns 0, or -1
 * with the reason in err (a usage error). Strings in o point into argv. */
static int q_parse_args(int argc, char **argv, int64_t now_us, q_opts *o, char *err, size_t errlen)
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
static int q_build(const q_opts *o, const q_cursor *cur, long long want, q_query *q)
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

/* ------------------------------------------------------------------ output */

/* CSV field (RFC 4180): NULL is empty; an empty string is "" so the two
 * stay apart; a value holding " , CR or LF is quoted with " doubled. */
static void q_csv_field(FILE *out, const char *s, size_t len, int isnull)
{
    if (isnull)
        return;
    if (len > 0 && strcspn(s, "\",\r\n") == len) {
        fwrite(s, 1, len, out);
        return;
    }
    putc('"', out);
    for (const char *p = s, *end = s + len; p < end;) {
        const char *q = memchr(p, '"', (size_t)(end - p));

        if (q == NULL) {
            fwrite(p, 1, (size_t)(end - p), out);
            break;
        }
        fwrite(p, 1, (size_t)(q - p) + 1, out);
        putc('"', out);
        p = q + 1;
    }
    putc('"', out);
}

/* JSON string: text_json_string's policy (common/text.h); DEL passes
 * through (the exact value, for programs). */
static void q_json_string(FILE *out, const char *s, size_t len)
{
    (void)text_json_fput(out, s, len, 0);
}

static void q_write_csv_header(FILE *out)
{
    for (int c = 0; c < Q_NCOLS; c++) {
        if (c > 0)
            putc(',', out);
        fputs(q_columns[c], out);
    }
    fputs("\r\n", out);
}

static void q_write_csv_row(FILE *out, const PGresult *r, int row)
{
    for (int c = 0; c < Q_NCOLS; c++) {
        if (c > 0)
            putc(',', out);
        q_csv_field(out, PQgetvalue(r, row, c), (size_t)PQgetlength(r, row, c),
                    PQgetisnull(r, row, c));
    }
    fputs("\r\n", out);
}

/* changes and metadata are jsonb, whose text output is JSON: embedded as
 * is, so consumers get objects rather than strings holding JSON. */
static void q_write_ndjson_row(FILE *out, const PGresult *r, int row)
{
    putc('{', out);
    for (int c = 0; c < Q_NCOLS; c++) {
        fprintf(out, c > 0 ? ",\"%s\":" : "\"%s\":", q_columns[c]);
        if (PQgetisnull(r, row, c))
            fputs("null", out);
        else if (c == Q_COL_CHANGES || c == Q_COL_METADATA)
            fwrite(PQgetvalue(r, row, c), 1, (size_t)PQgetlength(r, row, c), out);
        else
            q_json_string(out, PQgetvalue(r, row, c), (size_t)PQgetlength(r, row, c));
    }
    fputs("}\n", out);
}

/* ---- table */

/* Decodes one character at s[0..len) (text_utf8_next; the server sends
 * valid UTF-8, and a byte of anything else counts as one unknown
 * character, U+FFFD). Returns its length. */
static size_t q_utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n = text_utf8_next((const char *)s, len, cp);

    if (n == 0) {
        *cp = 0xFFFD;
        return 1;
    }
    return n;
}

/* Characters a table cell shows as '?': C0/C1 controls (they would break
 * the layout) and bidirectional overrides/isolates (they would reorder what
 * the auditor reads). */
static int q_cp_hidden(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* Terminal columns a code point takes: 0 for common combining marks, 2 for
 * East Asian wide/fullwidth and emoji blocks, else 1. An approximation of
 * wcwidth() that does not depend on the locale; the exact values are in
 * the csv and ndjson formats. */
static int q_cp_width(uint32_t cp)
{
    static const uint32_t zero[][2] = {
        { 0x0300, 0x036F }, { 0x200B, 0x200F }, { 0x20D0, 0x20FF }, { 0xFE00, 0xFE0F },
        { 0xFE20, 0xFE2F },
    };
    static const uint32_t wide[][2] = {
        { 0x1100, 0x115F }, { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF },
        { 0x4E00, 0x9FFF }, { 0xA000, 0xA4CF }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF },
        { 0xFE30, 0xFE4F }, { 0xFF00, 0xFF60 }, { 0xFFE0, 0xFFE6 }, { 0x1F300, 0x1F64F },
        { 0x1F900, 0x1F9FF }, { 0x20000, 0x2FFFD }, { 0x30000, 0x3FFFD },
    };

    if (q_cp_hidden(cp))
        return 1;
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (cp >= zero[i][0] && cp <= zero[i][1])
            return 0;
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (cp >= wide[i][0] && cp <= wide[i][1])
            return 2;
    return 1;
}

/* A cell's text as up to 3 pieces (the entity cell is TYPE ":" ID). */
typedef struct q_cell {
    const char *s[3];
    size_t len[3];
    int n;
} q_cell;

/* Writes the visible characters of cell that fit into `limit` columns;
 * returns the columns used. limit < 0: no limit. */
static int q_cell_emit(FILE *out, const q_cell *cell, int limit, int write)
{
    int used = 0;

    for (int k = 0; k < cell->n; k++) {
        const unsigned char *s = (const unsigned char *)cell->s[k];
        size_t len = cell->len[k];

        for (size_t i = 0; i < len;) {
            uint32_t cp;
            size_t n = q_utf8_next(s + i, len - i, &cp);
            int w = q_cp_width(cp);

            if (limit >= 0 && used + w > limit)
                return used;
            if (write) {
                if (q_cp_hidden(cp) || cp == 0xFFFD)
                    putc('?', out);
                else
                    fwrite(s + i, 1, n, out);
            }
            used += w;
            i += n;
        }
    }
    return used;
}

/* Writes cell into a column `width` wide, cut with an ellipsis when it
 * does not fit. Padding is not written but returned: `pending` spaces owed
 * by the columns before are written only ahead of visible text, so no line
 * ends in blanks. Returns the spaces owed after this cell (its padding and
 * the one-space gap). */
static int q_cell_write(FILE *out, const q_cell *cell, int width, int pending)
{
    int total = q_cell_emit(out, cell, -1, 0), used;

    if (total == 0)
        return pending + width + 1;
    for (; pending > 0; pending--)
        putc(' ', out);
    if (total <= width) {
        used = q_cell_emit(out, cell, -1, 1);
    } else {
        used = q_cell_emit(out, cell, width - 1, 1);
        fputs("\xe2\x80\xa6", out);  /* U+2026 HORIZONTAL ELLIPSIS */
        used++;
    }
    return width - used + 1;
}

enum { Q_T_TIME, Q_T_TENANT, Q_T_ACTOR, Q_T_ACTION, Q_T_ENTITY, Q_T_OUTCOME, Q_T_EVENT, Q_T_N };

typedef struct q_table {
    int width[Q_T_N];
    int ncols;  /* Q_T_EVENT (6) or Q_T_N (7, with the event id) */
} q_table;

/* Column widths for a terminal of `cols` columns (at least 80): fixed
 * time/outcome/event_id, the rest shared by tenant, actor, action, entity
 * in the ratio 10:12:14:12 (their widths at 80 columns). */
static void q_table_layout(int cols, q_table *t)
{
    static const int weight[4] = { 10, 12, 14, 12 };
    int flex, given = 0;

    if (cols < 80)
        cols = 80;
    t->ncols = cols >= 120 ? Q_T_N : Q_T_EVENT;
    t->width[Q_T_TIME] = 20;      /* 2024-07-19T12:00:00Z */
    t->width[Q_T_OUTCOME] = 7;    /* success / failure / denied */
    t->width[Q_T_EVENT] = 36;
    flex = cols - 20 - 7 - (t->ncols - 1) - (t->ncols == Q_T_N ? 36 : 0);
    for (int i = 0; i < 4; i++) {
        t->width[Q_T_TENANT + i] = flex * weight[i] / 48;
        given += t->width[Q_T_TENANT + i];
    }
    t->width[Q_T_ENTITY] += flex - given;
}

static q_cell q_cell_of(const char *s)
{
    q_cell c = { { s }, { strlen(s) }, 1 };

    return c;
}

static q_cell q_cell_col(const PGresult *r, int row, int col)
{
    q_cell c = { { PQgetvalue(r, row, col) }, { (size_t)PQgetlength(r, row, col) }, 1 };

    return c;
}

static void q_write_table_header(FILE *out, const q_table *t)
{
    static const char *const names[Q_T_N] = {
        "OCCURRED_AT", "TENANT", "ACTOR", "ACTION", "ENTITY", "OUTCOME", "EVENT_ID",
    };

    int pending = 0;

    for (int i = 0; i < t->ncols; i++) {
        q_cell c = q_cell_of(names[i]);

        pending = q_cell_write(out, &c, t->width[i], pending);
    }
    putc('\n', out);
}

static void q_write_table_row(FILE *out, const q_table *t, const PGresult *r, int row)
{
    q_cell cells[Q_T_N];
    int has_id = !PQgetisnull(r, row, Q_COL_ENTITY_ID), pending = 0;
    const char *ts = PQgetvalue(r, row, Q_COL_OCCURRED_AT);

    /* Seconds are enough to read; the full time is in csv/ndjson. */
    cells[Q_T_TIME] = (q_cell){ { ts, "Z" }, { strcspn(ts, "."), 1 }, 2 };
    cells[Q_T_TENANT] = q_cell_col(r, row, Q_COL_TENANT);
    cells[Q_T_ACTOR] = q_cell_col(r, row, Q_COL_ACTOR);
    cells[Q_T_ACTION] = q_cell_col(r, row, Q_COL_ACTION);
    cells[Q_T_ENTITY] = (q_cell){
        { PQgetvalue(r, row, Q_COL_ENTITY_TYPE), ":", PQgetvalue(r, row, Q_COL_ENTITY_ID) },
        { (size_t)PQgetlength(r, row, Q_COL_ENTITY_TYPE), 1,
          (size_t)PQgetlength(r, row, Q_COL_ENTITY_ID) },
        has_id ? 3 : 1 };
    cells[Q_T_OUTCOME] = q_cell_col(r, row, Q_COL_OUTCOME);
    cells[Q_T_EVENT] = q_cell_col(r, row, Q_COL_EVENT_ID);
    for (int i = 0; i < t->ncols; i++)
        pending = q_cell_write(out, &cells[i], t->width[i], pending);
    putc('\n', out);
}

/* Terminal width for the table: the terminal's when stdout is one, else
 * COLUMNS, else 80. */
static int q_term_cols(void)
{
    struct winsize ws;
    const char *env = getenv("COLUMNS");
    long long v;

    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    if (env != NULL && q_parse_ll(env, 1, 10000, &v) == 0)
        return (int)v;
    return 80;
}

/* ------------------------------------------------------------------ progress */

typedef struct q_progress {
    int on, tty;
    int64_t t0, last;  /* monotonic us: start, last line */
} q_progress;

static void q_progress_line(q_progress *p, long long rows, int final)
{
    int64_t now = clock_mono_us();
    double secs = (double)(now - p->t0) / 1e6;
    double rate = secs > 0 ? (double)rows / secs : 0;

    if (!p->on)
        return;
    if (!final && now - p->last < (p->tty ? 250000 : 1000000))
        return;
    p->last = now;
    if (final)
        fprintf(stderr, "%s" Q_PROG ": %lld rows in %.1f s (%.0f rows/s)\n",
                p->tty ? "\r\033[K" : "", rows, secs, rate);
    else if (p->tty)
        fprintf(stderr, "\r\033[K" Q_PROG ": %lld rows, %.0f rows/s", rows, rate);
    else
        fprintf(stderr, Q_PROG ": %lld rows, %.0f rows/s\n", rows, rate);
}

/* ------------------------------------------------------------------ PostgreSQL */

/* First line of msg into out (libpq messages end in '\n', may go on). */
/* Prints "auditqctl query: what: <server message> (SQLSTATE x)". */
static void q_sql_error(PGconn *conn, const PGresult *r, const char *what)
{
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *hint = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;
    char first[512];

    if (primary == NULL) {
        ctl_first_line(PQerrorMessage(conn), first, sizeof first);
        fprintf(stderr, Q_PROG ": %s: %s\n", what,
                first[0] ? first : "connection to the server lost");
        return;
    }
    fprintf(stderr, Q_PROG ": %s: %s (SQLSTATE %s)%s%s\n", what, primary,
            state != NULL ? state : "?????", hint != NULL ? "; " : "", hint != NULL ? hint : "");
}

/* Runs a command that returns no rows. 0 or -1 (reported). */
static int q_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;

    if (rc != 0)
        q_sql_error(conn, r, what);
    PQclear(r);
    return rc;
}

/* Connects and prepares the session. Returns the connection (caller frees
 * with PQfinish), or NULL with the reason printed. */
static PGconn *q_connect(const aq_config *cfg)
{
    /* client_encoding UTF8: the output formats promise UTF-8. */
    PGconn *conn = ctl_pg_connect(cfg, Q_PROG, "UTF8");

    if (conn == NULL)
        return NULL;
    /* UTC so to_char and the ::timestamptz parameters mean what we print;
     * no idle timeout because the transaction waits while a slow reader
     * (a pipe, a pager) drains a page. */
    if (q_exec(conn, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO';"
               " SET idle_in_transaction_session_timeout = 0", "setting up the session") != 0 ||
        q_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
               "starting the read-only transaction") != 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Runs one page. Returns the result (caller PQclears) or NULL (reported). */
static PGresult *q_run(PGconn *conn, const q_query *q, const char *prefix)
{
    char sql[Q_SQL_MAX + 64];
    PGresult *r;

    snprintf(sql, sizeof sql, "%s%s", prefix, q->sql);
    r = PQexecParams(conn, sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        q_sql_error(conn, r, "query failed");
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The position of row `row` of a page, for the next page and the cursor.
 * 0, or -1 (reported) if the server sent something we cannot page past. */
static int q_row_cursor(const PGresult *r, int row, int desc, q_cursor *c)
{
    const char *ts = PQgetvalue(r, row, Q_COL_OCCURRED_AT);
    const char *id = PQgetvalue(r, row, Q_COL_EVENT_ID);

    c->desc = desc;
    if (PQgetisnull(r, row, Q_COL_OCCURRED_AT) || q_parse_iso(ts, 5, &c->us) != 0 ||
        uuid_parse(id, strlen(id), c->id) != 0) {
        fprintf(stderr, Q_PROG ": event %s has occurred_at '%s', which cannot be paged past "
                "(infinity, or outside years 1..99999); narrow --since/--until to leave it out\n",
                id, PQgetisnull(r, row, Q_COL_OCCURRED_AT) ? "infinity" : ts);
        return -1;
    }
    return 0;
}

static int q_explain(PGconn *conn, const q_opts *o, long long want)
{
    static const char *const prefix[] = {
        [Q_EXPLAIN_TEXT] = "EXPLAIN ", [Q_EXPLAIN_JSON] = "EXPLAIN (FORMAT JSON) ",
        [Q_EXPLAIN_ANALYZE] = "EXPLAIN (ANALYZE, BUFFERS) ",
    };
    q_query q;
    PGresult *r;

    if (q_build(o, o->has_after ? &o->after : NULL, want, &q) != 0) {
        fprintf(stderr, Q_PROG ": internal error: query text too long\n");
        return CTL_FAILED;
    }
    r = q_run(conn, &q, prefix[o->explain]);
    if (r == NULL)
        return CTL_FAILED;
    for (int i = 0; i < PQntuples(r); i++)
        printf("%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    return CTL_OK;
}

/* Writes the pages. Returns CTL_OK or CTL_FAILED (reported). */
static int q_export(PGconn *conn, const q_opts *o, long long limit, FILE *out)
{
    q_cursor cur = o->after;
    int have_cur = o->has_after, more = 0;
    long long total = 0;
    q_table table = { { 0 }, 0 };
    q_progress prog = { 0, 0, clock_mono_us(), clock_mono_us() };
    char token[Q_CURSOR_CHARS + 1];

    prog.tty = isatty(STDERR_FILENO);
    prog.on = o->progress == 1 || (o->progress == -1 && prog.tty && !isatty(STDOUT_FILENO));
    if (o->format == Q_FMT_TABLE) {
        q_table_layout(q_term_cols(), &table);
        q_write_table_header(out, &table);
    } else if (o->format == Q_FMT_CSV) {
        q_write_csv_header(out);
    }
    for (;;) {
        /* One row beyond the limit tells whether more rows exist. */
        long long remaining = limit - total;
        long long want = limit > 0 && remaining < o->page_size ? remaining + 1 : o->page_size;
        int n, emit;
        q_query q;
        PGresult *r;

        if (q_build(o, have_cur ? &cur : NULL, want, &q) != 0) {
            fprintf(stderr, Q_PROG ": internal error: query text too long\n");
            return CTL_FAILED;
        }
        r = q_run(conn, &q, "");
        if (r == NULL)
            return CTL_FAILED;
        n = PQntuples(r);
        emit = n;
        if (limit > 0 && n > remaining) {
            emit = (int)remaining;
            more = 1;
        }
        for (int i = 0; i < emit; i++) {
            if (o->format == Q_FMT_CSV)
                q_write_csv_row(out, r, i);
            else if (o->format == Q_FMT_NDJSON)
                q_write_ndjson_row(out, r, i);
            else
                q_write_table_row(out, &table, r, i);
        }
        if (emit > 0) {
            if (q_row_cursor(r, emit - 1, o->desc, &cur) != 0) {
                PQclear(r);
                return CTL_FAILED;
            }
            have_cur = 1;
        }
        PQclear(r);
        total += emit;
        if (fflush(out) != 0 || ferror(out))
            goto write_error;
        q_progress_line(&prog, total, 0);
        if (more || n < want)
            break;
    }
    if (o->format == Q_FMT_TABLE)
        fprintf(out, "(%lld row%s)\n", total, total == 1 ? "" : "s");
    if (fflush(out) != 0 || ferror(out))
        goto write_error;
    q_progress_line(&prog, total, 1);
    if (more) {
        q_cursor_encode(&cur, token);
        fprintf(stderr, "next cursor: %s\n", token);
    }
    return CTL_OK;
write_error:
    fprintf(stderr, Q_PROG ": cannot write the output: %s; check the disk or the "
            "receiving pipe\n", strerror(errno));
    return CTL_FAILED;
}

int ctl_query(const aq_config *cfg, int argc, char **argv)
{
    q_opts o;
    char err[1024];
    long long limit;
    PGconn *conn;
    int rc;

    if (q_parse_args(argc, argv, clock_now_us(), &o, err, sizeof err) != 0) {
        fprintf(stderr, Q_PROG ": %s\n", err);
        return CTL_USAGE;
    }
    if (o.format == Q_FMT_AUTO)
        o.format = isatty(STDOUT_FILENO) ? Q_FMT_TABLE : Q_FMT_NDJSON;
    limit = o.limit_set ? o.limit : o.format == Q_FMT_TABLE ? Q_TABLE_LIMIT_DEFAULT : 0;

    conn = q_connect(cfg);
    if (conn == NULL)
        return CTL_FAILED;
    if (o.explain != Q_EXPLAIN_NONE)
        rc = q_explain(conn, &o, limit > 0 && limit < o.page_size ? limit + 1 : o.page_size);
    else
        rc = q_export(conn, &o, limit, stdout);
    if (rc == CTL_OK && q_exec(conn, "COMMIT", "ending the transaction") != 0)
        rc = CTL_FAILED;
    PQfinish(conn);
    return rc;
}
