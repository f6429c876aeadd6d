-- 005_integrity.sql -- evidence for every stored event, in the same
-- transaction as the event (issue 12; docs/INTEGRITY.md is the reference).
--
-- What is here:
--   auditq_entry_field, auditq_event_entry   the canonical event entry
--       (type 0x01) of a row, byte-identical to common/entry.c's encoder:
--       the leaf hash of an event is SHA-256(0x00 || entry) (RFC 9162).
--   audit_events_evidence   a statement-level AFTER INSERT trigger with a
--       transition table: per INSERT statement that stored rows, one row in
--       auditq_evidence_batch with their event ids, occurred_at values and
--       leaf hashes, ordered by (event_id, occurred_at). The transition
--       table holds exactly the rows inserted -- not those ON CONFLICT
--       skipped (a redelivery is not covered twice), and a savepoint
--       rolled back takes its evidence with it. The worker's write path is
--       unchanged.
--   auditq_evidence_retention   what retention removed (common/retention.c
--       calls auditq_evidence_retain before it drops or detaches a month).
--   auditq_seal_assignment, auditq_checkpoint   written by the sequencer
--       (worker/seal.c): which pending item got which leaf indexes, and the
--       signed checkpoints with the tree's frontier.
-- Every evidence table is insert-only: UPDATE, DELETE and TRUNCATE are
-- refused, like audit_events (and like there, a superuser can get past
-- that: what stops them is the signatures and the published checkpoints,
-- which `auditqctl verify` checks).
--
-- Ordering: batches and retention records draw their ids from one
-- sequence; the sequencer appends committed, not yet sequenced items in id
-- order. Ids are not committed in order (writers run in parallel), so an
-- item committed late after a higher id was sequenced is simply sequenced
-- later: the tree order is the assignment's, not the id's.
--
-- Objects are created in the connection's current schema, like 001.

CREATE SEQUENCE auditq_evidence_seq;

-- One row per INSERT statement that stored rows. leaves = n leaf hashes of
-- 32 bytes, in the order of event_ids. The writer role may insert and read
-- these: they hold ids and hashes, never event content.
CREATE TABLE auditq_evidence_batch (
    batch_id        bigint      PRIMARY KEY DEFAULT nextval('auditq_evidence_seq'),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    n               int         NOT NULL CHECK (n > 0),
    event_ids       uuid[]      NOT NULL,
    occurred_ats    timestamptz[] NOT NULL,
    leaves          bytea       NOT NULL,
    min_occurred_at timestamptz NOT NULL,
    max_occurred_at timestamptz NOT NULL,
    CHECK (cardinality(event_ids) = n AND cardinality(occurred_ats) = n
           AND octet_length(leaves) = 32 * n)
);
-- `verify --event ID` and retention find the batches that can hold an
-- event of a given time without unnesting every batch.
CREATE INDEX auditq_evidence_batch_occurred_idx ON auditq_evidence_batch
    USING gist (tstzrange(min_occurred_at, max_occurred_at, '[]'));

-- Rows removed from audit_events by retention (a month dropped, or
-- detached into archive_schema): row_count and the SHA-256 over the leaf
-- hashes of the removed rows, recomputed from the rows as they were at
-- removal, ordered by (event_id, occurred_at). Sequenced into the tree as a
-- type 0x02 entry (auditq_retention_entry).
CREATE TABLE auditq_evidence_retention (
    record_id   bigint      PRIMARY KEY DEFAULT nextval('auditq_evidence_seq'),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    month_from  timestamptz NOT NULL,
    month_to    timestamptz NOT NULL,
    table_name  text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('drop', 'detach')),
    row_count   bigint      NOT NULL,
    leaves_hash bytea       NOT NULL CHECK (octet_length(leaves_hash) = 32)
);

-- item_id: a batch_id or a record_id. Leaves [first_leaf, first_leaf + n)
-- of the tree; tree_size: the first checkpoint that covers them.
CREATE TABLE auditq_seal_assignment (
    item_id    bigint PRIMARY KEY,
    kind       text   NOT NULL CHECK (kind IN ('batch', 'retention')),
    first_leaf bigint NOT NULL UNIQUE,
    n          int    NOT NULL CHECK (n > 0),
    tree_size  bigint NOT NULL
);

