/* http.h -- a tiny HTTP/1.x server on the worker's libev loop, for
 * /metrics, /healthz and /readyz (setting http_listen).
 *
 * One request per connection (the response says Connection: close), GET and
 * HEAD only, no request bodies. Everything is bounded so that no client can
 * hurt the loop the worker's timers run on: sockets are non-blocking, a
 * request head may be at most HTTP_MAX_REQUEST bytes, at most
 * HTTP_MAX_CONNS connections are open at once, and each connection is
 * closed HTTP_CONN_TIMEOUT_S seconds after it was accepted, done or not.
 * At the limit a new connection takes the slot of the oldest one that has
 * not sent a complete request (idle clients never lock out /healthz); only
 * when all are busy answering is it answered 503 and closed. Not for the open internet: bind it to a
 * loopback or private address.
 */
#ifndef AQ_HTTP_H
#define AQ_HTTP_H
#include <ev.h>
#include <stddef.h>

#include "codec.h"

#define HTTP_MAX_REQUEST 8192     /* request line + headers, bytes */
#define HTTP_MAX_TARGET 1024      /* request target, bytes */
#define HTTP_MAX_CONNS 32
#define HTTP_CONN_TIMEOUT_S 5.0

/* A parsed request head. */
typedef struct http_request {
    char method[16];
    char path[HTTP_MAX_TARGET + 1]; /* the target without its ?query */
    int head;                       /* method is HEAD: no body in the response */
} http_request;

/* http_parse results besides a positive head length. */
enum { HTTP_PARSE_MORE = 0 };

/* Parses the request head in buf[0..len). Returns the head's length
 * (through the blank line) when complete and valid, HTTP_PARSE_MORE if more
 * bytes are needed, or a negative HTTP status for a bad request:
 * -400 (malformed request line or headers), -414 (target longer than
 * HTTP_MAX_TARGET), -431 (no end of head within HTTP_MAX_REQUEST bytes),
 * -505 (not HTTP/1.0 or 1.1). The method is only checked to be a token;
 * the server answers 405 to anything but GET and HEAD. */
int http_parse(const char *buf, size_t len, http_request *req);

/* What a handler fills. body is empty (zeroed) on entry and owned by the
 * server after the call. */
typedef struct http_response {
    int status;
    const char *content_type;       /* static string */
    aq_buf body;
} http_response;

/* Called on the loop thread once per GET/HEAD request with a valid head.
 * Must not block. */
typedef void (*http_handler)(void *ctx, const http_request *req, http_response *resp);

typedef struct http_server http_server;

/* Binds listen_addr ("host:port", "[v6addr]:port" or ":port" for every
 * address), listens, and serves requests on loop through fn(ctx, ...).
 * Returns the server, or NULL with err naming the address, the cause and
 * what to do. Free with http_stop. */
http_server *http_start(struct ev_loop *loop, const char *listen_addr, http_handler fn, void *ctx,
                        char *err, size_t errlen);

/* The bound address as "host:port" (for the start log line). */
const char *http_address(const http_server *s);

/* Stops listening and closes every connection. NULL-safe. */
void http_stop(http_server *s);

/* The reason phrase of a status code ("Not Found"). */
const char *http_reason(int status);
#endif
