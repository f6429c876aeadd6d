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
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REC_MARKER0 0xF5
static const uint8_t rec_marker[4] = {0xF5, 'R', 'E', 'C'};
static const char pos_magic[8] = {'A', 'Q', 'S', 'P', 'P', 'O', 'S', '1'};
#define POS_SLOT 64
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

/* ---- little-endian helpers ----------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
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

/* ---- the spool handle ---------------------------------------------------- */

struct spool {
    int fd, pos_fd;
    int readonly;
    char *path;
    spool_header hdr;
    uint64_t size;      /* end of the last appended record */
    uint64_t pos;       /* next record to replay */
    uint64_t pending;   /* good records in [pos, size) */
    uint64_t pos_seq;
    aq_buf wbuf;        /* append staging */
};

int spool_fd(const spool *s) { return s->fd; }
uint64_t spool_size(const spool *s) { return s->size; }
uint64_t spool_pos(const spool *s) { return s->pos; }
uint64_t spool_pending(const spool *s) { return s->pending; }
const spool_header *spool_hdr(const spool *s) { return &s->hdr; }
const char *spool_path(const spool *s) { return s->path; }

static int write_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *b = p;
    while (n) {
        ssize_t k = pwrite(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t k = pread(fd, (char *)p + *got, n - *got, (off_t)(off + *got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        *got += (size_t)k;
    }
    return 0;
}

static uint64_t new_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id || id == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
    }
    return id;
}

/* fsync of the directory holding path, so a new file's name is durable. */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        (void)fsync(d);
        close(d);
    }
}

static int write_header(spool *s, char *err, size_t errlen)
{
    uint8_t h[SPOOL_HEADER_SIZE];
    spool_header_encode(&s->hdr, h);
    if (ftruncate(s->fd, 0) != 0 || write_all(s->fd, h, sizeof h, 0) != 0 || fdatasync(s->fd) != 0) {
        snprintf(err, errlen, "cannot write the header of spool %s: %s", s->path, strerror(errno));
        return -1;
    }
    s->size = SPOOL_HEADER_SIZE;
    s->pos = SPOOL_HEADER_SIZE;
    s->pending = 0;
    return 0;
}

static void pos_slot_encode(uint8_t *b, uint64_t id, uint64_t seq, uint64_t pos)
{
    memset(b, 0, POS_SLOT);
    memcpy(b, pos_magic, 8);
    put64(b + 8, id);
    put64(b + 16, seq);
    put64(b + 24, pos);
    put32(b + 32, spool_crc32c(0, b, 32));
}

static int write_pos(spool *s, uint64_t pos, int sync, char *err, size_t errlen)
{
    uint8_t b[POS_SLOT];
    uint64_t seq = s->pos_seq + 1;
    pos_slot_encode(b, s->hdr.id, seq, pos);
    if (write_all(s->pos_fd, b, sizeof b, (seq % 2) * POS_SLOT) != 0 || (sync && fdatasync(s->pos_fd) != 0)) {
        snprintf(err, errlen, "cannot write the replay position to %s%s: %s", s->path, SPOOL_POS_SUFFIX,
                 strerror(errno));
        return -1;
    }
    s->pos_seq = seq;
    return 0;
}

/* Reads PATH.pos (fd may be -1): sets s->pos from the valid slot of this
 * file's id with the highest sequence number (0 when there is none) and
 * s->pos_seq to the highest sequence number seen, so writes keep
 * alternating slots. */
static void read_pos(spool *s, int fd)
{
    uint8_t b[SPOOL_POS_SIZE];
    size_t got = 0;
    uint64_t best = 0;
    int found = 0;
    s->pos = 0;
    s->pos_seq = 0;
    if (fd < 0 || read_all(fd, b, sizeof b, 0, &got) != 0)
        return;
    for (size_t slot = 0; slot + POS_SLOT <= got; slot += POS_SLOT) {
        const uint8_t *p = b + slot;
        if (memcmp(p, pos_magic, 8) != 0 || get32(p + 32) != spool_crc32c(0, p, 32))
            continue;
        uint64_t seq = get64(p + 16);
        if (seq > s->pos_seq)
            s->pos_seq = seq;
        if (get64(p + 8) == s->hdr.id && (!found || seq > best)) {
            found = 1;
            best = seq;
            s->pos = get64(p + 24);
        }
    }
}

