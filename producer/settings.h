/* settings.h -- the producer's settings (auditq_config_new/_set/_free).
 *
 * Owns: struct auditq_config, the settings table and its parsing. No
 * locks: an auditq_config belongs to one thread at a time (auditq.h), and
 * auditq_open copies it. Called by: the application (through auditq.h);
 * the other modules read their numbers from the handle's copy. Calls:
 * error.h only (and the URL/namespace checks of common/). */
#ifndef AQ_PRODUCER_SETTINGS_H
#define AQ_PRODUCER_SETTINGS_H
#include <stdint.h>

#include "auditq.h"
#include "keys.h"
#include "protect.h"

#define PRODUCER_MAX_CONNS 64

enum { FULL_BLOCK = 0, FULL_ERROR = 1 };
enum { SPOOL_FSYNC_ALWAYS = 0, SPOOL_FSYNC_INTERVAL = 1, SPOOL_FSYNC_NEVER = 2 };
enum { SPOOL_FULL_ERROR = 0, SPOOL_FULL_BLOCK = 1 };

struct auditq_config {
    char redis_url[512];
    char redis_sentinels[512]; /* "" = redis_url's host */
    char redis_master_name[128];
    char sentinel_user[128];   /* redis_sentinel_user */
    char sentinel_password[256]; /* redis_sentinel_password */
    char ns[AQ_NS_MAX + 1];
    int shards;                /* redis_shards */
    char shard_urls[2048];     /* redis_shard_urls: "" = every shard on redis_url */
    int cluster;               /* redis_cluster */
    int shard_by_tenant;       /* redis_shard_by = tenant */
    int connect_timeout_ms;
    int timeout_ms;
    int min_replicas;          /* redis_min_replicas: WAIT for this many; 0 = no WAIT */
    int sync_connections;
    int buffer_events;
    int batch_size;
    int flush_interval_ms;
    int full_policy;
    int enqueue_timeout_ms;
    int close_timeout_ms;
    int max_job_bytes;
    char spool_path[1024];     /* "" = no spool */
    int spool_fsync;           /* SPOOL_FSYNC_* */
    int spool_fsync_interval_ms;
    int64_t spool_max_bytes;
    int spool_full_policy;     /* SPOOL_FULL_* */
    char protect_fields[PROTECT_SPEC_MAX]; /* "" = no field protected (protect.h) */
    char protect_key_file[1024];           /* "" = none (then no hmac rule) */
};
#endif
