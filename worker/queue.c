/* queue.c -- Lua scripts for every queue transition (see queue.h).
 *
 * Why Lua: each transition touches several keys (a queue, an in-flight
 * list, the worker hash, the retry set, the dead list, the stats) and must
 * happen entirely or not at all. A script runs atomically on the server;
 * a crash of the worker before, during or after the call leaves Redis in
 * one of two consistent states, never in between.
 *
 * All keys share the {namespace} hash tag. Scripts that derive key names
 * (in-flight lists of a dead worker) only ever build names under that same
 * tag, so they stay in one Redis Cluster slot.
 *
 * Times (heartbeats, retry due times) come from Redis' TIME, not from the
 * worker hosts' clocks, so skew between hosts cannot expire a live worker
 * or delay a retry.
 */
#include "queue.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "redisconn.h"

typedef struct script {
    const char *name;
    const char *src;
    char sha[41];
} script;

static pthread_mutex_t sha_mu = PTHREAD_MUTEX_INITIALIZER;

/* Every script that writes starts with this. ok(key, want) is true when
 * key is absent or of type want; otherwise it adds {key, type, want} to
 * `wrong`, which the script returns, and is false (once per key: the
 * answer is kept). llen(key) is LLEN, or nil for a key of another type
 * (listed in `wrong`); any other error is raised as before. Every key is
 * checked before the first write that depends on it: Redis does not roll a
 * script back when one of its commands fails, so a WRONGTYPE half-way
 * would leave the jobs moved so far in neither place.
 * An ACL from before TYPE was needed (docs/SECURITY.md) makes TYPE fail:
 * the key is then taken as right, as it was before these checks. */
#define LUA_TYPECHECK                                                      \
    "local wrong, seen = {}, {}\n"                                         \
    "local function ok(k, want)\n"                                         \
    "  if seen[k] ~= nil then return seen[k] end\n"                        \
    "  local t = redis.pcall('TYPE', k)['ok']\n"                           \
    "  local good = not t or t == 'none' or t == want\n"                   \
    "  if not good then\n"                                                 \
    "    wrong[#wrong + 1] = k\n"                                          \
    "    wrong[#wrong + 1] = t\n"                                          \
    "    wrong[#wrong + 1] = want\n"                                       \
    "  end\n"                                                              \
    "  seen[k] = good\n"                                                   \
    "  return good\n"                                                      \
    "end\n"                                                                \
    "local function llen(k)\n"                                             \
    "  local n = redis.pcall('LLEN', k)\n"                                 \
    "  if type(n) ~= 'table' then return n end\n"                          \
    "  if not string.find(tostring(n['err']), 'WRONGTYPE', 1, true) then\n" \
    "    return redis.call('LLEN', k)\n"                                   \
    "  end\n"                                                              \
    "  ok(k, 'list')\n"                                                    \
    "  return nil\n"                                                       \
    "end\n"

/* KEYS: inflight, worker hash, q0..q3 (critical..low), dead, stats
 * ARGV: max, thread, seq, mode ('strict' | 'weighted'), r in [0,1), w0..w3,
 *       size limit (bytes), max_job_bytes, worker id, dead_max
 * Returns {token, jobs, dead-lettered count, wrong}: token '' and no jobs
 * when there is nothing to take; wrong lists keys of the wrong type.
 * A job longer than the size limit (max_job_bytes plus the re-encoding
 * slack the decoder allows) is dead-lettered here, whole, and never
 * reaches the worker: Redis accepts values up to 512 MB, and without this
 * one LPUSH of a huge value would make every worker that fetched it hold
 * it in memory. The batch a worker receives is therefore bounded by
 * batch_size x (max_job_bytes + slack). The reason is the decoder's.
 * Weighted: the queue is drawn among the NON-EMPTY queues in proportion to
 * their weights, so each queue with work gets its share whatever the
 * others hold (drawing among all queues would hand an empty queue's share
 * to the highest priority).
 * Wrong types: a queue that is not a list is skipped (as if empty) and the
 * others are served. With a dead list that is not a list, an oversized job
 * cannot be dead-lettered: the fetch takes only the jobs older than the
 * newest oversized one in its range, and a queue whose next job is
 * oversized counts as empty (it waits for the dead list to be fixed). A
 * stats hash that is not a hash is not counted into. An in-flight list or
 * worker hash of the wrong type stops this thread's fetching. */
