-- Collector affinity (issue 21, items 10 and 11).
--
-- Each collector holds a session-level advisory lock (class 1885826415 = 'pgmo', key lock_key) on its
-- own store connection for as long as its process lives: a process killed with -9 loses its session,
-- hence its lock, at once, whereas its heartbeat only goes stale after a minute. NULL for instances
-- of versions that hold no lock: only their heartbeat speaks for them.
ALTER TABLE collector_instances ADD COLUMN lock_key integer;

-- Whether a collector instance is alive: not stopped, heartbeat fresh, and (when it holds a lock) its
-- lock held. One definition for claims (who may take a claim over) and affinity (who owns a server).
CREATE FUNCTION pgmon_collector_live(stopped_at timestamptz, last_seen_at timestamptz, lock_key integer,
                                     stale_secs float8) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT stopped_at IS NULL
       AND last_seen_at > now() - make_interval(secs => stale_secs)
       AND (lock_key IS NULL OR EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.classid = 1885826415::oid AND l.objid = lock_key::oid
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())))
$$;

-- A collector's per-server state that the next slot's deltas need (the statements family's previous
-- counters), handed over through the store when the server moves to another collector or the
-- collector stops, so the next collector of that server loses no slot. One row per server and
-- family, overwritten at each handover; maintenance purges rows nobody picked up.
CREATE TABLE collector_baselines (
    server_id  bigint NOT NULL,
    family     text NOT NULL,
    slot       timestamptz NOT NULL,
    data       bytea NOT NULL,
    saved_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, family)
);
