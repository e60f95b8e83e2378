-- Every change to the rows a history read is computed from sends NOTIFY pgmon_stats with the id of
-- the server whose rows changed (delivered on commit, once per server and transaction), so pgmon-api
-- can keep whole history responses in memory and drop a server's as soon as its data changes,
-- whoever the writer is (a collector, maintenance, an operator in psql). Statement-level triggers
-- with transition tables: one notification per server and statement, not per row, and the
-- collector's inserts of a few dozen rows pay microseconds. PostgreSQL fires them for statements on
-- the parent tables only; a statement run on one monthly partition directly is not seen, which the
-- API's time limit on cached responses bounds. Dropping partitions (retention) fires no trigger:
-- pgmon_drop_partitions_before notifies '*' (every server) instead.
CREATE FUNCTION pgmon_notify_stats() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('pgmon_stats', '*');
    ELSE
        PERFORM pg_notify('pgmon_stats', s.server_id::text)
        FROM (SELECT DISTINCT server_id FROM changed) s;
    END IF;
    RETURN NULL;
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['stat_database', 'availability', 'db_size', 'disk_usage', 'stat_rollup',
                             'stat_rollup_chunk', 'stat_rollup_state']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed
                        FOR EACH STATEMENT EXECUTE FUNCTION pgmon_notify_stats()', t || '_notify_ins', t);
        -- An UPDATE never moves rows between servers: the old rows name every server touched.
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS changed
                        FOR EACH STATEMENT EXECUTE FUNCTION pgmon_notify_stats()', t || '_notify_upd', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed
                        FOR EACH STATEMENT EXECUTE FUNCTION pgmon_notify_stats()', t || '_notify_del', t);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION pgmon_notify_stats()', t || '_notify_trunc', t);
    END LOOP;
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
        WHERE parent.relname IN ('stat_database', 'availability', 'db_size', 'disk_usage')
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
