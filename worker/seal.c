/* seal.c -- the sequencer (see seal.h, docs/INTEGRITY.md).
 *
 * DESIGN
 *
 * Evidence is captured by PostgreSQL itself (sql/005_integrity.sql): the
 * statement trigger on audit_events writes one auditq_evidence_batch row
 * per INSERT statement, in the writer's transaction, with the leaf hashes
 * of exactly the rows it stored. Retention writes auditq_evidence_retention
 * rows in its own transactions. Both take their ids from one sequence.
 * Nothing here is on the write path: a worker without seal_key_file, or
 * whose sequencer is down, still writes and captures evidence.
 *
 * The sequencer is a thread with its own PostgreSQL connection. Every
 * checkpoint_interval_ms (at once again when a tick hit its bound), one
 * transaction:
 *   1. pg_try_advisory_xact_lock(SEAL_LOCK_KEY); not ours: roll back, wait.
 *   2. the newest checkpoint row: tree size, events, frontier (the compact
 *      range, at most 64 hashes: the whole state needed to append).
 *   3. committed items (batches and retention records) with no assignment,
 *      in id order, at most SEAL_MAX_LEAVES leaves: the batches above the
 *      watermark (below), every retention record (one per month removed).
 *   4. append their leaves to the frontier, compute the root, sign the
 *      checkpoint note (C2SP tlog-checkpoint, Ed25519) with seal_key_file.
 *   5. INSERT the assignments (item -> first leaf index) and the checkpoint
 *      row (note + frontier); COMMIT.
 * then publishes the note: a file in anchor_dir (tmp, fsync, rename, fsync
 * dir) and/or anchor_command's stdin.
 *
 * Failure windows and what closes each:
 *   a writer killed before its COMMIT: rows and evidence roll back
 *     together; after it: both are committed. Never one without the other.
 *   the sequencer killed (or its connection lost) anywhere before COMMIT:
 *     PostgreSQL rolls the tick back and releases the transaction lock; the
 *     next tick (this or any worker's, within checkpoint_interval_ms)
 *     redoes it from the last committed checkpoint. No gap, no double
 *     entry: the assignment's primary key (item) and unique first_leaf,
 *     and the checkpoint's primary key (tree size), refuse any second
 *     attempt at the same slot, and the lock makes one attempt at a time.
 *   an item committed with a lower id after higher ids were sequenced:
 *     it has no assignment, so the next tick picks it up (the tree order
 *     is the assignment's; the id only orders what is pending at once).
 *   killed after COMMIT, before publishing: on start and on every tick
 *     each worker writes the newest SEAL_REPUBLISH_TICK (at start
 *     SEAL_REPUBLISH_START) checkpoints of PostgreSQL that its anchor_dir
 *     lacks, and runs anchor_command for each it writes.
 *   anchor_command fails or hangs: it is killed after
 *     SEAL_COMMAND_TIMEOUT_MS, counted in publish failures, logged, and
 *     retried on later ticks (up to SEAL_RETRY_MAX notes kept in memory);
 *     sealing goes on meanwhile. A crash loses that retry list (the
 *     checkpoint stays in PostgreSQL, and in anchor_dir when set).
 *   anchor_dir unwritable: counted, logged, retried by the republish scan.
 *   PostgreSQL down or restarted: the tick fails, the connection is
 *     dropped and made again on the next tick; nothing is lost (the
 *     evidence waits in PostgreSQL).
 *   two workers with different keys: each signs what it sequences; verify
 *     accepts every key given to it (rotation) and reports which signed.
 *   a superuser inserting forged pending evidence before it is sealed:
 *     sealed like any other (out of scope, docs/INTEGRITY.md: the
 *     sequencer trusts committed evidence).
 *
 * Watermark: a tick reads the batches with batch_id > floor_id (the
 * primary key's index), not every batch ever stored. Ids are drawn in one
 * order and committed in another, so the floor may only pass an id once no
 * transaction that drew an id up to it can still commit. A batch's id is
 * drawn by the evidence trigger after its statement stored rows, so the
 * drawing transaction already has an xid. Each tick reads, in this order,
 * the sequence's last value L, then its own xid X (pg_current_xact_id(),
 * assigned then): every transaction that drew an id <= L has an xid < X.
 * Not the snapshot's xmax: that is the newest completed xid + 1, and a
 * transaction with a later xid may still be running (it_99_integrity's
 * late batch caught that). On a later tick (X has ended, so every running
 * xid < X is in its snapshot) whose snapshot xmin >= X all of them have
 * ended, so every id <= L is
 * committed (and visible to that tick) or never will be; if that tick
 * seals everything it sees pending (it did not stop at its bound), no
 * batch with an id <= L is left unsealed and the floor becomes L. The floor
 * lags about two ticks behind; it lives in this process only (0 at start
 * and after a takeover: one full read, as before). A batch inserted by
 * hand without a prior write in its transaction could draw its id before
 * its xid and be passed over: it stays pending, which verify reports.
 * Retention records are few and always read in full.
 *
 * Bounded work: a tick appends at most SEAL_MAX_LEAVES leaves (a backlog
 * after downtime is sealed in several checkpoints, back to back), and its
 * statements are bounded by statement_timeout_ms.
 */
