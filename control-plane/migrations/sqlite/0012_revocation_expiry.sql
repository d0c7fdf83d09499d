-- A revocation may end by itself once what it revokes has expired: sshd refuses an
-- expired certificate anyway, so keeping its serial in the KRL only makes every login
-- parse a longer file. Serials of certificates this control plane issued get the latest
-- validity end of those certificates; other revocations may be given one.
ALTER TABLE revocations ADD COLUMN valid_before INTEGER;
CREATE INDEX revocations_expiry ON revocations(valid_before)
    WHERE until_rev IS NULL AND valid_before IS NOT NULL;
