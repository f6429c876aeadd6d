/* ctl_retention.c -- `auditqctl retention run [--dry-run] [--json]`.
 *
 * A thin shell around retention_run (common/retention.c), which the worker
 * can also call on a timer: this file only parses arguments and turns the
 * reported events into lines (stdout), warnings and progress (stderr), or
 * one JSON object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "retention.h"

#define RET_PROG "auditqctl retention"

const char ctl_retention_synopsis[] =
    "retention run [OPTIONS]          archive or drop months past hot/retain_months";

const char ctl_retention_help[] =
    "Usage: auditqctl [OPTIONS] retention run [--dry-run] [--json]\n"
    "\n"
    "Applies the retention policy once, whole monthly partitions at a time (rows\n"
    "are never deleted one by one):\n"
    "  - audit_events keeps the newest hot_months months (the current month, UTC,\n"
    "    counts as one; partitions made ahead stay too);\n"
    "  - an older month is detached from audit_events and\n"
    "      archive_mode = schema: moved to archive_schema (still queryable, still\n"
    "        append-only), or\n"
    "      archive_mode = csv: exported to archive_dir/audit_events_YYYY_MM.csv.gz\n"
    "        with audit_events_YYYY_MM.manifest.json (rows, sha256 of the .gz,\n"
    "        columns), both fsynced, then dropped. Every table in archive_schema\n"
    "        is exported in this mode;\n"
    "  - months before the last retain_months (archived or not) are dropped,\n"
    "    without export. Files in archive_dir are never deleted.\n"
    "A month is named by occurred_at, the producer's clock, so it is not trusted\n"
    "alone: a month holding a row received (received_at, the database's clock)\n"
    "within hot_months is not archived, one received within retain_months is not\n"
    "dropped. Such a month is skipped -- 'skipped ...' names it, the rows, the\n"
    "newest received_at -- and handled by a later run once they are older.\n"
    "A month holding rows under an active legal hold (auditqctl hold add) is\n"
    "never archived, exported or dropped: 'kept ... legal hold N' names the\n"
    "hold, and the month is handled by the first run after its release.\n"
    "Each step is one transaction: an interrupted run is completed by the next.\n"
    "Prints the policy, then one line per step; 'nothing to do' when all is in\n"
    "place. Safe to run daily from cron; a run that finds another one running\n"
    "exits 1 at once, changing nothing.\n"
    "\n"
    "  --dry-run   print the plan; change nothing\n"
    "  --json      one JSON object (policy, actions, warnings, skipped, held)\n"
    "              instead of lines; a month kept by a hold is an action \"hold\"\n"
    "              with \"hold_id\" and \"hold_scope\"\n"
    "\n"
    "Locks: detaching a month takes ACCESS EXCLUSIVE on audit_events for a moment\n"
    "(DETACH ... CONCURRENTLY is impossible with a DEFAULT partition); it waits at\n"
    "most 5 s for a long query, then fails, and the next run retries. An export\n"
    "blocks only writes to the month being exported (none are expected).\n"
    "Runs as the owner of audit_events (the role that ran migrate).\n"
    "\n"
    "Exit status: 0 ok (also when months were skipped), 1 connection/SQL/file\n"
    "error or another run in progress, 2 usage error.\n";

typedef struct ret_out {
    int json;
    int tty;            /* stderr is a terminal: progress overwrites one line */
    int progress_open;  /* a progress line is on screen without its newline */
    long long progress_n;
    aq_buf actions;     /* --json: the action objects */
    aq_buf warnings;    /* --json: the warning strings */
    aq_buf policy;      /* --json: the policy object */
    char info[512];     /* --json: the last info line */
    int skipped;        /* --json: months skipped for rows received within the period */
    int held;           /* --json: months kept by legal holds */
    int bad;            /* out of memory building the JSON */
} ret_out;

/* Appends a C string to b. 0, or -1 on OOM. */
static int ret_puts(aq_buf *b, const char *s)
{
    return aq_buf_append(b, s, strlen(s));
}

static void ret_end_progress(ret_out *o)
{
    if (o->progress_open) {
        fputc('\n', stderr);
        o->progress_open = 0;
    }
}

