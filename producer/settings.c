/* settings.c -- the producer's settings: see settings.h. */
#include "settings.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "redisconn.h"
#include "shards.h"
#include "text.h"

#define SPOOL_MAX_BYTES_MIN 4096LL
#define SPOOL_MAX_BYTES_MAX (1LL << 50)

/* The spool settings; 1 if key is one of them (then *rc is set). */
static int spool_config_set(auditq_config *cfg, const char *key, const char *value, auditq_rc *rc)
{
    *rc = AUDITQ_OK;
    if (strcmp(key, "spool_path") == 0) {
        if (strlen(value) >= sizeof cfg->spool_path) {
            producer_set_error("spool_path: longer than %zu bytes", sizeof cfg->spool_path - 1);
            *rc = AUDITQ_ERR_CONFIG;
        } else {
            memcpy(cfg->spool_path, value, strlen(value) + 1);
        }
        return 1;
    }
    if (strcmp(key, "spool_fsync") == 0) {
        if (strcmp(value, "always") == 0)
            cfg->spool_fsync = SPOOL_FSYNC_ALWAYS;
        else if (strcmp(value, "interval") == 0)
            cfg->spool_fsync = SPOOL_FSYNC_INTERVAL;
        else if (strcmp(value, "never") == 0)
            cfg->spool_fsync = SPOOL_FSYNC_NEVER;
        else {
            producer_set_error("spool_fsync = '%s': must be always, interval or never", value);
            *rc = AUDITQ_ERR_CONFIG;
        }
        return 1;
    }
    if (strcmp(key, "spool_full_policy") == 0) {
        if (strcmp(value, "error") == 0)
            cfg->spool_full_policy = SPOOL_FULL_ERROR;
        else if (strcmp(value, "block") == 0)
            cfg->spool_full_policy = SPOOL_FULL_BLOCK;
        else {
            producer_set_error("spool_full_policy = '%s': must be error or block", value);
            *rc = AUDITQ_ERR_CONFIG;
        }
        return 1;
    }
    if (strcmp(key, "spool_max_bytes") == 0) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < SPOOL_MAX_BYTES_MIN || v > SPOOL_MAX_BYTES_MAX) {
            producer_set_error("spool_max_bytes = '%s': must be an integer from %lld to %lld (bytes)", value,
                               SPOOL_MAX_BYTES_MIN, SPOOL_MAX_BYTES_MAX);
            *rc = AUDITQ_ERR_CONFIG;
        } else {
            cfg->spool_max_bytes = v;
        }
        return 1;
    }
    return 0;
}

auditq_config *auditq_config_new(void)
{
    auditq_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->redis_url, sizeof c->redis_url, "redis://127.0.0.1:6379");
    snprintf(c->ns, sizeof c->ns, "auditq");
    c->shards = 1;
    c->connect_timeout_ms = 500;
    c->timeout_ms = 1000;
    c->sync_connections = 4;
    c->buffer_events = 100000;
    c->batch_size = 500;
    c->flush_interval_ms = 100;
    c->full_policy = FULL_BLOCK;
    c->enqueue_timeout_ms = 50;
    c->close_timeout_ms = 5000;
    c->max_job_bytes = CODEC_DEFAULT_MAX_JOB;
    c->spool_fsync = SPOOL_FSYNC_ALWAYS;
    c->spool_fsync_interval_ms = 1000;
    c->spool_max_bytes = 1LL << 30;
    c->spool_full_policy = SPOOL_FULL_ERROR;
    return c;
}

void auditq_config_free(auditq_config *cfg)
{
    free(cfg);
}

