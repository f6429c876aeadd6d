/* spool.h -- the producer spool file: format, reader, appender, replay
 * position, and the replay of chunks into Redis.
 *
 * Shared by libauditq (producer/spooler.c: spool while Redis is down,
 * replay in the background), auditqctl (tools/ctl_spool.c: replay or
 * inspect a spool left behind) and the fuzz target (tests/fuzz/
 * fuzz_spool.c). The format and its guarantees are described at the top of
 * common/spool.c and in docs/PROTOCOL.md ("Producer spool file").
 *
 * A `spool` handle is not thread-safe: the producer guards it with its own
 * mutex. Reading records with a spool_reader on the handle's fd below the
 * size it reported is safe while another thread appends (appends only
 * extend the file).
 */
#ifndef AQ_SPOOL_H
#define AQ_SPOOL_H
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "keys.h"
#include "redisconn.h"

#define SPOOL_FILE_MAGIC "AUDITQSP"     /* 8 bytes at offset 0 */
#define SPOOL_VERSION 1
#define SPOOL_HEADER_SIZE 96            /* file header; records start here */
#define SPOOL_REC_HEADER 20             /* per-record header */
#define SPOOL_MAX_PAYLOAD (16u << 20)   /* = the largest max_job_bytes */
#define SPOOL_POS_SUFFIX ".pos"         /* replay position file: PATH.pos */
#define SPOOL_POS_SIZE 128              /* two 64-byte slots */

/* CRC-32C (Castagnoli, reflected, as in iSCSI/ext4): pass crc = 0 to start;
 * feed the result back in to continue over more bytes. */
uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n);

typedef struct spool_header {
    uint64_t id;                /* random, names this spool for its .pos file */
    char ns[AQ_NS_MAX + 1];     /* namespace the records are meant for */
} spool_header;

/* Writes the 96-byte file header of h into out. */
void spool_header_encode(const spool_header *h, uint8_t out[SPOOL_HEADER_SIZE]);
/* Checks and decodes a file header from the first n bytes of a file.
 * Returns 0, or -1 with the reason in err. */
int spool_header_decode(const void *p, size_t n, spool_header *h, char *err, size_t errlen);
/* Fills the 20-byte header of a record holding `len` payload bytes of
 * priority `prio` (0..3). */
void spool_record_header(uint8_t out[SPOOL_REC_HEADER], uint8_t prio, const void *payload, uint32_t len);

/* ---- reading ------------------------------------------------------------- */

typedef enum spool_status {
    SPOOL_RECORD = 0,  /* a good record: rec.prio, rec.len, rec.data */
    SPOOL_END = 1,     /* clean end: no more bytes before the limit */
    SPOOL_CORRUPT = 2, /* bytes [rec.off, rec.end) are not a good record and are skipped */
    SPOOL_TORN = 3,    /* bytes [rec.off, rec.end = limit) are an incomplete last record */
    SPOOL_IOERR = -1   /* read error or the file shrank; rec.why says which */
} spool_status;

typedef struct spool_rec {
    uint64_t off;       /* file offset of the record, or of the bad bytes */
    uint64_t end;       /* offset where reading goes on */
    uint8_t prio;       /* SPOOL_RECORD: priority 0..3 */
    uint32_t len;       /* SPOOL_RECORD: payload bytes */
    const char *data;   /* SPOOL_RECORD: payload, valid until the next call */
    char why[160];      /* SPOOL_CORRUPT, SPOOL_TORN, SPOOL_IOERR: what is wrong */
} spool_rec;

/* A forward reader over [start, limit) of a file or a memory image. Every
 * declared length is checked against the bytes present and
 * SPOOL_MAX_PAYLOAD before use; a payload is returned only when both CRCs
 * match. After a bad record header the reader resynchronises on the next
 * offset holding a valid record header, so the records after a corrupt one
 * are still read. Zero-initialise, then call spool_reader_fd/mem. */
typedef struct spool_reader {
    int fd;                 /* -1 for a memory image */
    const uint8_t *mem;
    uint64_t pos, limit;
    uint8_t *buf;           /* fd: window [buf_off, buf_off + buf_len) */
    size_t buf_cap, buf_len;
    uint64_t buf_off;
} spool_reader;

/* fd is not closed by the reader; limit is the end to read to (usually
 * the file size). */
void spool_reader_fd(spool_reader *r, int fd, uint64_t start, uint64_t limit);
/* p..p+n is a whole file image (offsets count from p). */
void spool_reader_mem(spool_reader *r, const void *p, size_t n, uint64_t start);
spool_status spool_reader_next(spool_reader *r, spool_rec *rec);
/* Frees the window buffer. NULL-safe. */
void spool_reader_free(spool_reader *r);

/* ---- the spool handle ---------------------------------------------------- */

typedef struct spool spool;

enum {
    SPOOL_OPEN_CREATE = 1,  /* create PATH when missing (producer) */
    SPOOL_OPEN_REPAIR = 2,  /* producer: cut a torn tail, compact a fully
                               replayed file, re-label an empty one */
    SPOOL_OPEN_READONLY = 4 /* no lock, no .pos written (inspect, dry run) */
};

/* What spool_open found (for reports and counters). */
typedef struct spool_open_info {
    uint64_t torn_off;      /* SPOOL_OPEN_REPAIR cut a torn tail here (0: none) */
    uint64_t torn_bytes;    /* ...this many bytes */
    char torn_why[160];
    int pos_found;          /* 1 if PATH.pos held a valid position for this file */
} spool_open_info;

