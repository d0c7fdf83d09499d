-- Host keys the host CA has certified, and for which host: a key certified for one host is
-- never certified for another (a host asking to sign another host's key is refused).
CREATE TABLE host_ssh_keys (
    fingerprint  TEXT PRIMARY KEY,
    host_id      TEXT NOT NULL REFERENCES hosts(id),
    first_signed INTEGER NOT NULL,
    last_signed  INTEGER NOT NULL
);
