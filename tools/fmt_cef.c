/* fmt_cef.c -- `--format cef`: one ArcSight CEF (version 0) record per line.
 *
 *   CEF:0|auditq|auditq|VERSION|ACTION|ACTION|SEVERITY|EXTENSION
 *
 * DESIGN
 *   Escaping follows the CEF specification (ArcSight "Implementing
 *   ArcSight CEF", rev. 25): in the header '\' and '|' are escaped with a
 *   backslash; in extension values '\' and '=' are, and a line break is
 *   written as the two characters \n (\r for CR), so one record is always
 *   one line. A header field cannot carry a line break at all, so CR/LF in
 *   the action become spaces there (the exact action is also in act=).
 *   Severity: success 3, failure 5, denied 7, no outcome 3.
 *   Extension keys (NULL columns are left out):
 *     externalId event_id      start occurred_at (ms)   rt received_at (ms)
 *     act action               outcome outcome          suid actor_id
 *     src source_ip            requestClientApplication user_agent
 *     cs1 tenant_id  cs2 actor_type  cs3 entity_type  cs4 entity_id
 *     cs5 request_id cs6 session_id (each with its csNLabel)
 *     cn1 priority (0 critical .. 3 low, cn1Label=priority)
 *     flexString1 changes, flexString2 metadata (JSON text)
 *     reason clock_flag
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "auditq.h"
#include "fmt_siem.h"

void fmt_cef_header(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '\\' || c == '|') {
            putc('\\', out);
            putc(c, out);
        } else if (c == '\n' || c == '\r') {
            putc(' ', out);
        } else {
            putc(c, out);
        }
    }
}

void fmt_cef_value(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '\\' || c == '=') {
            putc('\\', out);
            putc(c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c == '\r') {
            fputs("\\r", out);
        } else {
            putc(c, out);
        }
    }
}

/* " key=value" for a non-NULL column. */
static void ext(FILE *out, const char *key, const fmt_row *r, int c)
{
    if (r->v[c] == NULL)
        return;
    fprintf(out, " %s=", key);
    fmt_cef_value(out, r->v[c], r->len[c]);
}

/* " csNLabel=label csN=value" for a non-NULL column. */
static void ext_labelled(FILE *out, const char *key, const char *label, const fmt_row *r, int c)
{
    if (r->v[c] == NULL)
        return;
    fprintf(out, " %sLabel=%s", key, label);
    ext(out, key, r, c);
}

static int ext_time(FILE *out, const char *key, const fmt_row *r, int c)
{
    int64_t us;

    if (fmt_ts_us(r, c, &us) != 0)
        return -1;
    fprintf(out, " %s=%lld", key, (long long)(us >= 0 ? us / 1000 : -((-us + 999) / 1000)));
    return 0;
}

static int col_is(const fmt_row *r, int c, const char *s)
{
    return r->v[c] != NULL && r->len[c] == strlen(s) && memcmp(r->v[c], s, r->len[c]) == 0;
}

int fmt_cef_write(FILE *out, const fmt_row *r)
{
    static const char *const prio[] = { "critical", "high", "normal", "low" };
    int sev = col_is(r, Q_COL_OUTCOME, "denied") ? 7 : col_is(r, Q_COL_OUTCOME, "failure") ? 5 : 3;
    int64_t us;

    /* Check the time first: nothing is written for a row refused. */
    if (fmt_ts_us(r, Q_COL_OCCURRED_AT, &us) != 0)
        return -1;

    fputs("CEF:0|auditq|auditq|" AUDITQ_VERSION "|", out);
    fmt_cef_header(out, r->v[Q_COL_ACTION], r->len[Q_COL_ACTION]);
    putc('|', out);
    fmt_cef_header(out, r->v[Q_COL_ACTION], r->len[Q_COL_ACTION]);
    fprintf(out, "|%d|", sev);
    fputs("externalId=", out);
    fmt_cef_value(out, r->v[Q_COL_EVENT_ID], r->len[Q_COL_EVENT_ID]);
    (void)ext_time(out, "start", r, Q_COL_OCCURRED_AT);
    (void)ext_time(out, "rt", r, F_RECEIVED);
    ext(out, "act", r, Q_COL_ACTION);
    ext(out, "outcome", r, Q_COL_OUTCOME);
    ext(out, "suid", r, Q_COL_ACTOR);
    ext(out, "src", r, F_SRC_IP);
    ext(out, "requestClientApplication", r, F_UA);
    ext_labelled(out, "cs1", "tenant_id", r, Q_COL_TENANT);
    ext_labelled(out, "cs2", "actor_type", r, F_ACTOR_TYPE);
    ext_labelled(out, "cs3", "entity_type", r, Q_COL_ENTITY_TYPE);
    ext_labelled(out, "cs4", "entity_id", r, Q_COL_ENTITY_ID);
    ext_labelled(out, "cs5", "request_id", r, F_REQ);
    ext_labelled(out, "cs6", "session_id", r, F_SESSION);
    for (int p = 0; p < 4; p++)
        if (col_is(r, F_PRIORITY, prio[p]))
            fprintf(out, " cn1Label=priority cn1=%d", p);
    ext_labelled(out, "flexString1", "changes", r, Q_COL_CHANGES);
    ext_labelled(out, "flexString2", "metadata", r, Q_COL_METADATA);
    ext(out, "reason", r, F_CLOCK_FLAG);
    putc('\n', out);
    return 0;
}
