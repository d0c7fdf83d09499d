-- The expiry sweep asks, for each due revocation, whether a sign-off in force owns it:
-- a lookup by revocation_id, which the primary key (signoff_id, revocation_id) cannot serve.
CREATE INDEX signoff_revocations_revocation ON signoff_revocations(revocation_id);
