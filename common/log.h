/* log.h -- logfmt lines on stderr: ts=... level=... msg="..." key=value.
 * For the daemon and tools only: the library never logs. */
#ifndef AQ_LOG_H
#define AQ_LOG_H
#include <stdatomic.h>
#include <stddef.h>

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
/* Atomic: the worker's SIGHUP reload changes it while writer threads log. */
extern atomic_int log_level;
#define log_enabled(l) (atomic_load_explicit(&log_level, memory_order_relaxed) >= (l))

/* Parses "error|warn|info|debug"; returns the level or -1. */
int log_level_parse(const char *s);
/* msg is a plain message; fmt (may be NULL) adds " key=value ..." pairs,
 * formatted by the caller with log_q() for values that need quoting. */
void log_emit(int level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes s into buf as one logfmt value: double-quoted, with " \\ and
 * control characters escaped (cut with "..." if buf is too small). Returns
 * buf, for use as a "%s" argument: log_warn("x", " error=%s", log_q(b, sizeof b, err)). */
const char *log_q(char *buf, size_t len, const char *s);
#define log_error(...) log_emit(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  do { if (log_enabled(LOG_WARN))  log_emit(LOG_WARN, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO))  log_emit(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_emit(LOG_DEBUG, __VA_ARGS__); } while (0)
#endif
