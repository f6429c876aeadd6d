/* status.h -- what the worker's HTTP endpoint answers (status.c):
 * GET /metrics (Prometheus text), /healthz and /readyz, rendered from
 * numbers already in memory -- a scrape never touches Redis or PostgreSQL.
 * The server itself (sockets, parsing, bounds) is worker/http.c.
 */
#ifndef AQ_STATUS_H
#define AQ_STATUS_H
#include <ev.h>
#include <stddef.h>

#include "upkeep.h"
#include "worker.h"

typedef struct status status;

/* Binds http_listen on loop and serves from w (its metrics, w->seal) and
 * u (the Redis sample). *out = NULL when http_listen is empty (the
 * endpoint is off). Called before anything registers in Redis: a taken
 * port is a configuration problem the operator must see at once. 0, or -1
 * with the cause in err. */
int status_setup(struct ev_loop *loop, worker *w, upkeep *u, status **out, char *err, size_t errlen);

/* "HOST:PORT" as bound, or "off" (s NULL). */
const char *status_address(const status *s);

/* Closes the listener and every connection; frees s. NULL-safe. */
void status_stop(status *s);
#endif
