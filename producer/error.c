/* error.c -- the producer's error detail: see error.h. */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static __thread char tl_err[512]; /* room for a refusal's explanation after the context */

void producer_clear_error(void)
{
    tl_err[0] = '\0';
}

void producer_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof tl_err, fmt, ap);
    va_end(ap);
}

const char *auditq_last_error(void)
{
    return tl_err;
}

auditq_rc producer_redis_error(const redisContext *c, const char *what)
{
    if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT ||
                                   strstr(c->errstr, "temporarily unavailable"))) {
        producer_set_error("%s: Redis did not answer in time (%s)", what, c->errstr);
        return AUDITQ_ERR_TIMEOUT;
    }
    producer_set_error("%s: connection to Redis lost (%s)", what, c->errstr);
    return AUDITQ_ERR_CONNECT;
}

const char *auditq_strerror(auditq_rc rc)
{
    switch (rc) {
    case AUDITQ_OK: return "ok";
    case AUDITQ_ERR_INVALID_ARG: return "invalid argument";
    case AUDITQ_ERR_NOMEM: return "out of memory";
    case AUDITQ_ERR_CONFIG: return "invalid configuration";
    case AUDITQ_ERR_CONNECT: return "cannot connect to Redis";
    case AUDITQ_ERR_TIMEOUT: return "timed out";
    case AUDITQ_ERR_REDIS: return "Redis returned an error";
    case AUDITQ_ERR_AUTH: return "Redis authentication failed";
    case AUDITQ_ERR_BUFFER_FULL: return "async buffer full";
    case AUDITQ_ERR_MISSING_FIELD: return "required field missing";
    case AUDITQ_ERR_INVALID_JSON: return "invalid JSON";
    case AUDITQ_ERR_INVALID_UTF8: return "invalid UTF-8 or NUL byte";
    case AUDITQ_ERR_TOO_LARGE: return "too large";
    case AUDITQ_ERR_CLOSED: return "handle is closing";
    case AUDITQ_ERR_PROTOCOL: return "unexpected reply from Redis";
    case AUDITQ_ERR_SPOOL_FULL: return "spool full";
    case AUDITQ_ERR_SPOOL: return "spool unusable";
    }
    return "unknown error";
}
