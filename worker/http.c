/* http.c -- the worker's HTTP endpoint (see http.h for the limits).
 *
 * A connection goes through three phases, each driven by one ev_io watcher
 * on a non-blocking socket and bounded by one ev_timer:
 *   READ   recv into a fixed HTTP_MAX_REQUEST buffer until http_parse has a
 *          whole head (or says why not); then the response is built at
 *          once -- the handler never blocks;
 *   WRITE  send the response; if the socket buffer is full, wait for
 *          EV_WRITE (a slow reader costs a watcher, never the loop);
 *   DRAIN  shutdown(SHUT_WR) and read until the client closes (at most
 *          HTTP_DRAIN_S): closing with unread bytes would make the kernel
 *          send RST, which can destroy the response before the client
 *          reads it.
 * The timer closes the connection HTTP_CONN_TIMEOUT_S after accept
 * whatever the phase, so a client that sends one byte a second (slowloris)
 * holds a slot for at most that long.
 *
 * Idle clients must not fail liveness: a load balancer's or port scanner's
 * 300 open-and-silent connections once filled the HTTP_MAX_CONNS slots and
 * every /healthz got 503 until their timers ran out. So when the slots are
 * full, a new connection takes the slot of the OLDEST connection still in
 * READ (it has sent no complete request: it had the longest to do so and
 * costs nothing to drop), and a new connection's first bytes are read at
 * accept, so a probe that sends its request with the handshake is answered
 * before any later arrival could shed it. Only when every slot is busy
 * writing or draining a response is a newcomer answered 503.
 */
#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define HTTP_DRAIN_S 1.0
#define HTTP_ACCEPT_BURST 64     /* accepts per loop iteration */

typedef enum { PH_READ, PH_WRITE, PH_DRAIN } phase;

typedef struct http_conn {
    http_server *srv;
    int fd;
    phase ph;
    ev_io io;
    ev_timer timer;
    size_t rlen;
    char req[HTTP_MAX_REQUEST];
    aq_buf out;
    size_t off;
    struct http_conn *prev, *next;
} http_conn;

struct http_server {
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    ev_timer accept_pause;      /* re-arms accepting after EMFILE & co. */
    http_handler fn;
    void *ctx;
    http_conn *conns;
    int nconns;
    char addr[128];
};

/* ---- parsing ---------------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* "METHOD SP target SP HTTP/1.x", l bytes without the line end. */
static int parse_request_line(const char *p, size_t l, http_request *req)
{
    size_t i = 0, m, t0, tl;

    while (i < l && is_tchar((unsigned char)p[i]))
        i++;
    m = i;
    if (m == 0 || m >= sizeof req->method || i >= l || p[i] != ' ')
        return -400;
    memcpy(req->method, p, m);
    req->method[m] = '\0';
    req->head = strcmp(req->method, "HEAD") == 0;
    t0 = ++i;
    while (i < l && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
        i++;
    tl = i - t0;
    if (i >= l || p[i] != ' ' || tl == 0)
        return -400;
    if (tl > HTTP_MAX_TARGET)
        return -414;
    if (p[t0] != '/')
        return -400; /* only origin-form: "/path?query" */
    i++;
    if (l - i != 8 || memcmp(p + i, "HTTP/", 5) != 0 || p[i + 6] != '.')
        return -400;
    if (p[i + 5] != '1' || (p[i + 7] != '0' && p[i + 7] != '1')) {
        if (p[i + 5] >= '0' && p[i + 5] <= '9' && p[i + 7] >= '0' && p[i + 7] <= '9')
            return -505;
        return -400;
    }
    size_t pl = strcspn(p + t0, "?# ");
    if (pl > tl)
        pl = tl;
    memcpy(req->path, p + t0, pl);
    req->path[pl] = '\0';
    return 0;
}

/* "name: value" with a token name; no obsolete line folding. */
static int check_header(const char *p, size_t l)
{
    size_t i = 0;
    while (i < l && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= l || p[i] != ':')
        return -1;
    for (i++; i < l; i++)
        if (p[i] == '\0' || p[i] == '\r')
            return -1;
    return 0;
}

int http_parse(const char *buf, size_t len, http_request *req)
{
    size_t pos = 0;
    int have_line = 0;

    memset(req, 0, sizeof *req);
    for (;;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end, l;

        if (nl == NULL)
            return len >= HTTP_MAX_REQUEST ? -431 : HTTP_PARSE_MORE;
        end = (size_t)(nl - buf);
        l = end - pos;
        if (l > 0 && buf[end - 1] == '\r')
            l--;
        if (!have_line) {
            /* RFC 9112 2.2: ignore empty lines before the request line. */
            if (l > 0) {
                int r = parse_request_line(buf + pos, l, req);
                if (r < 0)
                    return r;
                have_line = 1;
            }
        } else if (l == 0) {
            return (int)(end + 1);
        } else if (check_header(buf + pos, l) != 0) {
            return -400;
        }
        pos = end + 1;
    }
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- connections ------------------------------------------------------------ */

static void conn_close(http_conn *c)
{
    http_server *s = c->srv;

    ev_io_stop(s->loop, &c->io);
    ev_timer_stop(s->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->out.data);
    free(c);
}

static void conn_watch(http_conn *c, int events)
{
    ev_io_stop(c->srv->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->srv->loop, &c->io);
}

static void conn_drain(http_conn *c)
{
    c->ph = PH_DRAIN;
    shutdown(c->fd, SHUT_WR);
    conn_watch(c, EV_READ);
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, HTTP_DRAIN_S, 0.0);
    ev_timer_start(c->srv->loop, &c->timer);
}

/* Sends what is left of c->out; returns -1 if the connection was closed. */
static int conn_flush(http_conn *c)
{
    while (c->off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->off, c->out.len - c->off, MSG_NOSIGNAL);
        if (n > 0) {
            c->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->ph != PH_WRITE) {
                c->ph = PH_WRITE;
                conn_watch(c, EV_WRITE);
            }
            return 0;
        }
        conn_close(c); /* peer gone */
        return -1;
    }
    conn_drain(c);
    return 0;
}

