/* ctl_retention.c -- auditqctl retention. (Being written; see ctl.h.) */
#include <stdio.h>
#include "ctl.h"

const char ctl_retention_synopsis[] = "retention                          (not built yet)";
const char ctl_retention_help[] = "Usage: auditqctl retention\n\nNot built yet.\n";

int ctl_retention(const aq_config *cfg, int argc, char **argv)
{
    (void)cfg; (void)argc; (void)argv;
    fprintf(stderr, "auditqctl retention: not built yet\n");
    return CTL_FAILED;
}
