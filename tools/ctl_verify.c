/* ctl_verify.c -- `auditqctl verify`: checks the stored events against the
 * sealed evidence, the Merkle tree and the signed checkpoints (issue 12;
 * docs/INTEGRITY.md, "Verifying").
 *
 * DESIGN
 * One REPEATABLE READ, READ ONLY transaction, so every query sees the same
 * snapshot. Three streams (memory is bounded by what one of them holds
 * at a time, the findings kept for the report -- at most
 * VERIFY_FINDINGS_KEPT, all counted -- and the list of published
 * checkpoints); the tree and the checkpoints are server-side cursors read
 * VERIFY_FETCH rows at a time, the rows stream in libpq's single-row mode
 * so that PostgreSQL produces while we hash:
 *   1. the tree: assignments in leaf order with their batches' stored leaf
 *      hashes (retention records: the leaf recomputed here from the
 *      record). Appended to a frontier; at every size where a checkpoint
 *      exists -- signed rows in PostgreSQL, merged in from a second cursor,
 *      and the files of anchor_dir/--anchors -- the root is compared with
 *      the checkpoint's, whose signature was checked with the verifier
 *      keys. A gap or overlap in the leaf indexes is a missing or
 *      reordered batch; a root that differs names the leaf range between
 *      the last checkpoint that matched and this one.
 *   2. the evidence, joined to the rows: each row's leaf is recomputed
 *      here (common/entry.c, from the row's column texts) and compared with
 *      the sealed leaf hash of its evidence; evidence without its row is a
 *      deleted row (or, in a month retention removed, an archived one);
 *      evidence with no assignment yet is pending.
 *   3. the rows that no evidence covers (inserted behind the trigger's
 *      back): an anti-join of audit_events against the evidence of batches
 *      created since the window's start (a row's batch is created in the
 *      row's transaction, after its received_at).
 * Streams 1 and 2 together cover every event: the tree proves the evidence
 * is what was signed, the join proves the rows are what the evidence says.
 *
 * Incremental (--since/--until): the tree starts from the frontier stored
 * with the newest checkpoint signed at or before --since (its signature and
 * root checked first), and ends at the newest signed at or before
 * --until; streams 2 and 3 are limited to that leaf range and received_at
 * window.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sodium.h>
#include <zlib.h>

#include "checkpoint.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_verify.h"
#include "entry.h"
#include "merkle.h"

#define VERIFY_PROG "auditqctl verify"
#define VERIFY_FETCH 5000
#define VERIFY_FETCH_TREE 64
#define VERIFY_FINDINGS_KEPT 1000
#define VERIFY_MAX_KEYS 16
#define VERIFY_PROGRESS_ROWS 200000

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

const char ctl_verify_synopsis[] =
    "verify [OPTIONS]                 check every event against the signed Merkle tree";

const char ctl_verify_help[] =
    "Usage: auditqctl [OPTIONS] verify [--key FILE]... [--anchors DIR] [--json]\n"
    "                                  [--since TIME] [--until TIME] [--pending-max DURATION]\n"
    "                                  [--archive FILE]...\n"
    "       auditqctl [OPTIONS] verify --event ID [--out FILE] [--key FILE]...\n"
    "       auditqctl [OPTIONS] verify --proof FILE [--key FILE]... [--json]\n"
    "\n"
    "Full verification (no --event/--proof): recomputes the leaf of every stored\n"
    "event from its row, compares it with the sealed evidence, rebuilds the\n"
    "Merkle tree (RFC 9162) and checks its root at every signed checkpoint in\n"
    "PostgreSQL and every published one (anchor_dir, or --anchors DIR), each\n"
    "signature with the verifier key. Names what it finds:\n"
    "  modified row      a row that no longer hashes to its sealed leaf (event_id)\n"
    "  deleted row       sealed evidence whose row is gone (batch, position, leaf)\n"
    "  inserted row      a row no evidence covers (event_id)\n"
    "  missing leaves    a gap or overlap in the tree (leaf index range): a batch\n"
    "                    deleted with its evidence, or batches reordered\n"
    "  checkpoint        a signed checkpoint the recomputed tree does not match\n"
    "  forked / rolled back  a published checkpoint that disagrees with, or is\n"
    "                    larger than, the tree in PostgreSQL\n"
    "  bad signature     a checkpoint not signed by the given key(s)\n"
    "  pending           evidence committed but not sealed yet: reported, an\n"
    "                    error only when older than --pending-max (default 5m)\n"
    "Rows that retention removed are reported as archived, verified by hash\n"
    "against the retention record (count and SHA-256 of their leaves).\n"
    "\n"
    "  --key FILE        verifier key (PATH.pub of 'auditqctl keygen PATH');\n"
    "                    repeat for rotated keys; default verify_key_file\n"
    "  --anchors DIR     published checkpoints (default anchor_dir)\n"
    "  --since TIME      start from the newest checkpoint signed at or before TIME\n"
    "                    (ISO 8601 or anything PostgreSQL's timestamptz reads),\n"
    "                    trusting its signed frontier: an incremental run\n"
    "  --until TIME      stop at the newest checkpoint signed at or before TIME\n"
    "  --archive FILE    also check an archive_mode=csv export (.csv.gz) against\n"
    "                    the evidence and its retention record (repeatable)\n"
    "  --event ID        write an inclusion proof of event ID against the newest\n"
    "                    checkpoint (JSON, to stdout or --out FILE); check it\n"
    "                    anywhere with 'auditqctl verify --proof FILE'\n"
    "  --proof FILE      check a proof file offline (no database)\n"
    "  --json            one JSON object instead of lines\n"
    "\n"
    "Reads audit_events and the evidence: run it as a reader (auditqctl grants\n"
    "--reader) or the owner. Progress goes to stderr on a terminal.\n"
    "\n"
    "Exit status: 0 everything verified, 1 a finding (or a connection/SQL\n"
    "error), 2 usage error.\n";

/* ---- findings ------------------------------------------------------------- */

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
} verify;

static void vfind(verify *v, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vfind(verify *v, const char *kind, const char *fmt, ...)
{
    va_list ap;

    v->nfound_total++;
    if (v->nfound >= VERIFY_FINDINGS_KEPT)
        return;
    if (v->found == NULL) {
        v->found = calloc(VERIFY_FINDINGS_KEPT, sizeof *v->found);
        if (v->found == NULL)
            return;
    }
    finding *f = &v->found[v->nfound++];
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    va_start(ap, fmt);
    vsnprintf(f->text, sizeof f->text, fmt, ap);
    va_end(ap);
}

static void b64(const unsigned char *p, size_t n, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
}

static uint64_t be64(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | u[i];
    return x;
}

static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* The entry texts of a row read with VERIFY_ROW_FIELDS_RAW from column
 * col of r (binary): event_id and the two timestamps formatted into buf
 * (at least 100 bytes), the others pointed at. */
static void verify_row_texts(const PGresult *r, int i, int col, const char *vals[ENTRY_EVENT_NFIELDS],
                             size_t lens[ENTRY_EVENT_NFIELDS], char *buf)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)PQgetvalue(r, i, col);
    char *id = buf, *ts1 = buf + 40, *ts2 = buf + 70;
    size_t k = 0;

    for (int j = 0; j < 16; j++) {
        if (j == 4 || j == 6 || j == 8 || j == 10)
            id[k++] = '-';
        id[k++] = hex[u[j] >> 4];
        id[k++] = hex[u[j] & 15];
    }
    id[k] = '\0';
    vals[0] = id;
    lens[0] = k;
    vals[1] = ts1;
    lens[1] = entry_format_us((int64_t)be64(PQgetvalue(r, i, col + 1)) + VERIFY_PG_EPOCH_US, ts1, 30);
    vals[2] = ts2;
    lens[2] = entry_format_us((int64_t)be64(PQgetvalue(r, i, col + 2)) + VERIFY_PG_EPOCH_US, ts2, 30);
    for (int j = 3; j < ENTRY_EVENT_NFIELDS; j++) {
        vals[j] = PQgetisnull(r, i, col + j) ? NULL : PQgetvalue(r, i, col + j);
        lens[j] = (size_t)PQgetlength(r, i, col + j);
    }
}

