-- Monitored servers and the SSH keys used to reach their hosts.

CREATE TABLE ssh_keys (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    key_type         text NOT NULL,
    bits             integer,
    fingerprint      text NOT NULL,
    public_key       text NOT NULL,
    -- Fernet token of the private key in OpenSSH format, without a passphrase.
    private_key_enc  text NOT NULL,
    comment          text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text
);

CREATE TABLE servers (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                      text NOT NULL UNIQUE,
    host                      text NOT NULL,
    port                      integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    dbname                    text NOT NULL,
    username                  text NOT NULL,
    password_enc              text,
    sslmode                   text NOT NULL CHECK (sslmode IN ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')),
    pool                      text NOT NULL CHECK (pool IN ('default', 'high_load')),
    enabled                   boolean NOT NULL DEFAULT true,
    description               text NOT NULL DEFAULT '',
    ssh_enabled               boolean NOT NULL DEFAULT false,
    ssh_host                  text,
    ssh_port                  integer CHECK (ssh_port BETWEEN 1 AND 65535),
    ssh_username              text,
    ssh_key_id                uuid REFERENCES ssh_keys (id) ON DELETE RESTRICT,
    ssh_password_enc          text,
    ssh_data_path             text,
    ssh_host_key_fingerprint  text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX servers_ssh_key ON servers (ssh_key_id);
