-- More history: activity samples, replication per standby and slot, checkpointer/bgwriter, WAL,
-- archiver, pg_stat_io and top statements. Counters are stored as the server reports them (with the
-- reset time and the postmaster start, so readers refuse a delta across a reset); statements as
-- deltas over the slot (the collector keeps the previous counters, see collector/src/families/
-- statements.rs). Every table is partitioned by month like the others and kept `retention_months`.

-- Sessions and horizons, every `collector.activity_interval_secs`.
CREATE TABLE activity_sample (
    server_id                  bigint NOT NULL,
    slot                       timestamptz NOT NULL,
    collected_at               timestamptz NOT NULL,
    in_recovery                boolean,
    sessions                   integer,
    active                     integer,
    idle                       integer,
    idle_in_xact               integer,
    idle_in_xact_aborted       integer,
    waiting_lock               integer,
    waiting_other              integer,
    longest_query_secs         float8,
    longest_xact_secs          float8,
    longest_idle_xact_secs     float8,
    oldest_xmin_age            bigint,
    max_xid_age                bigint,
    max_mxid_age               bigint,
    max_replication_lag_secs   float8,
    max_replication_lag_bytes  bigint,
    max_slot_retained_bytes    bigint,
    replay_delay_secs          float8,
    PRIMARY KEY (server_id, slot)
) PARTITION BY RANGE (slot);

-- Each standby of a server (by application_name), at the activity interval.
CREATE TABLE replication_sample (
    server_id        bigint NOT NULL,
    slot             timestamptz NOT NULL,
    standby          text NOT NULL,
    collected_at     timestamptz NOT NULL,
    client_addr      text,
    state            text,
    sync_state       text,
    sent_lag_bytes   bigint,
    write_lag_bytes  bigint,
    flush_lag_bytes  bigint,
    replay_lag_bytes bigint,
    write_lag_secs   float8,
    flush_lag_secs   float8,
    replay_lag_secs  float8,
    PRIMARY KEY (server_id, standby, slot)
) PARTITION BY RANGE (slot);

-- Each replication slot of a server, at the activity interval.
CREATE TABLE slot_sample (
    server_id        bigint NOT NULL,
    slot             timestamptz NOT NULL,
    slot_name        text NOT NULL,
    collected_at     timestamptz NOT NULL,
    slot_type        text,
    active           boolean,
    wal_status       text,
    retained_bytes   bigint,
    safe_wal_size    bigint,
    xmin_age         bigint,
    catalog_xmin_age bigint,
    PRIMARY KEY (server_id, slot_name, slot)
) PARTITION BY RANGE (slot);

-- pg_stat_bgwriter before 17; pg_stat_checkpointer + pg_stat_bgwriter from 17. Times in ms.
CREATE TABLE stat_checkpointer (
    server_id             bigint NOT NULL,
    slot                  timestamptz NOT NULL,
    collected_at          timestamptz NOT NULL,
    postmaster_start      timestamptz,
    checkpointer_reset    timestamptz,
    bgwriter_reset        timestamptz,
    checkpoints_timed     bigint,
    checkpoints_req       bigint,
    checkpoints_done      bigint,
    restartpoints_timed   bigint,
    restartpoints_req     bigint,
    restartpoints_done    bigint,
    write_time            float8,
    sync_time             float8,
    buffers_written       bigint,
    slru_written          bigint,
    buffers_clean         bigint,
    maxwritten_clean      bigint,
    buffers_backend       bigint,
    buffers_backend_fsync bigint,
    buffers_alloc         bigint,
    PRIMARY KEY (server_id, slot)
) PARTITION BY RANGE (slot);

-- The WAL position on every version (a byte counter: pg_current_wal_lsn() - '0/0', on a standby
-- the replayed position), and pg_stat_wal from 14 (18 moved its write and sync figures to pg_stat_io).
CREATE TABLE stat_wal (
    server_id        bigint NOT NULL,
    slot             timestamptz NOT NULL,
    collected_at     timestamptz NOT NULL,
    postmaster_start timestamptz,
    stats_reset      timestamptz,
    in_recovery      boolean,
    wal_position     bigint,
    wal_records      bigint,
    wal_fpi          bigint,
    wal_bytes        bigint,
    wal_buffers_full bigint,
    wal_write        bigint,
    wal_sync         bigint,
    wal_write_time   float8,
    wal_sync_time    float8,
    PRIMARY KEY (server_id, slot)
) PARTITION BY RANGE (slot);

