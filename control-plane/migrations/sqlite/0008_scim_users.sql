-- What SCIM keeps about a person beyond the model hosts see: the identity provider's own
-- identifier for them (`externalId`, RFC 7643 §3.1) and whether the provider has deleted
-- the SCIM resource. A SCIM DELETE signs the person off and sets `deleted_at`; the person,
-- their sign-off and their audit history stay, but to SCIM the resource is gone (GET is a
-- 404, lists leave it out) until a later POST of the same userName provisions it again.
-- A person without a row here (made by the CLI or the API) is a live SCIM resource
-- without an externalId. Nothing here is versioned: hosts never see it.

CREATE TABLE scim_users (
    user_id     INTEGER PRIMARY KEY REFERENCES users(id),
    external_id TEXT,
    -- Unix seconds of the SCIM DELETE; NULL while the resource exists.
    deleted_at  INTEGER
);
