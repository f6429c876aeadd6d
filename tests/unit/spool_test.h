/* spool_test.h -- what test_spool.c (the file) and test_spooler.c (the
 * library's spool) share: a private directory per test binary, made by
 * setup and removed by teardown (cmocka_run_group_tests), and path_of for
 * a fresh spool path in it. */
#ifndef AQ_SPOOL_TEST_H
#define AQ_SPOOL_TEST_H
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Paths here are tmpdir (< 40 bytes) plus a short name. */
#define PATHLEN 128
#define POSLEN (PATHLEN + 8)

static char tmpdir[64];

static inline int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/aq-test-spool.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static inline int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[PATH_MAX];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
    return 0;
}

static inline void path_of(char out[PATHLEN], size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
    unlink(out);
    char pos[POSLEN];
    snprintf(pos, sizeof pos, "%s.pos", out);
    unlink(pos);
}
#endif