void spool_close(spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->pos_fd >= 0)
        close(s->pos_fd);
    free(s->path);
    free(s->wbuf.data);
    free(s);
}

spool *spool_open(const char *path, const char *ns, int flags, spool_open_info *info, int *locked,
                  char *err, size_t errlen)
{
    spool_open_info dummy;
    spool *s = NULL;
    struct stat st;
    char why[200];
    int created = 0;
    int ro = (flags & SPOOL_OPEN_READONLY) != 0;

    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    if (locked)
        *locked = 0;
    s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        snprintf(err, errlen, "out of memory opening spool %s", path);
        goto fail;
    }
    s->fd = s->pos_fd = -1;
    s->readonly = ro;
    int oflags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    s->fd = open(path, oflags, 0600);
    if (s->fd < 0 && errno == ENOENT && (flags & SPOOL_OPEN_CREATE) && !ro) {
        s->fd = open(path, oflags | O_CREAT | O_EXCL, 0600);
        created = s->fd >= 0;
        if (s->fd < 0 && errno == EEXIST)
            s->fd = open(path, oflags, 0600);
    }
    if (s->fd < 0) {
        snprintf(err, errlen, "cannot open spool %s: %s%s", path, strerror(errno),
                 errno == ENOENT && !(flags & SPOOL_OPEN_CREATE) ? "" : "; check the path and its permissions");
        goto fail;
    }
    if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "spool %s is not a regular file", path);
        goto fail;
    }
    if (!ro && flock(s->fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            if (locked)
                *locked = 1;
            snprintf(err, errlen,
                     "spool %s is in use: another auditq handle or process holds its lock "
                     "(a producer with this spool_path, or auditqctl spool replay); "
                     "give every producer process its own spool_path",
                     path);
        } else {
            snprintf(err, errlen, "cannot lock spool %s: %s", path, strerror(errno));
        }
        goto fail;
    }
    /* Re-stat under the lock: the previous owner may have just written. */
    if (fstat(s->fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat spool %s: %s", path, strerror(errno));
        goto fail;
    }
    s->size = (uint64_t)st.st_size;
    if (s->size == 0 && !ro && (flags & SPOOL_OPEN_CREATE)) {
        /* New, or created by a process that died before its header. */
        s->hdr.id = new_id();
        snprintf(s->hdr.ns, sizeof s->hdr.ns, "%s", ns ? ns : "auditq");
        if (write_header(s, err, errlen) != 0)
            goto fail;
        if (created)
            sync_dir(path);
    } else {
        uint8_t h[SPOOL_HEADER_SIZE];
        size_t got = 0;
        if (read_all(s->fd, h, sizeof h, 0, &got) != 0) {
            snprintf(err, errlen, "cannot read spool %s: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0) {
            snprintf(err, errlen, "spool %s is empty (0 bytes): nothing was ever spooled to it", path);
            goto fail;
        }
        if (spool_header_decode(h, got, &s->hdr, why, sizeof why) != 0) {
            if ((flags & SPOOL_OPEN_REPAIR) && s->size <= SPOOL_HEADER_SIZE && got >= 8 &&
                memcmp(h, SPOOL_FILE_MAGIC, 8) == 0) {
                /* Our own header, damaged while being rewritten; no record
                 * can be behind it, so nothing is lost by starting over. */
                s->hdr.id = new_id();
                snprintf(s->hdr.ns, sizeof s->hdr.ns, "%s", ns ? ns : "auditq");
                if (write_header(s, err, errlen) != 0)
                    goto fail;
            } else {
                snprintf(err, errlen, "%s is not a usable auditq spool: %s; move it away or choose another path",
                         path, why);
                goto fail;
            }
        }
    }

    /* The replay position. */
    char ppath[PATH_MAX];
    if ((size_t)snprintf(ppath, sizeof ppath, "%s%s", path, SPOOL_POS_SUFFIX) >= sizeof ppath) {
        snprintf(err, errlen, "spool path %s is too long", path);
        goto fail;
    }
    s->pos_fd = open(ppath, (ro ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC, 0600);
    if (s->pos_fd < 0 && !(ro && errno == ENOENT)) {
        snprintf(err, errlen, "cannot open the replay position file %s: %s; check the directory's permissions",
                 ppath, strerror(errno));
        goto fail;
    }
    read_pos(s, s->pos_fd);
    info->pos_found = s->pos >= SPOOL_HEADER_SIZE && s->pos <= s->size;
    if (!info->pos_found)
        s->pos = SPOOL_HEADER_SIZE; /* none, another file's, or past a cut-back end */

    /* Count what waits, and find a torn or corrupt tail. */
    spool_reader r = {0};
    spool_rec rec;
    uint64_t tail_off = 0;
    int tail_bad = 0;
    spool_reader_fd(&r, s->fd, s->pos, s->size);
    for (;;) {
        spool_status stt = spool_reader_next(&r, &rec);
        if (stt == SPOOL_END)
            break;
        if (stt == SPOOL_IOERR) {
            snprintf(err, errlen, "spool %s: %s", path, rec.why);
            spool_reader_free(&r);
            goto fail;
        }
        if (stt == SPOOL_RECORD) {
            s->pending++;
            tail_bad = 0;
        } else if (rec.end == s->size) {
            tail_bad = 1; /* nothing good follows */
            tail_off = rec.off;
            snprintf(info->torn_why, sizeof info->torn_why, "%s", rec.why);
        }
    }
    spool_reader_free(&r);
    if (ro)
        return s;

    if (tail_bad && (flags & SPOOL_OPEN_REPAIR)) {
        /* Appending after garbage would bury it mid-file; cut it. Only an
         * interrupted append (or damage) leaves bytes here, and none of
         * them is a good record. */
        if (ftruncate(s->fd, (off_t)tail_off) != 0 || fdatasync(s->fd) != 0) {
            snprintf(err, errlen, "cannot cut the damaged tail of spool %s: %s", path, strerror(errno));
            goto fail;
        }
        info->torn_off = tail_off;
        info->torn_bytes = s->size - tail_off;
        s->size = tail_off;
    }
    if (ns && strcmp(ns, s->hdr.ns) != 0) {
        if (s->pending > 0 || !(flags & SPOOL_OPEN_REPAIR)) {
            snprintf(err, errlen,
                     "spool %s holds %llu unreplayed events for namespace '%s', not '%s'; replay them with "
                     "'auditqctl spool replay %s' (it uses the file's namespace) or use namespace '%s'",
                     path, (unsigned long long)s->pending, s->hdr.ns, ns, path, s->hdr.ns);
            goto fail;
        }
        s->hdr.id = new_id();
        snprintf(s->hdr.ns, sizeof s->hdr.ns, "%s", ns);
        if (write_header(s, err, errlen) != 0 || write_pos(s, s->pos, 1, err, errlen) != 0)
            goto fail;
        return s;
    }
    if ((flags & SPOOL_OPEN_REPAIR) && s->pos == s->size && s->size > SPOOL_HEADER_SIZE) {
        if (spool_set_pos(s, s->size, 0, 1, 1, err, errlen) != 0)
            goto fail;
    }
    return s;
fail:
    spool_close(s);
    return NULL;
}

int spool_sync(spool *s, char *err, size_t errlen)
{
    if (fdatasync(s->fd) != 0) {
        snprintf(err, errlen, "fdatasync of spool %s: %s", s->path, strerror(errno));
        return -1;
    }
    return 0;
}

int spool_append(spool *s, const spool_item *items, size_t n, uint64_t max_bytes, int sync, char *err,
                 size_t errlen)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].len == 0 || items[i].len > SPOOL_MAX_PAYLOAD || items[i].prio > 3) {
            snprintf(err, errlen, "record of %u bytes, priority %u cannot be spooled", items[i].len,
                     items[i].prio);
            return -1;
        }
        total += SPOOL_REC_HEADER + (uint64_t)items[i].len;
    }
    if (max_bytes && s->size + total > max_bytes)
        return 1;
    s->wbuf.len = 0;
    if (aq_buf_reserve(&s->wbuf, (size_t)total) != 0) {
        snprintf(err, errlen, "out of memory staging %llu spool bytes", (unsigned long long)total);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t h[SPOOL_REC_HEADER];
        spool_record_header(h, items[i].prio, items[i].data, items[i].len);
        memcpy(s->wbuf.data + s->wbuf.len, h, sizeof h);
        memcpy(s->wbuf.data + s->wbuf.len + sizeof h, items[i].data, items[i].len);
        s->wbuf.len += sizeof h + items[i].len;
    }
    if (write_all(s->fd, s->wbuf.data, s->wbuf.len, s->size) != 0 || (sync && fdatasync(s->fd) != 0)) {
        int e = errno;
        /* Take back whatever reached the file: the caller treats these
         * records as not spooled. */
        if (ftruncate(s->fd, (off_t)s->size) != 0) {
            snprintf(err, errlen, "writing spool %s: %s (and cutting the partial write failed: %s)", s->path,
                     strerror(e), strerror(errno));
            return -1;
        }
        snprintf(err, errlen, "writing spool %s: %s", s->path, strerror(e));
        return -1;
    }
    s->size += total;
    s->pending += n;
    /* Don't let one huge batch pin its staging buffer. */
    if (s->wbuf.cap > (4u << 20)) {
        free(s->wbuf.data);
        memset(&s->wbuf, 0, sizeof s->wbuf);
    }
    return 0;
}

