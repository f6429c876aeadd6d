/* ctl_common.h -- what several auditqctl commands share: the Redis
 * connection with its one error message, reply helpers, duration parsing,
 * and the formatting of counts, ages, times and untrusted text.
 *
 * Also the PostgreSQL connection of migrate and query.
 *
 * Used by ctl_stats.c, ctl_workers.c, ctl_dlq.c, ctl_migrate.c and ctl_query.c. Nothing here keeps
 * state; every function is safe on any input (text printed from Redis may
 * hold arbitrary bytes: a dead-letter reason comes from a PostgreSQL
 * message or from whoever pushed garbage into the dead list).
 */
#ifndef AQ_CTL_COMMON_H
#define AQ_CTL_COMMON_H
#include <signal.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"
#include "keys.h"
#include "redisconn.h"

/* Connects to cfg->redis_url and fills *k from cfg->namespace_. Returns a
 * context the caller frees with redisFree, or NULL after printing
 * "auditqctl CMD: why; check redis_url (AUDITQ_REDIS_URL)" to stderr, with
 * *rc = CTL_USAGE (bad URL or namespace) or CTL_FAILED (unreachable, AUTH
 * refused). */
redisContext *ctl_redis_open(const aq_config *cfg, const char *cmd, aq_keys *k, int *rc);
/* Same without printing: NULL with the reason in err (for retry loops). */
redisContext *ctl_redis_connect(const aq_config *cfg, char *err, size_t errlen);
/* Shards (redis_shards, common/shards.h): ctl_redis_open and
 * ctl_redis_connect reach shard 0; these reach shard `shard` (0..n-1) and
 * fill *k with its keys. ctl_shards_n: how many shards cfg names. */
int ctl_shards_n(const aq_config *cfg);
redisContext *ctl_shard_open(const aq_config *cfg, const char *cmd, int shard, aq_keys *k, int *rc);
redisContext *ctl_shard_connect(const aq_config *cfg, int shard, char *err, size_t errlen);
/* "host:port" of the shard's server (or its slot owner), for output. */
void ctl_shard_where(int shard, char *out, size_t cap);
/* err, or when it is an ACL refusal (NOPERM, NOAUTH, WRONGPASS) of `what`
 * (e.g. "the stats script"; NULL: the command Redis names) a message in
 * buf (n bytes) naming the Redis user, the refused command and the fix. */
const char *ctl_redis_why(const char *what, const char *err, char *buf, size_t n);

/* Reads n replies of commands appended with redisAppendCommand into out[].
 * Returns 0, or -1 with the reason in err (connection error, or the first
 * Redis error reply); on -1 nothing is left allocated. The caller frees the
 * replies with redis_free_replies (redisconn.h). */
int ctl_get_replies(redisContext *c, int n, redisReply **out, char *err, size_t errlen);
/* Redis' clock (TIME) in Unix ms, the clock workers stamp heartbeats with.
 * Returns 0 or -1 with the reason in err. */
int ctl_redis_now_ms(redisContext *c, long long *ms, char *err, size_t errlen);

/* Parses a duration: one or more <integer><unit> with unit ms, s, m, h, d
 * or w ("30s", "15m", "2h", "7d", "1h30m"). A unit is required: a bare
 * number is ambiguous. Returns 0 with *ms set, or -1 with a message that
 * names the accepted form. */
int ctl_parse_duration_ms(const char *s, long long *ms, char *err, size_t errlen);

/* 1234567 -> "1,234,567". */
void ctl_fmt_count(char *out, size_t n, long long v);
/* Age for tables: "-" (ms < 0), "300 ms", "2.1 s", "4.5 min", "3.2 h". */
void ctl_fmt_age(char *out, size_t n, long long ms);
/* Compact age, at most 4 characters for ages under 100 years: "0s",
 * "59s", "12m", "23h", "99d", "52w", "3y"; "-" when ms < 0. */
void ctl_fmt_age_short(char *out, size_t n, long long ms);
/* Unix ms -> "2026-01-01T12:00:00Z" (with_ms: "2026-01-01T12:00:00.123Z"). */
void ctl_fmt_iso(char *out, size_t n, long long unix_ms, int with_ms);

/* Writes p[0..len) as a JSON string literal (quotes included):
 * text_json_string's policy (common/text.h: controls escaped, each byte of
 * ill-formed UTF-8 as U+FFFD, so the output is always valid JSON), with DEL
 * escaped too (TEXT_JSON_ESCAPE_DEL). */
void ctl_json_str(FILE *f, const char *p, size_t len);
/* Writes untrusted text for a terminal: control characters and invalid
 * UTF-8 become '?', so no escape sequence from Redis reaches the screen.
 * At most max_cols characters (code points); when the text is longer its
 * last shown characters are "...". Returns the characters written. */
size_t ctl_put_text(FILE *f, const char *p, size_t len, size_t max_cols);
/* Length in bytes of the well-formed UTF-8 sequence at p[0..len) (1..4),
 * or 0 if the bytes there are not one (text_utf8_next, common/text.h). */
size_t ctl_utf8_seq(const char *p, size_t len);

/* The first line of msg (NULL = "") into out, truncated to fit. */
void ctl_first_line(const char *msg, char *out, size_t outlen);
/* Connects to cfg->database_url through pgconn_open (pgconn.h: the URL's
 * own values win; application_name auditqctl and connect_timeout
 * pg_connect_timeout_s where it sets none; every listed host tried), then
 * sets client_encoding if not NULL (the command needs it whatever the URL
 * says). Returns the
 * connection (caller frees with PQfinish), or NULL after printing
 * "PROG: cannot connect to PostgreSQL (...); check database_url ...". */
PGconn *ctl_pg_connect(const aq_config *cfg, const char *prog, const char *client_encoding);
/* For a loop that SIGINT/SIGTERM may stop only between its steps: installs
 * handler for both, blocks them, and gives block (the two) and during (the
 * mask before, without them) -- pass during to pselect() so that the
 * signals arrive only while the loop sleeps. Undo with
 * sigprocmask(SIG_UNBLOCK, block, NULL). (ctl_stats --watch, ctl_follow) */
void ctl_signals_hold(void (*handler)(int), sigset_t *block, sigset_t *during);

#endif