static void ret_json_action(ret_out *o, const retention_event *ev)
{
    aq_buf *b = &o->actions;
    char month[16], num[64];

    retention_month_label(ev->month, month, sizeof month);
    o->bad |= ret_puts(b, b->len > 0 ? ",\n  {\"action\": " : "\n  {\"action\": ");
    o->bad |= retention_json_append(b, ev->action);
    o->bad |= ret_puts(b, ", \"table\": ");
    o->bad |= retention_json_append(b, ev->table);
    o->bad |= ret_puts(b, ", \"month\": ");
    o->bad |= retention_json_append(b, month);
    if (ev->target != NULL) {
        o->bad |= ret_puts(b, ", \"target\": ");
        o->bad |= retention_json_append(b, ev->target);
    }
    if (ev->manifest != NULL) {
        o->bad |= ret_puts(b, ", \"manifest\": ");
        o->bad |= retention_json_append(b, ev->manifest);
    }
    if (ev->sha256 != NULL) {
        o->bad |= ret_puts(b, ", \"sha256\": ");
        o->bad |= retention_json_append(b, ev->sha256);
    }
    if (ev->within != NULL) {
        o->bad |= ret_puts(b, ", \"within\": ");
        o->bad |= retention_json_append(b, ev->within);
        o->bad |= ret_puts(b, ", \"received_since\": ");
        o->bad |= retention_json_append(b, ev->since);
        o->bad |= ret_puts(b, ", \"newest_received_at\": ");
        o->bad |= retention_json_append(b, ev->newest);
    }
    if (ev->hold_id > 0) {
        snprintf(num, sizeof num, ", \"hold_id\": %lld, \"hold_scope\": ", ev->hold_id);
        o->bad |= aq_buf_append(b, num, strlen(num));
        o->bad |= retention_json_append(b, ev->hold_scope);
    }
    if (ev->rows >= 0) {
        snprintf(num, sizeof num, ", \"rows\": %lld", ev->rows);
        o->bad |= aq_buf_append(b, num, strlen(num));
    }
    snprintf(num, sizeof num, ", \"done\": %s}", ev->done ? "true" : "false");
    o->bad |= aq_buf_append(b, num, strlen(num));
}

static void ret_json_policy(ret_out *o, const retention_event *ev, const aq_config *cfg)
{
    char cur[16], hot[16], keep[16], head[400];

    retention_month_label(ev->month, cur, sizeof cur);
    retention_month_label(ev->hot_from, hot, sizeof hot);
    retention_month_label(ev->keep_from, keep, sizeof keep);
    snprintf(head, sizeof head, "{\"current_month\": \"%s\", \"hot_months\": %d, \"hot_from\": \"%s\", "
             "\"retain_months\": %d, \"keep_from\": \"%s\", \"archive_mode\": \"%s\", "
             "\"archive_schema\": ", cur, cfg->hot_months, hot, cfg->retain_months, keep,
             cfg->archive_mode == ARCHIVE_CSV ? "csv" : "schema");
    o->bad |= aq_buf_append(&o->policy, head, strlen(head));
    o->bad |= retention_json_append(&o->policy, cfg->archive_schema);
    o->bad |= ret_puts(&o->policy, ", \"archive_dir\": ");
    o->bad |= retention_json_append(&o->policy, cfg->archive_dir);
    o->bad |= ret_puts(&o->policy, "}");
}

typedef struct ret_ctx {
    ret_out *o;
    const aq_config *cfg;
} ret_ctx;

