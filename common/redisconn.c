/* redisconn.c -- Redis URL parsing, connecting (TLS, AUTH, SELECT) and the
 * messages for refused logins and ACL denials (see redisconn.h). */
#include "redisconn.h"
#include "text.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef AQ_HAVE_HIREDIS_SSL
#include <hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#endif

/* Where every refusal message sends the reader. */
#define SECURITY_DOC "docs/SECURITY.md"

int redis_tls_available(void)
{
#ifdef AQ_HAVE_HIREDIS_SSL
    return 1;
#else
    return 0;
#endif
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
            int h = text_hexval(s[i + 1]), l = text_hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
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

void redis_url_mask(const char *url, char *out, size_t cap)
{
    const char *sep = url ? strstr(url, "://") : NULL;
    size_t n;

    if (cap == 0)
        return;
    snprintf(out, cap, "%s", url ? url : "");
    if (!sep)
        return;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    /* The userinfo ends at the LAST '@' of the authority, so an unescaped
     * '@' in a password does not leak the rest of it. */
    const char *at = memrchr(auth, '@', alen);
    if (!at)
        return;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    /* redis://secret@host: a lone part is the password. */
    const char *from = colon ? colon + 1 : auth;
    n = (size_t)(from - url);
    if (n >= cap)
        return;
    snprintf(out + n, cap - n, "***%s", at);
}

/* ?tls_ca=..&tls_cert=..&tls_key=..&tls_server_name=.. (rediss:// only). */
static int parse_params(const char *q, aq_redis_target *t, const char *shown, char *err, size_t errlen)
{
    static const struct { const char *name; size_t off; } params[] = {
        {"tls_ca", offsetof(aq_redis_target, tls_ca)},
        {"tls_cert", offsetof(aq_redis_target, tls_cert)},
        {"tls_key", offsetof(aq_redis_target, tls_key)},
        {"tls_server_name", offsetof(aq_redis_target, tls_server_name)},
    };
    const char *p = q;

    while (*p) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        size_t i;

        for (i = 0; i < sizeof params / sizeof params[0]; i++)
            if (strlen(params[i].name) == klen && strncmp(p, params[i].name, klen) == 0)
                break;
        if (i == sizeof params / sizeof params[0]) {
            snprintf(err, errlen, "Redis URL '%s': unknown parameter '%.*s' (known: tls_ca, tls_cert, "
                     "tls_key, tls_server_name)", shown, (int)(klen > 40 ? 40 : klen), p);
            return -1;
        }
        if (!t->tls) {
            snprintf(err, errlen, "Redis URL '%s': %s is for TLS: use rediss://", shown, params[i].name);
            return -1;
        }
        if (!eq || pct_copy((char *)t + params[i].off, sizeof t->tls_ca, eq + 1, n - klen - 1) != 0 ||
            eq + 1 == p + n) {
            snprintf(err, errlen, "Redis URL '%s': %s needs a value (at most %zu bytes, %%-escapes allowed)",
                     shown, params[i].name, sizeof t->tls_ca - 1);
            return -1;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    if (!t->tls_cert[0] != !t->tls_key[0]) {
        snprintf(err, errlen, "Redis URL '%s': tls_cert and tls_key go together (a client certificate "
                 "and its private key)", shown);
        return -1;
    }
    return 0;
}

int redis_url_parse(const char *url, aq_redis_target *t, char *err, size_t errlen)
{
    char shown[160];

    memset(t, 0, sizeof *t);
    t->port = 6379;
    if (!url || !*url) {
        snprintf(err, errlen, "empty Redis URL; expected redis://host:port");
        return -1;
    }
    redis_url_mask(url, shown, sizeof shown);
    if (strlen(url) >= sizeof shown)
        memcpy(shown + sizeof shown - 4, "...", 4);
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || n >= sizeof t->unix_path || p[0] != '/') {
            snprintf(err, errlen, "Redis URL '%s': expected unix:///absolute/path.sock", shown);
            return -1;
        }
        memcpy(t->unix_path, p, n);
        if (q && (strncmp(q, "?db=", 4) != 0 || parse_int(q + 4, strlen(q + 4), 0, 1000, &t->db))) {
            snprintf(err, errlen, "Redis URL '%s': only ?db=N is understood after the path", shown);
            return -1;
        }
        return 0;
    }
    const char *p;
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        if (!redis_tls_available()) {
            snprintf(err, errlen, "Redis URL '%s': this auditq was built without TLS (hiredis 0.14 has "
                     "none): use a TLS tunnel and redis://127.0.0.1:PORT, or build with hiredis >= 1.0 "
                     "and hiredis_ssl (" SECURITY_DOC ")", shown);
            return -1;
        }
        t->tls = 1;
        p = url + 9;
    } else {
        snprintf(err, errlen, "Redis URL '%s': must start with redis://, rediss:// (TLS) or unix://", shown);
        return -1;
    }
    size_t authority = strcspn(p, "/?");
    const char *slash = p[authority] == '/' ? p + authority : NULL;
    const char *query = strchr(p + authority, '?');
    const char *at = memrchr(p, '@', authority);
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (pct_copy(t->user, sizeof t->user, p, ulen) != 0 ||
            (colon && pct_copy(t->password, sizeof t->password, colon + 1, (size_t)(at - colon - 1)) != 0)) {
            snprintf(err, errlen, "Redis URL '%s': bad user or password (too long, NUL or bad %%-escape)", shown);
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
            snprintf(err, errlen, "Redis URL '%s': unterminated [IPv6] host", shown);
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
        snprintf(err, errlen, "Redis URL '%s': missing or too long host", shown);
        return -1;
    }
    memcpy(t->host, hs, (size_t)(he - hs));
    if (ps && parse_int(ps, (size_t)(p + authority - ps), 1, 65535, &t->port)) {
        snprintf(err, errlen, "Redis URL '%s': port must be 1..65535", shown);
        return -1;
    }
    if (slash) {
        size_t dlen = query ? (size_t)(query - slash - 1) : strlen(slash + 1);
        if (dlen && parse_int(slash + 1, dlen, 0, 1000, &t->db)) {
            snprintf(err, errlen, "Redis URL '%s': database after / must be a number", shown);
            return -1;
        }
    }
    if (query && parse_params(query + 1, t, shown, err, errlen) != 0)
        return -1;
    return 0;
}

