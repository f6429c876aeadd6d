/* ctl_verify_int.h -- what the parts of `auditqctl verify` share (not a
 * public interface): the run's state, its findings, and the helpers every
 * stream uses. The parts (docs/INTEGRITY.md, "The verify command"):
 *   ctl_verify.c          options, keys, published checkpoints, the range
 *                         of an incremental run, the report (and DESIGN)
 *   ctl_verify_util.c     findings, byte order, SQL helpers, retention leaves
 *   ctl_verify_tree.c     stream 1: the tree against every checkpoint
 *   ctl_verify_rows.c     streams 2 (incremental runs) and 3: the rows
 *                         against their evidence; retention months
 *   ctl_verify_join.c     stream 2 of a full run, joined here part by part
 *   ctl_verify_archive.c  --archive FILE
 *   ctl_verify_event.c    --event ID: an inclusion proof
 */
#ifndef AQ_CTL_VERIFY_INT_H
#define AQ_CTL_VERIFY_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "checkpoint.h"
#include "config.h"
#include "entry.h"
#include "merkle.h"

#define VERIFY_PROG "auditqctl verify"
#define VERIFY_FETCH 5000
#define VERIFY_FETCH_TREE 64
#define VERIFY_FINDINGS_KEPT 1000
#define VERIFY_MAX_KEYS 16
#define VERIFY_PROGRESS_ROWS 200000
/* --jobs: connections that read the rows in parallel, at most. */
#define VERIFY_MAX_JOBS 16
#define VERIFY_JOBS_DEFAULT 2
/* A full run's rows are checked in parts of at most this many events
 * (ctl_verify_join.c): each thread holds one part's evidence, 80 bytes an
 * event plus its hash slots, ~52 MB at 500,000. */
#define VERIFY_PART_ITEMS 500000
#define VERIFY_MAX_PARTS 100000

/* The 18 entry fields of audit_events row `e`, in entry order (entry.h). */
#define VERIFY_ROW_FIELDS                                                              \
    "e.event_id::text, (extract(epoch from e.occurred_at) * 1000000)::bigint::text, "  \
    "(extract(epoch from e.received_at) * 1000000)::bigint::text, e.priority, "        \
    "e.tenant_id, e.actor_id, e.actor_type, e.action, e.entity_type, e.entity_id, "    \
    "e.outcome, e.source_ip, e.user_agent, e.request_id, e.session_id, "               \
    "e.changes::text, e.metadata::text, e.clock_flag"

/* The same in binary result format for the full run's stream: event_id
 * (16 bytes), occurred_at and received_at (int64 microseconds since
 * 2000-01-01) as they are stored, formatted here -- PostgreSQL's own
 * ::text and extract(epoch ...)::numeric were a fifth of its time per row.
 * verify_row_texts turns them into the entry's texts. */
#define VERIFY_ROW_FIELDS_RAW                                                          \
    "e.event_id, e.occurred_at, e.received_at, e.priority, "                           \
    "e.tenant_id, e.actor_id, e.actor_type, e.action, e.entity_type, e.entity_id, "    \
    "e.outcome, e.source_ip, e.user_agent, e.request_id, e.session_id, "               \
    "e.changes::text, e.metadata::text, e.clock_flag"
/* PostgreSQL's timestamp epoch (2000-01-01) in Unix microseconds. */
#define VERIFY_PG_EPOCH_US 946684800000000LL

typedef struct finding {
    char kind[24];
    char text[480];
} finding;

typedef struct verify {
    const aq_config *cfg;
    PGconn *pg;
    int json, tty;
    ckpt_key keys[VERIFY_MAX_KEYS];
    size_t nkeys;
    const char *anchors;
    long long pending_max_ms;

    /* published checkpoints, sorted by size */
    struct pubck { uint64_t size; merkle_hash root; char file[256]; } *pub;
    size_t npub;

    finding *found;
    size_t nfound, nfound_total;

    /* results */
    uint64_t tree_lo, tree_hi;        /* leaf range checked */
    uint64_t event_leaves, retention_leaves;
    uint64_t ck_db, ck_pub, ck_matched;
    uint64_t rows_checked, rows_ok, archived, pending, inserted;
    int tree_broken;                  /* a gap: later roots cannot be compared */
    uint64_t last_good_size;
    char key_used[CKPT_NAME_MAX + 16];
    int64_t t_lo_us, t_hi_us;         /* received_at window (incremental) */
    int have_window;
    int jobs;                         /* --jobs: parts of stream 2 in parallel */
    long long part_items;             /* --part-events: events per part (full run) */
    atomic_uint_fast64_t progress;    /* rows of stream 2 seen, all parts */
    pthread_mutex_t found_mu;         /* vfind from several parts */
} verify;


/* What retention removed, per month (from auditq_evidence_retention). */
typedef struct retmonth {
    int64_t from_us, to_us;
    long long expected, found;
    int records;
    char record_id[24], month[16], hash[65];
} retmonth;

