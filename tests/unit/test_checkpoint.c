/* test_checkpoint.c -- unit tests for common/checkpoint.c: key texts and
 * files, signing and opening C2SP checkpoint notes, and every way a note
 * can be wrong (an altered byte anywhere, another key, a cut note). */
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
#include <sodium.h>

#include "checkpoint.h"

static const unsigned char seed_a[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                          17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
                                          31, 32 };
static const unsigned char seed_b[32] = { 0xEE };

static ckpt sample_ckpt(void)
{
    ckpt c;

    memset(&c, 0, sizeof c);
    snprintf(c.origin, sizeof c.origin, "auditq");
    c.size = 1234;
    for (int i = 0; i < 32; i++)
        c.root[i] = (unsigned char)(i * 9);
    c.has_events = 1;
    c.events = 1234;
    c.has_time = 1;
    c.time = 1764864000;
    return c;
}

static void sign(const ckpt *c, const ckpt_key *k, char *note, size_t *len)
{
    char err[300];
    int rc = ckpt_sign(c, k, note, CKPT_NOTE_MAX, len, err, sizeof err);

    if (rc != CKPT_OK)
        fail_msg("ckpt_sign: %s", err);
}

static void test_key_text(void **state)
{
    ckpt_key k, p;
    char text[CKPT_PUBKEY_TEXT_MAX], err[300], want[128];
    unsigned char h[32], raw[33];
    crypto_hash_sha256_state st;
    uint32_t hash;

    (void)state;
    assert_int_equal(ckpt_key_from_seed("auditq", seed_a, &k, err, sizeof err), CKPT_OK);
    /* Key hash, computed here from its definition. */
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)"auditq\n\x01", 8);
    crypto_hash_sha256_update(&st, k.pub, 32);
    crypto_hash_sha256_final(&st, h);
    hash = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    assert_int_equal(k.hash, hash);
    raw[0] = 1;
    memcpy(raw + 1, k.pub, 32);
    {
        char b64[64];
        sodium_bin2base64(b64, sizeof b64, raw, 33, sodium_base64_VARIANT_ORIGINAL);
        snprintf(want, sizeof want, "auditq+%08x+%s", (unsigned)hash, b64);
    }
    assert_int_equal(ckpt_key_format_public(&k, text, sizeof text), strlen(want));
    assert_string_equal(text, want);
    /* Round trip, with a trailing newline as in a file. */
    strcat(text, "\n");
    assert_int_equal(ckpt_key_parse_public(text, strlen(text), &p, err, sizeof err), CKPT_OK);
    assert_string_equal(p.name, "auditq");
    assert_int_equal(p.hash, k.hash);
    assert_memory_equal(p.pub, k.pub, 32);
    assert_false(p.has_secret);
    /* The hash guards the name: rename the key and the text is refused. */
    text[0] = 'b';
    assert_int_equal(ckpt_key_parse_public(text, strlen(text), &p, err, sizeof err),
                     CKPT_MALFORMED);
    assert_non_null(strstr(err, "does not match its name and key"));
    assert_int_equal(ckpt_key_parse_public("auditq+12345678", 15, &p, err, sizeof err),
                     CKPT_MALFORMED);
    assert_string_equal(err, "the verifier key is not <name>+<key hash>+<key>");
    assert_int_equal(ckpt_key_parse_public("a+1234567+AQ==", 14, &p, err, sizeof err),
                     CKPT_MALFORMED);
    assert_string_equal(err, "the verifier key: the key hash '1234567' is not 8 lowercase hex digits");
}

static void test_names(void **state)
{
    char err[300];

    (void)state;
    assert_int_equal(ckpt_name_valid("auditq", err, sizeof err), 1);
    assert_int_equal(ckpt_name_valid("example.com/log-\xc3\xa9", err, sizeof err), 1);
    assert_int_equal(ckpt_name_valid("", err, sizeof err), 0);
    assert_string_equal(err, "the key name is empty");
    assert_int_equal(ckpt_name_valid("a b", err, sizeof err), 0);
    assert_string_equal(err, "the key name has ' ' at byte 1; it must be printable UTF-8 without spaces or '+'");
    assert_int_equal(ckpt_name_valid("a+b", err, sizeof err), 0);
    assert_int_equal(ckpt_name_valid("a\xc2\xa0" "b", err, sizeof err), 0); /* NBSP */
    assert_int_equal(ckpt_name_valid("a\xff", err, sizeof err), 0);
}

