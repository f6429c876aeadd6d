/* test_spool.c -- the producer spool file without a Redis (common/spool*.c):
 * the format (round trip, a torn tail at every truncation offset, a flipped
 * byte at every offset of a record, hostile lengths), the replay position
 * across a crash, locking. The library's routing through the spool is
 * test_spooler.c; the replay into a real Redis is
 * tests/integration/it_90_spool.sh. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auditq.h"
#include "spool.h"
#include "spool_test.h"

/* Reads a whole file; caller frees. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Record i of the test set: length and bytes are a function of i. */
static size_t rec_len(int i) { return (size_t)(7 + 13 * i); }
static void rec_fill(char *b, int i)
{
    for (size_t k = 0; k < rec_len(i); k++)
        b[k] = (char)(i * 31 + (int)k);
}

/* Writes a spool of n records (priority i % 4) at path; offs[i] gets the
 * offset of record i, offs[n] the file size. */
static void make_spool(const char *path, int n, uint64_t *offs)
{
    char err[512];
    spool *s = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, NULL, err, sizeof err);
    assert_non_null(s);
    uint64_t off = SPOOL_HEADER_SIZE;
    for (int i = 0; i < n; i++) {
        char b[512];
        rec_fill(b, i);
        spool_item it = {b, (uint32_t)rec_len(i), (uint8_t)(i % 4)};
        offs[i] = off;
        assert_int_equal(spool_append(s, &it, 1, 0, 0, err, sizeof err), 0);
        off += SPOOL_REC_HEADER + rec_len(i);
    }
    offs[n] = off;
    assert_int_equal(spool_size(s), off);
    assert_int_equal(spool_pending(s), (uint64_t)n);
    spool_close(s);
}

/* ---- format ---------------------------------------------------------------- */