/* ctl_verify_util.c */
void vfind(verify *v, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void vfy_b64(const unsigned char *p, size_t n, char *out, size_t cap);
uint64_t vfy_be64(const char *p);
uint32_t vfy_be32(const char *p);
/* A binary uuid (16 bytes) as its 36-character text. */
void vfy_uuid_text(const unsigned char *u, char out[37]);
void verify_row_texts(const PGresult *r, int i, int col, const char *vals[ENTRY_EVENT_NFIELDS],
                      size_t lens[ENTRY_EVENT_NFIELDS], char *buf);
int vsql(verify *v, const char *sql);
PGresult *vfetch(verify *v, const char *cursor);
int vdeclare(verify *v, const char *name, const char *query, int np, const char *const *pv);
int vfy_retention_leaf(const char *const f[6], const int lens[6], merkle_hash out);

/* ctl_verify_tree.c: streams the tree over leaves [f->size, hi). */
int verify_tree(verify *v, merkle_frontier *f, uint64_t hi);
/* What one part of stream 2 counted (added to the run's when every part
 * is done: verify_stats_add). rm_found: per retention month, the archived
 * rows found. */
typedef struct vstats {
    uint64_t rows_checked, rows_ok, archived, pending, inserted;
    long long *rm_found;
} vstats;
void verify_stats_add(verify *v, const vstats *s, retmonth *rm, size_t nrm);
/* Runs fn on the n items of base (stride bytes apart): items 1..n-1 in
 * threads of their own, item 0 in this one, then joins them. When a thread
 * cannot start, calls on_fail(fail_arg) (to stop the others early), runs
 * and joins the ones started, and returns -1; else 0. Prints the final
 * progress line on a TTY. */
int verify_run_parts(verify *v, void *base, size_t stride, int n, void *(*fn)(void *), void (*on_fail)(void *),
                     void *fail_arg);

/* ctl_verify_rows.c */
int verify_rows(verify *v, retmonth *rm, size_t nrm, int with_pending);
/* A connection of its own in the run's exported snapshot (--jobs). */
PGconn *verify_part_connect(verify *v, const char *snapshot);
int verify_export_snapshot(verify *v, char *snapshot, size_t cap);
/* The occurred_at bounds that split the evidence into `parts` parts of
 * about as many events each, into bounds[0 .. parts - 2]. */
int verify_part_bounds(verify *v, int parts, char (*bounds)[48]);

/* ctl_verify_join.c: stream 2 of a full run, joined here (its DESIGN). */
typedef struct vitem {
    unsigned char id[16];
    int64_t occ;                  /* occurred_at, PostgreSQL microseconds */
    uint64_t batch, leaf_index;   /* leaf_index: when sealed */
    uint32_t pos;                 /* 1-based position in the batch */
    uint8_t sealed, seen;
    unsigned char leaf[MERKLE_HASH_LEN];
} vitem;
/* Open addressing over items[]: slots hold index + 1, 0 is empty. */
typedef struct vtable {
    vitem *items;
    size_t n, cap;
    uint32_t *slots;
    size_t nslots;
} vtable;
vitem *vtable_add(vtable *t);      /* room for the next item; NULL: no memory */
void vtable_commit(vtable *t);     /* indexes the item vtable_add gave */
/* The items of (id, occ) one by one: *cursor = 0 first; NULL at the end. */
vitem *vtable_next(vtable *t, const unsigned char id[16], int64_t occ, size_t *cursor);
void vtable_reset(vtable *t);
void vtable_free(vtable *t);
/* A one-dimensional binary array without NULLs of elements elem_len bytes
 * long: *elems points at the first element's length word, elements are
 * 4 + elem_len bytes apart. Returns 0, or -1 for any other shape. */
int vj_array(const unsigned char *p, size_t len, uint32_t elem_len, const unsigned char **elems, size_t *n);
/* One tuple of a binary COPY at *off: 1 and its nf fields (NULL: SQL
 * NULL, lens -1), 0 at the trailer, -1 when malformed. */
int vj_copy_fields(const unsigned char *p, size_t len, size_t *off, int nf, const unsigned char **vals,
                   int32_t *lens);
/* PostgreSQL microseconds as 2026-01-02T03:04:05.678901Z. */
size_t vj_iso_us(int64_t pg_us, char *out, size_t cap);
int verify_rows_full(verify *v, retmonth *rm, size_t nrm, int with_pending);
int verify_inserted(verify *v);
int load_retention(verify *v, retmonth **out, size_t *n);
int verify_retention(verify *v, retmonth *rm, size_t nrm);
/* ctl_verify_archive.c */
int verify_archive(verify *v, const char *file);
/* ctl_verify_event.c */
int verify_event(verify *v, const char *id, const char *outfile);
#endif