static script s_fetch = {"fetch",
    LUA_TYPECHECK
    "local ik, wk = KEYS[1], KEYS[2]\n"
    "local field = 'src:' .. ARGV[2]\n"
    "local held = llen(ik)\n"
    "if not held then return {'', {}, 0, wrong} end\n"
    "if held > 0 then\n"
    "  if not ok(wk, 'hash') then return {'', {}, 0, wrong} end\n"
    "  local src = redis.call('HGET', wk, field)\n"
    "  if not src then\n"
    "    src = '2:' .. ARGV[3]\n"
    "    redis.call('HSET', wk, field, src)\n"
    "  end\n"
    "  return {src, redis.call('LRANGE', ik, 0, -1), 0, wrong}\n"
    "end\n"
    "local lens = {}\n"
    "for p = 0, 3 do\n"
    "  lens[p] = llen(KEYS[3 + p]) or 0\n"
    "end\n"
    "local lim = tonumber(ARGV[10])\n"
    "while true do\n"
    "  local pick = nil\n"
    "  if ARGV[4] == 'weighted' then\n"
    "    local total = 0\n"
    "    for p = 0, 3 do\n"
    "      if lens[p] > 0 then total = total + tonumber(ARGV[6 + p]) end\n"
    "    end\n"
    "    if total == 0 then return {'', {}, 0, wrong} end\n"
    "    local x = tonumber(ARGV[5]) * total\n"
    "    for p = 0, 3 do\n"
    "      if lens[p] > 0 then\n"
    "        pick = p\n"
    "        x = x - tonumber(ARGV[6 + p])\n"
    "        if x < 0 then break end\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    for p = 0, 3 do\n"
    "      if lens[p] > 0 then pick = p break end\n"
    "    end\n"
    "    if not pick then return {'', {}, 0, wrong} end\n"
    "  end\n"
    "  local q = KEYS[3 + pick]\n"
    "  local items = redis.call('LRANGE', q, -tonumber(ARGV[1]), -1)\n"
    /* items[#items] is the oldest. j: the newest oversized job. */
    "  local j = 0\n"
    "  for i = 1, #items do\n"
    "    if #items[i] > lim then j = i end\n"
    "  end\n"
    "  if j > 0 and not ok(KEYS[7], 'list') then\n"
    /* Cannot dead-letter it: keep the run older than it, which leaves it
     * queued with everything newer. */
    "    local older = {}\n"
    "    for i = j + 1, #items do older[#older + 1] = items[i] end\n"
    "    items = older\n"
    "  end\n"
    "  if #items > 0 and not ok(wk, 'hash') then return {'', {}, 0, wrong} end\n"
    "  if #items > 0 then\n"
    "    redis.call('LTRIM', q, 0, -#items - 1)\n"
    "    local dl, keep, now = 0, {}, 0\n"
    "    for i = 1, #items do\n"
    "      if #items[i] > lim then\n"
    "        if dl == 0 then\n"
    "          local t = redis.call('TIME')\n"
    "          now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "        end\n"
    "        local names = {'critical', 'high', 'normal', 'low'}\n"
    "        redis.call('LPUSH', KEYS[7], cmsgpack.pack({job = items[i],\n"
    "          reason = 'undecodable job: job is ' .. #items[i] .. ' bytes, larger than max_job_bytes=' .. ARGV[11],\n"
    "          attempts = 0, failed_at = now, priority = names[pick + 1], worker = ARGV[12]}))\n"
    "        dl = dl + 1\n"
    "      else\n"
    "        keep[#keep + 1] = items[i]\n"
    "      end\n"
    "    end\n"
    "    if dl > 0 then\n"
    "      items = keep\n"
    "      local counted = ok(KEYS[8], 'hash')\n"
    "      if counted then\n"
    "        redis.call('HINCRBY', KEYS[8], 'dead_lettered', dl)\n"
    "        redis.call('HINCRBY', KEYS[8], 'failed', dl)\n"
    "      end\n"
    "      local len, dmax = redis.call('LLEN', KEYS[7]), tonumber(ARGV[13])\n"
    "      if len > dmax then\n"
    "        redis.call('LTRIM', KEYS[7], 0, dmax - 1)\n"
    "        if counted then redis.call('HINCRBY', KEYS[8], 'dead_trimmed', len - dmax) end\n"
    "      end\n"
    "      if #items == 0 then return {'', {}, dl, wrong, pick} end\n"
    "    end\n"
    "    for s = 1, #items, 1000 do\n"
    "      redis.call('RPUSH', ik, unpack(items, s, math.min(s + 999, #items)))\n"
    "    end\n"
    "    local src = pick .. ':' .. ARGV[3]\n"
    "    redis.call('HSET', wk, field, src)\n"
    "    return {src, items, dl, wrong}\n"
    "  end\n"
    "  lens[pick] = 0\n"
    "end\n",
    ""};

/* KEYS: inflight, worker hash, retry, dead, stats, recoveries
 * ARGV: thread, token, dead_max, processed, nretries,
 *       then nretries x (delay_ms, member), then dead records
 * Returns {1 settled | 0 fenced | -1 refused, wrong}. Refused: a key this
 * settle must write (the in-flight list, the worker hash, the retry set
 * when there are retries, the dead list when there are dead letters) is of
 * the wrong type; nothing was written, the batch stays in flight and the
 * worker tries again. A stats or recoveries hash of the wrong type is
 * skipped: the batch is acknowledged, its counts are not kept. */