/* Opens PATH. Unless SPOOL_OPEN_READONLY, takes an exclusive flock on it
 * (held until spool_close) and opens or creates PATH.pos. ns: the
 * namespace the caller will spool for (a new file is labelled with it; an
 * existing file with unreplayed records for another namespace is refused),
 * or NULL to take the file's. Counts the good records after the replay
 * position. Returns a handle the caller releases with spool_close, or NULL
 * with the reason (naming PATH and the fix) in err; *locked is set to 1
 * when another handle or process holds the lock. info may be NULL. */
spool *spool_open(const char *path, const char *ns, int flags, spool_open_info *info, int *locked,
                  char *err, size_t errlen);
/* Closes the files (and so the lock). NULL-safe. Does not sync. */
void spool_close(spool *s);

typedef struct spool_item {
    const char *data;
    uint32_t len;
    uint8_t prio;
} spool_item;

/* Appends n records in one write, all or none. Refused (returns 1, nothing
 * written) when the file would grow past max_bytes (0 = no cap). With
 * sync, fdatasync before returning. Returns 0, 1 (full) or -1 with err (I/O
 * error; a partial write is cut off again). */
int spool_append(spool *s, const spool_item *items, size_t n, uint64_t max_bytes, int sync, char *err,
                 size_t errlen);
/* fdatasync of the data file. 0 or -1 with err. */
int spool_sync(spool *s, char *err, size_t errlen);

/* Records the replay position `pos` (a record boundary after the current
 * one), `records` good records fewer pending, in PATH.pos; with sync,
 * fdatasync it. When pos reaches the end of the file and compact is set,
 * the file is cut back to its header first (records ever appended are all
 * replayed). 0 or -1 with err. */
int spool_set_pos(spool *s, uint64_t pos, uint64_t records, int compact, int sync, char *err,
                  size_t errlen);

int spool_fd(const spool *s);
uint64_t spool_size(const spool *s);      /* file bytes, header included */
uint64_t spool_pos(const spool *s);       /* replay position */
uint64_t spool_pending(const spool *s);   /* good records after pos */
const spool_header *spool_hdr(const spool *s);
const char *spool_path(const spool *s);

/* ---- replay -------------------------------------------------------------- */

/* A run of records read for replay: up to max_records good records from a
 * start offset, stopping after the first bad region (kept in `bad`, so the
 * caller reports it only once the chunk is committed). */
typedef struct spool_chunk {
    aq_buf data;            /* payloads, back to back */
    spool_item *items;
    size_t n, cap;
    uint64_t start, end;    /* file range the chunk covers */
    uint64_t bytes;         /* payload bytes of the good records */
    spool_status bad_kind;  /* SPOOL_CORRUPT / SPOOL_TORN, or SPOOL_RECORD = none */
    spool_rec bad;
} spool_chunk;

/* Reads from fd [start, limit). Returns 0 (the chunk may be empty only when
 * start == limit), or -1 with err on a read error or OOM. */
int spool_read_chunk(int fd, uint64_t start, uint64_t limit, size_t max_records, size_t max_bytes,
                     spool_chunk *c, char *err, size_t errlen);
void spool_chunk_free(spool_chunk *c);

/* ---- pushing jobs: the one pipelined per-priority LPUSH sender ----------
 * Used by the producer's async flusher and spool replay (libauditq) and by
 * `auditqctl spool replay` (through spool_push_chunk). */

/* Argument arrays for spool_push, allocated once for up to max_items jobs. */
typedef struct spool_pusher {
    const char **argv;
    size_t *argl;
    size_t cap; /* max_items */
} spool_pusher;
/* 0, or -1 on OOM (then nothing to free). */
int spool_pusher_init(spool_pusher *pp, size_t max_items);
/* Frees the arrays; safe twice. */
void spool_pusher_free(spool_pusher *pp);

/* LPUSHes items[0..n) (n <= pp's max_items) onto k's priority queues in one
 * pipelined round trip: one variadic LPUSH per priority present whose
 * done[p] is 0, the items in their order. Sets done[p] = 1 for every
 * priority Redis acknowledged, so a retry resends only the others. Returns 0
 * when every priority present is done. Otherwise -1 with err: the first
 * refusal -- an ACL refusal naming the user, the command and the fix
 * (redis_explain_refusal with t and role; raw when t is NULL), a WRONGTYPE
 * naming the key and the fix (redis_explain_wrongtype with
 * wrongtype_effect; raw when NULL) -- or a lost connection, with
 * *conn_broken = 1: the connection's state is unknown, drop it. Delivery is
 * at-least-once: a connection lost after Redis executed an LPUSH resends it
 * on the retry (the worker stores such a pair once). */
int spool_push(redisContext *c, spool_pusher *pp, const aq_keys *k, const aq_redis_target *t, const char *role,
               const char *wrongtype_effect, const spool_item *items, size_t n, int done[AQ_PRIORITIES],
               int *conn_broken, char *err, size_t errlen);

/* spool_push of a whole chunk with no ACL/WRONGTYPE explanation (the
 * caller adds its own context), then, with min_replicas > 0, WAIT for that
 * many replicas within wait_ms (redis_wait_replicas). Returns 0 when Redis
 * acknowledged every command (and enough replicas have them), -1 with err
 * otherwise (*conn_broken = 1 when the connection must be dropped). */
int spool_push_chunk(redisContext *c, const aq_keys *k, const spool_chunk *ch, int min_replicas, int wait_ms,
                     int *conn_broken, char *err, size_t errlen);
#endif
