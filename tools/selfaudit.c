/* selfaudit.c -- auditqctl records who read or changed the trail, in the
 * trail (PCI DSS 4.0 10.2.1.3, NIST SP 800-53 AU-9(4)).
 *
 * DESIGN
 *   Built once, in the dispatcher, not command by command: the command
 *   line alone says whether a command reads event content or changes what
 *   the pipeline holds (selfaudit_classify), so a new subcommand is either
 *   in the table or audited as nothing -- the table is the one place to
 *   review. Each audited run records exactly one event through libauditq
 *   (auditq_send: acknowledged by Redis before it returns), like any
 *   application's event: action auditq.<command>[.<subcommand>],
 *   actor_id = the OS user, actor_type = system, tenant_id = the --tenant
 *   the command was given (so a tenant's own trail shows who read it),
 *   entity auditq:<namespace>, user_agent auditqctl/<version>, metadata =
 *   the command, its arguments (URL passwords masked), the database role,
 *   host and pid, and for changes the exit status and counts.
 *
 *   Reads are recorded BEFORE they run, with their filters, and a read
 *   whose event Redis did not acknowledge does not run (fail-closed). The
 *   event therefore says "this user started this read with these
 *   filters"; it cannot hold the row count, and a read that then fails
 *   (PostgreSQL down) is still recorded as an access attempt -- the safe
 *   direction. Window left: the event is in Redis, not yet in PostgreSQL,
 *   while the read runs; it reaches the trail with the queue's own
 *   guarantees (docs/RELIABILITY.md), the same as every other event.
 *
 *   Changes are recorded AFTER they ran, so the event holds the outcome
 *   (exit status) and the counts the command noted (selfaudit_count).
 *   Before the change runs, Redis must answer a PING, so a change is not
 *   started that could not be recorded. Window left: Redis lost between
 *   that PING and the record, or auditqctl killed while the change runs:
 *   the change is made and not recorded. The first is reported on stderr
 *   ("the change was made but is not in the trail") with exit status 1;
 *   the second leaves the PostgreSQL server log and the dead-letter
 *   counters (stats) as the evidence.
 *
 *   --no-self-audit (a global option) skips both, and is refused unless
 *   the config FILE given with -c sets self_audit = optional: an operator
 *   who controls that file decides, not whoever runs the command (the
 *   environment and --set do not count for it, auditqctl.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "auditq.h"
#include "osuser.h"
#include "selfaudit.h"
#include "text.h"

/* ------------------------------------------------------------------ classify */

static int has_arg(int argc, char *const *argv, const char *name)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], name) == 0 ||
            (strncmp(argv[i], name, strlen(name)) == 0 && argv[i][strlen(name)] == '='))
            return 1;
    }
    return 0;
}

sa_kind selfaudit_classify(int argc, char *const *argv, char action[SA_ACTION_MAX])
{
    /* command, subcommand ("" = any or none), kind, and the option that
     * makes the run change nothing (a dry run), or that it needs to read. */
    static const struct {
        const char *cmd, *sub;
        sa_kind kind;
        const char *dry;   /* present: SA_NONE */
        const char *needs; /* absent: SA_NONE */
    } table[] = {
        { "query", "", SA_READ, NULL, NULL },
        { "follow", "", SA_READ, NULL, NULL },
        { "dlq", "list", SA_READ, NULL, NULL },  /* reasons quote rejected rows */
        { "dlq", "show", SA_READ, NULL, NULL },
        { "dlq", "requeue", SA_CHANGE, "--dry-run", NULL },
        { "dlq", "purge", SA_CHANGE, NULL, "--yes" },
        { "verify", "", SA_READ, NULL, "--event" },
        { "retention", "run", SA_CHANGE, "--dry-run", NULL },
        { "partitions", "ensure", SA_CHANGE, "--dry-run", NULL },
        { "grants", "", SA_CHANGE, NULL, NULL },
        { "migrate", "", SA_CHANGE, "--dry-run", NULL },
        { "spool", "replay", SA_CHANGE, "--dry-run", NULL },
        { "hold", "add", SA_CHANGE, NULL, NULL },
        { "hold", "release", SA_CHANGE, NULL, NULL },
    };
    const char *sub = argc > 1 ? argv[1] : "";

    action[0] = '\0';
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(argv[0], table[i].cmd) != 0)
            continue;
        if (table[i].sub[0] != '\0' && strcmp(sub, table[i].sub) != 0)
            continue;
        if (table[i].dry != NULL && has_arg(argc, argv, table[i].dry))
            return SA_NONE;
        if (table[i].needs != NULL && !has_arg(argc, argv, table[i].needs))
            return SA_NONE;
        if (strcmp(argv[0], "migrate") == 0 && has_arg(argc, argv, "--status"))
            return SA_NONE;
        if (table[i].sub[0] != '\0')
            snprintf(action, SA_ACTION_MAX, "auditq.%s.%s", table[i].cmd, table[i].sub);
        else
            snprintf(action, SA_ACTION_MAX, "auditq.%s", table[i].cmd);
        return table[i].kind;
    }
    return SA_NONE;
}