CREATE TABLE stat_archiver (
    server_id          bigint NOT NULL,
    slot               timestamptz NOT NULL,
    collected_at       timestamptz NOT NULL,
    postmaster_start   timestamptz,
    stats_reset        timestamptz,
    archived_count     bigint,
    failed_count       bigint,
    last_archived_wal  text,
    last_archived_time timestamptz,
    last_failed_wal    text,
    last_failed_time   timestamptz,
    PRIMARY KEY (server_id, slot)
) PARTITION BY RANGE (slot);

-- pg_stat_io (16+), one row per backend type, object and context. Bytes as 18 reports them; before
-- 18, operations x op_bytes.
CREATE TABLE stat_io (
    server_id        bigint NOT NULL,
    slot             timestamptz NOT NULL,
    backend_type     text NOT NULL,
    object           text NOT NULL,
    context          text NOT NULL,
    collected_at     timestamptz NOT NULL,
    postmaster_start timestamptz,
    stats_reset      timestamptz,
    reads            bigint,
    read_bytes       bigint,
    read_time        float8,
    writes           bigint,
    write_bytes      bigint,
    write_time       float8,
    writebacks       bigint,
    extends          bigint,
    extend_bytes     bigint,
    hits             bigint,
    evictions        bigint,
    reuses           bigint,
    fsyncs           bigint,
    fsync_time       float8,
    PRIMARY KEY (server_id, backend_type, object, context, slot)
) PARTITION BY RANGE (slot);

-- The top statements of each stats slot by execution time spent in it: what each spent between the
-- previous slot and this one (`secs` long). Times in ms.
CREATE TABLE stat_statements (
    server_id           bigint NOT NULL,
    slot                timestamptz NOT NULL,
    queryid             bigint NOT NULL,
    dbid                bigint NOT NULL,
    userid              bigint NOT NULL,
    toplevel            boolean NOT NULL,
    collected_at        timestamptz NOT NULL,
    secs                float8 NOT NULL,
    datname             text,
    usename             text,
    calls               bigint,
    total_exec_time     float8,
    total_plan_time     float8,
    rows                bigint,
    shared_blks_hit     bigint,
    shared_blks_read    bigint,
    shared_blks_dirtied bigint,
    shared_blks_written bigint,
    temp_blks_read      bigint,
    temp_blks_written   bigint,
    blk_read_time       float8,
    blk_write_time      float8,
    wal_bytes           bigint,
    PRIMARY KEY (server_id, queryid, dbid, userid, toplevel, slot)
) PARTITION BY RANGE (slot);
CREATE INDEX stat_statements_server_slot ON stat_statements (server_id, slot);

-- Each statement's text, once per server: fetched only for statements not seen before, cut to
-- 4 KiB. Purged with the statements' retention.
CREATE TABLE statement_texts (
    server_id  bigint NOT NULL,
    queryid    bigint NOT NULL,
    query      text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, queryid)
);

-- A collector's own running totals (rows written, dropped and pending, claims taken over, task runs
-- and their time), refreshed with its heartbeat, for pgmon-api's /metrics.
ALTER TABLE collector_instances ADD COLUMN counters jsonb NOT NULL DEFAULT '{}';

-- The partition functions cover the new tables.
CREATE OR REPLACE FUNCTION pgmon_partitioned_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['stat_database', 'availability', 'db_size', 'disk_usage', 'activity_sample',
                 'replication_sample', 'slot_sample', 'stat_checkpointer', 'stat_wal', 'stat_archiver',
                 'stat_io', 'stat_statements']
$$;

CREATE OR REPLACE FUNCTION pgmon_ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    m timestamptz;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgmon_partitions'));
    FOREACH tbl IN ARRAY pgmon_partitioned_tables() LOOP
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

CREATE OR REPLACE FUNCTION pgmon_drop_partitions_before(before_ts timestamptz) RETURNS integer
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
        WHERE parent.relname = ANY (pgmon_partitioned_tables())
          AND c.relname ~ '_[0-9]{6}$'
    LOOP
        IF (to_timestamp(right(r.relname, 6), 'YYYYMM') AT TIME ZONE 'UTC' + interval '1 month')
               AT TIME ZONE 'UTC' <= before_ts THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    IF dropped > 0 THEN
        PERFORM pg_notify('pgmon_stats', '*');
    END IF;
    RETURN dropped;
END;
$$;

SELECT pgmon_ensure_partitions(now() - interval '1 month', now() + interval '2 months');
