/* fuzz_config.c -- libFuzzer target: the config file parser
 * (config_load_buffer, the same line parser as config_load_file) on
 * arbitrary bytes. `make test` replays tests/fuzz/corpus/config/; `make
 * fuzz` explores from there.
 * fuzz-max-len: 16384 (tests/fuzz/run.sh)
 *
 * Invariants, each an abort() when broken:
 *   - a refusal names the file and line ("fuzz.conf:N: ..."), with N a real
 *     line of the input, and leaves every earlier line applied but never
 *     half-applies the bad one (checked by loading the good prefix alone);
 *   - whatever loads, config_print writes a file that loads again
 *     ("This output is a valid config file") into the same settings; the
 *     two URL settings are compared only when config_print did not mask a
 *     password in them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)          \
    do {                  \
        if (!(c))         \
            abort();      \
    } while (0)

/* Number of lines in p[0..n), as the loader counts them. */
static long count_lines(const char *p, size_t n)
{
    long lines = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\n')
            lines++;
    return lines + (n > 0 && p[n - 1] != '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    aq_config c, c2;
    char err[2048], err2[2048];
    char *txt = NULL;
    size_t tlen = 0;

    config_defaults(&c);
    if (config_load_buffer(&c, buf, size, "fuzz.conf", err, sizeof err) != 0) {
        char *end;
        CHECK(strncmp(err, "fuzz.conf:", 10) == 0);
        long line = strtol(err + 10, &end, 10);
        CHECK(end > err + 10 && *end == ':' && line >= 1 && line <= count_lines(buf, size));
        /* The lines before the bad one load on their own, to the same state. */
        size_t off = 0;
        for (long l = 1; l < line; l++)
            off = (size_t)((const char *)memchr(buf + off, '\n', size - off) - buf) + 1;
        config_defaults(&c2);
        CHECK(config_load_buffer(&c2, buf, off, "fuzz.conf", err2, sizeof err2) == 0);
        CHECK(memcmp(&c, &c2, sizeof c) == 0);
        return 0;
    }
    (void)config_validate(&c, err, sizeof err);

    FILE *m = open_memstream(&txt, &tlen);
    CHECK(m != NULL);
    config_print(&c, m);
    CHECK(fclose(m) == 0);
    config_defaults(&c2);
    if (config_load_buffer(&c2, txt, tlen, "printed", err2, sizeof err2) != 0) {
        fprintf(stderr, "config_print output does not load: %s\n", err2);
        abort();
    }
    free(txt);
    if (strstr(c2.redis_url, "***") == NULL)
        CHECK(strcmp(c.redis_url, c2.redis_url) == 0);
    if (strstr(c2.database_url, "***") == NULL)
        CHECK(strcmp(c.database_url, c2.database_url) == 0);
    memset(c.redis_url, 0, sizeof c.redis_url);
    memset(c2.redis_url, 0, sizeof c2.redis_url);
    memset(c.database_url, 0, sizeof c.database_url);
    memset(c2.database_url, 0, sizeof c2.database_url);
    CHECK(memcmp(&c, &c2, sizeof c) == 0);
    return 0;
}
