/* spool.c -- the producer spool file.
 *
 * WHY. When Redis is unreachable or times out, libauditq writes the encoded
 * jobs to a local append-only file instead of failing the application or
 * dropping them, and pushes them to Redis later, in file order (the threads
 * and failure windows are described in producer/spooler.c). This file is the
 * format, shared by the library, `auditqctl spool` and the fuzz target.
 *
 * FORMAT (little-endian; docs/PROTOCOL.md "Producer spool file" is the
 * user-facing copy):
 *
 *   file header, 96 bytes
 *     0  8  magic "AUDITQSP"
 *     8  2  version = 1
 *    10  2  header size = 96
 *    12  4  flags = 0
 *    16  8  spool id (random; ties PATH.pos to this file)
 *    24  1  namespace length n (1..64)
 *    25 64  namespace, zero padded
 *    89  3  zero
 *    92  4  CRC-32C of bytes 0..91
 *   records, back to back from offset 96
 *     0  4  marker F5 52 45 43 ("\xF5REC"; 0xF5 never occurs in UTF-8)
 *     4  4  payload length L (1..16 MiB)
 *     8  1  priority 0..3 (critical..low): the queue it goes to
 *     9  3  zero
 *    12  4  CRC-32C of the payload
 *    16  4  CRC-32C of bytes 0..15 of this header
 *    20  L  payload: the exact job bytes LPUSHed to Redis
 *
 * Records are only ever appended, whole: one pwrite per batch, all or none
 * (a failed write is cut off again). A replayed prefix is not rewritten;
 * the replay position lives in PATH.pos (two 64-byte slots written
 * alternately, each with a sequence number and a CRC, so a torn position
 * write falls back to the previous one):
 *     0  8  magic "AQSPPOS1"
 *     8  8  spool id of the file it belongs to
 *    16  8  sequence number (the higher valid slot wins)
 *    24  8  offset of the next record to replay
 *    32  4  CRC-32C of bytes 0..31
 * A position for another spool id, below the header or past the end of the
 * file means "start at the first record". When every record is replayed the
 * producer cuts the file back to its header (ftruncate, then the new
 * position; a crash in between leaves a position past the end, i.e. none).
 *
 * READING treats the file as hostile. Every length is checked against the
 * bytes present and against 16 MiB before it is used, a payload is handed
 * out only when both its header CRC and its payload CRC match, and the
 * result is one of: a good record; a corrupt region [off, end) that is
 * skipped (a bad header: the reader resynchronises on the next offset that
 * holds a valid record header -- the marker plus a matching header CRC --
 * so the records after it are still read; a bad payload CRC under a good
 * header: exactly that record is skipped); or a torn tail (an incomplete
 * last record: a crash or power loss in the middle of an append). A torn or
 * corrupt record is reported with its offset and never replayed.
 *
 * LOCKING. The data file is flock()ed exclusively by its one user (a
 * producer handle or `auditqctl spool replay`); a second one gets a clear
 * error naming the path. flock does not work across NFS: keep spools on a
 * local disk.
 *
 * The parts: this file is the format (CRC-32C, headers) and the hostile-
 * input reader; spool_file.c the spool handle (open, lock, append, the
 * position file); spool_replay.c reading chunks back and pushing them to
 * Redis.
 */
#include "spool.h"
#include "spool_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC_MARKER0 0xF5
static const uint8_t rec_marker[4] = {0xF5, 'R', 'E', 'C'};
#define WINDOW (1u << 20) /* read-ahead of the fd reader */

/* ---- CRC-32C, slicing-by-8 ----------------------------------------------- */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][b[4]] ^ crc_tab[2][b[5]] ^ crc_tab[1][b[6]] ^
              crc_tab[0][b[7]];
        b += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_tab[0][(crc ^ *b++) & 0xff];
    return ~crc;
}

/* ---- headers ------------------------------------------------------------- */

void spool_header_encode(const spool_header *h, uint8_t out[SPOOL_HEADER_SIZE])
{
    size_t n = strlen(h->ns);
    memset(out, 0, SPOOL_HEADER_SIZE);
    memcpy(out, SPOOL_FILE_MAGIC, 8);
    put16(out + 8, SPOOL_VERSION);
    put16(out + 10, SPOOL_HEADER_SIZE);
    put64(out + 16, h->id);
    out[24] = (uint8_t)n;
    memcpy(out + 25, h->ns, n);
    put32(out + 92, spool_crc32c(0, out, 92));
}

