/* ctl_common.c -- helpers shared by the Redis-reading auditqctl commands
 * (see ctl_common.h). */
#include "ctl_common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "pgconn.h"
#include "shards.h"
#include "text.h"

/* The target of the last connect: auditqctl talks to one Redis per run
 * (one per shard), and ctl_redis_why names its user. */
static aq_redis_target ctl_target;
/* Where the namespace's shards live (common/shards.h); set on first use. */
static aq_shards ctl_sh;
static int ctl_sh_ready;

static int ctl_shards_init(const aq_config *cfg, char *err, size_t errlen)
{
    if (ctl_sh_ready)
        return 0;
    int rc = shards_from_settings(&ctl_sh, cfg->namespace_, cfg->redis_shards, cfg->redis_url, cfg->redis_sentinels,
                             cfg->redis_master_name, cfg->redis_sentinel_user, cfg->redis_sentinel_password,
                             cfg->redis_shard_urls, cfg->redis_cluster, err, errlen);
    if (rc != 0)
        return rc;
    ctl_sh_ready = 1;
    return 0;
}

int ctl_shards_n(const aq_config *cfg)
{
    char err[16];
    return ctl_shards_init(cfg, err, sizeof err) == 0 ? ctl_sh.n : cfg->redis_shards;
}

void ctl_shard_where(int shard, char *out, size_t cap)
{
    if (!ctl_sh_ready || shard < 0 || shard >= ctl_sh.n) {
        snprintf(out, cap, "?");
        return;
    }
    shard_where(&ctl_sh, shard, out, cap);
}

redisContext *ctl_shard_connect(const aq_config *cfg, int shard, char *err, size_t errlen)
{
    if (ctl_shards_init(cfg, err, errlen) != 0)
        return NULL;
    ctl_target = ctl_sh.target[shard];
    return shard_connect(&ctl_sh, shard, cfg->redis_connect_timeout_ms, cfg->redis_timeout_ms, err, errlen, NULL);
}

redisContext *ctl_redis_connect(const aq_config *cfg, char *err, size_t errlen)
{
    return ctl_shard_connect(cfg, 0, err, errlen);
}

const char *ctl_redis_why(const char *what, const char *err, char *buf, size_t n)
{
    return redis_explain_refusal(&ctl_target, "auditqctl", what, NULL, err, buf, n) != REDIS_REFUSED_NONE
               ? buf
               : err;
}

redisContext *ctl_shard_open(const aq_config *cfg, const char *cmd, int shard, aq_keys *k, int *rc)
{
    char err[1400];
    redisContext *c;
    int auth_failed = 0;

    if (keys_init(k, cfg->namespace_) != 0) {
        fprintf(stderr, "auditqctl %s: namespace '%s' is invalid: use 1..64 of A-Z a-z 0-9 _ . -\n",
                cmd, cfg->namespace_);
        *rc = CTL_USAGE;
        return NULL;
    }
    int src = ctl_shards_init(cfg, err, sizeof err);
    if (src != 0) {
        fprintf(stderr, "auditqctl %s: %s%s\n", cmd, err, src == -2 ? "; fix redis_url (AUDITQ_REDIS_URL)" : "");
        *rc = CTL_USAGE;
        return NULL;
    }
    if (shard < 0 || shard >= ctl_sh.n) {
        fprintf(stderr, "auditqctl %s: --shard %d: redis_shards is %d, so give 0..%d\n", cmd, shard, ctl_sh.n,
                ctl_sh.n - 1);
        *rc = CTL_USAGE;
        return NULL;
    }
    *k = ctl_sh.keys[shard];
    ctl_target = ctl_sh.target[shard];
    c = shard_connect(&ctl_sh, shard, cfg->redis_connect_timeout_ms, cfg->redis_timeout_ms, err, sizeof err,
                      &auth_failed);
    if (!c) {
        /* A refused login's message already says what to fix. */
        fprintf(stderr, "auditqctl %s: %s%s\n", cmd, err,
                auth_failed || ctl_target.sentinels[0] || ctl_sh.cluster
                    ? ""
                    : "; check redis_url (AUDITQ_REDIS_URL) and that Redis is running");
        *rc = CTL_FAILED;
        return NULL;
    }
    *rc = CTL_OK;
    return c;
}

