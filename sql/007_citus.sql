-- 007_citus.sql -- auditq on Citus (docs/SCALING.md, "Past one PostgreSQL:
-- Citus"): with audit_events distributed (create_distributed_table on
-- event_id), every function that does DDL on it, or grants on it, must do
-- it the way Citus accepts. On plain PostgreSQL nothing changes: each
-- difference is behind auditq_citus().
--
-- What Citus 13 refused (issue 16's trial on a real cluster):
--   * a partition with triggers attached to a distributed table ("cannot
--     distribute relation ... because it has triggers"): the functions set
--     citus.enable_unsafe_triggers for their own transaction only;
--   * a trigger addressed by name (the shards' triggers carry the shard
--     id): DISABLE/ENABLE TRIGGER USER instead;
--   * GRANT/REVOKE on a column list: the writer's grant skips the column
--     REVOKE (none can exist there) and still checks that no column is
--     readable.
-- The worker's hourly partition upkeep runs in a thread of its own with a
-- 60 s limit (worker/partkeep.c): Citus' partition DDL took 1.1-1.3 s
-- idle, over the 2.5 s the main loop could give it once batches queued.
-- Retention (common/retention_run.c) sets the same setting for its own
-- transactions when the extension is there.

-- True when the citus extension is installed and audit_events is
-- distributed. pg_dist_partition exists only with Citus, hence EXECUTE.
CREATE FUNCTION auditq_citus() RETURNS boolean
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    d boolean := false;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1)'
       INTO d USING 'audit_events'::regclass;
    RETURN d;
END;
$$;

-- 002's function, with the Citus differences above (CREATE OR REPLACE
-- keeps its owner and grants: none to PUBLIC; its settings are restated).
CREATE OR REPLACE FUNCTION auditq_partition_month(m_from timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    parent  regclass := 'audit_events'::regclass;
    m_to    timestamptz;
    part    text;
    existing regclass;
    def     oid;
    cols    text;
    moved   bigint := 0;
    has_rows boolean;
    trig    record;
    off     text[] := '{}';
    states  "char"[] := '{}';
    citus   boolean := auditq_citus();
    stray   text;
BEGIN
    IF m_from IS NULL OR m_from <> date_trunc('month', m_from) THEN
        RAISE EXCEPTION 'auditq_partition_month: % is not the first instant of a month (UTC)', m_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    m_to := m_from + interval '1 month';
    part := 'audit_events_' || to_char(m_from, 'YYYY_MM');

    -- The same key as auditq_ensure_partitions: partition DDL never runs
    -- twice at once, and a loser sees what the winner made.
    PERFORM pg_advisory_xact_lock(97113112097114116);
    -- Citus distributes a table attached to a distributed one, and refuses
    -- when it has triggers unless this is on (for this transaction only).
    IF citus THEN
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;

    existing := to_regclass(quote_ident(part));
    IF existing IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = existing AND inhparent = parent) THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'table % exists but is not a partition of audit_events', part
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Attach it (ALTER TABLE audit_events ATTACH PARTITION ...) or rename it.';
    END IF;

    -- Standalone first: indexes are left to ATTACH, which builds the ones
    -- declared on audit_events after the rows are in (faster than index
    -- maintenance row by row) and clones the row triggers.
    EXECUTE format(
        'CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
        'INCLUDING STORAGE) '
        'WITH (autovacuum_vacuum_insert_scale_factor = 0.02, '
        'autovacuum_analyze_scale_factor = 0.02, autovacuum_freeze_min_age = 0)',
        part);
    -- Statement triggers are not cloned by ATTACH (see 001).
    EXECUTE format(
        'CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON %I '
        'FOR EACH STATEMENT EXECUTE FUNCTION auditq_refuse_modification()', part);

    SELECT p.partdefid INTO def FROM pg_partitioned_table p WHERE p.partrelid = parent;
    IF def IS NOT NULL AND def <> 0 THEN
        -- ATTACH takes this lock anyway; taking it now, before looking,
        -- means no insert can add a row of this month after we moved them.
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', def::regclass);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE occurred_at >= $1 AND occurred_at < $2)',
                       def::regclass)
           INTO has_rows USING m_from, m_to;
        IF has_rows THEN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute
             WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped;
            -- Our append-only row triggers on DEFAULT (the clone of
            -- audit_events_append_only, whatever it is called): disable the
            -- enabled ones, remember their state to restore it exactly.
            -- On Citus a trigger cannot be named: the shards' triggers
            -- carry the shard id ("trigger audit_events_append_only_103593
            -- ... does not exist"). DISABLE/ENABLE TRIGGER USER switch all
            -- of DEFAULT's user triggers, so first make sure they are all
            -- on: ENABLE would otherwise turn on one an operator turned off.
            IF citus THEN
                SELECT string_agg(t.tgname, ', ') INTO stray
                  FROM pg_trigger t WHERE t.tgrelid = def AND NOT t.tgisinternal AND t.tgenabled = 'D';
                IF stray IS NOT NULL THEN
                    RAISE EXCEPTION 'auditq_partition_month: trigger(s) % on % are disabled; cannot move its rows of %',
                            stray, def::regclass, to_char(m_from, 'YYYY-MM')
                        USING ERRCODE = 'object_not_in_prerequisite_state',
                              HINT = 'Enable them (ALTER TABLE ... ENABLE TRIGGER USER) or move the rows by hand.';
                END IF;
                EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', def::regclass);
            END IF;
            FOR trig IN
                SELECT t.tgname, t.tgenabled
                  FROM pg_trigger t
                 WHERE t.tgrelid = def
                   AND t.tgfoid = 'auditq_refuse_modification'::regproc
                   AND (t.tgtype & 8) <> 0          -- TRIGGER_TYPE_DELETE
                   AND t.tgenabled <> 'D'
                   AND NOT citus
            LOOP
                EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', def::regclass, trig.tgname);
                off := off || trig.tgname::text;
                states := states || trig.tgenabled;
            END LOOP;
            EXECUTE format(
                'WITH moved AS (DELETE FROM %s WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING %s) '
                'INSERT INTO %I (%s) SELECT %s FROM moved',
                def::regclass, cols, part, cols, cols)
               USING m_from, m_to;
            GET DIAGNOSTICS moved = ROW_COUNT;
            IF citus THEN
                EXECUTE format('ALTER TABLE %s ENABLE TRIGGER USER', def::regclass);
            END IF;
            FOR i IN 1 .. coalesce(array_length(off, 1), 0) LOOP
                EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', def::regclass,
                               CASE states[i] WHEN 'A' THEN 'ALWAYS' WHEN 'R' THEN 'REPLICA' ELSE '' END,
                               off[i]);
            END LOOP;
        END IF;
    END IF;

    EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, m_from, m_to);
    RETURN moved;
END;
$$;


-- 003's writer grant (005 renamed it auditq_grant_writer_base and calls it
-- first), with the column REVOKE skipped on Citus.
CREATE OR REPLACE FUNCTION auditq_grant_writer_base(p_role regrole) RETURNS text
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
    -- Citus refuses GRANT/REVOKE on a column list ("grant/revoke on column
    -- list is currently unsupported"), so it cannot have granted one
    -- either: the check below still proves no column is readable.
    IF NOT auditq_citus() THEN
        EXECUTE format('REVOKE SELECT (event_id, occurred_at) ON audit_events FROM %s', r);
    END IF;
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


-- Pin search_path like the other functions (see 001), pg_temp last:
-- CREATE OR REPLACE resets it.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION auditq_citus() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION auditq_partition_month(timestamptz) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION auditq_grant_writer_base(regrole) SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
