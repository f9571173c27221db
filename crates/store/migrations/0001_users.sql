-- Organizations, users and their sessions.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    display_name text NOT NULL DEFAULT '',
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Exactly one default organization can exist.
CREATE UNIQUE INDEX organizations_single_default ON organizations (is_default) WHERE is_default;

INSERT INTO organizations (name, display_name, is_default) VALUES ('default', 'Default', true);

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username        text NOT NULL CHECK (username ~ '^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$' AND length(username) <= 32),
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name            text NOT NULL DEFAULT '' CHECK (length(name) <= 128),
    login_type      text NOT NULL CHECK (login_type IN ('password', 'none')),
    -- An argon2 PHC string; present exactly when the user logs in with a password.
    hashed_password text,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    is_system       boolean NOT NULL DEFAULT false,
    -- Roles beyond `member`, which every human user holds implicitly.
    rbac_roles      text[] NOT NULL DEFAULT '{}' CHECK (rbac_roles <@ ARRAY['owner', 'template-admin']),
    deleted         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz,
    CONSTRAINT users_password_iff_password_login
        CHECK ((login_type = 'password') = (hashed_password IS NOT NULL)),
    CONSTRAINT users_system_cannot_login
        CHECK (NOT is_system OR (login_type = 'none' AND rbac_roles = '{}'))
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username)) WHERE NOT deleted;
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE NOT deleted;

-- The owner of unclaimed prebuilds. Its id is fixed so every replica and
-- every release agrees on it.
INSERT INTO users (id, username, email, name, login_type, is_system)
VALUES ('c42fdf75-3097-471c-8c33-fb52454d81c0', 'prebuilds', 'prebuilds@system.invalid',
        'Prebuilds', 'none', true);

CREATE TABLE organization_members (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user ON organization_members (user_id);

INSERT INTO organization_members (organization_id, user_id)
SELECT id, 'c42fdf75-3097-471c-8c33-fb52454d81c0' FROM organizations WHERE is_default;

-- Session and API tokens. A token is `<id>-<secret>`; only the SHA-256 of the
-- secret is stored, so a database dump does not hand out sessions.
CREATE TABLE api_keys (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{10}$'),
    hashed_secret  bytea NOT NULL CHECK (octet_length(hashed_secret) = 32),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    login_type     text NOT NULL CHECK (login_type IN ('password', 'token')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    CONSTRAINT api_keys_expire_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX api_keys_user ON api_keys (user_id);
