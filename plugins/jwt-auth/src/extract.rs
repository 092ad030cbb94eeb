//! Where a token is found in a request, and how it is taken out of it (`hide_credentials`): request
//! headers (`Bearer <token>`), query parameters and cookies. Pure functions of the request's values.

use crate::failure::Failure;

/// The token in a header value: what follows `Bearer ` (the scheme in any case), or the whole
/// value when it is one word. A value with another scheme (`Basic ...`) holds no token.
pub fn from_header_value(value: &str) -> Option<&str> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = match v.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => v[7..].trim_start(),
        _ if v.contains([' ', '\t']) => return None,
        _ => v,
    };
    (!token.is_empty()).then_some(token)
}

/// Decodes `s` as HTML forms encode query strings (`+` is a space, `%XX` a byte), as the gateway and
/// most servers read them; `None` when an escape is broken or the result is not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query's parameters: the pair as written, and its name and value. A name is compared once
/// decoded (`?jw%74=` is `jwt`), so that no spelling of a configured name escapes the plugin.
fn pairs(query: &str) -> impl Iterator<Item = (&str, Option<String>, &str)> {
    query.split('&').map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (pair, form_decode(name), value)
    })
}

fn named(name: &Option<String>, names: &[String]) -> bool {
    name.as_ref().is_some_and(|n| names.iter().any(|x| x == n))
}

/// Every non-empty value of the query parameters named in `names`, decoded. A value that cannot be
/// decoded is taken as written (it is then no token, and is refused as malformed).
pub fn query_params(query: &str, names: &[String]) -> Vec<String> {
    pairs(query)
        .filter(|(_, n, v)| named(n, names) && !v.is_empty())
        .map(|(_, _, v)| form_decode(v).unwrap_or_else(|| v.to_owned()))
        .collect()
}

/// The query without any parameter named in `names` (compared decoded), or `None` when it has none
/// of them.
pub fn strip_query(query: &str, names: &[String]) -> Option<String> {
    let kept: Vec<&str> = pairs(query)
        .filter(|(_, n, _)| !named(n, names))
        .map(|(pair, _, _)| pair)
        .collect();
    (kept.len() != query.split('&').count()).then(|| kept.join("&"))
}

fn crumbs(values: &[String]) -> impl Iterator<Item = (&str, &str, &str)> {
    values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (name, value) = c.split_once('=').unwrap_or((c, ""));
            (c, name.trim(), value.trim())
        })
}

