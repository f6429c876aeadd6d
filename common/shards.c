/* shards.c -- the shards of a namespace and how to reach each (shards.h). */
#include "shards.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster's
 * key-to-slot mapping specifies. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from)
            return crc16(key + from, (size_t)(close - (key + from))) & 16383;
    }
    return crc16(key, len) & 16383;
}

int shard_pick(int n, int shard_by_tenant, const char *tenant, size_t tenant_len, unsigned long seq)
{
    if (n <= 1)
        return 0;
    if (shard_by_tenant && tenant && tenant_len > 0) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (size_t i = 0; i < tenant_len; i++) {
            h ^= (uint8_t)tenant[i];
            h *= 16777619u;
        }
        return (int)(h % (uint32_t)n);
    }
    return (int)(seq % (unsigned long)n);
}

/* Adds host:port to the cluster's node list (caller holds cl->mu);
 * returns its index, or -1 when the list is full. */
static int node_add(shard_cluster *cl, const char *host, int port)
{
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->node[i].port == port && strcmp(cl->node[i].host, host) == 0)
            return i;
    if (cl->nnodes == AQ_CLUSTER_NODES_MAX || strlen(host) >= sizeof cl->node[0].host)
        return -1;
    snprintf(cl->node[cl->nnodes].host, sizeof cl->node[0].host, "%s", host);
    cl->node[cl->nnodes].port = port;
    return cl->nnodes++;
}

