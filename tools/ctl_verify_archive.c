/* ctl_verify_archive.c -- `auditqctl verify --archive FILE`: an
 * archive_mode=csv export (.csv.gz) against the evidence and the retention
 * record of its month. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>
#include <zlib.h>

#include "checkpoint.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_verify.h"
#include "ctl_verify_int.h"
#include "entry.h"
#include "merkle.h"

/* --archive FILE: the export's rows, recomputed here, against the evidence
 * and the month's retention record. */
int verify_archive(verify *v, const char *file)
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