int spool_set_pos(spool *s, uint64_t pos, uint64_t records, int compact, int sync, char *err, size_t errlen)
{
    if (pos < SPOOL_HEADER_SIZE || pos > s->size) {
        snprintf(err, errlen, "internal: replay position %llu outside the spool (size %llu)",
                 (unsigned long long)pos, (unsigned long long)s->size);
        return -1;
    }
    if (compact && pos == s->size && s->size > SPOOL_HEADER_SIZE) {
        /* Cut back to a fresh header with a NEW id, then record the
         * position. Positions written for the old id no longer apply, so
         * no crash in between can resume the new records at an offset of
         * the old ones: the file then reads as "from the first record". */
        s->hdr.id = new_id();
        if (write_header(s, err, errlen) != 0)
            return -1;
        pos = SPOOL_HEADER_SIZE;
    }
    if (write_pos(s, pos, sync, err, errlen) != 0)
        return -1;
    s->pos = pos;
    s->pending = records > s->pending ? 0 : s->pending - records;
    if (s->pos == s->size)
        s->pending = 0;
    return 0;
}

/* ---- replay -------------------------------------------------------------- */

void spool_chunk_free(spool_chunk *c)
{
    if (!c)
        return;
    free(c->data.data);
    free(c->items);
    memset(c, 0, sizeof *c);
}

