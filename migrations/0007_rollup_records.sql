-- Each stat_rollup row also holds its record in the format of stat_rollup_chunk.data (see
-- 0006_rollup_chunks.sql), computed once when the row is written. A history read sends the rows not
-- packed yet as one more chunk; building ~130 records per read from the columns (25 send functions and
-- 24 concatenations a row) was most of a 7-day read once the packed chunks come from the reader's
-- memory. Packing moves `rec` as it is. The expression is `pgmon_shared::store::chunk::record_sql()`,
-- which a unit test checks.
ALTER TABLE stat_rollup ADD COLUMN rec bytea GENERATED ALWAYS AS (
    timestamptz_send(bucket) || float8send(secs) || boolsend(broken) || int8send(xact_commit) ||
    int8send(xact_rollback) || int8send(blks_read) || int8send(blks_hit) ||
    int8send(tup_returned) || int8send(tup_fetched) || int8send(tup_inserted) ||
    int8send(tup_updated) || int8send(tup_deleted) || int8send(temp_bytes) ||
    int8send(deadlocks) || int8send(conflicts) || int8send(backends_sum) || int4send(backends_n) ||
    float8send(size_sum) || int4send(size_n) || float8send(disk_used_sum) ||
    float8send(disk_total_sum) || int4send(disk_n) || int4send(up_n) || int4send(avail_n)
) STORED;

