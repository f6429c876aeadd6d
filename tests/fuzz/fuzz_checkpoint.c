/* fuzz_checkpoint.c -- libFuzzer target: the parsers of the integrity
 * formats on arbitrary bytes, as an attacker who can write anchor_dir or
 * hand over a proof would supply them: a checkpoint note (ckpt_parse,
 * ckpt_open), a verifier key text (ckpt_key_parse_public) and a canonical
 * entry (entry_decode). `make test` replays tests/fuzz/corpus/checkpoint/;
 * `make fuzz` explores from there.
 * fuzz-max-len: 8192 (tests/fuzz/run.sh)
 *
 * Invariants, each an abort() when broken:
 *   - ckpt_parse and ckpt_open agree on well-formedness: a note is
 *     CKPT_MALFORMED for both or for neither, with a message either way;
 *   - a note that verifies with the example key (docs/INTEGRITY.md, seed
 *     00 01 .. 1f) and has only the known body lines is exactly what
 *     ckpt_sign makes of its parsed fields: no second text verifies as
 *     the same checkpoint (a lax parser would let "01" pass for "1");
 *   - a key text that parses formats back to the same text (one key, one
 *     text);
 *   - an entry that decodes re-encodes to the same bytes (event entries
 *     through entry_event_encode), and its fields lie inside the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "entry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)          \
    do {                  \
        if (!(c))         \
            abort();      \
    } while (0)

static ckpt_key example_key;
static int ready;

static void setup(void)
{
    unsigned char seed[32];
    char err[200];

    for (int i = 0; i < 32; i++)
        seed[i] = (unsigned char)i;
    CHECK(ckpt_crypto_init(err, sizeof err) == CKPT_OK);
    CHECK(ckpt_key_from_seed("example.com/auditq", seed, &example_key, err, sizeof err) ==
          CKPT_OK);
    ready = 1;
}

/* 1 if every body line after the third is "events N" or "time N". */
static int only_known_lines(const char *note, size_t len)
{
    const char *p = note, *end = note + len, *sep = NULL;
    int line = 0;

    for (size_t i = len - 1; i-- > 0;)
        if (note[i] == '\n' && note[i + 1] == '\n') {
            sep = note + i + 1;
            break;
        }
    if (sep == NULL)
        return 0;
    end = sep;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        line++;
        if (line > 3 && strncmp(p, "events ", 7) != 0 && strncmp(p, "time ", 5) != 0)
            return 0;
        p = nl + 1;
    }
    return 1;
}

static void check_note(const char *note, size_t len)
{
    char err[1024], err2[1024], again[CKPT_NOTE_MAX];
    ckpt a, b;
    size_t alen;
    int rp, ro;

    err[0] = err2[0] = '\0';
    rp = ckpt_parse(note, len, &a, err, sizeof err);
    ro = ckpt_open(note, len, &example_key, 1, NULL, &b, err2, sizeof err2);
    CHECK((rp == CKPT_MALFORMED) == (ro == CKPT_MALFORMED));
    CHECK(rp == CKPT_OK || err[0] != '\0');
    CHECK(ro == CKPT_OK || err2[0] != '\0');
    if (ro != CKPT_OK || !only_known_lines(note, len))
        return;
    /* Verified: the note must be the canonical text of its fields, up to
     * the signature lines (a cosigned note has more of them). */
    CHECK(ckpt_sign(&b, &example_key, again, sizeof again, &alen, err, sizeof err) == CKPT_OK);
    {
        const char *sig = strstr(again, "\n\n");
        size_t body = (size_t)(sig - again) + 2;
        CHECK(body <= len && memcmp(again, note, body) == 0);
    }
}

static void check_key_text(const char *p, size_t len)
{
    ckpt_key k;
    char err[512], out[CKPT_PUBKEY_TEXT_MAX];
    size_t n, l = len;

    if (ckpt_key_parse_public(p, len, &k, err, sizeof err) != CKPT_OK)
        return;
    n = ckpt_key_format_public(&k, out, sizeof out);
    CHECK(n > 0);
    if (l > 0 && p[l - 1] == '\n')
        l--;
    if (l > 0 && p[l - 1] == '\r')
        l--;
    CHECK(n == l && memcmp(out, p, n) == 0);
}

static void check_entry(const uint8_t *p, size_t len)
{
    entry_view v;
    char err[300];

    if (entry_decode(p, len, &v, err, sizeof err) != 0) {
        CHECK(err[0] != '\0');
        return;
    }
    for (unsigned i = 0; i < v.nfields; i++)
        if (v.f[i].p != NULL)
            CHECK(v.f[i].p >= p && v.f[i].p + v.f[i].len <= p + len);
    if (v.type == ENTRY_TYPE_EVENT) {
        const char *vals[ENTRY_EVENT_NFIELDS];
        size_t lens[ENTRY_EVENT_NFIELDS], n;
        unsigned char *buf;
        merkle_hash h1, h2;

        for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
            vals[i] = (const char *)v.f[i].p;
            lens[i] = v.f[i].len;
        }
        n = entry_event_encode(vals, lens, NULL, 0);
        CHECK(n == len);
        buf = malloc(n);
        CHECK(buf != NULL);
        CHECK(entry_event_encode(vals, lens, buf, n) == n);
        CHECK(memcmp(buf, p, n) == 0);
        merkle_leaf_hash(buf, n, h1);
        CHECK(entry_event_leaf_hash(vals, lens, h2) == 0);
        CHECK(memcmp(h1, h2, sizeof h1) == 0);
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        setup();
    check_note((const char *)data, size);
    check_key_text((const char *)data, size);
    check_entry(data, size);
    return 0;
}