int spool_header_decode(const void *p, size_t n, spool_header *h, char *err, size_t errlen)
{
    const uint8_t *b = p;
    memset(h, 0, sizeof *h);
    if (n < 8 || memcmp(b, SPOOL_FILE_MAGIC, 8) != 0) {
        snprintf(err, errlen, "no spool header (the file does not start with \"AUDITQSP\")");
        return -1;
    }
    if (n < SPOOL_HEADER_SIZE) {
        snprintf(err, errlen, "truncated header: %zu of %d bytes", n, SPOOL_HEADER_SIZE);
        return -1;
    }
    if (get32(b + 92) != spool_crc32c(0, b, 92)) {
        snprintf(err, errlen, "header checksum mismatch (damaged header)");
        return -1;
    }
    if (get16(b + 8) != SPOOL_VERSION) {
        snprintf(err, errlen, "spool format version %u, this build reads version %d", get16(b + 8),
                 SPOOL_VERSION);
        return -1;
    }
    unsigned nslen = b[24];
    aq_keys k;
    if (get16(b + 10) != SPOOL_HEADER_SIZE || get32(b + 12) != 0 || nslen == 0 || nslen > AQ_NS_MAX) {
        snprintf(err, errlen, "unexpected header fields (size %u, flags %u, namespace length %u)",
                 get16(b + 10), get32(b + 12), nslen);
        return -1;
    }
    memcpy(h->ns, b + 25, nslen);
    h->ns[nslen] = '\0';
    if (keys_init(&k, h->ns) != 0) {
        snprintf(err, errlen, "header names an invalid namespace");
        return -1;
    }
    h->id = get64(b + 16);
    return 0;
}

void spool_record_header(uint8_t out[SPOOL_REC_HEADER], uint8_t prio, const void *payload, uint32_t len)
{
    memcpy(out, rec_marker, 4);
    put32(out + 4, len);
    out[8] = prio;
    out[9] = out[10] = out[11] = 0;
    put32(out + 12, spool_crc32c(0, payload, len));
    put32(out + 16, spool_crc32c(0, out, 16));
}

/* NULL when h is a valid record header, else why not. */
static const char *rec_header_check(const uint8_t *h)
{
    if (memcmp(h, rec_marker, 4) != 0)
        return "no record marker";
    if (get32(h + 16) != spool_crc32c(0, h, 16))
        return "record header checksum mismatch";
    uint32_t len = get32(h + 4);
    if (len == 0 || len > SPOOL_MAX_PAYLOAD)
        return "impossible record length";
    if (h[8] > 3 || h[9] || h[10] || h[11])
        return "bad priority or flags";
    return NULL;
}

/* ---- reader -------------------------------------------------------------- */

void spool_reader_fd(spool_reader *r, int fd, uint64_t start, uint64_t limit)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->pos = start;
    r->limit = limit;
}

void spool_reader_mem(spool_reader *r, const void *p, size_t n, uint64_t start)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->mem = p;
    r->pos = start;
    r->limit = n;
}

void spool_reader_free(spool_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    r->buf = NULL;
    r->buf_cap = r->buf_len = 0;
}

/* Bytes [off, off + n) (n <= limit - off), or NULL with why set (read
 * error, out of memory, or the file is shorter than the limit). */
static const uint8_t *rd_get(spool_reader *r, uint64_t off, size_t n, char *why, size_t whylen)
{
    if (off > r->limit || n > r->limit - off) {
        snprintf(why, whylen, "internal: read past the limit");
        return NULL;
    }
    if (r->mem)
        return r->mem + off;
    if (off >= r->buf_off && off - r->buf_off + n <= r->buf_len)
        return r->buf + (off - r->buf_off);
    size_t want = n < WINDOW ? WINDOW : n;
    if (want > r->limit - off)
        want = (size_t)(r->limit - off);
    if (want > r->buf_cap) {
        uint8_t *nb = realloc(r->buf, want);
        if (!nb) {
            snprintf(why, whylen, "out of memory reading %zu bytes", want);
            return NULL;
        }
        r->buf = nb;
        r->buf_cap = want;
    }
    r->buf_len = 0;
    r->buf_off = off;
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(why, whylen, "read error at offset %llu: %s", (unsigned long long)(off + got),
                     strerror(errno));
            return NULL;
        }
        if (k == 0) {
            snprintf(why, whylen, "the file shrank to %llu bytes while being read",
                     (unsigned long long)(off + got));
            return NULL;
        }
        got += (size_t)k;
    }
    r->buf_len = got;
    return r->buf;
}