static int vsql(verify *v, const char *sql)
{
    PGresult *r = PQexec(v->pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: %s: %s\n", VERIFY_PROG, sql, first);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* FETCH from cursor in binary. NULL after printing on error. */
static PGresult *vfetch(verify *v, const char *cursor)
{
    char sql[96];
    PGresult *r;

    /* A tree row carries a whole batch's leaf hashes (32 bytes per event):
     * fetch those few at a time, so memory does not follow the batch count. */
    snprintf(sql, sizeof sql, "FETCH %d FROM %s",
             strcmp(cursor, "tree") == 0 || strcmp(cursor, "pl") == 0 ? VERIFY_FETCH_TREE : VERIFY_FETCH,
             cursor);
    r = PQexecParams(v->pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: reading %s: %s\n", VERIFY_PROG, cursor, first);
        PQclear(r);
        return NULL;
    }
    return r;
}

static int vdeclare(verify *v, const char *name, const char *query, int np, const char *const *pv)
{
    char *sql;
    size_t n = strlen(query) + 128;
    PGresult *r;
    int ok;

    sql = malloc(n);
    if (sql == NULL)
        return -1;
    snprintf(sql, n, "DECLARE %s NO SCROLL CURSOR FOR %s", name, query);
    r = PQexecParams(v->pg, sql, np, NULL, pv, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: opening %s: %s\n", VERIFY_PROG, name, first);
    }
    PQclear(r);
    free(sql);
    return ok ? 0 : -1;
}

/* ---- retention entries ------------------------------------------------------ */

static size_t put_field(unsigned char *out, size_t off, size_t cap, const char *s, size_t n)
{
    if (off + 4 + n <= cap) {
        out[off] = (unsigned char)(n >> 24);
        out[off + 1] = (unsigned char)(n >> 16);
        out[off + 2] = (unsigned char)(n >> 8);
        out[off + 3] = (unsigned char)n;
        memcpy(out + off + 4, s, n);
    }
    return off + 4 + n;
}

/* The leaf of a retention record (type 0x02; docs/INTEGRITY.md): fields
 * record_id, month, table, action, row_count, leaves_hash (hex). */
static int retention_leaf(const char *const f[6], const int lens[6], merkle_hash out)
{
    unsigned char buf[2048];
    size_t off = 1;

    buf[0] = ENTRY_TYPE_RETENTION;
    for (int i = 0; i < 6; i++)
        off = put_field(buf, off, sizeof buf, f[i], (size_t)lens[i]);
    if (off > sizeof buf)
        return -1;
    merkle_leaf_hash(buf, off, out);
    return 0;
}

/* ---- keys and published checkpoints ----------------------------------------- */

static int load_keys(verify *v, const char *const *files, size_t n)
{
    char err[600];

    if (n == 0 && v->cfg->verify_key_file[0] != '\0') {
        static const char *one[1];
        one[0] = v->cfg->verify_key_file;
        files = one;
        n = 1;
    }
    if (n == 0) {
        fprintf(stderr, "%s: no verifier key: give --key PATH.pub (from 'auditqctl keygen PATH') or set "
                "verify_key_file\n", VERIFY_PROG);
        return CTL_USAGE;
    }
    for (size_t i = 0; i < n; i++) {
        if (ckpt_key_load_public(files[i], &v->keys[v->nkeys], err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", VERIFY_PROG, err);
            return CTL_USAGE;
        }
        v->nkeys++;
    }
    return CTL_OK;
}

static int pub_cmp(const void *a, const void *b)
{
    const struct pubck *x = a, *y = b;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* Reads every *.checkpoint file of the anchors directory: each must carry
 * a good signature (else a finding); kept sorted by size. */
static int load_published(verify *v)
{
    DIR *d;
    struct dirent *de;
    size_t cap = 0;

    if (v->anchors == NULL || v->anchors[0] == '\0')
        return 0;
    d = opendir(v->anchors);
    if (d == NULL) {
        fprintf(stderr, "%s: cannot read the published checkpoints in %s: %s (check --anchors / anchor_dir)\n",
                VERIFY_PROG, v->anchors, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        char path[1400], note[CKPT_NOTE_MAX + 1], err[600];
        FILE *f;
        size_t len;
        ckpt c;
        int rc;

        if (de->d_name[0] == '.' || nl < 11 || strcmp(de->d_name + nl - 11, ".checkpoint") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", v->anchors, de->d_name);
        f = fopen(path, "rb");
        if (f == NULL) {
            vfind(v, "bad_checkpoint_file", "%s: cannot read: %s", path, strerror(errno));
            continue;
        }
        len = fread(note, 1, CKPT_NOTE_MAX, f);
        fclose(f);
        note[len] = '\0';
        rc = ckpt_open(note, len, v->keys, v->nkeys, v->cfg->namespace_, &c, err, sizeof err);
        if (rc != CKPT_OK) {
            vfind(v, "bad_checkpoint_file", "published checkpoint %s: %s: %s", path, ckpt_strerror(rc), err);
            continue;
        }
        if (v->npub == cap) {
            size_t nc = cap ? cap * 2 : 64;
            void *p = realloc(v->pub, nc * sizeof *v->pub);
            if (p == NULL) {
                closedir(d);
                fprintf(stderr, "%s: out of memory\n", VERIFY_PROG);
                return -1;
            }
            v->pub = p;
            cap = nc;
        }
        v->pub[v->npub].size = c.size;
        memcpy(v->pub[v->npub].root, c.root, MERKLE_HASH_LEN);
        snprintf(v->pub[v->npub].file, sizeof v->pub[v->npub].file, "%s", de->d_name);
        v->npub++;
    }
    closedir(d);
    if (v->npub > 1)
        qsort(v->pub, v->npub, sizeof *v->pub, pub_cmp);
    return 0;
}

/* ---- stream 1: the tree ------------------------------------------------------ */

typedef struct dbck {
    PGresult *res;
    int row, n, eof;
} dbck;

/* Next signed checkpoint row of cursor "cks" (tree_size, root, note).
 * Returns 1 with *row set, 0 at the end, -1 on error. */
static int dbck_next(verify *v, dbck *d)
{
    if (d->eof)
        return 0;
    if (d->res == NULL || d->row + 1 >= d->n) {
        PQclear(d->res);
        d->res = vfetch(v, "cks");
        if (d->res == NULL)
            return -1;
        d->n = PQntuples(d->res);
        d->row = -1;
        if (d->n == 0) {
            d->eof = 1;
            return 0;
        }
    }
    d->row++;
    return 1;
}

/* Compares root (the recomputed tree of `size` leaves) with the checkpoints
 * of that size: the current database row (if its size matches) and the
 * published ones. */
static void check_size(verify *v, uint64_t size, const merkle_hash root, dbck *d, size_t *pi)
{
    char want[64], got[64];

    b64(root, MERKLE_HASH_LEN, got, sizeof got);
    if (d->res != NULL && d->row >= 0 && d->row < d->n && !d->eof &&
        be64(PQgetvalue(d->res, d->row, 0)) == size) {
        const char *note = PQgetvalue(d->res, d->row, 2);
        size_t len = (size_t)PQgetlength(d->res, d->row, 2);
        char err[600];
        ckpt c;
        int rc = ckpt_open(note, len, v->keys, v->nkeys, v->cfg->namespace_, &c, err, sizeof err);

        v->ck_db++;
        if (rc != CKPT_OK) {
            vfind(v, "bad_signature", "checkpoint %" PRIu64 " in PostgreSQL: %s: %s", size,
                  ckpt_strerror(rc), err);
        } else if (c.size != size) {
            vfind(v, "checkpoint", "checkpoint row %" PRIu64 " in PostgreSQL holds a note of tree size %"
                  PRIu64, size, c.size);
        } else if (memcmp(c.root, root, MERKLE_HASH_LEN) != 0) {
            b64(c.root, MERKLE_HASH_LEN, want, sizeof want);
            vfind(v, "checkpoint", "signed checkpoint %" PRIu64 " (root %s) does not match the tree "
                  "recomputed from the evidence (root %s): leaves %" PRIu64 "..%" PRIu64
                  " were altered, removed or reordered after they were sealed", size, want, got,
                  v->last_good_size, size - 1);
        } else {
            v->ck_matched++;
            v->last_good_size = size;
            snprintf(v->key_used, sizeof v->key_used, "%s+%08x", c.key_name, c.key_hash);
        }
    }
    while (*pi < v->npub && v->pub[*pi].size <= size) {
        struct pubck *p = &v->pub[*pi];
        if (p->size == size) {
            v->ck_pub++;
            if (memcmp(p->root, root, MERKLE_HASH_LEN) != 0) {
                b64(p->root, MERKLE_HASH_LEN, want, sizeof want);
                vfind(v, "forked", "published checkpoint %s (tree size %" PRIu64 ", root %s) disagrees "
                      "with the tree in PostgreSQL at that size (root %s): a forked or rewritten history",
                      p->file, size, want, got);
            }
        } else if (p->size >= v->tree_lo) {
            vfind(v, "forked", "published checkpoint %s (tree size %" PRIu64 ") has no checkpoint of "
                  "its size in PostgreSQL", p->file, p->size);
        }
        (*pi)++;
    }
}

/* Streams the tree over leaves [lo, hi) from frontier f. */
static int verify_tree(verify *v, merkle_frontier *f, uint64_t hi)
{
    char lo_t[32], hi_t[32];
    const char *pv[2] = { lo_t, hi_t };
    dbck d = { 0 };
    size_t pi = 0;
    uint64_t next = f->size;
    int rc = -1;

    snprintf(lo_t, sizeof lo_t, "%" PRIu64, f->size);
    snprintf(hi_t, sizeof hi_t, "%" PRIu64, hi);
    if (vdeclare(v, "tree",
            "SELECT a.first_leaf, a.n, a.kind, a.item_id, b.n, b.leaves,"
            "       r.record_id::text, to_char(r.month_from AT TIME ZONE 'UTC', 'YYYY-MM'), r.table_name,"
            "       r.action, r.row_count::text, encode(r.leaves_hash, 'hex')"
            "  FROM auditq_seal_assignment a"
            "  LEFT JOIN auditq_evidence_batch b ON a.kind = 'batch' AND b.batch_id = a.item_id"
            "  LEFT JOIN auditq_evidence_retention r ON a.kind = 'retention' AND r.record_id = a.item_id"
            " WHERE a.first_leaf >= $1::bigint AND a.first_leaf < $2::bigint"
            " ORDER BY a.first_leaf", 2, pv) != 0 ||
        vdeclare(v, "cks", "SELECT tree_size, root, note FROM auditq_checkpoint"
                 " WHERE tree_size > $1::bigint AND tree_size <= $2::bigint ORDER BY tree_size", 2, pv) != 0)
        return -1;
    /* Published checkpoints below the start were checked by the run that
     * made the starting checkpoint trusted; skip them. */
    while (pi < v->npub && v->pub[pi].size <= f->size)
        pi++;
    if (dbck_next(v, &d) < 0)
        goto out;
    for (;;) {
        PGresult *r = vfetch(v, "tree");
        int n;

        if (r == NULL)
            goto out;
        n = PQntuples(r);
        if (n == 0) {
            PQclear(r);
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t first = be64(PQgetvalue(r, i, 0));
            uint32_t cnt = be32(PQgetvalue(r, i, 1));
            const char *kind = PQgetvalue(r, i, 2);
            uint64_t item = be64(PQgetvalue(r, i, 3));
            merkle_hash leaf;

            if (v->tree_broken)
                break;
            if (first != next) {
                vfind(v, "missing_leaves", first > next
                      ? "leaves %" PRIu64 "..%" PRIu64 " have no evidence: a batch and its assignment were "
                        "deleted (the next sealed item, %s %" PRIu64 ", starts at leaf %" PRIu64 ")"
                      : "leaves %" PRIu64 "..%" PRIu64 " are assigned twice: batches were reordered or "
                        "duplicated (%s %" PRIu64 " starts at leaf %" PRIu64 ")",
                      first > next ? next : first, first > next ? first - 1 : next - 1, kind, item, first);
                v->tree_broken = 1;
                break;
            }
            if (strcmp(kind, "batch") == 0) {
                if (PQgetisnull(r, i, 4)) {
                    vfind(v, "missing_leaves", "leaves %" PRIu64 "..%" PRIu64 ": batch %" PRIu64
                          " was sealed there but its evidence row is gone (deleted)", first,
                          first + cnt - 1, item);
                    v->tree_broken = 1;
                    break;
                }
                if (be32(PQgetvalue(r, i, 4)) != cnt ||
                    (size_t)PQgetlength(r, i, 5) != (size_t)cnt * MERKLE_HASH_LEN) {
                    vfind(v, "missing_leaves", "leaves %" PRIu64 "..%" PRIu64 ": batch %" PRIu64
                          " now holds %u leaves, it was sealed with %u", first, first + cnt - 1, item,
                          be32(PQgetvalue(r, i, 4)), cnt);
                    v->tree_broken = 1;
                    break;
                }
                const char *lv = PQgetvalue(r, i, 5);
                for (uint32_t k = 0; k < cnt; k++) {
                    merkle_frontier_append(f, (const unsigned char *)lv + (size_t)k * MERKLE_HASH_LEN);
                    /* A checkpoint may fall inside a batch only if the
                     * sequencer split one, which it never does; still
                     * compare at every size a checkpoint names. */
                    if (k + 1 < cnt) {
                        while (!d.eof && d.res && be64(PQgetvalue(d.res, d.row, 0)) == f->size) {
                            merkle_frontier_root(f, leaf);
                            check_size(v, f->size, leaf, &d, &pi);
                            if (dbck_next(v, &d) < 0)
                                goto out;
                        }
                    }
                }
                v->event_leaves += cnt;
            } else {
                const char *fv[6];
                int fl[6];
                if (PQgetisnull(r, i, 6)) {
                    vfind(v, "missing_leaves", "leaf %" PRIu64 ": retention record %" PRIu64
                          " was sealed there but is gone (deleted)", first, item);
                    v->tree_broken = 1;
                    break;
                }
                for (int k = 0; k < 6; k++) {
                    fv[k] = PQgetvalue(r, i, 6 + k);
                    fl[k] = PQgetlength(r, i, 6 + k);
                }
                if (retention_leaf(fv, fl, leaf) != 0) {
                    vfind(v, "missing_leaves", "leaf %" PRIu64 ": retention record %" PRIu64
                          " is malformed", first, item);
                    v->tree_broken = 1;
                    break;
                }
                merkle_frontier_append(f, leaf);
                v->retention_leaves++;
            }
            next = f->size;
            /* Checkpoints at this size: database row(s) and published. */
            {
                merkle_hash root;
                int have = 0;
                while (!d.eof && d.res && be64(PQgetvalue(d.res, d.row, 0)) <= f->size) {
                    if (be64(PQgetvalue(d.res, d.row, 0)) < f->size) {
                        vfind(v, "checkpoint", "checkpoint %" PRIu64 " in PostgreSQL falls inside a "
                              "sealed item (leaves up to %" PRIu64 "): its tree cannot be rebuilt",
                              be64(PQgetvalue(d.res, d.row, 0)), f->size);
                    } else {
                        if (!have)
                            merkle_frontier_root(f, root);
                        have = 1;
                        check_size(v, f->size, root, &d, &pi);
                    }
                    if (dbck_next(v, &d) < 0) {
                        PQclear(r);
                        goto out;
                    }
                }
                if (pi < v->npub && v->pub[pi].size == f->size) {
                    if (!have)
                        merkle_frontier_root(f, root);
                    check_size(v, f->size, root, &d, &pi);
                }
            }
        }
        PQclear(r);
        if (v->tree_broken)
            break;
    }
    v->tree_hi = f->size;
    /* Whatever is left was not reached by the tree. */
    while (!d.eof && d.res) {
        uint64_t s = be64(PQgetvalue(d.res, d.row, 0));
        if (!v->tree_broken)
            vfind(v, "checkpoint", "signed checkpoint %" PRIu64 " in PostgreSQL is larger than the "
                  "tree its evidence rebuilds (%" PRIu64 " leaves): sealed evidence is missing", s, f->size);
        v->ck_db++;
        if (dbck_next(v, &d) < 0)
            goto out;
    }
    for (; pi < v->npub; pi++) {
        if (v->tree_broken)
            continue;
        vfind(v, "rolled_back", "published checkpoint %s (tree size %" PRIu64 ") is larger than the tree "
              "in PostgreSQL (%" PRIu64 " leaves): evidence and checkpoints were removed from the "
              "database (rolled back)", v->pub[pi].file, v->pub[pi].size, f->size);
        v->ck_pub++;
    }
    if (v->tree_broken)
        vfind(v, "checkpoint", "the tree could not be rebuilt past leaf %" PRIu64 "; checkpoints after "
              "it were not compared", f->size);
    rc = 0;
out:
    PQclear(d.res);
    vsql(v, "CLOSE tree");
    vsql(v, "CLOSE cks");
    return rc;
}

/* ---- stream 2: evidence joined to rows ----------------------------------------- */

typedef struct retmonth {
    int64_t from_us, to_us;
    long long expected, found;
    int records;
    char record_id[24], month[16], hash[65];
} retmonth;

static int verify_rows(verify *v, retmonth *rm, size_t nrm, int with_pending)
{
    char lo_t[32], hi_t[32];
    const char *pv[4] = { lo_t, hi_t, with_pending ? "true" : "false", v->have_window ? "true" : "false" };
    char q[600];
    int rc = -1;
    uint64_t seen = 0;

    snprintf(lo_t, sizeof lo_t, "%" PRIu64, v->tree_lo);
    snprintf(hi_t, sizeof hi_t, "%" PRIu64, v->tree_hi);
    /* Full run: one hash FULL JOIN of the evidence and the rows (rows with
     * no evidence are the inserted ones, so no second pass); hashing the
     * evidence side and scanning audit_events once beats both per-row
     * index lookups (what the planner picks, misjudging unnest's size) and
     * sorting both sides for a merge. Incremental: the evidence of the
     * range, LEFT JOIN the rows; stream 3 finds inserted rows. */
    if (vsql(v, "SET LOCAL enable_nestloop = off") != 0 || vsql(v, "SET LOCAL enable_mergejoin = off") != 0 ||
        !PQsendQueryParams(v->pg,
            "SELECT ev.event_id::text, (extract(epoch from ev.occurred_at) * 1000000)::bigint, ev.batch_id,"
            "       ev.pos, ev.first_leaf + ev.pos - 1,"
            "       substring(ev.leaves from ((ev.pos - 1) * 32 + 1)::int for 32),"
            "       CASE WHEN ev.first_leaf IS NULL"
            "            THEN (extract(epoch from clock_timestamp() - ev.created_at) * 1000)::bigint ELSE 0 END,"
            "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS_RAW ","
            "       CASE WHEN ev.event_id IS NULL"
            "            THEN to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END"
            "  FROM (SELECT b.batch_id, b.leaves, b.created_at, a.first_leaf, u.event_id, u.occurred_at, u.pos"
            "          FROM auditq_evidence_batch b"
            "          LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
            "         CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            "         WHERE (a.first_leaf >= $1::bigint AND a.first_leaf < $2::bigint)"
            "            OR (a.item_id IS NULL AND $3::boolean)) ev"
            " FULL JOIN audit_events e ON e.event_id = ev.event_id AND e.occurred_at = ev.occurred_at"
            " WHERE ev.event_id IS NOT NULL OR NOT $4::boolean",
            4, NULL, pv, NULL, NULL, 1) ||
        !PQsetSingleRowMode(v->pg)) {
        char first[600];
        ctl_first_line(PQerrorMessage(v->pg), first, sizeof first);
        fprintf(stderr, "%s: reading the rows and their evidence: %s\n", VERIFY_PROG, first);
        return -1;
    }
    /* Single-row mode, not a cursor: PostgreSQL streams the join while we
     * hash the rows already received (a FETCH makes each side wait for the
     * other: measured 14.3 s for 1M rows, the sum of both sides' CPU).
     * Memory: one row at a time. */
    for (;;) {
        PGresult *r = PQgetResult(v->pg);
        int n;

        if (r == NULL)
            break;
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            PQclear(r);   /* the end of the rows */
            continue;
        }
        if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
            char first[600];
            ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
            fprintf(stderr, "%s: reading the rows and their evidence: %s\n", VERIFY_PROG, first);
            PQclear(r);
            while ((r = PQgetResult(v->pg)) != NULL)
                PQclear(r);
            goto out;
        }
        n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(r, i, 0);
            int64_t occ = (int64_t)be64(PQgetvalue(r, i, 1));
            uint64_t batch = be64(PQgetvalue(r, i, 2));
            uint64_t pos = be64(PQgetvalue(r, i, 3));
            int sealed = !PQgetisnull(r, i, 4);
            uint64_t leaf_index = sealed ? be64(PQgetvalue(r, i, 4)) : 0;
            const char *sealed_leaf = PQgetvalue(r, i, 5);
            int64_t age_ms = (int64_t)be64(PQgetvalue(r, i, 6));
            int found = PQgetvalue(r, i, 7)[0] != 0;
            char where[160];

            if (PQgetisnull(r, i, 0)) {
                /* A row of the FULL JOIN with no evidence. */
                const char *iv[ENTRY_EVENT_NFIELDS];
                size_t il[ENTRY_EVENT_NFIELDS];
                char tb[100];

                verify_row_texts(r, i, 8, iv, il, tb);
                v->inserted++;
                vfind(v, "inserted_row", "inserted row: event_id %.36s (received_at %s): no evidence covers it",
                      iv[0], PQgetvalue(r, i, 8 + ENTRY_EVENT_NFIELDS));
                continue;
            }

            if (sealed)
                snprintf(where, sizeof where, "leaf %" PRIu64 ", batch %" PRIu64 " position %" PRIu64,
                         leaf_index, batch, pos);
            else
                snprintf(where, sizeof where, "batch %" PRIu64 " position %" PRIu64 ", not sealed yet",
                         batch, pos);
            if (!sealed) {
                v->pending++;
                if (age_ms > v->pending_max_ms && pos == 1)
                    vfind(v, "pending", "batch %" PRIu64 " was committed %.1f s ago and is not sealed yet "
                          "(more than --pending-max): is a worker with seal_key_file running?", batch,
                          (double)age_ms / 1000.0);
            }
            if (!found) {
                size_t k;
                for (k = 0; k < nrm; k++)
                    if (occ >= rm[k].from_us && occ < rm[k].to_us)
                        break;
                if (k < nrm && rm[k].records > 0) {
                    rm[k].found++;
                    v->archived++;
                } else {
                    vfind(v, "deleted_row", "deleted row: event_id %.36s (%s): its sealed evidence has no "
                          "row in audit_events", id, where);
                }
            } else {
                const char *vals[ENTRY_EVENT_NFIELDS];
                size_t lens[ENTRY_EVENT_NFIELDS];
                merkle_hash leaf;

                char tb[100];

                verify_row_texts(r, i, 8, vals, lens, tb);
                v->rows_checked++;
                if (entry_event_leaf_hash(vals, lens, leaf) != 0 ||
                    memcmp(leaf, sealed_leaf, MERKLE_HASH_LEN) != 0)
                    vfind(v, "modified_row", "modified row: event_id %.36s (%s): the stored row does not "
                          "hash to its sealed leaf", id, where);
                else
                    v->rows_ok++;
            }
            if (v->tty && ++seen % VERIFY_PROGRESS_ROWS == 0)
                fprintf(stderr, "\r%s: %" PRIu64 " rows ...", VERIFY_PROG, seen);
        }
        PQclear(r);
    }
    if (v->tty && seen >= VERIFY_PROGRESS_ROWS)
        fprintf(stderr, "\r%s: %" PRIu64 " rows, done\n", VERIFY_PROG, seen);
    rc = 0;
out:
    (void)q;
    return rc;
}

/* ---- stream 3: rows nothing covers ---------------------------------------------- */

static int verify_inserted(verify *v)
{
    char lo[32], hi[32];
    const char *pv[2] = { lo, hi };
    int rc = -1;

    if (v->have_window) {
        snprintf(lo, sizeof lo, "%" PRId64, v->t_lo_us);
        snprintf(hi, sizeof hi, "%" PRId64, v->t_hi_us);
    } else {
        snprintf(lo, sizeof lo, "%s", "-9223372036854775807");
        snprintf(hi, sizeof hi, "%s", "9223372036854775807");
    }
    if (vdeclare(v, "ins",
            "SELECT e.event_id::text, to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            "  FROM audit_events e"
            " WHERE (extract(epoch from e.received_at) * 1000000)::bigint >= $1::bigint"
            "   AND (extract(epoch from e.received_at) * 1000000)::bigint < $2::bigint"
            "   AND NOT EXISTS (SELECT 1 FROM auditq_evidence_batch b"
            "                    CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) AS u(event_id, occurred_at)"
            "                   WHERE u.event_id = e.event_id AND u.occurred_at = e.occurred_at"
            "                     AND (extract(epoch from b.created_at) * 1000000)::bigint >= $1::bigint)",
            2, pv) != 0)
        return -1;
    for (;;) {
        PGresult *r = vfetch(v, "ins");
        int n;
        if (r == NULL)
            goto out;
        n = PQntuples(r);
        if (n == 0) {
            PQclear(r);
            break;
        }
        for (int i = 0; i < n; i++) {
            v->inserted++;
            vfind(v, "inserted_row", "inserted row: event_id %.36s (received_at %s): no evidence covers it",
                  PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        }
        PQclear(r);
    }
    rc = 0;
out:
    vsql(v, "CLOSE ins");
    return rc;
}

/* ---- retention ------------------------------------------------------------------- */

static int load_retention(verify *v, retmonth **out, size_t *n)
{
    PGresult *r = PQexec(v->pg,
        "SELECT (extract(epoch from month_from) * 1000000)::bigint, (extract(epoch from month_to) * 1000000)::bigint,"
        "       sum(row_count), count(*), min(record_id)::text, to_char(month_from AT TIME ZONE 'UTC', 'YYYY-MM'),"
        "       encode((array_agg(leaves_hash ORDER BY record_id))[1], 'hex')"
        "  FROM auditq_evidence_retention GROUP BY month_from, month_to ORDER BY month_from");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: reading retention records: %s\n", VERIFY_PROG, first);
        PQclear(r);
        return -1;
    }
    *n = (size_t)PQntuples(r);
    *out = calloc(*n ? *n : 1, sizeof **out);
    if (*out == NULL) {
        PQclear(r);
        return -1;
    }
    for (size_t i = 0; i < *n; i++) {
        retmonth *m = &(*out)[i];
        m->from_us = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        m->to_us = strtoll(PQgetvalue(r, (int)i, 1), NULL, 10);
        m->expected = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
        m->records = atoi(PQgetvalue(r, (int)i, 3));
        snprintf(m->record_id, sizeof m->record_id, "%s", PQgetvalue(r, (int)i, 4));
        snprintf(m->month, sizeof m->month, "%s", PQgetvalue(r, (int)i, 5));
        snprintf(m->hash, sizeof m->hash, "%s", PQgetvalue(r, (int)i, 6));
    }
    PQclear(r);
    return 0;
}

/* Per month retention removed: the leaves whose rows are gone must be
 * exactly the removed ones -- the count, and (one record for the month)
 * the SHA-256 over their sealed leaf hashes in (event_id, occurred_at)
 * order, which the record took over the rows at removal. */
static int verify_retention(verify *v, retmonth *rm, size_t nrm)
{
    for (size_t k = 0; k < nrm; k++) {
        retmonth *m = &rm[k];
        if (m->found != m->expected) {
            vfind(v, "retention", "month %s: retention removed %lld rows, but %lld sealed leaves of that "
                  "month have no row: %lld rows deleted outside retention", m->month, m->expected, m->found,
                  m->found - m->expected);
            continue;
        }
        if (m->records != 1 || v->have_window)
            continue;
        char f[32], t[32];
        const char *pv[2] = { f, t };
        snprintf(f, sizeof f, "%" PRId64, m->from_us);
        snprintf(t, sizeof t, "%" PRId64, m->to_us);
        PGresult *r = PQexecParams(v->pg,
            "SELECT encode(sha256(coalesce(string_agg(substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
            "                                          ''::bytea ORDER BY u.event_id, u.occurred_at), ''::bytea)), 'hex')"
            "  FROM auditq_evidence_batch b"
            " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            " WHERE tstzrange(b.min_occurred_at, b.max_occurred_at, '[]') && "
            "       tstzrange(to_timestamp($1::bigint / 1e6), to_timestamp($2::bigint / 1e6), '[)')"
            "   AND u.occurred_at >= to_timestamp($1::bigint / 1e6) AND u.occurred_at < to_timestamp($2::bigint / 1e6)"
            "   AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.event_id = u.event_id AND e.occurred_at = u.occurred_at)",
            2, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char first[600];
            ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
            fprintf(stderr, "%s: hashing archived leaves: %s\n", VERIFY_PROG, first);
            PQclear(r);
            return -1;
        }
        if (strcmp(PQgetvalue(r, 0, 0), m->hash) != 0)
            vfind(v, "retention", "month %s: the %lld rows retention removed (record %s) hash to %s, their "
                  "sealed leaves to %s: a row was altered before it was removed", m->month, m->expected,
                  m->record_id, m->hash, PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return 0;
}

/* --archive FILE: the export's rows, recomputed here, against the evidence
 * and the month's retention record. */
static int verify_archive(verify *v, const char *file)
{
    gzFile gz = gzopen(file, "rb");
    char buf[65536], header[4096] = "", sql[8192];
    PGresult *r;
    int hlen = 0, rc = -1, in_header = 1, ok;
    long long rows = 0, bad = 0, unsealed = 0;
    crypto_hash_sha256_state st;
    unsigned char h[32];
    char hex[65];

    if (gz == NULL) {
        vfind(v, "archive", "archive %s: cannot open: %s", file, strerror(errno));
        return 0;
    }
    if (vsql(v, "SAVEPOINT archive") != 0 ||
        vsql(v, "CREATE TEMP TABLE auditq_verify_archive (LIKE audit_events) ON COMMIT DROP") != 0) {
        gzclose(gz);
        return -1;
    }
    /* The header line names the columns in the file's order. */
    for (;;) {
        int c = gzgetc(gz);
        if (c < 0 || c == '\n' || hlen + 1 >= (int)sizeof header)
            break;
        if (c != '\r')
            header[hlen++] = (char)c;
    }
    header[hlen] = '\0';
    if (hlen == 0 || strspn(header, "abcdefghijklmnopqrstuvwxyz_,") != (size_t)hlen) {
        vfind(v, "archive", "archive %s: no CSV header of column names on its first line: not an "
              "auditq export, or corrupt", file);
        gzclose(gz);
        vsql(v, "ROLLBACK TO SAVEPOINT archive");
        return 0;
    }
    snprintf(sql, sizeof sql, "COPY auditq_verify_archive (%s) FROM STDIN WITH (FORMAT csv, ENCODING 'UTF8')",
             header);
    r = PQexec(v->pg, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        vfind(v, "archive", "archive %s: %s", file, first);
        PQclear(r);
        gzclose(gz);
        vsql(v, "ROLLBACK TO SAVEPOINT archive");
        return 0;
    }
    PQclear(r);
    (void)in_header;
    for (;;) {
        int n = gzread(gz, buf, sizeof buf);
        if (n < 0) {
            int e;
            const char *m = gzerror(gz, &e);
            char msg[300];
            snprintf(msg, sizeof msg, "corrupt gzip data: %s", m);
            PQputCopyEnd(v->pg, msg);
            break;
        }
        if (n == 0) {
            PQputCopyEnd(v->pg, NULL);
            break;
        }
        if (PQputCopyData(v->pg, buf, n) != 1) {
            PQputCopyEnd(v->pg, "send failed");
            break;
        }
    }
    gzclose(gz);
    r = PQgetResult(v->pg);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        vfind(v, "archive", "archive %s is corrupt: %s", file, first);
    }
    PQclear(r);
    while ((r = PQgetResult(v->pg)) != NULL)
        PQclear(r);
    if (!ok) {
        vsql(v, "ROLLBACK TO SAVEPOINT archive");
        return 0;
    }
    if (vdeclare(v, "arch",
            "SELECT " VERIFY_ROW_FIELDS ", ev.leaf"
            "  FROM auditq_verify_archive e"
            "  LEFT JOIN LATERAL (SELECT substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32) AS leaf"
            "                       FROM auditq_evidence_batch b"
            "                      CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            "                      WHERE tstzrange(b.min_occurred_at, b.max_occurred_at, '[]') @> e.occurred_at"
            "                        AND u.event_id = e.event_id AND u.occurred_at = e.occurred_at"
            "                      LIMIT 1) ev ON true"
            " ORDER BY e.event_id, e.occurred_at", 0, NULL) != 0)
        return -1;
    crypto_hash_sha256_init(&st);
    for (;;) {
        PGresult *f = vfetch(v, "arch");
        int n;
        if (f == NULL)
            goto out;
        n = PQntuples(f);
        if (n == 0) {
            PQclear(f);
            break;
        }
        for (int i = 0; i < n; i++) {
            const char *vals[ENTRY_EVENT_NFIELDS];
            size_t lens[ENTRY_EVENT_NFIELDS];
            merkle_hash leaf;

            for (int k = 0; k < ENTRY_EVENT_NFIELDS; k++) {
                vals[k] = PQgetisnull(f, i, k) ? NULL : PQgetvalue(f, i, k);
                lens[k] = (size_t)PQgetlength(f, i, k);
            }
            rows++;
            if (entry_event_leaf_hash(vals, lens, leaf) != 0)
                memset(leaf, 0, sizeof leaf);
            crypto_hash_sha256_update(&st, leaf, sizeof leaf);
            if (PQgetisnull(f, i, ENTRY_EVENT_NFIELDS)) {
                unsealed++;
                vfind(v, "archive", "archive %s: row event_id %.36s has no evidence", file, vals[0]);
            } else if (memcmp(leaf, PQgetvalue(f, i, ENTRY_EVENT_NFIELDS), MERKLE_HASH_LEN) != 0) {
                bad++;
                vfind(v, "archive", "archive %s: row event_id %.36s differs from its sealed leaf "
                      "(the file was altered)", file, vals[0]);
            }
        }
        PQclear(f);
    }
    crypto_hash_sha256_final(&st, h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    {
        char cnt[32];
        const char *pv[2] = { hex, cnt };
        snprintf(cnt, sizeof cnt, "%lld", rows);
        PGresult *m = PQexecParams(v->pg,
            "SELECT r.record_id, r.record_id IN (SELECT item_id FROM auditq_seal_assignment)"
            "  FROM auditq_evidence_retention r"
            " WHERE encode(r.leaves_hash, 'hex') = $1 AND r.row_count = $2::bigint ORDER BY 1 LIMIT 1",
            2, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(m) != PGRES_TUPLES_OK) {
            PQclear(m);
            goto out;
        }
        if (PQntuples(m) == 0) {
            if (bad == 0 && unsealed == 0)
                vfind(v, "archive", "archive %s: its %lld rows (leaf hash %s) match no retention record",
                      file, rows, hex);
        } else if (strcmp(PQgetvalue(m, 0, 1), "t") != 0) {
            vfind(v, "archive", "archive %s matches retention record %s, which is not sealed yet", file,
                  PQgetvalue(m, 0, 0));
        } else if (!v->json) {
            printf("archive %s: %lld rows, verified by hash against sealed retention record %s\n", file,
                   rows, PQgetvalue(m, 0, 0));
        }
        PQclear(m);
    }
    rc = 0;
out:
    vsql(v, "CLOSE arch");
    vsql(v, "ROLLBACK TO SAVEPOINT archive");
    return rc;
}

/* ---- --event: an inclusion proof ------------------------------------------------ */

typedef struct leafsrc {
    verify *v;
    PGresult *res;
    int row, n;
    uint64_t cur_first, cur_n;   /* the item in res[row] */
    int open, eof;
} leafsrc;

/* merkle_leaf_fn over cursor "pl" (tree order). */
static int leafsrc_leaves(void *ctx, uint64_t first, size_t n, merkle_hash *out, char *err, size_t errlen)
{
    leafsrc *s = ctx;
    size_t done = 0;

    while (done < n) {
        uint64_t want = first + done;
        while (s->res == NULL || s->row >= s->n || want >= s->cur_first + s->cur_n) {
            if (s->res != NULL && s->row + 1 < s->n) {
                s->row++;
            } else {
                PQclear(s->res);
                s->res = vfetch(s->v, "pl");
                s->row = 0;
                s->n = s->res ? PQntuples(s->res) : 0;
                if (s->n == 0) {
                    snprintf(err, errlen, "leaf %" PRIu64 " has no evidence", want);
                    return -1;
                }
            }
            s->cur_first = be64(PQgetvalue(s->res, s->row, 0));
            s->cur_n = be32(PQgetvalue(s->res, s->row, 1));
            if (s->cur_first > want) {
                snprintf(err, errlen, "leaf %" PRIu64 " has no evidence (a gap in the tree: run a full "
                         "'auditqctl verify')", want);
                return -1;
            }
        }
        const char *kind = PQgetvalue(s->res, s->row, 2);
        uint64_t k = want - s->cur_first;
        if (strcmp(kind, "batch") == 0) {
            if (PQgetisnull(s->res, s->row, 3) ||
                (uint64_t)PQgetlength(s->res, s->row, 3) != s->cur_n * MERKLE_HASH_LEN) {
                snprintf(err, errlen, "the evidence of leaf %" PRIu64 " is missing or altered", want);
                return -1;
            }
            memcpy(out[done], PQgetvalue(s->res, s->row, 3) + k * MERKLE_HASH_LEN, MERKLE_HASH_LEN);
        } else {
            const char *fv[6];
            int fl[6];
            for (int j = 0; j < 6; j++) {
                fv[j] = PQgetvalue(s->res, s->row, 4 + j);
                fl[j] = PQgetlength(s->res, s->row, 4 + j);
            }
            if (PQgetisnull(s->res, s->row, 4) || retention_leaf(fv, fl, out[done]) != 0) {
                snprintf(err, errlen, "the retention record of leaf %" PRIu64 " is missing", want);
                return -1;
            }
        }
        done++;
    }
    return 0;
}

static int verify_event(verify *v, const char *id, const char *outfile)
{
    const char *pv[1] = { id };
    PGresult *r = NULL, *ck = NULL;
    int rc = CTL_FAILED;
    unsigned char entry[1 << 16], *ebuf = entry;
    size_t elen;
    const char *vals[ENTRY_EVENT_NFIELDS];
    size_t lens[ENTRY_EVENT_NFIELDS];
    merkle_hash leaf, path[MERKLE_MAX_PROOF];
    size_t plen = 0;
    uint64_t leaf_index, size;
    char err[600];
    ckpt c;
    const ckpt_key *k = NULL;
    leafsrc ls = { .v = v };
    merkle_source src = { .leaves = leafsrc_leaves, .ctx = &ls };
    FILE *out = stdout;

    r = PQexecParams(v->pg,
        "SELECT a.first_leaf + u.pos - 1, substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
        "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS
        "  FROM auditq_evidence_batch b"
        " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
        "  LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
        "  LEFT JOIN audit_events e ON e.event_id = u.event_id AND e.occurred_at = u.occurred_at"
        " WHERE b.event_ids @> ARRAY[$1::uuid] AND u.event_id = $1::uuid",
        1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        ctl_first_line(PQresultErrorMessage(r), err, sizeof err);
        fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
        rc = strstr(err, "invalid input syntax") ? CTL_USAGE : CTL_FAILED;
        goto out;
    }
    if (PQntuples(r) == 0) {
        fprintf(stderr, "%s --event: no evidence for event %s: it was never stored, or was stored before "
                "the evidence existed and not yet backfilled\n", VERIFY_PROG, id);
        goto out;
    }
    if (PQgetisnull(r, 0, 0)) {
        fprintf(stderr, "%s --event: event %s is not sealed yet (pending); try again after "
                "checkpoint_interval_ms\n", VERIFY_PROG, id);
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 2), "t") != 0) {
        fprintf(stderr, "%s --event: event %s has sealed evidence but no row: deleted (or archived by "
                "retention)\n", VERIFY_PROG, id);
        goto out;
    }
    leaf_index = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
        vals[i] = PQgetisnull(r, 0, 3 + i) ? NULL : PQgetvalue(r, 0, 3 + i);
        lens[i] = (size_t)PQgetlength(r, 0, 3 + i);
    }
    elen = entry_event_encode(vals, lens, NULL, 0);
    if (elen > sizeof entry) {
        ebuf = malloc(elen);
        if (ebuf == NULL)
            goto out;
    }
    entry_event_encode(vals, lens, ebuf, elen);
    merkle_leaf_hash(ebuf, elen, leaf);
    {
        /* bytea text output: \x + hex */
        const char *t = PQgetvalue(r, 0, 1);
        unsigned char sealed[32];
        size_t bl = 0;
        if (strncmp(t, "\\x", 2) != 0 || sodium_hex2bin(sealed, sizeof sealed, t + 2, strlen(t + 2), NULL,
                                                       &bl, NULL) != 0 || bl != 32 ||
            memcmp(sealed, leaf, 32) != 0) {
            fprintf(stderr, "%s --event: modified row: event_id %s does not hash to its sealed leaf %" PRIu64
                    "; no proof written\n", VERIFY_PROG, id, leaf_index);
            goto out;
        }
    }
    ck = PQexec(v->pg, "SELECT tree_size, note FROM auditq_checkpoint ORDER BY tree_size DESC LIMIT 1");
    if (PQresultStatus(ck) != PGRES_TUPLES_OK || PQntuples(ck) == 0) {
        fprintf(stderr, "%s --event: no checkpoint in PostgreSQL\n", VERIFY_PROG);
        goto out;
    }
    {
        int orc = ckpt_open(PQgetvalue(ck, 0, 1), (size_t)PQgetlength(ck, 0, 1), v->keys, v->nkeys,
                            v->cfg->namespace_, &c, err, sizeof err);
        if (orc != CKPT_OK) {
            fprintf(stderr, "%s --event: the newest checkpoint does not verify: %s: %s\n", VERIFY_PROG,
                    ckpt_strerror(orc), err);
            goto out;
        }
        for (size_t i = 0; i < v->nkeys; i++)
            if (strcmp(v->keys[i].name, c.key_name) == 0 && v->keys[i].hash == c.key_hash)
                k = &v->keys[i];
        if (k == NULL) {
            fprintf(stderr, "%s --event: the key that verified the checkpoint is not among --key\n",
                    VERIFY_PROG);
            goto out;
        }
    }
    size = c.size;
    {
        char hi[32];
        const char *hv[1] = { hi };
        snprintf(hi, sizeof hi, "%" PRIu64, size);
        if (vdeclare(v, "pl",
                "SELECT a.first_leaf, a.n, a.kind, b.leaves, r.record_id::text,"
                "       to_char(r.month_from AT TIME ZONE 'UTC', 'YYYY-MM'), r.table_name, r.action,"
                "       r.row_count::text, encode(r.leaves_hash, 'hex')"
                "  FROM auditq_seal_assignment a"
                "  LEFT JOIN auditq_evidence_batch b ON a.kind = 'batch' AND b.batch_id = a.item_id"
                "  LEFT JOIN auditq_evidence_retention r ON a.kind = 'retention' AND r.record_id = a.item_id"
                " WHERE a.first_leaf < $1::bigint ORDER BY a.first_leaf", 1, hv) != 0)
            goto out;
    }
    if (merkle_inclusion_proof(&src, leaf_index, size, path, &plen, err, sizeof err) != 0) {
        fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
        goto out;
    }
    if (merkle_verify_inclusion(leaf_index, size, leaf, path, plen, c.root, err, sizeof err) != 0) {
        fprintf(stderr, "%s --event: the evidence does not lead to the signed root: %s; run a full "
                "'auditqctl verify'\n", VERIFY_PROG, err);
        goto out;
    }
    if (outfile != NULL) {
        out = fopen(outfile, "w");
        if (out == NULL) {
            fprintf(stderr, "%s --event: cannot write %s: %s\n", VERIFY_PROG, outfile, strerror(errno));
            rc = CTL_USAGE;
            goto out;
        }
    }
    {
        char canon[40];
        snprintf(canon, sizeof canon, "%.*s", (int)lens[0], vals[0]);
        if (ctl_proof_write_inclusion(out, canon, leaf_index, size, ebuf, elen, path, plen,
                                      PQgetvalue(ck, 0, 1), k) != 0 ||
            (outfile != NULL && fclose(out) != 0)) {
            fprintf(stderr, "%s --event: writing the proof failed: %s\n", VERIFY_PROG, strerror(errno));
            out = stdout;
            goto out;
        }
        out = stdout;
    }
    if (outfile != NULL)
        fprintf(stderr, "%s: inclusion proof of event %s (leaf %" PRIu64 " of %" PRIu64 ") written to %s\n",
                VERIFY_PROG, id, leaf_index, size, outfile);
    rc = CTL_OK;
out:
    if (out != stdout)
        fclose(out);
    if (ls.res != NULL)
        PQclear(ls.res);
    if (ebuf != entry)
        free(ebuf);
    PQclear(r);
    PQclear(ck);
    return rc;
}

/* ---- the report ------------------------------------------------------------------ */

static void report(verify *v, double secs)
{
    int ok = v->nfound_total == 0;

    if (v->json) {
        printf("{\"verified\":%s,\"tree_size\":%" PRIu64 ",\"from_leaf\":%" PRIu64 ",\"event_leaves\":%" PRIu64
               ",\"retention_leaves\":%" PRIu64 ",\"rows_checked\":%" PRIu64 ",\"archived_rows\":%" PRIu64
               ",\"pending_events\":%" PRIu64 ",\"inserted_rows\":%" PRIu64 ",\"checkpoints_db\":%" PRIu64
               ",\"checkpoints_published\":%" PRIu64 ",\"key\":",
               ok ? "true" : "false", v->tree_hi, v->tree_lo, v->event_leaves, v->retention_leaves,
               v->rows_checked, v->archived, v->pending, v->inserted, v->ck_db, v->ck_pub);
        ctl_json_str(stdout, v->key_used, strlen(v->key_used));
        printf(",\"seconds\":%.3f,\"findings_total\":%zu,\"findings\":[", secs, v->nfound_total);
        for (size_t i = 0; i < v->nfound; i++) {
            printf("%s{\"kind\":\"%s\",\"text\":", i ? "," : "", v->found[i].kind);
            ctl_json_str(stdout, v->found[i].text, strlen(v->found[i].text));
            printf("}");
        }
        printf("]}\n");
        return;
    }
    for (size_t i = 0; i < v->nfound; i++)
        printf("%s\n", v->found[i].text);
    if (v->nfound_total > v->nfound)
        printf("... and %zu more findings\n", v->nfound_total - v->nfound);
    if (ok)
        printf("verified: %" PRIu64 " leaves (%" PRIu64 " events, %" PRIu64 " retention records) from leaf %"
               PRIu64 "; %" PRIu64 " rows match their sealed leaves; %" PRIu64 " archived rows verified by "
               "hash; %" PRIu64 " signed checkpoints in PostgreSQL and %" PRIu64 " published agree (key %s); "
               "%" PRIu64 " events pending; %.1f s\n",
               v->tree_hi - v->tree_lo, v->event_leaves, v->retention_leaves, v->tree_lo, v->rows_ok,
               v->archived, v->ck_matched, v->ck_pub, v->key_used[0] ? v->key_used : "-", v->pending, secs);
    else
        printf("NOT verified: %zu findings\n", v->nfound_total);
}

/* Start (--since) and end (--until) of an incremental run: the checkpoint
 * signed at or before each time. */
static int pick_range(verify *v, const char *since, const char *until, merkle_frontier *f, uint64_t *hi)
{
    PGresult *r;
    char err[600];

    *hi = UINT64_MAX;
    if (until != NULL) {
        const char *pv[1] = { until };
        r = PQexecParams(v->pg, "SELECT tree_size, (extract(epoch from signed_at) * 1000000)::bigint"
                         "  FROM auditq_checkpoint WHERE signed_at <= $1::timestamptz"
                         " ORDER BY tree_size DESC LIMIT 1", 1, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            ctl_first_line(PQresultErrorMessage(r), err, sizeof err);
            fprintf(stderr, "%s: --until %s: %s\n", VERIFY_PROG, until, err);
            PQclear(r);
            return CTL_USAGE;
        }
        *hi = PQntuples(r) ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
        v->t_hi_us = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 1), NULL, 10) : INT64_MIN;
        v->have_window = 1;
        PQclear(r);
    } else {
        v->t_hi_us = INT64_MAX;
    }
    v->t_lo_us = INT64_MIN + 1;
    if (since != NULL) {
        const char *pv[1] = { since };
        r = PQexecParams(v->pg, "SELECT tree_size, frontier, note, (extract(epoch from signed_at) * 1000000)::bigint"
                         "  FROM auditq_checkpoint WHERE signed_at <= $1::timestamptz"
                         " ORDER BY tree_size DESC LIMIT 1", 1, NULL, pv, NULL, NULL, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            ctl_first_line(PQresultErrorMessage(r), err, sizeof err);
            fprintf(stderr, "%s: --since %s: %s\n", VERIFY_PROG, since, err);
            PQclear(r);
            return CTL_USAGE;
        }
        v->have_window = 1;
        if (PQntuples(r) == 1) {
            ckpt c;
            merkle_hash root;
            int orc = ckpt_open(PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2), v->keys, v->nkeys,
                                v->cfg->namespace_, &c, err, sizeof err);
            if (orc != CKPT_OK) {
                vfind(v, "bad_signature", "starting checkpoint %" PRIu64 " (--since): %s: %s",
                      be64(PQgetvalue(r, 0, 0)), ckpt_strerror(orc), err);
                PQclear(r);
                return CTL_FAILED;
            }
            if (merkle_frontier_decode(f, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1), err,
                                       sizeof err) != 0 || f->size != c.size) {
                vfind(v, "checkpoint", "starting checkpoint %" PRIu64 " (--since): its stored frontier "
                      "is unusable", c.size);
                PQclear(r);
                return CTL_FAILED;
            }
            merkle_frontier_root(f, root);
            if (memcmp(root, c.root, MERKLE_HASH_LEN) != 0) {
                vfind(v, "checkpoint", "starting checkpoint %" PRIu64 " (--since): its stored frontier "
                      "does not give its signed root", c.size);
                PQclear(r);
                return CTL_FAILED;
            }
            v->t_lo_us = (int64_t)be64(PQgetvalue(r, 0, 3));
            v->last_good_size = c.size;
        }
        PQclear(r);
    }
    return CTL_OK;
}

