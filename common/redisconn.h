/* redisconn.h -- Redis URLs and connections with timeouts, AUTH and SELECT.
 * hiredis 0.14 has no URL parser and no TLS; this fills the first gap. */
#ifndef AQ_REDISCONN_H
#define AQ_REDISCONN_H
#include <hiredis.h>

typedef struct aq_redis_target {
    char host[256];
    int port;
    char unix_path[256];   /* non-empty: connect to this socket */
    char user[128];        /* ACL user, may be empty */
    char password[256];    /* may be empty */
    int db;
} aq_redis_target;

/* Parses redis://[user[:password]@]host[:port][/db] (password alone:
 * redis://:secret@host) or unix:///path[?db=N]. Percent-escapes in user and
 * password are decoded. Returns 0, or -1 with the reason in err. */
int redis_url_parse(const char *url, aq_redis_target *t, char *err, size_t errlen);

/* Connects within connect_timeout_ms, sets the command timeout, sends AUTH
 * and SELECT when set. Returns a context the caller frees with redisFree, or
 * NULL with the reason in err; *auth_failed (if not NULL) is set to 1 when
 * the server refused the credentials. */
redisContext *redis_connect(const aq_redis_target *t, int connect_timeout_ms,
                            int timeout_ms, char *err, size_t errlen, int *auth_failed);
#endif
