/* retention.c -- listing audit_events' partitions and applying the
 * retention policy (see retention.h for the policy, the locks, the crash
 * windows and the privileges).
 *
 * DESIGN
 * retention_run = preflight (audit_events found, we own it, settings sane)
 * -> session advisory lock (RET_LOCK_KEY; try only: two overlapping cron
 * runs must not queue) -> retention_list -> retention_plan (pure) -> one
 * transaction per action -> unlock. Every transaction starts with SET LOCAL
 * (UTC, ISO dates, no statement_timeout, lock_timeout 5 s), so the caller's
 * session settings survive, and takes the partition DDL lock of
 * auditq_ensure_partitions when it changes audit_events.
 *
 * An export streams COPY ... TO STDOUT rows through zlib into a temporary
 * file while hashing the compressed bytes (OpenSSL SHA-256), so the file is
 * read once, never again: the digest in the manifest is of exactly the
 * bytes written. zlib and libcrypto rather than our own code: both are
 * maintained, audited, and already on every host with libpq (libpq links
 * libcrypto; zlib is everywhere), and we need no process pipes. Order of
 * durability: data .tmp -> fsync -> rename -> fsync(dir) -> manifest .tmp
 * -> fsync -> rename -> fsync(dir) -> DROP TABLE -> COMMIT. A manifest hence
 * always describes a complete data file; a table is dropped only after both
 * are on disk.
 */
#include "retention.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "auditq.h"
#include "text.h"

/* Session advisory lock serialising retention runs ("aqretain" in ASCII). */
#define RET_LOCK_KEY "7021519074117118318"
#define RET_LOCK_HI  "1634824805"   /* RET_LOCK_KEY >> 32, as pg_locks.classid shows it */
#define RET_LOCK_LO  "1952541038"   /* RET_LOCK_KEY & 0xffffffff, pg_locks.objid */
/* Transaction lock of auditq_ensure_partitions (sql/001, sql/002). */
#define RET_PART_KEY "97113112097114116"
/* Every transaction of ours. lock_timeout: see retention.h. */
#define RET_BEGIN "BEGIN; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; " \
                  "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '5s'; "     \
                  "SET LOCAL client_min_messages = warning"
#define RET_MONTHLY_RE "^audit_events_[0-9]{4}_(0[1-9]|1[0-2])$"
/* Files of one month: audit_events_YYYY_MM, then .2 .. .999 (see retention.h). */
#define RET_MAX_SUFFIX 999
/* A manifest is a few kB; anything much bigger is not ours. */
#define RET_MAX_MANIFEST (1024 * 1024)

/* ---- small helpers --------------------------------------------------------- */

void retention_month_label(int month, char *out, size_t outlen)
{
    if (month < 0)
        snprintf(out, outlen, "-");
    else
        snprintf(out, outlen, "%04d-%02d", month / 12, month % 12 + 1);
}

int retention_hot_from(int current_month, int hot_months)
{
    return current_month - (hot_months - 1);
}

int retention_keep_from(int current_month, int retain_months)
{
    return current_month - (retain_months - 1);
}

static int buf_sink(void *ctx, const char *p, size_t n)
{
    return aq_buf_append(ctx, p, n);
}

int retention_json_append(aq_buf *b, const char *s)
{
    return text_json_string(buf_sink, b, s, strlen(s), 0);
}

/* err = "what: <server message> (SQLSTATE x)", plus the fix for the cases
 * an operator meets: a lock we could not get, a missing privilege. r may
 * be NULL (connection lost, out of memory): the connection's message then. */
void retention_pgerr(PGconn *pg, const PGresult *r, const char *what, char *err, size_t errlen)
{
    const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *fix = "";

    if (msg == NULL) {
        const char *m = PQerrorMessage(pg);

        snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(m, "\n"),
                 m[0] ? m : "connection to the server lost");
        return;
    }
    if (state != NULL && strcmp(state, "55P03") == 0)
        fix = "; a long-running query or transaction holds a conflicting lock on audit_events: "
              "nothing was changed by this step, run again later";
    else if (state != NULL && strcmp(state, "42501") == 0)
        fix = "; run as the owner of audit_events (the role that ran 'auditqctl migrate')";
    snprintf(err, errlen, "%s: %s (SQLSTATE %s)%s", what, msg, state != NULL ? state : "?????", fix);
}

/* Runs one statement (or a list without parameters) expecting no rows or
 * rows we ignore. 0, or -1 with err. */
