/* fmt_ocsf.c -- `--format ocsf`: one OCSF 1.1.0 event object per line.
 *
 * DESIGN
 *   The class comes from the action alone, so the same action always lands
 *   in the same class and a SIEM rule written for it keeps matching. The
 *   action's last dot-separated word is its verb ("user.login" -> "login"),
 *   its first word its object ("user"):
 *     - verb login/logon/signin/sign_in (activity 1 Logon) or
 *       logout/logoff/signout/sign_out (2 Logoff): Authentication (3002);
 *     - object user or account: Account Change (3001), activity by verb
 *       (create 1, enable 2, password_change 3, password_reset 4, disable 5,
 *       delete 6, attach_policy 7, detach_policy 8, lock 9, else 99 Other);
 *     - anything else: API Activity (6003), activity by verb (create 1,
 *       read 2, update 3, delete 4, with their usual synonyms, else 99).
 *   Every class's required attributes are always written (the base event's
 *   activity_id, category_uid, class_uid, metadata.product,
 *   metadata.version, severity_id, time, type_uid; API Activity's actor,
 *   api, cloud, src_endpoint; Account Change's and Authentication's user).
 *   A required object whose source column is NULL is written with the value
 *   "unknown" (src_endpoint.name, user.name) rather than left out, so the
 *   event validates and the reader sees that it was not known.
 *   Every column that has no OCSF attribute in the event's class is kept
 *   under "unmapped" with its column name, so nothing stored is lost.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "auditq.h"
#include "fmt_siem.h"
#include "text.h"

void fmt_row_from_pg(const PGresult *r, int row, fmt_row *out)
{
    for (int c = 0; c < Q_NCOLS; c++) {
        out->v[c] = PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
        out->len[c] = (size_t)PQgetlength(r, row, c);
    }
}

typedef struct verb_map {
    const char *verb;
    int activity;
} verb_map;

static int verb_is(const char *v, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(v, w, n) == 0;
}

static int verb_lookup(const verb_map *m, size_t nm, const char *v, size_t n)
{
    for (size_t i = 0; i < nm; i++)
        if (verb_is(v, n, m[i].verb))
            return m[i].activity;
    return 99;  /* Other */
}

void fmt_ocsf_classify(const char *action, size_t len, int *class_uid, int *activity_id)
{
    static const verb_map auth[] = {
        { "login", 1 }, { "logon", 1 }, { "signin", 1 }, { "sign_in", 1 },
        { "logout", 2 }, { "logoff", 2 }, { "signout", 2 }, { "sign_out", 2 },
    };
    static const verb_map account[] = {
        { "create", 1 }, { "created", 1 }, { "enable", 2 }, { "enabled", 2 },
        { "password_change", 3 }, { "password_reset", 4 }, { "disable", 5 },
        { "disabled", 5 }, { "delete", 6 }, { "deleted", 6 }, { "attach_policy", 7 },
        { "detach_policy", 8 }, { "lock", 9 }, { "locked", 9 },
    };
    static const verb_map api[] = {
        { "create", 1 }, { "created", 1 }, { "add", 1 }, { "insert", 1 },
        { "read", 2 }, { "view", 2 }, { "get", 2 }, { "list", 2 }, { "export", 2 },
        { "query", 2 }, { "download", 2 }, { "update", 3 }, { "updated", 3 },
        { "edit", 3 }, { "change", 3 }, { "modify", 3 }, { "set", 3 },
        { "delete", 4 }, { "deleted", 4 }, { "remove", 4 }, { "destroy", 4 },
        { "purge", 4 },
    };
    const char *dot = memchr(action, '.', len), *verb = action;
    size_t first = dot != NULL ? (size_t)(dot - action) : len, vlen = len;
    int a;

    for (size_t i = len; i > 0; i--)
        if (action[i - 1] == '.') {
            verb = action + i;
            vlen = len - i;
            break;
        }
    a = verb_lookup(auth, sizeof auth / sizeof auth[0], verb, vlen);
    if (a != 99) {
        *class_uid = OCSF_CLASS_AUTHENTICATION;
        *activity_id = a;
        return;
    }
    if (dot != NULL && (verb_is(action, first, "user") || verb_is(action, first, "account"))) {
        *class_uid = OCSF_CLASS_ACCOUNT_CHANGE;
        *activity_id = verb_lookup(account, sizeof account / sizeof account[0], verb, vlen);
        return;
    }
    *class_uid = OCSF_CLASS_API_ACTIVITY;
    *activity_id = verb_lookup(api, sizeof api / sizeof api[0], verb, vlen);
}

