/* fmt_siem.h -- the SIEM output formats of `auditqctl query` and
 * `auditqctl follow`: OCSF 1.1.0 JSON (fmt_ocsf.c) and ArcSight CEF 0
 * (fmt_cef.c). Each writes one stored event as one line.
 *
 * A row is the 18 columns of Q_SELECT (ctl_query.h) as the server sent
 * them: text, timestamps as "YYYY-MM-DDTHH:MM:SS.ffffffZ", changes and
 * metadata as JSON text. v[c] == NULL is SQL NULL. Pure: no I/O other
 * than the FILE written to, so tests/unit/test_siem.c checks exact bytes. */
#ifndef AQ_FMT_SIEM_H
#define AQ_FMT_SIEM_H
#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "ctl_query.h"

#define FMT_OCSF_VERSION "1.1.0"

/* Q_SELECT's columns that ctl_query.h does not name. */
enum {
    F_RECEIVED = 2, F_PRIORITY = 3, F_ACTOR_TYPE = 6, F_SRC_IP = 11, F_UA = 12, F_REQ = 13,
    F_SESSION = 14, F_CLOCK_FLAG = 17
};

typedef struct fmt_row {
    const char *v[Q_NCOLS];
    size_t len[Q_NCOLS];
} fmt_row;

/* Row `row` of a page whose first Q_NCOLS columns are Q_SELECT's. */
void fmt_row_from_pg(const PGresult *r, int row, fmt_row *out);

/* ---- OCSF (fmt_ocsf.c) */

enum {
    OCSF_CLASS_ACCOUNT_CHANGE = 3001,  /* category 3, Identity & Access Management */
    OCSF_CLASS_AUTHENTICATION = 3002,  /* category 3 */
    OCSF_CLASS_API_ACTIVITY = 6003,    /* category 6, Application Activity */
};

/* The class and activity_id an action maps to (docs/SECURITY.md, "SIEM
 * output", has the table). */
void fmt_ocsf_classify(const char *action, size_t len, int *class_uid, int *activity_id);

/* One OCSF event object and '\n'. Returns 0, or -1 when the row's
 * occurred_at cannot be read as a time (reported by the caller). */
int fmt_ocsf_write(FILE *out, const fmt_row *row);

/* ---- CEF (fmt_cef.c) */

/* A header field: '\' -> "\\", '|' -> "\|"; CR and LF (which would end the
 * record) -> a space. */
void fmt_cef_header(FILE *out, const char *s, size_t len);

/* An extension value: '\' -> "\\", '=' -> "\=", LF -> "\n", CR -> "\r". */
void fmt_cef_value(FILE *out, const char *s, size_t len);

/* One CEF record and '\n'. Returns 0, or -1 as fmt_ocsf_write. */
int fmt_cef_write(FILE *out, const fmt_row *row);

/* Microseconds since the epoch of column c of row (a server timestamp
 * text); 0, or -1 when it is NULL or unreadable. Both formats use it. */
int fmt_ts_us(const fmt_row *row, int c, int64_t *us);
#endif
