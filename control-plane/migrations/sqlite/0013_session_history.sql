-- Session history is read by time: the overview's logins per hour (counted here, not in
-- the process), the API's pages (newest first, by started_at, host_id, id), and the
-- retention sweep that deletes ended sessions older than [sessions] retention.
CREATE INDEX sessions_started ON sessions(started_at, host_id, id);
CREATE INDEX sessions_ended_at ON sessions(ended_at) WHERE state = 'ended';
