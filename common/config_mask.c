/* config_mask.c -- hides the passwords in a connection string before it is
 * shown (value errors, config_print, config_reload's change list): the URI form
 * scheme://user:PASSWORD@host/db?password=PASSWORD and the libpq keyword
 * form "host=h password=PASSWORD". The struct keeps the real value. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "config.h"

/* Appends src[0..n) to out (cap bytes), always NUL-terminated. */
static void cf_append(char *out, size_t cap, size_t *len, const char *src, size_t n)
{
    if (*len + 1 >= cap)
        return;
    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(out + *len, src, n);
    *len += n;
    out[*len] = '\0';
}

/* URI form: scheme://user:PASSWORD@host/...?...&password=PASSWORD&... */
static void cf_mask_uri(const char *url, const char *auth, char *out, size_t cap)
{
    size_t len = 0;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL, *colon, *q, *p;

    out[0] = '\0';
    /* The userinfo ends at the LAST '@' of the authority: an unescaped '@'
     * inside a password must not leak the part after it. */
    for (const char *s = auth; s < auth + alen; s++)
        if (*s == '@')
            at = s;
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
        cf_append(out, cap, &len, url, (size_t)(colon + 1 - url));
        cf_append(out, cap, &len, "***", 3);
        p = at;
    } else {
        p = url;
    }
    /* libpq also takes ?password=... in the query string. */
    q = strchr(p, '?');
    if (q == NULL) {
        cf_append(out, cap, &len, p, strlen(p));
        return;
    }
    cf_append(out, cap, &len, p, (size_t)(q + 1 - p));
    p = q + 1;
    while (*p) {
        size_t n = strcspn(p, "&");
        if (n >= 9 && strncmp(p, "password=", 9) == 0) {
            cf_append(out, cap, &len, "password=***", 12);
        } else {
            cf_append(out, cap, &len, p, n);
        }
        p += n;
        if (*p == '&')
            cf_append(out, cap, &len, p++, 1);
    }
}

/* conninfo form: key=value pairs, values optionally 'quoted' with \ escapes. */
static void cf_mask_conninfo(const char *s, char *out, size_t cap)
{
    size_t len = 0;
    const char *p = s;

    out[0] = '\0';
    while (*p) {
        const char *kw, *v;
        size_t kwlen;

        while (*p && isspace((unsigned char)*p))
            cf_append(out, cap, &len, p++, 1);
        kw = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        kwlen = (size_t)(p - kw);
        while (*p && isspace((unsigned char)*p))
            p++;
        if (*p != '=') {          /* malformed: copy the rest, libpq will complain */
            cf_append(out, cap, &len, kw, strlen(kw));
            return;
        }
        p++;
        while (*p && isspace((unsigned char)*p))
            p++;
        v = p;
        if (*p == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1] != '\0')
                    p++;
            if (*p == '\'')
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p))
                p++;
        }
        /* The text is copied as written (blanks around '=' included): only
         * a password changes, so an unmasked value prints as it loaded. */
        if (kwlen == 8 && strncmp(kw, "password", 8) == 0) {
            cf_append(out, cap, &len, kw, (size_t)(v - kw));
            cf_append(out, cap, &len, "***", 3);
        } else {
            cf_append(out, cap, &len, kw, (size_t)(p - kw));
        }
    }
}

void config_mask_url(const char *url, char *out, size_t cap)
{
    const char *sep = strstr(url, "://");

    if (sep != NULL && strcspn(url, "= \t") > (size_t)(sep - url))
        cf_mask_uri(url, sep + 3, out, cap);
    else
        cf_mask_conninfo(url, out, cap);
}