/* Splits a list of URLs separated by commas or white space into t[]. */
static int urls_split(const char *list, aq_redis_target *t, int max, char *err, size_t errlen)
{
    int n = 0;
    const char *p = list;
    while (*p) {
        p += strspn(p, ", \t\r\n");
        if (!*p)
            break;
        size_t len = strcspn(p, ", \t\r\n");
        char one[1024], why[512];
        if (n == max) {
            snprintf(err, errlen, "redis_shard_urls: more than %d servers listed", max);
            return -1;
        }
        if (len >= sizeof one) {
            snprintf(err, errlen, "redis_shard_urls: entry %d is longer than %zu bytes", n + 1, sizeof one - 1);
            return -1;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (redis_url_parse(one, &t[n], why, sizeof why) != 0) {
            snprintf(err, errlen, "redis_shard_urls: entry %d: %s", n + 1, why);
            return -1;
        }
        n++;
        p += len;
    }
    return n;
}

int shards_init(aq_shards *s, const char *ns, int n, const aq_redis_target *base, const char *shard_urls,
                int cluster, char *err, size_t errlen)
{
    aq_redis_target *urls = NULL;
    int nurls = 0;

    memset(s, 0, sizeof *s);
    if (n < 1 || n > AQ_SHARDS_MAX) {
        snprintf(err, errlen, "redis_shards = %d: use 1..%d", n, AQ_SHARDS_MAX);
        return -1;
    }
    if (shard_urls && shard_urls[0]) {
        urls = calloc(AQ_SHARDS_MAX, sizeof *urls);
        if (!urls) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        nurls = urls_split(shard_urls, urls, AQ_SHARDS_MAX, err, errlen);
        if (nurls < 0)
            goto fail;
    }
    if (base->sentinels[0] && (nurls > 0 || cluster)) {
        snprintf(err, errlen, "redis_sentinels cannot be combined with %s: Sentinel serves one master; "
                 "unset redis_sentinels, or unset %s",
                 cluster ? "redis_cluster = on" : "redis_shard_urls",
                 cluster ? "redis_cluster" : "redis_shard_urls");
        goto fail;
    }
    if (!cluster && nurls > n) {
        snprintf(err, errlen, "redis_shard_urls lists %d servers but redis_shards is %d: the servers past "
                 "shard %d would hold nothing; raise redis_shards to at least %d or list fewer servers",
                 nurls, n, n - 1, nurls);
        goto fail;
    }
    if (cluster) {
        for (int i = -1; i < nurls; i++) {
            const aq_redis_target *t = i < 0 ? base : &urls[i];
            if (t->unix_path[0]) {
                snprintf(err, errlen, "redis_cluster = on needs host:port nodes, not unix://%s: cluster "
                         "nodes redirect clients by address; use redis://host:port", t->unix_path);
                goto fail;
            }
            if (t->db != 0) {
                snprintf(err, errlen, "redis_cluster = on but a URL selects database %d: a Redis Cluster "
                         "has database 0 only; drop the /%d from the URL", t->db, t->db);
                goto fail;
            }
        }
    }
    s->keys = calloc((size_t)n, sizeof *s->keys);
    s->target = calloc((size_t)n, sizeof *s->target);
    if (!s->keys || !s->target) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->n = n;
    s->cluster = cluster;
    s->nurls = cluster ? 0 : nurls;
    for (int i = 0; i < n; i++) {
        if (keys_init_shard(&s->keys[i], ns, i) != 0) {
            snprintf(err, errlen, "namespace '%s' is invalid: use 1..%d of A-Z a-z 0-9 _ . -", ns ? ns : "",
                     AQ_NS_MAX);
            goto fail;
        }
        s->slot[i] = redis_key_slot(s->keys[i].stats, strlen(s->keys[i].stats));
        s->target[i] = (!cluster && nurls > 0) ? urls[i % nurls] : *base;
    }
    if (cluster) {
        s->cl = calloc(1, sizeof *s->cl);
        if (!s->cl) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        pthread_mutex_init(&s->cl->mu, NULL);
        for (int i = 0; i < AQ_SHARDS_MAX; i++)
            s->cl->owner[i] = -1;
        node_add(s->cl, base->host, base->port);
        for (int i = 0; i < nurls; i++)
            node_add(s->cl, urls[i].host, urls[i].port);
    }
    free(urls);
    return 0;
fail:
    free(urls);
    shards_free(s);
    return -1;
}

int shards_from_settings(aq_shards *s, const char *ns, int n, const char *redis_url, const char *sentinels,
                         const char *master_name, const char *sentinel_user, const char *sentinel_password,
                         const char *shard_urls, int cluster, char *err, size_t errlen)
{
    aq_redis_target base;
    char why[512];

    memset(s, 0, sizeof *s);
    if (redis_url_parse(redis_url, &base, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        return -2;
    }
    if (redis_target_sentinels(&base, sentinels, master_name, err, errlen) != 0 ||
        redis_target_sentinel_auth(&base, sentinel_user, sentinel_password, err, errlen) != 0)
        return -1;
    return shards_init(s, ns, n, &base, shard_urls, cluster, err, errlen);
}

void shards_free(aq_shards *s)
{
    if (!s)
        return;
    if (s->cl) {
        pthread_mutex_destroy(&s->cl->mu);
        free(s->cl);
    }
    free(s->keys);
    free(s->target);
    memset(s, 0, sizeof *s);
}

void shards_abandon(aq_shards *s)
{
    free(s->cl);
    free(s->keys);
    free(s->target);
    memset(s, 0, sizeof *s);
}

void shard_where(aq_shards *s, int i, char *out, size_t cap)
{
    if (s->cl) {
        pthread_mutex_lock(&s->cl->mu);
        int o = s->cl->owner[i];
        if (o >= 0)
            snprintf(out, cap, "%s:%d", s->cl->node[o].host, s->cl->node[o].port);
        else
            snprintf(out, cap, "slot %d (owner not yet known)", s->slot[i]);
        pthread_mutex_unlock(&s->cl->mu);
        return;
    }
    const aq_redis_target *t = &s->target[i];
    if (t->sentinels[0])
        snprintf(out, cap, "sentinel master %s", t->master_name);
    else if (t->unix_path[0])
        snprintf(out, cap, "%s", t->unix_path);
    else
        snprintf(out, cap, "%s:%d", t->host, t->port);
}

/* Reads a CLUSTER SLOTS reply got from asked (host:port): learns every
 * node named, records the owner of every shard's slot, and writes the
 * master serving shard i's slot into *m. Returns 1 when the slot has a
 * master, 0 when no range covers it (unassigned: the cluster is down for
 * it), -1 for a reply that is not CLUSTER SLOTS'. */
static int slots_read(aq_shards *s, int i, const redisReply *r, const shard_node *asked, shard_node *m)
{
    shard_cluster *cl = s->cl;
    int found = 0;

    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    pthread_mutex_lock(&cl->mu);
    cl->refreshes++;
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        int master = -1;
        for (size_t j = 2; j < e->elements; j++) {
            const redisReply *nd = e->element[j];
            if (nd->type != REDIS_REPLY_ARRAY || nd->elements < 2 || nd->element[0]->type != REDIS_REPLY_STRING ||
                nd->element[1]->type != REDIS_REPLY_INTEGER)
                continue;
            /* An empty or "?" address means "the node you asked". */
            const char *host = nd->element[0]->str;
            if (host[0] == '\0' || strcmp(host, "?") == 0)
                host = asked->host;
            int idx = node_add(cl, host, (int)nd->element[1]->integer);
            if (j == 2)
                master = idx;
        }
        if (master < 0)
            continue;
        for (int sh = 0; sh < s->n; sh++)
            if (s->slot[sh] >= lo && s->slot[sh] <= hi)
                cl->owner[sh] = master;
        if (s->slot[i] >= lo && s->slot[i] <= hi) {
            *m = cl->node[master];
            found = 1;
        }
    }
    if (!found)
        cl->owner[i] = -1;
    pthread_mutex_unlock(&cl->mu);
    return found;
}

static void tried_add(char *buf, size_t cap, const shard_node *n, const char *why)
{
    size_t len = strlen(buf);
    if (len + 4 < cap)
        snprintf(buf + len, cap - len, "%s%.255s:%d (%.200s)", len ? "; " : "", n->host, n->port, why);
}

static redisContext *cluster_connect(aq_shards *s, int i, int cto, int to, char *err, size_t errlen,
                                     int *auth_failed)
{
    shard_cluster *cl = s->cl;
    shard_node cand[AQ_CLUSTER_NODES_MAX], dead[AQ_CLUSTER_NODES_MAX];
    int nc = 0, ndead = 0;
    char tried[1024] = "";

    pthread_mutex_lock(&cl->mu);
    int o = cl->owner[i];
    if (o >= 0)
        cand[nc++] = cl->node[o];
    for (int k = 0; k < cl->nnodes; k++)
        if (k != o)
            cand[nc++] = cl->node[k];
    pthread_mutex_unlock(&cl->mu);

    for (int k = 0; k < nc; k++) {
        aq_redis_target t = s->target[i];
        char e[512];
        int af = 0;
        snprintf(t.host, sizeof t.host, "%.255s", cand[k].host);
        t.port = cand[k].port;
        int seen = 0;
        for (int d = 0; d < ndead && !seen; d++)
            seen = dead[d].port == cand[k].port && strcmp(dead[d].host, cand[k].host) == 0;
        if (seen)
            continue;
        redisContext *c = redis_connect(&t, cto, to, e, sizeof e, &af);
        if (!c) {
            if (af) { /* the same credentials fail on every node */
                snprintf(err, errlen, "Redis Cluster node %s:%d: %s", t.host, t.port, e);
                if (auth_failed)
                    *auth_failed = 1;
                return NULL;
            }
            tried_add(tried, sizeof tried, &cand[k], e);
            if (ndead < AQ_CLUSTER_NODES_MAX)
                dead[ndead++] = cand[k];
            continue;
        }
        redisReply *r = redisCommand(c, "CLUSTER SLOTS");
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(e, sizeof e, "%s", r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (strstr(e, "cluster support disabled")) {
                snprintf(err, errlen, "redis_cluster is on but %s:%d is not a cluster node (%s): set "
                         "redis_cluster = off, or point redis_url at a node of the cluster",
                         cand[k].host, cand[k].port, e);
                return NULL;
            }
            tried_add(tried, sizeof tried, &cand[k], e);
            continue;
        }
        shard_node m;
        int f = slots_read(s, i, r, &cand[k], &m);
        freeReplyObject(r);
        if (f <= 0) {
            redisFree(c);
            tried_add(tried, sizeof tried, &cand[k],
                      f < 0 ? "CLUSTER SLOTS answered something else" : "no master serves the slot");
            continue;
        }
        if (m.port == cand[k].port && strcmp(m.host, cand[k].host) == 0)
            return c;
        redisFree(c);
        /* A master already found dead in this call (the survivors name
         * it until the fail-over): not again; ask the next node. */
        int m_dead = 0;
        for (int d = 0; d < ndead && !m_dead; d++)
            m_dead = dead[d].port == m.port && strcmp(dead[d].host, m.host) == 0;
        if (m_dead)
            continue;
        snprintf(t.host, sizeof t.host, "%.255s", m.host);
        t.port = m.port;
        c = redis_connect(&t, cto, to, e, sizeof e, &af);
        if (c)
            return c;
        if (af) {
            snprintf(err, errlen, "Redis Cluster node %s:%d: %s", t.host, t.port, e);
            if (auth_failed)
                *auth_failed = 1;
            return NULL;
        }
        tried_add(tried, sizeof tried, &m, e);
        if (ndead < AQ_CLUSTER_NODES_MAX)
            dead[ndead++] = m;
    }
    int taglen = (int)strcspn(s->keys[i].stats, "}") + 1;
    snprintf(err, errlen, "Redis Cluster: no reachable master serves shard %d (slot %d of %.*s): %s; "
             "a fail-over may be under way (the next attempt asks again), else check that redis_url and "
             "redis_shard_urls name live cluster nodes",
             i, s->slot[i], taglen, s->keys[i].stats, tried[0] ? tried : "no node known");
    return NULL;
}

redisContext *shard_connect(aq_shards *s, int i, int connect_timeout_ms, int timeout_ms, char *err,
                            size_t errlen, int *auth_failed)
{
    if (auth_failed)
        *auth_failed = 0;
    if (s->cl)
        return cluster_connect(s, i, connect_timeout_ms, timeout_ms, err, errlen, auth_failed);
    redisContext *c = redis_connect(&s->target[i], connect_timeout_ms, timeout_ms, err, errlen, auth_failed);
    if (!c && s->n > 1) {
        char where[300], e[600];
        shard_where(s, i, where, sizeof where);
        snprintf(e, sizeof e, "shard %d (%s): %s", i, where, err);
        snprintf(err, errlen, "%s", e);
    }
    return c;
}
