/* test_protect.c -- protect_fields (producer/protect.c): the rule parser's
 * exact errors, JSON path matching (nested keys, '*', arrays, non-string
 * values), the key file's refusals, and that the encoded job -- the bytes
 * that go to Redis, the async ring and the spool -- holds no secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../producer/event.h"
#include "../producer/protect.h"
#include "auditq.h"
#include "codec.h"

static char key_path[64];
static const char key_text[] = "0123456789abcdef0123456789abcdef"; /* 32 bytes */

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(key_path, sizeof key_path, "/tmp/aq_test_protect_%d.key", (int)getpid());
    write_file(key_path, key_text, 0600);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(key_path);
    return 0;
}

/* "hmac-sha256:<hex>" of s under the test key. */
static const char *H(const char *s)
{
    static char out[8][PROTECT_HMAC_LEN + 1];
    static int i;
    char *o = out[i++ % 8];
    assert_int_equal(protect_hmac((const uint8_t *)key_text, strlen(key_text), s, strlen(s), o), 0);
    return o;
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct { const char *spec, *msg; } cases[] = {
        {"source_ip", "protect_fields: rule 1 'source_ip': no action: write PATH:ACTION with ACTION hmac, "
                      "redact or drop, e.g. source_ip:hmac"},
        {"source_ip:hash", "protect_fields: rule 1 'source_ip:hash': unknown action 'hash': must be hmac, "
                           "redact or drop"},
        {"source_ip:hmac,, metadata.email:drop",
         "protect_fields: rule 2 is empty: separate rules with one comma, e.g. source_ip:hmac, "
         "metadata.email:redact"},
        {"source_ip:hmac,", "protect_fields: rule 2 is empty: separate rules with one comma, e.g. "
                            "source_ip:hmac, metadata.email:redact"},
        {"sourceip:hmac", "protect_fields: rule 1 'sourceip:hmac': unknown field 'sourceip' (did you mean "
                          "'source_ip'?)"},
        {"payload.x:drop", "protect_fields: rule 1 'payload.x:drop': unknown field 'payload': the path starts "
                           "with one of tenant_id, actor_id, entity_type, entity_id, source_ip, user_agent, "
                           "request_id, session_id, changes, metadata"},
        {"action:redact", "protect_fields: rule 1 'action:redact': action cannot be protected: the pipeline "
                          "needs it as sent (put a sensitive value in metadata and protect that path)"},
        {"source_ip.v4:hmac", "protect_fields: rule 1 'source_ip.v4:hmac': source_ip is a text field, not "
                              "JSON: write source_ip:hmac"},
        {"metadata..email:hmac", "protect_fields: rule 1 'metadata..email:hmac': empty key in the path (two "
                                 "dots in a row, or a dot at its end)"},
        {"metadata.email.:hmac", "protect_fields: rule 1 'metadata.email.:hmac': empty key in the path (two "
                                 "dots in a row, or a dot at its end)"},
        {":hmac", "protect_fields: rule 1 ':hmac': no path before ':': name a field or a JSON path, e.g. "
                  "metadata.email:hmac"},
        {"metadata.e mail:hmac", "protect_fields: rule 1 'metadata.e mail:hmac': blank inside the path: JSON "
                                 "keys with blanks cannot be named; use '*' for that key"},
        {"metadata.email:hmac, metadata.email:drop",
         "protect_fields: rule 2 'metadata.email:drop': the same path as rule 1 'metadata.email:hmac': keep "
         "one"},
    };
    char err[512];
    protect *p = (protect *)1;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        if (protect_parse(cases[i].spec, &p, err, sizeof err) != -1 || strcmp(err, cases[i].msg) != 0)
            fail_msg("'%s': got '%s', expected '%s'", cases[i].spec, err, cases[i].msg);
        assert_null(p);
    }
    /* The same message through the public API, where it is set. */
    auditq_config *cfg = auditq_config_new();
    assert_int_equal(auditq_config_set(cfg, "protect_fields", "source_ip:hash"), AUDITQ_ERR_CONFIG);
    assert_string_equal(auditq_last_error(), cases[1].msg);
    assert_int_equal(auditq_config_set(cfg, "protect_fields", " source_ip : hmac ,metadata.email:redact "),
                     AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "protect_fields", ""), AUDITQ_OK);
    auditq_config_free(cfg);
    /* Blank: no rules, no object. */
    assert_int_equal(protect_parse("  ", &p, err, sizeof err), 0);
    assert_null(p);
}

