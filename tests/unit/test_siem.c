/* test_siem.c -- unit tests for the SIEM formats (fmt_siem.h): CEF escaping
 * and whole records byte for byte, the OCSF class/activity mapping, and
 * one OCSF event byte for byte. it_78_query.sh checks the formats against
 * stored rows (every class's required attributes, with python's json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auditq.h"
#include "fmt_siem.h"
#include "text.h"

/* Runs fn into a memory stream and returns what it wrote (caller frees). */
static char *capture_value(void (*fn)(FILE *, const char *, size_t), const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    fn(f, s, strlen(s));
    fclose(f);
    return buf;
}

static void test_cef_header_escaping(void **state)
{
    char *got;

    (void)state;
    got = capture_value(fmt_cef_header, "a|b\\c=d\ne\rf");
    assert_string_equal(got, "a\\|b\\\\c=d e f");
    free(got);
}

static void test_cef_value_escaping(void **state)
{
    char *got;

    (void)state;
    got = capture_value(fmt_cef_value, "a|b\\c=d\ne\rf");
    assert_string_equal(got, "a|b\\\\c\\=d\\ne\\rf");
    free(got);
}

static void row_set(fmt_row *r, int c, const char *s)
{
    r->v[c] = s;
    r->len[c] = s != NULL ? strlen(s) : 0;
}

static void full_row(fmt_row *r)
{
    memset(r, 0, sizeof *r);
    row_set(r, Q_COL_EVENT_ID, "01900000-0000-7000-8000-000000000001");
    row_set(r, Q_COL_OCCURRED_AT, "2024-07-19T12:00:00.123456Z");
    row_set(r, F_RECEIVED, "2024-07-19T12:00:01.000000Z");
    row_set(r, F_PRIORITY, "high");
    row_set(r, Q_COL_TENANT, "acme|corp");
    row_set(r, Q_COL_ACTOR, "user=42");
    row_set(r, F_ACTOR_TYPE, "user");
    row_set(r, Q_COL_ACTION, "page|upd\\ate\nx");
    row_set(r, Q_COL_ENTITY_TYPE, "page");
    row_set(r, Q_COL_ENTITY_ID, "p\\1");
    row_set(r, Q_COL_OUTCOME, "denied");
    row_set(r, F_SRC_IP, "10.0.0.1");
    row_set(r, F_UA, "curl/8");
    row_set(r, F_REQ, "req-1");
    row_set(r, F_SESSION, "s-1");
    row_set(r, Q_COL_CHANGES, "{\"title\": [\"a=b\", \"c\\nd\"]}");
    row_set(r, Q_COL_METADATA, "{\"k\": \"v\"}");
}

static char *capture_row(int (*fn)(FILE *, const fmt_row *), const fmt_row *r, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    *rc = fn(f, r);
    fclose(f);
    return buf;
}