#include "seal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "fileio.h"
#include "log.h"
#include "merkle.h"
#include "pgconn.h"

/* Transaction advisory lock of the sequencer ("aqseal" in ASCII codes,
 * like auditq_ensure_partitions' key). */
#define SEAL_LOCK_KEY "97113115101097108"
/* Leaves appended per tick at most: a tick stays well under a second of
 * work (SHA-256 of 200k leaves plus their rows' transfer), so a backlog
 * becomes a series of checkpoints rather than one long transaction. */
#define SEAL_MAX_LEAVES 200000
/* Items read per tick at most (a batch has at least one leaf). */
#define SEAL_MAX_ITEMS 20000
/* Newest checkpoints compared with anchor_dir: at start, and per tick. */
#define SEAL_REPUBLISH_START 10000
#define SEAL_REPUBLISH_TICK 64
/* anchor_command: killed after this long. */
#define SEAL_COMMAND_TIMEOUT_MS 10000
/* Notes kept for anchor_command retries at most. */
#define SEAL_RETRY_MAX 1024

struct seal {
    aq_config cfg;
    ckpt_key key;
    pthread_t tid;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;                         /* under mu */
    PGconn *pg;                           /* the thread's own */
    int pg_down_logged;
    char *retry[SEAL_RETRY_MAX];          /* anchor_command retries (thread only) */
    size_t nretry;
    /* The watermark (thread only; DESIGN): batches with ids <= floor are
     * all sealed or never committed; cand_id/cand_xmax: the newest id
     * drawn and the xid of the earlier tick that read it,
     * promoted to the floor once every transaction below cand_xmax is done. */
    uint64_t floor_id;
    uint64_t cand_id, cand_xmax;
    int have_cand;

    /* metrics: written by the thread, read by the main thread */
    atomic_uint_fast64_t tree_size;       /* newest checkpoint seen */
    atomic_uint_fast64_t events;
    atomic_int_fast64_t ckpt_time_us;     /* its signing time, wall clock; 0 none */
    atomic_int_fast64_t lag_us;           /* oldest item's age in our last checkpoint */
    atomic_uint_fast64_t checkpoints;     /* signed by this process */
    atomic_uint_fast64_t leaves;          /* appended by this process */
    atomic_uint_fast64_t publish_failures;
    atomic_uint_fast64_t tick_failures;
    atomic_int leader;                    /* 1: held the lock on the last tick */
};

/* ---- small helpers -------------------------------------------------------- */

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* err = "what: <server message>"; r may be NULL (the connection's message). */
static void seal_pgerr(PGconn *pg, const PGresult *r, const char *what, char *err, size_t errlen)
{
    const char *m = r != NULL ? PQresultErrorMessage(r) : NULL;
    if (m == NULL || m[0] == '\0')
        m = PQerrorMessage(pg);
    snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(m, "\n"), m);
}

static int seal_cmd(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        seal_pgerr(pg, r, what, err, errlen);
    PQclear(r);
    return ok ? 0 : -1;
}