static void test_sign_open(void **state)
{
    ckpt_key k;
    ckpt c = sample_ckpt(), o;
    char note[CKPT_NOTE_MAX], err[300], body[256], rootb64[64];
    size_t len;

    (void)state;
    assert_int_equal(ckpt_key_from_seed("auditq", seed_a, &k, err, sizeof err), CKPT_OK);
    sign(&c, &k, note, &len);
    assert_int_equal(strlen(note), len);
    sodium_bin2base64(rootb64, sizeof rootb64, c.root, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(body, sizeof body, "auditq\n1234\n%s\nevents 1234\ntime 1764864000\n\n\xe2\x80\x94 auditq ",
             rootb64);
    assert_memory_equal(note, body, strlen(body));
    /* 4 + 64 bytes -> 92 base64 characters, then the final newline. */
    assert_int_equal(len, strlen(body) + 92 + 1);
    assert_int_equal(note[len - 1], '\n');
    /* The signature is Ed25519 over the body, checked here with libsodium. */
    {
        unsigned char raw[68];
        size_t got;
        const char *b = note + strlen(body);
        size_t bodylen = strlen(body) - strlen("\n\xe2\x80\x94 auditq ");

        assert_int_equal(sodium_base642bin(raw, sizeof raw, b, 92, NULL, &got, NULL,
                                           sodium_base64_VARIANT_ORIGINAL), 0);
        assert_int_equal(got, 68);
        assert_int_equal((uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3], k.hash);
        assert_int_equal(crypto_sign_verify_detached(raw + 4, (const unsigned char *)note, bodylen, k.pub), 0);
    }
    assert_int_equal(ckpt_open(note, len, &k, 1, "auditq", &o, err, sizeof err), CKPT_OK);
    assert_string_equal(o.origin, "auditq");
    assert_int_equal(o.size, 1234);
    assert_memory_equal(o.root, c.root, 32);
    assert_true(o.has_events && o.events == 1234);
    assert_true(o.has_time && o.time == 1764864000);
    assert_string_equal(o.key_name, "auditq");
    /* Origin check. */
    assert_int_equal(ckpt_open(note, len, &k, 1, "other", &o, err, sizeof err),
                     CKPT_ORIGIN_MISMATCH);
    assert_string_equal(err, "the checkpoint's origin is 'auditq', not 'other': it belongs to another log (namespace)");
    /* Without extension lines. */
    c.has_events = c.has_time = 0;
    sign(&c, &k, note, &len);
    assert_int_equal(ckpt_open(note, len, &k, 1, NULL, &o, err, sizeof err), CKPT_OK);
    assert_false(o.has_events);
    assert_false(o.has_time);
    /* A verifier key cannot sign. */
    {
        ckpt_key pub = k;
        pub.has_secret = 0;
        assert_int_equal(ckpt_sign(&c, &pub, note, sizeof note, &len, err, sizeof err), CKPT_ERR);
    }
}

/* Every single altered byte of a signed note is refused. */
static void test_altered_bytes(void **state)
{
    ckpt_key k;
    ckpt c = sample_ckpt(), o;
    char note[CKPT_NOTE_MAX], bad[CKPT_NOTE_MAX], err[300];
    size_t len, body_len;
    int counts[8] = { 0 };

    (void)state;
    assert_int_equal(ckpt_key_from_seed("auditq", seed_a, &k, err, sizeof err), CKPT_OK);
    sign(&c, &k, note, &len);
    body_len = (size_t)(strstr(note, "\n\n") - note) + 1;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            int rc;

            memcpy(bad, note, len);
            bad[i] = (char)(bad[i] ^ (1 << bit));
            rc = ckpt_open(bad, len, &k, 1, "auditq", &o, err, sizeof err);
            if (rc == CKPT_OK)
                fail_msg("byte %zu bit %d altered: still verifies", i, bit);
            counts[-rc]++;
            /* A body byte that stays well-formed is a bad signature. */
            if (i < body_len && rc != CKPT_MALFORMED)
                assert_int_equal(rc, CKPT_BAD_SIGNATURE);
        }
    }
    /* All kinds occur: malformed text, a renamed signer, another key hash,
     * a broken signature. */
    assert_true(counts[-CKPT_MALFORMED] > 0);
    assert_true(counts[-CKPT_UNKNOWN_KEY] > 0);
    assert_true(counts[-CKPT_KEY_MISMATCH] > 0);
    assert_true(counts[-CKPT_BAD_SIGNATURE] > 0);
    /* The root changed to another valid root: bad signature, named. */
    memcpy(bad, note, len);
    bad[strlen("auditq\n1234\n")] = note[strlen("auditq\n1234\n")] == 'A' ? 'B' : 'A';
    assert_int_equal(ckpt_open(bad, len, &k, 1, "auditq", &o, err, sizeof err),
                     CKPT_BAD_SIGNATURE);
    {
        char want[200];
        snprintf(want, sizeof want,
                 "the signature by key 'auditq' (%08x) does not verify: the checkpoint text or "
                 "its signature was altered after signing", (unsigned)k.hash);
        assert_string_equal(err, want);
    }
}

