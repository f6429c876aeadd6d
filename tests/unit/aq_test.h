/* aq_test.h -- helpers shared by the unit tests.
 *
 * Time bounds. A unit test that checks "gave up after 300 ms" asserts a
 * lower bound exactly and an upper bound loosely; the upper bound is widened
 * under every tool that slows the code down, so a slow run is never mistaken
 * for a hang:
 *   - AQ_TIME_SCALE=N in the environment (make valgrind sets 10);
 *   - built with -fsanitize=thread: at least 5 (TSan runs 5-15x slower and
 *     the 64 MiB request in test_pgw is built and sent under instrumentation);
 *   - built with -fsanitize=address: at least 3.
 * The larger of the two applies. Lower bounds never scale. */
#ifndef AQ_TEST_H
#define AQ_TEST_H

#include <stdlib.h>

#if defined(__SANITIZE_THREAD__)
#define AQ_TEST_BUILD_SCALE 5
#elif defined(__SANITIZE_ADDRESS__)
#define AQ_TEST_BUILD_SCALE 3
#else
#define AQ_TEST_BUILD_SCALE 1
#endif

static inline long long aq_time_scale(void)
{
    const char *s = getenv("AQ_TIME_SCALE");
    long long k = s ? atoll(s) : 1;
    if (k < AQ_TEST_BUILD_SCALE)
        k = AQ_TEST_BUILD_SCALE;
    return k;
}

/* An upper time bound in ms, widened as above. */
static inline long long bound_ms(long long ms)
{
    return ms * aq_time_scale();
}

#endif