static void test_cef_record(void **state)
{
    fmt_row r;
    int rc;
    char *got;

    (void)state;
    full_row(&r);
    got = capture_row(fmt_cef_write, &r, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(got,
        "CEF:0|auditq|auditq|" AUDITQ_VERSION "|page\\|upd\\\\ate x|page\\|upd\\\\ate x|7|"
        "externalId=01900000-0000-7000-8000-000000000001 start=1721390400123 rt=1721390401000"
        " act=page|upd\\\\ate\\nx outcome=denied suid=user\\=42 src=10.0.0.1"
        " requestClientApplication=curl/8 cs1Label=tenant_id cs1=acme|corp"
        " cs2Label=actor_type cs2=user cs3Label=entity_type cs3=page"
        " cs4Label=entity_id cs4=p\\\\1 cs5Label=request_id cs5=req-1"
        " cs6Label=session_id cs6=s-1 cn1Label=priority cn1=1"
        " flexString1Label=changes flexString1={\"title\": [\"a\\=b\", \"c\\\\nd\"]}"
        " flexString2Label=metadata flexString2={\"k\": \"v\"}\n");
    free(got);

    /* NULL columns are left out; no outcome is severity 3. */
    memset(&r, 0, sizeof r);
    row_set(&r, Q_COL_EVENT_ID, "01900000-0000-7000-8000-000000000002");
    row_set(&r, Q_COL_OCCURRED_AT, "2024-07-19T12:00:00.000000Z");
    row_set(&r, F_RECEIVED, "2024-07-19T12:00:00.000000Z");
    row_set(&r, F_PRIORITY, "normal");
    row_set(&r, Q_COL_ACTION, "a.b");
    got = capture_row(fmt_cef_write, &r, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(got, "CEF:0|auditq|auditq|" AUDITQ_VERSION "|a.b|a.b|3|"
                        "externalId=01900000-0000-7000-8000-000000000002 start=1721390400000"
                        " rt=1721390400000 act=a.b cn1Label=priority cn1=2\n");
    free(got);

    /* A time outside what the format can carry writes nothing. */
    row_set(&r, Q_COL_OCCURRED_AT, "infinity");
    got = capture_row(fmt_cef_write, &r, &rc);
    assert_int_equal(rc, -1);
    assert_string_equal(got, "");
    free(got);
}

static void test_ocsf_classify(void **state)
{
    static const struct {
        const char *action;
        int class_uid, activity;
    } cases[] = {
        { "user.login", 3002, 1 },        { "session.logout", 3002, 2 },
        { "auth.sign_in", 3002, 1 },      { "user.create", 3001, 1 },
        { "account.disable", 3001, 5 },   { "user.password_reset", 3001, 4 },
        { "user.lock", 3001, 9 },         { "user.rename", 3001, 99 },
        { "page.update", 6003, 3 },       { "invoice.delete", 6003, 4 },
        { "report.export", 6003, 2 },     { "doc.create", 6003, 1 },
        { "auditq.query", 6003, 2 },      { "auditq.dlq.purge", 6003, 4 },
        { "deploy", 6003, 99 },           { "users.create", 6003, 1 },
        { "user", 6003, 99 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c, a;

        fmt_ocsf_classify(cases[i].action, strlen(cases[i].action), &c, &a);
        if (c != cases[i].class_uid || a != cases[i].activity)
            fail_msg("%s: class %d activity %d, want %d %d", cases[i].action, c, a,
                     cases[i].class_uid, cases[i].activity);
    }
}

static void test_ocsf_event(void **state)
{
    fmt_row r;
    int rc;
    char *got, err[256];

    (void)state;
    full_row(&r);
    row_set(&r, Q_COL_ACTION, "page.update");
    got = capture_row(fmt_ocsf_write, &r, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(got,
        "{\"class_uid\":6003,\"category_uid\":6,\"activity_id\":3,\"type_uid\":600303,"
        "\"severity_id\":1,\"time\":1721390400123,\"status_id\":2,\"status\":\"Failure\","
        "\"status_detail\":\"denied\",\"metadata\":{\"version\":\"1.1.0\",\"product\":"
        "{\"name\":\"auditq\",\"vendor_name\":\"auditq\",\"version\":\"" AUDITQ_VERSION "\"},"
        "\"uid\":\"01900000-0000-7000-8000-000000000001\",\"logged_time\":1721390401000,"
        "\"event_code\":\"page.update\",\"correlation_uid\":\"req-1\"},"
        "\"actor\":{\"user\":{\"uid\":\"user=42\"},\"session\":{\"uid\":\"s-1\"}},"
        "\"src_endpoint\":{\"ip\":\"10.0.0.1\"},\"http_request\":{\"user_agent\":\"curl/8\"},"
        "\"api\":{\"operation\":\"page.update\",\"request\":{\"uid\":\"req-1\"}},"
        "\"cloud\":{\"provider\":\"unknown\"},\"resources\":[{\"type\":\"page\",\"uid\":\"p\\\\1\"}],"
        "\"unmapped\":{\"priority\":\"high\",\"tenant_id\":\"acme|corp\",\"actor_type\":\"user\","
        "\"changes\":{\"title\": [\"a=b\", \"c\\nd\"]},\"metadata\":{\"k\": \"v\"}}}\n");
    assert_int_equal(json_validate_object(got, strlen(got) - 1, err, sizeof err), 0);
    free(got);

    /* Authentication: the user object, no api/cloud; a NULL actor is
     * written as the name "unknown" so the required user is present. */
    full_row(&r);
    row_set(&r, Q_COL_ACTION, "user.login");
    row_set(&r, Q_COL_ACTOR, NULL);
    row_set(&r, F_SRC_IP, NULL);
    got = capture_row(fmt_ocsf_write, &r, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(got, "\"class_uid\":3002,\"category_uid\":3,\"activity_id\":1,"
                                "\"type_uid\":300201,"));
    assert_non_null(strstr(got, ",\"user\":{\"name\":\"unknown\"}"));
    assert_null(strstr(got, "\"api\""));
    assert_null(strstr(got, "\"src_endpoint\""));
    assert_int_equal(json_validate_object(got, strlen(got) - 1, err, sizeof err), 0);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cef_header_escaping),
        cmocka_unit_test(test_cef_value_escaping),
        cmocka_unit_test(test_cef_record),
        cmocka_unit_test(test_ocsf_classify),
        cmocka_unit_test(test_ocsf_event),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