int spool_read_chunk(int fd, uint64_t start, uint64_t limit, size_t max_records, size_t max_bytes,
                     spool_chunk *c, char *err, size_t errlen)
{
    spool_reader r = {0};
    spool_rec rec;
    int rc = 0;

    c->n = 0;
    c->data.len = 0;
    c->bytes = 0;
    c->start = c->end = start;
    c->bad_kind = SPOOL_RECORD;
    spool_reader_fd(&r, fd, start, limit);
    while (c->n < max_records && c->data.len < max_bytes) {
        spool_status st = spool_reader_next(&r, &rec);
        if (st == SPOOL_END)
            break;
        if (st == SPOOL_IOERR) {
            snprintf(err, errlen, "%s", rec.why);
            rc = -1;
            break;
        }
        if (st != SPOOL_RECORD) {
            c->bad_kind = st;
            c->bad = rec;
            c->end = rec.end;
            break;
        }
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 64;
            spool_item *ni = realloc(c->items, ncap * sizeof *ni);
            if (!ni) {
                snprintf(err, errlen, "out of memory reading the spool");
                rc = -1;
                break;
            }
            c->items = ni;
            c->cap = ncap;
        }
        if (aq_buf_append(&c->data, rec.data, rec.len) != 0) {
            snprintf(err, errlen, "out of memory reading the spool");
            rc = -1;
            break;
        }
        c->items[c->n].len = rec.len;
        c->items[c->n].prio = rec.prio;
        c->n++;
        c->bytes += rec.len;
        c->end = rec.end;
    }
    spool_reader_free(&r);
    /* Payloads are back to back; point at them now that data stopped moving. */
    const char *p = c->data.data;
    for (size_t i = 0; i < c->n; i++) {
        c->items[i].data = p;
        p += c->items[i].len;
    }
    return rc;
}

