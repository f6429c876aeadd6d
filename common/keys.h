/* keys.h -- every Redis key auditq uses (docs/PROTOCOL.md lists them).
 * All keys of one shard share its hash tag -- {namespace} for shard 0 (the
 * only one by default), {namespace:i} for shard i -- so they live in one
 * Redis Cluster slot and Lua scripts may touch them together. The key
 * comments below show shard 0's names. */
#ifndef AQ_KEYS_H
#define AQ_KEYS_H
#include <stddef.h>

#define AQ_NS_MAX 64
#define AQ_KEY_MAX 192
#define AQ_PRIORITIES 4

typedef struct aq_keys {
    char ns[AQ_NS_MAX + 1];
    int shard;                 /* 0: tag {ns}; i >= 1: tag {ns:i} */
    char queue[AQ_PRIORITIES][AQ_KEY_MAX]; /* {ns}:queue:<priority> LIST, LPUSH in, RPOP-end oldest */
    char retry[AQ_KEY_MAX];    /* {ns}:retry    ZSET  member = priority digit + job bytes, score = due unix ms */
    char dead[AQ_KEY_MAX];     /* {ns}:dead     LIST  msgpack dead-letter records, newest first */
    char workers[AQ_KEY_MAX];  /* {ns}:workers  ZSET  worker id, score = last heartbeat unix ms */
    char stats[AQ_KEY_MAX];    /* {ns}:stats    HASH  processed, failed, retried, recovered, dead_lettered, ... */
    char recoveries[AQ_KEY_MAX]; /* {ns}:recoveries HASH job bytes -> times recovered (crash-loop guard) */
    char worker_prefix[AQ_KEY_MAX];   /* {ns}:worker:   + id  -> HASH info */
    char inflight_prefix[AQ_KEY_MAX]; /* {ns}:inflight: + id + ":" + thread -> LIST */
} aq_keys;

/* Validates ns (1..64 of [A-Za-z0-9_.-]) and fills k. Returns 0 or -1. */
int keys_init(aq_keys *k, const char *ns);
/* The keys of shard (0..99999) of ns. Returns 0 or -1. */
int keys_init_shard(aq_keys *k, const char *ns, int shard);
#endif
