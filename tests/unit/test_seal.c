/* test_seal.c -- unit tests for worker/seal.c without a database: what
 * seal_setup refuses (and the exact words), sealing off without a key, the
 * anchor file names, the metrics text. The sequencer against PostgreSQL is
 * tested by tests/integration/it_99_integrity*.sh. */
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

#include "checkpoint.h"
#include "config.h"
#include "seal.h"

static char dir[64];
static char keypath[128];

static int setup(void **state)
{
    ckpt_key k;
    char err[600];
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_seal.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(keypath, sizeof keypath, "%s/seal.key", dir);
    assert_int_equal(ckpt_crypto_init(err, sizeof err), 0);
    assert_int_equal(ckpt_keygen("auditq", &k, err, sizeof err), 0);
    assert_int_equal(ckpt_key_write(&k, keypath, 0, err, sizeof err), 0);
    ckpt_key_wipe(&k);
    return 0;
}

static int teardown(void **state)
{
    char p[160];
    (void)state;
    snprintf(p, sizeof p, "%s/seal.key", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/seal.key.pub", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/file", dir);
    unlink(p);
    rmdir(dir);
    return 0;
}

static void test_off_without_key(void **state)
{
    aq_config c;
    seal *s = (seal *)1;
    char err[600] = "";
    (void)state;
    config_defaults(&c);
    assert_int_equal(seal_setup(&c, &s, err, sizeof err), 0);
    assert_null(s);
    /* Every entry point accepts the NULL of "off". */
    assert_int_equal(seal_start(NULL, err, sizeof err), 0);
    seal_stop(NULL);
    aq_buf b = { 0 };
    assert_int_equal(seal_metrics_render(NULL, &b), 0);
    assert_int_equal(b.len, 0);
}

static void test_refusals(void **state)
{
    aq_config c;
    seal *s = NULL;
    char err[1200], want[400], file[128];
    FILE *f;
    (void)state;

    config_defaults(&c);
    snprintf(c.seal_key_file, sizeof c.seal_key_file, "%s/missing.key", dir);
    assert_int_equal(seal_setup(&c, &s, err, sizeof err), -1);
    assert_null(s);
    snprintf(want, sizeof want, "seal_key_file: ");
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "missing.key"));

    /* A verifier key where the signing key belongs. */
    snprintf(c.seal_key_file, sizeof c.seal_key_file, "%s.pub", keypath);
    chmod(c.seal_key_file, 0600);
    assert_int_equal(seal_setup(&c, &s, err, sizeof err), -1);
    assert_memory_equal(err, want, strlen(want));

    /* anchor_dir that is a file. */
    snprintf(c.seal_key_file, sizeof c.seal_key_file, "%s", keypath);
    snprintf(file, sizeof file, "%s/file", dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(c.anchor_dir, sizeof c.anchor_dir, "%s", file);
    assert_int_equal(seal_setup(&c, &s, err, sizeof err), -1);
    snprintf(want, sizeof want, "anchor_dir = %s: not a writable directory (", file);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "create it (mkdir -p) for the worker's user, or set anchor_dir = \"\""));
}

static void test_setup_ok(void **state)
{
    aq_config c;
    seal *s = NULL;
    char err[600] = "";
    aq_buf b = { 0 };
    (void)state;

    config_defaults(&c);
    snprintf(c.seal_key_file, sizeof c.seal_key_file, "%s", keypath);
    snprintf(c.anchor_dir, sizeof c.anchor_dir, "%s", dir);
    assert_int_equal(seal_setup(&c, &s, err, sizeof err), 0);
    assert_non_null(s);
    /* Before any tick: empty tree, no checkpoint yet (age -1). */
    assert_int_equal(seal_metrics_render(s, &b), 0);
    assert_int_equal(b.data[b.len], '\0');
    assert_non_null(strstr(b.data, "\nauditq_seal_tree_size 0\n"));
    assert_non_null(strstr(b.data, "\nauditq_seal_last_checkpoint_age_seconds -1.000\n"));
    assert_non_null(strstr(b.data, "\nauditq_seal_publish_failures_total 0\n"));
    assert_non_null(strstr(b.data, "# TYPE auditq_seal_checkpoints_total counter\n"));
    free(b.data);
    seal_stop(s);  /* never started: frees and wipes */
}

static void test_anchor_name(void **state)
{
    char out[200];
    (void)state;
    seal_anchor_name("auditq", 42, out, sizeof out);
    assert_string_equal(out, "auditq-00000000000000000042.checkpoint");
    seal_anchor_name("prod/eu west:1", 18446744073709551615ULL, out, sizeof out);
    assert_string_equal(out, "prod_eu_west_1-18446744073709551615.checkpoint");
    seal_anchor_name("a.b_c-D9", 0, out, sizeof out);
    assert_string_equal(out, "a.b_c-D9-00000000000000000000.checkpoint");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_without_key),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_setup_ok),
        cmocka_unit_test(test_anchor_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
