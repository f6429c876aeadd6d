/* ctl_workers.c -- auditqctl workers. (Being written; see ctl.h.) */
#include <stdio.h>
#include "ctl.h"

const char ctl_workers_synopsis[] = "workers                          (not built yet)";
const char ctl_workers_help[] = "Usage: auditqctl workers\n\nNot built yet.\n";

int ctl_workers(const aq_config *cfg, int argc, char **argv)
{
    (void)cfg; (void)argc; (void)argv;
    fprintf(stderr, "auditqctl workers: not built yet\n");
    return CTL_FAILED;
}
