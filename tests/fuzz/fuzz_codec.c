/* fuzz_codec.c -- libFuzzer target: the job decoder (codec_decode) on
 * arbitrary bytes. `make test` replays the seed corpus tests/fuzz/corpus/
 * codec/ (tests/fuzz/codec_corpus.py writes it); `make fuzz` explores.
 * fuzz-max-len: 16384 (tests/fuzz/run.sh)
 *
 * Besides "no crash, no read outside the input" (the sanitizers), it checks
 * what the decoder promises, aborting when a promise breaks:
 *   - a refusal returns -1 with a reason that is non-empty, not cut short,
 *     printable UTF-8 (it becomes a dead-letter record's str, a log value
 *     and terminal output);
 *   - an accepted job is complete and legal: v = 1, an event_id, an
 *     occurred_at in 1970..9999, a priority, an action; every text field
 *     points inside the input and passes codec_check_field on its own;
 *   - the size cap: the same bytes under max_job_bytes = len - 1 are refused
 *     with exactly "job is N bytes, larger than max_job_bytes=N-1" unless
 *     the job carries attempts (then the re-encoding slack admits it);
 *   - a worker's retry round trip: re-encoded with attempts + 1 it is at
 *     most 34 bytes longer, decodes under the cap that admitted the
 *     original, gives back the same job, and encodes to the same bytes
 *     again (the encoding is canonical).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)          \
    do {                  \
        if (!(c))         \
            abort();      \
    } while (0)

static void check_reason(const char *err, size_t cap)
{
    size_t n = strlen(err);
    CHECK(n > 0 && n < cap - 1);
    CHECK(text_utf8_valid(err, n, NULL));
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
}

static void check_job(const aq_job *j, const char *buf, size_t size)
{
    char err[512];
    CHECK(j->version == AUDITQ_SCHEMA_VERSION);
    CHECK(j->occurred_at_us > 0 && j->occurred_at_us <= 253402300799999999LL);
    CHECK(j->priority >= 0 && j->priority < AQ_PRIORITIES_N);
    CHECK(j->attempts <= 1000000);
    CHECK(j->f[AUDITQ_EVENT_ID].p == NULL);
    CHECK(j->f[AUDITQ_ACTION].p != NULL && j->f[AUDITQ_ACTION].len > 0);
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        const aq_str *s = &j->f[f];
        if (s->p == NULL) {
            CHECK(s->len == 0);
            continue;
        }
        CHECK(s->p >= buf && s->len <= size && (size_t)(s->p - buf) <= size - s->len);
        CHECK(codec_check_field((auditq_field)f, s->p, s->len, err, sizeof err) == AUDITQ_OK);
    }
}

static void check_same(const aq_job *a, const aq_job *b)
{
    CHECK(a->version == b->version && a->occurred_at_us == b->occurred_at_us);
    CHECK(a->priority == b->priority && a->attempts == b->attempts);
    CHECK(memcmp(a->id, b->id, 16) == 0);
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        CHECK((a->f[f].p == NULL) == (b->f[f].p == NULL));
        CHECK(a->f[f].len == b->f[f].len);
        CHECK(a->f[f].len == 0 || memcmp(a->f[f].p, b->f[f].p, a->f[f].len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    char err[512], want[128];
    aq_job j, t, d;
    aq_buf b = {0}, b2 = {0};

    memset(err, 'X', sizeof err);
    int rc = codec_decode(buf, size, CODEC_DEFAULT_MAX_JOB, &j, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        check_reason(err, sizeof err);
        return 0;
    }
    CHECK(err[0] == '\0');
    check_job(&j, buf, size);

    /* The size cap, one byte under. */
    rc = codec_decode(buf, size, size - 1, &t, err, sizeof err);
    if (j.attempts == 0) {
        snprintf(want, sizeof want, "job is %zu bytes, larger than max_job_bytes=%zu", size, size - 1);
        CHECK(rc == -1 && strcmp(err, want) == 0);
    } else {
        CHECK(rc == 0);
    }

    /* A worker's retry: attempts + 1, re-encoded, fetched again. */
    j.attempts = j.attempts < 1000000 ? j.attempts + 1 : j.attempts;
    CHECK(codec_encode(&j, &b) == 0);
    CHECK(b.len <= size + 34);
    char *copy = malloc(b.len); /* exactly sized: ASan sees any over-read */
    CHECK(copy != NULL);
    memcpy(copy, b.data, b.len);
    rc = codec_decode(copy, b.len, size, &d, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "re-encoded job refused: %s\n", err);
        abort();
    }
    check_job(&d, copy, b.len);
    check_same(&j, &d);
    CHECK(codec_encode(&d, &b2) == 0);
    CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
    free(copy);
    free(b.data);
    free(b2.data);
    return 0;
}