static void test_truncated(void **state)
{
    ckpt_key k;
    ckpt c = sample_ckpt(), o;
    char note[CKPT_NOTE_MAX], err[300];
    size_t len;

    (void)state;
    assert_int_equal(ckpt_key_from_seed("auditq", seed_a, &k, err, sizeof err), CKPT_OK);
    sign(&c, &k, note, &len);
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(ckpt_open(note, n, &k, 1, NULL, &o, err, sizeof err), CKPT_OK);
    assert_int_equal(ckpt_open(note, len - 1, &k, 1, NULL, &o, err, sizeof err), CKPT_MALFORMED);
    assert_string_equal(err, "line 7: the checkpoint does not end with a newline (cut short?)");
    /* Cut right after the body: no signatures. */
    assert_int_equal(ckpt_open(note, strstr(note, "\n\n") - note + 2, &k, 1, NULL, &o, err,
                               sizeof err), CKPT_MALFORMED);
    assert_string_equal(err, "the checkpoint has no signature line after the blank line");
    assert_int_equal(ckpt_open(note, 12, &k, 1, NULL, &o, err, sizeof err), CKPT_MALFORMED);
    assert_string_equal(err, "no blank line before the signatures (the note is cut short or has no signature)");
}

static void test_other_keys(void **state)
{
    ckpt_key a, b, b_same_name, keys[2];
    ckpt c = sample_ckpt(), o;
    char note[CKPT_NOTE_MAX], err[400], want[400];
    size_t len;

    (void)state;
    assert_int_equal(ckpt_key_from_seed("auditq", seed_a, &a, err, sizeof err), CKPT_OK);
    assert_int_equal(ckpt_key_from_seed("witness", seed_b, &b, err, sizeof err), CKPT_OK);
    assert_int_equal(ckpt_key_from_seed("auditq", seed_b, &b_same_name, err, sizeof err), CKPT_OK);

    /* Signed by another key of another name: unknown key. */
    sign(&c, &b, note, &len);
    assert_int_equal(ckpt_open(note, len, &a, 1, NULL, &o, err, sizeof err), CKPT_UNKNOWN_KEY);
    snprintf(want, sizeof want,
             "the checkpoint is signed by 'witness' (%08x), not by the verifier key 'auditq' "
             "(%08x); give the .pub of the key that signed it",
             (unsigned)b.hash, (unsigned)a.hash);
    assert_string_equal(err, want);

    /* Signed by another key of the same name (a rotation): key mismatch. */
    sign(&c, &b_same_name, note, &len);
    assert_int_equal(ckpt_open(note, len, &a, 1, NULL, &o, err, sizeof err), CKPT_KEY_MISMATCH);
    assert_non_null(strstr(err, "another key of that name"));

    /* Rotation: with both keys given, old and new checkpoints verify. */
    keys[0] = b_same_name;
    keys[1] = a;
    sign(&c, &a, note, &len);
    assert_int_equal(ckpt_open(note, len, keys, 2, NULL, &o, err, sizeof err), CKPT_OK);
    assert_int_equal(o.key_hash, a.hash);

    /* A forged signature line claiming key a's name and hash, signed by b. */
    sign(&c, &b_same_name, note, &len);
    {
        unsigned char raw[68];
        size_t got;
        char *sig = strstr(note, "\xe2\x80\x94 auditq ") + strlen("\xe2\x80\x94 auditq ");

        sodium_base642bin(raw, sizeof raw, sig, 92, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL);
        raw[0] = (unsigned char)(a.hash >> 24);
        raw[1] = (unsigned char)(a.hash >> 16);
        raw[2] = (unsigned char)(a.hash >> 8);
        raw[3] = (unsigned char)a.hash;
        sodium_bin2base64(sig, 93, raw, 68, sodium_base64_VARIANT_ORIGINAL);
        sig[92] = '\n';
    }
    assert_int_equal(ckpt_open(note, len, &a, 1, NULL, &o, err, sizeof err), CKPT_BAD_SIGNATURE);

    /* A cosigned note (a witness added its line): still verifies. */
    {
        char extra[CKPT_NOTE_MAX], wnote[CKPT_NOTE_MAX];
        size_t wlen;

        sign(&c, &a, note, &len);
        sign(&c, &b, wnote, &wlen);
        memcpy(extra, note, len);
        strcpy(extra + len, strstr(wnote, "\n\n") + 2);
        assert_int_equal(ckpt_open(extra, strlen(extra), &a, 1, NULL, &o, err, sizeof err), CKPT_OK);
        assert_int_equal(ckpt_open(extra, strlen(extra), &b, 1, NULL, &o, err, sizeof err), CKPT_OK);
    }
}

