-- What the original backend's clients read and send, stored the way pgmon keeps everything else.

-- Users carry an e-mail address, as in the original.
ALTER TABLE users ADD COLUMN email text;

-- The session audit under the original's event names, with its `jti` and a readable `details` text
-- (it was a JSON object; the original's clients render it as text). Events the original lacks keep
-- pgmon's names (login_rate_limited, refresh_reuse, ssh_host_key_pinned, ssh_host_key_cleared).
ALTER TABLE audit_sessions ADD COLUMN jti text;
ALTER TABLE audit_sessions ALTER COLUMN details DROP DEFAULT;
ALTER TABLE audit_sessions ALTER COLUMN details DROP NOT NULL;
ALTER TABLE audit_sessions ALTER COLUMN details TYPE text
    USING (CASE WHEN details = '{}'::jsonb THEN NULL ELSE details::text END);
UPDATE audit_sessions SET event = CASE event
        WHEN 'login_failure' THEN 'login_failed'
        WHEN 'user_created' THEN 'user_create'
        WHEN 'user_updated' THEN 'user_update'
        WHEN 'user_deleted' THEN 'user_delete'
        WHEN 'server_created' THEN 'server_create'
        WHEN 'server_updated' THEN 'server_update'
        WHEN 'server_deleted' THEN 'server_delete'
        WHEN 'ssh_key_created' THEN 'ssh_key_create'
        WHEN 'ssh_key_updated' THEN 'ssh_key_update'
        WHEN 'ssh_key_deleted' THEN 'ssh_key_delete'
    END
WHERE event IN ('login_failure', 'user_created', 'user_updated', 'user_deleted', 'server_created',
                'server_updated', 'server_deleted', 'ssh_key_created', 'ssh_key_updated',
                'ssh_key_deleted');

-- A rotated refresh token names its successor, so that a second refresh with the same token within
-- the grace window (two browser tabs) is answered with that successor instead of revoking the family.
ALTER TABLE refresh_tokens ADD COLUMN replaced_by uuid;

-- An SSH key's free-text description (the original's), apart from the comment inside the key.
ALTER TABLE ssh_keys ADD COLUMN description text;

-- When a database was created, as the original showed it: the modification time of its
-- base/<oid>/PG_VERSION, read by the collector where the monitoring role may (pg_stat_file).
ALTER TABLE databases ADD COLUMN created_at timestamptz;