static script s_settle = {"settle",
    LUA_TYPECHECK
    "local ik, wk, rk, dk, sk, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]\n"
    "local field = 'src:' .. ARGV[1]\n"
    "local nr = tonumber(ARGV[5])\n"
    "local need = ok(ik, 'list')\n"
    "need = ok(wk, 'hash') and need\n"
    "if nr > 0 then need = ok(rk, 'zset') and need end\n"
    "if #ARGV > 5 + 2 * nr then need = ok(dk, 'list') and need end\n"
    "local count = ok(sk, 'hash')\n"
    "local rec_ok = ok(rec, 'hash')\n"
    "if not need then return {-1, wrong} end\n"
    "if redis.call('HGET', wk, field) ~= ARGV[2] then\n"
    "  return {0, wrong}\n"
    "end\n"
    "if rec_ok and redis.call('HLEN', rec) > 0 then\n"
    "  for _, job in ipairs(redis.call('LRANGE', ik, 0, -1)) do\n"
    "    redis.call('HDEL', rec, redis.sha1hex(job))\n"
    "  end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local i = 6\n"
    "for _ = 1, nr do\n"
    "  redis.call('ZADD', rk, now + tonumber(ARGV[i]), ARGV[i + 1])\n"
    "  i = i + 2\n"
    "end\n"
    "local nd = 0\n"
    "while i <= #ARGV do\n"
    "  redis.call('LPUSH', dk, ARGV[i])\n"
    "  i = i + 1\n"
    "  nd = nd + 1\n"
    "end\n"
    "if nd > 0 then\n"
    "  local len, max = redis.call('LLEN', dk), tonumber(ARGV[3])\n"
    "  if len > max then\n"
    "    redis.call('LTRIM', dk, 0, max - 1)\n"
    "    if count then redis.call('HINCRBY', sk, 'dead_trimmed', len - max) end\n"
    "  end\n"
    "  if count then redis.call('HINCRBY', sk, 'dead_lettered', nd) end\n"
    "end\n"
    "if count then\n"
    "  if nr + nd > 0 then redis.call('HINCRBY', sk, 'failed', nr + nd) end\n"
    "  if nr > 0 then redis.call('HINCRBY', sk, 'retried', nr) end\n"
    "  local p = tonumber(ARGV[4])\n"
    "  if p > 0 then redis.call('HINCRBY', sk, 'processed', p) end\n"
    "end\n"
    "redis.call('DEL', ik)\n"
    "redis.call('HDEL', wk, field)\n"
    "return {1, wrong}\n",
    ""};

/* KEYS: workers, worker hash
 * ARGV: id, host, pid, threads, started, processed, inflight
 * A key of the wrong type is left alone (the 1 s queue sample names it):
 * with the registry still a sorted set the heartbeat keeps this worker
 * alive, so peers do not take its batches. */
static script s_heartbeat = {"heartbeat",
    LUA_TYPECHECK
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if ok(KEYS[1], 'zset') then redis.call('ZADD', KEYS[1], now, ARGV[1]) end\n"
    "if ok(KEYS[2], 'hash') then\n"
    "  redis.call('HSET', KEYS[2], 'host', ARGV[2], 'pid', ARGV[3], 'threads', ARGV[4],\n"
    "    'started', ARGV[5], 'heartbeat', now, 'processed', ARGV[6], 'inflight', ARGV[7])\n"
    "end\n"
    "return now\n",
    ""};

/* KEYS: workers, stats, dead, recoveries, q0, q1, q2, q3
 * ARGV: timeout_ms, worker prefix, inflight prefix, max_recoveries,
 *       dead_max, only_id ('' = expired workers)
 * Returns {workers, jobs moved, jobs dead-lettered, wrong, dead}: dead
 * lists the first 100 dead-lettered jobs as pairs "prio:recoveries", job
 * (the worker records an auditq.worker.dead_letter event for each).
 * Wrong types: an in-flight list is moved only when it, the queue it goes
 * back to, and (counting) the recoveries hash are of the right type, and
 * the dead list too if one of its jobs is past max_recoveries; otherwise
 * it stays where it is, and the worker stays registered, until a later
 * pass once the key is fixed. A stats hash of the wrong type is not
 * counted into. */
