-- 003_roles.sql -- grant the worker's and the readers' roles exactly what
-- they need: auditq_grant_writer(role) and auditq_grant_reader(role).
--
-- The deployment has three roles (docs/SECURITY.md):
--   owner   runs `auditqctl migrate`, owns audit_events and its partitions,
--           runs `auditqctl partitions ensure` and `retention run`.
--   writer  auditq-worker: INSERT and what the write path needs, nothing
--           more. It cannot UPDATE, DELETE, TRUNCATE (no privilege, and the
--           append-only triggers refuse even the owner) and cannot ALTER,
--           DROP or disable those triggers (only the owner can).
--   reader  `auditqctl query` and auditors: SELECT.
-- Roles are cluster-wide objects with passwords and login rules that
-- belong to the DBA, so migrations do not create them; the DBA creates
-- them (CREATE ROLE ... LOGIN PASSWORD ...) and the owner runs
--   SELECT auditq_grant_writer('auditq_writer');
--   SELECT auditq_grant_reader('auditq_reader');
-- or `auditqctl grants --writer auditq_writer --reader auditq_reader`.
-- Both are idempotent: run them again after every migrate that adds
-- objects (the release notes say when).
--
-- What the write path needs, found by running the worker as such a role
-- against PostgreSQL 15 (tests/integration/it_88_security.sh):
--   USAGE on the schema;
--   INSERT on audit_events (rows are routed to partitions through the
--     parent, which is the only table whose privileges are checked);
--   SELECT on the two columns (event_id, occurred_at): INSERT ... ON
--     CONFLICT (event_id, occurred_at) DO NOTHING needs SELECT on its
--     conflict target ("permission denied for table audit_events"
--     without it). Not on the other columns: the writer cannot read what
--     it wrote;
--   TEMPORARY on the database: the COPY method stages each batch in a
--     temporary table (worker/pgw.c, auditq_stage);
--   EXECUTE on auditq_ensure_partitions(int): the worker's partition
--     upkeep. It is SECURITY DEFINER (runs as the owner) and takes only a
--     bounded month count, so the writer creates next months' partitions,
--     and moves those months' rows out of DEFAULT, without owning anything.
--
-- Both functions are SECURITY INVOKER and not executable by PUBLIC: they
-- only issue GRANTs, which succeed only for the owner (or a superuser). A
-- GRANT without the right to grant is merely a WARNING in PostgreSQL, so
-- each function checks the privileges afterwards and raises if any is
-- missing, rather than report a success that did not happen.

-- Refuses a role that would defeat the append-only protection: the owner
-- (or a member of it) can disable the triggers, a superuser bypasses
-- everything. p_what names the function for the message.
CREATE FUNCTION auditq_check_grantee(p_role regrole, p_what text) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    owner_oid oid;
BEGIN
    IF p_role IS NULL THEN
        RAISE EXCEPTION '%: role must not be NULL', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.relowner INTO owner_oid FROM pg_class c WHERE c.oid = 'audit_events'::regclass;
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = p_role) THEN
        RAISE EXCEPTION '%: role % is a superuser, which bypasses every privilege and trigger', p_what, p_role
            USING ERRCODE = 'invalid_grant_operation',
                  HINT = 'Create a plain role for it: CREATE ROLE name LOGIN PASSWORD ''...''.';
    END IF;
    IF pg_has_role(p_role, owner_oid, 'USAGE') THEN
        RAISE EXCEPTION '%: role % owns audit_events (or is a member of its owner %), so it could disable the append-only triggers',
                p_what, p_role, owner_oid::regrole
            USING ERRCODE = 'invalid_grant_operation',
                  HINT = 'Use a separate role for the worker and for readers: CREATE ROLE name LOGIN PASSWORD ''...''.';
    END IF;
END;
$$;

CREATE FUNCTION auditq_grant_writer(p_role regrole) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    r       text;
    missing text[] := '{}';
