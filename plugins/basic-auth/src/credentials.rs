//! Reading Basic credentials (RFC 7617) from a request's `Proxy-Authorization` and `Authorization`
//! headers: pure functions of their values, so the handler in `lib.rs` only asks the gateway about
//! what they hold.

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Standard base64 (RFC 4648 section 4, as RFC 7617 says), with or without its `=` padding: some
/// clients leave it out. Bits past the last byte must be zero, so each credential has one spelling.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The headers the plugin reads, in order: the first with Basic credentials is the one checked.
pub const HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// A user-id and password a client sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user-id (the consumer's `basic-auth` username), everything before the first `:`.
    pub user_id: String,
    /// The password, everything after it (it may hold `:` itself).
    pub password: String,
}

/// What one header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// No such header, or credentials of another scheme (`Bearer ...`), which are not this
    /// plugin's.
    None,
    /// Basic credentials.
    Basic(Credentials),
    /// Basic credentials that cannot be read, or the header sent more than once: why (for the
    /// client; it never holds the credentials).
    Malformed(&'static str),
}

/// The scheme of an `Authorization`-style value and what follows it (RFC 9110 section 11.4:
/// `scheme [ 1*SP token68 ]`; tabs are taken as spaces).
fn scheme(value: &str) -> (&str, &str) {
    let value = value.trim_matches([' ', '\t']);
    match value.split_once([' ', '\t']) {
        Some((scheme, rest)) => (scheme, rest.trim_matches([' ', '\t'])),
        None => (value, ""),
    }
}

/// Whether an `Authorization`-style value is of the Basic scheme (case-insensitive).
pub fn is_basic(value: &str) -> bool {
    scheme(value).0.eq_ignore_ascii_case("basic")
}

/// Reads the values of one header.
pub fn read(values: &[String]) -> Read {
    let value = match values {
        [] => return Read::None,
        [value] => value,
        // A singleton field sent twice: which one is meant is ambiguous.
        _ if values.iter().any(|v| is_basic(v)) => {
            return Read::Malformed("the header is sent more than once")
        }
        _ => return Read::None,
    };
    let (scheme, token) = scheme(value);
    if !scheme.eq_ignore_ascii_case("basic") {
        return Read::None;
    }
    if token.is_empty() {
        return Read::Malformed("nothing follows `Basic`");
    }
    let Ok(decoded) = BASE64.decode(token) else {
        return Read::Malformed("the credentials are not base64");
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Read::Malformed("the credentials are not UTF-8");
    };
    let Some((user_id, password)) = decoded.split_once(':') else {
        return Read::Malformed("no `:` separates the user-id from the password");
    };
    if decoded.chars().any(char::is_control) {
        return Read::Malformed("the credentials hold control characters");
    }
    Read::Basic(Credentials {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
    })
}

/// Why a request has no consumer: the refusal's code and message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The stable error code.
    pub code: &'static str,
    /// The message for the client (it never holds the credentials).
    pub message: String,
}

/// How a header is written in messages.
fn display(header: &str) -> &'static str {
    if header == "authorization" {
        "Authorization"
    } else {
        "Proxy-Authorization"
    }
}