static const struct int_setting {
    const char *key;
    size_t off;
    long lo, hi;
} int_settings[] = {
    {"connect_timeout_ms", offsetof(auditq_config, connect_timeout_ms), 1, 60000},
    {"timeout_ms", offsetof(auditq_config, timeout_ms), 1, 60000},
    {"redis_min_replicas", offsetof(auditq_config, min_replicas), 0, 16},
    {"redis_shards", offsetof(auditq_config, shards), 1, AQ_SHARDS_MAX},
    {"sync_connections", offsetof(auditq_config, sync_connections), 1, PRODUCER_MAX_CONNS},
    {"buffer_events", offsetof(auditq_config, buffer_events), 1, 10000000},
    {"batch_size", offsetof(auditq_config, batch_size), 1, 100000},
    {"flush_interval_ms", offsetof(auditq_config, flush_interval_ms), 1, 60000},
    {"enqueue_timeout_ms", offsetof(auditq_config, enqueue_timeout_ms), 0, 60000},
    {"close_timeout_ms", offsetof(auditq_config, close_timeout_ms), 0, 600000},
    {"max_job_bytes", offsetof(auditq_config, max_job_bytes), 1024, 16777216},
    {"spool_fsync_interval_ms", offsetof(auditq_config, spool_fsync_interval_ms), 1, 60000},
};

/* Every key auditq_config_set takes, for the "did you mean" of an unknown
 * one (the same edit distance as the worker's config table). */
static const char *const config_keys[] = {
    "redis_url", "redis_sentinels", "redis_master_name", "redis_min_replicas", "redis_sentinel_user", "redis_sentinel_password", "redis_shards", "redis_shard_urls", "redis_cluster", "redis_shard_by", "namespace", "connect_timeout_ms", "timeout_ms", "sync_connections",
    "buffer_events", "batch_size", "flush_interval_ms", "full_policy", "enqueue_timeout_ms",
    "close_timeout_ms", "max_job_bytes", "spool_path", "spool_fsync", "spool_fsync_interval_ms",
    "spool_max_bytes", "spool_full_policy", "protect_fields", "protect_key_file",
};

static void unknown_key(const char *key)
{
    const char *best = NULL;
    size_t best_d = 4; /* within 3 edits, as the worker's config */

    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++) {
        size_t d = text_edit_distance(key, config_keys[i]);
        if (d < best_d) {
            best_d = d;
            best = config_keys[i];
        }
    }
    if (best)
        producer_set_error("unknown setting '%s' (did you mean '%s'?)", key, best);
    else
        producer_set_error("unknown setting '%s' (see auditq.h for the list)", key);
}

