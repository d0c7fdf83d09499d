//! `attributes` and `excludedAttributes` (RFC 7644 §3.9, §3.4.2.5): which attributes of a
//! User a response carries. `id` and `schemas` are always returned (RFC 7643 §3.1: `id` is
//! "returned: always"); a name in no schema of the User selects nothing.

use serde_json::{Map, Value};

use super::filter::strip_prefix_ignore_case;
use super::{SSH_EXTENSION, ScimError, USER_SCHEMA};

/// Which attributes to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Projection {
    /// Every attribute returned by default.
    #[default]
    All,
    /// `attributes`: these, and the ones always returned.
    Only(Vec<AttributePath>),
    /// `excludedAttributes`: all but these.
    Except(Vec<AttributePath>),
}

/// One attribute named in `attributes` / `excludedAttributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttributePath {
    /// The top-level key: a core attribute (`userName`, `meta`), or the SSH extension's URN.
    top: String,
    /// Below it: a sub-attribute (`meta.created`) or an attribute of the extension.
    sub: Option<String>,
}

impl AttributePath {
    fn parse(path: &str) -> AttributePath {
        let path = path.trim();
        if let Some(rest) = strip_prefix_ignore_case(path, SSH_EXTENSION) {
            let sub = rest.strip_prefix(':').filter(|s| !s.is_empty());
            return AttributePath {
                top: SSH_EXTENSION.to_owned(),
                sub: sub.map(str::to_owned),
            };
        }
        let core = format!("{USER_SCHEMA}:");
        let bare = strip_prefix_ignore_case(path, &core).unwrap_or(path);
        match bare.split_once('.') {
            Some((top, sub)) => AttributePath {
                top: top.to_owned(),
                sub: Some(sub.to_owned()),
            },
            None => AttributePath {
                top: bare.to_owned(),
                sub: None,
            },
        }
    }
}

/// Attributes always returned, whatever the request asks.
const ALWAYS: &[&str] = &["id", "schemas"];

impl Projection {
    /// From the two parameters as given (comma-separated in a URL, lists in a search
    /// body); giving both is an `invalidSyntax` (RFC 7644 §3.9: they are mutually
    /// exclusive).
    pub(crate) fn new(
        attributes: Option<Vec<String>>,
        excluded: Option<Vec<String>>,
    ) -> Result<Projection, ScimError> {
        let paths = |names: Vec<String>| -> Vec<AttributePath> {
            names
                .iter()
                .flat_map(|n| n.split(','))
                .filter(|n| !n.trim().is_empty())
                .map(AttributePath::parse)
                .collect()
        };
        match (attributes, excluded) {
            (Some(_), Some(_)) => Err(ScimError::bad_request(
                "invalidSyntax",
                "attributes and excludedAttributes cannot be given together",
            )),
            (Some(a), None) => Ok(Projection::Only(paths(a))),
            (None, Some(e)) => Ok(Projection::Except(paths(e))),
            (None, None) => Ok(Projection::All),
        }
    }

    /// `resource` with only the attributes this projection returns.
    pub(crate) fn apply(&self, resource: Value) -> Value {
        let Value::Object(object) = resource else {
            return resource;
        };
        let named = |paths: &[AttributePath], key: &str| -> Vec<Option<String>> {
            paths
                .iter()
                .filter(|p| p.top.eq_ignore_ascii_case(key))
                .map(|p| p.sub.clone())
                .collect()
        };
        let mut out = Map::new();
        for (key, value) in object {
            if ALWAYS.contains(&key.as_str()) {
                out.insert(key, value);
                continue;
            }
            let kept = match self {
                Projection::All => Some(value),
                Projection::Only(paths) => {
                    let subs = named(paths, &key);
                    if subs.is_empty() {
                        None
                    } else if subs.iter().any(Option::is_none) {
                        Some(value)
                    } else {
                        Some(keep_subs(value, &subs, true))
                    }
                }
                Projection::Except(paths) => {
                    let subs = named(paths, &key);
                    if subs.iter().any(Option::is_none) {
                        None
                    } else if subs.is_empty() {
                        Some(value)
                    } else {
                        Some(keep_subs(value, &subs, false))
                    }
                }
            };
            if let Some(v) = kept {
                out.insert(key, v);
            }
        }
        Value::Object(out)
    }
}

/// The sub-attributes of `value` that are (`keep`) or are not (`!keep`) named in `subs`.
fn keep_subs(value: Value, subs: &[Option<String>], keep: bool) -> Value {
    let Value::Object(object) = value else {
        return value;
    };
    Value::Object(
        object
            .into_iter()
            .filter(|(k, _)| {
                let named = subs.iter().flatten().any(|s| s.eq_ignore_ascii_case(k));
                named == keep
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, SSH_EXTENSION],
            "id": "alice", "userName": "alice", "active": true, "externalId": "x",
            "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00Z"},
            SSH_EXTENSION: {"keyIds": ["a1"], "principals": ["alice"], "sshPublicKeys": []},
        })
    }

    fn only(names: &[&str]) -> Projection {
        Projection::new(Some(names.iter().map(|s| s.to_string()).collect()), None).unwrap()
    }

    fn except(names: &[&str]) -> Projection {
        Projection::new(None, Some(names.iter().map(|s| s.to_string()).collect())).unwrap()
    }

    #[test]
    fn attributes_keep_what_they_name_and_what_is_always_returned() {
        let r = only(&["userName"]).apply(user());
        assert_eq!(
            r,
            json!({"schemas": [USER_SCHEMA, SSH_EXTENSION], "id": "alice", "userName": "alice"})
        );
        let r = only(&[&format!("{USER_SCHEMA}:active,meta.created")]).apply(user());
        assert_eq!(r["active"], true);
        assert_eq!(r["meta"], json!({"created": "2026-01-01T00:00:00Z"}));
        let r = only(&[&format!("{SSH_EXTENSION}:keyIds")]).apply(user());
        assert_eq!(r[SSH_EXTENSION], json!({"keyIds": ["a1"]}));
        assert!(r.get("userName").is_none());
        let r = only(&[SSH_EXTENSION]).apply(user());
        assert_eq!(r[SSH_EXTENSION]["principals"], json!(["alice"]));
        // A name in no schema selects nothing.
        let r = only(&["nickName"]).apply(user());
        assert_eq!(r.as_object().unwrap().len(), 2);
    }

    #[test]
    fn excluded_attributes_drop_what_they_name_but_never_id() {
        let r = except(&["active", "id", "meta.created"]).apply(user());
        assert!(r.get("active").is_none());
        assert_eq!(r["id"], "alice");
        assert_eq!(r["meta"], json!({"resourceType": "User"}));
        let r = except(&[&format!("{SSH_EXTENSION}:sshPublicKeys")]).apply(user());
        assert_eq!(
            r[SSH_EXTENSION],
            json!({"keyIds": ["a1"], "principals": ["alice"]})
        );
        let r = except(&[SSH_EXTENSION]).apply(user());
        assert!(r.get(SSH_EXTENSION).is_none());
    }

    #[test]
    fn both_at_once_is_refused() {
        let e = Projection::new(Some(vec!["a".into()]), Some(vec!["b".into()])).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
    }
}