/* ---- keys of the wrong type ------------------------------------------------ */

int redis_is_wrongtype(const char *reply)
{
    return reply && strstr(reply, "WRONGTYPE") != NULL;
}

void redis_explain_wrongtype(const char *key, const char *actual, const char *expected,
                             const char *effect, char *out, size_t outlen)
{
    const char *tail = effect && effect[0] ? effect : "nothing else is read from it";
    /* GET shows a string; any type can be looked at with DUMP or the
     * type's own read command. RENAME keeps the value for inspection. */
    if (actual && actual[0])
        snprintf(out, outlen, "redis key %s is a %s, expected a %s: inspect it with TYPE/GET, then "
                 "RENAME it away or DEL it; %s", key, actual, expected, tail);
    else
        snprintf(out, outlen, "redis key %s is not a %s (WRONGTYPE): inspect it with TYPE/GET, then "
                 "RENAME it away or DEL it; %s", key, expected, tail);
}

/* ---- refusals -------------------------------------------------------------- */

int redis_refusal_kind(const char *reply)
{
    if (!reply)
        return REDIS_REFUSED_NONE;
    if (strstr(reply, "NOAUTH"))
        return REDIS_REFUSED_NOAUTH;
    if (strstr(reply, "WRONGPASS"))
        return REDIS_REFUSED_LOGIN;
    /* Redis 6/7.0 say NOPERM for a direct command; a command inside a
     * script is refused as "ERR The user executing the script can't run
     * this command" (7.0) or "... can't access at least one of the keys"
     * (7.0); 7.2 says "NOPERM User x has no permissions to ...". */
    if (strstr(reply, "NOPERM") || strstr(reply, "user executing the script can't")) {
        if (strstr(reply, " key"))
            return REDIS_REFUSED_KEY;
        return REDIS_REFUSED_COMMAND;
    }
    return REDIS_REFUSED_NONE;
}