int ctl_verify(const aq_config *cfg, int argc, char **argv)
{
    static verify V;
    verify *v = &V;
    const char *keyfiles[VERIFY_MAX_KEYS], *archives[16];
    size_t nkf = 0, narch = 0;
    const char *event = NULL, *outfile = NULL, *proof = NULL, *since = NULL, *until = NULL;
    merkle_frontier f;
    uint64_t hi;
    retmonth *rm = NULL;
    size_t nrm = 0;
    struct timespec t0, t1;
    int rc = CTL_FAILED;
    char err[600];

    memset(v, 0, sizeof *v);
    v->cfg = cfg;
    v->anchors = cfg->anchor_dir;
    v->pending_max_ms = 5 * 60 * 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;

        if (strcmp(a, "--json") == 0) {
            v->json = 1;
            takes = 0;
        } else if (val == NULL && (strcmp(a, "--key") == 0 || strcmp(a, "--anchors") == 0 ||
                                   strcmp(a, "--event") == 0 || strcmp(a, "--out") == 0 ||
                                   strcmp(a, "--proof") == 0 || strcmp(a, "--since") == 0 ||
                                   strcmp(a, "--until") == 0 || strcmp(a, "--archive") == 0 ||
                                   strcmp(a, "--pending-max") == 0)) {
            fprintf(stderr, "%s: %s needs a value; see 'auditqctl verify --help'\n", VERIFY_PROG, a);
            return CTL_USAGE;
        } else if (strcmp(a, "--key") == 0) {
            if (nkf == VERIFY_MAX_KEYS) {
                fprintf(stderr, "%s: at most %d --key options\n", VERIFY_PROG, VERIFY_MAX_KEYS);
                return CTL_USAGE;
            }
            keyfiles[nkf++] = val;
        } else if (strcmp(a, "--anchors") == 0) {
            v->anchors = val;
        } else if (strcmp(a, "--event") == 0) {
            event = val;
        } else if (strcmp(a, "--out") == 0) {
            outfile = val;
        } else if (strcmp(a, "--proof") == 0) {
            proof = val;
        } else if (strcmp(a, "--since") == 0) {
            since = val;
        } else if (strcmp(a, "--until") == 0) {
            until = val;
        } else if (strcmp(a, "--archive") == 0) {
            if (narch == 16) {
                fprintf(stderr, "%s: at most 16 --archive options\n", VERIFY_PROG);
                return CTL_USAGE;
            }
            archives[narch++] = val;
        } else if (strcmp(a, "--pending-max") == 0) {
            if (ctl_parse_duration_ms(val, &v->pending_max_ms, err, sizeof err) != 0) {
                fprintf(stderr, "%s: --pending-max %s: %s\n", VERIFY_PROG, val, err);
                return CTL_USAGE;
            }
        } else {
            fprintf(stderr, "%s: unknown option %s; see 'auditqctl verify --help'\n", VERIFY_PROG, a);
            return CTL_USAGE;
        }
        i += takes;
    }
    if (proof != NULL) {
        if (event != NULL || since != NULL || until != NULL || narch > 0) {
            fprintf(stderr, "%s: --proof checks a file offline and takes only --key and --json\n", VERIFY_PROG);
            return CTL_USAGE;
        }
        return ctl_verify_proof_keys(proof, keyfiles, nkf, v->json);
    }
    if (outfile != NULL && event == NULL) {
        fprintf(stderr, "%s: --out goes with --event\n", VERIFY_PROG);
        return CTL_USAGE;
    }
    if (ckpt_crypto_init(err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", VERIFY_PROG, err);
        return CTL_FAILED;
    }
    rc = load_keys(v, keyfiles, nkf);
    if (rc != CTL_OK)
        return rc;
    rc = CTL_FAILED;
    v->tty = isatty(2) && !v->json;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    v->pg = ctl_pg_connect(cfg, VERIFY_PROG, "UTF8");
    if (v->pg == NULL)
        return CTL_FAILED;
    /* READ ONLY unless --archive, whose rows go through a temporary table. */
    if (vsql(v, narch > 0 ? "BEGIN ISOLATION LEVEL REPEATABLE READ"
                          : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0 ||
        vsql(v, "SET LOCAL TimeZone = 'UTC'") != 0 || vsql(v, "SET LOCAL statement_timeout = 0") != 0 ||
        vsql(v, "SET LOCAL work_mem = '256MB'") != 0 ||
        /* Every row is read: plan for all of them, not the first few
         * (a cursor otherwise favours per-row index lookups). */
        vsql(v, "SET LOCAL cursor_tuple_fraction = 1.0") != 0)
        goto out;
    if (event != NULL) {
        rc = verify_event(v, event, outfile);
        goto out;
    }
    if (load_published(v) != 0)
        goto out;
    merkle_frontier_init(&f);
    {
        int prc = pick_range(v, since, until, &f, &hi);
        if (prc == CTL_USAGE) {
            rc = prc;
            goto out;
        }
        if (prc != CTL_OK)
            goto report;
    }
    v->tree_lo = f.size;
    if (hi == UINT64_MAX) {
        PGresult *r = PQexec(v->pg, "SELECT coalesce(max(tree_size), 0) FROM auditq_checkpoint");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            ctl_first_line(PQresultErrorMessage(r), err, sizeof err);
            fprintf(stderr, "%s: %s (is this database migrated? run 'auditqctl migrate')\n", VERIFY_PROG, err);
            PQclear(r);
            goto out;
        }
        /* Every assignment is committed with its checkpoint, so the
         * newest checkpoint's size is the tree's; assignments beyond it
         * are streamed too and show up as unsigned. */
        hi = UINT64_MAX >> 1;
        PQclear(r);
    }
    if (load_retention(v, &rm, &nrm) != 0)
        goto out;
    if (verify_tree(v, &f, hi) != 0)
        goto out;
    if (verify_rows(v, rm, nrm, until == NULL) != 0)
        goto out;
    if (v->have_window && verify_inserted(v) != 0)
        goto out;
    if (verify_retention(v, rm, nrm) != 0)
        goto out;
    for (size_t i = 0; i < narch; i++)
        if (verify_archive(v, archives[i]) != 0)
            goto out;
    if (v->tree_hi > v->tree_lo && v->ck_matched == 0 && v->nfound_total == 0)
        vfind(v, "checkpoint", "no signed checkpoint could be checked against the tree");
report:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    report(v, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    rc = v->nfound_total == 0 ? CTL_OK : CTL_FAILED;
out:
    if (v->pg != NULL) {
        PQclear(PQexec(v->pg, "ROLLBACK"));
        PQfinish(v->pg);
    }
    free(rm);
    free(v->pub);
    free(v->found);
    return rc;
}