static int ret_cmd(PGconn *pg, const char *sql, int np, const char *const *pv, const char *what,
                   char *err, size_t errlen)
{
    PGresult *r = np > 0 ? PQexecParams(pg, sql, np, NULL, pv, NULL, NULL, 0) : PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        retention_pgerr(pg, r, what, err, errlen);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* Runs a query expecting rows. The result (caller PQclear-s) or NULL with err. */
static PGresult *ret_query(PGconn *pg, const char *sql, int np, const char *const *pv,
                           const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(pg, sql, np, NULL, pv, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        retention_pgerr(pg, r, what, err, errlen);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Ends a failed transaction, if one is open; the error is already in err. */
static void ret_rollback(PGconn *pg)
{
    if (PQtransactionStatus(pg) != PQTRANS_IDLE)
        PQclear(PQexec(pg, "ROLLBACK"));
}

/* out = "schema"."name" (each part quoted only if it must be), or "name"
 * when schema is NULL. 0, or -1 with err. */
static int ret_qname(PGconn *pg, const char *schema, const char *name, char *out, size_t outlen,
                     char *err, size_t errlen)
{
    char *qs = schema != NULL ? PQescapeIdentifier(pg, schema, strlen(schema)) : NULL;
    char *qn = PQescapeIdentifier(pg, name, strlen(name));
    int rc = -1;

    if (qn == NULL || (schema != NULL && qs == NULL)) {
        snprintf(err, errlen, "cannot quote %s: %s", name, PQerrorMessage(pg));
        goto out;
    }
    if ((size_t)snprintf(out, outlen, "%s%s%s", qs != NULL ? qs : "", qs != NULL ? "." : "",
                         qn) >= outlen) {
        snprintf(err, errlen, "name too long: %s", name);
        goto out;
    }
    rc = 0;
out:
    PQfreemem(qs);
    PQfreemem(qn);
    return rc;
}

/* ---- connecting and listing ------------------------------------------------ */

PGconn *retention_connect(const aq_config *cfg, char *err, size_t errlen)
{
    char timeout[16];
    /* dbname last: a later keyword wins, so what the URL sets beats ours. */
    const char *keys[] = { "application_name", "connect_timeout", "dbname", NULL };
    const char *vals[] = { "auditqctl", timeout, cfg->database_url, NULL };
    PGconn *pg;

    snprintf(timeout, sizeof timeout, "%d", cfg->pg_connect_timeout_s);
    pg = PQconnectdbParams(keys, vals, 1);
    if (pg == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        const char *m = PQerrorMessage(pg);

        snprintf(err, errlen, "cannot connect to PostgreSQL (%.*s); check database_url / "
                 "AUDITQ_DATABASE_URL", (int)strcspn(m, "\n"), m);
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* One row per table: its oid, schema, name, location, bound, the month it
 * holds (-1 unless it is a managed monthly table: named audit_events_YYYY_MM
 * and, if attached, bound to exactly that month), the reltuples estimate,
 * its size. Needs TimeZone = UTC and DateStyle = ISO (RET_BEGIN) for the
 * bound comparison, which is against the text PostgreSQL prints. */
static const char ret_list_sql[] =
    "WITH parent AS (SELECT to_regclass('audit_events') AS relid),"
    " parts AS ("
    "  SELECT c.oid AS relid, n.nspname, c.relname,"
    "         CASE WHEN c.oid = pt.partdefid THEN 2 ELSE 0 END AS loc,"
    "         pg_get_expr(c.relpartbound, c.oid) AS bound"
    "    FROM parent p"
    "    JOIN pg_inherits i ON i.inhparent = p.relid"
    "    JOIN pg_partitioned_table pt ON pt.partrelid = p.relid"
    "    JOIN pg_class c ON c.oid = i.inhrelid"
    "    JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  UNION ALL"
    "  SELECT c.oid, n.nspname, c.relname, 1, ''"
    "    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition"
    "     AND c.relname ~ '" RET_MONTHLY_RE "'"
    " ), named AS ("
    "  SELECT x.*, CASE WHEN x.relname ~ '" RET_MONTHLY_RE "'"
    "    THEN make_timestamptz(substr(x.relname, 14, 4)::int, substr(x.relname, 19, 2)::int,"
    "                          1, 0, 0, 0, 'UTC') END AS m"
    "    FROM parts x"
    " ), sized AS ("
    "  SELECT x.*, CASE WHEN x.m IS NOT NULL AND (x.loc = 1 OR x.bound ="
    "              format('FOR VALUES FROM (%L) TO (%L)', x.m, x.m + interval '1 month'))"
    "         THEN extract(year FROM x.m)::int * 12 + extract(month FROM x.m)::int - 1"
    "         ELSE -1 END AS month,"
    "         CASE WHEN c.reltuples < 0 THEN -1 ELSE c.reltuples::bigint END AS est,"
    "         pg_total_relation_size(x.relid) AS bytes"
    "    FROM named x JOIN pg_class c ON c.oid = x.relid"
    " )"
    " SELECT relid, nspname, relname, loc, coalesce(bound, ''), month, est, bytes,"
    "        pg_size_pretty(bytes)"
    "   FROM sized"
    "  ORDER BY loc = 2, month = -1, month, loc DESC, relname";

/* count(*) of one table into *rows. 0, or -1 with err. */
static int ret_count(PGconn *pg, const retention_part *p, long long *rows, char *err,
                     size_t errlen)
{
    char q[300], sql[400], what[200];
    PGresult *r;

    if (ret_qname(pg, p->schema, p->name, q, sizeof q, err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", q);
    snprintf(what, sizeof what, "counting the rows of %s.%s", p->schema, p->name);
    r = ret_query(pg, sql, 0, NULL, what, err, errlen);
    if (r == NULL)
        return -1;
    *rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

/* retention_list's body, inside the caller's transaction. */
static int ret_list_tx(PGconn *pg, const char *archive_schema, int exact, retention_part **parts,
                       size_t *n, int *current_month, char *err, size_t errlen)
{
    const char *params[1] = { archive_schema };
    retention_part *v = NULL;
    PGresult *r;
    int rows, rc = -1;

    r = ret_query(pg, "SELECT to_regclass('audit_events') IS NOT NULL,"
                  " extract(year FROM now())::int * 12 + extract(month FROM now())::int - 1",
                  0, NULL, "looking up audit_events", err, errlen);
    if (r == NULL)
        return -1;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        snprintf(err, errlen, "table audit_events not found (search_path of database_url's "
                 "role): run 'auditqctl migrate' first, or fix database_url");
        PQclear(r);
        return -1;
    }
    if (current_month != NULL)
        *current_month = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);

    r = ret_query(pg, ret_list_sql, 1, params, "listing the partitions", err, errlen);
    if (r == NULL)
        return -1;
    rows = PQntuples(r);
    v = calloc(rows > 0 ? (size_t)rows : 1, sizeof *v);
    if (v == NULL) {
        snprintf(err, errlen, "out of memory listing %d partitions", rows);
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        retention_part *p = &v[i];

        p->oid = (unsigned int)strtoul(PQgetvalue(r, i, 0), NULL, 10);
        snprintf(p->schema, sizeof p->schema, "%s", PQgetvalue(r, i, 1));
        snprintf(p->name, sizeof p->name, "%s", PQgetvalue(r, i, 2));
        p->location = (int)strtol(PQgetvalue(r, i, 3), NULL, 10);
        snprintf(p->bound, sizeof p->bound, "%s", PQgetvalue(r, i, 4));
        p->month = (int)strtol(PQgetvalue(r, i, 5), NULL, 10);
        p->rows = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        p->bytes = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        snprintf(p->size, sizeof p->size, "%s", PQgetvalue(r, i, 8));
        p->recv_month = -1;
        if ((exact || p->location == RET_LOC_DEFAULT) && ret_count(pg, p, &p->rows, err, errlen) != 0)
            goto out;
    }
    *parts = v;
    *n = (size_t)rows;
    v = NULL;
    rc = 0;
out:
    free(v);
    PQclear(r);
    return rc;
}

int retention_list(PGconn *pg, const char *archive_schema, int exact, retention_part **parts,
                   size_t *n, int *current_month, char *err, size_t errlen)
{
    *parts = NULL;
    *n = 0;
    if (ret_cmd(pg, RET_BEGIN, 0, NULL, "starting a transaction", err, errlen) != 0)
        return -1;
    if (ret_list_tx(pg, archive_schema, exact, parts, n, current_month, err, errlen) != 0 ||
        ret_cmd(pg, "COMMIT", 0, NULL, "listing the partitions", err, errlen) != 0) {
        ret_rollback(pg);
        free(*parts);
        *parts = NULL;
        *n = 0;
        return -1;
    }
    return 0;
}

/* ---- the plan ------------------------------------------------------------------ */

/* Is there an archived table named like parts[i]? */
static int ret_in_archive(const retention_part *parts, size_t n, size_t i)
{
    for (size_t j = 0; j < n; j++)
        if (j != i && parts[j].location == RET_LOC_ARCHIVE && strcmp(parts[j].name, parts[i].name) == 0)
            return 1;
    return 0;
}

size_t retention_plan(const retention_part *parts, size_t n, int current_month, int hot_months,
                      int retain_months, int archive_mode, retention_action *out, size_t max)
{
    int hot_from = retention_hot_from(current_month, hot_months);
    int keep_from = retention_keep_from(current_month, retain_months);
    size_t k = 0;

#define RET_ADD(kind_, i_)                                   \
    do {                                                     \
        if (k < max) {                                       \
            out[k].kind = (kind_);                           \
            out[k].part = (i_);                              \
        }                                                    \
        k++;                                                 \
    } while (0)

    for (size_t i = 0; i < n; i++) {
        const retention_part *p = &parts[i];
        /* The later of the occurred_at month and the month its newest row
         * arrived (retention.h, "The producer's clock"). */
        int eff = p->recv_month > p->month ? p->recv_month : p->month;

        if (p->month < 0 || p->location == RET_LOC_DEFAULT)
            continue;
        if (p->location == RET_LOC_HOT) {
            if (p->month >= hot_from)
                continue;
            if (eff >= hot_from || (p->month < keep_from && eff >= keep_from))
                RET_ADD(RET_ACT_SKIP, i);
            if (eff >= hot_from)
                continue;
            if (eff < keep_from) {
                RET_ADD(RET_ACT_DROP, i);
            } else if (archive_mode == ARCHIVE_CSV) {
                RET_ADD(RET_ACT_ARCHIVE, i);
                RET_ADD(RET_ACT_EXPORT, i);
            } else {
                RET_ADD(ret_in_archive(parts, n, i) ? RET_ACT_MERGE : RET_ACT_ARCHIVE, i);
            }
        } else if (eff < keep_from) {
            RET_ADD(RET_ACT_DROP, i);
        } else {
            if (p->month < keep_from)
                RET_ADD(RET_ACT_SKIP, i);
            if (archive_mode == ARCHIVE_CSV)
                RET_ADD(RET_ACT_EXPORT, i);
        }
    }
#undef RET_ADD
    return k;
}

/* ---- gzip + sha256 file --------------------------------------------------------- */

struct retention_gzfile {
    int fd;
    z_stream z;
    EVP_MD_CTX *md;
    long long bytes;            /* compressed bytes written */
    unsigned char out[1 << 16];
};

static int ret_write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes out what deflate produced and hashes it. */
static int ret_gz_drain(retention_gzfile *f, char *err, size_t errlen)
{
    size_t n = sizeof f->out - f->z.avail_out;

    if (n > 0) {
        if (ret_write_all(f->fd, f->out, n) != 0) {
            snprintf(err, errlen, "write: %s", strerror(errno));
            return -1;
        }
        if (EVP_DigestUpdate(f->md, f->out, n) != 1) {
            snprintf(err, errlen, "sha256 update failed");
            return -1;
        }
        f->bytes += (long long)n;
    }
    f->z.next_out = f->out;
    f->z.avail_out = sizeof f->out;
    return 0;
}

retention_gzfile *retention_gz_open(const char *path, char *err, size_t errlen)
{
    retention_gzfile *f = calloc(1, sizeof *f);

    if (f == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->fd = -1;
    /* windowBits 15 + 16: a gzip header and trailer, so `gunzip` reads it. */
    if (deflateInit2(&f->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        snprintf(err, errlen, "zlib: cannot initialise deflate");
        free(f);
        return NULL;
    }
    f->z.next_out = f->out;
    f->z.avail_out = sizeof f->out;
    f->md = EVP_MD_CTX_new();
    if (f->md == NULL || EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "cannot initialise sha256 (OpenSSL)");
        goto fail;
    }
    f->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (f->fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    return f;
fail:
    retention_gz_abort(f);
    return NULL;
}

int retention_gz_write(retention_gzfile *f, const void *buf, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = buf;

    while (len > 0) {
        /* avail_in is a uInt: feed at most 1 GiB at a time. */
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;

        f->z.next_in = (unsigned char *)(uintptr_t)p;  /* zlib does not write through it */
        f->z.avail_in = (uInt)chunk;
        while (f->z.avail_in > 0) {
            if (deflate(&f->z, Z_NO_FLUSH) == Z_STREAM_ERROR) {
                snprintf(err, errlen, "zlib: deflate failed");
                return -1;
            }
            if (f->z.avail_out == 0 && ret_gz_drain(f, err, errlen) != 0)
                return -1;
        }
        p += chunk;
        len -= chunk;
    }
    return 0;
}

int retention_gz_close(retention_gzfile *f, char sha256[65], long long *bytes, char *err,
                       size_t errlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int zr, rc = -1;

    f->z.next_in = NULL;
    f->z.avail_in = 0;
    do {
        zr = deflate(&f->z, Z_FINISH);
        if (zr == Z_STREAM_ERROR) {
            snprintf(err, errlen, "zlib: deflate failed");
            goto out;
        }
        if (ret_gz_drain(f, err, errlen) != 0)
            goto out;
    } while (zr != Z_STREAM_END);
    if (fsync(f->fd) != 0) {
        snprintf(err, errlen, "fsync: %s", strerror(errno));
        goto out;
    }
    if (close(f->fd) != 0) {
        f->fd = -1;
        snprintf(err, errlen, "close: %s", strerror(errno));
        goto out;
    }
    f->fd = -1;
    if (EVP_DigestFinal_ex(f->md, md, &mdlen) != 1 || mdlen != 32) {
        snprintf(err, errlen, "sha256 final failed");
        goto out;
    }
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(sha256 + 2 * i, 3, "%02x", md[i]);
    *bytes = f->bytes;
    rc = 0;
out:
    retention_gz_abort(f);
    return rc;
}

void retention_gz_abort(retention_gzfile *f)
{
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    deflateEnd(&f->z);
    EVP_MD_CTX_free(f->md);
    free(f);
}

/* ---- files ---------------------------------------------------------------------- */

/* fsync of a directory: makes a rename in it durable. */
static int ret_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "fsync of directory %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* Writes data to dir/name atomically: dir/.name.tmp, fsync, rename, fsync(dir). */
static int ret_write_atomic(const char *dir, const char *name, const char *data, size_t len,
                            char *err, size_t errlen)
{
    char tmp[1100], dst[1100];
    int fd;

    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (ret_write_all(fd, (const unsigned char *)data, len) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, dst) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", dst, strerror(errno));
        return -1;
    }
    return ret_fsync_dir(dir, err, errlen);
}

unsigned int retention_manifest_oid(const char *json)
{
    const char *p = strstr(json, "\"table_oid\"");
    char *end;
    unsigned long v;

    if (p == NULL)
        return 0;
    p += strlen("\"table_oid\"");
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != ':')
        return 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    v = strtoul(p, &end, 10);
    if (errno != 0 || v > 0xffffffffUL)
        return 0;
    return (unsigned int)v;
}

/* The table_oid of the manifest at path: 0 if there is none (or no file). */
static unsigned int ret_read_manifest_oid(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf;
    size_t n;
    unsigned int oid = 0;

    if (f == NULL)
        return 0;
    buf = malloc(RET_MAX_MANIFEST + 1);
    if (buf != NULL) {
        n = fread(buf, 1, RET_MAX_MANIFEST, f);
        buf[n] = '\0';
        oid = retention_manifest_oid(buf);
        free(buf);
    }
    fclose(f);
    return oid;
}

/* Chooses the base file name (without .csv.gz) for exporting table oid of
 * the month: the first of audit_events_YYYY_MM, .2, .3 ... whose manifest
 * is absent or records this same table (a rerun after a crash). 0, or -1
 * with err when all are taken. */
static int ret_choose_base(const char *dir, const char *name, unsigned int oid, char *base,
                           size_t baselen, char *err, size_t errlen)
{
    for (int k = 1; k <= RET_MAX_SUFFIX; k++) {
        char path[1200];
        struct stat st;

        if (k == 1)
            snprintf(base, baselen, "%s", name);
        else
            snprintf(base, baselen, "%s.%d", name, k);
        snprintf(path, sizeof path, "%s/%s.manifest.json", dir, base);
        if (stat(path, &st) != 0 || ret_read_manifest_oid(path) == oid)
            return 0;
    }
    snprintf(err, errlen, "%s/%s.*: %d exports of this month already exist; move them away",
             dir, name, RET_MAX_SUFFIX);
    return -1;
}

/* ---- running -------------------------------------------------------------------- */

typedef struct ret_run {
    PGconn *pg;
    const aq_config *cfg;
    int dry_run;
    retention_report_fn report;
    void *ctx;
    char parent_schema[64];
    char parent_q[300];      /* "schema".audit_events */
    char arch_q[140];        /* the archive schema, quoted */
    char *err;
    size_t errlen;
    int archived, merged, exported, dropped, skipped;
    int hot_from, keep_from;  /* the policy's months for this run */
} ret_run;

static void ret_emit(ret_run *r, const retention_event *ev)
{
    if (r->report != NULL)
        r->report(r->ctx, ev);
}

static void ret_emitf(ret_run *r, int kind, const char *fmt, ...)
{
    retention_event ev;
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.line = line;
    ev.month = -1;
    ev.rows = -1;
    ret_emit(r, &ev);
}

/* How a table is shown: hot ones by name (they sit next to audit_events),
 * archived ones with their schema. */
static void ret_display(const retention_part *p, char *out, size_t outlen)
{
    if (p->location == RET_LOC_ARCHIVE)
        snprintf(out, outlen, "%s.%s", p->schema, p->name);
    else
        snprintf(out, outlen, "%s", p->name);
}

/* Reports one action. */
static void ret_action(ret_run *r, const char *action, const retention_part *p, const char *target,
                       const char *manifest, const char *sha256, long long rows, int done,
                       const char *fmt, ...)
{
    retention_event ev;
    char line[1600], table[140];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ret_display(p, table, sizeof table);
    memset(&ev, 0, sizeof ev);
    ev.kind = RET_EV_ACTION;
    ev.line = line;
    ev.action = action;
    ev.table = table;
    ev.target = target;
    ev.manifest = manifest;
    ev.sha256 = sha256;
    ev.month = p->month;
    ev.rows = rows;
    ev.done = done;
    ret_emit(r, &ev);
}

/* BEGIN with our settings, plus the partition DDL lock when ddl. */
static int ret_begin(ret_run *r, int ddl, const char *what)
{
    if (ret_cmd(r->pg, RET_BEGIN, 0, NULL, what, r->err, r->errlen) != 0)
        return -1;
    if (ddl && ret_cmd(r->pg, "SELECT pg_advisory_xact_lock(" RET_PART_KEY ")", 0, NULL, what,
                       r->err, r->errlen) != 0)
        return -1;
    return 0;
}

static int ret_commit(ret_run *r, const char *what)
{
    return ret_cmd(r->pg, "COMMIT", 0, NULL, what, r->err, r->errlen);
}

/* Makes sure the archived table (oid, quoted name q) has the append-only
 * triggers: the row trigger (DETACH removed the clone of the parent's) and
 * the TRUNCATE one (per table, it survives DETACH; checked all the same). */
static int ret_protect(ret_run *r, unsigned int oid, const char *q, const char *what)
{
    /* bit 1 row, 8 delete, 16 update, 32 truncate (pg_trigger.tgtype). */
    static const char check[] =
        "SELECT coalesce(bool_or((t.tgtype & 25) = 25), false),"
        "       coalesce(bool_or((t.tgtype & 33) = 32), false)"
        "  FROM pg_trigger t"
        " WHERE t.tgrelid = $1::oid AND t.tgenabled <> 'D'"
        "   AND t.tgfoid = to_regprocedure(format('%I.auditq_refuse_modification()', $2::text))";
    char oidtxt[16], sql[700], fn[200];
    const char *pv[2] = { oidtxt, r->parent_schema };
    PGresult *res;
    int row_ok, trunc_ok;

    snprintf(oidtxt, sizeof oidtxt, "%u", oid);
    res = ret_query(r->pg, check, 2, pv, what, r->err, r->errlen);
    if (res == NULL)
        return -1;
    row_ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    trunc_ok = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    if (ret_qname(r->pg, r->parent_schema, "auditq_refuse_modification", fn, sizeof fn, r->err,
                  r->errlen) != 0)
        return -1;
    if (!row_ok) {
        snprintf(sql, sizeof sql, "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE"
                 " ON %s FOR EACH ROW EXECUTE FUNCTION %s()", q, fn);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
            return -1;
    }
    if (!trunc_ok) {
        snprintf(sql, sizeof sql, "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE"
                 " ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()", q, fn);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
            return -1;
    }
    return 0;
}

/* Integrity evidence (sql/005_integrity.sql, docs/INTEGRITY.md): the rows
 * of table q (month p->month) are about to leave audit_events -- `action`
 * "detach" (archived) or "drop". Records their count and the hash of their
 * leaves as a retention record, in the transaction that removes them, so
 * `auditqctl verify` reports them as archived, verified by hash, rather
 * than deleted. A database without the evidence (migrated before 005)
 * records nothing. 0, or -1 with r->err. */
static int ret_seal_removal(ret_run *r, const retention_part *p, const char *q, const char *action,
                            const char *what)
{
    char from[40];
    const char *pv[3] = { q, from, action };
    PGresult *res = ret_query(r->pg, "SELECT to_regprocedure('auditq_evidence_retain(regclass, timestamptz, text)')"
                              " IS NOT NULL", 0, NULL, what, r->err, r->errlen);
    int have;

    if (res == NULL)
        return -1;
    have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!have)
        return 0;
    snprintf(from, sizeof from, "%04d-%02d-01 00:00:00+00", p->month / 12, p->month % 12 + 1);
    res = ret_query(r->pg, "SELECT auditq_evidence_retain($1::regclass, $2::timestamptz, $3)", 3, pv,
                    what, r->err, r->errlen);
    if (res == NULL)
        return -1;
    PQclear(res);
    return 0;
}

/* Hot month -> archive_schema (both modes; in csv mode it waits there for
 * its export). On success p describes the archived table. */
static int ret_do_archive(ret_run *r, retention_part *p)
{
    char hot_q[300], arch_tq[300], sql[800], what[200], month[16], target[140], *lit = NULL;
    int rc = -1;

    snprintf(target, sizeof target, "%s.%s", r->cfg->archive_schema, p->name);
    if (r->dry_run) {
        ret_action(r, "archive", p, target, NULL, NULL, -1, 0, "would archive %s -> %s", p->name,
                   target);
        goto moved;
    }
    snprintf(what, sizeof what, "archiving %s", p->name);
    retention_month_label(p->month, month, sizeof month);
    if (ret_qname(r->pg, p->schema, p->name, hot_q, sizeof hot_q, r->err, r->errlen) != 0 ||
        ret_qname(r->pg, r->cfg->archive_schema, p->name, arch_tq, sizeof arch_tq, r->err,
                  r->errlen) != 0 ||
        ret_begin(r, 1, what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", r->arch_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 ||
        ret_seal_removal(r, p, hot_q, "detach", what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s", r->parent_q, hot_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    snprintf(sql, sizeof sql, "ALTER TABLE %s SET SCHEMA %s", hot_q, r->arch_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    if (ret_protect(r, p->oid, arch_tq, what) != 0)
        goto out;
    {
        char note[200];

        snprintf(note, sizeof note, "auditq: month %s of %s.audit_events, archived by retention",
                 month, r->parent_schema);
        lit = PQescapeLiteral(r->pg, note, strlen(note));
        if (lit == NULL) {
            snprintf(r->err, r->errlen, "%s: %s", what, PQerrorMessage(r->pg));
            goto out;
        }
        snprintf(sql, sizeof sql, "COMMENT ON TABLE %s IS %s", arch_tq, lit);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
            goto out;
    }
    r->archived++;
    ret_action(r, "archive", p, target, NULL, NULL, -1, 1, "archived %s -> %s", p->name, target);
moved:
    snprintf(p->schema, sizeof p->schema, "%s", r->cfg->archive_schema);
    p->location = RET_LOC_ARCHIVE;
    rc = 0;
out:
    PQfreemem(lit);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* "a", "b", ... -- the column list of audit_events, quoted by the server. */
static int ret_columns(ret_run *r, char *out, size_t outlen, const char *what)
{
    PGresult *res = ret_query(r->pg,
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = to_regclass('audit_events') AND attnum > 0 AND NOT attisdropped",
        0, NULL, what, r->err, r->errlen);

    if (res == NULL)
        return -1;
    if ((size_t)snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0)) >= outlen) {
        snprintf(r->err, r->errlen, "%s: column list too long", what);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

/* Schema mode, a hot month whose table is already archived (its late rows:
 * DEFAULT rows of an archived month, moved by `partitions ensure` into a new
 * hot table): append them to the archived table and drop the hot one, in
 * one transaction. DETACH comes first, so no insert can reach the hot table
 * between the copy and the drop; that holds audit_events' ACCESS EXCLUSIVE
 * lock for the copy, which late rows keep short. */
static int ret_do_merge(ret_run *r, retention_part *p)
{
    char hot_q[300], arch_tq[300], cols[4096], sql[9000], what[300], target[140];
    PGresult *res = NULL;
    long long rows;
    int rc = -1;

    snprintf(target, sizeof target, "%s.%s", r->cfg->archive_schema, p->name);
    if (r->dry_run) {
        ret_action(r, "merge", p, target, NULL, NULL, -1, 0, "would merge %s into %s", p->name, target);
        return 0;
    }
    snprintf(what, sizeof what, "merging %s into %s", p->name, target);
    if (ret_qname(r->pg, p->schema, p->name, hot_q, sizeof hot_q, r->err, r->errlen) != 0 ||
        ret_qname(r->pg, r->cfg->archive_schema, p->name, arch_tq, sizeof arch_tq, r->err,
                  r->errlen) != 0 ||
        ret_begin(r, 1, what) != 0 || ret_columns(r, cols, sizeof cols, what) != 0 ||
        ret_seal_removal(r, p, hot_q, "detach", what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s", r->parent_q, hot_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    snprintf(sql, sizeof sql, "INSERT INTO %s (%s) SELECT %s FROM %s", arch_tq, cols, cols, hot_q);
    res = PQexec(r->pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        retention_pgerr(r->pg, res, what, r->err, r->errlen);
        goto out;
    }
    rows = strtoll(PQcmdTuples(res), NULL, 10);
    snprintf(sql, sizeof sql, "DROP TABLE %s", hot_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
        goto out;
    r->merged++;
    ret_action(r, "merge", p, target, NULL, NULL, rows, 1, "merged %lld rows of %s into %s", rows,
               p->name, target);
    rc = 0;
out:
    PQclear(res);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* Drops a month older than retain_months, hot (DROP TABLE of a partition
 * detaches it: ACCESS EXCLUSIVE on audit_events for a moment) or archived. */
static int ret_do_drop(ret_run *r, const retention_part *p)
{
    char q[300], sql[400], what[200], table[140];
    int rc = -1;

    ret_display(p, table, sizeof table);
    if (r->dry_run) {
        ret_action(r, "drop", p, NULL, NULL, NULL, -1, 0, "would drop %s (older than retain_months=%d)",
                   table, r->cfg->retain_months);
        return 0;
    }
    snprintf(what, sizeof what, "dropping %s", table);
    if (ret_qname(r->pg, p->schema, p->name, q, sizeof q, r->err, r->errlen) != 0 ||
        ret_begin(r, p->location == RET_LOC_HOT, what) != 0)
        goto out;
    if (p->location == RET_LOC_HOT && ret_seal_removal(r, p, q, "drop", what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "DROP TABLE %s", q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
        goto out;
    r->dropped++;
    ret_action(r, "drop", p, NULL, NULL, NULL, -1, 1, "dropped %s (older than retain_months=%d)",
               table, r->cfg->retain_months);
    rc = 0;
out:
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* The manifest of an export, as JSON text into b. */
static int ret_manifest(ret_run *r, aq_buf *b, const retention_part *p, const char *file,
                        long long rows, long long bytes, const char *sha256, const PGresult *cols)
{
    char month[16], exported[32];
    time_t now = time(NULL);
    struct tm tm;
    int y = p->month / 12, m = p->month % 12 + 1;
    int ny = m == 12 ? y + 1 : y, nm = m == 12 ? 1 : m + 1;
    int bad = 0;

    retention_month_label(p->month, month, sizeof month);
    gmtime_r(&now, &tm);
    strftime(exported, sizeof exported, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bad |= aq_buf_printf(b, "{\n  \"format\": \"auditq-partition-export/1\",\n  \"table\": ");
    bad |= retention_json_append(b, p->name);
    bad |= aq_buf_printf(b, ",\n  \"source\": ");
    {
        char src[140];

        snprintf(src, sizeof src, "%s.%s", p->schema, p->name);
        bad |= retention_json_append(b, src);
    }
    bad |= aq_buf_printf(b, ",\n  \"database\": ");
    bad |= retention_json_append(b, PQdb(r->pg) != NULL ? PQdb(r->pg) : "");
    bad |= aq_buf_printf(b, ",\n  \"table_oid\": %u,\n  \"month\": \"%s\",\n"
                       "  \"range\": {\"from\": \"%04d-%02d-01T00:00:00Z\", \"to\": \"%04d-%02d-01T00:00:00Z\"},\n"
                       "  \"row_count\": %lld,\n  \"file\": ",
                       p->oid, month, y, m, ny, nm, rows);
    bad |= retention_json_append(b, file);
    bad |= aq_buf_printf(b, ",\n  \"file_bytes\": %lld,\n  \"sha256\": \"%s\",\n"
                       "  \"compression\": \"gzip\",\n"
                       "  \"csv\": {\"header\": true, \"encoding\": \"UTF8\", \"timezone\": \"UTC\","
                       " \"null\": \"unquoted empty field\"},\n  \"columns\": [",
                       bytes, sha256);
    for (int i = 0; i < PQntuples(cols); i++) {
        bad |= aq_buf_printf(b, "%s\n    {\"name\": ", i > 0 ? "," : "");
        bad |= retention_json_append(b, PQgetvalue(cols, i, 0));
        bad |= aq_buf_printf(b, ", \"type\": ");
        bad |= retention_json_append(b, PQgetvalue(cols, i, 1));
        bad |= aq_buf_printf(b, "}");
    }
    bad |= aq_buf_printf(b, "\n  ],\n  \"exported_at\": \"%s\",\n  \"auditq_version\": \"%s\"\n}\n",
                       exported, AUDITQ_VERSION);
    if (bad) {
        snprintf(r->err, r->errlen, "out of memory building the manifest");
        return -1;
    }
    return 0;
}

/* Stops a COPY OUT we no longer want: cancel, then drain what is left. */
static void ret_copy_abandon(PGconn *pg)
{
    PGcancel *c = PQgetCancel(pg);
    char buf[256];
    char *row;
    PGresult *res;
    int len;

    if (c != NULL) {
        PQcancel(c, buf, sizeof buf);
        PQfreeCancel(c);
    }
    while ((len = PQgetCopyData(pg, &row, 0)) >= 0)
        PQfreemem(row);
    while ((res = PQgetResult(pg)) != NULL)
        PQclear(res);
}

/* COPY of table q (columns cols) into the gzip file f; *rows = data rows. */
static int ret_copy_out(ret_run *r, const retention_part *p, const char *q, const char *cols,
                        retention_gzfile *f, long long *rows, const char *what)
{
    char sql[9000], table[140];
    PGresult *res;
    long long lines = 0, reported;
    char *row;
    int len;

    ret_display(p, table, sizeof table);
    snprintf(sql, sizeof sql, "COPY (SELECT %s FROM %s) TO STDOUT WITH (FORMAT csv, HEADER true,"
             " ENCODING 'UTF8')", cols, q);
    res = PQexec(r->pg, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        retention_pgerr(r->pg, res, what, r->err, r->errlen);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    /* One PQgetCopyData call = one CSV record (libpq hands out whole rows),
     * even when a quoted field spans lines. The first is the header. */
    while ((len = PQgetCopyData(r->pg, &row, 0)) >= 0) {
        int wr = retention_gz_write(f, row, (size_t)len, r->err, r->errlen);

        PQfreemem(row);
        if (wr != 0) {
            ret_copy_abandon(r->pg);
            return -1;
        }
        if (++lines > 1 && (lines - 1) % RETENTION_PROGRESS_ROWS == 0) {
            retention_event ev;
            char line[300];

            snprintf(line, sizeof line, "exporting %s: %lld rows", table, lines - 1);
            memset(&ev, 0, sizeof ev);
            ev.kind = RET_EV_PROGRESS;
            ev.line = line;
            ev.action = "export";
            ev.table = table;
            ev.month = p->month;
            ev.rows = lines - 1;
            ret_emit(r, &ev);
        }
    }
    if (len == -2) {
        retention_pgerr(r->pg, NULL, what, r->err, r->errlen);
        return -1;
    }
    res = PQgetResult(r->pg);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        retention_pgerr(r->pg, res, what, r->err, r->errlen);
        PQclear(res);
        while ((res = PQgetResult(r->pg)) != NULL)
            PQclear(res);
        return -1;
    }
    reported = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    while ((res = PQgetResult(r->pg)) != NULL)
        PQclear(res);
    *rows = lines > 0 ? lines - 1 : 0;
    if (reported != *rows) {
        snprintf(r->err, r->errlen, "%s: the server sent %lld rows but reported %lld", what, *rows,
                 reported);
        return -1;
    }
    return 0;
}

/* csv mode: an archived table -> archive_dir/BASE.csv.gz + BASE.manifest.json,
 * then DROP TABLE, in one transaction holding a SHARE lock on the table from
 * before the COPY to the DROP, so the files hold exactly the rows dropped. */
static int ret_do_export(ret_run *r, retention_part *p)
{
    const char *dir = r->cfg->archive_dir;
    char q[300], cols[4096], what[200], table[140], base[200], name[260];
    char tmp[1300] = "", data[1300], manifest[1300], sha[65] = "", oidtxt[16];
    const char *pv[1] = { oidtxt };
    retention_gzfile *f = NULL;
    PGresult *types = NULL;
    aq_buf mb = { 0 };
    long long rows = 0, bytes = 0;
    int rc = -1;

    ret_display(p, table, sizeof table);
    snprintf(what, sizeof what, "exporting %s", table);
    if (ret_choose_base(dir, p->name, p->oid, base, sizeof base, r->err, r->errlen) != 0)
        return -1;
    snprintf(data, sizeof data, "%s/%s.csv.gz", dir, base);
    snprintf(manifest, sizeof manifest, "%s/%s.manifest.json", dir, base);
    if (r->dry_run) {
        ret_action(r, "export", p, data, manifest, NULL, -1, 0, "would export %s to %s, then drop it",
                   table, data);
        return 0;
    }
    snprintf(oidtxt, sizeof oidtxt, "%u", p->oid);
    if (ret_qname(r->pg, p->schema, p->name, q, sizeof q, r->err, r->errlen) != 0 ||
        ret_begin(r, 0, what) != 0)
        goto out;
    {
        char sql[400];

        snprintf(sql, sizeof sql, "LOCK TABLE %s IN SHARE MODE", q);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
            goto out;
    }
    types = ret_query(r->pg, "SELECT attname, format_type(atttypid, atttypmod),"
                      " string_agg(quote_ident(attname), ', ') OVER (ORDER BY attnum"
                      "   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
                      " FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0"
                      " AND NOT attisdropped ORDER BY attnum", 1, pv, what, r->err, r->errlen);
    if (types == NULL)
        goto out;
    if (PQntuples(types) == 0 ||
        (size_t)snprintf(cols, sizeof cols, "%s", PQgetvalue(types, 0, 2)) >= sizeof cols) {
        snprintf(r->err, r->errlen, "%s: cannot read its columns", what);
        goto out;
    }

    snprintf(tmp, sizeof tmp, "%s/.%s.csv.gz.tmp", dir, base);
    f = retention_gz_open(tmp, r->err, r->errlen);
    if (f == NULL)
        goto out;
    if (ret_copy_out(r, p, q, cols, f, &rows, what) != 0)
        goto out;
    {
        retention_gzfile *g = f;

        f = NULL;  /* retention_gz_close frees it, in every case */
        if (retention_gz_close(g, sha, &bytes, r->err, r->errlen) != 0)
            goto out;
    }
    if (rename(tmp, data) != 0) {
        snprintf(r->err, r->errlen, "%s: rename %s -> %s: %s", what, tmp, data, strerror(errno));
        goto out;
    }
    if (ret_fsync_dir(dir, r->err, r->errlen) != 0)
        goto out;
    snprintf(name, sizeof name, "%s.csv.gz", base);
    if (ret_manifest(r, &mb, p, name, rows, bytes, sha, types) != 0)
        goto out;
    snprintf(name, sizeof name, "%s.manifest.json", base);
    if (ret_write_atomic(dir, name, mb.data, mb.len, r->err, r->errlen) != 0)
        goto out;
    r->exported++;
    ret_action(r, "export", p, data, manifest, sha, rows, 1, "exported %s: %lld rows to %s (sha256 %s)",
               table, rows, data, sha);
    {
        char sql[400];

        snprintf(sql, sizeof sql, "DROP TABLE %s", q);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
            goto out;
    }
    r->dropped++;
    ret_action(r, "drop", p, NULL, NULL, NULL, rows, 1, "dropped %s (exported to %s)", table, data);
    rc = 0;
out:
    retention_gz_abort(f);
    if (rc != 0 && tmp[0] != '\0')
        unlink(tmp);  /* a partial file, or nothing: the data file was renamed */
    PQclear(types);
    free(mb.data);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* Checks that audit_events exists, that we may change it, and that the
 * settings make sense here; fills r->parent_schema and the quoted names. */
static int ret_preflight(ret_run *r)
{
    PGresult *res = ret_query(r->pg,
        "SELECT n.nspname, c.relowner::regrole::text, current_user::text,"
        "       pg_has_role(current_user, c.relowner, 'USAGE')"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass('audit_events')", 0, NULL, "looking up audit_events",
        r->err, r->errlen);
    int rc = -1;

    if (res == NULL)
        return -1;
    if (PQntuples(res) == 0) {
        snprintf(r->err, r->errlen, "table audit_events not found (search_path of database_url's "
                 "role): run 'auditqctl migrate' first, or fix database_url");
        goto out;
    }
    snprintf(r->parent_schema, sizeof r->parent_schema, "%s", PQgetvalue(res, 0, 0));
    if (strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
        snprintf(r->err, r->errlen, "retention changes audit_events, which only its owner may do: "
                 "connected as role %s, owner is %s; use the database_url of the role that ran "
                 "'auditqctl migrate'", PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 1));
        goto out;
    }
    if (strcmp(r->parent_schema, r->cfg->archive_schema) == 0) {
        snprintf(r->err, r->errlen, "archive_schema = %s is the schema of audit_events itself; "
                 "choose another (e.g. auditq_archive)", r->cfg->archive_schema);
        goto out;
    }
    if (ret_qname(r->pg, r->parent_schema, "audit_events", r->parent_q, sizeof r->parent_q,
                  r->err, r->errlen) != 0 ||
        ret_qname(r->pg, NULL, r->cfg->archive_schema, r->arch_q, sizeof r->arch_q, r->err,
                  r->errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* csv mode: archive_dir must be a writable directory before anything is
 * detached (created, one level, if missing). */
static int ret_check_dir(ret_run *r)
{
    const char *dir = r->cfg->archive_dir;
    struct stat st;

    if (stat(dir, &st) != 0) {
        if (errno == ENOENT && r->dry_run) {
            ret_emitf(r, RET_EV_WARNING, "archive_dir %s does not exist yet; it will be created", dir);
            return 0;
        }
        if (errno != ENOENT || mkdir(dir, 0750) != 0) {
            snprintf(r->err, r->errlen, "archive_dir %s: %s; create it (writable by this user) or "
                     "fix archive_dir", dir, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0) {
        snprintf(r->err, r->errlen, "archive_dir %s is not a directory this user can write; fix its "
                 "permissions or archive_dir", dir);
        return -1;
    }
    return 0;
}

/* Takes the run lock, or says who holds it. 0, RETENTION_BUSY, or -1. */
static int ret_lock(ret_run *r)
{
    PGresult *res = ret_query(r->pg, "SELECT pg_try_advisory_lock(" RET_LOCK_KEY ")", 0, NULL,
                              "taking the retention lock", r->err, r->errlen);
    int got;

    if (res == NULL)
        return -1;
    got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (got)
        return 0;
    res = ret_query(r->pg,
        "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l"
        "  LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = " RET_LOCK_HI
        "   AND l.objid = " RET_LOCK_LO " AND l.objsubid = 1 LIMIT 1",
        0, NULL, "taking the retention lock", r->err, r->errlen);
    snprintf(r->err, r->errlen, "another retention run holds the lock (PostgreSQL backend pid %s, "
             "application_name '%s'); nothing done: run again when it has finished",
             res != NULL && PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "?",
             res != NULL && PQntuples(res) > 0 ? PQgetvalue(res, 0, 1) : "?");
    PQclear(res);
    return RETENTION_BUSY;
}

/* "YYYY-MM-01 00:00:00+00", the first instant of a month (UTC). */
static void ret_month_start(int month, char *out, size_t outlen)
{
    snprintf(out, outlen, "%04d-%02d-01 00:00:00+00", month / 12, month % 12 + 1);
}

/* The received_at probe of one table (retention.h, "The producer's
 * clock"): fills p->recv_*. enable_seqscan = off: with the BRIN index of
 * sql/004 the planner must use it -- a seq scan under LIMIT 1 is only fast
 * when a row matches early, and the common answer is "none", which would
 * read the whole month. A table without the index (made by hand) is still
 * scanned, correctly, just not cheaply. */
static int ret_probe_one(ret_run *r, retention_part *p, const char *keep, const char *hot)
{
    char q[300], sql[700], what[200], table[140];
    const char *pv[2] = { keep, hot };
    PGresult *res = NULL;
    int rc = -1;

    ret_display(p, table, sizeof table);
    snprintf(what, sizeof what, "looking for rows of %s received since %.10s", table, keep);
    if (ret_qname(r->pg, p->schema, p->name, q, sizeof q, r->err, r->errlen) != 0 ||
        ret_begin(r, 0, what) != 0 ||
        ret_cmd(r->pg, "SET LOCAL enable_seqscan = off", 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE received_at >= $1::timestamptz LIMIT 1", q);
    res = ret_query(r->pg, sql, 1, pv, what, r->err, r->errlen);
    if (res == NULL)
        goto out;
    if (PQntuples(res) > 0) {
        PQclear(res);
        /* Only for a table that will be skipped: exact numbers for the
         * operator, read through the same index. */
        snprintf(sql, sizeof sql, "SELECT count(*), count(*) FILTER (WHERE received_at >= "
                 "$2::timestamptz), max(received_at)::text, extract(year FROM max(received_at))::int"
                 " * 12 + extract(month FROM max(received_at))::int - 1 FROM %s"
                 " WHERE received_at >= $1::timestamptz", q);
        res = ret_query(r->pg, sql, 2, pv, what, r->err, r->errlen);
        if (res == NULL)
            goto out;
        p->recv_rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        p->recv_rows_hot = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        snprintf(p->recv_newest, sizeof p->recv_newest, "%s", PQgetvalue(res, 0, 2));
        p->recv_month = (int)strtol(PQgetvalue(res, 0, 3), NULL, 10);
    }
    rc = ret_commit(r, what);
out:
    PQclear(res);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* Probes every table the policy would archive or drop by its month. */
static int ret_probe_received(ret_run *r, retention_part *parts, size_t n)
{
    char keep[40], hot[40];

    ret_month_start(r->keep_from, keep, sizeof keep);
    ret_month_start(r->hot_from, hot, sizeof hot);
    for (size_t i = 0; i < n; i++) {
        retention_part *p = &parts[i];

        if (p->month < 0 || p->location == RET_LOC_DEFAULT)
            continue;
        if (p->location == RET_LOC_HOT ? p->month >= r->hot_from : p->month >= r->keep_from)
            continue;
        if (ret_probe_one(r, p, keep, hot) != 0)
            return -1;
    }
    return 0;
}

/* Reports a table kept because of rows received within the period: hot
 * ones are not archived (rows received since hot_from) or, if they hold
 * none of those, not dropped; archived ones are not dropped. */
static void ret_do_skip(ret_run *r, const retention_part *p)
{
    retention_event ev;
    char line[1200], table[140], month[16], since[16];
    int hot = p->location == RET_LOC_HOT && p->recv_month >= r->hot_from;
    long long rows = hot ? p->recv_rows_hot : p->recv_rows;

    ret_display(p, table, sizeof table);
    retention_month_label(p->month, month, sizeof month);
    retention_month_label(hot ? r->hot_from : r->keep_from, since, sizeof since);
    snprintf(since + strlen(since), sizeof since - strlen(since), "-01");
    if (hot)
        snprintf(line, sizeof line, "skipped %s (month %s): %lld row%s received since %s, within "
                 "hot_months=%d (newest received_at %s); kept in audit_events until %s older",
                 table, month, rows, rows == 1 ? "" : "s", since, r->cfg->hot_months, p->recv_newest,
                 rows == 1 ? "it is" : "they are");
    else
        snprintf(line, sizeof line, "skipped the drop of %s (month %s): %lld row%s received since "
                 "%s, within retain_months=%d (newest received_at %s); kept until %s older",
                 table, month, rows, rows == 1 ? "" : "s", since, r->cfg->retain_months,
                 p->recv_newest, rows == 1 ? "it is" : "they are");
    r->skipped++;
    memset(&ev, 0, sizeof ev);
    ev.kind = RET_EV_ACTION;
    ev.line = line;
    ev.action = "skip";
    ev.table = table;
    ev.newest = p->recv_newest;
    ev.since = since;
    ev.within = hot ? "hot_months" : "retain_months";
    ev.month = p->month;
    ev.rows = rows;
    ev.done = 1;
    ret_emit(r, &ev);
}

/* Warnings about tables retention leaves alone. */
static void ret_warn_unmanaged(ret_run *r, const retention_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const retention_part *p = &parts[i];

        if (p->location == RET_LOC_DEFAULT && p->rows > 0)
            ret_emitf(r, RET_EV_WARNING, "the DEFAULT partition %s holds %lld rows; retention "
                      "never touches them: run 'auditqctl partitions ensure' to move them into "
                      "monthly partitions", p->name, p->rows);
        else if (p->location == RET_LOC_HOT && p->month < 0)
            ret_emitf(r, RET_EV_WARNING, "%s.%s (%s) is not a monthly partition named after its "
                      "month; retention leaves it alone", p->schema, p->name, p->bound);
    }
}

static int ret_execute(ret_run *r, retention_part *parts, const retention_action *acts, size_t nacts)
{
    for (size_t i = 0; i < nacts; i++) {
        retention_part *p = &parts[acts[i].part];
        int rc = 0;

        switch (acts[i].kind) {
        case RET_ACT_ARCHIVE: rc = ret_do_archive(r, p); break;
        case RET_ACT_MERGE:   rc = ret_do_merge(r, p); break;
        case RET_ACT_EXPORT:  rc = ret_do_export(r, p); break;
        case RET_ACT_DROP:    rc = ret_do_drop(r, p); break;
        case RET_ACT_SKIP:    ret_do_skip(r, p); break;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

int retention_run(PGconn *pg, const aq_config *cfg, int dry_run, retention_report_fn report,
                  void *ctx, char *err, size_t errlen)
{
    ret_run r;
    retention_part *parts = NULL;
    retention_action *acts = NULL;
    size_t n = 0, nacts;
    int current = 0, locked = 0, rc = RETENTION_FAILED;

    memset(&r, 0, sizeof r);
    r.pg = pg;
    r.cfg = cfg;
    r.dry_run = dry_run;
    r.report = report;
    r.ctx = ctx;
    r.err = err;
    r.errlen = errlen;

    if (ret_preflight(&r) != 0)
        goto out;
    if (!dry_run) {
        int l = ret_lock(&r);

        if (l != 0) {
            rc = l == RETENTION_BUSY ? RETENTION_BUSY : RETENTION_FAILED;
            goto out;
        }
        locked = 1;
    }
    if (retention_list(pg, cfg->archive_schema, 0, &parts, &n, &current, err, errlen) != 0)
        goto out;
    r.hot_from = retention_hot_from(current, cfg->hot_months);
    r.keep_from = retention_keep_from(current, cfg->retain_months);

    {
        retention_event ev;
        char line[700], hot[16], keep[16];

        memset(&ev, 0, sizeof ev);
        ev.kind = RET_EV_POLICY;
        ev.hot_from = retention_hot_from(current, cfg->hot_months);
        ev.keep_from = retention_keep_from(current, cfg->retain_months);
        ev.month = current;
        ev.rows = -1;
        retention_month_label(ev.hot_from, hot, sizeof hot);
        retention_month_label(ev.keep_from, keep, sizeof keep);
        if (cfg->archive_mode == ARCHIVE_CSV)
            snprintf(line, sizeof line, "policy: audit_events keeps %s and later (hot_months=%d); "
                     "older months are exported to %s (archive_mode=csv); months before %s are "
                     "dropped (retain_months=%d)", hot, cfg->hot_months, cfg->archive_dir, keep,
                     cfg->retain_months);
        else
            snprintf(line, sizeof line, "policy: audit_events keeps %s and later (hot_months=%d); "
                     "older months move to schema %s (archive_mode=schema); months before %s are "
                     "dropped (retain_months=%d)", hot, cfg->hot_months, cfg->archive_schema, keep,
                     cfg->retain_months);
        ev.line = line;
        ret_emit(&r, &ev);
    }
    ret_warn_unmanaged(&r, parts, n);
    /* Before anything is detached: a csv run must be able to finish. */
    if (cfg->archive_mode == ARCHIVE_CSV && ret_check_dir(&r) != 0)
        goto out;

    if (ret_probe_received(&r, parts, n) != 0)
        goto out;
    /* At most three actions per table (skip, archive, export). */
    acts = calloc(3 * n + 1, sizeof *acts);
    if (acts == NULL) {
        snprintf(err, errlen, "out of memory planning %zu partitions", n);
        goto out;
    }
    nacts = retention_plan(parts, n, current, cfg->hot_months, cfg->retain_months,
                           cfg->archive_mode, acts, 3 * n + 1);
    if (nacts == 0) {
        ret_emitf(&r, RET_EV_INFO, "nothing to do");
        rc = RETENTION_OK;
        goto out;
    }
    if (ret_execute(&r, parts, acts, nacts) != 0)
        goto out;
    if (dry_run && r.skipped > 0)
        ret_emitf(&r, RET_EV_INFO, "dry run: %zu action(s) planned, %d month(s) skipped for rows "
                  "received within the period; nothing changed", nacts - (size_t)r.skipped,
                  r.skipped);
    else if (dry_run)
        ret_emitf(&r, RET_EV_INFO, "dry run: %zu action(s) planned; nothing changed", nacts);
    else if (r.skipped > 0)
        ret_emitf(&r, RET_EV_INFO, "done: %d archived, %d merged, %d exported, %d dropped, "
                  "%d skipped for rows received within the period", r.archived, r.merged,
                  r.exported, r.dropped, r.skipped);
    else
        ret_emitf(&r, RET_EV_INFO, "done: %d archived, %d merged, %d exported, %d dropped",
                  r.archived, r.merged, r.exported, r.dropped);
    rc = RETENTION_OK;
out:
    if (locked) {
        char e2[256];

        ret_rollback(pg);
        ret_cmd(pg, "SELECT pg_advisory_unlock(" RET_LOCK_KEY ")", 0, NULL, "unlock", e2, sizeof e2);
    }
    free(acts);
    free(parts);
    return rc;
}
