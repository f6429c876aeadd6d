/* ctl_dlq.c -- auditqctl dlq. (Being written; see ctl.h.) */
#include <stdio.h>
#include "ctl.h"

const char ctl_dlq_synopsis[] = "dlq                          (not built yet)";
const char ctl_dlq_help[] = "Usage: auditqctl dlq\n\nNot built yet.\n";

int ctl_dlq(const aq_config *cfg, int argc, char **argv)
{
    (void)cfg; (void)argc; (void)argv;
    fprintf(stderr, "auditqctl dlq: not built yet\n");
    return CTL_FAILED;
}
