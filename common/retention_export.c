/* retention_export.c -- archive_mode=csv: an archived month to
 * archive_dir/audit_events_YYYY_MM.csv.gz + .manifest.json, then DROP
 * (retention.h: the policy; retention_run.c: the run that calls
 * ret_do_export).
 *
 * DESIGN
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
#include "fileio.h"
#include "retention_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "auditq.h"

/* Files of one month: audit_events_YYYY_MM, then .2 .. .999 (see retention.h). */
#define RET_MAX_SUFFIX 999
/* A manifest is a few kB; anything much bigger is not ours. */
#define RET_MAX_MANIFEST (1024 * 1024)

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
    return fileio_fsync_dir(dir, err, errlen);
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
int ret_do_export(ret_run *r, retention_part *p)
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
        ret_begin(r, 0, what) != 0 || ret_hold_guard(r, p, what) != 0)
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
    if (fileio_fsync_dir(dir, r->err, r->errlen) != 0)
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