static void test_crc32c(void **state)
{
    (void)state;
    /* The standard check value of CRC-32C, and the iSCSI test vectors. */
    assert_int_equal(spool_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(spool_crc32c(0, "", 0), 0);
    uint8_t z[32] = {0}, ff[32], inc[32];
    memset(ff, 0xff, sizeof ff);
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    assert_int_equal(spool_crc32c(0, z, 32), 0x8A9136AAu);
    assert_int_equal(spool_crc32c(0, ff, 32), 0x62A8AB43u);
    assert_int_equal(spool_crc32c(0, inc, 32), 0x46DD794Eu);
    /* Continuing a CRC over a split equals one pass, at every split. */
    for (size_t k = 0; k <= 32; k++)
        assert_int_equal(spool_crc32c(spool_crc32c(0, inc, k), inc + k, 32 - k), 0x46DD794Eu);
}

static void test_header(void **state)
{
    (void)state;
    spool_header h = {.id = 0x1122334455667788ULL}, d;
    uint8_t b[SPOOL_HEADER_SIZE];
    char err[200];
    snprintf(h.ns, sizeof h.ns, "tenant.a-1");
    spool_header_encode(&h, b);
    assert_memory_equal(b, "AUDITQSP\x01\x00\x60\x00", 12);
    assert_int_equal(spool_header_decode(b, sizeof b, &d, err, sizeof err), 0);
    assert_int_equal(d.id, h.id);
    assert_string_equal(d.ns, "tenant.a-1");
    static const struct { size_t at; const char *msg; } bad[] = {
        {0, "no spool header (the file does not start with \"AUDITQSP\")"},
        {8, "header checksum mismatch (damaged header)"},
        {30, "header checksum mismatch (damaged header)"},
        {93, "header checksum mismatch (damaged header)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t c[SPOOL_HEADER_SIZE];
        memcpy(c, b, sizeof c);
        c[bad[i].at] ^= 0x40;
        assert_int_equal(spool_header_decode(c, sizeof c, &d, err, sizeof err), -1);
        assert_string_equal(err, bad[i].msg);
    }
    assert_int_equal(spool_header_decode(b, 50, &d, err, sizeof err), -1);
    assert_string_equal(err, "truncated header: 50 of 96 bytes");
    /* A version from the future, with a valid checksum. */
    b[8] = 2;
    uint32_t crc = spool_crc32c(0, b, 92);
    memcpy(b + 92, &crc, 4);
    assert_int_equal(spool_header_decode(b, sizeof b, &d, err, sizeof err), -1);
    assert_string_equal(err, "spool format version 2, this build reads version 1");
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[PATHLEN], err[512];
    path_of(path, sizeof path, "rt");
    spool *s = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, NULL, err, sizeof err);
    assert_non_null(s);
    /* Sizes around the reader's 1 MiB window, a 1-byte and a 3 MiB record. */
    static const size_t sizes[] = {1, 100, (1u << 20) - 20, (1u << 20) + 7, 3u << 20, 5, 65536};
    enum { N = sizeof sizes / sizeof sizes[0] };
    char *data[N];
    spool_item items[N];
    for (int i = 0; i < N; i++) {
        data[i] = malloc(sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++)
            data[i][k] = (char)(k * 7 + (size_t)i);
        items[i] = (spool_item){data[i], (uint32_t)sizes[i], (uint8_t)(i % 4)};
    }
    /* Two appends: 3 records, then 4 in one write. */
    assert_int_equal(spool_append(s, items, 3, 0, 1, err, sizeof err), 0);
    assert_int_equal(spool_append(s, items + 3, N - 3, 0, 0, err, sizeof err), 0);
    uint64_t size = spool_size(s);
    uint64_t want = SPOOL_HEADER_SIZE;
    for (int i = 0; i < N; i++)
        want += SPOOL_REC_HEADER + sizes[i];
    assert_int_equal(size, want);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, want);
    assert_int_equal(st.st_mode & 0777, 0600);
    spool_close(s);

    spool_open_info info;
    s = spool_open(path, NULL, SPOOL_OPEN_READONLY, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spool_pending(s), N);
    assert_int_equal(spool_pos(s), SPOOL_HEADER_SIZE);
    assert_int_equal(info.pos_found, 0);
    assert_string_equal(spool_hdr(s)->ns, "auditq");
    spool_reader r = {0};
    spool_rec rec;
    spool_reader_fd(&r, spool_fd(s), SPOOL_HEADER_SIZE, size);
    uint64_t off = SPOOL_HEADER_SIZE;
    for (int i = 0; i < N; i++) {
        assert_int_equal(spool_reader_next(&r, &rec), SPOOL_RECORD);
        assert_int_equal(rec.off, off);
        assert_int_equal(rec.len, sizes[i]);
        assert_int_equal(rec.prio, i % 4);
        assert_memory_equal(rec.data, data[i], sizes[i]);
        off += SPOOL_REC_HEADER + sizes[i];
        assert_int_equal(rec.end, off);
    }
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_END);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_END);
    spool_reader_free(&r);

    /* The chunk reader: max_records and max_bytes both stop it. */
    spool_chunk ch;
    memset(&ch, 0, sizeof ch);
    assert_int_equal(spool_read_chunk(spool_fd(s), SPOOL_HEADER_SIZE, size, 2, 1u << 30, &ch, err, sizeof err), 0);
    assert_int_equal(ch.n, 2);
    assert_int_equal(ch.bytes, 101);
    assert_memory_equal(ch.items[1].data, data[1], 100);
    assert_int_equal(ch.end, SPOOL_HEADER_SIZE + 2 * SPOOL_REC_HEADER + 101);
    assert_int_equal(spool_read_chunk(spool_fd(s), ch.end, size, 100, 1u << 20, &ch, err, sizeof err), 0);
    assert_int_equal(ch.n, 2); /* the second record passes 1 MiB */
    assert_int_equal(ch.items[0].len, sizes[2]);
    assert_memory_equal(ch.items[1].data, data[3], sizes[3]);
    assert_int_equal(ch.bad_kind, SPOOL_RECORD);
    spool_chunk_free(&ch);
    spool_close(s);
    for (int i = 0; i < N; i++)
        free(data[i]);
}

