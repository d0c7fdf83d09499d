//! The part of the SCIM filter language (RFC 7644 §3.4.2.2) identity providers use to find a
//! user before provisioning it: `userName eq "alice"`, `id eq "alice"`, `externalId eq
//! "00u1"`, `active eq false`.
//! Anything else is refused with `invalidFilter` rather than answered wrongly: an IdP that
//! got an empty list for a filter we ignored would create a duplicate.

/// A filter this server evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `userName eq "…"` (our names are case-sensitive, so is the match).
    UserName(String),
    /// `id eq "…"` (the id is the name).
    Id(String),
    /// `active eq true|false`.
    Active(bool),
    /// `externalId eq "…"` (case-exact, RFC 7643 §3.1).
    ExternalId(String),
}

/// Why a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Not `ATTRIBUTE OPERATOR VALUE`.
    #[error("filter {0:?} is not `ATTRIBUTE eq VALUE`")]
    Syntax(String),
    /// An operator other than `eq`, or a logical combination.
    #[error("operator {0:?} is not supported; only `eq`, without and/or/not")]
    Operator(String),
    /// An attribute this server cannot filter on.
    #[error("cannot filter on {0:?}; supported: userName, id, externalId, active")]
    Attribute(String),
    /// A value of the wrong type for the attribute.
    #[error("{attribute} takes {expected}, not {value}")]
    Value {
        /// The attribute.
        attribute: &'static str,
        /// What it takes.
        expected: &'static str,
        /// What was given.
        value: String,
    },
}

const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User:";

/// Parses a filter.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    let text = text.trim();
    let (attribute, rest) = text
        .split_once(char::is_whitespace)
        .ok_or_else(|| FilterError::Syntax(text.to_owned()))?;
    let rest = rest.trim_start();
    let (operator, value) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| FilterError::Syntax(text.to_owned()))?;
    if !operator.eq_ignore_ascii_case("eq") {
        return Err(FilterError::Operator(operator.to_owned()));
    }
    let value = value.trim();
    // A JSON value: a quoted string with JSON escapes, true, false, a number or null. What
    // follows it (`and …`) makes the whole filter fail to parse as one value.
    let value: serde_json::Value = serde_json::from_str(value).map_err(|_| {
        if value.contains(" and ") || value.contains(" or ") {
            FilterError::Operator("and/or".to_owned())
        } else {
            FilterError::Syntax(text.to_owned())
        }
    })?;
    let bare = strip_prefix_ignore_case(attribute, CORE_USER).unwrap_or(attribute);
    let string = |attribute: &'static str| match &value {
        serde_json::Value::String(s) => Ok(s.clone()),
        v => Err(FilterError::Value {
            attribute,
            expected: "a string",
            value: v.to_string(),
        }),
    };
    if bare.eq_ignore_ascii_case("userName") {
        Ok(Filter::UserName(string("userName")?))
    } else if bare.eq_ignore_ascii_case("id") {
        Ok(Filter::Id(string("id")?))
    } else if bare.eq_ignore_ascii_case("externalId") {
        Ok(Filter::ExternalId(string("externalId")?))
    } else if bare.eq_ignore_ascii_case("active") {
        match value {
            serde_json::Value::Bool(b) => Ok(Filter::Active(b)),
            v => Err(FilterError::Value {
                attribute: "active",
                expected: "true or false",
                value: v.to_string(),
            }),
        }
    } else {
        Err(FilterError::Attribute(attribute.to_owned()))
    }
}

/// `s` without `prefix`, compared without regard to ASCII case (SCIM names are
/// case-insensitive).
pub(crate) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_identity_providers_send() {
        assert_eq!(
            parse(r#"userName eq "alice""#),
            Ok(Filter::UserName("alice".into()))
        );
        assert_eq!(
            parse(r#"USERNAME EQ "a\"b""#),
            Ok(Filter::UserName("a\"b".into()))
        );
        assert_eq!(
            parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob""#),
            Ok(Filter::UserName("bob".into()))
        );
        assert_eq!(parse(r#"id eq "bob""#), Ok(Filter::Id("bob".into())));
        assert_eq!(
            parse(r#"externalId eq "00u1""#),
            Ok(Filter::ExternalId("00u1".into()))
        );
        assert_eq!(parse("active eq false"), Ok(Filter::Active(false)));
        assert_eq!(parse(" active  eq  true "), Ok(Filter::Active(true)));
    }

    #[test]
    fn what_is_refused() {
        assert!(matches!(parse("userName"), Err(FilterError::Syntax(_))));
        assert!(matches!(
            parse(r#"userName eq alice"#),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            parse(r#"userName eq "alice"#),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            parse(r#"userName sw "al""#),
            Err(FilterError::Operator(_))
        ));
        assert!(matches!(
            parse(r#"userName eq "a" and active eq true"#),
            Err(FilterError::Operator(_))
        ));
        assert!(matches!(
            parse(r#"emails.value eq "a@b""#),
            Err(FilterError::Attribute(_))
        ));
        assert!(matches!(
            parse(r#"displayName eq "x""#),
            Err(FilterError::Attribute(_))
        ));
        assert!(matches!(
            parse(r#"active eq "yes""#),
            Err(FilterError::Value { .. })
        ));
        assert!(matches!(
            parse("userName eq 5"),
            Err(FilterError::Value { .. })
        ));
    }
}
