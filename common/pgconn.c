/* pgconn.c -- the PostgreSQL connector and the bounded-wait I/O layer (see
 * pgconn.h for the precedence rule, multi-host connects and the waits).
 *
 * DESIGN
 * The precedence rule is applied by looking, not by ordering: the user's
 * conninfo is parsed (PQconninfoParse: URL or key=value, as libpq expands
 * dbname) only to learn which keywords it sets, and auditq's keywords are
 * added only for the others. So no keyword is given twice and the order
 * of the arrays cannot change the outcome -- the bug of the five connectors
 * this replaces, which relied on "a later keyword wins" in opposite
 * directions.
 *
 * A multi-host conninfo is connected host by host (pgconn.h, MULTI-HOST):
 * the whole user conninfo, then host=<one>, hostaddr=<one>, port=<one>
 * after it (with expand_dbname a later keyword overrides the expanded
 * ones), each attempt bounded by timeout_ms. Failure windows: a host that
 * goes silent mid-attempt costs at most timeout_ms before the next is
 * tried; a primary that is being promoted answers "session is read-only"
 * (target_session_attrs=read-write) until the promotion ends, which the
 * caller sees as an unreachable server and retries.
 */
#include "pgconn.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"

void pgconn_flatten(char *dst, size_t dstlen, const char *src)
{
    size_t o = 0;
    int space = 0;
    if (dstlen == 0)
        return;
    for (; *src && o + 1 < dstlen; src++) {
        if (*src == ' ' || *src == '\t' || *src == '\n' || *src == '\r') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < dstlen)
            dst[o++] = ' ';
        space = 0;
        dst[o++] = *src;
    }
    dst[o] = '\0';
}

void pgconn_reason(char *dst, size_t dstlen, const char *msg)
{
    size_t o = 0;

    if (dstlen == 0)
        return;
    dst[0] = '\0';
    while (*msg) {
        size_t n = strcspn(msg, "\n");

        /* libpq indents its hints ("\tIs the server running ..."). */
        if (n > 0 && msg[0] != '\t' && msg[0] != ' ') {
            int w = snprintf(dst + o, dstlen - o, "%s%.*s", o > 0 ? "; " : "", (int)n, msg);
            if (w < 0 || (size_t)w >= dstlen - o)
                return;
            o += (size_t)w;
        }
        msg += n;
        if (*msg == '\n')
            msg++;
    }
}

/* ---- parameters ------------------------------------------------------------ */

/* Splits the comma-separated list s into out[0..*n) (pointers into a copy
 * appended at *store). *n = 0 for NULL or "". */
