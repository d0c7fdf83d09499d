-- Approvals of re-enabling a signed-off person (issue 20). A host with [approvals] keeps a
-- person it saw signed off out until k of its own approvers signed the re-enable bytes of
-- that sign-off (signoff_proto::approvals::ReenableApproval); the control plane collects
-- the signatures and ships them, with the sign-off's statement, in every host view once
-- the person is re-enabled. Versioned like every fact hosts know: adding one is a
-- revision.
CREATE TABLE reenable_approvals (
    id          INTEGER PRIMARY KEY,
    signoff_id  INTEGER NOT NULL REFERENCES signoffs(id),
    -- SHA256 fingerprint of the key that signed: one approval per key and sign-off.
    fingerprint TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    -- Who submitted it (not who signed it: that is the key).
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    since_rev   INTEGER NOT NULL,
    until_rev   INTEGER
);
CREATE UNIQUE INDEX reenable_approvals_live ON reenable_approvals(signoff_id, fingerprint) WHERE until_rev IS NULL;
CREATE INDEX reenable_approvals_since ON reenable_approvals(since_rev);
