/* uuid7.c -- UUIDv7 (RFC 9562) generation, formatting and parsing.
 *
 * Layout (big endian):
 *   bytes 0..5   unix_ts_ms (48 bits)
 *   byte  6      version 7 in the high nibble, rand_a bits 11..8
 *   byte  7      rand_a bits 7..0       -- used as a per-ms counter
 *   byte  8      variant 0b10 in the top two bits, 6 random bits
 *   bytes 9..15  random (62 random bits in all with byte 8)
 *
 * Monotonicity (RFC 9562 section 6.2, method 1): each thread remembers the
 * last millisecond it used and a 12-bit counter. A new millisecond starts the
 * counter at a random value with its top bit cleared, which leaves at least
 * 2048 increments before overflow; on overflow the thread moves on to the
 * next millisecond. If the wall clock steps back, the thread keeps using its
 * last millisecond, so ids from one thread never go backwards.
 *
 * uuid7_new_at() with a time earlier than the latest one this thread was
 * asked for (by the clock or by a caller) is a backfill: the id carries
 * exactly the requested time with a random counter and does not move the
 * thread's state, so later uuid7_new() ids still sort after everything the
 * thread made. Backfilled ids are unique with overwhelming probability (74
 * random bits) but not ordered among themselves. A uuid7_new_at() time in
 * the future does move the state: later uuid7_new() ids keep sorting after
 * it, carrying that future time until the clock catches up.
 *
 * Randomness: a per-thread xoshiro256** generator seeded once from
 * getrandom(2) (fallback: clock, pid, tid and address mixing through
 * splitmix64). No locks: all state is _Thread_local. A fork handler bumps a
 * generation number so a child process reseeds instead of replaying its
 * parent's random stream (which would duplicate ids).
 */
#include "text.h"
#include "uuid7.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct uuid7_state {
    uint64_t s[4];      /* xoshiro256** state, never all zero once seeded */
    uint64_t last_ms;   /* last millisecond put into an id (may run ahead) */
    uint64_t req_ms;    /* highest millisecond asked for (clock or caller) */
    unsigned counter;   /* 12-bit counter for last_ms */
    unsigned fork_gen;  /* uuid7_fork_gen when seeded */
    int seeded;
};

static _Thread_local struct uuid7_state uuid7_tls;

/* Incremented in the child after fork(); only the forking thread exists
 * there, so the write cannot race with readers. */
static unsigned uuid7_fork_gen;
static pthread_once_t uuid7_atfork_once = PTHREAD_ONCE_INIT;

static void uuid7_atfork_child(void)
{
    uuid7_fork_gen++;
}