static script s_recover = {"recover",
    LUA_TYPECHECK
    "local wz, sk, dk, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "if not ok(wz, 'zset') then return {0, 0, 0, wrong} end\n"
    "local count_ok, dead_ok, rec_ok = ok(sk, 'hash'), ok(dk, 'list'), ok(rec, 'hash')\n"
    "local qok = {}\n"
    "for p = 0, 3 do qok[p] = ok(KEYS[5 + p], 'list') end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ids\n"
    "local counting = ARGV[6] == ''\n"
    "if counting then\n"
    "  ids = redis.call('ZRANGEBYSCORE', wz, '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, 100)\n"
    "else\n"
    "  ids = {ARGV[6]}\n"
    "end\n"
    "local names = {'critical', 'high', 'normal', 'low'}\n"
    "local maxrec = tonumber(ARGV[4])\n"
    "local moved, dl = 0, 0\n"
    "local djobs = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local wk = ARGV[2] .. id\n"
    "  local left = 0\n"
    "  if not ok(wk, 'hash') then\n"
    "    left = 1\n"
    "  else\n"
    "    local fields = redis.call('HGETALL', wk)\n"
    "    for f = 1, #fields, 2 do\n"
    "      if string.sub(fields[f], 1, 4) == 'src:' then\n"
    "        local prio = tonumber(string.sub(fields[f + 1], 1, 1)) or 2\n"
    "        if prio < 0 or prio > 3 then prio = 2 end\n"
    "        local ik = ARGV[3] .. id .. ':' .. string.sub(fields[f], 5)\n"
    "        local movable = ok(ik, 'list') and qok[prio] and (rec_ok or not counting)\n"
    "        local items = {}\n"
    "        if movable then items = redis.call('LRANGE', ik, 0, -1) end\n"
    "        if movable and counting and not dead_ok then\n"
    "          for _, job in ipairs(items) do\n"
    "            if (tonumber(redis.call('HGET', rec, redis.sha1hex(job))) or 0) + 1 > maxrec then\n"
    "              movable = false\n"
    "              break\n"
    "            end\n"
    "          end\n"
    "        end\n"
    "        if movable then\n"
    "          for _, job in ipairs(items) do\n"
    "            local c = 0\n"
    "            if counting then c = redis.call('HINCRBY', rec, redis.sha1hex(job), 1) end\n"
    "            if c > maxrec then\n"
    "              redis.call('HDEL', rec, redis.sha1hex(job))\n"
    "              redis.call('LPUSH', dk, cmsgpack.pack({job = job,\n"
    "                reason = 'crash-looping: in flight in ' .. c .. ' workers that died (max_recoveries=' .. maxrec .. ')',\n"
    "                attempts = c, failed_at = now, priority = names[prio + 1], worker = id}))\n"
    "              dl = dl + 1\n"
    "              if #djobs < 200 then djobs[#djobs + 1] = tostring(prio) .. ':' .. c; djobs[#djobs + 1] = job end\n"
    "            else\n"
    "              redis.call('RPUSH', KEYS[5 + prio], job)\n"
    "              moved = moved + 1\n"
    "            end\n"
    "          end\n"
    "          redis.call('DEL', ik)\n"
    "          redis.call('HDEL', wk, fields[f])\n"
    "        else\n"
    "          left = left + 1\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if left == 0 then\n"
    "    redis.call('DEL', wk)\n"
    "    redis.call('ZREM', wz, id)\n"
    "  end\n"
    "end\n"
    "if dl > 0 then\n"
    "  if count_ok then redis.call('HINCRBY', sk, 'dead_lettered', dl) end\n"
    "  local len, max = redis.call('LLEN', dk), tonumber(ARGV[5])\n"
    "  if len > max then\n"
    "    redis.call('LTRIM', dk, 0, max - 1)\n"
    "    if count_ok then redis.call('HINCRBY', sk, 'dead_trimmed', len - max) end\n"
    "  end\n"
    "end\n"
    "if count_ok and counting and moved > 0 then redis.call('HINCRBY', sk, 'recovered', moved) end\n"
    "return {#ids, moved, dl, wrong, djobs}\n",
    ""};

/* KEYS: retry, q0..q3
 * A due retry whose queue is of the wrong type stays in the retry set. */
static script s_promote = {"promote",
    LUA_TYPECHECK
    "local qok = {}\n"
    "for p = 0, 3 do qok[p] = ok(KEYS[2 + p], 'list') end\n"
    "if not ok(KEYS[1], 'zset') then return 0 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)\n"
    "local n = 0\n"
    "for _, m in ipairs(due) do\n"
    "  local p = tonumber(string.sub(m, 1, 1)) or 2\n"
    "  if p < 0 or p > 3 then p = 2 end\n"
    "  if qok[p] then\n"
    "    redis.call('RPUSH', KEYS[2 + p], string.sub(m, 2))\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n",
    ""};

/* KEYS: workers, worker hash  ARGV: id */
static script s_deregister = {"deregister",
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 1\n",
    ""};

/* EVALSHA with a SCRIPT LOAD when Redis does not know the script (first
 * use, or Redis restarted without the script cache). argv[0..2] are
 * reserved for EVALSHA, sha and numkeys and filled here. */
