-- Dashboard operator accounts: members of the security staff who log in to the web
-- dashboard. Not versioned by revision: hosts never learn of them.
CREATE TABLE operators (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- argon2id PHC string (salt and parameters included).
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
