-- A host group's validity policy for signoff's own certificates. A certificate reaches
-- every host its holder has a grant on, so the strictest policy among the person's own,
-- the server's and those of the groups they hold live grants in applies.
CREATE TABLE group_certificate_policies (
    group_id    INTEGER PRIMARY KEY REFERENCES host_groups(id),
    default_ttl INTEGER NOT NULL,
    max_ttl     INTEGER NOT NULL
);
