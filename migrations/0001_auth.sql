-- Users, tokens and the session audit (pgmon-api).

CREATE TABLE users (
    login          text PRIMARY KEY CHECK (login ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled       boolean NOT NULL DEFAULT false,
    -- Bumped on password change, disabling and role change: tokens carry the value they were issued with.
    token_version  integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_login     timestamptz
);

-- One row per issued refresh token. A family is one login's chain of rotations.
CREATE TABLE refresh_tokens (
    jti         uuid PRIMARY KEY,
    family      uuid NOT NULL,
    login       text NOT NULL REFERENCES users (login) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_login ON refresh_tokens (login);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Access tokens revoked before their expiry (logout). Rows are purged once the token has expired.
CREATE TABLE revoked_tokens (
    jti         uuid PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

CREATE TABLE audit_sessions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    event       text NOT NULL,
    login       text,
    client_ip   text,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_sessions_at ON audit_sessions (at DESC);
CREATE INDEX audit_sessions_login_at ON audit_sessions (login, at DESC);
CREATE INDEX audit_sessions_event_at ON audit_sessions (event, at DESC);
