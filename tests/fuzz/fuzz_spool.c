/* fuzz_spool.c -- libFuzzer target: the spool reader (common/spool.c) over
 * arbitrary bytes, twice: as a whole spool file (header first), and as the
 * records behind a valid header. `make test` runs it over the seed corpus
 * tests/fuzz/corpus/spool/ (made by tests/fuzz/spool_corpus.py); `make
 * fuzz` explores from there.
 *
 * Besides "no crash, no out-of-bounds read" (the sanitizers), it checks what
 * the reader promises, aborting when a promise breaks:
 *   - the reports cover the bytes contiguously: each starts where the last
 *     ended, ends after it starts and within the file; the walk ends;
 *   - a returned record has a legal length and priority, points into the
 *     input right after its header, and re-encoding its header from its
 *     payload gives the stored header byte for byte (so both CRCs matched:
 *     no bad payload is ever returned);
 *   - a torn report is always the tail; every bad report says why;
 *   - the file-descriptor reader (on a memfd) returns exactly the same
 *     sequence as the memory reader.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)          \
    do {                  \
        if (!(c))         \
            abort();      \
    } while (0)

typedef struct step {
    int st;
    uint64_t off, end;
} step;

/* Walks p[start..n) with the memory reader; fills steps (at most max). */
static size_t walk(const uint8_t *p, size_t n, uint64_t start, step *steps, size_t max)
{
    spool_reader r = {0};
    spool_rec rec;
    uint64_t at = start;
    size_t k = 0;
    spool_reader_mem(&r, p, n, start);
    for (;;) {
        spool_status st = spool_reader_next(&r, &rec);
        CHECK(k <= n + 1); /* every step consumes at least one byte */
        if (st == SPOOL_END) {
            CHECK(at == n);
            break;
        }
        CHECK(st != SPOOL_IOERR); /* a memory image cannot fail to read */
        CHECK(rec.off == at);
        CHECK(rec.end > rec.off && rec.end <= n);
        if (st == SPOOL_RECORD) {
            uint8_t h[SPOOL_REC_HEADER];
            CHECK(rec.len >= 1 && rec.len <= SPOOL_MAX_PAYLOAD && rec.prio <= 3);
            CHECK(rec.end == rec.off + SPOOL_REC_HEADER + rec.len);
            CHECK(rec.data == (const char *)p + rec.off + SPOOL_REC_HEADER);
            spool_record_header(h, rec.prio, rec.data, rec.len);
            CHECK(memcmp(h, p + rec.off, SPOOL_REC_HEADER) == 0);
        } else {
            CHECK(st == SPOOL_CORRUPT || st == SPOOL_TORN);
            CHECK(rec.why[0] != '\0');
            if (st == SPOOL_TORN)
                CHECK(rec.end == n);
        }
        if (k < max)
            steps[k] = (step){st, rec.off, rec.end};
        k++;
        at = rec.end;
    }
    spool_reader_free(&r);
    return k;
}

/* The fd reader must agree with the memory reader step for step. */
static void same_from_fd(const uint8_t *p, size_t n, uint64_t start, const step *steps, size_t k)
{
    int fd = memfd_create("fuzz_spool", MFD_CLOEXEC);
    if (fd < 0)
        return; /* no memfd here: the memory walk stands alone */
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        CHECK(w > 0);
        done += (size_t)w;
    }
    spool_reader r = {0};
    spool_rec rec;
    size_t i = 0;
    spool_reader_fd(&r, fd, start, n);
    for (;;) {
        spool_status st = spool_reader_next(&r, &rec);
        if (st == SPOOL_END)
            break;
        CHECK(i < k);
        CHECK((int)st == steps[i].st && rec.off == steps[i].off && rec.end == steps[i].end);
        if (st == SPOOL_RECORD)
            CHECK(memcmp(rec.data, p + rec.off + SPOOL_REC_HEADER, rec.len) == 0);
        i++;
    }
    CHECK(i == k);
    spool_reader_free(&r);
    close(fd);
}

static void check_image(const uint8_t *p, size_t n, uint64_t start)
{
    enum { MAX_STEPS = 4096 };
    static step steps[MAX_STEPS];
    size_t k = walk(p, n, start, steps, MAX_STEPS);
    if (k <= MAX_STEPS && n <= (1u << 20))
        same_from_fd(p, n, start, steps, k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    spool_header h;
    char err[200];

    /* 1. The input as a whole spool file. */
    if (spool_header_decode(data, size, &h, err, sizeof err) == 0) {
        CHECK(size >= SPOOL_HEADER_SIZE && h.ns[0] != '\0');
        check_image(data, size, SPOOL_HEADER_SIZE);
    } else {
        CHECK(err[0] != '\0');
    }

    /* 2. The input as the records behind a valid header. */
    uint8_t *img = malloc(SPOOL_HEADER_SIZE + size);
    if (!img)
        return 0;
    spool_header v = {.id = 1};
    memcpy(v.ns, "auditq", 7);
    spool_header_encode(&v, img);
    if (size)
        memcpy(img + SPOOL_HEADER_SIZE, data, size);
    CHECK(spool_header_decode(img, SPOOL_HEADER_SIZE, &h, err, sizeof err) == 0);
    check_image(img, SPOOL_HEADER_SIZE + size, SPOOL_HEADER_SIZE);
    free(img);
    return 0;
}
