/* keys.h -- every Redis key auditq uses (docs/PROTOCOL.md lists them).
 * All keys share the hash tag {namespace} so they live in one Redis Cluster
 * slot and Lua scripts may touch them together. */
#ifndef AQ_KEYS_H
#define AQ_KEYS_H
#include <stddef.h>

#define AQ_NS_MAX 64
#define AQ_KEY_MAX 192
#define AQ_PRIORITIES 4

typedef struct aq_keys {
    char ns[AQ_NS_MAX + 1];
    char queue[AQ_PRIORITIES][AQ_KEY_MAX]; /* {ns}:queue:<priority> LIST, LPUSH in, RPOP-end oldest */
    char retry[AQ_KEY_MAX];    /* {ns}:retry    ZSET  member = priority digit + job bytes, score = due unix ms */
    char dead[AQ_KEY_MAX];     /* {ns}:dead     LIST  msgpack dead-letter records, newest first */
    char workers[AQ_KEY_MAX];  /* {ns}:workers  ZSET  worker id, score = last heartbeat unix ms */
    char stats[AQ_KEY_MAX];    /* {ns}:stats    HASH  processed, failed, retried, recovered, dead_lettered, ... */
    char worker_prefix[AQ_KEY_MAX];   /* {ns}:worker:   + id  -> HASH info */
    char inflight_prefix[AQ_KEY_MAX]; /* {ns}:inflight: + id + ":" + thread -> LIST */
} aq_keys;

/* Validates ns (1..64 of [A-Za-z0-9_.-]) and fills k. Returns 0 or -1. */
int keys_init(aq_keys *k, const char *ns);
#endif