/* Finds the first offset >= from holding a valid record header (it may
 * describe a record running past the limit). 1 = found (*at), 0 = none,
 * -1 = read error (why). Linear: a candidate costs one 16-byte CRC. */
static int find_next(spool_reader *r, uint64_t from, uint64_t *at, char *why, size_t whylen)
{
    uint64_t o = from;
    while (r->limit >= SPOOL_REC_HEADER && o <= r->limit - SPOOL_REC_HEADER) {
        size_t span = r->limit - o < WINDOW ? (size_t)(r->limit - o) : WINDOW;
        const uint8_t *p = rd_get(r, o, span, why, whylen);
        if (!p)
            return -1;
        size_t last = span - SPOOL_REC_HEADER; /* candidates at p[0..last] */
        size_t i = 0;
        while (i <= last) {
            const uint8_t *hit = memchr(p + i, REC_MARKER0, last - i + 1);
            if (!hit)
                break;
            i = (size_t)(hit - p);
            if (rec_header_check(hit) == NULL) {
                *at = o + i;
                return 1;
            }
            i++;
        }
        o += last + 1;
    }
    return 0;
}

spool_status spool_reader_next(spool_reader *r, spool_rec *rec)
{
    uint64_t o = r->pos, next = 0;
    memset(rec, 0, sizeof *rec);
    rec->off = o;
    if (o >= r->limit) {
        rec->end = o;
        return SPOOL_END;
    }
    uint64_t avail = r->limit - o;
    if (avail < SPOOL_REC_HEADER) {
        snprintf(rec->why, sizeof rec->why, "incomplete record header: only %llu bytes at the end",
                 (unsigned long long)avail);
        rec->end = r->pos = r->limit;
        return SPOOL_TORN;
    }
    const uint8_t *h = rd_get(r, o, SPOOL_REC_HEADER, rec->why, sizeof rec->why);
    if (!h)
        return SPOOL_IOERR;
    const char *bad = rec_header_check(h);
    if (bad) {
        char what[64];
        snprintf(what, sizeof what, "%s", bad);
        int f = find_next(r, o + 1, &next, rec->why, sizeof rec->why);
        if (f < 0)
            return SPOOL_IOERR;
        rec->end = r->pos = f ? next : r->limit;
        snprintf(rec->why, sizeof rec->why, "%s; %llu bytes skipped%s", what,
                 (unsigned long long)(rec->end - o), f ? " to the next record" : " to the end of the file");
        return SPOOL_CORRUPT;
    }
    uint32_t len = get32(h + 4);
    uint32_t stored = get32(h + 12);
    uint8_t prio = h[8];
    if ((uint64_t)SPOOL_REC_HEADER + len > avail) {
        /* A good header whose record runs past the end: torn -- unless a
         * good record starts inside it, then its length cannot be right. */
        int f = find_next(r, o + 1, &next, rec->why, sizeof rec->why);
        if (f < 0)
            return SPOOL_IOERR;
        if (f) {
            snprintf(rec->why, sizeof rec->why,
                     "record of %u bytes overlaps the next record at offset %llu; %llu bytes skipped", len,
                     (unsigned long long)next, (unsigned long long)(next - o));
            rec->end = r->pos = next;
            return SPOOL_CORRUPT;
        }
        snprintf(rec->why, sizeof rec->why, "incomplete record: %u payload bytes declared, %llu present", len,
                 (unsigned long long)(avail - SPOOL_REC_HEADER));
        rec->end = r->pos = r->limit;
        return SPOOL_TORN;
    }
    const uint8_t *p = rd_get(r, o, SPOOL_REC_HEADER + (size_t)len, rec->why, sizeof rec->why);
    if (!p)
        return SPOOL_IOERR;
    uint32_t got = spool_crc32c(0, p + SPOOL_REC_HEADER, len);
    rec->end = r->pos = o + SPOOL_REC_HEADER + len;
    if (got != stored) {
        snprintf(rec->why, sizeof rec->why,
                 "payload checksum mismatch (stored %08x, computed %08x); the %u-byte record is skipped",
                 (unsigned)stored, (unsigned)got, len);
        return SPOOL_CORRUPT;
    }
    rec->prio = prio;
    rec->len = len;
    rec->data = (const char *)p + SPOOL_REC_HEADER;
    return SPOOL_RECORD;
}