static void ret_report(void *arg, const retention_event *ev)
{
    ret_ctx *c = arg;
    ret_out *o = c->o;

    if (ev->kind == RET_EV_PROGRESS) {
        /* Terminal: one line rewritten in place. Log file: a line per
         * million rows, enough to see it move without flooding. */
        o->progress_n++;
        if (o->tty) {
            fprintf(stderr, "\r" RET_PROG ": %s", ev->line);
            o->progress_open = 1;
        } else if (o->progress_n % 10 == 0) {
            fprintf(stderr, RET_PROG ": %s\n", ev->line);
        }
        return;
    }
    ret_end_progress(o);
    if (ev->kind == RET_EV_WARNING) {
        fprintf(stderr, RET_PROG ": warning: %s\n", ev->line);
        if (o->json) {
            if (o->warnings.len > 0)
                o->bad |= ret_puts(&o->warnings, ", ");
            o->bad |= retention_json_append(&o->warnings, ev->line);
        }
        return;
    }
    if (!o->json) {
        printf("%s\n", ev->line);
        fflush(stdout);  /* each step is committed: say so as it happens */
        return;
    }
    if (ev->kind == RET_EV_ACTION) {
        o->skipped += strcmp(ev->action, "skip") == 0;
        o->held += strcmp(ev->action, "hold") == 0;
        ret_json_action(o, ev);
    }
    else if (ev->kind == RET_EV_POLICY)
        ret_json_policy(o, ev, c->cfg);
    else
        snprintf(o->info, sizeof o->info, "%s", ev->line);
}

static int ret_print_json(ret_out *o, int dry_run, int rc, const char *err)
{
    aq_buf b = { 0 };
    int bad = o->bad;

    bad |= ret_puts(&b, dry_run ? "{\"dry_run\": true, \"ok\": " : "{\"dry_run\": false, \"ok\": ");
    bad |= ret_puts(&b, rc == RETENTION_OK ? "true" : "false");
    if (rc != RETENTION_OK) {
        bad |= ret_puts(&b, ", \"error\": ");
        bad |= retention_json_append(&b, err);
    }
    bad |= ret_puts(&b, ",\n \"policy\": ");
    bad |= o->policy.len > 0 ? aq_buf_append(&b, o->policy.data, o->policy.len)
                             : ret_puts(&b, "null");
    bad |= ret_puts(&b, ",\n \"actions\": [");
    bad |= aq_buf_append(&b, o->actions.data != NULL ? o->actions.data : "", o->actions.len);
    bad |= ret_puts(&b, "],\n \"warnings\": [");
    bad |= aq_buf_append(&b, o->warnings.data != NULL ? o->warnings.data : "", o->warnings.len);
    bad |= ret_puts(&b, "],\n \"skipped\": ");
    {
        char num[32];

        snprintf(num, sizeof num, "%d,\n \"held\": %d", o->skipped, o->held);
        bad |= ret_puts(&b, num);
    }
    bad |= ret_puts(&b, ",\n \"summary\": ");
    bad |= retention_json_append(&b, o->info);
    bad |= ret_puts(&b, "}\n");
    if (bad) {
        fprintf(stderr, RET_PROG ": out of memory\n");
        free(b.data);
        return -1;
    }
    fwrite(b.data, 1, b.len, stdout);
    free(b.data);
    return 0;
}

int ctl_retention(const aq_config *cfg, int argc, char **argv)
{
    int dry_run = 0, rc;
    ret_out o;
    ret_ctx c = { &o, cfg };
    char err[2048] = "";
    PGconn *pg;

    memset(&o, 0, sizeof o);
    if (argc < 2 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, RET_PROG ": %s%s%s; run 'auditqctl retention --help'\n",
                argc < 2 ? "missing subcommand 'run'" : "unknown subcommand '",
                argc < 2 ? "" : argv[1], argc < 2 ? "" : "' (only 'run')");
        return CTL_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            o.json = 1;
        } else {
            fprintf(stderr, RET_PROG ": unknown argument '%s'; run 'auditqctl retention --help'\n",
                    argv[i]);
            return CTL_USAGE;
        }
    }
    o.tty = isatty(STDERR_FILENO);

    pg = retention_connect(cfg, "auditqctl", err, sizeof err);
    if (pg == NULL) {
        fprintf(stderr, RET_PROG ": %s\n", err);
        return CTL_FAILED;
    }
    rc = retention_run(pg, cfg, dry_run, ret_report, &c, err, sizeof err);
    PQfinish(pg);
    ret_end_progress(&o);
    if (rc != RETENTION_OK)
        fprintf(stderr, RET_PROG ": %s\n", err);
    if (o.json && ret_print_json(&o, dry_run, rc, err) != 0)
        rc = RETENTION_FAILED;
    free(o.actions.data);
    free(o.warnings.data);
    free(o.policy.data);
    return rc == RETENTION_OK ? CTL_OK : CTL_FAILED;
}