static void append_head(aq_buf *b, int status, const char *ctype, size_t body_len, int allow)
{
    char h[320];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                     status, http_reason(status), ctype, body_len,
                     allow ? "Allow: GET, HEAD\r\n" : "");
    if (n > 0 && (size_t)n < sizeof h)
        (void)aq_buf_append(b, h, (size_t)n);
}

/* Builds the whole response into c->out for a parsed head (r > 0) or a
 * parse error (r < 0), and starts sending it. */
static void conn_respond(http_conn *c, int r, const http_request *req)
{
    http_response resp = { 0, "text/plain; charset=utf-8", { NULL, 0, 0 } };
    int allow = 0, head = 0;

    if (r < 0) {
        resp.status = -r;
    } else if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        resp.status = 405;
        allow = 1;
    } else {
        head = req->head;
        c->srv->fn(c->srv->ctx, req, &resp);
        if (resp.status == 0) {
            resp.status = 500;
            resp.body.len = 0;
        }
    }
    if (resp.body.len == 0 && resp.status != 200) {
        /* A one-line body, so `curl` shows something useful. */
        char line[96];
        int n = snprintf(line, sizeof line, "%d %s\n", resp.status, http_reason(resp.status));
        (void)aq_buf_append(&resp.body, line, (size_t)n);
    }
    append_head(&c->out, resp.status, resp.content_type, resp.body.len, allow);
    if (!head && resp.body.len > 0)
        (void)aq_buf_append(&c->out, resp.body.data, resp.body.len);
    free(resp.body.data);
    if (c->out.len == 0) { /* out of memory: nothing sensible to send */
        conn_close(c);
        return;
    }
    c->ph = PH_WRITE;
    c->off = 0;
    conn_watch(c, EV_WRITE);
    (void)conn_flush(c);
}

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
    http_conn *c = w->data;
    (void)loop;
    (void)revents;

    if (c->ph == PH_WRITE) {
        (void)conn_flush(c);
        return;
    }
    if (c->ph == PH_DRAIN) {
        char sink[1024];
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_close(c);
        return;
    }
    ssize_t n = recv(c->fd, c->req + c->rlen, sizeof c->req - c->rlen, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c); /* client gave up or reset */
        return;
    }
    c->rlen += (size_t)n;
    http_request req;
    int r = http_parse(c->req, c->rlen, &req);
    if (r == HTTP_PARSE_MORE)
        return;
    conn_respond(c, r, &req);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(t->data);
}

/* The connection that has waited longest without sending a complete
 * request, or NULL. conn_new pushes at the head, so it is the last one in
 * READ on the list (at most HTTP_MAX_CONNS entries). */
static http_conn *oldest_idle(http_server *s)
{
    http_conn *found = NULL;

    for (http_conn *c = s->conns; c != NULL; c = c->next)
        if (c->ph == PH_READ)
            found = c;
    return found;
}

static void conn_new(http_server *s, int fd)
{
    http_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    c->ph = PH_READ;
    ev_io_init(&c->io, on_conn_io, fd, EV_READ);
    c->io.data = c;
    ev_timer_init(&c->timer, on_conn_timeout, HTTP_CONN_TIMEOUT_S, 0.0);
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    ev_io_start(s->loop, &c->io);
    ev_timer_start(s->loop, &c->timer);
    /* The request usually arrives with the handshake: answer it now. */
    on_conn_io(s->loop, &c->io, EV_READ);
}

/* ---- listening ------------------------------------------------------------- */

