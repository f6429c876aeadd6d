/* redisconn.h -- Redis URLs and connections with timeouts, TLS, AUTH and
 * SELECT, and the messages for refused logins and ACL denials.
 *
 * hiredis 0.14 (Debian 12) has no URL parser and no TLS. The parser is
 * here; TLS needs hiredis >= 1.0 with hiredis_ssl, and the Makefile
 * defines AQ_HAVE_HIREDIS_SSL when it finds one. Without it a rediss://
 * URL is refused with a message pointing at docs/SECURITY.md (a TLS
 * tunnel). */
#ifndef AQ_REDISCONN_H
#define AQ_REDISCONN_H
#include <hiredis.h>

typedef struct aq_redis_target {
    char host[256];
    int port;
    char unix_path[256];   /* non-empty: connect to this socket */
    char user[128];        /* ACL user, may be empty (then AUTH logs in "default") */
    char password[256];    /* may be empty */
    int db;
    int tls;               /* rediss:// */
    char tls_ca[256];      /* CA bundle file; empty: the system's trust store */
    char tls_cert[256];    /* client certificate (with tls_key), may be empty */
    char tls_key[256];
    char tls_server_name[256]; /* name to verify and send as SNI; empty: host */
    /* Sentinel (redis_sentinels, redis_master_name): when sentinels is set,
     * host and port above are ignored and every connect asks the sentinels
     * for the master; the URL gives only credentials, database and TLS. */
    char sentinels[512];   /* "host:port,host:port" (spaces allowed); "" = none */
    char master_name[128];
    char sentinel_user[128];     /* AUTH to the sentinels (sentinel.conf requirepass or ACL); "" = none */
    char sentinel_password[256]; /* "" = the sentinels need no login */
} aq_redis_target;

/* Checks a redis_sentinels list ("host:port, host:port", [ipv6]:port
 * allowed) and a master name, and stores both in t (sentinels "" clears
 * Sentinel mode). Returns 0, or -1 with the reason and the fix in err. */
int redis_target_sentinels(aq_redis_target *t, const char *sentinels, const char *master_name,
                           char *err, size_t errlen);

/* Sets the login for the sentinels (redis_sentinel_user,
 * redis_sentinel_password: "" = none; a user needs a password). Returns 0,
 * or -1 with the reason in err. */
int redis_target_sentinel_auth(aq_redis_target *t, const char *user, const char *password, char *err,
                               size_t errlen);

/* 1 when an error reply means this connection no longer reaches a
 * writable master, so the caller must drop it and connect again (which
 * asks the sentinels anew): READONLY (a replica now), LOADING,
 * MASTERDOWN, NOREPLICAS (min-replicas-to-write refused the write); on a
 * Redis Cluster MOVED, ASK, TRYAGAIN and CLUSTERDOWN (common/shards.h:
 * the reconnect asks the cluster where the shard's slot is now). */
int redis_reply_wants_reconnect(const char *reply);

/* When r is an error reply that redis_reply_wants_reconnect, marks c as
 * failed (c->err, the reply in c->errstr) so that every caller's existing
 * "connection lost" path drops it and connects again, and returns 1; else
 * 0. One place for the rule, whatever the command or script was. */
int redis_mark_if_demoted(redisContext *c, const redisReply *r);

/* 1 when this build can connect with TLS (rediss://). */
int redis_tls_available(void);

/* Parses redis://[user[:password]@]host[:port][/db] (password alone:
 * redis://:secret@host), the same with rediss:// for TLS plus optional
 * ?tls_ca=FILE&tls_cert=FILE&tls_key=FILE&tls_server_name=NAME, or
 * unix:///path[?db=N]. Percent-escapes in user, password and parameters are
 * decoded. Returns 0, or -1 with the reason in err (the password masked). */
int redis_url_parse(const char *url, aq_redis_target *t, char *err, size_t errlen);