int spool_pusher_init(spool_pusher *pp, size_t max_items)
{
    pp->cap = max_items;
    pp->argv = malloc((max_items + 2 * AQ_PRIORITIES) * sizeof *pp->argv);
    pp->argl = malloc((max_items + 2 * AQ_PRIORITIES) * sizeof *pp->argl);
    if (!pp->argv || !pp->argl) {
        spool_pusher_free(pp);
        return -1;
    }
    return 0;
}

void spool_pusher_free(spool_pusher *pp)
{
    free(pp->argv);
    free(pp->argl);
    pp->argv = NULL;
    pp->argl = NULL;
    pp->cap = 0;
}

/* The failure text of one non-integer reply to the LPUSH of key. */
static void push_refusal(const redisReply *r, const char *key, const aq_redis_target *t, const char *role,
                         const char *wrongtype_effect, char *err, size_t errlen)
{
    char wt[360];

    if (r->type != REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "LPUSH answered with reply type %d, expected an integer", r->type);
    } else if (wrongtype_effect && redis_is_wrongtype(r->str)) {
        redis_explain_wrongtype(key, NULL, "list", wrongtype_effect, wt, sizeof wt);
        snprintf(err, errlen, "Redis refused LPUSH: %s", wt);
    } else if (!t || redis_explain_refusal(t, role, "LPUSH", key, r->str, err, errlen) == REDIS_REFUSED_NONE) {
        snprintf(err, errlen, "Redis refused LPUSH: %.*s", (int)r->len, r->str);
    }
}

int spool_push(redisContext *c, spool_pusher *pp, const aq_keys *k, const aq_redis_target *t, const char *role,
               const char *wrongtype_effect, const spool_item *items, size_t n, int done[AQ_PRIORITIES],
               int *conn_broken, char *err, size_t errlen)
{
    size_t count[AQ_PRIORITIES] = {0}, at[AQ_PRIORITIES], seg[AQ_PRIORITIES];
    int sent[AQ_PRIORITIES], nsent = 0, rc = 0;

    *conn_broken = 0;
    if (n > pp->cap) {
        snprintf(err, errlen, "%zu jobs for a sender sized for %zu", n, pp->cap);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!done[items[i].prio])
            count[items[i].prio]++;
    /* One argv segment per priority: LPUSH key job job ... */
    size_t off = 0;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        seg[p] = off;
        at[p] = off + 2;
        if (count[p]) {
            pp->argv[off] = "LPUSH";
            pp->argl[off] = 5;
            pp->argv[off + 1] = k->queue[p];
            pp->argl[off + 1] = strlen(k->queue[p]);
        }
        off += count[p] + 2;
    }
    for (size_t i = 0; i < n; i++) {
        int p = items[i].prio;
        if (done[p])
            continue;
        pp->argv[at[p]] = items[i].data;
        pp->argl[at[p]] = items[i].len;
        at[p]++;
    }
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        if (!count[p])
            continue;
        if (redisAppendCommandArgv(c, (int)(count[p] + 2), pp->argv + seg[p], pp->argl + seg[p]) != REDIS_OK) {
            snprintf(err, errlen, "out of memory queueing LPUSH");
            *conn_broken = 1;
            return -1;
        }
        sent[nsent++] = p;
    }
    for (int i = 0; i < nsent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            snprintf(err, errlen, "connection to Redis lost: %s", c->errstr[0] ? c->errstr : "no reply");
            *conn_broken = 1;
            return -1;
        }
        if (r->type == REDIS_REPLY_INTEGER) {
            done[sent[i]] = 1;
        } else if (rc == 0) {
            /* e.g. OOM, NOPERM, WRONGTYPE: the first one is reported; keep
             * reading, the pipeline must be drained. */
            push_refusal(r, k->queue[sent[i]], t, role, wrongtype_effect, err, errlen);
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

int spool_push_chunk(redisContext *c, const aq_keys *k, const spool_chunk *ch, int *conn_broken, char *err,
                     size_t errlen)
{
    spool_pusher pp;
    int done[AQ_PRIORITIES] = {0};

    *conn_broken = 0;
    if (ch->n == 0)
        return 0;
    if (spool_pusher_init(&pp, ch->n) != 0) {
        snprintf(err, errlen, "out of memory building the replay commands");
        return -1;
    }
    int rc = spool_push(c, &pp, k, NULL, "", NULL, ch->items, ch->n, done, conn_broken, err, errlen);
    spool_pusher_free(&pp);
    return rc;
}
