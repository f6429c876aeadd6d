/* pgconn.h -- the one way auditq connects to PostgreSQL, and the
 * bounded-wait I/O on a connection. Every component connects through here:
 * the worker's writer threads, its partition upkeep, retention and seal
 * threads, auditqctl and auditq-bench.
 *
 * PRECEDENCE (one rule, the same for every component)
 *   The user's database_url -- a postgresql:// URL or a key=value conninfo,
 *   one host or several -- wins for every keyword it sets. auditq adds its
 *   own value for a keyword only where database_url sets none:
 *     application_name  the component (pgconn_opts.component):
 *                       auditq-worker, auditq-worker/partitions,
 *                       auditq-worker/retention, auditq-worker/seal,
 *                       auditqctl, auditq-bench
 *     connect_timeout   pg_connect_timeout_s
 *     tcp_user_timeout  pg_timeout_ms, where the component bounds its waits
 *     client_encoding   where the component needs one (UTF8)
 *   libpq's environment variables (PGAPPNAME, PGCONNECT_TIMEOUT, ...) come
 *   last, as libpq has it: they apply only where neither sets a value.
 *   What a component cannot work without, it sets after connecting with SET
 *   (the writer: statement_timeout and client_encoding UTF8, since rows are
 *   stored byte-exact only without conversion; the seal: statement_timeout;
 *   auditqctl query: client_encoding UTF8) -- the only exception, made
 *   where it is needed and said there. No keepalives are added: libpq's
 *   default (on, the kernel's timers) stays, and the waits below bound
 *   every use of a connection.
 *
 * MULTI-HOST (PostgreSQL fail-over)
 *   host=a,b port=p1,p2 target_session_attrs=read-write, or
 *   postgresql://a:p1,b:p2/db?target_session_attrs=read-write: libpq tries
 *   the hosts in order and keeps the first that matches
 *   target_session_attrs. In non-blocking mode libpq does not time a host
 *   out (connect_timeout is applied only by its blocking connect), so a
 *   silent host -- a machine that is gone, not a refused port -- would use
 *   up the whole wait and the next host would never be tried. pgconn_connect
 *   therefore tries the hosts itself, one connection per host with the
 *   user's conninfo and that host's host / hostaddr / port, each for at
 *   most timeout_ms, in the user's order, and keeps the first that
 *   connects; target_session_attrs is checked by libpq on each.
 */
#ifndef AQ_PGCONN_H
#define AQ_PGCONN_H
#include <stddef.h>

#include <libpq-fe.h>

/* What a component asks of a connection. Strings are borrowed. */
typedef struct pgconn_opts {
    const char *conninfo;        /* database_url (NULL = "") */
    const char *component;       /* application_name unless conninfo sets one */
    int connect_timeout_s;       /* connect_timeout unless set; 0 = leave it out */
    int tcp_user_timeout_ms;     /* tcp_user_timeout unless set; 0 = leave it out */
    const char *client_encoding; /* unless set; NULL = leave it out */
    const char *fix;             /* pgconn_open's advice; NULL = "check
                                    database_url / AUDITQ_DATABASE_URL" */
} pgconn_opts;

/* The keywords and values handed to libpq, and the host list. */
#define PGCONN_MAX_KEYS 12
#define PGCONN_MAX_HOSTS 16
typedef struct pgconn_params {
    const char *keys[PGCONN_MAX_KEYS + 1];   /* NULL-terminated */
    const char *vals[PGCONN_MAX_KEYS + 1];
    int nkeys;
    int nhosts;                  /* hosts listed (1 when none: libpq's default) */
    int connect_timeout_ms;      /* the time each host gets: database_url's
                                    connect_timeout if it sets one (as libpq
                                    reads it: 1 means 2 s, 0 or less no limit),
                                    else connect_timeout_s; 0 = no limit */
    /* per host i < nhosts when nhosts > 1: what replaces the list */
    char *host[PGCONN_MAX_HOSTS], *hostaddr[PGCONN_MAX_HOSTS], *port[PGCONN_MAX_HOSTS];
    char timeout[16], user_timeout[16];
    char *lists;                 /* storage of the split lists */
} pgconn_params;

/* Builds p from o by the PRECEDENCE rule: keys[0] is "dbname" = conninfo
 * (expanded by libpq), then auditq's keywords the conninfo does not set.
 * 0, or -1 with err (conninfo that libpq cannot parse: its message; more
 * than PGCONN_MAX_HOSTS hosts; host, hostaddr and port lists of different
 * lengths; out of memory). Free with pgconn_params_free (also after -1). */
int pgconn_params_init(pgconn_params *p, const pgconn_opts *o, char *err, size_t errlen);
void pgconn_params_free(pgconn_params *p);