static redisReply *run(redisContext *c, script *s, int nkeys, int argc, const char **argv,
                       size_t *argl, char *err, size_t errlen)
{
    char sha[41], nk[12];
    redisReply *r = NULL;

    snprintf(nk, sizeof nk, "%d", nkeys);
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&sha_mu);
        memcpy(sha, s->sha, sizeof sha);
        pthread_mutex_unlock(&sha_mu);
        if (!sha[0] || attempt == 1) {
            r = redisCommand(c, "SCRIPT LOAD %s", s->src);
            if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
                snprintf(err, errlen, "SCRIPT LOAD %s: %s", s->name,
                         r ? (r->str ? r->str : "bad reply") : c->errstr);
                if (r)
                    freeReplyObject(r);
                return NULL;
            }
            memcpy(sha, r->str, 40);
            sha[40] = '\0';
            freeReplyObject(r);
            pthread_mutex_lock(&sha_mu);
            memcpy(s->sha, sha, sizeof sha);
            pthread_mutex_unlock(&sha_mu);
        }
        argv[0] = "EVALSHA";
        argl[0] = 7;
        argv[1] = sha;
        argl[1] = 40;
        argv[2] = nk;
        argl[2] = strlen(nk);
        r = redisCommandArgv(c, argc, argv, argl);
        if (!r) {
            snprintf(err, errlen, "%s: %s", s->name, c->errstr);
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            continue;
        }
        /* A demoted master (READONLY after a Sentinel fail-over), LOADING:
         * c->err is set so that the thread drops this connection and
         * connects again, to the master the sentinels name now. */
        redis_mark_if_demoted(c, r);
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s script: %.*s", s->name, (int)r->len, r->str);
            freeReplyObject(r);
            return NULL;
        }
        return r;
    }
    snprintf(err, errlen, "%s: Redis keeps answering NOSCRIPT", s->name);
    return NULL;
}

/* run() for scripts whose keys and arguments are all C strings. */
static redisReply *run_strings(redisContext *c, script *s, int nkeys, const char *const *vals, int n,
                               char *err, size_t errlen)
{
    const char *argv[3 + 24];
    size_t argl[3 + 24];
    if (n > 24) {
        snprintf(err, errlen, "%s: too many arguments", s->name);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        argv[3 + i] = vals[i];
        argl[3 + i] = strlen(vals[i]);
    }
    return run(c, s, nkeys, 3 + n, argv, argl, err, errlen);
}

void queue_batch_free(queue_batch *b)
{
    if (b->reply)
        freeReplyObject(b->reply);
    memset(b, 0, sizeof *b);
}

static void worker_key(char *out, size_t n, const aq_keys *k, const char *wid)
{
    snprintf(out, n, "%s%s", k->worker_prefix, wid);
}

static void inflight_key(char *out, size_t n, const aq_keys *k, const char *wid, int thread)
{
    snprintf(out, n, "%s%s:%d", k->inflight_prefix, wid, thread);
}

int queue_fetch(redisContext *c, const aq_keys *k, const char *wid, int thread, int weighted,
                const int weights[4], double r01, int max, uint64_t seq, const queue_limits *lim,
                queue_batch *b, char *err, size_t errlen)
{
    char ik[AQ_KEY_MAX + 64], wk[AQ_KEY_MAX + 64], smax[16], sth[16], sseq[24], sr[32], w[4][16];
    char slim[24], sjob[24], sdead[24];

    memset(b, 0, sizeof *b);
    inflight_key(ik, sizeof ik, k, wid, thread);
    worker_key(wk, sizeof wk, k, wid);
    snprintf(smax, sizeof smax, "%d", max);
    snprintf(sth, sizeof sth, "%d", thread);
    snprintf(sseq, sizeof sseq, "%llu", (unsigned long long)seq);
    snprintf(sr, sizeof sr, "%.6f", r01);
    for (int i = 0; i < 4; i++)
        snprintf(w[i], sizeof w[i], "%d", weights[i]);
    snprintf(slim, sizeof slim, "%zu", lim->max_job_bytes + lim->slack);
    snprintf(sjob, sizeof sjob, "%zu", lim->max_job_bytes);
    snprintf(sdead, sizeof sdead, "%d", lim->dead_max);
    const char *vals[23] = {ik, wk, k->queue[0], k->queue[1], k->queue[2], k->queue[3], k->dead,
                            k->stats, smax, sth, sseq, weighted ? "weighted" : "strict", sr, w[0],
                            w[1], w[2], w[3], slim, sjob, wid, sdead};
    redisReply *r = run_strings(c, &s_fetch, 8, vals, 21, err, errlen);
    if (!r)
        return -1;
    return queue_fetch_parse(r, b, err, errlen);
}

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    size_t n = r->len < cap - 1 ? r->len : cap - 1;
    memcpy(dst, r->str, n);
    dst[n] = '\0';
}

