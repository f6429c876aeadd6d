/* ctl_partitions.c -- auditqctl partitions. (Being written; see ctl.h.) */
#include <stdio.h>
#include "ctl.h"

const char ctl_partitions_synopsis[] = "partitions                          (not built yet)";
const char ctl_partitions_help[] = "Usage: auditqctl partitions\n\nNot built yet.\n";

int ctl_partitions(const aq_config *cfg, int argc, char **argv)
{
    (void)cfg; (void)argc; (void)argv;
    fprintf(stderr, "auditqctl partitions: not built yet\n");
    return CTL_FAILED;
}