redisContext *ctl_redis_open(const aq_config *cfg, const char *cmd, aq_keys *k, int *rc)
{
    return ctl_shard_open(cfg, cmd, 0, k, rc);
}

int ctl_get_replies(redisContext *c, int n, redisReply **out, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK) {
            snprintf(err, errlen, "Redis connection: %s", c->errstr[0] ? c->errstr : "lost");
            redis_free_replies(out, i);
            return -1;
        }
        out[i] = r;
    }
    for (int i = 0; i < n; i++) {
        if (out[i]->type == REDIS_REPLY_ERROR) {
            char why[300];
            if (redis_explain_refusal(&ctl_target, "auditqctl", NULL, NULL, out[i]->str, why, sizeof why) !=
                REDIS_REFUSED_NONE)
                snprintf(err, errlen, "%s", why);
            else
                snprintf(err, errlen, "Redis error: %.*s", (int)out[i]->len, out[i]->str);
            redis_free_replies(out, n);
            return -1;
        }
    }
    return 0;
}

int ctl_redis_now_ms(redisContext *c, long long *ms, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "TIME");

    if (!r) {
        snprintf(err, errlen, "Redis connection: %s", c->errstr[0] ? c->errstr : "lost");
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        char why[300];
        if (r->type == REDIS_REPLY_ERROR)
            snprintf(err, errlen, "%s", redis_refusal_kind(r->str) != REDIS_REFUSED_NONE
                                            ? ctl_redis_why(NULL, r->str, why, sizeof why)
                                            : r->str);
        else
            snprintf(err, errlen, "Redis TIME: unexpected reply");
        freeReplyObject(r);
        return -1;
    }
    *ms = redis_reply_ll(r->element[0]) * 1000 + redis_reply_ll(r->element[1]) / 1000;
    freeReplyObject(r);
    return 0;
}

int ctl_parse_duration_ms(const char *s, long long *ms, char *err, size_t errlen)
{
    static const struct { const char *unit; long long ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 604800000},
    };
    const char *p = s;
    long long total = 0;

    if (*p == '\0')
        goto bad;
    while (*p) {
        char *end;
        size_t ulen = 0;
        long long mult = 0;

        if (!isdigit((unsigned char)*p))
            goto bad;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno != 0)
            goto bad;
        while (isalpha((unsigned char)end[ulen]))
            ulen++;
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++)
            if (strlen(units[u].unit) == ulen && strncmp(end, units[u].unit, ulen) == 0)
                mult = units[u].ms;
        if (mult == 0 || v > (LLONG_MAX - total) / mult)
            goto bad;
        total += v * mult;
        p = end + ulen;
    }
    *ms = total;
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not a duration; use a number and a unit (ms, s, m, h, d, w), "
             "e.g. 30s, 15m, 2h, 7d or 1h30m", s);
    return -1;
}

void ctl_fmt_count(char *out, size_t n, long long v)
{
    char tmp[32];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    int len = snprintf(tmp, sizeof tmp, "%llu", u);
    size_t o = 0;

    if (n == 0)
        return;
    if (v < 0 && o + 1 < n)
        out[o++] = '-';
    for (int i = 0; i < len && o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0) {
            if (o + 2 >= n)
                break;
            out[o++] = ',';
        }
        out[o++] = tmp[i];
    }
    out[o] = '\0';
}

void ctl_fmt_age(char *out, size_t n, long long ms)
{
    if (ms < 0)
        snprintf(out, n, "-");
    else if (ms < 1000)
        snprintf(out, n, "%lld ms", ms);
    else if (ms < 120000)
        snprintf(out, n, "%.1f s", (double)ms / 1000.0);
    else if (ms < 7200000)
        snprintf(out, n, "%.1f min", (double)ms / 60000.0);
    else
        snprintf(out, n, "%.1f h", (double)ms / 3600000.0);
}