int queue_wrong_parse(const redisReply *list, queue_wrongset *ws)
{
    ws->n = 0;
    if (list->type != REDIS_REPLY_ARRAY || list->elements % 3 != 0)
        return -1;
    for (size_t i = 0; i < list->elements; i += 3) {
        for (size_t j = i; j < i + 3; j++)
            if (list->element[j]->type != REDIS_REPLY_STRING)
                return -1;
        /* A script checks at most QUEUE_WRONG_MAX keys per call; more is
         * not a reply of ours. */
        if (ws->n == QUEUE_WRONG_MAX)
            return -1;
        queue_wrongkey *e = &ws->k[ws->n++];
        copy_str(e->key, sizeof e->key, list->element[i]);
        copy_str(e->type, sizeof e->type, list->element[i + 1]);
        copy_str(e->expected, sizeof e->expected, list->element[i + 2]);
    }
    return 0;
}

int queue_fetch_parse(redisReply *r, queue_batch *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->reply = r;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 4 || r->elements > 5 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[2]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->integer < 0 || r->element[0]->len >= QUEUE_TOKEN_MAX ||
        queue_wrong_parse(r->element[3], &b->wrong) != 0) {
        snprintf(err, errlen, "fetch: malformed reply from the fetch script (type %d, %zu elements)",
                 r->type, r->type == REDIS_REPLY_ARRAY ? r->elements : 0);
        queue_batch_free(b);
        return -1;
    }
    b->dead_oversized = (size_t)r->element[2]->integer;
    /* A 5th element: the queue the oversized jobs came from, when none
     * was taken (else the token says it). */
    if (r->elements == 5 && r->element[4]->type == REDIS_REPLY_INTEGER && r->element[4]->integer >= 0 &&
        r->element[4]->integer <= 3)
        b->priority = (int)r->element[4]->integer;
    if (r->element[0]->len == 0) {
        if (r->element[1]->elements != 0) {
            snprintf(err, errlen, "fetch: malformed reply from the fetch script (jobs without a token)");
            queue_batch_free(b);
            return -1;
        }
        return 0; /* nothing to take */
    }
    memcpy(b->token, r->element[0]->str, r->element[0]->len);
    b->token[r->element[0]->len] = '\0';
    b->priority = b->token[0] >= '0' && b->token[0] <= '3' ? b->token[0] - '0' : AUDITQ_PRIORITY_NORMAL;
    b->n = r->element[1]->elements;
    b->items = r->element[1]->element;
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i]->type != REDIS_REPLY_STRING) {
            snprintf(err, errlen, "fetch: job %zu is not a string", i);
            queue_batch_free(b);
            return -1;
        }
    }
    return 0;
}

int queue_settle(redisContext *c, const aq_keys *k, const char *wid, int thread, const char *token,
                 size_t processed, const queue_retry *retries, size_t nretries,
                 const aq_buf *dead, size_t ndead, int dead_letter_max, int *fenced,
                 queue_wrongset *wrong, char *err, size_t errlen)
{
    char ik[AQ_KEY_MAX + 64], wk[AQ_KEY_MAX + 64], rec[AQ_KEY_MAX + 16];
    char sth[16], sdmax[16], sproc[24], snr[24];
    size_t argc = 3 + 6 + 5 + 2 * nretries + ndead;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *argl = calloc(argc, sizeof *argl);
    char (*delays)[24] = calloc(nretries ? nretries : 1, sizeof *delays);
    char **members = calloc(nretries ? nretries : 1, sizeof *members);
    int rc = -1;
    size_t a = 3;

    *fenced = 0;
    if (wrong)
        wrong->n = 0;
    if (!argv || !argl || !delays || !members) {
        snprintf(err, errlen, "settle: out of memory");
        goto out;
    }
    inflight_key(ik, sizeof ik, k, wid, thread);
    worker_key(wk, sizeof wk, k, wid);
    snprintf(rec, sizeof rec, "%s", k->recoveries);
    snprintf(sth, sizeof sth, "%d", thread);
    snprintf(sdmax, sizeof sdmax, "%d", dead_letter_max);
    snprintf(sproc, sizeof sproc, "%zu", processed);
    snprintf(snr, sizeof snr, "%zu", nretries);
    const char *keys[6] = {ik, wk, k->retry, k->dead, k->stats, rec};
    for (int i = 0; i < 6; i++) {
        argv[a] = keys[i];
        argl[a++] = strlen(keys[i]);
    }
    const char *fixed[5] = {sth, token, sdmax, sproc, snr};
    for (int i = 0; i < 5; i++) {
        argv[a] = fixed[i];
        argl[a++] = strlen(fixed[i]);
    }
    for (size_t i = 0; i < nretries; i++) {
        /* retry member = priority digit + job bytes */
        members[i] = malloc(retries[i].len + 1);
        if (!members[i]) {
            snprintf(err, errlen, "settle: out of memory");
            goto out;
        }
        members[i][0] = (char)('0' + retries[i].priority);
        memcpy(members[i] + 1, retries[i].job, retries[i].len);
        snprintf(delays[i], sizeof delays[i], "%lld", (long long)retries[i].delay_ms);
        argv[a] = delays[i];
        argl[a++] = strlen(delays[i]);
        argv[a] = members[i];
        argl[a++] = retries[i].len + 1;
    }
    for (size_t i = 0; i < ndead; i++) {
        argv[a] = dead[i].data;
        argl[a++] = dead[i].len;
    }
    redisReply *r = run(c, &s_settle, 6, (int)a, argv, argl, err, errlen);
    if (!r)
        goto out;
    queue_wrongset ws;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
        queue_wrong_parse(r->element[1], &ws) != 0) {
        snprintf(err, errlen, "settle: unexpected reply from the settle script (type %d)", r->type);
        freeReplyObject(r);
        goto out;
    }
    long long status = r->element[0]->integer;
    freeReplyObject(r);
    if (wrong)
        *wrong = ws;
    if (status < 0) {
        char why[400];
        /* ws names at least one key (the script refuses for no other reason). */
        redis_explain_wrongtype(ws.n ? ws.k[0].key : "?", ws.n ? ws.k[0].type : NULL,
                                ws.n ? ws.k[0].expected : "list",
                                "the batch stays in flight (committed: its re-delivery is a no-op) "
                                "until then", why, sizeof why);
        snprintf(err, errlen, "settle refused, nothing written: %s%s", why,
                 ws.n > 1 ? " (and more keys: see the log)" : "");
        goto out;
    }
    *fenced = status == 0;
    rc = 0;