static void on_accept_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    http_server *s = t->data;
    (void)revents;
    ev_io_start(loop, &s->accept_io);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";
    http_server *s = w->data;
    (void)revents;

    for (int i = 0; i < HTTP_ACCEPT_BURST; i++) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors or memory: the listening socket stays
             * readable, so stop watching it for a second instead of
             * spinning. Waiting clients stay in the backlog. */
            char e[128];
            log_warn("http: cannot accept connections; pausing 1 s", " error=%s",
                     log_q(e, sizeof e, strerror(errno)));
            ev_io_stop(loop, &s->accept_io);
            ev_timer_set(&s->accept_pause, 1.0, 0.0);
            ev_timer_start(loop, &s->accept_pause);
            return;
        }
        if (s->nconns >= HTTP_MAX_CONNS) {
            http_conn *idle = oldest_idle(s);
            /* One best-effort send into an empty socket buffer cannot block. */
            ssize_t n = send(idle != NULL ? idle->fd : fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
            (void)n;
            if (idle == NULL) {
                close(fd); /* every slot is answering a request */
                continue;
            }
            conn_close(idle); /* its slot goes to the newcomer (DESIGN above) */
        }
        conn_new(s, fd);
    }
}

/* Splits "host:port", "[v6]:port" or ":port". */
static int split_addr(const char *a, char *host, size_t hl, char *port, size_t pl)
{
    const char *colon;
    size_t n;

    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        n = (size_t)(rb - a - 1);
        colon = rb + 1;
        if (n >= hl)
            return -1;
        memcpy(host, a + 1, n);
    } else {
        colon = strrchr(a, ':');
        if (colon == NULL)
            return -1;
        n = (size_t)(colon - a);
        if (n >= hl)
            return -1;
        memcpy(host, a, n);
    }
    host[n] = '\0';
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= pl)
        return -1;
    snprintf(port, pl, "%s", colon + 1);
    return 0;
}

/* Binds and listens on ai; returns the socket or -1 with errno set. */
static int try_listen(const struct addrinfo *ai, int any)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1, zero = 0, saved;

    if (fd < 0)
        return -1;
    /* A restarted worker must not wait for the old sockets' TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (any && ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 too */
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
        return fd;
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static const char *listen_hint(int e)
{
    switch (e) {
    case EADDRINUSE: return "another process uses that port: choose a free port or stop it";
    case EACCES: return "ports below 1024 need privileges: use a port from 1024 up";
    case EADDRNOTAVAIL: return "no local interface has that address: use 127.0.0.1, an address of this host, or :PORT";
    default: return "check http_listen";
    }
}

http_server *http_start(struct ev_loop *loop, const char *listen_addr, http_handler fn, void *ctx,
                        char *err, size_t errlen)
{
    char host[256], port[16];
    struct addrinfo hints, *res = NULL;
    http_server *s = NULL;
    int fd = -1, rc, last_errno = 0;

    if (split_addr(listen_addr, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, errlen, "http_listen = %s: must be host:port, [v6addr]:port or :port",
                 listen_addr);
        return NULL;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "http_listen = %s: cannot resolve '%s': %s", listen_addr, host,
                 gai_strerror(rc));
        return NULL;
    }
    /* ":port" means every address: prefer one dual-stack IPv6 socket, and
     * fall back to IPv4 where IPv6 is off. */
    for (int pass = 0; pass < 2 && fd < 0; pass++) {
        for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
            if (!host[0] && (pass == 0) != (ai->ai_family == AF_INET6))
                continue;
            if (host[0] && pass == 1)
                break;
            fd = try_listen(ai, !host[0]);
            if (fd < 0 && (last_errno == 0 || errno != EAFNOSUPPORT))
                last_errno = errno;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "http_listen = %s: cannot listen: %s; %s", listen_addr,
                 strerror(last_errno), listen_hint(last_errno));
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(fd);
        snprintf(err, errlen, "http_listen = %s: out of memory", listen_addr);
        return NULL;
    }
    s->loop = loop;
    s->fd = fd;
    s->fn = fn;
    s->ctx = ctx;
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char h[INET6_ADDRSTRLEN + 1], p[16];
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
            getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p, sizeof p,
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            snprintf(s->addr, sizeof s->addr, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
        else
            snprintf(s->addr, sizeof s->addr, "%s", listen_addr);
    }
    ev_io_init(&s->accept_io, on_accept, fd, EV_READ);
    s->accept_io.data = s;
    ev_timer_init(&s->accept_pause, on_accept_pause, 1.0, 0.0);
    s->accept_pause.data = s;
    ev_io_start(loop, &s->accept_io);
    return s;
}

const char *http_address(const http_server *s)
{
    return s->addr;
}

void http_stop(http_server *s)
{
    if (s == NULL)
        return;
    while (s->conns != NULL)
        conn_close(s->conns);
    ev_io_stop(s->loop, &s->accept_io);
    ev_timer_stop(s->loop, &s->accept_pause);
    close(s->fd);
    free(s);
}