/* A torn tail at every truncation offset: the good records before it, and
 * one TORN report with the offset of the incomplete record -- both from
 * memory and from a file, and spool_open(REPAIR) cuts exactly the tail. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    enum { N = 6 };
    uint64_t offs[N + 1];
    char path[PATHLEN], cut[PATHLEN], err[512];
    size_t n;
    path_of(path, sizeof path, "torn");
    path_of(cut, sizeof cut, "torn-cut");
    make_spool(path, N, offs);
    uint8_t *img = slurp(path, &n);
    assert_int_equal(n, offs[N]);
    int checked = 0;
    for (size_t L = 0; L <= n; L++) {
        spool_header h;
        if (L < SPOOL_HEADER_SIZE) {
            assert_int_equal(spool_header_decode(img, L, &h, err, sizeof err), -1);
            continue;
        }
        int whole = 0;
        while (whole < N && offs[whole + 1] <= L)
            whole++;
        int at_boundary = offs[whole] == L;
        for (int mode = 0; mode < 2; mode++) {
            spool_reader r = {0};
            spool_rec rec;
            int fd = -1;
            if (mode == 0) {
                spool_reader_mem(&r, img, L, SPOOL_HEADER_SIZE);
            } else {
                spit(cut, img, L);
                fd = open(cut, O_RDONLY);
                spool_reader_fd(&r, fd, SPOOL_HEADER_SIZE, L);
            }
            for (int i = 0; i < whole; i++) {
                assert_int_equal(spool_reader_next(&r, &rec), SPOOL_RECORD);
                assert_int_equal(rec.off, offs[i]);
                assert_int_equal(rec.len, rec_len(i));
            }
            spool_status st = spool_reader_next(&r, &rec);
            if (at_boundary) {
                assert_int_equal(st, SPOOL_END);
            } else {
                if (st != SPOOL_TORN)
                    fail_msg("L=%zu mode=%d: status %d (%s), expected torn", L, mode, st, rec.why);
                assert_int_equal(rec.off, offs[whole]);
                assert_int_equal(rec.end, L);
                char want[160];
                if (L - offs[whole] < SPOOL_REC_HEADER)
                    snprintf(want, sizeof want, "incomplete record header: only %llu bytes at the end",
                             (unsigned long long)(L - offs[whole]));
                else
                    snprintf(want, sizeof want, "incomplete record: %zu payload bytes declared, %llu present",
                             rec_len(whole), (unsigned long long)(L - offs[whole] - SPOOL_REC_HEADER));
                assert_string_equal(rec.why, want);
                assert_int_equal(spool_reader_next(&r, &rec), SPOOL_END);
            }
            spool_reader_free(&r);
            if (fd >= 0)
                close(fd);
        }
        /* The producer's open cuts the torn tail and keeps every record. */
        spit(cut, img, L);
        char pos[POSLEN];
        snprintf(pos, sizeof pos, "%s.pos", cut);
        unlink(pos);
        spool_open_info info;
        spool *s = spool_open(cut, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err, sizeof err);
        assert_non_null(s);
        assert_int_equal(spool_pending(s), (uint64_t)whole);
        assert_int_equal(spool_size(s), whole ? offs[whole] : SPOOL_HEADER_SIZE);
        assert_int_equal(info.torn_off, at_boundary ? 0 : offs[whole]);
        assert_int_equal(info.torn_bytes, at_boundary ? 0 : L - offs[whole]);
        spool_close(s);
        struct stat st;
        assert_int_equal(stat(cut, &st), 0);
        assert_int_equal((uint64_t)st.st_size, whole ? offs[whole] : SPOOL_HEADER_SIZE);
        checked++;
    }
    assert_int_equal(checked, (int)(n - SPOOL_HEADER_SIZE + 1));
    free(img);
}

/* Reads the image and checks: every record but `skip` comes back intact,
 * and exactly one bad region [offs[skip], offs[skip + 1]) is reported. */
static void expect_one_bad(const uint8_t *img, size_t n, const uint64_t *offs, int N, int skip, const char *ctx)
{
    spool_reader r = {0};
    spool_rec rec;
    spool_status st;
    int good = 0, bad = 0;
    spool_reader_mem(&r, img, n, SPOOL_HEADER_SIZE);
    while ((st = spool_reader_next(&r, &rec)) != SPOOL_END) {
        if (st == SPOOL_RECORD) {
            int i = 0;
            while (i < N && offs[i] != rec.off)
                i++;
            if (i == N || i == skip)
                fail_msg("%s: unexpected record at %llu", ctx, (unsigned long long)rec.off);
            char b[512];
            rec_fill(b, i);
            assert_int_equal(rec.len, rec_len(i));
            assert_memory_equal(rec.data, b, rec.len);
            good++;
        } else {
            if (st != SPOOL_CORRUPT || rec.off != offs[skip] || rec.end != offs[skip + 1])
                fail_msg("%s: status %d [%llu, %llu): %s; expected corrupt [%llu, %llu)", ctx, st,
                         (unsigned long long)rec.off, (unsigned long long)rec.end, rec.why,
                         (unsigned long long)offs[skip], (unsigned long long)offs[skip + 1]);
            bad++;
        }
    }
    spool_reader_free(&r);
    if (good != N - 1 || bad != 1)
        fail_msg("%s: %d good and %d bad, expected %d and 1", ctx, good, bad, N - 1);
}

/* One flipped byte at every offset of a middle record and of the last:
 * that record is reported with its exact extent, all others read. */
