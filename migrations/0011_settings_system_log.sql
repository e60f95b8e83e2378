-- Runtime settings an admin may change (the original's six keys). A NULL value means "the config
-- file's value": the file keeps being the default until an admin sets a value here. `updated_at` is
-- when the row last changed (its creation for a setting never touched). Every change sends
-- `NOTIFY pgmon_settings` (from the changing transaction, see shared/src/store/settings.rs) so that
-- running collectors and API instances apply it within seconds.
CREATE TABLE settings (
    key        text PRIMARY KEY CHECK (key IN ('collect_interval', 'size_update_interval',
                                               'db_check_interval', 'retention_months',
                                               'audit_retention_days', 'logs_retention_days')),
    value      bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);
INSERT INTO settings (key) VALUES ('collect_interval'), ('size_update_interval'), ('db_check_interval'),
    ('retention_months'), ('audit_retention_days'), ('logs_retention_days');

-- Operational events an operator wants to find later, written by both processes: task outcomes,
-- servers going down and coming back, SSH failures, store outages, settings changes, maintenance,
-- starts and stops. `source` and `level` are the original's vocabularies; `event` names the kind
-- for code (server_down, server_up, ...) and `server_id` the server concerned (no foreign key: the
-- log outlives a deleted server). Purged by maintenance after `logs_retention_days`.
CREATE TABLE system_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    level     text NOT NULL CHECK (level IN ('info', 'warning', 'error')),
    source    text NOT NULL,
    message   text NOT NULL,
    details   text,
    process   text NOT NULL,
    instance  uuid,
    server_id bigint,
    event     text
);
CREATE INDEX system_log_at ON system_log (at DESC, id DESC);
CREATE INDEX system_log_level_at ON system_log (level, at DESC);
CREATE INDEX system_log_source_at ON system_log (source, at DESC);
-- The last down/up entry of each server, read on every write of availability samples.
CREATE INDEX system_log_server_event ON system_log (server_id, at DESC) WHERE server_id IS NOT NULL;
