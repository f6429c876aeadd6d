/* gen.h -- deterministic synthetic audit events for benchmarks and demos.
 *
 * A generator is a small PRNG state plus the properties of the last event.
 * The same seed always yields the same sequence of events (apart from
 * event_id and occurred_at, which the library assigns at send time).
 *
 * Threads: a gen has no shared state; use one generator per thread (seed
 * them differently, e.g. base_seed + thread_index -- gen_init mixes the seed
 * so neighbouring seeds give unrelated streams).
 *
 * The mix it produces (see gen.c for the tables):
 *   priority    critical 2%, high 10%, normal 78%, low 10%
 *   tenants     50, Zipf-skewed (tenant-000 is the busiest)
 *   actors      ~5000; actor_type user 80%, service 12%, ai 6%, system 2%
 *   actions     ~45 realistic names; entity_type/entity_id follow the action
 *   outcome     success 93%, failure 5%, denied 2% (user.login_failed: failure)
 *   changes     JSON object {"field":[old,new],...} for update/create-like
 *               actions, with quotes, control characters, backslashes and
 *               non-ASCII text in some values
 *   metadata    JSON object, sometimes with nested objects and arrays
 *   job size    encoded (msgpack) roughly 250 B .. 2 KB, median ~450 B
 */
#ifndef AQ_GEN_H
#define AQ_GEN_H
#include <stdint.h>
#include "auditq.h"

typedef struct gen {
    uint64_t state;        /* xorshift64* state; never 0 */
    uint64_t seq;          /* events generated so far */
    int last_priority;     /* auditq_priority of the last gen_fill, -1 before */
} gen;

/* Seeds g. Any seed (including 0) is valid. */
void gen_init(gen *g, uint64_t seed);

/* Resets ev (auditq_event_reset) and fills every field except event_id and
 * occurred_at with the next synthetic event. ev stays owned by the caller.
 * Every event it produces is valid: in builds without NDEBUG a setter that
 * does not return AUDITQ_OK aborts with an assertion. */
void gen_fill(gen *g, auditq_event *ev);

/* auditq_priority of the event last filled by gen_fill (-1 if none yet). */
int gen_last_priority(const gen *g);

/* Next raw 64-bit value of g's PRNG (for callers that need their own
 * deterministic randomness, e.g. payload bytes). */
uint64_t gen_u64(gen *g);

#endif