static void test_flipped_byte_every_offset(void **state)
{
    (void)state;
    enum { N = 5 };
    uint64_t offs[N + 1];
    char path[PATHLEN], ctx[64];
    size_t n;
    path_of(path, sizeof path, "flip");
    make_spool(path, N, offs);
    uint8_t *img = slurp(path, &n);
    int cases = 0;
    for (int victim = 2; victim < N; victim += N - 3) { /* record 2 (middle) and 4 (last) */
        for (uint64_t at = offs[victim]; at < offs[victim + 1]; at++) {
            for (int x = 0; x < 2; x++) {
                img[at] ^= x ? 0x01 : 0xff;
                snprintf(ctx, sizeof ctx, "record %d byte %llu ^%02x", victim,
                         (unsigned long long)(at - offs[victim]), x ? 1 : 0xff);
                expect_one_bad(img, n, offs, N, victim, ctx);
                img[at] ^= x ? 0x01 : 0xff;
                cases++;
            }
        }
    }
    assert_int_equal(cases, 2 * (int)((offs[3] - offs[2]) + (offs[5] - offs[4])));

    /* The exact reasons. */
    spool_reader r = {0};
    spool_rec rec;
    img[offs[2] + SPOOL_REC_HEADER + 3] ^= 0x20; /* payload */
    spool_reader_mem(&r, img, n, offs[2]);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_CORRUPT);
    assert_non_null(strstr(rec.why, "payload checksum mismatch (stored "));
    assert_non_null(strstr(rec.why, "); the 33-byte record is skipped"));
    img[offs[2] + SPOOL_REC_HEADER + 3] ^= 0x20;
    img[offs[2]] = 'X'; /* marker */
    spool_reader_mem(&r, img, n, offs[2]);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_CORRUPT);
    assert_string_equal(rec.why, "no record marker; 53 bytes skipped to the next record");
    img[offs[2]] = 0xF5;
    img[offs[2] + 5] ^= 0x10; /* length */
    spool_reader_mem(&r, img, n, offs[2]);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_CORRUPT);
    assert_string_equal(rec.why, "record header checksum mismatch; 53 bytes skipped to the next record");
    img[offs[2] + 5] ^= 0x10;
    /* Two bad records in a row: two reports, the rest read. */
    img[offs[1] + SPOOL_REC_HEADER] ^= 1;
    img[offs[2] + 1] ^= 1;
    spool_reader_mem(&r, img, n, SPOOL_HEADER_SIZE);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_RECORD);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_CORRUPT);
    assert_int_equal(rec.off, offs[1]);
    assert_int_equal(rec.end, offs[2]);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_CORRUPT);
    assert_int_equal(rec.off, offs[2]);
    assert_int_equal(rec.end, offs[3]);
    assert_int_equal(spool_reader_next(&r, &rec), SPOOL_RECORD);
    assert_int_equal(rec.off, offs[3]);
    spool_reader_free(&r);
    free(img);
}

/* Declared lengths are hostile: a header with a valid checksum claiming
 * 4 GiB, or more than the file holds, never makes the reader read past the
 * end or allocate it. */
