/* ctl_query_out.c -- `auditqctl query`'s output: CSV (RFC 4180), NDJSON,
 * the terminal table, and the progress line on stderr. Each writer takes
 * one row of a page as the server sent it (columns in Q_SELECT order). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "clock.h"
#include "ctl_query.h"
#include "text.h"

/* The exported columns, in output order; Q_SELECT (ctl_query.h) selects them
 * in this order. */
static const char *const q_columns[] = {
    "event_id", "occurred_at", "received_at", "priority", "tenant_id", "actor_id",
    "actor_type", "action", "entity_type", "entity_id", "outcome", "source_ip",
    "user_agent", "request_id", "session_id", "changes", "metadata", "clock_flag",
};
_Static_assert(sizeof q_columns / sizeof q_columns[0] == Q_NCOLS, "Q_NCOLS");

/* ------------------------------------------------------------------ output */

/* CSV field (RFC 4180): NULL is empty; an empty string is "" so the two
 * stay apart; a value holding " , CR or LF is quoted with " doubled. */
void q_csv_field(FILE *out, const char *s, size_t len, int isnull)
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
void q_json_string(FILE *out, const char *s, size_t len)
{
    (void)text_json_fput(out, s, len, 0);
}

void q_write_csv_header(FILE *out)
{
    for (int c = 0; c < Q_NCOLS; c++) {
        if (c > 0)
            putc(',', out);
        fputs(q_columns[c], out);
    }
    fputs("\r\n", out);
}

void q_write_csv_row(FILE *out, const PGresult *r, int row)
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
void q_write_ndjson_row(FILE *out, const PGresult *r, int row)
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
int q_cell_write(FILE *out, const q_cell *cell, int width, int pending)
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

/* Column widths for a terminal of `cols` columns (at least 80): fixed
 * time/outcome/event_id, the rest shared by tenant, actor, action, entity
 * in the ratio 10:12:14:12 (their widths at 80 columns). */
void q_table_layout(int cols, q_table *t)
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

q_cell q_cell_of(const char *s)
{
    q_cell c = { { s }, { strlen(s) }, 1 };

    return c;
}

static q_cell q_cell_col(const PGresult *r, int row, int col)
{
    q_cell c = { { PQgetvalue(r, row, col) }, { (size_t)PQgetlength(r, row, col) }, 1 };

    return c;
}

void q_write_table_header(FILE *out, const q_table *t)
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

void q_write_table_row(FILE *out, const q_table *t, const PGresult *r, int row)
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
int q_term_cols(void)
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

void q_progress_line(q_progress *p, long long rows, int final)
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

