/* ctl_keygen.c -- `auditqctl keygen PATH [--name NAME] [--force]`: a new
 * Ed25519 checkpoint signing key (common/checkpoint.c; the formats in
 * docs/INTEGRITY.md "Key files").
 *
 * The key is generated and written here, on the machine that runs the
 * command, and never leaves the files: neither PostgreSQL nor Redis ever
 * sees it. PATH (the signing key, seal_key_file of the workers) is created
 * mode 0600 and never overwritten unless --force; PATH.pub (the verifier
 * key, for auditors and `auditqctl verify`) is written next to it.
 */
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "ctl.h"
#include "ctl_verify.h"

const char ctl_keygen_synopsis[] =
    "keygen PATH [--name NAME]        create a checkpoint signing key (PATH, PATH.pub)";
const char ctl_keygen_help[] =
    "Usage: auditqctl [OPTIONS] keygen PATH [--name NAME] [--force]\n"
    "\n"
    "Creates an Ed25519 key pair for signing checkpoints of the sealed audit\n"
    "trail (docs/INTEGRITY.md). Writes the signing key to PATH (mode 0600:\n"
    "set seal_key_file = PATH on the workers) and the verifier key to PATH.pub\n"
    "(give it to auditors: auditqctl verify --key PATH.pub, verify_key_file),\n"
    "and prints the verifier key. Neither key is ever stored in PostgreSQL or\n"
    "Redis. Keep PATH readable by the worker's user only; whoever holds it can\n"
    "sign checkpoints.\n"
    "\n"
    "  --name NAME  the key name the signature lines carry (default: the\n"
    "               namespace setting, e.g. auditq, which is also the\n"
    "               checkpoints' origin); printable, no spaces, no '+'\n"
    "  --force      replace an existing PATH (checkpoints the old key signed\n"
    "               then verify only with the old PATH.pub: keep a copy)\n"
    "  -h, --help   show this help\n"
    "\n"
    "Rotation: create the new key with another PATH, keep the old .pub, point\n"
    "seal_key_file at the new key and reload the workers; verify with both\n"
    "keys (--key OLD.pub --key NEW.pub).\n"
    "\n"
    "Exit status: 0 written, 1 the files could not be written (or PATH exists\n"
    "without --force), 2 usage error.\n";

int ctl_keygen(const aq_config *cfg, int argc, char **argv)
{
    const char *path = NULL, *name = cfg->namespace_;
    char err[600], pub[CKPT_PUBKEY_TEXT_MAX];
    int force = 0, rc;
    ckpt_key k;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--force") == 0) {
            force = 1;
        } else if (strcmp(a, "--name") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "auditqctl keygen: --name needs a value, e.g. --name auditq\n");
                return CTL_USAGE;
            }
            name = argv[++i];
        } else if (strncmp(a, "--name=", 7) == 0) {
            name = a + 7;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "auditqctl keygen: unknown option '%s'; run 'auditqctl keygen --help'\n",
                    a);
            return CTL_USAGE;
        } else if (path == NULL) {
            path = a;
        } else {
            fprintf(stderr, "auditqctl keygen: one PATH only ('%s' and '%s')\n", path, a);
            return CTL_USAGE;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "auditqctl keygen: give the PATH of the signing key to create, e.g. "
                        "auditqctl keygen /etc/auditq/seal.key\n");
        return CTL_USAGE;
    }
    if (!ckpt_name_valid(name, err, sizeof err)) {
        fprintf(stderr, "auditqctl keygen: --name '%s': %s\n", name, err);
        return CTL_USAGE;
    }
    if (ckpt_crypto_init(err, sizeof err) != CKPT_OK) {
        fprintf(stderr, "auditqctl keygen: %s\n", err);
        return CTL_FAILED;
    }
    if (ckpt_keygen(name, &k, err, sizeof err) != CKPT_OK) {
        fprintf(stderr, "auditqctl keygen: %s\n", err);
        return CTL_FAILED;
    }
    rc = ckpt_key_write(&k, path, force, err, sizeof err);
    if (rc != CKPT_OK) {
        ckpt_key_wipe(&k);
        fprintf(stderr, "auditqctl keygen: %s\n", err);
        return CTL_FAILED;
    }
    ckpt_key_format_public(&k, pub, sizeof pub);
    ckpt_key_wipe(&k);
    printf("signing key:  %s (mode 0600; seal_key_file)\n"
           "verifier key: %s.pub (verify_key_file, or auditqctl verify --key)\n"
           "%s\n",
           path, path, pub);
    return CTL_OK;
}