auditq_rc auditq_config_set(auditq_config *cfg, const char *key, const char *value)
{
    producer_clear_error();
    if (!cfg || !key || !value) {
        producer_set_error("auditq_config_set: NULL argument");
        return AUDITQ_ERR_INVALID_ARG;
    }
    if (strcmp(key, "redis_url") == 0) {
        aq_redis_target t;
        char err[200];
        if (strlen(value) >= sizeof cfg->redis_url)
            snprintf(err, sizeof err, "longer than %zu bytes", sizeof cfg->redis_url - 1);
        if (strlen(value) >= sizeof cfg->redis_url || redis_url_parse(value, &t, err, sizeof err) != 0) {
            producer_set_error("redis_url: %s", err);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->redis_url, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "redis_sentinels") == 0) {
        aq_redis_target t;
        char err[200];
        memset(&t, 0, sizeof t);
        if (strlen(value) >= sizeof cfg->redis_sentinels) {
            producer_set_error("redis_sentinels: longer than %zu bytes", sizeof cfg->redis_sentinels - 1);
            return AUDITQ_ERR_CONFIG;
        }
        if (redis_target_sentinels(&t, value, "x", err, sizeof err) != 0) {
            producer_set_error("%s", err);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->redis_sentinels, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "redis_master_name") == 0) {
        if (strlen(value) >= sizeof cfg->redis_master_name || strcspn(value, " \t\r\n") != strlen(value)) {
            producer_set_error("redis_master_name = '%s': at most %zu characters, no spaces", value,
                               sizeof cfg->redis_master_name - 1);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->redis_master_name, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "redis_sentinel_user") == 0 || strcmp(key, "redis_sentinel_password") == 0) {
        int user = strcmp(key, "redis_sentinel_user") == 0;
        char *dst = user ? cfg->sentinel_user : cfg->sentinel_password;
        size_t cap = user ? sizeof cfg->sentinel_user : sizeof cfg->sentinel_password;
        if (strlen(value) >= cap) {
            producer_set_error("%s: longer than %zu bytes", key, cap - 1);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(dst, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "redis_shard_urls") == 0) {
        aq_shards sh;
        aq_redis_target base;
        char err[600];
        memset(&base, 0, sizeof base);
        snprintf(base.host, sizeof base.host, "127.0.0.1");
        base.port = 6379;
        if (strlen(value) >= sizeof cfg->shard_urls) {
            producer_set_error("redis_shard_urls: longer than %zu bytes", sizeof cfg->shard_urls - 1);
            return AUDITQ_ERR_CONFIG;
        }
        if (shards_init(&sh, "x", AQ_SHARDS_MAX, &base, value, 0, err, sizeof err) != 0) {
            producer_set_error("%s", err);
            return AUDITQ_ERR_CONFIG;
        }
        shards_free(&sh);
        memcpy(cfg->shard_urls, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "redis_cluster") == 0 || strcmp(key, "redis_shard_by") == 0) {
        int cl = strcmp(key, "redis_cluster") == 0;
        const char *a = cl ? "on" : "tenant", *b = cl ? "off" : "spread";
        if (strcmp(value, a) != 0 && strcmp(value, b) != 0) {
            producer_set_error("%s = '%s': must be %s or %s", key, value, a, b);
            return AUDITQ_ERR_CONFIG;
        }
        *(cl ? &cfg->cluster : &cfg->shard_by_tenant) = strcmp(value, a) == 0;
        return AUDITQ_OK;
    }
    if (strcmp(key, "namespace") == 0) {
        aq_keys k;
        if (keys_init(&k, value) != 0) {
            producer_set_error("namespace = '%s': must be 1..64 characters of A-Z a-z 0-9 _ . -", value);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->ns, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "full_policy") == 0) {
        if (strcmp(value, "block") == 0)
            cfg->full_policy = FULL_BLOCK;
        else if (strcmp(value, "error") == 0)
            cfg->full_policy = FULL_ERROR;
        else {
            producer_set_error("full_policy = '%s': must be block or error", value);
            return AUDITQ_ERR_CONFIG;
        }
        return AUDITQ_OK;
    }
    if (strcmp(key, "protect_fields") == 0) {
        /* Checked now, so a bad rule fails where it is set; auditq_open
         * parses the copy again and reads the key file. */
        char err[512];
        if (protect_parse(value, NULL, err, sizeof err) != 0) {
            producer_set_error("%s", err);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->protect_fields, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    if (strcmp(key, "protect_key_file") == 0) {
        if (strlen(value) >= sizeof cfg->protect_key_file) {
            producer_set_error("protect_key_file: longer than %zu bytes", sizeof cfg->protect_key_file - 1);
            return AUDITQ_ERR_CONFIG;
        }
        memcpy(cfg->protect_key_file, value, strlen(value) + 1);
        return AUDITQ_OK;
    }
    auditq_rc src;
    if (spool_config_set(cfg, key, value, &src))
        return src;
    for (size_t i = 0; i < sizeof int_settings / sizeof int_settings[0]; i++) {
        const struct int_setting *s = &int_settings[i];
        if (strcmp(key, s->key) != 0)
            continue;
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < s->lo || v > s->hi) {
            producer_set_error("%s = '%s': must be an integer from %ld to %ld", key, value, s->lo, s->hi);
            return AUDITQ_ERR_CONFIG;
        }
        *(int *)(void *)((char *)cfg + s->off) = (int)v;
        return AUDITQ_OK;
    }
    unknown_key(key);
    return AUDITQ_ERR_CONFIG;
}
