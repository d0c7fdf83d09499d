//! One line for an error and its causes.

/// `error: cause: cause …`, as anyhow's `{:#}` prints it: for logs, stderr and results
/// reported to the control plane, where the outermost message alone would hide why.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_in_order() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(super::chain(&e), "outer: middle: inner");
        assert_eq!(super::chain(&std::io::Error::other("alone")), "alone");
    }
}