/// Every non-empty value of the cookie `name` in the `cookie` header values (RFC 6265: quotes
/// around a value are not part of it).
pub fn cookies(values: &[String], name: &str) -> Vec<String> {
    crumbs(values)
        .filter(|(_, n, _)| *n == name)
        .map(|(_, _, v)| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `cookie` header without the cookies named in `names` (empty when none is left), or `None`
/// when it has none of them.
pub fn strip_cookies(values: &[String], names: &[String]) -> Option<String> {
    let all: Vec<(&str, &str, &str)> = crumbs(values).collect();
    let kept: Vec<&str> = all
        .iter()
        .filter(|(_, n, _)| !names.iter().any(|x| x == n))
        .map(|(c, _, _)| *c)
        .collect();
    (kept.len() != all.len()).then(|| kept.join("; "))
}

/// Where a request may carry its token: the values of the configured headers, its query and the
/// configured query parameter names, its `cookie` header values and the configured cookie names.
pub struct Places<'a> {
    pub header_values: &'a [String],
    pub query: Option<&'a str>,
    pub uri_param_names: &'a [String],
    pub cookie_values: &'a [String],
    pub cookie_names: &'a [String],
}

/// The request's token: the one token found in all of `places`. Several different ones (two
/// `Authorization` headers, `?jwt=` twice, a header and a query parameter...) are refused, as Kong
/// refuses them: the plugin would verify one while the upstream may read another. The same token
/// in several places is one token.
pub fn the_token(places: &Places<'_>) -> Result<String, Failure> {
    let mut found: Vec<String> = places
        .header_values
        .iter()
        .filter_map(|v| from_header_value(v))
        .map(str::to_owned)
        .collect();
    if let Some(q) = places.query {
        found.extend(query_params(q, places.uri_param_names));
    }
    for name in places.cookie_names {
        found.extend(cookies(places.cookie_values, name));
    }
    let first = found.first().cloned().ok_or(Failure::Missing)?;
    if found.iter().any(|t| *t != first) {
        return Err(Failure::Malformed(
            "malformed token: multiple tokens provided",
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn header_values() {
        assert_eq!(from_header_value("Bearer a.b.c"), Some("a.b.c"));
        assert_eq!(from_header_value("bearer   a.b.c "), Some("a.b.c"));
        assert_eq!(from_header_value("BEARER a.b.c"), Some("a.b.c"));
        assert_eq!(from_header_value("a.b.c"), Some("a.b.c"));
        assert_eq!(from_header_value("Basic YTpi"), None);
        assert_eq!(from_header_value("Bearer "), None);
        assert_eq!(from_header_value("Bearer"), None);
        assert_eq!(from_header_value(""), None);
        assert_eq!(from_header_value("Bearera.b.c"), Some("Bearera.b.c"));
    }

    #[test]
    fn query_params_are_form_decoded() {
        let jwt = names(&["jwt"]);
        assert_eq!(query_params("jwt=a.b.c", &jwt), ["a.b.c"]);
        assert_eq!(query_params("x=1&jwt=a%2Eb.c&jwt=d", &jwt), ["a.b.c", "d"]);
        assert_eq!(query_params("jwt=&jwt=d", &jwt), ["d"]);
        assert!(query_params("jwtx=a&xjwt=b&jwt", &jwt).is_empty());
        // The name in any spelling: percent-escaped, or with `+` for a space.
        assert_eq!(
            query_params("jw%74=a.b.c&%6A%77%74=d", &jwt),
            ["a.b.c", "d"]
        );
        assert_eq!(query_params("my+jwt=x", &names(&["my jwt"])), ["x"]);
        // A value that cannot be decoded is kept as written (no token: refused as malformed).
        assert_eq!(query_params("jwt=%zz", &jwt), ["%zz"]);
        assert_eq!(query_params("jwt=%ff", &jwt), ["%ff"]);
        assert_eq!(query_params("jwt=%2", &jwt), ["%2"]);
        // A name that cannot be decoded is no configured name.
        assert!(query_params("jwt%ff=x&jw%7=y", &jwt).is_empty());
    }

    #[test]
    fn queries_lose_the_token() {
        let jwt = names(&["jwt", "token"]);
        assert_eq!(
            strip_query("a=1&jwt=x&b=2", &jwt).as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(strip_query("jwt=x&token=y&jwt", &jwt).as_deref(), Some(""));
        assert_eq!(
            strip_query("jw%74=x&a=%6A&t%6Fken=y", &jwt).as_deref(),
            Some("a=%6A")
        );
        assert_eq!(strip_query("a=1&jwtx=2", &jwt), None);
        assert_eq!(strip_query("", &jwt), None);
    }

    fn token_of(
        headers: &[&str],
        query: Option<&str>,
        cookies: &[&str],
    ) -> Result<String, Failure> {
        the_token(&Places {
            header_values: &names(headers),
            query,
            uri_param_names: &names(&["jwt"]),
            cookie_values: &names(cookies),
            cookie_names: &names(&["session"]),
        })
    }

    #[test]
    fn one_token_in_all_the_places() {
        let multiple = Err(Failure::Malformed(
            "malformed token: multiple tokens provided",
        ));
        assert_eq!(token_of(&[], None, &[]), Err(Failure::Missing));
        assert_eq!(
            token_of(&["Basic YTpi", "Bearer "], Some("jwt="), &["session="]),
            Err(Failure::Missing)
        );
        assert_eq!(
            token_of(&["Bearer a.b.c"], None, &[]).as_deref(),
            Ok("a.b.c")
        );
        assert_eq!(
            token_of(&[], Some("x=1&jwt=a.b.c"), &[]).as_deref(),
            Ok("a.b.c")
        );
        assert_eq!(
            token_of(&[], None, &["x=1; session=a.b.c"]).as_deref(),
            Ok("a.b.c")
        );
        // The same token in several places is one token.
        assert_eq!(
            token_of(
                &["Bearer a.b.c", "a.b.c"],
                Some("jwt=a.b.c"),
                &["session=\"a.b.c\""]
            )
            .as_deref(),
            Ok("a.b.c")
        );
        // Two different ones, wherever they are, are refused: two headers, two parameters (one
        // spelt otherwise), two cookies, a header and a parameter, a parameter and a cookie.
        assert_eq!(
            token_of(&["Bearer a.b.c", "Bearer d.e.f"], None, &[]),
            multiple
        );
        assert_eq!(token_of(&[], Some("jwt=a.b.c&jw%74=d.e.f"), &[]), multiple);
        assert_eq!(
            token_of(&[], None, &["session=a.b.c", "session=d.e.f"]),
            multiple
        );
        assert_eq!(
            token_of(&["Bearer a.b.c"], Some("jwt=d.e.f"), &[]),
            multiple
        );
        assert_eq!(
            token_of(&[], Some("jwt=a.b.c"), &["session=d.e.f"]),
            multiple
        );
        // A value that holds no token (another scheme, empty) does not count.
        assert_eq!(
            token_of(&["Basic YTpi", "Bearer a.b.c"], Some("jwt="), &[]).as_deref(),
            Ok("a.b.c")
        );
    }

    #[test]
    fn cookies_are_read_and_taken_out() {
        let values = names(&["a=1; session=a.b.c", "jwt=\"d.e.f\";x=2"]);
        assert_eq!(cookies(&values, "session"), ["a.b.c"]);
        assert_eq!(cookies(&values, "jwt"), ["d.e.f"]);
        assert!(cookies(&values, "sess").is_empty());
        assert_eq!(
            cookies(&names(&["jwt=; jwt=g", "jwt=h"]), "jwt"),
            ["g", "h"]
        );
        assert_eq!(
            strip_cookies(&values, &names(&["session", "jwt"])).as_deref(),
            Some("a=1; x=2")
        );
        assert_eq!(
            strip_cookies(&names(&["jwt=x"]), &names(&["jwt"])).as_deref(),
            Some("")
        );
        assert_eq!(strip_cookies(&values, &names(&["other"])), None);
    }
}
