/* spool_file.c -- the spool handle: opening and locking PATH, appending
 * whole records, and the replay position in PATH.pos (two slots written
 * alternately). The format and the failure windows: spool.c. */
#include "fileio.h"
#include "spool.h"
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char pos_magic[8] = {'A', 'Q', 'S', 'P', 'P', 'O', 'S', '1'};
#define POS_SLOT 64

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
            (void)fileio_fsync_parent(path, NULL, 0);   /* the new file's name: best effort */
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