/* ------------------------------------------------------------------ metadata */

void selfaudit_mask(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = s, *scheme = strstr(s, "://");

    if (cap == 0)
        return;
#define PUT(c)                     \
    do {                           \
        if (n + 1 < cap)           \
            out[n++] = (c);        \
    } while (0)
    if (scheme != NULL) {
        const char *auth = scheme + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = NULL, *colon;

        for (const char *q = auth; q < end; q++)
            if (*q == '@')
                at = q;  /* the last '@': a password may hold one */
        colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon != NULL) {
            for (; p <= colon; p++)
                PUT(*p);
            PUT('*'); PUT('*'); PUT('*');
            p = at;
        }
    }
    while (*p != '\0') {
        if (strncmp(p, "password=", 9) == 0 && (p == s || p[-1] == '?' || p[-1] == '&' ||
                                                 p[-1] == ' ')) {
            for (int k = 0; k < 9; k++)
                PUT(p[k]);
            PUT('*'); PUT('*'); PUT('*');
            p += 9 + strcspn(p + 9, "& ");
            continue;
        }
        PUT(*p);
        p++;
    }
#undef PUT
    out[n] = '\0';
}

static struct {
    const char *key;
    long long n;
} sa_counts[8];
static int sa_ncounts;

void selfaudit_count(const char *key, long long n)
{
    for (int i = 0; i < sa_ncounts; i++)
        if (strcmp(sa_counts[i].key, key) == 0) {
            sa_counts[i].n = n;
            return;
        }
    if (sa_ncounts < (int)(sizeof sa_counts / sizeof sa_counts[0])) {
        sa_counts[sa_ncounts].key = key;
        sa_counts[sa_ncounts].n = n;
        sa_ncounts++;
    }
}

static void j_str(FILE *f, const char *s)
{
    (void)text_json_fput(f, s, strlen(s), 0);
}

