-- Issue 18: several servers on one database. Each server that holds agents' streams (a
-- replica, its id kept in its data directory) renews a lease here; a host is online at the
-- replica named in hosts.replica while that replica's lease holds. A server that stops
-- renewing (killed, cut off) has its hosts counted offline by the others once it lapses.
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
);
ALTER TABLE hosts ADD COLUMN replica TEXT;
-- Kill orders made on one replica for a host whose stream another holds wait here as
-- 'forwarded' until that replica claims and sends them.
CREATE INDEX kill_orders_forwarded ON kill_orders (host_id) WHERE state = 'forwarded';