BEGIN
    PERFORM auditq_check_grantee(p_role, 'auditq_grant_writer');
    r := quote_ident((SELECT rolname FROM pg_roles WHERE oid = p_role));
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', current_schema(), r);
    -- Exactly INSERT: take back anything else a previous grant gave,
    -- column SELECT included. The worker's INSERT ... ON CONFLICT DO NOTHING
    -- names no conflict target, which is what lets it run without SELECT.
    EXECUTE format('REVOKE SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events FROM %s', r);
    EXECUTE format('REVOKE SELECT (event_id, occurred_at) ON audit_events FROM %s', r);
    EXECUTE format('GRANT INSERT ON audit_events TO %s', r);
    -- PUBLIC has TEMPORARY on a new database; a hardened one may not.
    IF NOT has_database_privilege(p_role, current_database(), 'TEMPORARY') THEN
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %s', current_database(), r);
    END IF;
    -- Only the writers (and the owner) may create partitions.
    REVOKE EXECUTE ON FUNCTION auditq_ensure_partitions(int) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION auditq_ensure_partitions(int) TO %s', r);

    IF NOT has_schema_privilege(p_role, current_schema(), 'USAGE') THEN
        missing := missing || format('USAGE on schema %I', current_schema());
    END IF;
    IF NOT has_table_privilege(p_role, 'audit_events', 'INSERT') THEN
        missing := missing || 'INSERT on audit_events'::text;
    END IF;
    IF has_any_column_privilege(p_role, 'audit_events', 'SELECT') THEN
        RAISE EXCEPTION 'auditq_grant_writer: % can still read audit_events (through PUBLIC or a role it belongs to)', p_role
            USING ERRCODE = 'invalid_grant_operation',
                  HINT = 'REVOKE SELECT ON audit_events FROM PUBLIC (or from that role); the writer needs INSERT only.';
    END IF;
    IF NOT has_database_privilege(p_role, current_database(), 'TEMPORARY') THEN
        missing := missing || format('TEMPORARY on database %I', current_database());
    END IF;
    IF NOT has_function_privilege(p_role, 'auditq_ensure_partitions(int)', 'EXECUTE') THEN
        missing := missing || 'EXECUTE on auditq_ensure_partitions(int)'::text;
    END IF;
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'auditq_grant_writer: % still lacks %', p_role, array_to_string(missing, ', ')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run it as the owner of audit_events (the role that ran auditqctl migrate); '
                         'TEMPORARY needs the owner of the database.';
    END IF;
    RETURN format('writer %s: USAGE on schema %I, INSERT only on audit_events, '
                  'TEMPORARY on database %I, EXECUTE on auditq_ensure_partitions(int)',
                  p_role, current_schema(), current_database());
END;
$$;

CREATE FUNCTION auditq_grant_reader(p_role regrole) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    r text;
BEGIN
    PERFORM auditq_check_grantee(p_role, 'auditq_grant_reader');
    r := quote_ident((SELECT rolname FROM pg_roles WHERE oid = p_role));
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', current_schema(), r);
    EXECUTE format('GRANT SELECT ON audit_events TO %s', r);
    IF NOT (has_schema_privilege(p_role, current_schema(), 'USAGE') AND
            has_table_privilege(p_role, 'audit_events', 'SELECT')) THEN
        RAISE EXCEPTION 'auditq_grant_reader: % still lacks USAGE on schema % or SELECT on audit_events',
                p_role, current_schema()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run it as the owner of audit_events (the role that ran auditqctl migrate).';
    END IF;
    RETURN format('reader %s: USAGE on schema %I, SELECT on audit_events', p_role, current_schema());
END;
$$;

REVOKE EXECUTE ON FUNCTION auditq_check_grantee(regrole, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auditq_grant_writer(regrole) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auditq_grant_reader(regrole) FROM PUBLIC;

-- Pin search_path like the other functions (see 001), pg_temp last.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION auditq_check_grantee(regrole, text) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION auditq_grant_writer(regrole) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION auditq_grant_reader(regrole) SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