void seal_anchor_name(const char *origin, unsigned long long size, char *out, size_t cap)
{
    char safe[CKPT_NAME_MAX + 1];
    size_t i;

    for (i = 0; origin[i] != '\0' && i < CKPT_NAME_MAX; i++) {
        char c = origin[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        safe[i] = ok ? c : '_';
    }
    safe[i] = '\0';
    snprintf(out, cap, "%s-%020llu.checkpoint", safe, size);
}

/* ---- publishing ----------------------------------------------------------- */

static int seal_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes note to anchor_dir as the file of `size` unless it exists. 1 when
 * written, 0 when it was there, -1 with err. tmp + fsync + rename + fsync
 * of the directory: a file under its final name is always complete. */
static int seal_publish_file(seal *s, uint64_t size, const char *note, size_t len, char *err,
                             size_t errlen)
{
    char name[CKPT_NAME_MAX + 64], path[1200], tmp[1200];
    struct stat st;
    int fd;
    char dirr[700];

    seal_anchor_name(s->cfg.namespace_, (unsigned long long)size, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", s->cfg.anchor_dir, name);
    if (stat(path, &st) == 0)
        return 0;
    /* The tmp name is this process's own: two workers may publish the same
     * checkpoint at once (a new sequencer republishing what a killed one
     * left, or two workers at start), and a shared tmp let one truncate the
     * file the other had just renamed into place -- killed there, it stayed
     * empty (it_99_integrity_storm under TSan). A tmp a kill leaves behind
     * starts with '.', which verify skips. */
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", s->cfg.anchor_dir, name, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "anchor_dir: cannot create %.600s: %s (check anchor_dir and its permissions)",
                 tmp, strerror(errno));
        return -1;
    }
    if (seal_write_all(fd, note, len) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "anchor_dir: cannot write %.600s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "anchor_dir: rename %.500s -> %.500s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (fileio_fsync_dir(s->cfg.anchor_dir, dirr, sizeof dirr) != 0) {
        snprintf(err, errlen, "anchor_dir: %s", dirr);
        return -1;
    }
    return 1;
}

/* Runs anchor_command with note on its stdin, in its own process group,
 * killed after SEAL_COMMAND_TIMEOUT_MS. 0 when it exits 0, else -1 with
 * err. Its exit status comes back through a pipe (fd 3 of a wrapping sh),
 * not from waitpid: the worker's libev loop reaps every child on SIGCHLD,
 * so waitpid here could find the child gone and report a success as a
 * failure (seen: the command then ran twice). The child only execs
 * (async-signal-safe after fork in a threaded process). */
static int seal_run_command(seal *s, const char *note, size_t len, char *err, size_t errlen)
{
    int in[2], st[2], rc = -1, code = -1;
    size_t off = 0;
    char buf[16];
    size_t got = 0;
    pid_t pid;
    int64_t deadline = clock_mono_us() + (int64_t)SEAL_COMMAND_TIMEOUT_MS * 1000;

    if (pipe2(in, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "anchor_command: pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe2(st, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "anchor_command: pipe: %s", strerror(errno));
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "anchor_command: fork: %s", strerror(errno));
        close(in[0]);
        close(in[1]);
        close(st[0]);
        close(st[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(in[0], 0);
        dup2(st[1], 3);   /* dup2 clears close-on-exec on fd 3 */
        execl("/bin/sh", "sh", "-c", "/bin/sh -c \"$1\" 3>&-; echo $? >&3", "sh", s->cfg.anchor_command,
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(st[1]);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    while (off < len) {
        struct pollfd p = { .fd = in[1], .events = POLLOUT };
        int64_t left = (deadline - clock_mono_us()) / 1000;
        if (left <= 0)
            break;
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t w = write(in[1], note + off, len - off);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            break;  /* EPIPE: the command did not read it all; its status says why */
        off += (size_t)w;
    }
    close(in[1]);
    for (;;) {
        struct pollfd p = { .fd = st[0], .events = POLLIN };
        int64_t left = (deadline - clock_mono_us()) / 1000;
        ssize_t r;
        if (left <= 0) {
            kill(-pid, SIGKILL);
            snprintf(err, errlen, "anchor_command did not finish within %d ms and was killed: %.300s",
                     SEAL_COMMAND_TIMEOUT_MS, s->cfg.anchor_command);
            goto out;
        }
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        r = read(st[0], buf + got, sizeof buf - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof buf - 1)
            break;
    }
    buf[got] = '\0';
    if (got > 0)
        code = atoi(buf);
    if (code == 0)
        rc = 0;
    else if (code > 0)
        snprintf(err, errlen, "anchor_command exited with status %d: %.300s", code, s->cfg.anchor_command);
    else
        snprintf(err, errlen, "anchor_command ended without an exit status (killed?): %.300s",
                 s->cfg.anchor_command);
out:
    close(st[0]);
    /* Reap it unless libev already did (then ECHILD at once). */
    waitpid(pid, NULL, 0);
    return rc;
}

static void seal_retry_add(seal *s, const char *note)
{
    char *copy = strdup(note);
    if (copy == NULL)
        return;
    if (s->nretry == SEAL_RETRY_MAX) {
        log_warn("anchor_command retry list full; the oldest checkpoint is no longer retried",
                 " kept=%d", SEAL_RETRY_MAX);
        free(s->retry[0]);
        memmove(s->retry, s->retry + 1, (SEAL_RETRY_MAX - 1) * sizeof s->retry[0]);
        s->nretry--;
    }
    s->retry[s->nretry++] = copy;
}

/* Hands one note to anchor_command; a failure is logged, counted and kept
 * for a retry. */
static void seal_command(seal *s, uint64_t size, const char *note, int keep)
{
    char err[600], q[700];
    if (s->cfg.anchor_command[0] == '\0')
        return;
    if (seal_run_command(s, note, strlen(note), err, sizeof err) == 0)
        return;
    atomic_fetch_add(&s->publish_failures, 1);
    log_warn("checkpoint not handed to anchor_command; retried on the next ticks",
             " tree_size=%" PRIu64 " error=%s", size, log_q(q, sizeof q, err));
    if (keep)
        seal_retry_add(s, note);
}

static void seal_retry_commands(seal *s)
{
    size_t kept = 0;
    char err[600];

    for (size_t i = 0; i < s->nretry; i++) {
        if (kept == 0 && seal_run_command(s, s->retry[i], strlen(s->retry[i]), err, sizeof err) == 0) {
            free(s->retry[i]);
            continue;
        }
        /* After the first failure keep the rest in order for the next tick. */
        s->retry[kept++] = s->retry[i];
    }
    s->nretry = kept;
}

/* Publishes one checkpoint of this tick: file, then command. */
static void seal_publish(seal *s, uint64_t size, const char *note)
{
    char err[1400], q[1500];
    int wrote = 1;

    if (s->cfg.anchor_dir[0] != '\0') {
        wrote = seal_publish_file(s, size, note, strlen(note), err, sizeof err);
        if (wrote < 0) {
            atomic_fetch_add(&s->publish_failures, 1);
            log_warn("checkpoint not written to anchor_dir; retried on the next ticks",
                     " tree_size=%" PRIu64 " error=%s", size, log_q(q, sizeof q, err));
            return;  /* the republish scan writes it, then runs the command */
        }
    }
    if (wrote > 0)
        seal_command(s, size, note, 1);
}

/* Compares the newest `limit` checkpoints of PostgreSQL with anchor_dir and
 * publishes those missing (a crash between COMMIT and publishing, another
 * worker's checkpoints, a directory that was unwritable). Also refreshes
 * the tree size and checkpoint time metrics, leader or not. */
static int seal_republish(seal *s, int limit, char *err, size_t errlen)
{
    char lim[16];
    const char *pv[1] = { lim };
    PGresult *r;
    int n, published = 0;

    snprintf(lim, sizeof lim, "%d", limit);
    r = PQexecParams(s->pg,
                     "SELECT tree_size, events, (extract(epoch FROM signed_at) * 1000000)::bigint, note"
                     "  FROM auditq_checkpoint ORDER BY tree_size DESC LIMIT $1::int",
                     1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seal_pgerr(s->pg, r, "reading checkpoints to publish", err, errlen);
        PQclear(r);
        return -1;
    }
    n = PQntuples(r);
    if (n > 0) {
        atomic_store(&s->tree_size, strtoull(PQgetvalue(r, 0, 0), NULL, 10));
        atomic_store(&s->events, strtoull(PQgetvalue(r, 0, 1), NULL, 10));
        atomic_store(&s->ckpt_time_us, strtoll(PQgetvalue(r, 0, 2), NULL, 10));
    }
    if (s->cfg.anchor_dir[0] != '\0') {
        /* Oldest first, so the files appear in tree order. */
        for (int i = n - 1; i >= 0; i--) {
            uint64_t size = strtoull(PQgetvalue(r, i, 0), NULL, 10);
            const char *note = PQgetvalue(r, i, 3);
            char ferr[1400], q[1500];
            int w = seal_publish_file(s, size, note, (size_t)PQgetlength(r, i, 3), ferr, sizeof ferr);
            if (w < 0) {
                atomic_fetch_add(&s->publish_failures, 1);
                log_warn("checkpoint not written to anchor_dir; retried on the next ticks",
                         " tree_size=%" PRIu64 " error=%s", size, log_q(q, sizeof q, ferr));
                break;
            }
            if (w > 0) {
                published++;
                seal_command(s, size, note, 1);
            }
        }
        if (published > 0)
            log_info("published checkpoints missing from anchor_dir", " count=%d dir=%s", published,
                     s->cfg.anchor_dir);
    }
    PQclear(r);
    return 0;
}

/* ---- one tick ------------------------------------------------------------- */

/* Appends a decimal to an array literal being built in b. */
static int seal_arr_add(aq_buf *b, const char *text)
{
    if (aq_buf_append(b, b->len == 0 ? "{" : ",", 1) != 0)
        return -1;
    return aq_buf_append(b, text, strlen(text));
}

/* One transaction (see DESIGN). *more = 1 when it stopped at its bound
 * (more is pending). 0 (sealed or nothing to do or not the leader), or -1
 * with err (rolled back). */
static int seal_tick(seal *s, int *more, char *err, size_t errlen)
{
    PGresult *r = NULL;
    merkle_frontier f;
    ckpt c;
    aq_buf ids = { 0 }, kinds = { 0 }, firsts = { 0 }, counts = { 0 };
    char note[CKPT_NOTE_MAX], num[32], limit[16], sizetxt[32], eventstxt[32];
    unsigned char fr[MERKLE_FRONTIER_MAX_BYTES];
    size_t notelen = 0, frlen;
    uint64_t events = 0, added = 0;
    int64_t oldest_age_us = 0;
    int rc = -1, nitems, taken = 0, promote;
    uint64_t last_id, xmin, xmax, promote_to;
    char floortxt[32];

    *more = 0;
    if (seal_cmd(s->pg, "BEGIN", "BEGIN", err, errlen) != 0)
        return -1;
    r = PQexec(s->pg, "SELECT pg_try_advisory_xact_lock(" SEAL_LOCK_KEY ")");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seal_pgerr(s->pg, r, "taking the sequencer lock", err, errlen);
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        atomic_store(&s->leader, 0);
        rc = 0;
        goto out;
    }
    atomic_store(&s->leader, 1);
    PQclear(r);

    /* 2. the state to append to */
    merkle_frontier_init(&f);
    r = PQexecParams(s->pg, "SELECT tree_size, events, frontier FROM auditq_checkpoint"
                     " ORDER BY tree_size DESC LIMIT 1", 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seal_pgerr(s->pg, r, "reading the last checkpoint", err, errlen);
        goto out;
    }
    if (PQntuples(r) == 1) {
        uint64_t size = be64((const unsigned char *)PQgetvalue(r, 0, 0));
        char ferr[200];
        events = be64((const unsigned char *)PQgetvalue(r, 0, 1));
        if (merkle_frontier_decode(&f, PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2), ferr,
                                   sizeof ferr) != 0 || f.size != size) {
            snprintf(err, errlen, "the frontier stored with checkpoint %" PRIu64 " is unusable (%s); "
                     "run 'auditqctl verify' to see what changed in auditq_checkpoint", size,
                     f.size != size ? "its size differs from the tree size" : ferr);
            goto out;
        }
    }
    PQclear(r);

    /* The watermark's inputs (DESIGN): the newest id drawn, then this
     * tick's xid and the xmin of a later snapshot. */
    r = PQexec(s->pg, "SELECT coalesce(pg_sequence_last_value('auditq_evidence_seq'), 0)::text");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seal_pgerr(s->pg, r, "reading the evidence sequence", err, errlen);
        goto out;
    }
    last_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    /* Not the snapshot's xmax (the newest completed xid + 1: a transaction
     * with a later xid may still be running): this transaction's own xid,
     * assigned now, after every xid of a transaction that drew an id <= L. */
    r = PQexec(s->pg, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, pg_current_xact_id()::text");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seal_pgerr(s->pg, r, "reading the snapshot", err, errlen);
        goto out;
    }
    xmin = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    xmax = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    /* Every transaction that drew an id <= cand_id has ended: once this
     * tick has sealed all it sees, no such batch is left pending. */
    promote = s->have_cand && xmin >= s->cand_xmax;
    promote_to = s->cand_id;
    s->have_cand = 1;
    s->cand_id = last_id;
    s->cand_xmax = xmax;

    /* 3. pending items, in id order */
    snprintf(limit, sizeof limit, "%d", SEAL_MAX_ITEMS);
    snprintf(floortxt, sizeof floortxt, "%" PRIu64, s->floor_id);
    {
        const char *pv[2] = { limit, floortxt };
        r = PQexecParams(s->pg,
            "SELECT p.id, p.kind, p.n, p.leaves,"
            "       (extract(epoch FROM clock_timestamp() - p.created_at) * 1000000)::bigint"
            "  FROM (SELECT b.batch_id AS id, 'batch'::text AS kind, b.n, b.leaves, b.created_at"
            "          FROM auditq_evidence_batch b"
            "         WHERE b.batch_id > $2::bigint"
            "           AND NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = b.batch_id)"
            "        UNION ALL"
            "        SELECT r.record_id, 'retention', 1,"
            "               sha256('\\x00'::bytea || auditq_retention_entry(r)), r.created_at"
            "          FROM auditq_evidence_retention r"
            "         WHERE NOT EXISTS (SELECT 1 FROM auditq_seal_assignment a WHERE a.item_id = r.record_id)"
            "       ) p ORDER BY p.id LIMIT $1::int",
            2, NULL, pv, NULL, NULL, 1);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seal_pgerr(s->pg, r, "reading pending evidence", err, errlen);
        goto out;
    }
    nitems = PQntuples(r);
    if (nitems == 0) {
        if (promote && promote_to > s->floor_id)
            s->floor_id = promote_to;
        rc = 0;
        goto out;
    }
    for (int i = 0; i < nitems; i++) {
        uint64_t id = be64((const unsigned char *)PQgetvalue(r, i, 0));
        const char *kind = PQgetvalue(r, i, 1);
        uint32_t n = be32((const unsigned char *)PQgetvalue(r, i, 2));
        const unsigned char *lv = (const unsigned char *)PQgetvalue(r, i, 3);
        int64_t age = (int64_t)be64((const unsigned char *)PQgetvalue(r, i, 4));

        if ((size_t)PQgetlength(r, i, 3) != (size_t)n * MERKLE_HASH_LEN) {
            snprintf(err, errlen, "pending %s %" PRIu64 " has %d bytes of leaf hashes for %u leaves; "
                     "run 'auditqctl verify'", kind, id, PQgetlength(r, i, 3), n);
            goto out;
        }
        if (taken > 0 && added + n > SEAL_MAX_LEAVES) {
            *more = 1;
            break;
        }
        snprintf(num, sizeof num, "%" PRIu64, f.size);
        if (seal_arr_add(&firsts, num) != 0)
            goto oom;
        for (uint32_t k = 0; k < n; k++) {
            if (merkle_frontier_append(&f, lv + (size_t)k * MERKLE_HASH_LEN) != 0) {
                snprintf(err, errlen, "the tree is full");
                goto out;
            }
        }
        snprintf(num, sizeof num, "%" PRIu64, id);
        if (seal_arr_add(&ids, num) != 0 || seal_arr_add(&kinds, kind) != 0)
            goto oom;
        snprintf(num, sizeof num, "%u", n);
        if (seal_arr_add(&counts, num) != 0)
            goto oom;
        if (strcmp(kind, "batch") == 0)
            events += n;
        added += n;
        taken++;
        if (age > oldest_age_us)
            oldest_age_us = age;
    }
    if (taken == nitems && nitems == SEAL_MAX_ITEMS)
        *more = 1;
    if (aq_buf_append(&ids, "}", 2) != 0 || aq_buf_append(&kinds, "}", 2) != 0 ||
        aq_buf_append(&firsts, "}", 2) != 0 || aq_buf_append(&counts, "}", 2) != 0)
        goto oom;
    PQclear(r);
    r = NULL;

    /* 4. sign */
    memset(&c, 0, sizeof c);
    snprintf(c.origin, sizeof c.origin, "%s", s->cfg.namespace_);
    c.size = f.size;
    merkle_frontier_root(&f, c.root);
    c.has_events = 1;
    c.events = events;
    c.has_time = 1;
    c.time = (int64_t)time(NULL);
    if (ckpt_sign(&c, &s->key, note, sizeof note, &notelen, err, errlen) != 0)
        goto out;
    frlen = merkle_frontier_encode(&f, fr, sizeof fr);

    /* 5. record */
    snprintf(sizetxt, sizeof sizetxt, "%" PRIu64, f.size);
    snprintf(eventstxt, sizeof eventstxt, "%" PRIu64, events);
    {
        const char *pv[5] = { ids.data, kinds.data, firsts.data, counts.data, sizetxt };
        r = PQexecParams(s->pg,
            "INSERT INTO auditq_seal_assignment (item_id, kind, first_leaf, n, tree_size)"
            " SELECT u.i, u.k, u.f, u.n, $5::bigint"
            "   FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[]) AS u(i, k, f, n)",
            5, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            seal_pgerr(s->pg, r, "recording the leaf assignments", err, errlen);
            goto out;
        }
        PQclear(r);
    }
    {
        const char *pv[5] = { sizetxt, eventstxt, (const char *)c.root, (const char *)fr, note };
        int lens[5] = { 0, 0, MERKLE_HASH_LEN, (int)frlen, (int)notelen };
        int fmts[5] = { 0, 0, 1, 1, 0 };
        r = PQexecParams(s->pg,
            "INSERT INTO auditq_checkpoint (tree_size, events, root, frontier, note)"
            " VALUES ($1::bigint, $2::bigint, $3::bytea, $4::bytea, $5::text)",
            5, NULL, pv, lens, fmts, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            seal_pgerr(s->pg, r, "recording the checkpoint", err, errlen);
            goto out;
        }
        PQclear(r);
        r = NULL;
    }
    if (seal_cmd(s->pg, "COMMIT", "COMMIT of the checkpoint", err, errlen) != 0)
        goto out_nrb;
    if (promote && !*more && promote_to > s->floor_id)
        s->floor_id = promote_to;
    atomic_store(&s->tree_size, f.size);
    atomic_store(&s->events, events);
    atomic_store(&s->ckpt_time_us, clock_now_us());
    atomic_store(&s->lag_us, oldest_age_us);
    atomic_fetch_add(&s->checkpoints, 1);
    atomic_fetch_add(&s->leaves, added);
    log_debug("checkpoint signed", " tree_size=%" PRIu64 " events=%" PRIu64 " added=%" PRIu64
              " oldest_age_ms=%" PRId64, f.size, events, added, oldest_age_us / 1000);
    seal_publish(s, f.size, note);
    rc = 0;
    goto out_nrb;
oom:
    snprintf(err, errlen, "out of memory");
out:
    PQclear(r);
    r = NULL;
    /* Not ours, nothing to do, or failed: end the transaction. */
    if (PQtransactionStatus(s->pg) != PQTRANS_IDLE)
        PQclear(PQexec(s->pg, "ROLLBACK"));
out_nrb:
    PQclear(r);
    free(ids.data);
    free(kinds.data);
    free(firsts.data);
    free(counts.data);
    return rc;
}

/* ---- the thread ----------------------------------------------------------- */

static PGconn *seal_connect(seal *s, char *err, size_t errlen)
{
    const pgconn_opts o = { .conninfo = s->cfg.database_url, .component = "auditq-worker/seal",
                            .connect_timeout_s = s->cfg.pg_connect_timeout_s,
                            .tcp_user_timeout_ms = s->cfg.pg_timeout_ms };
    char setting[64];
    PGresult *r;
    PGconn *pg = pgconn_open(&o, err, errlen);

    if (pg == NULL)
        return NULL;
    /* The sequencer's statements must not run unbounded whatever
     * database_url says (pgconn.h: set after connecting). */
    snprintf(setting, sizeof setting, "SET statement_timeout = %d", s->cfg.statement_timeout_ms);
    r = PQexec(pg, setting);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *m = PQerrorMessage(pg);
        snprintf(err, errlen, "cannot set statement_timeout (%.*s); check database_url",
                 (int)strcspn(m, "\n"), m);
        PQclear(r);
        PQfinish(pg);
        return NULL;
    }
    PQclear(r);
    return pg;
}

/* Waits up to ms or until seal_stop. Returns 1 when stopping. */
static int seal_wait(seal *s, int ms)
{
    struct timespec ts;
    int stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
        ;
    stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *seal_main(void *arg)
{
    seal *s = arg;
    char err[1024], q[1100];
    int first = 1, more = 0;

    for (;;) {
        if (more) {
            pthread_mutex_lock(&s->mu);
            more = !s->stopping;
            pthread_mutex_unlock(&s->mu);
            if (!more)
                break;
        } else if (!first && seal_wait(s, s->cfg.checkpoint_interval_ms)) {
            break;
        }
        if (s->pg == NULL) {
            s->pg = seal_connect(s, err, sizeof err);
            if (s->pg == NULL) {
                if (!s->pg_down_logged)
                    log_warn("sequencer cannot reach PostgreSQL; retrying every checkpoint_interval_ms",
                             " error=%s", log_q(q, sizeof q, err));
                s->pg_down_logged = 1;
                first = 0;
                more = 0;
                continue;
            }
            if (s->pg_down_logged)
                log_info("sequencer reconnected to PostgreSQL", NULL);
            s->pg_down_logged = 0;
        }
        if (first && seal_republish(s, SEAL_REPUBLISH_START, err, sizeof err) != 0)
            log_warn("sequencer could not check anchor_dir", " error=%s", log_q(q, sizeof q, err));
        first = 0;
        if (seal_tick(s, &more, err, sizeof err) != 0) {
            atomic_fetch_add(&s->tick_failures, 1);
            log_warn("sequencer tick failed; retried on the next tick", " error=%s",
                     log_q(q, sizeof q, err));
            more = 0;
            if (PQstatus(s->pg) != CONNECTION_OK) {
                PQfinish(s->pg);
                s->pg = NULL;
            }
            continue;
        }
        if (seal_republish(s, SEAL_REPUBLISH_TICK, err, sizeof err) != 0) {
            log_warn("sequencer could not check anchor_dir", " error=%s", log_q(q, sizeof q, err));
            if (PQstatus(s->pg) != CONNECTION_OK) {
                PQfinish(s->pg);
                s->pg = NULL;
            }
        }
        seal_retry_commands(s);
    }
    return NULL;
}

/* ---- API ------------------------------------------------------------------ */

int seal_setup(const aq_config *cfg, seal **out, char *err, size_t errlen)
{
    seal *s;
    char kerr[600];

    *out = NULL;
    if (cfg->seal_key_file[0] == '\0')
        return 0;
    if (ckpt_crypto_init(err, errlen) != 0)
        return -1;
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->cfg = *cfg;
    if (ckpt_key_load_private(cfg->seal_key_file, &s->key, kerr, sizeof kerr) != 0) {
        snprintf(err, errlen, "seal_key_file: %s", kerr);
        free(s);
        return -1;
    }
    if (cfg->anchor_dir[0] != '\0') {
        struct stat st;
        if (stat(cfg->anchor_dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
            access(cfg->anchor_dir, W_OK | X_OK) != 0) {
            snprintf(err, errlen, "anchor_dir = %s: not a writable directory (%s); create it "
                     "(mkdir -p) for the worker's user, or set anchor_dir = \"\"", cfg->anchor_dir,
                     errno ? strerror(errno) : "not a directory");
            ckpt_key_wipe(&s->key);
            free(s);
            return -1;
        }
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    *out = s;
    return 0;
}

int seal_start(seal *s, char *err, size_t errlen)
{
    if (s == NULL)
        return 0;
    if (pthread_create(&s->tid, NULL, seal_main, s) != 0) {
        snprintf(err, errlen, "cannot start the sequencer thread");
        return -1;
    }
    s->started = 1;
    log_info("sequencer started", " key=%s checkpoint_interval_ms=%d anchor_dir=%s anchor_command=%s",
             s->key.name, s->cfg.checkpoint_interval_ms, s->cfg.anchor_dir[0] ? s->cfg.anchor_dir : "-",
             s->cfg.anchor_command[0] ? "set" : "-");
    return 0;
}

void seal_stop(seal *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->tid, NULL);
    }
    if (s->pg != NULL)
        PQfinish(s->pg);
    for (size_t i = 0; i < s->nretry; i++)
        free(s->retry[i]);
    ckpt_key_wipe(&s->key);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int seal_metrics_render(seal *s, aq_buf *b)
{
    int64_t t, now = clock_now_us();

    if (s == NULL)
        return 0;
    t = atomic_load(&s->ckpt_time_us);
    return aq_buf_printf(b,
        "# HELP auditq_seal_tree_size Leaves in the Merkle tree at the newest signed checkpoint.\n"
        "# TYPE auditq_seal_tree_size gauge\nauditq_seal_tree_size %" PRIu64 "\n"
        "# HELP auditq_seal_events Events covered by the newest signed checkpoint.\n"
        "# TYPE auditq_seal_events gauge\nauditq_seal_events %" PRIu64 "\n"
        "# HELP auditq_seal_last_checkpoint_age_seconds Time since the newest checkpoint was signed "
        "(-1: none yet).\n"
        "# TYPE auditq_seal_last_checkpoint_age_seconds gauge\n"
        "auditq_seal_last_checkpoint_age_seconds %.3f\n"
        "# HELP auditq_seal_checkpoint_lag_seconds Commit to checkpoint: age of the oldest evidence "
        "in this process's last checkpoint.\n"
        "# TYPE auditq_seal_checkpoint_lag_seconds gauge\nauditq_seal_checkpoint_lag_seconds %.3f\n"
        "# HELP auditq_seal_checkpoints_total Checkpoints signed by this process.\n"
        "# TYPE auditq_seal_checkpoints_total counter\nauditq_seal_checkpoints_total %" PRIu64 "\n"
        "# HELP auditq_seal_leaves_total Leaves appended by this process.\n"
        "# TYPE auditq_seal_leaves_total counter\nauditq_seal_leaves_total %" PRIu64 "\n"
        "# HELP auditq_seal_publish_failures_total Checkpoints not written to anchor_dir or not "
        "accepted by anchor_command (each retried).\n"
        "# TYPE auditq_seal_publish_failures_total counter\nauditq_seal_publish_failures_total %" PRIu64 "\n"
        "# HELP auditq_seal_tick_failures_total Sequencer ticks rolled back on an error.\n"
        "# TYPE auditq_seal_tick_failures_total counter\nauditq_seal_tick_failures_total %" PRIu64 "\n"
        "# HELP auditq_seal_leader 1 when this process held the sequencer lock on its last tick.\n"
        "# TYPE auditq_seal_leader gauge\nauditq_seal_leader %d\n",
        (uint64_t)atomic_load(&s->tree_size), (uint64_t)atomic_load(&s->events),
        t > 0 ? (double)(now - t) / 1e6 : -1.0, (double)atomic_load(&s->lag_us) / 1e6,
        (uint64_t)atomic_load(&s->checkpoints), (uint64_t)atomic_load(&s->leaves),
        (uint64_t)atomic_load(&s->publish_failures), (uint64_t)atomic_load(&s->tick_failures),
        atomic_load(&s->leader));
}