static void test_hostile_lengths(void **state)
{
    (void)state;
    uint8_t img[SPOOL_HEADER_SIZE + 2 * SPOOL_REC_HEADER + 64];
    spool_header h = {.id = 7};
    snprintf(h.ns, sizeof h.ns, "auditq");
    spool_header_encode(&h, img);
    uint8_t *rec = img + SPOOL_HEADER_SIZE;
    memcpy(rec, "\xF5REC", 4);
    uint32_t len = 0xFFFFFFFFu;
    memcpy(rec + 4, &len, 4); /* little-endian host assumed by this test */
    memset(rec + 8, 0, 8);
    uint32_t hc = spool_crc32c(0, rec, 16);
    memcpy(rec + 16, &hc, 4);
    memset(rec + SPOOL_REC_HEADER, 'x', sizeof img - SPOOL_HEADER_SIZE - SPOOL_REC_HEADER);
    spool_reader r = {0};
    spool_rec rr;
    spool_reader_mem(&r, img, sizeof img, SPOOL_HEADER_SIZE);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_CORRUPT);
    assert_string_equal(rr.why, "impossible record length; 104 bytes skipped to the end of the file");
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_END);
    /* 1000 bytes declared, 84 present, nothing valid after: torn. */
    len = 1000;
    memcpy(rec + 4, &len, 4);
    hc = spool_crc32c(0, rec, 16);
    memcpy(rec + 16, &hc, 4);
    spool_reader_mem(&r, img, sizeof img, SPOOL_HEADER_SIZE);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_TORN);
    assert_string_equal(rr.why, "incomplete record: 1000 payload bytes declared, 84 present");
    /* ...but a good record inside that span: corrupt (wrong length). */
    uint8_t good[SPOOL_REC_HEADER];
    spool_record_header(good, 1, "abc", 3);
    memcpy(rec + 40, good, sizeof good);
    memcpy(rec + 40 + SPOOL_REC_HEADER, "abc", 3);
    spool_reader_mem(&r, img, sizeof img, SPOOL_HEADER_SIZE);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_CORRUPT);
    assert_string_equal(rr.why, "record of 1000 bytes overlaps the next record at offset 136; 40 bytes skipped");
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_RECORD);
    assert_int_equal(rr.off, 136);
    assert_memory_equal(rr.data, "abc", 3);
    assert_int_equal(rr.prio, 1);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_CORRUPT); /* the 'x' filler after it */
    assert_int_equal(rr.end, sizeof img);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_END);
    /* Pure garbage after the header: one corrupt region, no record. */
    memset(rec, 0xF5, sizeof img - SPOOL_HEADER_SIZE);
    spool_reader_mem(&r, img, sizeof img, SPOOL_HEADER_SIZE);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_CORRUPT);
    assert_int_equal(rr.end, sizeof img);
    assert_int_equal(spool_reader_next(&r, &rr), SPOOL_END);
    spool_reader_free(&r);
}

/* ---- position, crash, lock ------------------------------------------------- */

static void test_reopen_keeps_position(void **state)
{
    (void)state;
    enum { N = 10 };
    uint64_t offs[N + 1];
    char path[PATHLEN], pos[POSLEN], copy[PATHLEN], err[512];
    spool_open_info info;
    spool_chunk ch;
    memset(&ch, 0, sizeof ch);
    path_of(path, sizeof path, "pos");
    path_of(copy, sizeof copy, "pos-copy");
    snprintf(pos, sizeof pos, "%s.pos", path);
    make_spool(path, N, offs);

    spool *s = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spool_read_chunk(spool_fd(s), spool_pos(s), spool_size(s), 4, 1 << 20, &ch, err, sizeof err), 0);
    assert_int_equal(ch.n, 4);
    assert_int_equal(ch.end, offs[4]);
    assert_int_equal(spool_set_pos(s, ch.end, ch.n, 1, 1, err, sizeof err), 0);
    assert_int_equal(spool_read_chunk(spool_fd(s), spool_pos(s), spool_size(s), 3, 1 << 20, &ch, err, sizeof err), 0);
    assert_int_equal(spool_set_pos(s, ch.end, ch.n, 1, 1, err, sizeof err), 0);
    assert_int_equal(spool_pos(s), offs[7]);
    assert_int_equal(spool_pending(s), 3);
    /* "Crash": no close-time cleanup, the files stay as they are. */
    spool_close(s);

    s = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(info.pos_found, 1);
    assert_int_equal(spool_pos(s), offs[7]);
    assert_int_equal(spool_pending(s), 3);
    assert_int_equal(spool_read_chunk(spool_fd(s), spool_pos(s), spool_size(s), 100, 1 << 20, &ch, err, sizeof err), 0);
    assert_int_equal(ch.n, 3);
    char b[512];
    rec_fill(b, 7);
    assert_memory_equal(ch.items[0].data, b, rec_len(7));
    spool_close(s);

    /* A torn write of the newest position slot: the previous one counts
     * (one chunk replays again, nothing is skipped). */
    size_t pn;
    uint8_t *p = slurp(pos, &pn);
    assert_int_equal(pn, 128);
    /* sequence 2 was the second write: slot 0 */
    p[24] ^= 0xff;
    spit(pos, p, pn);
    s = spool_open(path, NULL, SPOOL_OPEN_READONLY, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spool_pos(s), offs[4]);
    assert_int_equal(spool_pending(s), 6);
    spool_close(s);
    free(p);

    /* The same bytes under another name have no position: from the start. */
    size_t dn;
    uint8_t *d = slurp(path, &dn);
    spit(copy, d, dn);
    s = spool_open(copy, NULL, SPOOL_OPEN_READONLY, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(info.pos_found, 0);
    assert_int_equal(spool_pos(s), SPOOL_HEADER_SIZE);
    assert_int_equal(spool_pending(s), N);
    spool_close(s);
    free(d);

    /* Replaying to the end cuts the file back to a fresh header with a new
     * id; the position then is the header end. */
    s = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err, sizeof err);
    assert_non_null(s);
    uint64_t old_id = spool_hdr(s)->id;
    assert_int_equal(spool_set_pos(s, spool_size(s), 6, 1, 1, err, sizeof err), 0);
    assert_int_equal(spool_size(s), SPOOL_HEADER_SIZE);
    assert_int_equal(spool_pending(s), 0);
    assert_true(spool_hdr(s)->id != old_id);
    spool_close(s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, SPOOL_HEADER_SIZE);

    /* A position past the end (a crash right after a cut-back, before the
     * position was written) means: from the first record. */
    make_spool(path, 3, offs);
    s = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spool_read_chunk(spool_fd(s), spool_pos(s), spool_size(s), 100, 1 << 20, &ch, err, sizeof err), 0);
    assert_int_equal(spool_set_pos(s, offs[3], 3, 0, 1, err, sizeof err), 0); /* no cut-back */
    spool_close(s);
    assert_int_equal(truncate(path, (off_t)offs[1]), 0);
    s = spool_open(path, NULL, SPOOL_OPEN_READONLY, &info, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(info.pos_found, 0);
    assert_int_equal(spool_pos(s), SPOOL_HEADER_SIZE);
    assert_int_equal(spool_pending(s), 1);
    spool_close(s);
    spool_chunk_free(&ch);
}

