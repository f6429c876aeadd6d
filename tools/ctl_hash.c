/* ctl_hash.c -- `auditqctl hash --key-file FILE [VALUE | -]`: the value a
 * protect_fields hmac rule stores for VALUE, to search for it
 * (auditqctl query --metadata email=$(auditqctl hash ...)).
 *
 * The same code as the producer's (producer/protect.c protect_key_read and
 * protect_hmac), so the two cannot disagree: the same key file gives the
 * same "hmac-sha256:<hex>". The key is read here, on the machine that runs
 * the command, and never sent anywhere. Without VALUE (or with "-") the
 * value is read from stdin, so it need not appear on a command line (ps,
 * shell history); one trailing newline is not part of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ctl.h"
#include "../producer/protect.h"

#define HASH_STDIN_MAX (16 << 20) /* a whole job is at most 16 MiB */

const char ctl_hash_synopsis[] =
    "hash --key-file F [VALUE | -]    the hmac-sha256 protect_fields stores for VALUE";
const char ctl_hash_help[] =
    "Usage: auditqctl [OPTIONS] hash --key-file FILE [VALUE | -]\n"
    "\n"
    "Prints \"hmac-sha256:<64 hex>\", the HMAC-SHA256 under the key in FILE\n"
    "(the producers' protect_key_file) of VALUE: what a protect_fields hmac\n"
    "rule stores instead of VALUE, so a protected value can still be searched\n"
    "for by equality:\n"
    "\n"
    "  auditqctl query --metadata email=\"$(auditqctl hash --key-file K a@b.example)\"\n"
    "\n"
    "Without VALUE, or with -, the value is read from stdin (one trailing\n"
    "newline removed), so a secret needs not appear on a command line:\n"
    "\n"
    "  printf '%s' \"$TOKEN\" | auditqctl hash --key-file K -\n"
    "\n"
    "A JSON number or boolean is hashed as its JSON text: the stored value\n"
    "of {\"pin\": 1234} is auditqctl hash --key-file K 1234.\n"
    "\n"
    "  --key-file FILE  the key file (at least 32 bytes, not readable by other\n"
    "                   users; a trailing newline is not part of the key)\n"
    "  -h, --help       show this help\n"
    "\n"
    "The key stays on this machine: run the command where the key is.\n"
    "\n"
    "Exit status: 0 printed, 1 the key file cannot be used or stdin cannot be\n"
    "read, 2 usage error.\n";

/* Reads all of stdin into a new buffer (caller frees); NULL on error. */
static char *hash_read_stdin(size_t *n)
{
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);

    while (b) {
        size_t r = fread(b + len, 1, cap - len, stdin);
        len += r;
        if (r == 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "auditqctl hash: cannot read stdin\n");
                break;
            }
            *n = len;
            return b;
        }
        if (len == cap) {
            char *nb;
            if (cap >= HASH_STDIN_MAX) {
                fprintf(stderr, "auditqctl hash: stdin holds more than %d bytes: is it a value?\n",
                        HASH_STDIN_MAX);
                break;
            }
            nb = realloc(b, cap * 2);
            if (!nb) {
                fprintf(stderr, "auditqctl hash: out of memory\n");
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    if (b)
        OPENSSL_cleanse(b, cap);
    free(b);
    return NULL;
}

int ctl_hash(const aq_config *cfg, int argc, char **argv)
{
    const char *key_file = NULL, *value = NULL;
    char err[600], out[PROTECT_HMAC_LEN + 1];
    uint8_t *key = NULL;
    char *in = NULL;
    size_t keylen = 0, n = 0;
    int rc = CTL_FAILED;

    (void)cfg;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--key-file") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "auditqctl hash: --key-file needs a FILE\n");
                return CTL_USAGE;
            }
            key_file = argv[++i];
        } else if (strncmp(a, "--key-file=", 11) == 0) {
            key_file = a + 11;
        } else if (strcmp(a, "--") == 0 && i + 1 < argc && !value) {
            value = argv[++i];
        } else if (a[0] == '-' && strcmp(a, "-") != 0) {
            fprintf(stderr, "auditqctl hash: unknown option '%s'; run 'auditqctl hash --help'\n", a);
            return CTL_USAGE;
        } else if (value) {
            fprintf(stderr, "auditqctl hash: one VALUE only (quote a value with blanks)\n");
            return CTL_USAGE;
        } else {
            value = a;
        }
    }
    if (!key_file) {
        fprintf(stderr, "auditqctl hash: --key-file FILE is required: the producers' protect_key_file\n");
        return CTL_USAGE;
    }
    key = malloc(PROTECT_KEY_MAX);
    if (!key) {
        fprintf(stderr, "auditqctl hash: out of memory\n");
        return CTL_FAILED;
    }
    if (protect_key_read(key_file, key, &keylen, err, sizeof err) != 0) {
        fprintf(stderr, "auditqctl hash: %s\n", err);
        goto out;
    }
    if (!value || strcmp(value, "-") == 0) {
        in = hash_read_stdin(&n);
        if (!in)
            goto out;
        if (n > 0 && in[n - 1] == '\n')
            n--;
        if (n > 0 && in[n - 1] == '\r')
            n--;
        value = in;
    } else {
        n = strlen(value);
    }
    if (protect_hmac(key, keylen, value, n, out) != 0) {
        fprintf(stderr, "auditqctl hash: HMAC-SHA256 failed (OpenSSL)\n");
        goto out;
    }
    printf("%s\n", out);
    rc = fflush(stdout) == 0 ? CTL_OK : CTL_FAILED;
out:
    OPENSSL_cleanse(key, PROTECT_KEY_MAX);
    free(key);
    if (in) {
        OPENSSL_cleanse(in, n);
        free(in);
    }
    return rc;
}
