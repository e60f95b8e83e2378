-- Closed stretches of stat_rollup, packed: one row per (server, database, resolution, chunk) holding
-- its buckets as one binary value. stat_rollup rows are written as slots arrive, so one
-- database's rows are spread over as many heap pages as they are rows (every page holds one slot of
-- every database); a 7-day read of one database touched ~1,000 pages and cost more than everything
-- else in the request. A chunk is one index probe and one (TOASTed) value.
--
-- Written only by `pgmon_shared::store::rollups` (the collector's maintenance): rows of a chunk move
-- from stat_rollup to here in one transaction, once every source of the server is rolled up well
-- past the chunk's end (see `rollups::PACK_MARGIN`). Readers take chunks and the remaining
-- stat_rollup rows in one statement, so they never see a row twice or miss one.
--
-- Chunk lengths per resolution (`rollups::chunk_secs`): 12 h of slots, 5 days of hours, 30 days of
-- 12-hour buckets, all aligned on the epoch.
--
-- `data` holds `buckets` fixed-width records in bucket order, each the binary send form (big-endian,
-- as `int8send` and friends give it) of the stat_rollup columns:
--   bucket timestamptz (8, microseconds since 2000-01-01), secs float8, broken bool (1),
--   xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted,
--   tup_updated, tup_deleted, temp_bytes, deadlocks, conflicts, backends_sum int8 (8 each),
--   backends_n int4, size_sum float8, size_n int4, disk_used_sum float8, disk_total_sum float8,
--   disk_n int4, up_n int4, avail_n int4
-- (165 bytes). One value per row, not one array per column: each TOASTed value costs a lookup of
-- its own, and 23 of them per chunk made a read slower than the scattered rows it replaced.
CREATE TABLE stat_rollup_chunk (
    server_id    bigint NOT NULL,
    datname      text NOT NULL,
    res          integer NOT NULL,
    chunk_start  timestamptz NOT NULL,
    buckets      integer NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (server_id, datname, res, chunk_start)
);

-- How far each resolution of each server has been packed: stat_rollup holds no bucket before
-- packed_until, and the rollup refresh never writes before it.
CREATE TABLE stat_rollup_packed (
    server_id     bigint NOT NULL,
    res           integer NOT NULL,
    packed_until  timestamptz NOT NULL,
    PRIMARY KEY (server_id, res)
);

-- lz4 decompresses several times faster than the default pglz, and every history read decompresses
-- its chunks (a 7-day read: 14 of them, 12 KB each). A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE stat_rollup_chunk ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'stat_rollup_chunk.data keeps the default compression: %', SQLERRM;
END
$$;