int redis_explain_refusal(const aq_redis_target *t, const char *role, const char *what,
                          const char *key, const char *reply, char *out, size_t outlen)
{
    int kind = redis_refusal_kind(reply);
    const char *user = t && t->user[0] ? t->user : "default";
    /* Refusals inside a Lua script end "script: <sha>, on @user_script:N." */
    int in_script = reply && strstr(reply, "@user_script") != NULL;
    char cmd[48] = "";

    if (kind == REDIS_REFUSED_NONE)
        return kind;
    /* The refused command, when Redis names it: "... run the 'lrange' command". */
    const char *q = reply ? strstr(reply, "run the '") : NULL;
    char upper[48] = "a command";
    if (q) {
        q += 9;
        size_t n = strcspn(q, "'");
        if (n < sizeof cmd) {
            memcpy(cmd, q, n);
            cmd[n] = '\0';
            for (size_t i = 0; i <= n; i++)
                upper[i] = (char)toupper((unsigned char)cmd[i]);
        }
    }
    if (!what || !what[0])
        what = upper;
    switch (kind) {
    case REDIS_REFUSED_NOAUTH:
        if (t && t->unix_path[0])
            snprintf(out, outlen, "Redis at %s wants a login (NOAUTH) and redis_url has none: use "
                     "redis://USER:PASSWORD@host:port (" SECURITY_DOC ")", t->unix_path);
        else
            snprintf(out, outlen, "Redis at %s:%d wants a login (NOAUTH) and redis_url has none: use "
                     "redis://USER:PASSWORD@host:port (" SECURITY_DOC ")", t ? t->host : "?", t ? t->port : 0);
        break;
    case REDIS_REFUSED_LOGIN:
        snprintf(out, outlen, "Redis refused the login of user '%s' (WRONGPASS): wrong password, unknown "
                 "user or user off; fix redis_url or the ACL (" SECURITY_DOC ")", user);
        break;
    case REDIS_REFUSED_COMMAND:
        if (in_script && cmd[0])
            snprintf(out, outlen, "Redis user '%s' may not run %s, called by %s (NOPERM): give it the %s "
                     "rules of " SECURITY_DOC " (config/users.acl)", user, cmd, what, role);
        else if (in_script)
            snprintf(out, outlen, "Redis user '%s' may not run a command %s calls (NOPERM): give it the %s "
                     "rules of " SECURITY_DOC " (config/users.acl)", user, what, role);
        else if (cmd[0])
            snprintf(out, outlen, "Redis user '%s' may not run %s (NOPERM): grant it (ACL SETUSER %s +%s)%s%s%s",
                     user, what, user, cmd, role[0] ? " or use the " : "", role,
                     role[0] ? " rules of " SECURITY_DOC : "");
        else
            snprintf(out, outlen, "Redis user '%s' may not run %s (NOPERM): use the %s rules of " SECURITY_DOC,
                     user, what, role[0] ? role : "auditq");
        break;
    default:
        if (key)
            snprintf(out, outlen, "Redis user '%s' may not use key '%s' with %s (NOPERM): its key patterns "
                     "must cover it, see the %s rules of " SECURITY_DOC, user, key, what, role);
        else
            snprintf(out, outlen, "Redis user '%s' may not use the keys of %s (NOPERM): its key patterns "
                     "must cover them, see the %s rules of " SECURITY_DOC, user, what, role);
        break;
    }
    return kind;
}

/* ---- connecting ------------------------------------------------------------ */

