/* ctl_query.c -- auditqctl query. (Being written; see ctl.h.) */
#include <stdio.h>
#include "ctl.h"

const char ctl_query_synopsis[] = "query                          (not built yet)";
const char ctl_query_help[] = "Usage: auditqctl query\n\nNot built yet.\n";

int ctl_query(const aq_config *cfg, int argc, char **argv)
{
    (void)cfg; (void)argc; (void)argv;
    fprintf(stderr, "auditqctl query: not built yet\n");
    return CTL_FAILED;
}
