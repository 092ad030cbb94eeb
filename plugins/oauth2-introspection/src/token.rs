//! The bearer token of a request (RFC 6750 section 2.1: `Authorization: Bearer <token>`). Tokens in
//! the query or a form body (sections 2.2 and 2.3) are not read.

/// The longest token asked about. Access tokens, JWTs included, are far shorter; a longer one is a
/// malformed request, not something to send to the authorization server.
pub const MAX_TOKEN_LEN: usize = 8192;

/// What the request's `authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No `authorization` header, or one of another scheme (`Basic ...`): the request has no
    /// bearer token.
    Missing,
    /// A bearer token that cannot be one, or the header twice: why.
    Malformed(&'static str),
    /// The token.
    Token(&'a str),
}

/// Reads the bearer token from the values of the request's `authorization` header.
pub fn bearer(values: &[String]) -> Bearer<'_> {
    let value = match values {
        [] => return Bearer::Missing,
        [one] => one.trim(),
        _ => return Bearer::Malformed("the request has more than one authorization header"),
    };
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Missing;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Bearer::Malformed("the bearer token is empty");
    }
    if token.len() > MAX_TOKEN_LEN {
        return Bearer::Malformed("the bearer token is too long");
    }
    if !is_b64token(token) {
        return Bearer::Malformed("the bearer token has characters a token cannot have");
    }
    Bearer::Token(token)
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `bearer` reads from these header values.
    fn of(values: &[&str]) -> String {
        let owned: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        format!("{:?}", bearer(&owned))
    }

    fn token(t: &str) -> String {
        format!("{:?}", Bearer::Token(t))
    }

    #[test]
    fn tokens() {
        for (header, t) in [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER  abc", "abc"),
            ("Bearer\tabc", "abc"),
            (
                "Bearer eyJhbGciOi.eyJzdWIi.c2ln-_",
                "eyJhbGciOi.eyJzdWIi.c2ln-_",
            ),
            ("Bearer a~b+c/d==", "a~b+c/d=="),
            ("Bearer abc ", "abc"),
        ] {
            assert_eq!(of(&[header]), token(t), "{header}");
        }
    }

    #[test]
    fn no_token() {
        assert_eq!(of(&[]), "Missing");
        assert_eq!(of(&["Basic YWxpY2U6cHc="]), "Missing");
        assert_eq!(of(&["Bearerabc"]), "Missing");
        assert_eq!(of(&[""]), "Missing");
    }

    #[test]
    fn malformed() {
        for values in [
            &["Bearer"][..],
            &["Bearer "],
            &["Bearer a b"],
            &["Bearer a,b"],
            &["Bearer ==="],
            &["Bearer a=b"],
            &["Bearer é"],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(of(values).starts_with("Malformed"), "{values:?}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            of(&[long.as_str()]),
            format!("{:?}", Bearer::Malformed("the bearer token is too long"))
        );
        let longest = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(of(&[longest.as_str()]).starts_with("Token"));
    }
}
