-- Issue 21. A sign-off or kill order waiting on a host whose agent is offline past
-- `[alerts.incomplete_action] offline_after` raises one alert per (sign-off or order, host).
-- `hosts.offline_since`: when the host's agent was last seen to disconnect (NULL while it
-- is connected, or if it never was); the wait is counted from it or from the sign-off or
-- order, whichever is later. `offline_alerted_at`: when that one alert was raised, so that
-- it never is again.
ALTER TABLE hosts ADD COLUMN offline_since INTEGER;
ALTER TABLE signoff_hosts ADD COLUMN offline_alerted_at INTEGER;
ALTER TABLE kill_orders ADD COLUMN offline_alerted_at INTEGER;