/* ---- writing */

static void j_str(FILE *out, const char *s, size_t len)
{
    (void)text_json_fput(out, s, len, 0);
}

/* ,"key":"value" (or "key":"value" when first) */
static void j_kv(FILE *out, int *first, const char *key, const char *s, size_t len)
{
    fprintf(out, *first ? "\"%s\":" : ",\"%s\":", key);
    *first = 0;
    j_str(out, s, len);
}

static void j_col(FILE *out, int *first, const char *key, const fmt_row *r, int c)
{
    if (r->v[c] != NULL)
        j_kv(out, first, key, r->v[c], r->len[c]);
}

static const char *const col_name[Q_NCOLS] = {
    "event_id", "occurred_at", "received_at", "priority", "tenant_id", "actor_id",
    "actor_type", "action", "entity_type", "entity_id", "outcome", "source_ip",
    "user_agent", "request_id", "session_id", "changes", "metadata", "clock_flag",
};

int fmt_ts_us(const fmt_row *r, int c, int64_t *us)
{
    char buf[Q_TS_LEN];

    if (r->v[c] == NULL || r->len[c] >= sizeof buf)
        return -1;
    memcpy(buf, r->v[c], r->len[c]);
    buf[r->len[c]] = '\0';
    return q_parse_iso(buf, 5, us) != 0 ? -1 : 0;
}

/* Milliseconds since the epoch of a server timestamp; -1 when unreadable. */
static int ts_ms(const fmt_row *r, int c, int64_t *ms)
{
    int64_t us;

    if (fmt_ts_us(r, c, &us) != 0)
        return -1;
    *ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
    return 0;
}

/* The "user" object (Account Change, Authentication): the account acted
 * on when the entity is a user or an account, else the actor. */
static void w_user(FILE *out, const fmt_row *r, int class_uid)
{
    int first = 1, c = Q_COL_ACTOR;

    if (class_uid == OCSF_CLASS_ACCOUNT_CHANGE && r->v[Q_COL_ENTITY_ID] != NULL)
        c = Q_COL_ENTITY_ID;
    fputs(",\"user\":{", out);
    if (r->v[c] != NULL) {
        j_kv(out, &first, "uid", r->v[c], r->len[c]);
        j_kv(out, &first, "name", r->v[c], r->len[c]);
    } else {
        j_kv(out, &first, "name", "unknown", 7);
    }
    putc('}', out);
}