-- One row per signed checkpoint. note: the whole signed note (C2SP
-- tlog-checkpoint); frontier: merkle_frontier_encode of the tree at
-- tree_size (the sequencer's state, and the start of an incremental
-- verify once the note's signature and root check out).
CREATE TABLE auditq_checkpoint (
    tree_size  bigint      PRIMARY KEY CHECK (tree_size > 0),
    events     bigint      NOT NULL,
    root       bytea       NOT NULL CHECK (octet_length(root) = 32),
    frontier   bytea       NOT NULL,
    note       text        NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX auditq_checkpoint_signed_at_idx ON auditq_checkpoint (signed_at);

CREATE FUNCTION auditq_evidence_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT    = 'Integrity evidence is never changed; see docs/INTEGRITY.md.';
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['auditq_evidence_batch', 'auditq_evidence_retention',
                             'auditq_seal_assignment', 'auditq_checkpoint'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION auditq_evidence_refuse()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION auditq_evidence_refuse()', t || '_no_truncate', t);
    END LOOP;
END;
$$;

-- ---- the canonical entries ---------------------------------------------

-- The canonical form needs the UTF-8 bytes of each text, and octet_length
-- below counts bytes in the database encoding: refuse any other encoding
-- rather than hash something a verifier cannot reproduce.
DO $$
BEGIN
    IF (SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()) <> 'UTF8' THEN
        RAISE EXCEPTION 'auditq integrity evidence needs a UTF8 database; % is %', current_database(),
            (SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database())
            USING HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0, and migrate there.';
    END IF;
END;
$$;

-- One field: 4-byte big-endian length + the UTF-8 bytes, or FF FF FF FF
-- for NULL (int4send(NULL) || ... is NULL, hence the coalesce). Written
-- without CASE so that PostgreSQL inlines it into the trigger's query
-- (measured: about 5x faster than a CASE with two convert_to calls).
CREATE FUNCTION auditq_entry_field(t text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(int4send(octet_length(t)) || convert_to(t, 'UTF8'), '\xffffffff'::bytea);

-- Integer microseconds since the epoch, as decimal text.
CREATE FUNCTION auditq_entry_us(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ((extract(epoch FROM ts) * 1000000)::bigint)::text;

-- The event entry v1 of a row, from its 18 columns in entry order. Taking
-- columns rather than the row type lets it read partitions and detached
-- months, whose row types are their own.
CREATE FUNCTION auditq_event_entry(
    event_id uuid, occurred_at timestamptz, received_at timestamptz, priority text,
    tenant_id text, actor_id text, actor_type text, action text, entity_type text,
    entity_id text, outcome text, source_ip text, user_agent text, request_id text,
    session_id text, changes jsonb, metadata jsonb, clock_flag text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN '\x01'::bytea
    || auditq_entry_field(event_id::text)
    || auditq_entry_field(auditq_entry_us(occurred_at))
    || auditq_entry_field(auditq_entry_us(received_at))
    || auditq_entry_field(priority)
    || auditq_entry_field(tenant_id)
    || auditq_entry_field(actor_id)
    || auditq_entry_field(actor_type)
    || auditq_entry_field(action)
    || auditq_entry_field(entity_type)
    || auditq_entry_field(entity_id)
    || auditq_entry_field(outcome)
    || auditq_entry_field(source_ip)
    || auditq_entry_field(user_agent)
    || auditq_entry_field(request_id)
    || auditq_entry_field(session_id)
    || auditq_entry_field(changes::text)
    || auditq_entry_field(metadata::text)
    || auditq_entry_field(clock_flag);

-- The column list that feeds auditq_event_entry from a table aliased t.
-- (Kept in one place for the functions below.)
CREATE FUNCTION auditq_event_entry_args(alias text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT string_agg(format('%I.%I', alias, c), ', ' ORDER BY o)
          FROM unnest(ARRAY['event_id', 'occurred_at', 'received_at', 'priority', 'tenant_id',
                            'actor_id', 'actor_type', 'action', 'entity_type', 'entity_id',
                            'outcome', 'source_ip', 'user_agent', 'request_id', 'session_id',
                            'changes', 'metadata', 'clock_flag']) WITH ORDINALITY AS u(c, o));

-- The retention entry (type 0x02) of a record: record_id, month
-- ("YYYY-MM", UTC), table, action, row_count, leaves_hash (64 lowercase
-- hex digits), each framed like an event field.
CREATE FUNCTION auditq_retention_entry(r auditq_evidence_retention) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN '\x02'::bytea
    || auditq_entry_field(r.record_id::text)
    || auditq_entry_field(to_char(r.month_from AT TIME ZONE 'UTC', 'YYYY-MM'))
    || auditq_entry_field(r.table_name)
    || auditq_entry_field(r.action)
    || auditq_entry_field(r.row_count::text)
    || auditq_entry_field(encode(r.leaves_hash, 'hex'));

-- ---- capturing evidence ------------------------------------------------

-- SECURITY DEFINER: runs as the owner, so the trigger works whatever the
-- inserting role may do on the evidence table, and a caller cannot point it
-- at objects of its own (search_path pinned below).
CREATE FUNCTION auditq_evidence_capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $$
BEGIN
    -- One ordered subquery feeds all three aggregates in one pass, so the
    -- arrays' positions correspond whatever the order; sorting once here
    -- rather than in each aggregate (ORDER BY inside array_agg sorts per
    -- aggregate) took the trigger's cost from about +28 % to +17 % of the
    -- backend's CPU per stored row (BENCHMARKS.md, scripts/bench-seal-cpu.py).
    INSERT INTO auditq_evidence_batch (n, event_ids, occurred_ats, leaves, min_occurred_at, max_occurred_at)
    SELECT count(*), array_agg(s.event_id), array_agg(s.occurred_at), string_agg(s.leaf, ''::bytea),
           min(s.occurred_at), max(s.occurred_at)
      FROM (SELECT i.event_id, i.occurred_at,
                   sha256('\x00'::bytea || auditq_event_entry(
                          i.event_id, i.occurred_at, i.received_at, i.priority, i.tenant_id,
                          i.actor_id, i.actor_type, i.action, i.entity_type, i.entity_id,
                          i.outcome, i.source_ip, i.user_agent, i.request_id, i.session_id,
                          i.changes, i.metadata, i.clock_flag)) AS leaf
              FROM auditq_inserted i
             ORDER BY i.event_id, i.occurred_at) s
    HAVING count(*) > 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_events_evidence
    AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS auditq_inserted
    FOR EACH STATEMENT EXECUTE FUNCTION auditq_evidence_capture();

-- Rows stored before this migration get evidence now, 10,000 per batch, in
-- (occurred_at, event_id) order: from here on every row is covered.
INSERT INTO auditq_evidence_batch (n, event_ids, occurred_ats, leaves, min_occurred_at, max_occurred_at)
SELECT count(*),
       array_agg(s.event_id ORDER BY s.event_id, s.occurred_at),
       array_agg(s.occurred_at ORDER BY s.event_id, s.occurred_at),
       string_agg(sha256('\x00'::bytea || auditq_event_entry(
                      s.event_id, s.occurred_at, s.received_at, s.priority, s.tenant_id,
                      s.actor_id, s.actor_type, s.action, s.entity_type, s.entity_id,
                      s.outcome, s.source_ip, s.user_agent, s.request_id, s.session_id,
                      s.changes, s.metadata, s.clock_flag)),
                  ''::bytea ORDER BY s.event_id, s.occurred_at),
       min(s.occurred_at), max(s.occurred_at)
  FROM (SELECT e.*, (row_number() OVER (ORDER BY e.occurred_at, e.event_id) - 1) / 10000 AS chunk
          FROM audit_events e) s
 GROUP BY s.chunk
 ORDER BY s.chunk;

-- ---- retention ---------------------------------------------------------

-- Records that the rows of p_table (a month of audit_events, attached or
-- archived) are about to leave audit_events: call it in the transaction
-- that drops or detaches the table, before doing so. Returns the record
-- id. The hash is over the leaf hashes recomputed from the rows as they
-- are now; verify compares it with the evidence of the leaves that went
-- missing (a row altered before it was removed shows as a mismatch).
-- SECURITY INVOKER, owner only (retention runs as the owner).
CREATE FUNCTION auditq_evidence_retain(p_table regclass, p_month_from timestamptz, p_action text)
RETURNS bigint
LANGUAGE plpgsql
SET TimeZone = 'UTC'
AS $$
DECLARE
    cnt bigint;
    h   bytea;
    id  bigint;
BEGIN
    EXECUTE format(
        'SELECT count(*), sha256(coalesce(string_agg(sha256(''\x00''::bytea || auditq_event_entry(%s)), '
        '''''::bytea ORDER BY t.event_id, t.occurred_at), ''''::bytea)) FROM %s t',
        auditq_event_entry_args('t'), p_table)
       INTO cnt, h;
    INSERT INTO auditq_evidence_retention (month_from, month_to, table_name, action, row_count, leaves_hash)
    VALUES (p_month_from, p_month_from + interval '1 month', p_table::text, p_action, cnt, h)
    RETURNING record_id INTO id;
    RETURN id;
END;
$$;
REVOKE EXECUTE ON FUNCTION auditq_evidence_retain(regclass, timestamptz, text) FROM PUBLIC;

-- ---- grants ------------------------------------------------------------

-- auditq_grant_writer gains the evidence: the worker's sequencer reads
-- pending evidence and writes assignments and checkpoints. The writer still
-- cannot read audit_events (the base function checks it). The function of
-- 003 is kept under another name and called first, so whatever it grants
-- and checks stays as it is.
ALTER FUNCTION auditq_grant_writer(regrole) RENAME TO auditq_grant_writer_base;

CREATE FUNCTION auditq_grant_writer(p_role regrole) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    base text;
    r    text;
    t    text;
BEGIN
    base := auditq_grant_writer_base(p_role);
    r := quote_ident((SELECT rolname FROM pg_roles WHERE oid = p_role));
    EXECUTE format('GRANT SELECT, INSERT ON auditq_evidence_batch, auditq_evidence_retention, '
                   'auditq_seal_assignment, auditq_checkpoint TO %s', r);
    EXECUTE format('GRANT USAGE ON SEQUENCE auditq_evidence_seq TO %s', r);
    FOREACH t IN ARRAY ARRAY['auditq_evidence_batch', 'auditq_evidence_retention',
                             'auditq_seal_assignment', 'auditq_checkpoint'] LOOP
        IF NOT (has_table_privilege(p_role, t, 'SELECT') AND has_table_privilege(p_role, t, 'INSERT')) THEN
            RAISE EXCEPTION 'auditq_grant_writer: % still lacks SELECT, INSERT on %', p_role, t
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Run it as the owner of audit_events (the role that ran auditqctl migrate).';
        END IF;
        IF has_table_privilege(p_role, t, 'UPDATE') OR has_table_privilege(p_role, t, 'DELETE')
           OR has_table_privilege(p_role, t, 'TRUNCATE') THEN
            RAISE EXCEPTION 'auditq_grant_writer: % may change %, which is insert-only', p_role, t
                USING ERRCODE = 'invalid_grant_operation',
                      HINT = format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM that role (or PUBLIC).', t);
        END IF;
    END LOOP;
    RETURN base || '; SELECT, INSERT on the integrity evidence (hashes and ids only)';
END;
$$;
REVOKE EXECUTE ON FUNCTION auditq_grant_writer(regrole) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auditq_grant_writer_base(regrole) FROM PUBLIC;

-- The reader (auditors running `auditqctl verify`) reads the evidence too.
ALTER FUNCTION auditq_grant_reader(regrole) RENAME TO auditq_grant_reader_base;

CREATE FUNCTION auditq_grant_reader(p_role regrole) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    base text;
BEGIN
    base := auditq_grant_reader_base(p_role);
    EXECUTE format('GRANT SELECT ON auditq_evidence_batch, auditq_evidence_retention, '
                   'auditq_seal_assignment, auditq_checkpoint TO %s',
                   quote_ident((SELECT rolname FROM pg_roles WHERE oid = p_role)));
    RETURN base || '; SELECT on the integrity evidence';
END;
$$;
REVOKE EXECUTE ON FUNCTION auditq_grant_reader(regrole) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auditq_grant_reader_base(regrole) FROM PUBLIC;

-- Pin search_path (see 001), pg_temp last. Not the entry functions: their
-- SQL-standard bodies are bound at creation, and a SET clause would stop
-- PostgreSQL from inlining them into the trigger's query.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'auditq_evidence_capture()',
        'auditq_evidence_retain(regclass, timestamptz, text)',
        'auditq_grant_writer(regrole)',
        'auditq_grant_reader(regrole)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END;
$$;