char *selfaudit_metadata(const char *os_user, const char *db_role, int argc, char *const *argv,
                         int exit_status)
{
    char *buf = NULL, host[256], masked[2048];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return NULL;
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    fputs("{\"command\":", f);
    j_str(f, argv[0]);
    fputs(",\"args\":[", f);
    for (int i = 1; i < argc; i++) {
        selfaudit_mask(argv[i], masked, sizeof masked);
        if (i > 1)
            putc(',', f);
        j_str(f, masked);
    }
    fputs("],\"os_user\":", f);
    j_str(f, os_user);
    fputs(",\"db_role\":", f);
    j_str(f, db_role);
    fputs(",\"host\":", f);
    j_str(f, host);
    fprintf(f, ",\"pid\":%ld", (long)getpid());
    if (exit_status >= 0) {
        fprintf(f, ",\"exit_status\":%d", exit_status);
        if (sa_ncounts > 0) {
            fputs(",\"counts\":{", f);
            for (int i = 0; i < sa_ncounts; i++)
                fprintf(f, "%s\"%s\":%lld", i > 0 ? "," : "", sa_counts[i].key, sa_counts[i].n);
            putc('}', f);
        }
    } else {
        fputs(",\"recorded\":\"before_read\"", f);
    }
    putc('}', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

void selfaudit_db_role(const aq_config *cfg, const char *os_user, char *out, size_t cap)
{
    PQconninfoOption *opts = PQconninfoParse(cfg->database_url, NULL);
    const char *user = NULL;

    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        if (strcmp(o->keyword, "user") == 0 && o->val != NULL && o->val[0] != '\0')
            user = o->val;
    if (user == NULL)
        user = getenv("PGUSER");
    if (user == NULL || user[0] == '\0')
        user = os_user;
    snprintf(out, cap, "%s", user);
    PQconninfoFree(opts);
}

/* ------------------------------------------------------------------ recording */

static auditq *sa_q;  /* opened by selfaudit_before, used by _after */

/* The --tenant (or --tenant=T) the command was given, else NULL. */
static const char *sa_tenant(int argc, char *const *argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--tenant=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

/* libauditq's detail of a failure (it names the server and the cause),
 * else the code's name. */
static void sa_why(auditq_rc rc, char *out, size_t cap)
{
    const char *d = auditq_last_error();

    snprintf(out, cap, "%s", d[0] != '\0' ? d : auditq_strerror(rc));
}

static int sa_open(const aq_config *cfg, char *err, size_t errlen)
{
    auditq_config *c;
    char v[32];
    auditq_rc rc;

    if (sa_q != NULL)
        return 0;
    c = auditq_config_new();
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = auditq_config_set(c, "redis_url", cfg->self_audit_redis_url[0] != '\0'
                                               ? cfg->self_audit_redis_url : cfg->redis_url);
    if (rc == AUDITQ_OK)
        rc = auditq_config_set(c, "namespace", cfg->namespace_);
    snprintf(v, sizeof v, "%d", cfg->redis_connect_timeout_ms);
    if (rc == AUDITQ_OK)
        rc = auditq_config_set(c, "connect_timeout_ms", v);
    snprintf(v, sizeof v, "%d", cfg->redis_timeout_ms);
    if (rc == AUDITQ_OK)
        rc = auditq_config_set(c, "timeout_ms", v);
    if (rc == AUDITQ_OK)
        rc = auditq_config_set(c, "sync_connections", "1");
    if (rc == AUDITQ_OK)
        rc = auditq_open(c, &sa_q);
    auditq_config_free(c);
    if (rc != AUDITQ_OK) {
        sa_why(rc, err, errlen);
        sa_q = NULL;
        return -1;
    }
    return 0;
}

static int sa_record(const aq_config *cfg, const char *action, int argc, char *const *argv,
                     int exit_status, char *err, size_t errlen)
{
    char user[256], role[256], ua[64], id[AUDITQ_ID_SIZE];
    const char *tenant = sa_tenant(argc, argv);
    char *meta;
    auditq_event *ev;
    auditq_rc rc;

    if (sa_open(cfg, err, errlen) != 0)
        return -1;
    osuser_name(user, sizeof user);
    selfaudit_db_role(cfg, user, role, sizeof role);
    meta = selfaudit_metadata(user, role, argc, argv, exit_status);
    ev = auditq_event_new(action);
    if (meta == NULL || ev == NULL) {
        free(meta);
        auditq_event_free(ev);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(ua, sizeof ua, "auditqctl/%s", AUDITQ_VERSION);
    rc = auditq_event_set(ev, AUDITQ_ACTOR_ID, user);
    if (rc == AUDITQ_OK)
        rc = auditq_event_set(ev, AUDITQ_ACTOR_TYPE, "system");
    if (rc == AUDITQ_OK && tenant != NULL)
        rc = auditq_event_set(ev, AUDITQ_TENANT_ID, tenant);
    if (rc == AUDITQ_OK)
        rc = auditq_event_set(ev, AUDITQ_ENTITY_TYPE, "auditq");
    if (rc == AUDITQ_OK)
        rc = auditq_event_set(ev, AUDITQ_ENTITY_ID, cfg->namespace_);
    if (rc == AUDITQ_OK)
        rc = auditq_event_set(ev, AUDITQ_USER_AGENT, ua);
    if (rc == AUDITQ_OK && exit_status >= 0)
        rc = auditq_event_set(ev, AUDITQ_OUTCOME, exit_status == 0 ? "success" : "failure");
    if (rc == AUDITQ_OK)
        rc = auditq_event_set_json(ev, AUDITQ_METADATA, meta);
    if (rc == AUDITQ_OK)
        rc = auditq_event_set_priority(ev, AUDITQ_PRIORITY_HIGH);
    if (rc == AUDITQ_OK)
        rc = auditq_send(sa_q, ev, id);
    if (rc != AUDITQ_OK)
        sa_why(rc, err, errlen);
    auditq_event_free(ev);
    free(meta);
    return rc == AUDITQ_OK ? 0 : -1;
}

static void sa_close(void)
{
    (void)auditq_close(sa_q);
    sa_q = NULL;
}

int selfaudit_before(const aq_config *cfg, sa_kind kind, const char *action, int argc,
                     char *const *argv, char *err, size_t errlen)
{
    char why[768];
    auditq_rc rc = AUDITQ_OK;

    if (kind == SA_NONE)
        return 0;
    if (kind == SA_READ) {
        int r = sa_record(cfg, action, argc, argv, -1, why, sizeof why);

        sa_close();
        if (r != 0)
            snprintf(err, errlen, "refused: this read could not be recorded in the audit trail "
                     "(%s, self-audit): %s; bring Redis (%s) back and retry", action, why,
                     cfg->self_audit_redis_url[0] != '\0' ? "self_audit_redis_url" : "redis_url");
        return r;
    }
    if (sa_open(cfg, why, sizeof why) != 0 || (rc = auditq_ping(sa_q)) != AUDITQ_OK) {
        if (sa_q != NULL)
            sa_why(rc, why, sizeof why);
        sa_close();
        snprintf(err, errlen, "refused: this change could not be recorded in the audit trail "
                 "(%s, self-audit): %s; nothing was changed; bring Redis (%s) back and "
                 "retry", action, why,
                 cfg->self_audit_redis_url[0] != '\0' ? "self_audit_redis_url" : "redis_url");
        return -1;
    }
    return 0;
}

int selfaudit_after(const aq_config *cfg, sa_kind kind, const char *action, int argc,
                    char *const *argv, int exit_status, char *err, size_t errlen)
{
    char why[768];
    int r;

    if (kind != SA_CHANGE)
        return 0;
    r = sa_record(cfg, action, argc, argv, exit_status, why, sizeof why);
    sa_close();
    if (r != 0)
        snprintf(err, errlen, "the change was made (exit status %d) but is not in the audit "
                 "trail (%s, self-audit): %s; record it by hand", exit_status, action, why);
    return r;
}
