/* ctl_query.h -- the parts of `auditqctl query` (internal to tools/).
 *
 *   ctl_query.c       the command: connection, transaction, the page loop
 *                     (DESIGN: the keyset paging and the cursor)
 *   ctl_query_args.c  the command line: times, the cursor token, options,
 *                     and the SQL of one page. Pure: no I/O.
 *   ctl_query_out.c   the output formats (CSV, NDJSON, table) and the
 *                     progress line
 *
 * tests/unit/test_query.c tests the pure parts through this header. */
#ifndef AQ_CTL_QUERY_H
#define AQ_CTL_QUERY_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#define Q_PROG "auditqctl query"

/* ------------------------------------------------------------------ limits */

#define Q_PAGE_DEFAULT 1000
#define Q_PAGE_MAX 100000
#define Q_TABLE_LIMIT_DEFAULT 50
#define Q_VALUE_MAX 1024          /* longest filter value accepted */
#define Q_SQL_MAX 2048
#define Q_MAX_PARAMS 20
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

enum { Q_FMT_AUTO, Q_FMT_TABLE, Q_FMT_CSV, Q_FMT_NDJSON, Q_FMT_OCSF, Q_FMT_CEF };
enum { Q_EXPLAIN_NONE, Q_EXPLAIN_TEXT, Q_EXPLAIN_JSON, Q_EXPLAIN_ANALYZE };

/* The exported columns, in output order (q_columns in ctl_query_out.c
 * names them; Q_SELECT below selects them in this order). */
enum { Q_NCOLS = 18 };
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
    const char *tenant, *actor, *action, *outcome, *event_id, *source_ip;
    const char *meta_key, *meta_val;      /* --metadata, into meta_buf */
    char meta_buf[Q_VALUE_MAX + 1];
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

/* ------------------------------------------------------------------ output types */

/* A cell's text as up to 3 pieces (the entity cell is TYPE ":" ID). */
typedef struct q_cell {
    const char *s[3];
    size_t len[3];
    int n;
} q_cell;

enum { Q_T_TIME, Q_T_TENANT, Q_T_ACTOR, Q_T_ACTION, Q_T_ENTITY, Q_T_OUTCOME, Q_T_EVENT, Q_T_N };

/* The table's column widths. */
typedef struct q_table {
    int width[Q_T_N];
    int ncols;  /* Q_T_EVENT (6) or Q_T_N (7, with the event id) */
} q_table;

/* The progress line's state (q_progress_line). */
typedef struct q_progress {
    int on, tty;
    int64_t t0, last;  /* monotonic us: start, last line */
} q_progress;

/* ------------------------------------------------------------------ ctl_query_args.c */

/* The base64url alphabet of the cursor token. */
extern const char q_b64[];

/* Formats us as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, the format the server
 * sends, see Q_TS_SQL) into out. */
void q_format_time(int64_t us, char out[Q_TS_LEN]);

/* Parses an ISO-8601 time: DATE, or DATE{T| }HH:MM[:SS[.f{1,6}]][OFFSET]
 * with OFFSET Z, +HH, +HHMM or +HH:MM (- likewise) and no offset meaning
 * UTC. The year has 4..max_year_digits (<= 5) digits: users type 4, rows
 * from the server may have 5. Returns 0 with *out set, or -1. */
int q_parse_iso(const char *s, int max_year_digits, int64_t *out);

/* Parses a --since/--until value: an ISO-8601 time, or an age before now_us
 * ("90s", "30m", "24h", "7d", "2w"). Returns 0 with *out set, or -1 with
 * the reason in err. */
int q_parse_time(const char *s, int64_t now_us, int64_t *out, char *err, size_t errlen);

/* Low byte of FNV-1a 32 over the first 26 bytes: catches a mistyped token. */
uint8_t q_cursor_check(const uint8_t *b);

/* Writes the 36-character token of c plus NUL into out. */
void q_cursor_encode(const q_cursor *c, char out[Q_CURSOR_CHARS + 1]);

/* Decodes a token made by q_cursor_encode. Returns 0, or -1 with the reason
 * in err. */
int q_cursor_decode(const char *s, q_cursor *c, char *err, size_t errlen);

/* Parses a whole number in [lo, hi] (digits only). 0 or -1. */
int q_parse_ll(const char *s, long long lo, long long hi, long long *out);

/* Parses argv[1..argc) into o (argv[0] is "query"); now_us is the time
 * relative --since/--until count back from. Pure: no I/O. Returns 0, or -1
 * with the reason in err (a usage error). Strings in o point into argv. */
int q_parse_args(int argc, char **argv, int64_t now_us, q_opts *o, char *err, size_t errlen);

/* Builds the statement of one page: o's filters, after cur (NULL: from the
 * start) and at most `want` rows. q holds pointers into o (see q_query).
 * Returns 0, or -1 if the text would not fit (a bug: the shape is fixed). */
int q_build(const q_opts *o, const q_cursor *cur, long long want, q_query *q);

/* ------------------------------------------------------------------ ctl_query_out.c */

/* CSV field (RFC 4180): NULL is empty; an empty string is "" so the two
 * stay apart; a value holding " , CR or LF is quoted with " doubled. */
void q_csv_field(FILE *out, const char *s, size_t len, int isnull);

/* JSON string: text_json_string's policy (common/text.h); DEL passes
 * through (the exact value, for programs). */
void q_json_string(FILE *out, const char *s, size_t len);

/* The CSV header line: the column names, CRLF-terminated like the rows. */
void q_write_csv_header(FILE *out);

/* Row `row` of a page (columns in Q_SELECT order) as one CSV record. */
void q_write_csv_row(FILE *out, const PGresult *r, int row);

/* changes and metadata are jsonb, whose text output is JSON: embedded as
 * is, so consumers get objects rather than strings holding JSON. */
void q_write_ndjson_row(FILE *out, const PGresult *r, int row);

/* Writes cell into a column `width` wide, cut with an ellipsis when it
 * does not fit. Padding is not written but returned: `pending` spaces owed
 * by the columns before are written only ahead of visible text, so no line
 * ends in blanks. Returns the spaces owed after this cell (its padding and
 * the one-space gap). */
int q_cell_write(FILE *out, const q_cell *cell, int width, int pending);

/* Column widths for a terminal of `cols` columns (at least 80): fixed
 * time/outcome/event_id, the rest shared by tenant, actor, action, entity
 * in the ratio 10:12:14:12 (their widths at 80 columns). */
void q_table_layout(int cols, q_table *t);

/* A one-piece cell of the NUL-terminated s. */
q_cell q_cell_of(const char *s);

/* The table's header line, laid out by q_table_layout. */
void q_write_table_header(FILE *out, const q_table *t);

/* Row `row` of a page as one table line; control characters show as '?'. */
void q_write_table_row(FILE *out, const q_table *t, const PGresult *r, int row);

/* Terminal width for the table: the terminal's when stdout is one, else
 * COLUMNS, else 80. */
int q_term_cols(void);

/* The progress line on stderr after `rows` rows (at most 4 a second on a
 * terminal, 1 a second otherwise; final: the summary line). No-op when
 * p->on is 0. */
void q_progress_line(q_progress *p, long long rows, int final);
#endif
