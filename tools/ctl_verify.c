/* ctl_verify.c -- `auditqctl verify`: checks the stored events against the
 * sealed evidence, the Merkle tree and the signed checkpoints (issue 12;
 * docs/INTEGRITY.md, "Verifying").
 *
 * DESIGN
 * One REPEATABLE READ, READ ONLY transaction, so every query sees the same
 * snapshot. Three streams (memory is bounded by what one of them holds
 * at a time, the findings kept for the report -- at most
 * VERIFY_FINDINGS_KEPT, all counted -- and the list of published
 * checkpoints, and in a full run one part's evidence per --jobs thread:
 * ctl_verify_join.c); the tree and the checkpoints are server-side
 * cursors read VERIFY_FETCH rows at a time, the rows stream (COPY in a
 * full run, single-row mode in an incremental one) so that PostgreSQL
 * produces while we hash:
 *   1. the tree: assignments in leaf order with their batches' stored leaf
 *      hashes (retention records: the leaf recomputed here from the
 *      record). Appended to a frontier; at every size where a checkpoint
 *      exists -- signed rows in PostgreSQL, merged in from a second cursor,
 *      and the files of anchor_dir/--anchors -- the root is compared with
 *      the checkpoint's, whose signature was checked with the verifier
 *      keys. A gap or overlap in the leaf indexes is a missing or
 *      reordered batch; a root that differs names the leaf range between
 *      the last checkpoint that matched and this one.
 *   2. the evidence, joined to the rows (in a full run here, part by
 *      part: ctl_verify_join.c; incremental: in PostgreSQL,
 *      ctl_verify_rows.c): each row's leaf is recomputed
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

#include "checkpoint.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_verify.h"
#include "ctl_verify_int.h"
#include "entry.h"
#include "merkle.h"

const char ctl_verify_synopsis[] =
    "verify [OPTIONS]                 check every event against the signed Merkle tree";

const char ctl_verify_help[] =
    "Usage: auditqctl [OPTIONS] verify [--key FILE]... [--anchors DIR] [--json]\n"
    "                                  [--since TIME] [--until TIME] [--pending-max DURATION]\n"
    "                                  [--archive FILE]... [--jobs N]\n"
    "                                  [--part-events N]\n"
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
    "  --jobs N          read the rows over N connections in parallel, each a\n"
    "                    range of occurred_at, all in one snapshot (default 2,\n"
    "                    at most 16; 1: one connection)\n"
    "  --part-events N   a full run checks the rows in parts of at most N events,\n"
    "                    holding one part's evidence per connection in memory,\n"
    "                    ~100 bytes an event (default 500000: ~50 MB)\n"
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
                      vfy_be64(PQgetvalue(r, 0, 0)), ckpt_strerror(orc), err);
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
            v->t_lo_us = (int64_t)vfy_be64(PQgetvalue(r, 0, 3));
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
    pthread_mutex_init(&v->found_mu, NULL);
    v->jobs = VERIFY_JOBS_DEFAULT;
    v->part_items = VERIFY_PART_ITEMS;
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
                                   strcmp(a, "--pending-max") == 0 || strcmp(a, "--jobs") == 0 ||
                                   strcmp(a, "--part-events") == 0)) {
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
        } else if (strcmp(a, "--jobs") == 0) {
            char *end;
            long j = strtol(val, &end, 10);
            if (*val == '\0' || *end != '\0' || j < 1 || j > VERIFY_MAX_JOBS) {
                fprintf(stderr, "%s: --jobs %s: give a number of connections from 1 to %d\n", VERIFY_PROG, val,
                        VERIFY_MAX_JOBS);
                return CTL_USAGE;
            }
            v->jobs = (int)j;
        } else if (strcmp(a, "--part-events") == 0) {
            char *end;
            long long n = strtoll(val, &end, 10);
            if (*val == '\0' || *end != '\0' || n < 100 || n > 100000000) {
                fprintf(stderr, "%s: --part-events %s: give a number of events from 100 to 100000000\n",
                        VERIFY_PROG, val);
                return CTL_USAGE;
            }
            v->part_items = n;
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

