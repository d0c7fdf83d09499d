-- k-of-n approvals of grants (issue 20). Hosts decide which accounts are privileged and
-- how many approvals they need; the control plane collects signatures and ships them in
-- host views. A grant proposed for approval is listed as pending until it ends.
ALTER TABLE grants ADD COLUMN approval_requested INTEGER NOT NULL DEFAULT 0;

-- One approver's SSHSIG (namespace signoff-approval) over a grant's canonical bytes
-- (signoff_proto::approvals::GrantApproval). Versioned like every fact hosts know:
-- adding one is a revision, and the grant's entry in each host view changes with it.
CREATE TABLE grant_approvals (
    id          INTEGER PRIMARY KEY,
    grant_id    INTEGER NOT NULL REFERENCES grants(id),
    -- The grant's person, so that a delta finds the entries it changes.
    user_id     INTEGER NOT NULL REFERENCES users(id),
    -- SHA256 fingerprint of the key that signed: one approval per key and grant.
    fingerprint TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    -- Who submitted it (not who signed it: that is the key).
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    since_rev   INTEGER NOT NULL,
    until_rev   INTEGER
);
CREATE UNIQUE INDEX grant_approvals_live ON grant_approvals(grant_id, fingerprint) WHERE until_rev IS NULL;
CREATE INDEX grant_approvals_user ON grant_approvals(user_id);
