-- Rollups of the stats tables, so that a history read over any range touches at most a few thousand
-- rows. Written only by `pgmon_shared::store::rollups::refresh_rollups` (called by the collector's
-- maintenance), never by a request.
--
-- `res` is the resolution: 0 = one row per collected slot (the rate-ready delta from the previous slot),
-- 3600 = hour buckets, 43200 = 12-hour buckets. `datname = ''` is the whole server (PostgreSQL refuses a
-- database with an empty name, so it cannot clash). Every value column is additive (sums and counts),
-- so buckets of any step are sums of rows.
CREATE TABLE stat_rollup (
    server_id       bigint NOT NULL,
    datname         text NOT NULL,
    res             integer NOT NULL,
    bucket          timestamptz NOT NULL,
    -- Seconds covered by valid counter deltas: the denominator of every rate.
    secs            double precision NOT NULL DEFAULT 0,
    -- A delta ending here was refused (stats reset, restart, counter going down, gap).
    broken          boolean NOT NULL DEFAULT false,
    xact_commit     bigint NOT NULL DEFAULT 0,
    xact_rollback   bigint NOT NULL DEFAULT 0,
    blks_read       bigint NOT NULL DEFAULT 0,
    blks_hit        bigint NOT NULL DEFAULT 0,
    tup_returned    bigint NOT NULL DEFAULT 0,
    tup_fetched     bigint NOT NULL DEFAULT 0,
    tup_inserted    bigint NOT NULL DEFAULT 0,
    tup_updated     bigint NOT NULL DEFAULT 0,
    tup_deleted     bigint NOT NULL DEFAULT 0,
    temp_bytes      bigint NOT NULL DEFAULT 0,
    deadlocks       bigint NOT NULL DEFAULT 0,
    conflicts       bigint NOT NULL DEFAULT 0,
    backends_sum    bigint NOT NULL DEFAULT 0,
    backends_n      integer NOT NULL DEFAULT 0,
    size_sum        double precision NOT NULL DEFAULT 0,
    size_n          integer NOT NULL DEFAULT 0,
    disk_used_sum   double precision NOT NULL DEFAULT 0,
    disk_total_sum  double precision NOT NULL DEFAULT 0,
    disk_n          integer NOT NULL DEFAULT 0,
    up_n            integer NOT NULL DEFAULT 0,
    avail_n         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (server_id, datname, res, bucket)
);
-- Retention deletes by time; rows arrive roughly in time order, so a BRIN index is enough.
CREATE INDEX stat_rollup_bucket ON stat_rollup USING brin (bucket);

-- How far each source table of each server has been rolled up: every raw slot <= done_until is in
-- stat_rollup; readers take newer slots from the raw tables.
CREATE TABLE stat_rollup_state (
    server_id     bigint NOT NULL,
    source        text NOT NULL CHECK (source IN ('stat_database', 'db_size', 'disk_usage', 'availability')),
    done_until    timestamptz NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, source)
);
