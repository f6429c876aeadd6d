/* test_selfevents.c -- the worker's self-audit events (worker/selfevents.c)
 * without servers: a writer's notes are dropped when worker_self_audit is
 * off, a dead letter of an auditq.worker.dead_letter event is only counted
 * (the loop rule), a fenced batch's notes are discarded and a settled
 * batch's handed over; a reload is queued only when a setting changed and
 * self-audit was or is on. The pushes themselves: it_89_worker_events.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "selfevents.h"

static aq_job job_with(const char *action)
{
    aq_job j;
    memset(&j, 0, sizeof j);
    j.id[0] = 0x01;
    j.f[AUDITQ_ACTION].p = action;
    j.f[AUDITQ_ACTION].len = (uint32_t)strlen(action);
    return j;
}

/* The /metrics value of name, from selfevents_metrics_render. */
static long long metric(selfevents *se, const char *name)
{
    aq_buf b = {0};
    char key[128];
    long long v = -1;

    assert_int_equal(0, selfevents_metrics_render(se, &b));
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(b.data, key);
    if (p != NULL)
        v = strtoll(p + strlen(key), NULL, 10);
    free(b.data);
    return v;
}

static void test_notes(void **state)
{
    (void)state;
    static worker w;
    aq_config c;
    selfevents_batch b;
    aq_job app = job_with("page.update"), self = job_with(SELFEVENTS_DEAD_LETTER);
    aq_job start = job_with(SELFEVENTS_START);
    selfevents *se;

    memset(&b, 0, sizeof b);
    config_defaults(&c);
    assert_int_equal(1, c.worker_self_audit);  /* on by default */
    w.cfg = c;
    snprintf(w.id, sizeof w.id, "h:1:abcdef");
    se = selfevents_setup(NULL, &w);
    assert_non_null(se);

    c.worker_self_audit = 0;
    selfevents_note(&b, &c, &app, 2, 3, "22P05", "rejected");
    assert_int_equal(0, b.n);

    c.worker_self_audit = 1;
    selfevents_note(&b, &c, &self, 1, 3, "23514", "rejected");
    assert_int_equal(0, b.n);
    assert_int_equal(1, b.suppressed);
    selfevents_note(&b, &c, &app, 2, 3, "22P05", "rejected");
    selfevents_note(&b, &c, NULL, 2, 0, NULL, "undecodable");
    assert_int_equal(2, b.n);
    assert_string_equal("01000000-0000-0000-0000-000000000000", b.v[0].event_id);
    assert_string_equal("22P05", b.v[0].sqlstate);
    assert_string_equal("", b.v[1].event_id);

    /* fenced: nothing handed over, nothing counted */
    selfevents_commit(se, &b, SELFEVENTS_DISCARD);
    assert_int_equal(0, b.n);
    assert_int_equal(0, b.suppressed);
    assert_int_equal(0, metric(se, "auditq_self_events_pending"));
    assert_int_equal(0, metric(se, "auditq_self_events_suppressed_total"));

    /* settled: handed over; a start event dead-lettered is recorded (one
     * level), a dead_letter event dead-lettered is not */
    selfevents_note(&b, &c, &self, 1, 3, "23514", "rejected");
    selfevents_note(&b, &c, &start, 1, 3, "23514", "rejected");
    selfevents_note(&b, &c, &app, 2, 3, "22P05", "rejected");
    selfevents_commit(se, &b, SELFEVENTS_SETTLED);
    assert_int_equal(0, b.n);
    assert_int_equal(2, metric(se, "auditq_self_events_pending"));
    assert_int_equal(1, metric(se, "auditq_self_events_suppressed_total"));
    assert_int_equal(0, metric(se, "auditq_self_events_failed_total"));
    assert_int_equal(0, metric(se, "auditq_self_events_total"));

    /* no lock taken, nothing lost, with se NULL */
    selfevents_note(&b, &c, &app, 2, 3, "22P05", "rejected");
    selfevents_commit(NULL, &b, SELFEVENTS_SETTLED);
    assert_int_equal(0, b.n);

    selfevents_batch_free(&b);
    selfevents_free(se);
}

static void test_reload(void **state)
{
    (void)state;
    static worker w;
    config_change ch;
    selfevents *se;

    config_defaults(&w.cfg);
    se = selfevents_setup(NULL, &w);
    assert_non_null(se);
    memset(&ch, 0, sizeof ch);
    ch.name = "batch_size";
    snprintf(ch.old_value, sizeof ch.old_value, "100");
    snprintf(ch.new_value, sizeof ch.new_value, "50");
    ch.applied = 1;

    selfevents_reload(se, 1, &ch, 0);           /* nothing changed: nothing */
    assert_int_equal(0, metric(se, "auditq_self_events_pending"));
    w.cfg.worker_self_audit = 0;
    selfevents_reload(se, 0, &ch, 1);           /* off before and after: nothing */
    assert_int_equal(0, metric(se, "auditq_self_events_pending"));
    selfevents_reload(se, 1, &ch, 1);           /* switched off: recorded */
    assert_int_equal(1, metric(se, "auditq_self_events_pending"));
    w.cfg.worker_self_audit = 1;
    selfevents_reload(se, 0, &ch, 1);           /* switched on: recorded */
    assert_int_equal(2, metric(se, "auditq_self_events_pending"));
    selfevents_free(se);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notes),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
