/* redisconn.c -- Redis URL parsing and connecting with AUTH/SELECT. */
#include "redisconn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies s[0..n) percent-decoded into out (cap bytes incl. NUL). */
static int pct_copy(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
    char tmp[16];
    char *end;
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    long v = strtol(tmp, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int redis_url_parse(const char *url, aq_redis_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->port = 6379;
    if (!url || !*url) {
        snprintf(err, errlen, "empty Redis URL; expected redis://host:port");
        return -1;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || n >= sizeof t->unix_path || p[0] != '/') {
            snprintf(err, errlen, "Redis URL '%s': expected unix:///absolute/path.sock", url);
            return -1;
        }
        memcpy(t->unix_path, p, n);
        if (q && (strncmp(q, "?db=", 4) != 0 || parse_int(q + 4, strlen(q + 4), 0, 1000, &t->db))) {
            snprintf(err, errlen, "Redis URL '%s': only ?db=N is understood after the path", url);
            return -1;
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "Redis URL '%s': must start with redis:// or unix:// (rediss:// needs a TLS tunnel, see README)", url);
        return -1;
    }
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    size_t authority = slash ? (size_t)(slash - p) : strlen(p);
    const char *at = memrchr(p, '@', authority);
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (pct_copy(t->user, sizeof t->user, p, ulen) != 0 ||
            (colon && pct_copy(t->password, sizeof t->password, colon + 1, (size_t)(at - colon - 1)) != 0)) {
            snprintf(err, errlen, "Redis URL: bad user or password (too long or bad %%-escape)");
            return -1;
        }
        if (!colon) { /* redis://secret@host: the lone part is a password */
            memcpy(t->password, t->user, sizeof t->password < sizeof t->user ? sizeof t->password : sizeof t->user);
            t->user[0] = '\0';
        }
        authority -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *hs = p, *he = p + authority, *ps = NULL;
    if (*hs == '[') { /* [ipv6]:port */
        const char *rb = memchr(hs, ']', authority);
        if (!rb) {
            snprintf(err, errlen, "Redis URL '%s': unterminated [IPv6] host", url);
            return -1;
        }
        if (rb + 1 < he && rb[1] == ':')
            ps = rb + 2;
        hs++;
        he = rb;
    } else {
        const char *c = memchr(hs, ':', authority);
        if (c) {
            ps = c + 1;
            he = c;
        }
    }
    if (he == hs || (size_t)(he - hs) >= sizeof t->host) {
        snprintf(err, errlen, "Redis URL '%s': missing or too long host", url);
        return -1;
    }
    memcpy(t->host, hs, (size_t)(he - hs));
    if (ps && parse_int(ps, (size_t)(p + authority - ps), 1, 65535, &t->port)) {
        snprintf(err, errlen, "Redis URL '%s': port must be 1..65535", url);
        return -1;
    }
    if (slash && slash[1] && parse_int(slash + 1, strlen(slash + 1), 0, 1000, &t->db)) {
        snprintf(err, errlen, "Redis URL '%s': database after / must be a number", url);
        return -1;
    }
    return 0;
}

redisContext *redis_connect(const aq_redis_target *t, int connect_timeout_ms, int timeout_ms,
                            char *err, size_t errlen, int *auth_failed)
{
    struct timeval ct = {connect_timeout_ms / 1000, (connect_timeout_ms % 1000) * 1000};
    struct timeval ot = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c;
    redisReply *r = NULL;

    if (auth_failed)
        *auth_failed = 0;
    c = t->unix_path[0] ? redisConnectUnixWithTimeout(t->unix_path, ct)
                        : redisConnectWithTimeout(t->host, t->port, ct);
    if (!c) {
        snprintf(err, errlen, "cannot allocate Redis context");
        return NULL;
    }
    if (c->err) {
        if (t->unix_path[0])
            snprintf(err, errlen, "cannot connect to Redis at %s: %s", t->unix_path, c->errstr);
        else
            snprintf(err, errlen, "cannot connect to Redis at %s:%d: %s", t->host, t->port, c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, ot) != REDIS_OK || redisEnableKeepAlive(c) != REDIS_OK) {
        snprintf(err, errlen, "cannot set Redis socket options: %s", c->errstr);
        goto fail;
    }
    if (t->password[0]) {
        const char *argv[3] = {"AUTH", t->user, t->password};
        size_t argl[3] = {4, strlen(t->user), strlen(t->password)};
        int argc = 3;
        if (!t->user[0]) {
            argv[1] = t->password;
            argl[1] = argl[2];
            argc = 2;
        }
        r = redisCommandArgv(c, argc, argv, argl);
        if (!r) {
            snprintf(err, errlen, "Redis AUTH: %s", c->errstr);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis refused AUTH%s%s: %.*s; check the user/password in redis_url",
                     t->user[0] ? " for user " : "", t->user, (int)r->len, r->str);
            if (auth_failed)
                *auth_failed = 1;
            goto fail;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (t->db) {
        r = redisCommand(c, "SELECT %d", t->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis SELECT %d failed: %s", t->db, r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}