/// Who the request is, from the values of [`HEADERS`]: the first that has Basic credentials
/// (`Authorization`, else `Proxy-Authorization`) decides. Its credentials are checked with `check`
/// (the gateway's `check_secret`): the consumer it finds, with the user-id, or
/// `invalid_credentials`; credentials it cannot read are `malformed_credentials`; no Basic
/// credentials in either header are `missing_credentials`. One check per request, so a client
/// cannot try two passwords at once.
pub fn identify<C>(
    values: &[Vec<String>; 2],
    check: impl FnOnce(&str, &str) -> Option<C>,
) -> Result<(C, String), Refusal> {
    let found = HEADERS
        .iter()
        .zip(values)
        .map(|(header, values)| (header, read(values)))
        .find(|(_, r)| *r != Read::None);
    match found {
        None | Some((_, Read::None)) => Err(Refusal {
            code: "missing_credentials",
            message: "No Basic credentials found in request".into(),
        }),
        Some((header, Read::Malformed(why))) => Err(Refusal {
            code: "malformed_credentials",
            message: format!("Malformed Basic credentials in {}: {why}", display(header)),
        }),
        Some((_, Read::Basic(c))) => match check(&c.user_id, &c.password) {
            Some(consumer) => Ok((consumer, c.user_id)),
            None => Err(Refusal {
                code: "invalid_credentials",
                message: "Invalid authentication credentials".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read1(value: &str) -> Read {
        read(&[value.to_owned()])
    }

    fn basic(user_id: &str, password: &str) -> Read {
        Read::Basic(Credentials {
            user_id: user_id.into(),
            password: password.into(),
        })
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617's example.
        assert_eq!(
            read1("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            basic("Aladdin", "open sesame")
        );
        // The scheme is case-insensitive; spaces and tabs around the token are not part of it.
        for scheme in ["basic", "BASIC", "bAsIc"] {
            assert_eq!(
                read1(&format!("{scheme} {}", b64("alice:pw"))),
                basic("alice", "pw")
            );
        }
        assert_eq!(
            read1(&format!(" Basic \t {} ", b64("alice:pw"))),
            basic("alice", "pw")
        );
        // The password may hold `:`; the user-id may not, so the first `:` splits them.
        assert_eq!(
            read1(&format!("Basic {}", b64("alice:a:b::"))),
            basic("alice", "a:b::")
        );
        // Empty parts are well-formed (and no consumer's, for the gateway to say).
        assert_eq!(read1(&format!("Basic {}", b64(":"))), basic("", ""));
        assert_eq!(
            read1(&format!("Basic {}", b64("alice:"))),
            basic("alice", "")
        );
        // UTF-8 (the charset the challenge announces).
        assert_eq!(
            read1(&format!("Basic {}", b64("zoë:pässwörd"))),
            basic("zoë", "pässwörd")
        );
        // Padding may be left out.
        assert_eq!(read1("Basic YWxpY2U6cHc"), basic("alice", "pw"));
        assert_eq!(read1("Basic YWxpY2U6cHc="), basic("alice", "pw"));
    }

    #[test]
    fn other_schemes_are_not_this_plugins() {
        for value in [
            "Bearer eyJhbGciOi.x.y",
            "Digest username=\"a\"",
            "Basicx YWxpY2U6cHc=",
            "YWxpY2U6cHc=",
            "",
        ] {
            assert_eq!(read1(value), Read::None, "{value}");
        }
        assert_eq!(read(&[]), Read::None);
        assert!(is_basic("basic x") && is_basic("Basic") && !is_basic("Bearer x"));
    }

    #[test]
    fn malformed_credentials() {
        for (value, why) in [
            ("Basic", "nothing follows `Basic`"),
            ("Basic   ", "nothing follows `Basic`"),
            ("Basic not base64!", "the credentials are not base64"),
            ("Basic YWxp Y2U6cHc=", "the credentials are not base64"),
            ("Basic YWxpY2U6cHc===", "the credentials are not base64"),
            // Bits set past the last byte: another spelling of `alice:pw`.
            ("Basic YWxpY2U6cHd=", "the credentials are not base64"),
            (
                "Basic YWxpY2U6cHc=,realm=x",
                "the credentials are not base64",
            ),
            ("Basic /w==", "the credentials are not UTF-8"),
            (
                &format!("Basic {}", b64("alice")),
                "no `:` separates the user-id from the password",
            ),
            (
                &format!("Basic {}", b64("alice:p\r\nx-admin: 1")),
                "the credentials hold control characters",
            ),
            (
                &format!("Basic {}", b64("al\u{7f}ice:pw")),
                "the credentials hold control characters",
            ),
        ] {
            assert_eq!(read1(value), Read::Malformed(why), "{value}");
        }
    }

    #[test]
    fn a_header_sent_twice_with_basic_credentials_is_malformed() {
        let ok = format!("Basic {}", b64("alice:pw"));
        assert_eq!(
            read(&[ok.clone(), ok.clone()]),
            Read::Malformed("the header is sent more than once")
        );
        assert_eq!(
            read(&["Bearer t".into(), ok]),
            Read::Malformed("the header is sent more than once")
        );
        assert_eq!(read(&["Bearer t".into(), "Bearer u".into()]), Read::None);
    }

    /// A gateway whose consumers are `alice` (`alice:pw`) and `bob` (`bob:b:pw`).
    fn check(user_id: &str, password: &str) -> Option<&'static str> {
        match (user_id, password) {
            ("alice", "pw") => Some("alice"),
            ("bob", "b:pw") => Some("bob"),
            _ => None,
        }
    }

    fn headers(authorization: &[&str], proxy: &[&str]) -> [Vec<String>; 2] {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        [owned(authorization), owned(proxy)]
    }

    fn code(r: Result<(&str, String), Refusal>) -> &'static str {
        r.expect_err("refused").code
    }

    #[test]
    fn identify_checks_authorization_else_proxy_authorization() {
        let alice: &str = &format!("Basic {}", b64("alice:pw"));
        let bob: &str = &format!("Basic {}", b64("bob:b:pw"));
        let wrong: &str = &format!("Basic {}", b64("alice:nope"));
        let ok = |who: &'static str| Ok((who, who.to_owned()));
        assert_eq!(identify(&headers(&[alice], &[]), check), ok("alice"));
        assert_eq!(identify(&headers(&[], &[bob]), check), ok("bob"));
        assert_eq!(identify(&headers(&[alice], &[bob]), check), ok("alice"));
        // Another scheme in Authorization (for another plugin): Proxy-Authorization's are used.
        assert_eq!(identify(&headers(&["Bearer t"], &[bob]), check), ok("bob"));
        // Basic credentials in Authorization decide, right or wrong: one check per request.
        let mut asked = Vec::new();
        let r = identify(&headers(&[wrong], &[alice]), |u, p| {
            asked.push(format!("{u}:{p}"));
            check(u, p)
        });
        assert_eq!(code(r), "invalid_credentials");
        assert_eq!(asked, ["alice:nope"]);
        assert_eq!(
            code(identify(&headers(&["Basic !"], &[alice]), check)),
            "malformed_credentials"
        );
    }

    #[test]
    fn identify_refusals() {
        let r = identify(&headers(&[], &[]), check).unwrap_err();
        assert_eq!(
            r,
            Refusal {
                code: "missing_credentials",
                message: "No Basic credentials found in request".into()
            }
        );
        assert_eq!(
            code(identify(&headers(&["Bearer t"], &["Digest x"]), check)),
            "missing_credentials"
        );
        let r = identify(&headers(&["Basic YWxpY2U"], &[]), check).unwrap_err();
        assert_eq!(
            r,
            Refusal {
                code: "malformed_credentials",
                message: "Malformed Basic credentials in Authorization: no `:` separates the \
                          user-id from the password"
                    .into()
            }
        );
        let r = identify(&headers(&[], &["Basic"]), check).unwrap_err();
        assert_eq!(
            r.message,
            "Malformed Basic credentials in Proxy-Authorization: nothing follows `Basic`"
        );
        let wrong: &str = &format!("Basic {}", b64("bob:pw"));
        let r = identify(&headers(&[wrong], &[]), check).unwrap_err();
        assert_eq!(
            r,
            Refusal {
                code: "invalid_credentials",
                message: "Invalid authentication credentials".into()
            }
        );
    }
}
