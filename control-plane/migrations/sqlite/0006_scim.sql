-- Deprovisioning from outside: SCIM 2.0 needs no table of its own (a SCIM User is a
-- signoff person; its id is the person's name). The HR webhook keeps the signatures of
-- the deliveries it accepted until their timestamp leaves the replay window, in the store
-- rather than in memory, so that a restart of the control plane does not reopen the
-- window for a captured request.

CREATE TABLE webhook_deliveries (
    -- Hex HMAC-SHA256 of the delivery (timestamp and body): unique per delivery.
    signature  TEXT PRIMARY KEY,
    -- Unix seconds after which the timestamp is outside the window anyway.
    expires_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries(expires_at);