/* RFC 4231 test case 2: the HMAC itself, independent of this code. */
static void test_hmac_vector(void **state)
{
    (void)state;
    char out[PROTECT_HMAC_LEN + 1];
    const char *data = "what do ya want for nothing?";
    assert_int_equal(protect_hmac((const uint8_t *)"Jefe", 4, data, strlen(data), out), 0);
    assert_string_equal(out, "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_int_equal(strlen(out), PROTECT_HMAC_LEN);
}

/* Applies spec to a job whose field f holds in; returns the new text
 * (static), or NULL when the field was dropped. */
static const char *apply(const char *spec, auditq_field f, const char *in)
{
    static char res[4096];
    char err[512];
    protect *p = NULL;
    aq_job j;
    aq_buf arena = {0};

    if (protect_parse(spec, &p, err, sizeof err) != 0)
        fail_msg("'%s': %s", spec, err);
    if (protect_set_key(p, key_path, err, sizeof err) != 0)
        fail_msg("key: %s", err);
    memset(&j, 0, sizeof j);
    j.f[AUDITQ_ACTION].p = "x.y";
    j.f[AUDITQ_ACTION].len = 3;
    j.f[f].p = in;
    j.f[f].len = (uint32_t)strlen(in);
    if (protect_job(p, &j, &arena, err, sizeof err) != 0)
        fail_msg("protect_job: %s", err);
    assert_true(j.f[AUDITQ_ACTION].p && memcmp(j.f[AUDITQ_ACTION].p, "x.y", 3) == 0);
    if (!j.f[f].p) {
        free(arena.data);
        protect_free(p);
        return NULL;
    }
    assert_true(j.f[f].len < sizeof res);
    memcpy(res, j.f[f].p, j.f[f].len);
    res[j.f[f].len] = '\0';
    free(arena.data);
    protect_free(p);
    return res;
}

static void check(const char *spec, auditq_field f, const char *in, const char *want)
{
    const char *got = apply(spec, f, in);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s on %s:\n got  %s\n want %s", spec, in, got ? got : "(dropped)", want);
    /* What the producer emits must pass the checks the worker applies. */
    char err[256];
    if (codec_check_field(f, got, strlen(got), err, sizeof err) != AUDITQ_OK)
        fail_msg("%s on %s: the worker would refuse '%s': %s", spec, in, got, err);
}

static void test_json_paths(void **state)
{
    (void)state;
    char want[2048];

    /* A string is hashed as its decoded text: an escape changes nothing. */
    snprintf(want, sizeof want, "{\"email\":\"%s\",\"n\":1}", H("a@b.example"));
    check("metadata.email:hmac", AUDITQ_METADATA, "{\"email\":\"a@b.example\",\"n\":1}", want);
    check("metadata.email:hmac", AUDITQ_METADATA, "{ \"email\" : \"a\\u0040b.example\" , \"n\" : 1 }", want);
    /* Nested keys; a sibling and a same-named key elsewhere are untouched. */
    check("metadata.user.email:redact", AUDITQ_METADATA,
          "{\"user\":{\"email\":\"x@y\",\"id\":7},\"email\":\"kept\"}",
          "{\"user\":{\"email\":\"[redacted]\",\"id\":7},\"email\":\"kept\"}");
    /* '*' is any one key, at one level only. */
    check("changes.*.token:drop", AUDITQ_CHANGES,
          "{\"a\":{\"token\":\"s1\",\"k\":1},\"b\":{\"token\":\"s2\"},\"token\":\"top\",\"c\":{\"d\":{\"token\":\"deep\"}}}",
          "{\"a\":{\"k\":1},\"b\":{},\"token\":\"top\",\"c\":{\"d\":{\"token\":\"deep\"}}}");
    /* Arrays are transparent: their elements have the array's path. */
    snprintf(want, sizeof want, "{\"users\":[{\"email\":\"%s\"},{\"email\":\"%s\",\"id\":2}]}", H("x"), H("y"));
    check("metadata.users.email:hmac", AUDITQ_METADATA,
          "{\"users\":[{\"email\":\"x\"},{\"email\":\"y\",\"id\":2}]}", want);
    /* The changes convention [old, new]: both sides hashed, shape kept. */
    snprintf(want, sizeof want, "{\"password\":[\"%s\",\"%s\"],\"title\":[\"A\",\"B\"]}", H("old"), H("new"));
    check("changes.password:hmac", AUDITQ_CHANGES,
          "{\"password\":[\"old\",\"new\"],\"title\":[\"A\",\"B\"]}", want);
    /* Non-strings under hmac: a number or boolean is hashed as its JSON
     * text (auditqctl hash 1234 finds it) and becomes a string; null stays
     * null (it holds nothing). */
    snprintf(want, sizeof want, "{\"pin\":\"%s\",\"f\":\"%s\",\"ok\":\"%s\",\"none\":null}", H("1234"),
             H("-1.5e3"), H("true"));
    check("metadata.pin:hmac, metadata.f:hmac, metadata.ok:hmac, metadata.none:hmac", AUDITQ_METADATA,
          "{\"pin\":1234,\"f\":-1.5e3,\"ok\":true,\"none\":null}", want);
    /* redact on an object: every value inside, keys and lengths kept. */
    check("changes.card:redact", AUDITQ_CHANGES, "{\"card\":{\"num\":\"4111\",\"exp\":[12,2030],\"n\":null}}",
          "{\"card\":{\"num\":\"[redacted]\",\"exp\":[\"[redacted]\",\"[redacted]\"],\"n\":null}}");
    /* The whole field. */
    check("metadata:redact", AUDITQ_METADATA, "{\"a\":\"s\",\"b\":{\"c\":1}}",
          "{\"a\":\"[redacted]\",\"b\":{\"c\":\"[redacted]\"}}");
    assert_null(apply("metadata:drop", AUDITQ_METADATA, "{\"a\":\"s\"}"));
    /* The first rule in the list that matches a key wins. */
    check("changes.*:redact, changes.password:drop", AUDITQ_CHANGES, "{\"password\":\"p\",\"x\":1}",
          "{\"password\":\"[redacted]\",\"x\":\"[redacted]\"}");
    check("changes.password:drop, changes.*:redact", AUDITQ_CHANGES, "{\"password\":\"p\",\"x\":1}",
          "{\"x\":\"[redacted]\"}");
    /* Dropping the first, middle and last members keeps valid JSON. */
    check("metadata.a:drop, metadata.c:drop, metadata.e:drop", AUDITQ_METADATA,
          "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}", "{\"b\":2,\"d\":4}");
    check("metadata.a:drop", AUDITQ_METADATA, "{\"a\":{\"x\":[1,{\"y\":\"}\"}]}}", "{}");
    /* Keys are compared decoded; a key with a quote is copied as written. */
    check("metadata.key:redact", AUDITQ_METADATA, "{\"k\\u0065y\":\"s\",\"q\\\"\":\"t\"}",
          "{\"k\\u0065y\":\"[redacted]\",\"q\\\"\":\"t\"}");
    /* A rule on one field leaves the other's bytes alone. */
    check("metadata.a:drop", AUDITQ_CHANGES, "{ \"a\" : 1 }", "{ \"a\" : 1 }");
    /* Text fields. */
    check("source_ip:hmac", AUDITQ_SOURCE_IP, "203.0.113.7", H("203.0.113.7"));
    check("user_agent:redact", AUDITQ_USER_AGENT, "curl/8", "[redacted]");
    assert_null(apply("session_id:drop", AUDITQ_SESSION_ID, "s-1"));
    /* A secret far below the rules' reach is copied, not lost. */
    check("metadata.a:drop", AUDITQ_METADATA,
          "{\"l1\":{\"l2\":{\"l3\":{\"l4\":{\"l5\":{\"l6\":{\"l7\":{\"l8\":{\"l9\":{\"l10\":{\"l11\":{\"l12\":"
          "{\"l13\":{\"l14\":{\"l15\":{\"l16\":{\"l17\":{\"a\":1}}}}}}}}}}}}}}}}}}",
          "{\"l1\":{\"l2\":{\"l3\":{\"l4\":{\"l5\":{\"l6\":{\"l7\":{\"l8\":{\"l9\":{\"l10\":{\"l11\":{\"l12\":"
          "{\"l13\":{\"l14\":{\"l15\":{\"l16\":{\"l17\":{\"a\":1}}}}}}}}}}}}}}}}}}");
}

/* A key longer than SHA-256's block (64 bytes) is hashed first (RFC
 * 2104): the library's precomputed states agree with one-shot HMAC. */
static void test_long_key(void **state)
{
    (void)state;
    char path[80], err[600], want[PROTECT_HMAC_LEN + 1];
    char key[101];
    protect *p = NULL;
    aq_job j;
    aq_buf arena = {0};

    memset(key, 'k', 100);
    key[100] = '\0';
    snprintf(path, sizeof path, "%s.long", key_path);
    write_file(path, key, 0600);
    assert_int_equal(protect_parse("source_ip:hmac", &p, err, sizeof err), 0);
    assert_int_equal(protect_set_key(p, path, err, sizeof err), 0);
    memset(&j, 0, sizeof j);
    j.f[AUDITQ_SOURCE_IP].p = "10.0.0.1";
    j.f[AUDITQ_SOURCE_IP].len = 8;
    assert_int_equal(protect_job(p, &j, &arena, err, sizeof err), 0);
    assert_int_equal(protect_hmac((const uint8_t *)key, 100, "10.0.0.1", 8, want), 0);
    assert_int_equal(j.f[AUDITQ_SOURCE_IP].len, PROTECT_HMAC_LEN);
    assert_memory_equal(j.f[AUDITQ_SOURCE_IP].p, want, PROTECT_HMAC_LEN);
    free(arena.data);
    protect_free(p);
    unlink(path);
}

static void test_key_file(void **state)
{
    (void)state;
    char path[80], err[600], want[600];
    uint8_t key[PROTECT_KEY_MAX];
    size_t n;

    snprintf(path, sizeof path, "%s.x", key_path);
    unlink(path);
    assert_int_equal(protect_key_read(path, key, &n, err, sizeof err), -1);
    snprintf(want, sizeof want, "protect_key_file '%s': cannot open: No such file or directory; create it "
             "with (umask 077; openssl rand -hex 32 > '%s') or fix its permissions for this user", path, path);
    assert_string_equal(err, want);

    write_file(path, "0123456789abcdef0123456789abcde\n", 0600); /* 31 bytes + newline */
    assert_int_equal(protect_key_read(path, key, &n, err, sizeof err), -1);
    snprintf(want, sizeof want, "protect_key_file '%s': 31 bytes of key, at least 32 needed: create one "
             "with (umask 077; openssl rand -hex 32 > '%s')", path, path);
    assert_string_equal(err, want);

    write_file(path, "0123456789abcdef0123456789abcdef\n", 0644);
    assert_int_equal(protect_key_read(path, key, &n, err, sizeof err), -1);
    snprintf(want, sizeof want, "protect_key_file '%s': other users may access it (mode 0644): "
             "chmod o-rwx '%s'", path, path);
    assert_string_equal(err, want);

    /* The trailing newline is not part of the key: the same HMAC as the
     * key written without one. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(protect_key_read(path, key, &n, err, sizeof err), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(key, key_text, 32);
    unlink(path);
}

/* auditq_open refuses a handle that would send unprotected events. */
static void test_open_refuses(void **state)
{
    (void)state;
    char want[600], missing[80];
    auditq_config *cfg = auditq_config_new();
    auditq *q = NULL;

    assert_int_equal(auditq_config_set(cfg, "protect_fields", "changes.password:redact, source_ip:hmac"),
                     AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_ERR_CONFIG);
    assert_null(q);
    assert_string_equal(auditq_last_error(),
                        "protect_fields has an hmac rule ('source_ip:hmac') but protect_key_file is not set: "
                        "point it at a file of at least 32 random bytes, e.g. (umask 077; openssl rand -hex 32 > "
                        "/etc/auditq/protect.key)");
    snprintf(missing, sizeof missing, "%s.missing", key_path);
    assert_int_equal(auditq_config_set(cfg, "protect_key_file", missing), AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_ERR_CONFIG);
    snprintf(want, sizeof want, "protect_key_file '%s': cannot open: No such file or directory; create it "
             "with (umask 077; openssl rand -hex 32 > '%s') or fix its permissions for this user", missing,
             missing);
    assert_string_equal(auditq_last_error(), want);
    /* Without an hmac rule no key is needed. */
    assert_int_equal(auditq_config_set(cfg, "protect_fields", "changes.password:redact"), AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_config_free(cfg);
}

/* event.c's build path: the encoded job holds the protected values and
 * none of the secrets. */
static void test_encoded_job(void **state)
{
    (void)state;
    char err[512], id[AUDITQ_ID_SIZE];
    protect *p = NULL;
    aq_buf out = {0};
    aq_job j;
    int prio;

    assert_int_equal(protect_parse("source_ip:hmac, metadata.email:hmac, changes.password:redact, "
                                   "changes.*.token:drop", &p, err, sizeof err), 0);
    assert_int_equal(protect_set_key(p, key_path, err, sizeof err), 0);
    auditq_event *ev = auditq_event_new("user.update");
    assert_int_equal(auditq_event_set(ev, AUDITQ_SOURCE_IP, "198.51.100.23"), AUDITQ_OK);
    assert_int_equal(auditq_event_set_json(ev, AUDITQ_METADATA, "{\"email\":\"SECRET-mail@x.example\"}"),
                     AUDITQ_OK);
    assert_int_equal(auditq_event_set_json(ev, AUDITQ_CHANGES,
                                           "{\"password\":[\"SECRET-old\",\"SECRET-new\"],"
                                           "\"api\":{\"token\":\"SECRET-tok\",\"scope\":\"read\"}}"),
                     AUDITQ_OK);
    assert_int_equal(event_encode(ev, 65536, p, &out, &prio, id), AUDITQ_OK);
    assert_null(memmem(out.data, out.len, "SECRET", 6));
    assert_null(memmem(out.data, out.len, "198.51.100.23", 13));
    assert_int_equal(codec_decode(out.data, out.len, 65536, &j, err, sizeof err), 0);
    assert_int_equal(j.f[AUDITQ_SOURCE_IP].len, PROTECT_HMAC_LEN);
    assert_memory_equal(j.f[AUDITQ_SOURCE_IP].p, H("198.51.100.23"), PROTECT_HMAC_LEN);
    char want[512];
    snprintf(want, sizeof want, "{\"email\":\"%s\"}", H("SECRET-mail@x.example"));
    assert_int_equal(j.f[AUDITQ_METADATA].len, strlen(want));
    assert_memory_equal(j.f[AUDITQ_METADATA].p, want, strlen(want));
    const char *ch = "{\"password\":[\"[redacted]\",\"[redacted]\"],\"api\":{\"scope\":\"read\"}}";
    assert_int_equal(j.f[AUDITQ_CHANGES].len, strlen(ch));
    assert_memory_equal(j.f[AUDITQ_CHANGES].p, ch, strlen(ch));
    /* Without rules the same event goes out as set. */
    out.len = 0;
    assert_int_equal(event_encode(ev, 65536, NULL, &out, &prio, id), AUDITQ_OK);
    assert_non_null(memmem(out.data, out.len, "SECRET-tok", 10));
    auditq_event_free(ev);
    free(out.data);
    protect_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_hmac_vector),
        cmocka_unit_test(test_json_paths),
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_long_key),
        cmocka_unit_test(test_open_refuses),
        cmocka_unit_test(test_encoded_job),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
