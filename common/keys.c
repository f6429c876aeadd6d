/* keys.c -- Redis key names (see keys.h and docs/PROTOCOL.md). */
#include "keys.h"

#include <stdio.h>
#include <string.h>

int keys_init(aq_keys *k, const char *ns)
{
    return keys_init_shard(k, ns, 0);
}

int keys_init_shard(aq_keys *k, const char *ns, int shard)
{
    static const char *const prio[AQ_PRIORITIES] = {"critical", "high", "normal", "low"};
    size_t n = ns ? strlen(ns) : 0;

    if (n == 0 || n > AQ_NS_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = ns[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return -1;
    }
    if (shard < 0 || shard > 99999)
        return -1;
    memset(k, 0, sizeof *k);
    memcpy(k->ns, ns, n);
    k->shard = shard;
    char tag[AQ_NS_MAX + 16];
    if (shard == 0)
        snprintf(tag, sizeof tag, "{%s}", ns);
    else
        snprintf(tag, sizeof tag, "{%s:%d}", ns, shard);
    for (int i = 0; i < AQ_PRIORITIES; i++)
        snprintf(k->queue[i], AQ_KEY_MAX, "%s:queue:%s", tag, prio[i]);
    snprintf(k->retry, AQ_KEY_MAX, "%s:retry", tag);
    snprintf(k->dead, AQ_KEY_MAX, "%s:dead", tag);
    snprintf(k->workers, AQ_KEY_MAX, "%s:workers", tag);
    snprintf(k->stats, AQ_KEY_MAX, "%s:stats", tag);
    snprintf(k->recoveries, AQ_KEY_MAX, "%s:recoveries", tag);
    snprintf(k->worker_prefix, AQ_KEY_MAX, "%s:worker:", tag);
    snprintf(k->inflight_prefix, AQ_KEY_MAX, "%s:inflight:", tag);
    return 0;
}