/* Connects as p says, non-blocking, every host for at most timeout_ms
 * (ms precision; libpq's connect_timeout counts whole seconds, at least
 * 2). The error verbosity is set before the first byte, so a server's
 * refusal carries its SQLSTATE in the message with PQERRORS_VERBOSE.
 * Returns the connection (blocking mode, as libpq makes it) -- check
 * PQstatus, PQfinish it either way -- or NULL: out of memory, or no host
 * answered within timeout_ms (*timed_out = 1). msg (may be NULL) gets what
 * libpq said about every host that failed, as libpq would join it for its
 * own multi-host connect, "" on success. */
PGconn *pgconn_connect(const pgconn_params *p, int timeout_ms, PGVerbosity verbosity,
                       int *timed_out, char *msg, size_t msglen);

/* Blocking connect for the tools and threads that wait on PostgreSQL
 * anyway (auditqctl, auditq-bench, retention, seal): pgconn_params_init +
 * pgconn_connect with connect_timeout_s per host (none: no limit). NULL
 * with err ("cannot connect to PostgreSQL (<pgconn_reason>); <fix>");
 * else a connection the caller PQfinish-es. */
PGconn *pgconn_open(const pgconn_opts *o, char *err, size_t errlen);

/* The reason in libpq's connection message msg, for one error line: its
 * lines as they are, joined with "; ", without the indented hints
 * ("\tIs the server running on that host ..."). One host: its first line. */
void pgconn_reason(char *dst, size_t dstlen, const char *msg);

/* Copies src into dst (always NUL-terminated) with every run of spaces,
 * tabs and newlines turned into one space and none at either end: libpq's
 * messages span several lines and go into one-line logs. */
void pgconn_flatten(char *dst, size_t dstlen, const char *src);

/* ---- bounded waits ----------------------------------------------------------
 * statement_timeout only bounds what the server does; a stalled network
 * (or a frozen server, or a half-open connection) would leave a blocking
 * libpq call waiting forever -- TCP keepalives do not fire while a peer or
 * a middlebox still acknowledges packets. So the connection is made
 * non-blocking and every wait goes through poll() on PQsocket with a
 * limit: sending (PQflush, COPY data) and reading each result. When
 * PostgreSQL neither takes nor sends a byte for that long the socket is
 * shut down: libpq then reports the connection lost through its ordinary
 * path, and timed_out says why. */
typedef struct pgconn_io {
    PGconn *conn;
    int timeout_ms;    /* 0 = no limit */
    int timed_out;     /* a wait gave up (PGCONN_TIMEOUT_*): conn is dead, drop it */
    char lost[200];    /* libpq's message when the connection was lost, as
                          first seen (later calls only add noise to it) */
} pgconn_io;
enum { PGCONN_TIMEOUT_READ = 1, PGCONN_TIMEOUT_SEND = 2 };

/* Binds io to conn (a connected PGconn; it stays the caller's) and puts
 * conn in non-blocking mode. 0, or -1 if libpq refused. */
int pgconn_io_init(pgconn_io *io, PGconn *conn, int timeout_ms);
/* PQexecParams (text parameters, text results) with bounded waits: returns
 * the first error result, else the last result, like PQexec; NULL if
 * nothing could be sent or read. The caller PQclears it. No parameters:
 * the simple protocol, which takes several statements. */
PGresult *pgconn_io_exec(pgconn_io *io, const char *sql, int nparams, const char *const *params);
/* The reason io's last call failed, for a log line: the timeout when a
 * wait gave up, else r's SQLSTATE and message, else libpq's connection
 * message (one line). Returns buf. */
const char *pgconn_io_error(const pgconn_io *io, const PGresult *r, char *buf, size_t n);
/* Sends everything libpq holds for the server. 0, or -1 if the connection
 * failed or stalled (the error then shows in the next result). */
int pgconn_io_flush(pgconn_io *io);
/* PQgetResult without the unbounded wait: NULL when the current query has
 * no more results (or the connection died). */
PGresult *pgconn_io_result(pgconn_io *io);
/* PQputCopyData (data != NULL) or PQputCopyEnd (data == NULL, errmsg),
 * flushing while libpq's buffers are full. 0, or -1. */
int pgconn_io_put_copy(pgconn_io *io, const char *data, size_t len, const char *errmsg);
/* After a PQsend*: sends it and reads every result; returns the first
 * error result, else the last result (NULL if none came). Stops at a COPY
 * state, as PQexec does. */
PGresult *pgconn_io_collect(pgconn_io *io);
/* 1 for PGRES_BAD_RESPONSE, PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED. */
int pgconn_is_error(const PGresult *r);
#endif