int fmt_ocsf_write(FILE *out, const fmt_row *r)
{
    int class_uid, activity, status_id = 0, first;
    int64_t t_ms, logged_ms;
    const char *outcome = r->v[Q_COL_OUTCOME];
    int mapped[Q_NCOLS] = { 0 };

    if (ts_ms(r, Q_COL_OCCURRED_AT, &t_ms) != 0)
        return -1;
    fmt_ocsf_classify(r->v[Q_COL_ACTION], r->len[Q_COL_ACTION], &class_uid, &activity);
    if (outcome != NULL)
        status_id = r->len[Q_COL_OUTCOME] == 7 && memcmp(outcome, "success", 7) == 0 ? 1 : 2;

    fprintf(out, "{\"class_uid\":%d,\"category_uid\":%d,\"activity_id\":%d,\"type_uid\":%d,"
            "\"severity_id\":1,\"time\":%lld", class_uid, class_uid / 1000, activity,
            class_uid * 100 + activity, (long long)t_ms);
    mapped[Q_COL_OCCURRED_AT] = mapped[Q_COL_ACTION] = 1;
    if (status_id != 0) {
        fprintf(out, ",\"status_id\":%d,\"status\":\"%s\"", status_id,
                status_id == 1 ? "Success" : "Failure");
        if (status_id == 2) {
            fputs(",\"status_detail\":", out);
            j_str(out, outcome, r->len[Q_COL_OUTCOME]);
        }
        mapped[Q_COL_OUTCOME] = 1;
    }

    /* metadata: the product, the schema version, the stored event's id and
     * when it was stored. */
    fputs(",\"metadata\":{\"version\":\"" FMT_OCSF_VERSION "\",\"product\":{\"name\":\"auditq\","
          "\"vendor_name\":\"auditq\",\"version\":\"" AUDITQ_VERSION "\"}", out);
    first = 0;
    j_col(out, &first, "uid", r, Q_COL_EVENT_ID);
    mapped[Q_COL_EVENT_ID] = 1;
    if (ts_ms(r, F_RECEIVED, &logged_ms) == 0) {
        fprintf(out, ",\"logged_time\":%lld", (long long)logged_ms);
        mapped[F_RECEIVED] = 1;
    }
    j_col(out, &first, "event_code", r, Q_COL_ACTION);
    j_col(out, &first, "correlation_uid", r, F_REQ);
    mapped[F_REQ] = r->v[F_REQ] != NULL;
    putc('}', out);

    /* actor: who did it (the user object's uid), and the session. */
    fputs(",\"actor\":{\"user\":{", out);
    first = 1;
    if (r->v[Q_COL_ACTOR] != NULL) {
        j_kv(out, &first, "uid", r->v[Q_COL_ACTOR], r->len[Q_COL_ACTOR]);
        mapped[Q_COL_ACTOR] = 1;
    } else {
        j_kv(out, &first, "name", "unknown", 7);
    }
    putc('}', out);
    if (r->v[F_SESSION] != NULL) {
        fputs(",\"session\":{", out);
        first = 1;
        j_col(out, &first, "uid", r, F_SESSION);
        putc('}', out);
        mapped[F_SESSION] = 1;
    }
    putc('}', out);

    /* src_endpoint and the user agent. */
    if (r->v[F_SRC_IP] != NULL || class_uid == OCSF_CLASS_API_ACTIVITY) {
        fputs(",\"src_endpoint\":{", out);
        first = 1;
        if (r->v[F_SRC_IP] != NULL) {
            j_col(out, &first, "ip", r, F_SRC_IP);
            mapped[F_SRC_IP] = 1;
        } else {
            j_kv(out, &first, "name", "unknown", 7);
        }
        putc('}', out);
    }
    if (r->v[F_UA] != NULL) {
        fputs(",\"http_request\":{", out);
        first = 1;
        j_col(out, &first, "user_agent", r, F_UA);
        putc('}', out);
        mapped[F_UA] = 1;
    }

    if (class_uid == OCSF_CLASS_API_ACTIVITY) {
        fputs(",\"api\":{", out);
        first = 1;
        j_col(out, &first, "operation", r, Q_COL_ACTION);
        if (r->v[F_REQ] != NULL) {
            fputs(",\"request\":{", out);
            first = 1;
            j_col(out, &first, "uid", r, F_REQ);
            putc('}', out);
        }
        fputs("},\"cloud\":{\"provider\":\"unknown\"}", out);
        if (r->v[Q_COL_ENTITY_TYPE] != NULL || r->v[Q_COL_ENTITY_ID] != NULL) {
            fputs(",\"resources\":[{", out);
            first = 1;
            j_col(out, &first, "type", r, Q_COL_ENTITY_TYPE);
            j_col(out, &first, "uid", r, Q_COL_ENTITY_ID);
            fputs("}]", out);
            mapped[Q_COL_ENTITY_TYPE] = mapped[Q_COL_ENTITY_ID] = 1;
        }
    } else {
        w_user(out, r, class_uid);
        if (class_uid == OCSF_CLASS_ACCOUNT_CHANGE && r->v[Q_COL_ENTITY_ID] != NULL)
            mapped[Q_COL_ENTITY_ID] = 1;
    }

    /* unmapped: every other column that holds a value, under its name. */
    fputs(",\"unmapped\":{", out);
    first = 1;
    for (int c = 0; c < Q_NCOLS; c++) {
        if (mapped[c] || r->v[c] == NULL)
            continue;
        fprintf(out, first ? "\"%s\":" : ",\"%s\":", col_name[c]);
        first = 0;
        if (c == Q_COL_CHANGES || c == Q_COL_METADATA)
            fwrite(r->v[c], 1, r->len[c], out);  /* jsonb text is JSON */
        else
            j_str(out, r->v[c], r->len[c]);
    }
    fputs("}}\n", out);
    return 0;
}