out:
    if (members)
        for (size_t i = 0; i < nretries; i++)
            free(members[i]);
    free(members);
    free(delays);
    free(argv);
    free(argl);
    return rc;
}

static int buf_write(void *data, const char *p, size_t n)
{
    return aq_buf_append(data, p, n);
}

static int pack_kstr(msgpack_packer *pk, const char *key, const char *val, size_t len)
{
    size_t kl = strlen(key);
    return msgpack_pack_str(pk, kl) || msgpack_pack_str_body(pk, key, kl) ||
           msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, val, len);
}

int queue_dead_record(aq_buf *out, const char *job, size_t len, int priority, const char *reason,
                      const char *sqlstate, uint32_t attempts, const char *wid)
{
    msgpack_packer pk;
    const char *pname = codec_priority_name(priority);
    int n = 6 + (sqlstate && sqlstate[0] ? 1 : 0);

    out->len = 0;
    msgpack_packer_init(&pk, out, buf_write);
    if (msgpack_pack_map(&pk, (size_t)n) || msgpack_pack_str(&pk, 3) ||
        msgpack_pack_str_body(&pk, "job", 3) || msgpack_pack_bin(&pk, len) ||
        msgpack_pack_bin_body(&pk, job, len) ||
        pack_kstr(&pk, "reason", reason, strlen(reason)) ||
        msgpack_pack_str(&pk, 8) || msgpack_pack_str_body(&pk, "attempts", 8) ||
        msgpack_pack_uint32(&pk, attempts) || msgpack_pack_str(&pk, 9) ||
        msgpack_pack_str_body(&pk, "failed_at", 9) ||
        msgpack_pack_int64(&pk, clock_now_us() / 1000) ||
        pack_kstr(&pk, "priority", pname ? pname : "normal", strlen(pname ? pname : "normal")) ||
        pack_kstr(&pk, "worker", wid, strlen(wid)))
        return -1;
    if (n == 7 && pack_kstr(&pk, "sqlstate", sqlstate, strlen(sqlstate)))
        return -1;
    return 0;
}