static void test_lock_and_bad_files(void **state)
{
    (void)state;
    char path[PATHLEN], err[512], want[1024];
    int locked = 0;
    path_of(path, sizeof path, "lock");
    spool *a = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, &locked, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(locked, 0);
    spool *b = spool_open(path, NULL, 0, NULL, &locked, err, sizeof err);
    assert_null(b);
    assert_int_equal(locked, 1);
    snprintf(want, sizeof want,
             "spool %s is in use: another auditq handle or process holds its lock (a producer with this "
             "spool_path, or auditqctl spool replay); give every producer process its own spool_path",
             path);
    assert_string_equal(err, want);
    /* Reading (inspect, dry run) needs no lock. */
    b = spool_open(path, NULL, SPOOL_OPEN_READONLY, NULL, &locked, err, sizeof err);
    assert_non_null(b);
    spool_close(b);
    spool_close(a);
    b = spool_open(path, NULL, 0, NULL, &locked, err, sizeof err);
    assert_non_null(b);
    spool_close(b);

    /* Not a spool. */
    spit(path, "hello world\n", 12);
    assert_null(spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, NULL, err, sizeof err));
    snprintf(want, sizeof want,
             "%s is not a usable auditq spool: no spool header (the file does not start with \"AUDITQSP\"); "
             "move it away or choose another path",
             path);
    assert_string_equal(err, want);
    /* Missing, for auditqctl (no create). */
    unlink(path);
    assert_null(spool_open(path, NULL, 0, NULL, NULL, err, sizeof err));
    snprintf(want, sizeof want, "cannot open spool %s: No such file or directory", path);
    assert_string_equal(err, want);
    /* Empty. */
    spit(path, "", 0);
    assert_null(spool_open(path, NULL, 0, NULL, NULL, err, sizeof err));
    snprintf(want, sizeof want, "spool %s is empty (0 bytes): nothing was ever spooled to it", path);
    assert_string_equal(err, want);

    /* Namespace: unreplayed records of another namespace are refused... */
    uint64_t offs[3];
    unlink(path);
    make_spool(path, 2, offs);
    assert_null(spool_open(path, "other", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, NULL, err, sizeof err));
    snprintf(want, sizeof want,
             "spool %s holds 2 unreplayed events for namespace 'auditq', not 'other'; replay them with "
             "'auditqctl spool replay %s' (it uses the file's namespace) or use namespace 'auditq'",
             path, path);
    assert_string_equal(err, want);
    /* ...an emptied spool is relabelled. */
    a = spool_open(path, "auditq", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, NULL, err, sizeof err);
    assert_int_equal(spool_set_pos(a, spool_size(a), 2, 1, 1, err, sizeof err), 0);
    spool_close(a);
    a = spool_open(path, "other", SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, NULL, NULL, err, sizeof err);
    assert_non_null(a);
    assert_string_equal(spool_hdr(a)->ns, "other");
    spool_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_flipped_byte_every_offset),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_reopen_keeps_position),
        cmocka_unit_test(test_lock_and_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
