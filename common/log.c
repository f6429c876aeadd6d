/* log.c -- logfmt lines on stderr:
 *   ts=2026-11-21T05:41:02.123Z level=info msg="worker started" threads=2
 *
 * Each line is built in a stack buffer and handed to stdio in ONE call, so
 * lines from different threads never interleave (stdio locks the stream per
 * call, and stderr is unbuffered, so the line goes out in a single write).
 * The only shared state is log_level, which is set at start and on SIGHUP
 * (atomic: writer threads read it while the main thread reloads). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

atomic_int log_level = LOG_INFO;

static const char *const log_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *s)
{
    if (s == NULL)
        return -1;
    for (int i = 0; i < (int)(sizeof log_names / sizeof log_names[0]); i++)
        if (strcmp(s, log_names[i]) == 0)
            return i;
    return -1;
}

/* Appends msg to buf[*len..cap) as the body of a double-quoted logfmt value.
 * Leaves room for the caller's closing quote and newline. Returns 0, or -1
 * if msg was cut to fit. */
static int log_escape(char *buf, size_t cap, size_t *len, const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = *len;

    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        char esc[4];
        size_t k = 0;

        switch (*p) {
        case '"':  esc[k++] = '\\'; esc[k++] = '"';  break;
        case '\\': esc[k++] = '\\'; esc[k++] = '\\'; break;
        case '\n': esc[k++] = '\\'; esc[k++] = 'n';  break;
        case '\r': esc[k++] = '\\'; esc[k++] = 'r';  break;
        case '\t': esc[k++] = '\\'; esc[k++] = 't';  break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                /* Raw control bytes would let a message forge a line. */
                esc[k++] = '\\';
                esc[k++] = 'x';
                esc[k++] = hex[*p >> 4];
                esc[k++] = hex[*p & 15];
            } else {
                esc[k++] = (char)*p;
            }
        }
        if (n + k + 2 >= cap) {
            *len = n;
            return -1;
        }
        memcpy(buf + n, esc, k);
        n += k;
    }
    *len = n;
    return 0;
}

const char *log_q(char *buf, size_t len, const char *s)
{
    size_t n = 1;

    if (len < 8) {              /* no room for a useful value: "" */
        if (len >= 3)
            memcpy(buf, "\"\"", 3);
        else if (len > 0)
            buf[0] = '\0';
        return buf;
    }
    buf[0] = '"';
    /* Escape into len - 3 bytes: a cut always ends between two escapes,
     * and the 3 spare bytes hold the "..." that marks it. */
    if (log_escape(buf, len - 3, &n, s != NULL ? s : "") != 0) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

void log_emit(int level, const char *msg, const char *fmt, ...)
{
    /* Long enough for any sane line; longer ones are cut and marked. */
    char buf[4096];
    size_t len = 0;
    struct timespec ts;
    struct tm tm;
    int n;

    if (level != LOG_ERROR && !log_enabled(level))
        return;
    if (level < LOG_ERROR || level > LOG_DEBUG)
        level = LOG_ERROR;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    len = strftime(buf, sizeof buf, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(buf + len, sizeof buf - len, ".%03ldZ level=%s msg=\"",
                 ts.tv_nsec / 1000000, log_names[level]);
    len += (size_t)n;
    (void)log_escape(buf, sizeof buf, &len, msg != NULL ? msg : "");
    buf[len++] = '"';

    if (fmt != NULL && fmt[0] != '\0') {
        va_list ap;
        size_t room = sizeof buf - len - 1;   /* keep one byte for '\n' */

        /* Callers may or may not start fmt with the separating space, nor
         * what it formats (a leading "%s" that is "" or " key=v"): one
         * space is put in front unless the formatted text has it. */
        if (room < 2) {
            buf[len++] = '\n';
            fwrite(buf, 1, len, stderr);
            return;
        }
        buf[len++] = ' ';
        room--;
        va_start(ap, fmt);
        n = vsnprintf(buf + len, room, fmt, ap);
        va_end(ap);
        if (n > 0 && buf[len] == ' ') {
            size_t k = (size_t)n < room ? (size_t)n : room - 1;
            memmove(buf + len - 1, buf + len, k + 1);
            len--;      /* the text, its own space first, now starts here */
            room++;
        }
        if (n < 0) {
            buf[len] = '\0';
        } else if ((size_t)n >= room) {
            len += room - 1;
            /* Mark the cut so nobody mistakes it for the whole line. */
            memcpy(buf + len - 3, "...", 3);
        } else {
            len += (size_t)n;
        }
        /* A newline in a caller's value would split the record. */
        for (char *p = buf; p < buf + len; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    buf[len++] = '\n';
    fwrite(buf, 1, len, stderr);
}