static void uuid7_register_atfork(void)
{
    /* Failure (ENOMEM) only loses fork protection; ids stay valid. */
    (void)pthread_atfork(NULL, NULL, uuid7_atfork_child);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Fills buf from getrandom(2); returns 0 on success, -1 if the kernel
 * cannot give us entropy (ancient kernel, seccomp filter). */
static int uuid7_getrandom(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static void uuid7_seed(struct uuid7_state *st)
{
    uint64_t seed[4];

    if (uuid7_getrandom(seed, sizeof seed) != 0) {
        /* Weak but distinct per process, thread and instant: good enough
         * for uniqueness, which is all a UUIDv7 promises. */
        struct timespec rt, mono;
        uint64_t x;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        x = (uint64_t)rt.tv_sec * 1000000000ULL + (uint64_t)rt.tv_nsec;
        x ^= rotl64((uint64_t)mono.tv_sec * 1000000000ULL + (uint64_t)mono.tv_nsec, 17);
        x ^= rotl64((uint64_t)getpid(), 32);
        x ^= rotl64((uint64_t)syscall(SYS_gettid), 48);
        x ^= (uint64_t)(uintptr_t)st;
        x ^= (uint64_t)(uintptr_t)&rt;
        for (int i = 0; i < 4; i++)
            seed[i] = splitmix64(&x);
    } else {
        /* Run the entropy through splitmix too: cheap, and it guarantees
         * the all-zero state is reached only with negligible probability. */
        uint64_t x = seed[0] ^ seed[1] ^ seed[2] ^ seed[3];
        for (int i = 0; i < 4; i++)
            seed[i] ^= splitmix64(&x);
    }
    if ((seed[0] | seed[1] | seed[2] | seed[3]) == 0)
        seed[0] = 0x9E3779B97F4A7C15ULL; /* xoshiro's one forbidden state */
    memcpy(st->s, seed, sizeof seed);
    st->last_ms = 0;
    st->req_ms = 0;
    st->counter = 0;
    st->fork_gen = uuid7_fork_gen;
    st->seeded = 1;
}

static struct uuid7_state *uuid7_state_get(void)
{
    struct uuid7_state *st = &uuid7_tls;

    if (!st->seeded) {
        (void)pthread_once(&uuid7_atfork_once, uuid7_register_atfork);
        uuid7_seed(st);
    } else if (st->fork_gen != uuid7_fork_gen) {
        uuid7_seed(st);
    }
    return st;
}

static void uuid7_pack(uint8_t out[16], uint64_t ms, unsigned counter,
                       uint64_t rnd)
{
    ms &= 0xFFFFFFFFFFFFULL;
    for (int i = 0; i < 6; i++)
        out[i] = (uint8_t)(ms >> (40 - 8 * i));
    out[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0F));
    out[7] = (uint8_t)(counter & 0xFF);
    out[8] = (uint8_t)(0x80 | ((rnd >> 56) & 0x3F));
    for (int i = 0; i < 7; i++)
        out[9 + i] = (uint8_t)(rnd >> (48 - 8 * i));
}

/* `backfill`: a caller-given time in the past is honoured (see top). */
static void uuid7_generate(uint8_t out[16], uint64_t ms, int backfill)
{
    struct uuid7_state *st = uuid7_state_get();
    uint64_t r = xoshiro_next(st->s);

    ms &= 0xFFFFFFFFFFFFULL; /* 48-bit field; keeps comparisons consistent */
    /* Compared with req_ms, not last_ms: repeating a time that the counter
     * overflow has already moved past is a burst, not a backfill. */
    if (backfill && ms < st->req_ms) {
        uuid7_pack(out, ms, (unsigned)(r & 0xFFF), xoshiro_next(st->s));
        return;
    }
    if (ms > st->req_ms)
        st->req_ms = ms;
    if (ms > st->last_ms) {
        st->last_ms = ms;
        st->counter = (unsigned)(r & 0x7FF);
    } else if (++st->counter > 0xFFF) {
        /* 4096 ids in one ms (or a clock that stepped back): borrow the
         * next millisecond rather than break ordering. */
        st->last_ms++;
        st->counter = (unsigned)(r & 0x7FF);
    }
    uuid7_pack(out, st->last_ms, st->counter, xoshiro_next(st->s));
}

void uuid7_new(uint8_t out[16])
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    uuid7_generate(out, (uint64_t)ts.tv_sec * 1000ULL +
                        (uint64_t)ts.tv_nsec / 1000000ULL, 0);
}

void uuid7_new_at(uint8_t out[16], uint64_t unix_ms)
{
    uuid7_generate(out, unix_ms, 1);
}

void uuid_format(const uint8_t in[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[in[i] >> 4];
        out[o++] = hex[in[i] & 0x0F];
    }
    out[o] = '\0';
}

int uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    uint8_t tmp[16];
    size_t i = 0;

    if (s == NULL || len != 36)
        return -1;
    for (int b = 0; b < 16; b++) {
        if (b == 4 || b == 6 || b == 8 || b == 10) {
            if (s[i] != '-')
                return -1;
            i++;
        }
        int hi = text_hexval(s[i]);
        int lo = text_hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        tmp[b] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    memcpy(out, tmp, sizeof tmp); /* out untouched on failure */
    return 0;
}

uint64_t uuid7_unix_ms(const uint8_t in[16])
{
    uint64_t ms = 0;

    for (int i = 0; i < 6; i++)
        ms = ms << 8 | in[i];
    return ms;
}
