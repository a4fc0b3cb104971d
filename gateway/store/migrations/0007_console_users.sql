-- 0007: staff accounts for the web console, and their sign-in sessions. The API keeps its bearer tokens.
CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    password_hash  text NOT NULL,  -- argon2id, in its PHC string form
    role           text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    language       text CHECK (language IN ('en', 'ca', 'es')),  -- NULL: the browser's Accept-Language
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A session is a random token in an HttpOnly cookie; only its SHA-256 is stored, with the CSRF token its
-- forms must carry.
CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id);