static int split_list(const char *s, char **out, int *n, char **store, size_t *used, size_t cap)
{
    size_t len;
    char *p;

    *n = 0;
    if (s == NULL || *s == '\0')
        return 0;
    len = strlen(s) + 1;
    if (*used + len > cap)
        return -1;
    p = *store + *used;
    memcpy(p, s, len);
    *used += len;
    for (;;) {
        char *comma = strchr(p, ',');

        if (*n == PGCONN_MAX_HOSTS)
            return -1;
        out[(*n)++] = p;
        if (comma == NULL)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return 0;
}

/* Is s a connection string libpq expands (not a plain database name)? */
static int is_conninfo(const char *s)
{
    return strchr(s, '=') != NULL || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

static void add_key(pgconn_params *p, const char *k, const char *v)
{
    if (p->nkeys < PGCONN_MAX_KEYS) {
        p->keys[p->nkeys] = k;
        p->vals[p->nkeys] = v;
        p->nkeys++;
        p->keys[p->nkeys] = NULL;
        p->vals[p->nkeys] = NULL;
    }
}

int pgconn_params_init(pgconn_params *p, const pgconn_opts *o, char *err, size_t errlen)
{
    const char *ci = o->conninfo != NULL ? o->conninfo : "";
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    int set_app = 0, set_ct = 0, set_tcp = 0, set_enc = 0, rc = -1;
    PQconninfoOption *opts = NULL;

    memset(p, 0, sizeof *p);
    p->nhosts = 1;
    if (is_conninfo(ci)) {
        char *perr = NULL;

        opts = PQconninfoParse(ci, &perr);
        if (opts == NULL) {
            char m[300];

            pgconn_flatten(m, sizeof m, perr != NULL ? perr : "out of memory");
            snprintf(err, errlen, "%s", m);
            PQfreemem(perr);
            return -1;
        }
        for (PQconninfoOption *x = opts; x->keyword != NULL; x++) {
            if (x->val == NULL)
                continue;
            if (strcmp(x->keyword, "application_name") == 0)
                set_app = 1;
            else if (strcmp(x->keyword, "connect_timeout") == 0) {
                long v = strtol(x->val, NULL, 10);
                set_ct = 1;
                p->connect_timeout_ms = v <= 0 ? 0 : v < 2 ? 2000 : v > 86400 ? 86400000 : (int)v * 1000;
            }
            else if (strcmp(x->keyword, "tcp_user_timeout") == 0)
                set_tcp = 1;
            else if (strcmp(x->keyword, "client_encoding") == 0)
                set_enc = 1;
            else if (strcmp(x->keyword, "host") == 0)
                host = x->val;
            else if (strcmp(x->keyword, "hostaddr") == 0)
                hostaddr = x->val;
            else if (strcmp(x->keyword, "port") == 0)
                port = x->val;
        }
    }
    add_key(p, "dbname", ci);
    if (!set_app && o->component != NULL)
        add_key(p, "application_name", o->component);
    if (!set_ct && o->connect_timeout_s > 0) {
        p->connect_timeout_ms = o->connect_timeout_s * 1000;
        snprintf(p->timeout, sizeof p->timeout, "%d", o->connect_timeout_s);
        add_key(p, "connect_timeout", p->timeout);
    }
    if (!set_tcp && o->tcp_user_timeout_ms > 0) {
        snprintf(p->user_timeout, sizeof p->user_timeout, "%d", o->tcp_user_timeout_ms);
        add_key(p, "tcp_user_timeout", p->user_timeout);
    }
    if (!set_enc && o->client_encoding != NULL)
        add_key(p, "client_encoding", o->client_encoding);

    {
        size_t cap = (host ? strlen(host) + 1 : 0) + (hostaddr ? strlen(hostaddr) + 1 : 0) +
                     (port ? strlen(port) + 1 : 0) + 1, used = 0;
        int nh, na, np;

        p->lists = malloc(cap);
        if (p->lists == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (split_list(host, p->host, &nh, &p->lists, &used, cap) != 0 ||
            split_list(hostaddr, p->hostaddr, &na, &p->lists, &used, cap) != 0 ||
            split_list(port, p->port, &np, &p->lists, &used, cap) != 0) {
            snprintf(err, errlen, "more than %d hosts", PGCONN_MAX_HOSTS);
            goto out;
        }
        p->nhosts = nh > na ? nh : na;
        if (p->nhosts == 0)
            p->nhosts = 1;
        /* libpq's own rule: each list holds one entry per host, a port
         * list may also hold one entry for all. */
        if (nh > 0 && na > 0 && nh != na) {
            snprintf(err, errlen, "%d host(s) but %d hostaddr(s); give one hostaddr per host", nh, na);
            goto out;
        }
        if (np > 1 && np != p->nhosts) {
            snprintf(err, errlen, "%d host(s) but %d port(s); give one port for all hosts or one "
                     "per host", p->nhosts, np);
            goto out;
        }
        if (np == 1)
            p->port[0] = NULL; /* one port for all: the conninfo says it already */
        for (int i = 0; i < p->nhosts; i++) {
            if (i >= nh)
                p->host[i] = NULL;
            if (i >= na)
                p->hostaddr[i] = NULL;
            if (np <= 1)
                p->port[i] = NULL;
        }
    }
    rc = 0;
out:
    PQconninfoFree(opts);
    return rc;
}

void pgconn_params_free(pgconn_params *p)
{
    if (p == NULL)
        return;
    free(p->lists);
    p->lists = NULL;
}

/* ---- connecting ------------------------------------------------------------ */

/* One non-blocking connect with keys/vals, bounded by timeout_ms. */
static PGconn *connect_one(const char *const *keys, const char *const *vals, int timeout_ms,
                           PGVerbosity verbosity, int *timed_out)
{
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    int64_t deadline = clock_mono_us() + (int64_t)timeout_ms * 1000;
    /* "Behave as if it last returned PGRES_POLLING_WRITING" (libpq docs). */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    *timed_out = 0;
    if (!c || PQstatus(c) == CONNECTION_BAD)
        return c;
    PQsetErrorVerbosity(c, verbosity);
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        /* The socket can change between calls (next address). */
        struct pollfd pf = { .fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
        int64_t left = deadline - clock_mono_us();
        if (left <= 0) {
            *timed_out = 1;
            PQfinish(c);
            return NULL;
        }
        int n = poll(&pf, 1, (int)((left + 999) / 1000));
        if (n < 0 && errno != EINTR)
            break; /* PQconnectPoll finds out what is wrong with the socket */
        if (n != 0)
            st = PQconnectPoll(c);
    }
    return c;
}

static void msg_add(char *msg, size_t msglen, const char *m)
{
    size_t used;

    if (msg == NULL || msglen == 0)
        return;
    used = strlen(msg);
    snprintf(msg + used, msglen - used, "%s", m);
}

PGconn *pgconn_connect(const pgconn_params *p, int timeout_ms, PGVerbosity verbosity,
                       int *timed_out, char *msg, size_t msglen)
{
    const char *keys[PGCONN_MAX_KEYS + 4], *vals[PGCONN_MAX_KEYS + 4];
    PGconn *failed = NULL;
    int silent = 0;

    if (msg != NULL && msglen > 0)
        msg[0] = '\0';
    *timed_out = 0;
    if (p->nhosts <= 1) {
        PGconn *c = connect_one(p->keys, p->vals, timeout_ms, verbosity, timed_out);
        if (c != NULL && PQstatus(c) != CONNECTION_OK)
            msg_add(msg, msglen, PQerrorMessage(c));
        return c;
    }
    for (int i = 0; i < p->nhosts; i++) {
        int k = 0, t = 0;
        PGconn *c;

        for (; k < p->nkeys; k++) {
            keys[k] = p->keys[k];
            vals[k] = p->vals[k];
        }
        /* After dbname: these override the lists it expands to. */
        if (p->host[i] != NULL) {
            keys[k] = "host";
            vals[k++] = p->host[i];
        }
        if (p->hostaddr[i] != NULL) {
            keys[k] = "hostaddr";
            vals[k++] = p->hostaddr[i];
        }
        if (p->port[i] != NULL) {
            keys[k] = "port";
            vals[k++] = p->port[i];
        }
        keys[k] = NULL;
        vals[k] = NULL;
        c = connect_one(keys, vals, timeout_ms, verbosity, &t);
        if (c != NULL && PQstatus(c) == CONNECTION_OK) {
            PQfinish(failed);
            if (msg != NULL && msglen > 0)
                msg[0] = '\0';
            return c;
        }
        if (t) {
            char note[300];

            silent++;
            snprintf(note, sizeof note, "connection to server at \"%s\"%s%s failed: no answer "
                     "within %d ms\n", p->hostaddr[i] ? p->hostaddr[i] : p->host[i] ? p->host[i] : "",
                     p->port[i] ? ", port " : "", p->port[i] ? p->port[i] : "", timeout_ms);
            msg_add(msg, msglen, note);
        } else if (c != NULL) {
            msg_add(msg, msglen, PQerrorMessage(c));
            PQfinish(failed);
            failed = c;
        } else {
            msg_add(msg, msglen, "out of memory\n");
        }
    }
    /* No host answered at all: the same to the caller as one silent host.
     * Otherwise the last refusal, its reasons and the others' in msg. */
    if (failed == NULL && silent > 0)
        *timed_out = 1;
    return failed;
}

PGconn *pgconn_open(const pgconn_opts *o, char *err, size_t errlen)
{
    const char *fix = o->fix != NULL ? o->fix : "check database_url / AUDITQ_DATABASE_URL";
    pgconn_params p;
    PGconn *c = NULL;
    char m[1024], reason[512];
    int timed_out = 0;

    if (pgconn_params_init(&p, o, m, sizeof m) != 0) {
        snprintf(err, errlen, "cannot connect to PostgreSQL (%s); %s", m, fix);
        goto out;
    }
    /* No limit: wait as long as libpq's blocking connect would. */
    c = pgconn_connect(&p, p.connect_timeout_ms > 0 ? p.connect_timeout_ms : INT32_MAX / 2,
                       PQERRORS_DEFAULT, &timed_out, m, sizeof m);
    if (c == NULL) {
        if (timed_out)
            snprintf(err, errlen, "cannot connect to PostgreSQL (no answer within %d ms); %s",
                     p.connect_timeout_ms, fix);
        else
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        pgconn_reason(reason, sizeof reason, m);
        snprintf(err, errlen, "cannot connect to PostgreSQL (%s); %s", reason, fix);
        PQfinish(c);
        c = NULL;
    }
out:
    pgconn_params_free(&p);
    return c;
}

/* ---- bounded waits ------------------------------------------------------- */

int pgconn_io_init(pgconn_io *io, PGconn *conn, int timeout_ms)
{
    io->conn = conn;
    io->timeout_ms = timeout_ms;
    io->timed_out = 0;
    io->lost[0] = '\0';
    return PQsetnonblocking(conn, 1) == 0 ? 0 : -1;
}

/* Keeps libpq's message from the moment the connection failed: libpq
 * appends to it on every later call ("connection not open", "invalid
 * socket"), which would only bury the cause. */
static void io_note_lost(pgconn_io *io)
{
    if (!io->lost[0] && PQstatus(io->conn) == CONNECTION_BAD)
        pgconn_flatten(io->lost, sizeof io->lost, PQerrorMessage(io->conn));
}

/* Ends the connection from our side: shutting the socket down (libpq still
 * owns and closes the descriptor) makes the read below see end-of-file, so
 * libpq marks the connection bad and every later call fails at once
 * through its ordinary error path instead of waiting. */
static void io_kill(pgconn_io *io)
{
    int fd = PQsocket(io->conn);
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);
    (void)PQconsumeInput(io->conn);
    io_note_lost(io);
}

/* Waits until the socket is ready for events, for at most io->timeout_ms.
 * Returns the revents (> 0); 0 when the time ran out (the connection is
 * then killed and io->timed_out set); -1 on a poll error (killed too). */
static int io_wait(pgconn_io *io, short events)
{
    int fd = PQsocket(io->conn);
    int64_t deadline = io->timeout_ms > 0 ? clock_mono_us() + (int64_t)io->timeout_ms * 1000 : 0;

    while (fd >= 0) {
        struct pollfd p = { .fd = fd, .events = events };
        int ms = -1;
        if (deadline) {
            int64_t left = deadline - clock_mono_us();
            if (left <= 0) {
                io->timed_out = (events & POLLOUT) ? PGCONN_TIMEOUT_SEND : PGCONN_TIMEOUT_READ;
                io_kill(io);
                return 0;
            }
            ms = (int)((left + 999) / 1000);
        }
        int n = poll(&p, 1, ms);
        if (n > 0)
            return p.revents;
        if (n < 0 && errno != EINTR)
            break;
    }
    io_kill(io);
    return -1;
}

int pgconn_io_flush(pgconn_io *io)
{
    int r;
    while ((r = PQflush(io->conn)) == 1) {
        int ev = io_wait(io, POLLIN | POLLOUT);
        if (ev <= 0)
            return -1;
        /* Read what the server sends meanwhile (an error, a notice), or both
         * sides could end up waiting on full buffers. */
        if ((ev & POLLIN) && !PQconsumeInput(io->conn)) {
            io_note_lost(io);
            return -1;
        }
    }
    io_note_lost(io);
    return r;
}

/* PQgetResult itself blocks only while PQisBusy, and PQisBusy is false
 * once the connection is bad. */
PGresult *pgconn_io_result(pgconn_io *io)
{
    PGconn *c = io->conn;
    while (PQisBusy(c)) {
        int unsent = PQflush(c) == 1;
        int ev = io_wait(io, (short)(POLLIN | (unsent ? POLLOUT : 0)));
        if (ev > 0 && ((ev & POLLIN) == 0 || PQconsumeInput(c)))
            continue;
        io_note_lost(io);
        if (ev > 0)
            io_kill(io); /* PQconsumeInput failed: make sure libpq gave up */
    }
    return PQgetResult(c);
}

/* On a non-blocking connection 0 means "buffers full, flush and call again". */
int pgconn_io_put_copy(pgconn_io *io, const char *data, size_t len, const char *errmsg)
{
    for (;;) {
        int r = data ? PQputCopyData(io->conn, data, (int)len) : PQputCopyEnd(io->conn, errmsg);
        if (r != 0)
            return r == 1 ? 0 : -1;
        if (pgconn_io_flush(io) < 0)
            return -1;
    }
}

int pgconn_is_error(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_BAD_RESPONSE || s == PGRES_FATAL_ERROR || s == PGRES_PIPELINE_ABORTED;
}

PGresult *pgconn_io_collect(pgconn_io *io)
{
    PGresult *keep = NULL, *r;

    (void)pgconn_io_flush(io); /* a failed send shows in the results */
    while ((r = pgconn_io_result(io)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (keep && pgconn_is_error(keep)) {
            PQclear(r);
        } else {
            PQclear(keep);
            keep = r;
        }
        if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH)
            break;
        /* A dead connection answers with its error, then NULL; never loop on it. */
        if (PQstatus(io->conn) == CONNECTION_BAD && pgconn_is_error(keep))
            break;
    }
    return keep;
}

PGresult *pgconn_io_exec(pgconn_io *io, const char *sql, int nparams, const char *const *params)
{
    int sent = nparams == 0 ? PQsendQuery(io->conn, sql)
                            : PQsendQueryParams(io->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    return sent ? pgconn_io_collect(io) : NULL;
}

const char *pgconn_io_error(const pgconn_io *io, const PGresult *r, char *buf, size_t n)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (io->timed_out == PGCONN_TIMEOUT_SEND)
        snprintf(buf, n, "PostgreSQL took no data for %d ms (pg_timeout_ms); connection dropped",
                 io->timeout_ms);
    else if (io->timed_out)
        snprintf(buf, n, "no answer from PostgreSQL within %d ms (pg_timeout_ms); connection dropped",
                 io->timeout_ms);
    else if (msg && state)
        snprintf(buf, n, "%s %s", state, msg);
    else if (io->lost[0])
        snprintf(buf, n, "%s", io->lost);
    else if (msg)
        snprintf(buf, n, "----- %s", msg);
    else
        pgconn_flatten(buf, n, PQerrorMessage(io->conn));
    return buf;
}
