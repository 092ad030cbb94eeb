//! The route's config: read from JSON, checked, and compiled into [`BasicAuth`], the settings the
//! handler applies. Every error names the field it is about.

use plugin_config::{boolean, object, Fields};

/// The compiled settings of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// Whether Basic credentials are removed from the request before the upstream sees it.
    pub hide_credentials: bool,
    /// The consumer that requests without valid credentials go on as.
    pub anonymous: Option<String>,
    /// The `WWW-Authenticate` value of refusals: `Basic realm="...", charset="UTF-8"`.
    pub challenge: String,
}

const FIELDS: [&str; 3] = ["realm", "hide_credentials", "anonymous"];

/// Reads and checks the route's config (JSON, as the gateway passes it; none at all means every
/// default). `anonymous` reads and checks the `anonymous` field (the plugin passes
/// `plugin_auth::anonymous`, which asks the gateway whether that consumer exists).
pub fn parse(
    config: &str,
    anonymous: impl FnOnce(&Fields) -> Result<Option<String>, String>,
) -> Result<BasicAuth, String> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let m = object(config, &FIELDS, "realm")?;
    let realm = plugin_auth::realm(&m)?;
    let realm = realm.as_deref().unwrap_or(plugin_auth::DEFAULT_REALM);
    Ok(BasicAuth {
        hide_credentials: boolean(&m, "hide_credentials")?,
        anonymous: anonymous(&m)?,
        challenge: format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `anonymous` check of a gateway whose only consumer is `guest`.
    fn guest_only(m: &Fields) -> Result<Option<String>, String> {
        match plugin_config::string(m, "anonymous")? {
            None => Ok(None),
            Some("guest") => Ok(Some("guest".into())),
            Some(other) => Err(format!("anonymous: no consumer is called `{other}`")),
        }
    }

    #[test]
    fn defaults() {
        for config in ["", "\n", "{}"] {
            assert_eq!(
                parse(config, guest_only).unwrap(),
                BasicAuth {
                    hide_credentials: false,
                    anonymous: None,
                    challenge: "Basic realm=\"gateway\", charset=\"UTF-8\"".into(),
                },
                "{config:?}"
            );
        }
    }

    #[test]
    fn fields() {
        let c = parse(
            r#"{"realm": "Staff only (v2)", "hide_credentials": true, "anonymous": "guest"}"#,
            guest_only,
        )
        .unwrap();
        assert_eq!(
            c,
            BasicAuth {
                hide_credentials: true,
                anonymous: Some("guest".into()),
                challenge: "Basic realm=\"Staff only (v2)\", charset=\"UTF-8\"".into(),
            }
        );
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("[]", "config: expected a map with realm"),
            ("\"gateway\"", "config:"),
            (r#"{"realm": "a", "users": []}"#, "users: unknown field"),
            (r#"{"realm": 1}"#, "realm: expected a string"),
            (
                r#"{"realm": "say \"hi\""}"#,
                "realm: '\"' cannot be written",
            ),
            (r#"{"realm": "a\\b"}"#, "realm:"),
            (r#"{"realm": "a\tb"}"#, "realm: '\\t'"),
            (r#"{"realm": "\u00fcber"}"#, "realm: 'ü'"),
            (
                r#"{"hide_credentials": "yes"}"#,
                "hide_credentials: expected true or false",
            ),
            (
                r#"{"anonymous": ["guest"]}"#,
                "anonymous: expected a string",
            ),
            (
                r#"{"anonymous": "nobody"}"#,
                "anonymous: no consumer is called `nobody`",
            ),
        ] {
            let e = parse(config, guest_only).expect_err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