int queue_heartbeat(redisContext *c, const aq_keys *k, const char *wid, const char *host, int pid,
                    int threads, int64_t started_ms, uint64_t processed, uint64_t inflight,
                    char *err, size_t errlen)
{
    char wk[AQ_KEY_MAX + 64], spid[16], sth[16], sst[24], sproc[24], sinf[24];

    worker_key(wk, sizeof wk, k, wid);
    snprintf(spid, sizeof spid, "%d", pid);
    snprintf(sth, sizeof sth, "%d", threads);
    snprintf(sst, sizeof sst, "%lld", (long long)started_ms);
    snprintf(sproc, sizeof sproc, "%llu", (unsigned long long)processed);
    snprintf(sinf, sizeof sinf, "%llu", (unsigned long long)inflight);
    const char *vals[9] = {k->workers, wk, wid, host, spid, sth, sst, sproc, sinf};
    redisReply *r = run_strings(c, &s_heartbeat, 2, vals, 9, err, errlen);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int queue_recover(redisContext *c, const aq_keys *k, const aq_config *cfg, const char *only_wid,
                  long long *workers, long long *jobs, long long *dead, queue_dead_fn on_dead, void *ctx,
                  char *err, size_t errlen)
{
    char rec[AQ_KEY_MAX + 16], sto[16], smr[16], sdm[16];

    snprintf(rec, sizeof rec, "%s", k->recoveries);
    snprintf(sto, sizeof sto, "%d", cfg->heartbeat_timeout_ms);
    snprintf(smr, sizeof smr, "%d", cfg->max_recoveries);
    snprintf(sdm, sizeof sdm, "%d", cfg->dead_letter_max);
    const char *vals[14] = {k->workers, k->stats, k->dead, rec, k->queue[0], k->queue[1],
                            k->queue[2], k->queue[3], sto, k->worker_prefix, k->inflight_prefix,
                            smr, sdm, only_wid ? only_wid : ""};
    redisReply *r = run_strings(c, &s_recover, 8, vals, 14, err, errlen);
    if (!r)
        return -1;
    /* A 4th element lists keys of the wrong type: the queue sample names them. */
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        snprintf(err, errlen, "recover: unexpected reply");
        freeReplyObject(r);
        return -1;
    }
    *workers = r->element[0]->integer;
    *jobs = r->element[1]->integer;
    *dead = r->element[2]->integer;
    if (on_dead != NULL && r->elements >= 5 && r->element[4]->type == REDIS_REPLY_ARRAY) {
        const redisReply *d = r->element[4];
        for (size_t i = 0; i + 1 < d->elements; i += 2) {
            if (d->element[i]->type != REDIS_REPLY_STRING || d->element[i + 1]->type != REDIS_REPLY_STRING)
                continue;
            char *end;
            long prio = strtol(d->element[i]->str, &end, 10);
            long recs = *end == ':' ? strtol(end + 1, NULL, 10) : 0;
            on_dead(ctx, prio >= 0 && prio <= 3 ? (int)prio : AUDITQ_PRIORITY_NORMAL, (uint32_t)(recs > 0 ? recs : 0),
                    d->element[i + 1]->str, d->element[i + 1]->len);
        }
    }
    freeReplyObject(r);
    return 0;
}

int queue_promote(redisContext *c, const aq_keys *k, long long *moved, char *err, size_t errlen)
{
    const char *vals[5] = {k->retry, k->queue[0], k->queue[1], k->queue[2], k->queue[3]};
    redisReply *r = run_strings(c, &s_promote, 5, vals, 5, err, errlen);
    if (!r)
        return -1;
    *moved = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return 0;
}

int queue_deregister(redisContext *c, const aq_keys *k, const char *wid, char *err, size_t errlen)
{
    char wk[AQ_KEY_MAX + 64];
    worker_key(wk, sizeof wk, k, wid);
    const char *vals[3] = {k->workers, wk, wid};
    redisReply *r = run_strings(c, &s_deregister, 2, vals, 3, err, errlen);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* KEYS: inflight, worker hash, q0..q3  ARGV: thread, token
 * A writer thread whose PostgreSQL cannot take its batch gives it back:
 * the in-flight jobs go to the FRONT of their queue (the end the fetch
 * takes from), in the order they were fetched, so the next fetch -- by any
 * worker -- takes exactly these jobs first, as if they had never left.
 * Fenced like settle: if the worker hash no longer holds this batch's token
 * (peers presumed us dead and recovered it), nothing moves and -1 is
 * returned. Not counted as a recovery: the jobs did nothing wrong. The
 * RPUSH comes before any delete, so a queue key of the wrong type fails
 * the script before it changed anything (the batch stays in flight). */
static script s_release = {"release",
    "local ik, wk = KEYS[1], KEYS[2]\n"
    "local field = 'src:' .. ARGV[1]\n"
    "if redis.call('HGET', wk, field) ~= ARGV[2] then return -1 end\n"
    "local prio = tonumber(string.sub(ARGV[2], 1, 1)) or 2\n"
    "if prio < 0 or prio > 3 then prio = 2 end\n"
    "local items = redis.call('LRANGE', ik, 0, -1)\n"
    "for s = 1, #items, 1000 do\n"
    "  redis.call('RPUSH', KEYS[3 + prio], unpack(items, s, math.min(s + 999, #items)))\n"
    "end\n"
    "redis.call('DEL', ik)\n"
    "redis.call('HDEL', wk, field)\n"
    "return #items\n",
    ""};

int queue_release(redisContext *c, const aq_keys *k, const char *wid, int thread, const char *token,
                  long long *released, int *fenced, char *err, size_t errlen)
{
    char ik[AQ_KEY_MAX + 64], wk[AQ_KEY_MAX + 64], sth[16];

    *released = 0;
    *fenced = 0;
    inflight_key(ik, sizeof ik, k, wid, thread);
    worker_key(wk, sizeof wk, k, wid);
    snprintf(sth, sizeof sth, "%d", thread);
    const char *vals[8] = {ik, wk, k->queue[0], k->queue[1], k->queue[2], k->queue[3], sth, token};
    redisReply *r = run_strings(c, &s_release, 6, vals, 8, err, errlen);
    if (!r)
        return -1;
    if (r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "release: unexpected reply type %d", r->type);
        freeReplyObject(r);
        return -1;
    }
    if (r->integer < 0)
        *fenced = 1;
    else
        *released = r->integer;
    freeReplyObject(r);
    return 0;
}
