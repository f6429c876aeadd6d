-- 006_holds.sql -- legal holds (issue 13 part 3; docs/SECURITY.md section 9).
--
-- A legal hold keeps events from being deleted whatever the retention
-- policy says: retention (common/retention_run.c, `auditqctl retention
-- run` and the worker's retention thread) skips every month that holds a
-- row under an active hold -- no archive, merge, export or drop, and no
-- integrity record -- and says which hold keeps it.
--
-- What is here:
--   auditq_hold_history   the append-only history: one row per `hold add`
--       (event 'add': the scope -- a tenant, optionally one actor and an
--       occurred_at window -- and the reason) and one per `hold release`
--       (event 'release': which hold, and why). Nothing is ever updated or
--       deleted: who placed and who lifted a hold, when and why, stays.
--   auditq_holds_active   the holds added and not released, derived from
--       the history (a view: there is no second copy to disagree with it).
--   auditq_hold_add / auditq_hold_release   the two ways in, used by
--       auditqctl; they check what a constraint cannot (a release names an
--       added hold, once) and record the PostgreSQL role that acted.
--
-- Objects are created in the connection's current schema, like 001.

CREATE SEQUENCE auditq_hold_id_seq;

CREATE TABLE auditq_hold_history (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hold_id     bigint      NOT NULL,
    event       text        NOT NULL CHECK (event IN ('add', 'release')),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    db_role     text        NOT NULL DEFAULT session_user,
    os_user     text,                              -- as auditqctl saw it
    reason      text        NOT NULL CHECK (length(btrim(reason)) > 0),
    -- the scope, on 'add' rows only
    tenant_id   text,
    actor_id    text,
    since       timestamptz,                       -- occurred_at >= since
    until       timestamptz,                       -- occurred_at <  until
    CHECK (event = 'release' OR tenant_id IS NOT NULL),
    CHECK (event = 'add' OR (tenant_id IS NULL AND actor_id IS NULL AND since IS NULL AND until IS NULL)),
    CHECK (since IS NULL OR until IS NULL OR since < until)
);
-- One add and at most one release per hold.
CREATE UNIQUE INDEX auditq_hold_history_once ON auditq_hold_history (hold_id, event);

CREATE FUNCTION auditq_hold_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'auditq_hold_history is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT    = 'Holds are never changed or deleted: release one with auditqctl hold release ID --reason ...';
END;
$$;
CREATE TRIGGER auditq_hold_history_append_only BEFORE UPDATE OR DELETE ON auditq_hold_history
    FOR EACH ROW EXECUTE FUNCTION auditq_hold_refuse();
CREATE TRIGGER auditq_hold_history_no_truncate BEFORE TRUNCATE ON auditq_hold_history
    FOR EACH STATEMENT EXECUTE FUNCTION auditq_hold_refuse();

-- A release must name a hold that was added (the unique index refuses a
-- second release).
CREATE FUNCTION auditq_hold_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event = 'release' AND NOT EXISTS (
            SELECT 1 FROM auditq_hold_history h WHERE h.hold_id = NEW.hold_id AND h.event = 'add') THEN
        RAISE EXCEPTION 'no legal hold %', NEW.hold_id
            USING ERRCODE = 'no_data_found',
                  HINT    = 'auditqctl hold list shows the holds and their ids.';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER auditq_hold_history_check BEFORE INSERT ON auditq_hold_history
    FOR EACH ROW EXECUTE FUNCTION auditq_hold_check();

CREATE VIEW auditq_holds_active AS
    SELECT a.hold_id, a.at AS added_at, a.db_role AS added_by, a.os_user AS added_by_os, a.reason,
           a.tenant_id, a.actor_id, a.since, a.until
      FROM auditq_hold_history a
     WHERE a.event = 'add'
       AND NOT EXISTS (SELECT 1 FROM auditq_hold_history r
                        WHERE r.hold_id = a.hold_id AND r.event = 'release');

CREATE FUNCTION auditq_hold_add(p_tenant text, p_actor text, p_since timestamptz, p_until timestamptz,
                                p_reason text, p_os_user text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    id bigint := nextval('auditq_hold_id_seq');
BEGIN
    INSERT INTO auditq_hold_history (hold_id, event, os_user, reason, tenant_id, actor_id, since, until)
    VALUES (id, 'add', p_os_user, p_reason, p_tenant, p_actor, p_since, p_until);
    RETURN id;
END;
$$;

-- Returns the released hold's scope as text, for the caller to report.
CREATE FUNCTION auditq_hold_release(p_hold bigint, p_reason text, p_os_user text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    scope text;
BEGIN
    -- Serialises two releases of one hold: the second sees the first.
    LOCK TABLE auditq_hold_history IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM auditq_hold_history WHERE hold_id = p_hold AND event = 'release') THEN
        RAISE EXCEPTION 'legal hold % is already released', p_hold
            USING ERRCODE = 'unique_violation',
                  HINT    = 'auditqctl hold list --all shows its history.';
    END IF;
    INSERT INTO auditq_hold_history (hold_id, event, os_user, reason)
    VALUES (p_hold, 'release', p_os_user, p_reason);
    SELECT 'tenant ' || tenant_id || coalesce(', actor ' || actor_id, '')
           || coalesce(', since ' || to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', '')
           || coalesce(', until ' || to_char(until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', '')
      INTO scope FROM auditq_hold_history WHERE hold_id = p_hold AND event = 'add';
    RETURN scope;
END;
$$;
