-- Issue 21. Where each push sink (webhook, syslog) is in the events feed: an event is
-- delivered, then its sink's cursor moves past it, so none is lost across a restart.
CREATE TABLE delivery_cursors (
    sink TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL
);
