/* replay_main.c -- a main() for the libFuzzer targets tests/fuzz/fuzz_X.c
 * when they are built with the normal compiler (`make test`): it runs
 * LLVMFuzzerTestOneInput once over every input named on the command line,
 * so each seed corpus is a regression test without clang.
 *
 *   fuzz_X [FILE|DIR]...     each FILE, and each regular file in each DIR
 *                            (not recursive, in name order)
 *   fuzz_X                   tests/fuzz/corpus/X/ (X from argv[0])
 *
 * Each input is copied into a buffer of exactly its size, so a read past
 * the end is caught by ASan or valgrind as it would be under libFuzzer.
 * A target reports a broken invariant by aborting; replay then dies with
 * it, naming the input on stderr (from a signal handler, or the
 * sanitizers' death callback). FUZZ_REPLAY_VERBOSE=1 names every input.
 *
 * Exit: 0 after at least one input ran; 1 if there was nothing to run (an
 * empty or missing corpus is a mistake, not a pass); 2 on an unreadable
 * path.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Present only in sanitizer builds (gcc and clang): called before a
 * sanitizer report ends the process, which bypasses signal handlers. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

/* The input being run, for the crash message. */
static const char *volatile current;

/* Async-signal-safe: write(2) only. */
static void say_current(void)
{
    const char *p = current;
    if (p == NULL)
        return;
    static const char a[] = "replay: crashed on input ", b[] = "\n";
    if (write(2, a, sizeof a - 1) < 0 || write(2, p, strlen(p)) < 0 || write(2, b, 1) < 0)
        return;
}

static void on_fatal(int sig)
{
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads path whole into a malloc'd buffer of exactly its size (1 byte for
 * an empty file, so the pointer is never NULL). Returns 0 or -1. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    int rc = -1;

    if (f == NULL)
        return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf == NULL)
        goto out;
    if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        goto out;
    }
    *out = buf;
    *len = (size_t)n;
    rc = 0;
out:
    fclose(f);
    return rc;
}

static int run_one(const char *path, size_t *ran)
{
    uint8_t *data;
    size_t len;

    if (read_file(path, &data, &len) != 0) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (getenv("FUZZ_REPLAY_VERBOSE") != NULL)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    current = path;
    LLVMFuzzerTestOneInput(data, len);
    current = NULL;
    free(data);
    (*ran)++;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file directly in dir, in name order. */
static int run_dir(const char *dir, size_t *ran)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    if (d == NULL) {
        fprintf(stderr, "replay: cannot open directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (p == NULL) {
                rc = -1;
                break;
            }
            names = p;
        }
        size_t need = strlen(dir) + 1 + strlen(e->d_name) + 1;
        if ((names[n] = malloc(need)) == NULL) {
            rc = -1;
            break;
        }
        snprintf(names[n++], need, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc == 0)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode) && run_one(names[i], ran) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    const char *name = strncmp(base, "fuzz_", 5) == 0 ? base + 5 : base;
    char def[256];
    size_t ran = 0;

    signal(SIGABRT, on_fatal);
    signal(SIGSEGV, on_fatal);
    signal(SIGBUS, on_fatal);
    signal(SIGFPE, on_fatal);
    if (__sanitizer_set_death_callback != NULL)
        __sanitizer_set_death_callback(say_current);
    if (argc < 2) {
        snprintf(def, sizeof def, "tests/fuzz/corpus/%s", name);
        static char *defargv[3];
        defargv[0] = argv[0];
        defargv[1] = def;
        argv = defargv;
        argc = 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz_%s: %s: %s\n", name, argv[i], strerror(errno));
            return 2;
        }
        if ((S_ISDIR(st.st_mode) ? run_dir(argv[i], &ran) : run_one(argv[i], &ran)) != 0)
            return 2;
    }
    if (ran == 0) {
        fprintf(stderr, "fuzz_%s: no inputs in %s; add seed files to the corpus\n", name,
                argc == 2 ? argv[1] : "the paths given");
        return 1;
    }
    printf("fuzz_%s: %zu inputs replayed, no crash, every invariant held\n", name, ran);
    return 0;
}
