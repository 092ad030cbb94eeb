//! Where a token is found in a request, and how it is taken out of it (`hide_credentials`): request
//! headers (`Bearer <token>`), query parameters and cookies. Pure functions of the request's values.

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

/// `%XX`-decodes `s`; `None` when an escape is broken or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn pairs(query: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    query.split('&').map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (pair, name, value)
    })
}

/// The first non-empty value of the query parameter `name`, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    pairs(query)
        .filter(|(_, n, v)| *n == name && !v.is_empty())
        .find_map(|(_, _, v)| percent_decode(v))
}

/// The query without any parameter named in `names`, or `None` when it has none of them.
pub fn strip_query(query: &str, names: &[String]) -> Option<String> {
    let kept: Vec<&str> = pairs(query)
        .filter(|(_, n, _)| !names.iter().any(|x| x == n))
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

/// The first non-empty value of the cookie `name` in the `cookie` header values (RFC 6265: quotes
/// around a value are not part of it).
pub fn cookie(values: &[String], name: &str) -> Option<String> {
    crumbs(values)
        .filter(|(_, n, _)| *n == name)
        .map(|(_, _, v)| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
        .find(|v| !v.is_empty())
        .map(str::to_owned)
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
    fn query_params() {
        assert_eq!(query_param("jwt=a.b.c", "jwt").as_deref(), Some("a.b.c"));
        assert_eq!(
            query_param("x=1&jwt=a%2Eb.c&jwt=d", "jwt").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(query_param("jwt=&jwt=d", "jwt").as_deref(), Some("d"));
        assert_eq!(query_param("jwtx=a&xjwt=b&jwt", "jwt"), None);
        assert_eq!(query_param("jwt=%zz", "jwt"), None);
        assert_eq!(query_param("jwt=%ff", "jwt"), None);
        assert_eq!(query_param("jwt=%2", "jwt"), None);
    }

    #[test]
    fn queries_lose_the_token() {
        let jwt = names(&["jwt", "token"]);
        assert_eq!(
            strip_query("a=1&jwt=x&b=2", &jwt).as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(strip_query("jwt=x&token=y&jwt", &jwt).as_deref(), Some(""));
        assert_eq!(strip_query("a=1&jwtx=2", &jwt), None);
        assert_eq!(strip_query("", &jwt), None);
    }

    #[test]
    fn cookies() {
        let values = names(&["a=1; session=a.b.c", "jwt=\"d.e.f\";x=2"]);
        assert_eq!(cookie(&values, "session").as_deref(), Some("a.b.c"));
        assert_eq!(cookie(&values, "jwt").as_deref(), Some("d.e.f"));
        assert_eq!(cookie(&values, "sess"), None);
        assert_eq!(
            cookie(&names(&["jwt=; jwt=g"]), "jwt").as_deref(),
            Some("g")
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