/* Copies url into out (cap bytes) with the password replaced by ***, for
 * messages and logs. */
void redis_url_mask(const char *url, char *out, size_t cap);

/* Integer value of an integer or numeric-string reply; 0 for NULL or
 * anything else (missing hash fields read as 0, as docs/PROTOCOL.md says). */
long long redis_reply_ll(const redisReply *r);

/* Frees the replies r[0..n) (NULL ones skipped) and sets each to NULL. */
void redis_free_replies(redisReply **r, size_t n);

/* With t->sentinels set, first asks each sentinel in turn (each within
 * min(connect_timeout_ms, 1000) ms) SENTINEL get-master-addr-by-name,
 * connects to the address given, and confirms with ROLE that it is a
 * master; the message in err then names the cause: no sentinel reachable,
 * an unknown master name, or no sentinel naming a server that is a master
 * (sentinels disagree, fail-over under way).
 * Connects within connect_timeout_ms, sets the command timeout, does the
 * TLS handshake (rediss://, certificate and host name verified), then
 * AUTH when a password is set, or else a PING so that a server that wants
 * a login says so now, and SELECT when db is set. Returns a context the
 * caller frees with redisFree, or NULL with the reason in err; *auth_failed
 * (if not NULL) is set to 1 when the server refused the credentials or
 * wants some, or its TLS certificate failed verification (retrying will
 * not help: the configuration must change). */
redisContext *redis_connect(const aq_redis_target *t, int connect_timeout_ms,
                            int timeout_ms, char *err, size_t errlen, int *auth_failed);

/* redis_min_replicas: WAIT n within timeout_ms on c, after the writes to
 * be covered were sent on c. Returns 0 when at least n replicas have
 * them; 1 when fewer did in time (err: how many, the cause and the fix;
 * the writes are on the master only); -1 when the connection failed (err;
 * c->err set). */
int redis_wait_replicas(redisContext *c, int n, int timeout_ms, char *err, size_t errlen);

/* Kinds of refusal in a Redis error reply. */
enum {
    REDIS_REFUSED_NONE = 0,
    REDIS_REFUSED_NOAUTH,    /* a login is required (NOAUTH) */
    REDIS_REFUSED_LOGIN,     /* wrong user or password, or user off (WRONGPASS) */
    REDIS_REFUSED_COMMAND,   /* the ACL forbids the command (NOPERM, also inside a script) */
    REDIS_REFUSED_KEY        /* the ACL forbids the key (NOPERM, also inside a script) */
};

/* Classifies an error reply (any Redis from 6.0 on). */
int redis_refusal_kind(const char *reply);

/* When reply (the error text Redis gave for `what`, e.g. "LPUSH" or "the
 * fetch script"; NULL or "": the command Redis names) is a refusal, writes
 * into out a message naming the user, the command and the fix, and returns
 * its kind; else returns REDIS_REFUSED_NONE and leaves out alone. role
 * ("producer", "worker", "auditqctl"; "" for none) names the ACL rules in
 * docs/SECURITY.md to grant; key may be NULL. */
int redis_explain_refusal(const aq_redis_target *t, const char *role, const char *what,
                          const char *key, const char *reply, char *out, size_t outlen);

/* 1 when reply (an error reply's text) is Redis' WRONGTYPE: a command met a
 * key holding another type than it works on. */
int redis_is_wrongtype(const char *reply);

/* A key of the wrong type (a hand-typed SET, a stray tool): writes into out
 * the one message every auditq program uses for it, naming the key, what it
 * holds (actual: what TYPE says; NULL when unknown, e.g. from a WRONGTYPE
 * reply), what auditq expects ("list", "hash", "zset"), the fix, and
 * effect: what auditq does meanwhile (e.g. "nothing is fetched from it
 * meanwhile; the other queues are served"). */
void redis_explain_wrongtype(const char *key, const char *actual, const char *expected,
                             const char *effect, char *out, size_t outlen);
#endif
