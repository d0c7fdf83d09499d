-- A sign-off holds every revocation that enforces it, also one that existed before it
-- (an admin revoked the key ID earlier): while the sign-off is in force none of them may
-- be withdrawn on its own. `added` says whether the sign-off made it; re-enabling
-- withdraws only those, and leaves what an admin revoked for other reasons.
ALTER TABLE signoff_revocations ADD COLUMN added INTEGER NOT NULL DEFAULT 1;
