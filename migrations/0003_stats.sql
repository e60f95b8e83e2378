-- What pgmon-collector writes. Stats tables are range-partitioned by month on `slot`, the scheduled
-- time a snapshot belongs to, so that retention drops whole partitions. Servers are referenced by id
-- (a rename keeps the history) without a foreign key: deleting a server leaves its rows to age out.

CREATE TABLE collector_instances (
    instance_id   uuid PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz,
    -- {"stats": {"last_run": ..., "outcome": "ok"|"error", "servers": n, "rows": n, "error": ...}, ...}
    tasks         jsonb NOT NULL DEFAULT '{}'
);

-- Which collector took (server, task, slot): the primary key makes the claim exclusive.
CREATE TABLE collector_claims (
    server_id    bigint NOT NULL,
    task         text NOT NULL,
    slot         timestamptz NOT NULL,
    instance_id  uuid NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, task, slot)
);
CREATE INDEX collector_claims_slot ON collector_claims (slot);

-- Databases seen on each server. A database that comes back with another oid is another row.
CREATE TABLE databases (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id       bigint NOT NULL,
    oid             bigint NOT NULL,
    name            text NOT NULL,
    owner           text,
    encoding        text,
    datcollate      text,
    datallowconn    boolean,
    datistemplate   boolean,
    frozen_xid_age  bigint,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),
    dropped_at      timestamptz,
    UNIQUE (server_id, oid, name)
);
CREATE INDEX databases_server_name ON databases (server_id, name);

CREATE TABLE stat_database (
    server_id                 bigint NOT NULL,
    slot                      timestamptz NOT NULL,
    datid                     bigint NOT NULL,
    datname                   text NOT NULL,
    collected_at              timestamptz NOT NULL,
    postmaster_start          timestamptz,
    stats_reset               timestamptz,
    numbackends               integer,
    xact_commit               bigint,
    xact_rollback             bigint,
    blks_read                 bigint,
    blks_hit                  bigint,
    tup_returned              bigint,
    tup_fetched               bigint,
    tup_inserted              bigint,
    tup_updated               bigint,
    tup_deleted               bigint,
    conflicts                 bigint,
    temp_files                bigint,
    temp_bytes                bigint,
    deadlocks                 bigint,
    checksum_failures         bigint,
    blk_read_time             double precision,
    blk_write_time            double precision,
    session_time              double precision,
    active_time               double precision,
    idle_in_transaction_time  double precision,
    sessions                  bigint,
    sessions_abandoned        bigint,
    sessions_fatal            bigint,
    sessions_killed           bigint,
    PRIMARY KEY (server_id, datname, slot)
) PARTITION BY RANGE (slot);

-- One sample per server and stats slot, written whether the server answered or not.
CREATE TABLE availability (
    server_id     bigint NOT NULL,
    slot          timestamptz NOT NULL,
    collected_at  timestamptz NOT NULL,
    up            boolean NOT NULL,
    latency_ms    double precision,
    error_class   text,
    PRIMARY KEY (server_id, slot)
) PARTITION BY RANGE (slot);

CREATE TABLE db_size (
    server_id     bigint NOT NULL,
    slot          timestamptz NOT NULL,
    datname       text NOT NULL,
    collected_at  timestamptz NOT NULL,
    size_bytes    bigint NOT NULL,
    PRIMARY KEY (server_id, datname, slot)
) PARTITION BY RANGE (slot);

CREATE TABLE disk_usage (
    server_id        bigint NOT NULL,
    slot             timestamptz NOT NULL,
    collected_at     timestamptz NOT NULL,
    mount            text NOT NULL,
    total_bytes      bigint NOT NULL,
    used_bytes       bigint NOT NULL,
    available_bytes  bigint NOT NULL,
    PRIMARY KEY (server_id, slot)
) PARTITION BY RANGE (slot);

-- Creates the monthly partitions of every stats table covering [from_ts, to_ts]. Idempotent and safe to
-- run from several processes at once (the advisory lock serialises them).
CREATE FUNCTION pgmon_ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    m timestamptz;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgmon_partitions'));
    FOREACH tbl IN ARRAY ARRAY['stat_database', 'availability', 'db_size', 'disk_usage'] LOOP
        m := date_trunc('month', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        WHILE m <= to_ts LOOP
            part := format('%s_%s', tbl, to_char(m AT TIME ZONE 'UTC', 'YYYYMM'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, tbl, m, ((m AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
            m := ((m AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;

-- Drops the monthly partitions that end at or before `before_ts`. Returns how many were dropped.
CREATE FUNCTION pgmon_drop_partitions_before(before_ts timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgmon_partitions'));
    FOR r IN
        SELECT c.relname, parent.relname AS parent
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class parent ON parent.oid = i.inhparent
        WHERE parent.relname IN ('stat_database', 'availability', 'db_size', 'disk_usage')
          AND c.relname ~ '_[0-9]{6}$'
    LOOP
        IF (to_timestamp(right(r.relname, 6), 'YYYYMM') AT TIME ZONE 'UTC' + interval '1 month')
               AT TIME ZONE 'UTC' <= before_ts THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END;
$$;

SELECT pgmon_ensure_partitions(now() - interval '1 month', now() + interval '2 months');