void ctl_fmt_age_short(char *out, size_t n, long long ms)
{
    long long s = ms / 1000;

    if (ms < 0)
        snprintf(out, n, "-");
    else if (s < 60)
        snprintf(out, n, "%llds", s);
    else if (s < 3600)
        snprintf(out, n, "%lldm", s / 60);
    else if (s < 86400)
        snprintf(out, n, "%lldh", s / 3600);
    else if (s < 100 * 86400LL)
        snprintf(out, n, "%lldd", s / 86400);
    else if (s < 100 * 604800LL)
        snprintf(out, n, "%lldw", s / 604800);
    else
        snprintf(out, n, "%lldy", s / (365 * 86400LL));
}

void ctl_fmt_iso(char *out, size_t n, long long unix_ms, int with_ms)
{
    long long sec = unix_ms >= 0 ? unix_ms / 1000 : -((-unix_ms + 999) / 1000);
    int msec = (int)(unix_ms - sec * 1000);
    time_t t = (time_t)sec;
    struct tm tm;

    if (!gmtime_r(&t, &tm)) {
        snprintf(out, n, "(time %lld ms)", unix_ms);
        return;
    }
    if (with_ms)
        snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
    else
        snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

size_t ctl_utf8_seq(const char *p, size_t len)
{
    uint32_t cp;

    return text_utf8_next(p, len, &cp);
}

void ctl_json_str(FILE *f, const char *p, size_t len)
{
    /* DEL escaped too: this output lands on terminals. */
    (void)text_json_fput(f, p, len, TEXT_JSON_ESCAPE_DEL);
}

size_t ctl_put_text(FILE *f, const char *p, size_t len, size_t max_cols)
{
    size_t i = 0, cols = 0, total = 0;

    /* Count first: truncation must know whether the text fits. */
    for (size_t j = 0; j < len; total++) {
        size_t n = ctl_utf8_seq(p + j, len - j);
        j += n ? n : 1;
    }
    size_t budget = total <= max_cols ? total : (max_cols > 3 ? max_cols - 3 : 0);
    while (i < len && cols < budget) {
        unsigned char b = (unsigned char)p[i];
        size_t n = ctl_utf8_seq(p + i, len - i);

        if (n == 0 || b < 0x20 || b == 0x7f) {
            fputc('?', f);
            i += n ? n : 1;
        } else {
            fwrite(p + i, 1, n, f);
            i += n;
        }
        cols++;
    }
    if (total > max_cols) {
        for (size_t d = 0; d < 3 && cols < max_cols; d++, cols++)
            fputc('.', f);
    }
    return cols;
}

void ctl_first_line(const char *msg, char *out, size_t outlen)
{
    size_t n = strcspn(msg != NULL ? msg : "", "\n");

    if (outlen == 0)
        return;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, msg != NULL ? msg : "", n);
    out[n] = '\0';
}

PGconn *ctl_pg_connect(const aq_config *cfg, const char *prog, const char *client_encoding)
{
    const pgconn_opts o = { .conninfo = cfg->database_url, .component = "auditqctl",
                            .connect_timeout_s = cfg->pg_connect_timeout_s,
                            .client_encoding = client_encoding };
    char err[1024];
    PGconn *conn = pgconn_open(&o, err, sizeof err);

    if (conn == NULL) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return NULL;
    }
    /* The command reads text in this encoding whatever database_url says
     * (pgconn.h: set after connecting, the one exception to the rule). */
    if (client_encoding != NULL && PQsetClientEncoding(conn, client_encoding) != 0) {
        ctl_first_line(PQerrorMessage(conn), err, sizeof err);
        fprintf(stderr, "%s: cannot set client_encoding %s (%s)\n", prog, client_encoding, err);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

void ctl_signals_hold(void (*handler)(int), sigset_t *block, sigset_t *during)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigemptyset(block);
    sigaddset(block, SIGINT);
    sigaddset(block, SIGTERM);
    sigprocmask(SIG_BLOCK, block, during);
    sigdelset(during, SIGINT);
    sigdelset(during, SIGTERM);
}