#ifdef AQ_HAVE_HIREDIS_SSL
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_init(void)
{
    redisInitOpenSSL();
}

/* OpenSSL's last error as text ("" when none). */
static const char *tls_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "";
}

static int is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* TLS handshake on c's socket. The certificate must chain to tls_ca (or
 * the system's trust store) and name tls_server_name or the host, like
 * libpq's sslmode=verify-full: hiredis itself checks only the chain. We
 * build the SSL object ourselves for that and hand it to hiredis, which
 * owns it once the handshake succeeded. 0, or -1 with err. */
static int tls_start(redisContext *c, const aq_redis_target *t, char *err, size_t errlen, int *refused)
{
    const char *name = t->tls_server_name[0] ? t->tls_server_name : t->host;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int rc = -1;

    pthread_once(&tls_once, tls_init);
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot create a context: %s", tls_reason());
        goto out;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (t->tls_ca[0] ? SSL_CTX_load_verify_locations(ctx, t->tls_ca, NULL) != 1
                     : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "TLS: cannot load the CA certificates %s: %s",
                 t->tls_ca[0] ? t->tls_ca : "(system default)", tls_reason());
        goto out;
    }
    if (t->tls_cert[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->tls_cert) != 1) {
            snprintf(err, errlen, "TLS: cannot load tls_cert %s: %s", t->tls_cert, tls_reason());
            goto out;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, t->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "TLS: cannot load tls_key %s (or it does not match tls_cert): %s",
                     t->tls_key, tls_reason());
            goto out;
        }
    }
    ssl = SSL_new(ctx);
    if (!ssl) {
        snprintf(err, errlen, "TLS: cannot create a session: %s", tls_reason());
        goto out;
    }
    if (is_ip_literal(name)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1) {
            snprintf(err, errlen, "TLS: cannot verify against address %s", name);
            goto out;
        }
    } else if (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1) {
        snprintf(err, errlen, "TLS: cannot verify against name %s", name);
        goto out;
    }
    if (redisInitiateSSL(c, ssl) != REDIS_OK) {
        long v = SSL_get_verify_result(ssl);
        /* A certificate we must not trust is configuration, not weather. */
        if (v != X509_V_OK && refused)
            *refused = 1;
        snprintf(err, errlen, "TLS handshake with Redis at %s:%d failed: %s%s%s; check tls_ca and "
                 "tls_server_name in redis_url", t->host, t->port, c->errstr, v != X509_V_OK ? ": " : "",
                 v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
        goto out;
    }
    ssl = NULL; /* hiredis owns it now */
    rc = 0;
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx); /* the session keeps its own reference */
    return rc;
}
#endif

