/* config_file.c -- reads "key = value" lines from a file or a buffer and
 * applies each through config_set, with "FILE:LINE" as its origin in
 * errors. The settings themselves: config.c's table. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "text.h"

/* Splits one line in place. Returns 1 with *key and *value set, 0 for a blank or
 * comment line, -1 with the reason in why. */
static int cf_split_line(char *line, char **key, char **value, char *why, size_t whylen)
{
    char *p = line, *k, *end;

    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    k = p;
    while (*p && *p != '=' && !isspace((unsigned char)*p))
        p++;
    end = p;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '=' || end == k) {
        text_errf(why, whylen, "expected 'key = value', got '%s'", k);
        return -1;
    }
    *end = '\0';
    *key = k;
    p++;
    while (isspace((unsigned char)*p))
        p++;

    if (*p == '"') {
        /* Quoted: '#' is literal; \" and \\ are the only escapes. The
         * unescaped text is written over the line in place (never longer). */
        char *out = p, *in = p + 1;
        *value = out;
        for (;;) {
            if (*in == '\0') {
                text_errf(why, whylen, "%s: missing closing '\"'; end the value with \"", k);
                return -1;
            }
            if (*in == '"')
                break;
            if (*in == '\\') {
                if (in[1] != '"' && in[1] != '\\') {
                    text_errf(why, whylen,
                            "%s: unknown escape '\\%c' in quoted value; only \\\" and \\\\ are "
                            "allowed", k, in[1] != '\0' ? in[1] : ' ');
                    return -1;
                }
                in++;
            }
            *out++ = *in++;
        }
        *out = '\0';
        in++;
        while (isspace((unsigned char)*in))
            in++;
        if (*in != '\0' && *in != '#') {
            text_errf(why, whylen, "%s: unexpected text after the closing quote: '%s'", k, in);
            return -1;
        }
        return 1;
    }

    /* Unquoted: a '#' after whitespace starts a comment. */
    *value = p;
    for (char *s = p; *s; s++) {
        if (*s == '#' && s > p && isspace((unsigned char)s[-1])) {
            *s = '\0';
            break;
        }
    }
    end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return 1;
}

/* One line of a config file, without its '\n' (n bytes, line[n] == '\0'),
 * modified in place. `name` and lineno are for the error message. The one
 * line parser behind config_load_file and config_load_buffer. */
static int cf_load_line(aq_config *c, char *line, size_t n, const char *name, long lineno,
                        char *err, size_t errlen)
{
    char where[512], why[512];
    char *key, *value;
    int r;

    snprintf(where, sizeof where, "%s:%ld", name, lineno);
    if (memchr(line, '\0', n) != NULL) {
        text_errf(err, errlen, "%s: line contains a NUL byte; is this a text file?", where);
        return -1;
    }
    while (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    r = cf_split_line(line, &key, &value, why, sizeof why);
    if (r < 0) {
        text_errf(err, errlen, "%s: %s", where, why);
        return -1;
    }
    if (r == 0)
        return 0;
    return config_set(c, key, value, where, err, errlen);
}

int config_load_file(aq_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f;
    char *line = NULL;      /* owned: getline's buffer, freed at out */
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = -1;

    f = fopen(path, "r");
    if (f == NULL) {
        text_errf(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (cf_load_line(c, line, (size_t)n, path, ++lineno, err, errlen) != 0)
            goto out;
    }
    if (ferror(f)) {
        text_errf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(line);
    fclose(f);
    return rc;
}

int config_load_buffer(aq_config *c, const char *buf, size_t len, const char *name,
                       char *err, size_t errlen)
{
    char *line = NULL;      /* owned: a copy of the current line, freed at out */
    size_t cap = 0, pos = 0;
    long lineno = 0;
    int rc = -1;

    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (buf + pos)) : len - pos;

        if (n + 1 > cap) {
            char *p = realloc(line, n + 1);
            if (p == NULL) {
                text_errf(err, errlen, "%s: out of memory", name);
                goto out;
            }
            line = p;
            cap = n + 1;
        }
        memcpy(line, buf + pos, n);
        line[n] = '\0';
        if (cf_load_line(c, line, n, name, ++lineno, err, errlen) != 0)
            goto out;
        pos += n + (nl != NULL);
    }
    rc = 0;
out:
    free(line);
    return rc;
}
