/* error.h -- the producer's error detail (auditq_last_error).
 *
 * Owns: one message per thread (thread-local storage), so no locks.
 * Called by: every other producer module, to say why a call failed; it
 * calls nothing of the producer. Every public call that returns an
 * auditq_rc clears the message first (producer_clear_error), so a success
 * leaves "" behind (auditq.h). */
#ifndef AQ_PRODUCER_ERROR_H
#define AQ_PRODUCER_ERROR_H
#include <hiredis.h>

#include "auditq.h"

/* What a producer says about a queue key of the wrong type (its LPUSH gets
 * WRONGTYPE): redis_explain_wrongtype's effect clause. */
#define PRODUCER_WRONGTYPE_EFFECT "events of this priority are refused until then"

/* Clears the calling thread's last error detail. */
void producer_clear_error(void);
/* Sets the calling thread's last error detail (printf-style, truncated to
 * 511 bytes: room for a refusal's explanation after its context). */
void producer_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Maps a hiredis context error after command `what` to AUDITQ_ERR_TIMEOUT
 * or AUDITQ_ERR_CONNECT and records the detail. */
auditq_rc producer_redis_error(const redisContext *c, const char *what);
#endif