/* One server at t->host:port (or t->unix_path); see redis_connect. */
static redisContext *connect_one(const aq_redis_target *t, int connect_timeout_ms, int timeout_ms,
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
    if (t->tls) {
#ifdef AQ_HAVE_HIREDIS_SSL
        if (tls_start(c, t, err, errlen, auth_failed) != 0)
            goto fail;
#else
        snprintf(err, errlen, "rediss://: this auditq was built without TLS (" SECURITY_DOC ")");
        goto fail;
#endif
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
    } else if (t->db == 0) {
        /* No login configured: ask now whether the server wants one, so the
         * caller hears NOAUTH at connect and not from its first command. A
         * NOPERM (PING not granted) means we are logged in: fine. */
        r = redisCommand(c, "PING");
    }
    if (t->password[0] || t->db == 0) {
        if (!r) {
            snprintf(err, errlen, "Redis %s: %s", t->password[0] ? "AUTH" : "PING", c->errstr);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            int kind = redis_explain_refusal(t, "", "", NULL, r->str, err, errlen);
            if (kind == REDIS_REFUSED_NOAUTH || (t->password[0] && kind != REDIS_REFUSED_COMMAND)) {
                if (kind == REDIS_REFUSED_NONE)
                    snprintf(err, errlen, "Redis refused AUTH%s%s: %.*s; check the user and password in "
                             "redis_url", t->user[0] ? " for user " : "", t->user, (int)r->len, r->str);
                if (auth_failed)
                    *auth_failed = 1;
                goto fail;
            }
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (t->db) {
        r = redisCommand(c, "SELECT %d", t->db);
        if (!r) {
            snprintf(err, errlen, "Redis SELECT %d failed: %s", t->db, c->errstr);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            int kind = redis_explain_refusal(t, "", "SELECT", NULL, r->str, err, errlen);
            if (kind == REDIS_REFUSED_NONE)
                snprintf(err, errlen, "Redis SELECT %d failed: %.*s", t->db, (int)r->len, r->str);
            if (kind != REDIS_REFUSED_NONE && auth_failed)
                *auth_failed = 1;
            goto fail;
        }
        freeReplyObject(r);
        r = NULL;
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

/* ---- Sentinel ------------------------------------------------------------- */

enum { SENTINELS_MAX = 16 };

typedef struct sentinel_addr {
    char host[256];
    int port;
} sentinel_addr;

/* Splits "host:port, [v6]:port" into a[]; returns the count, or -1 with
 * the bad item in err. */
static int sentinels_split(const char *list, sentinel_addr *a, int max, char *err, size_t errlen)
{
    const char *p = list;
    int n = 0;

    while (*p) {
        p += strspn(p, " \t,");
        if (!*p)
            break;
        size_t len = strcspn(p, " \t,");
        const char *hs = p, *he, *colon;
        if (*p == '[') {
            const char *rb = memchr(p, ']', len);
            colon = rb && rb + 1 < p + len && rb[1] == ':' ? rb + 1 : NULL;
            hs = p + 1;
            he = rb;
        } else {
            colon = memrchr(p, ':', len);
            he = colon;
        }
        if (n == max) {
            snprintf(err, errlen, "redis_sentinels: more than %d sentinels listed", max);
            return -1;
        }
        if (!colon || !he || he == hs || (size_t)(he - hs) >= sizeof a[n].host ||
            parse_int(colon + 1, (size_t)(p + len - colon - 1), 1, 65535, &a[n].port) != 0) {
            snprintf(err, errlen, "redis_sentinels: '%.*s' is not host:port (e.g. 10.0.0.5:26379, "
                     "[::1]:26379); separate sentinels with commas", (int)(len > 80 ? 80 : len), p);
            return -1;
        }
        memcpy(a[n].host, hs, (size_t)(he - hs));
        a[n].host[he - hs] = '\0';
        n++;
        p += len;
    }
    return n;
}

int redis_target_sentinels(aq_redis_target *t, const char *sentinels, const char *master_name,
                           char *err, size_t errlen)
{
    sentinel_addr a[SENTINELS_MAX];
    int n;

    if (!sentinels || !sentinels[0]) {
        t->sentinels[0] = '\0';
        t->master_name[0] = '\0';
        return 0;
    }
    if (strlen(sentinels) >= sizeof t->sentinels) {
        snprintf(err, errlen, "redis_sentinels: longer than %zu bytes", sizeof t->sentinels - 1);
        return -1;
    }
    n = sentinels_split(sentinels, a, SENTINELS_MAX, err, errlen);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(err, errlen, "redis_sentinels: no host:port listed");
        return -1;
    }
    if (!master_name || !master_name[0] || strlen(master_name) >= sizeof t->master_name ||
        strcspn(master_name, " \t\r\n") != strlen(master_name)) {
        snprintf(err, errlen, "redis_sentinels is set, so redis_master_name must be too: the name the "
                 "sentinels monitor the master under (sentinel.conf 'sentinel monitor NAME ...'), "
                 "1..%zu characters without spaces", sizeof t->master_name - 1);
        return -1;
    }
    if (t->unix_path[0]) {
        snprintf(err, errlen, "redis_sentinels cannot be used with a unix:// redis_url: use "
                 "redis://[user:password@]any/db for the credentials and database");
        return -1;
    }
    memcpy(t->sentinels, sentinels, strlen(sentinels) + 1);
    memcpy(t->master_name, master_name, strlen(master_name) + 1);
    return 0;
}

int redis_target_sentinel_auth(aq_redis_target *t, const char *user, const char *password, char *err,
                               size_t errlen)
{
    user = user ? user : "";
    password = password ? password : "";
    if (strlen(user) >= sizeof t->sentinel_user || strlen(password) >= sizeof t->sentinel_password) {
        snprintf(err, errlen, "redis_sentinel_user / redis_sentinel_password: at most %zu / %zu bytes",
                 sizeof t->sentinel_user - 1, sizeof t->sentinel_password - 1);
        return -1;
    }
    if (user[0] && !password[0]) {
        snprintf(err, errlen, "redis_sentinel_user is set but redis_sentinel_password is empty: a sentinel "
                 "login needs the password (sentinel.conf 'requirepass', or the ACL user's)");
        return -1;
    }
    memcpy(t->sentinel_user, user, strlen(user) + 1);
    memcpy(t->sentinel_password, password, strlen(password) + 1);
    return 0;
}

/* Logs in to a sentinel when a password is set. 0 = ok (or no login);
 * -1 = refused or failed, with the cause and the fix in why. */
static int sentinel_login(redisContext *s, const aq_redis_target *t, const char *host, int port, char *why,
                          size_t whylen)
{
    redisReply *r;
    if (!t->sentinel_password[0])
        return 0;
    if (t->sentinel_user[0])
        r = redisCommand(s, "AUTH %s %s", t->sentinel_user, t->sentinel_password);
    else
        r = redisCommand(s, "AUTH %s", t->sentinel_password);
    if (!r) {
        snprintf(why, whylen, "sentinel %.200s:%d: AUTH: %.200s", host, port, s->errstr);
        return -1;
    }
    int rc = r->type == REDIS_REPLY_ERROR ? -1 : 0;
    if (rc)
        snprintf(why, whylen, "sentinel %.200s:%d refused the login (%.*s): check redis_sentinel_user and "
                 "redis_sentinel_password against the sentinels' requirepass or ACL", host, port,
                 (int)(r->len > 120 ? 120 : r->len), r->str);
    freeReplyObject(r);
    return rc;
}

int redis_reply_wants_reconnect(const char *reply)
{
    if (!reply)
        return 0;
    return strncmp(reply, "READONLY", 8) == 0 || strncmp(reply, "LOADING", 7) == 0 ||
           strncmp(reply, "MASTERDOWN", 10) == 0 || strncmp(reply, "NOREPLICAS", 10) == 0 ||
           /* Redis Cluster: the shard's slot is served elsewhere now, is
            * migrating, or has no master; shard_connect asks anew */
           strncmp(reply, "MOVED ", 6) == 0 || strncmp(reply, "ASK ", 4) == 0 ||
           strncmp(reply, "TRYAGAIN", 8) == 0 || strncmp(reply, "CLUSTERDOWN", 11) == 0 ||
           /* inside a script Redis prefixes the error of the call */
           strstr(reply, "READONLY You can't write") != NULL;
}

int redis_mark_if_demoted(redisContext *c, const redisReply *r)
{
    if (!c || !r || r->type != REDIS_REPLY_ERROR || !redis_reply_wants_reconnect(r->str))
        return 0;
    /* hiredis refuses every later command on a context with err set. */
    c->err = REDIS_ERR_OTHER;
    snprintf(c->errstr, sizeof c->errstr, "%s (%.*s)",
             (r->str[0] == 'M' && r->str[1] == 'O') || r->str[0] == 'A' || r->str[0] == 'T' || r->str[0] == 'C'
                 ? "the cluster moved or is moving this shard's slot; reconnecting"
                 : "not a writable master any more",
             (int)(r->len > 80 ? 80 : r->len), r->str);
    return 1;
}

int redis_wait_replicas(redisContext *c, int n, int timeout_ms, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "WAIT %d %d", n, timeout_ms);
    int rc = 0;

    if (!r) {
        snprintf(err, errlen, "WAIT for %d replicas: %s", n, c->errstr);
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        redis_mark_if_demoted(c, r);
        snprintf(err, errlen, "WAIT for %d replicas refused: %.*s", n, (int)r->len, r->str);
        rc = c->err ? -1 : 1;
    } else if (r->type != REDIS_REPLY_INTEGER || r->integer < n) {
        snprintf(err, errlen, "only %lld of the %d replicas redis_min_replicas asks for acknowledged the "
                 "write within %d ms: it is on the master only and a fail-over may lose it; check the "
                 "replicas (INFO replication on the master) or lower redis_min_replicas",
                 r->type == REDIS_REPLY_INTEGER ? r->integer : 0LL, n, timeout_ms);
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* Appends "; " and a formatted note to buf (cap bytes), truncating. */
static void note_add(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note_add(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;

    if (n + 3 >= cap)
        return;
    if (n) {
        memcpy(buf + n, "; ", 3);
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* 1 when ROLE says master. A ROLE the ACL refuses counts as master (the
 * writes will say otherwise, and READONLY drops the connection then). */
static int role_is_master(redisContext *c, char *role, size_t rolelen)
{
    redisReply *r = redisCommand(c, "ROLE");
    int ok = 0;

    snprintf(role, rolelen, "%.60s", r ? "unknown" : c->errstr);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(role, rolelen, "%.60s", r->element[0]->str);
        ok = strcmp(r->element[0]->str, "master") == 0;
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        ok = redis_refusal_kind(r->str) != REDIS_REFUSED_NONE;
    }
    if (r)
        freeReplyObject(r);
    return ok;
}

/* DESIGN: the Sentinel client protocol. Each connect asks the sentinels
 * in their listed order and takes the first address one gives; ROLE on
 * that server must say master, else (a stale sentinel during a fail-over)
 * the next sentinel is asked. No address is cached: a reconnect after a
 * fail-over, a READONLY, a LOADING or a refused write asks again, which
 * is how producers and workers follow a promotion. Sentinels are spoken
 * to in plain TCP; with redis_sentinel_password set each is logged in to
 * first (AUTH [user] password: sentinel.conf's requirepass or an ACL
 * user). TLS to the sentinels needs hiredis_ssl, like rediss://. */
static redisContext *connect_sentinel(const aq_redis_target *t, int connect_timeout_ms, int timeout_ms,
                                      char *err, size_t errlen, int *auth_failed)
{
    sentinel_addr a[SENTINELS_MAX];
    int sto = connect_timeout_ms < 1000 ? connect_timeout_ms : 1000;
    struct timeval tv = {sto / 1000, (sto % 1000) * 1000};
    char down[600] = "", seen[600] = "", lasterr[300] = "";
    int n, reached = 0, unknown = 0;

    n = sentinels_split(t->sentinels, a, SENTINELS_MAX, err, errlen);
    if (n <= 0)
        return NULL;
    for (int i = 0; i < n; i++) {
        redisContext *s = redisConnectWithTimeout(a[i].host, a[i].port, tv);
        redisReply *r = NULL;
        char why[400];
        if (s && !s->err && redisSetTimeout(s, tv) == REDIS_OK &&
            sentinel_login(s, t, a[i].host, a[i].port, why, sizeof why) != 0 && !s->err) {
            /* Every sentinel shares the setting: a refused login is configuration. */
            snprintf(err, errlen, "%s", why);
            if (auth_failed)
                *auth_failed = 1;
            redisFree(s);
            return NULL;
        }
        if (!s || s->err || !(r = redisCommand(s, "SENTINEL get-master-addr-by-name %s", t->master_name))) {
            note_add(down, sizeof down, "%s:%d: %s", a[i].host, a[i].port, s ? s->errstr : "out of memory");
            if (s)
                redisFree(s);
            continue;
        }
        reached++;
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0) {
            snprintf(err, errlen, "sentinel %s:%d wants a login (%.*s): set redis_sentinel_password (and "
                     "redis_sentinel_user for an ACL user) to the sentinels' requirepass", a[i].host, a[i].port,
                     (int)(r->len > 80 ? 80 : r->len), r->str);
            if (auth_failed)
                *auth_failed = 1;
            freeReplyObject(r);
            redisFree(s);
            return NULL;
        }
        if (r->type == REDIS_REPLY_NIL) {
            unknown++;
        } else if (r->type == REDIS_REPLY_ERROR) {
            note_add(seen, sizeof seen, "%s:%d answered %.*s", a[i].host, a[i].port, (int)r->len, r->str);
        } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
            aq_redis_target m = *t;
            char role[64];
            int port = 0;
            if (r->element[0]->len >= sizeof m.host ||
                parse_int(r->element[1]->str, r->element[1]->len, 1, 65535, &port) != 0) {
                note_add(seen, sizeof seen, "%s:%d gave a bad address", a[i].host, a[i].port);
            } else {
                memcpy(m.host, r->element[0]->str, r->element[0]->len + 1);
                m.port = port;
                m.sentinels[0] = '\0';
                redisContext *c = connect_one(&m, connect_timeout_ms, timeout_ms, lasterr, sizeof lasterr,
                                              auth_failed);
                if (c && role_is_master(c, role, sizeof role)) {
                    freeReplyObject(r);
                    redisFree(s);
                    return c;
                }
                if (c) {
                    note_add(seen, sizeof seen, "%s:%d names %s:%d, which is a %s", a[i].host, a[i].port,
                             m.host, m.port, role);
                    redisFree(c);
                } else {
                    if (auth_failed && *auth_failed) { /* configuration: no other server will do better */
                        snprintf(err, errlen, "%s", lasterr);
                        freeReplyObject(r);
                        redisFree(s);
                        return NULL;
                    }
                    note_add(seen, sizeof seen, "%s:%d names %s:%d: %s", a[i].host, a[i].port, m.host,
                             m.port, lasterr);
                }
            }
        } else {
            note_add(seen, sizeof seen, "%s:%d gave an unexpected reply", a[i].host, a[i].port);
        }
        freeReplyObject(r);
        redisFree(s);
    }
    if (reached == 0)
        snprintf(err, errlen, "no Redis sentinel reachable (%s): check redis_sentinels and that the "
                 "sentinels run", down);
    else if (unknown == reached)
        snprintf(err, errlen, "the Redis sentinels know no master named '%s': check redis_master_name "
                 "(SENTINEL MASTERS on a sentinel lists the names it monitors)", t->master_name);
    else
        snprintf(err, errlen, "no Redis sentinel names a reachable master for '%s' (%s%s%s%s%s): a "
                 "fail-over may be under way or the sentinels disagree; retrying asks them again",
                 t->master_name, seen, unknown ? "; " : "", unknown ? "some know no such master" : "",
                 down[0] ? "; unreachable: " : "", down);
    return NULL;
}

redisContext *redis_connect(const aq_redis_target *t, int connect_timeout_ms, int timeout_ms,
                            char *err, size_t errlen, int *auth_failed)
{
    if (auth_failed)
        *auth_failed = 0;
    if (t->sentinels[0])
        return connect_sentinel(t, connect_timeout_ms, timeout_ms, err, errlen, auth_failed);
    return connect_one(t, connect_timeout_ms, timeout_ms, err, errlen, auth_failed);
}

long long redis_reply_ll(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

void redis_free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i] != NULL)
            freeReplyObject(r[i]);
        r[i] = NULL;
    }
}