static void test_malformed_lines(void **state)
{
    static const struct {
        const char *note, *err;
    } cases[] = {
        { "auditq\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 2: tree size '01' is not a decimal number (no sign, no leading zero)" },
        { "auditq\n18446744073709551616\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 2: tree size '18446744073709551616' is not a decimal number (no sign, no leading zero)" },
        { "auditq\n5\nAAAA\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 3: root hash 'AAAA' is not base64 (standard, padded) of 32 bytes" },
        { "auditq\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 3: root hash 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=' is not base64 (standard, padded) of 32 bytes" },
        { "auditq\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nevents x\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 4: 'events x': the count is not a decimal number" },
        { "auditq\n5\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "the checkpoint body has 2 line(s); it needs origin, tree size and root hash" },
        { "auditq\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n- a AAAAAAA=\n",
          "line 5: '- a AAAAAAA=' is not a signature line ('\xe2\x80\x94 <key name> <signature>')" },
        { "audit q\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 1: the origin has ' ' at byte 5; it must be printable UTF-8 without spaces or '+'" },
        { "auditq\n5\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 a AAAAAAA=\n",
          "line 2: a control character or invalid UTF-8 at '\\x0d'" },
    };
    ckpt_key k;
    ckpt o;
    char err[300];

    (void)state;
    assert_int_equal(ckpt_key_from_seed("a", seed_a, &k, err, sizeof err), CKPT_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = ckpt_open(cases[i].note, strlen(cases[i].note), &k, 1, NULL, &o, err, sizeof err);
        if (rc != CKPT_MALFORMED || strcmp(err, cases[i].err) != 0)
            fail_msg("case %zu: rc %d, err '%s', want '%s'", i, rc, err, cases[i].err);
    }
}

static void test_key_files(void **state)
{
    char dir[] = "/tmp/aq-test-ckpt.XXXXXX", path[256], pubpath[300], err[1024], want[1024];
    ckpt_key k, k2, l, p;
    struct stat st;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/seal.key", dir);
    snprintf(pubpath, sizeof pubpath, "%s.pub", path);
    assert_int_equal(ckpt_keygen("auditq", &k, err, sizeof err), CKPT_OK);
    umask(0);   /* the modes must not depend on the umask */
    assert_int_equal(ckpt_key_write(&k, path, 0, err, sizeof err), CKPT_OK);
    umask(022);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(pubpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    assert_int_equal(ckpt_key_load_private(path, &l, err, sizeof err), CKPT_OK);
    assert_string_equal(l.name, "auditq");
    assert_int_equal(l.hash, k.hash);
    assert_memory_equal(l.sk, k.sk, 64);
    assert_int_equal(ckpt_key_load_public(pubpath, &p, err, sizeof err), CKPT_OK);
    assert_memory_equal(p.pub, k.pub, 32);
    assert_false(p.has_secret);

    /* Never overwritten without force; the old key is intact. */
    assert_int_equal(ckpt_keygen("auditq", &k2, err, sizeof err), CKPT_OK);
    assert_int_equal(ckpt_key_write(&k2, path, 0, err, sizeof err), CKPT_ERR);
    snprintf(want, sizeof want,
             "%s exists; keygen never overwrites a key (use --force to replace it: checkpoints "
             "it signed then verify only with its old .pub)", path);
    assert_string_equal(err, want);
    assert_int_equal(ckpt_key_load_private(path, &l, err, sizeof err), CKPT_OK);
    assert_int_equal(l.hash, k.hash);
    assert_int_equal(ckpt_key_write(&k2, path, 1, err, sizeof err), CKPT_OK);
    assert_int_equal(ckpt_key_load_private(path, &l, err, sizeof err), CKPT_OK);
    assert_int_equal(l.hash, k2.hash);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A readable private key is refused with the fix. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(ckpt_key_load_private(path, &l, err, sizeof err), CKPT_ERR);
    snprintf(want, sizeof want,
             "%s has mode 0640: group or others may access the signing key; run chmod 600 %s "
             "(and replace the key if others could read it)", path, path);
    assert_string_equal(err, want);
    assert_int_equal(chmod(path, 0600), 0);

    /* The private key given as the verifier key. */
    assert_int_equal(ckpt_key_load_public(path, &p, err, sizeof err), CKPT_MALFORMED);
    snprintf(want, sizeof want,
             "%s holds a private (signing) key; give the verifier key %s.pub instead", path, path);
    assert_string_equal(err, want);
    /* And the other way round. */
    assert_int_equal(chmod(pubpath, 0600), 0);
    assert_int_equal(ckpt_key_load_private(pubpath, &l, err, sizeof err), CKPT_MALFORMED);
    assert_non_null(strstr(err, "is not a private key (PRIVATE+KEY+<name>+<hash>+<key>)"));

    /* An altered private key text (the hash no longer matches). */
    {
        FILE *f = fopen(path, "r+");
        assert_non_null(f);
        fseek(f, 12, SEEK_SET);
        fputc('X', f);   /* the name "auditq" -> "Xuditq" */
        fclose(f);
        assert_int_equal(ckpt_key_load_private(path, &l, err, sizeof err), CKPT_MALFORMED);
        assert_non_null(strstr(err, "does not match its name and key"));
    }
    unlink(path);
    unlink(pubpath);
    rmdir(dir);
    ckpt_key_wipe(&k);
    for (size_t i = 0; i < sizeof k; i++)
        assert_int_equal(((unsigned char *)&k)[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_text),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sign_open),
        cmocka_unit_test(test_altered_bytes),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_other_keys),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_key_files),
    };
    char err[200];

    if (ckpt_crypto_init(err, sizeof err) != CKPT_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
