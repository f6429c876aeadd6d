/* shards.h -- where each Redis shard of a namespace lives, and the one
 * way to connect to it (docs/SCALING.md "Redis shards", docs/PROTOCOL.md
 * section 9).
 *
 * A namespace's keys are spread over redis_shards shards (default 1).
 * Shard 0 keeps today's hash tag {ns}; shard i >= 1 uses {ns:i}. Every
 * key of one shard shares its tag, so each script touches one shard (and
 * on a Redis Cluster one slot) only; nothing ever spans two shards.
 *
 * A shard lives on:
 *   - redis_url (or the Sentinel master): every shard on one server, the
 *     default; useful to spread slots once the server becomes a cluster;
 *   - redis_shard_urls: N independent servers, shard i on URL i mod N;
 *   - redis_cluster = on: a Redis Cluster; redis_url and redis_shard_urls
 *     are seed nodes, and shard i goes to the master serving the slot of
 *     its tag (CRC16, as the cluster spec says), learned with CLUSTER SLOTS.
 *
 * Routing on a cluster is per shard, not per command: all of a shard's
 * keys are in one slot, so a shard's connection goes to that slot's
 * master. A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply marks the
 * connection failed (redis_mark_if_demoted), every caller's reconnect
 * path calls shard_connect again, and that asks the cluster for the slot's
 * owner anew. ASK is answered by that retry too rather than by ASKING on
 * the importing node: a script's keys are split between the two nodes
 * while the slot migrates (TRYAGAIN there), and the few keys of a shard
 * move in milliseconds.
 *
 * Thread-safe: the cluster's slot map is shared under a mutex, held only
 * to read or update it, never during I/O. */
#ifndef AQ_SHARDS_H
#define AQ_SHARDS_H
#include <pthread.h>
#include <stddef.h>

#include "keys.h"
#include "redisconn.h"

#define AQ_SHARDS_MAX 256
#define AQ_CLUSTER_NODES_MAX 64

typedef struct shard_node {
    char host[256];
    int port;
} shard_node;

typedef struct shard_cluster {
    pthread_mutex_t mu;
    shard_node node[AQ_CLUSTER_NODES_MAX]; /* seeds first, then nodes learned from CLUSTER SLOTS */
    int nnodes;
    int owner[AQ_SHARDS_MAX];              /* per shard: node index of its slot's master, -1 unknown */
    unsigned long refreshes;               /* CLUSTER SLOTS answers read */
} shard_cluster;

typedef struct aq_shards {
    int n;                                 /* redis_shards */
    int cluster;                           /* redis_cluster = on */
    int nurls;                             /* redis_shard_urls entries (0: all on redis_url) */
    aq_keys *keys;                         /* n entries */
    int slot[AQ_SHARDS_MAX];               /* cluster slot of shard i's tag */
    aq_redis_target *target;               /* n entries: shard i's server (cluster: credentials/TLS) */
    shard_cluster *cl;                     /* cluster: the shared slot map; else NULL */
} aq_shards;

/* Redis Cluster's hash slot of key: CRC16 (XMODEM) of the hash tag (the
 * part between the first '{' and the next '}' when not empty) or else of
 * the whole key, mod 16384. */
int redis_key_slot(const char *key, size_t len);

/* Fills s for namespace ns with n shards (1..AQ_SHARDS_MAX).
 * base: the parsed redis_url (with Sentinel applied): every shard's server
 * when shard_urls is "" (or NULL) and cluster is 0.
 * shard_urls: "" or a list of Redis URLs separated by commas or spaces.
 * cluster: 1 = Redis Cluster (base and shard_urls are seed nodes).
 * Refuses, naming the setting and the fix: Sentinel with shard_urls or
 * cluster, unix sockets or a database other than 0 on a cluster, a URL
 * that does not parse. Returns 0 or -1 (err). Free with shards_free. */
int shards_init(aq_shards *s, const char *ns, int n, const aq_redis_target *base, const char *shard_urls,
                int cluster, char *err, size_t errlen);

/* From an aq_config-like set of settings in one call: parses redis_url,
 * applies redis_sentinels/redis_master_name and the sentinels' login, then
 * shards_init. err names the setting to fix; -2 (not -1) when redis_url
 * itself does not parse (err then is the parser's reason alone, for the
 * caller to name the setting its way). */
int shards_from_settings(aq_shards *s, const char *ns, int n, const char *redis_url, const char *sentinels,
                         const char *master_name, const char *sentinel_user, const char *sentinel_password,
                         const char *shard_urls, int cluster, char *err, size_t errlen);

void shards_free(aq_shards *s);
/* In a child after fork(): frees s without touching the cluster map's
 * mutex, which a parent thread may have held at the fork. */
void shards_abandon(aq_shards *s);

/* Connects to shard i's server as redis_connect does (timeouts, TLS, AUTH,
 * SELECT, Sentinel); on a cluster first asks the slot's last known owner,
 * then every known node, then the seeds, for CLUSTER SLOTS, and connects
 * to the master serving the shard's slot. err names the shard. */
redisContext *shard_connect(aq_shards *s, int i, int connect_timeout_ms, int timeout_ms, char *err,
                            size_t errlen, int *auth_failed);

/* "host:port" (or the socket path) shard i was last connected to or is
 * configured on, for logs and `auditqctl stats`. */
void shard_where(aq_shards *s, int i, char *out, size_t cap);

/* The shard a producer puts an event on: with a tenant (shard_by_tenant
 * and tenant non-empty) FNV-1a of the tenant mod n, so one tenant's
 * events share a shard; else seq mod n (the caller's round-robin counter). */
int shard_pick(int n, int shard_by_tenant, const char *tenant, size_t tenant_len, unsigned long seq);
#endif
