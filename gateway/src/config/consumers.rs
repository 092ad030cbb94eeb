//! The `consumers:` section: the API users the gateway knows, their groups and credentials. Secrets are
//! written inline, as `env:NAME` or as `file:PATH` (read when the config is loaded and on every reload;
//! a relative path is relative to the config file; one trailing newline is dropped). They are never
//! shown: `/config`, `Debug` and errors show an inline secret as `<redacted>` and a reference as written.
//! What is done with them (hashing, lookups) is `crate::consumers`'.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;

/// One consumer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Unique name: what the access log, metrics and later filters see.
    pub name: String,
    /// Groups it belongs to (for `acl`). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Its credentials, by kind (the plugin that checks them). Default: none.
    #[serde(default)]
    pub credentials: Credentials,
}

/// A consumer's credentials. Each kind takes one map or a list of them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Keys for `key-auth`.
    #[serde(
        rename = "key-auth",
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "one_or_many_schema::<KeyAuth>")]
    pub key_auth: Vec<KeyAuth>,
    /// Usernames and passwords for `basic-auth`.
    #[serde(
        rename = "basic-auth",
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "one_or_many_schema::<BasicAuth>")]
    pub basic_auth: Vec<BasicAuth>,
    /// Keys that sign or verify tokens for `jwt-auth`.
    #[serde(
        rename = "jwt-auth",
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "one_or_many_schema::<JwtAuth>")]
    pub jwt_auth: Vec<JwtAuth>,
}

/// A `key-auth` credential.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyAuth {
    /// The key (a secret that is also its own identifier).
    pub key: Secret,
}

/// A `basic-auth` credential.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The username (unique among `basic-auth` credentials).
    #[serde(deserialize_with = "text")]
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// A `jwt-auth` credential: a shared secret for HMAC algorithms, or a public key for the others.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// What tokens name it by (the `iss` claim or the `kid` header, as jwt-auth's config says; unique
    /// among `jwt-auth` credentials).
    #[serde(deserialize_with = "text")]
    pub key: String,
    /// The algorithm tokens must be signed with (`HS256`, `RS256`, `ES256`, `EdDSA`, ...). Default:
    /// `HS256`.
    #[serde(default = "default_jwt_algorithm")]
    pub algorithm: String,
    /// The shared secret (HMAC algorithms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The public key, PEM (the other algorithms). Not a secret, but it may be read from `file:` or
    /// `env:` like one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Secret>,
}

fn default_jwt_algorithm() -> String {
    "HS256".into()
}

/// The files the secrets of `consumers` are read from (`file:PATH`, as written).
pub fn secret_files(consumers: &[Consumer]) -> impl Iterator<Item = &str> {
    consumers.iter().flat_map(|c| {
        let creds = &c.credentials;
        let keys = creds.key_auth.iter().map(|k| &k.key);
        let passwords = creds.basic_auth.iter().map(|b| &b.password);
        let jwt = creds
            .jwt_auth
            .iter()
            .flat_map(|j| j.secret.iter().chain(j.public_key.iter()));
        keys.chain(passwords)
            .chain(jwt)
            .filter_map(|s| s.0.strip_prefix("file:"))
    })
}

/// What [`one_or_many`] reads: one `T` or a list of them.
fn one_or_many_schema<T: schemars::JsonSchema>(
    g: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    let one = g.subschema_for::<T>();
    schemars::json_schema!({"anyOf": [one, {"type": "array", "items": one}]})
}

/// A map, or a list of maps. Read by what the node is (not by trying both, which would hide the
/// real error of a map, such as an unknown field, behind a generic one).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a credential map or a list of them")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|t| vec![t])
        }
    }
    d.deserialize_any(OneOrMany(std::marker::PhantomData))
}

/// A username, key or secret: a string. One YAML reads as a number or boolean (`0x1F`, `+5`,
/// `TRUE`) is refused rather than turned into text, which would not be what was written (`31`, `5`,
/// `true`): quoted, it is taken as written.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string (write numbers and booleans in quotes)")
        }

        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
    }
    d.deserialize_any(Text)
}

/// A secret as written: the value itself, `env:NAME` or `file:PATH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret written as `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The reference it is written as (`env:NAME`, `file:PATH`), or `None` for an inline value.
    pub fn reference(&self) -> Option<&str> {
        (self.0.starts_with("env:") || self.0.starts_with("file:")).then_some(self.0.as_str())
    }

    /// The secret's value: the inline text, the environment variable, or the file's content without
    /// one trailing newline (`base` is the config file's folder, for a relative path). An error says
    /// which variable or file, never the value.
    pub fn resolve(&self, base: &Path) -> Result<zeroize::Zeroizing<String>, String> {
        let value = if let Some(name) = self.0.strip_prefix("env:") {
            std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    format!("the environment variable `{name}` is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("the environment variable `{name}` is not UTF-8")
                }
            })?
        } else if let Some(path) = self.0.strip_prefix("file:") {
            let path = base.join(path);
            let mut text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        } else {
            self.0.clone()
        };
        if value == super::redact::REDACTED {
            // What `/config` shows instead of the value, sent back (GET, then PUT /config):
            // taking it as the secret would make `<redacted>` everyone's key.
            return Err(format!(
                "`{}` is how /config shows a secret, not one: write the value, or use env:NAME or file:PATH",
                super::redact::REDACTED
            ));
        }
        if value.is_empty() {
            return Err(match self.reference() {
                Some(r) => format!("`{r}` is empty"),
                None => "is empty".into(),
            });
        }
        Ok(zeroize::Zeroizing::new(value))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reference().unwrap_or(super::redact::REDACTED))
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.reference().unwrap_or(super::redact::REDACTED))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        text(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_resolve_from_the_three_sources_and_never_show() {
        let dir = std::env::temp_dir().join(format!("gw-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k"), "from-file\n").unwrap();
        std::env::set_var("GW_TEST_SECRET_ENV", "from-env");
        let inline = Secret::new("inline-value");
        assert_eq!(*inline.resolve(&dir).unwrap(), "inline-value");
        assert_eq!(*Secret::new("file:k").resolve(&dir).unwrap(), "from-file");
        assert_eq!(
            *Secret::new("env:GW_TEST_SECRET_ENV").resolve(&dir).unwrap(),
            "from-env"
        );
        let e = Secret::new("env:GW_TEST_SECRET_UNSET")
            .resolve(&dir)
            .unwrap_err();
        assert!(e.contains("GW_TEST_SECRET_UNSET"), "{e}");
        let e = Secret::new("file:missing").resolve(&dir).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        assert_eq!(format!("{inline:?}"), "<redacted>");
        assert_eq!(
            serde_json::to_value(&inline).unwrap(),
            serde_json::json!("<redacted>")
        );
        assert_eq!(
            serde_json::to_value(Secret::new("env:X")).unwrap(),
            serde_json::json!("env:X")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kind_takes_a_map_or_a_list() {
        let c: Consumer = serde_yaml_ng::from_str(
            "name: a\ncredentials:\n  key-auth: {key: k1}\n  basic-auth: [{username: u, password: p}, {username: v, password: q}]\n",
        )
        .unwrap();
        assert_eq!(c.credentials.key_auth.len(), 1);
        assert_eq!(c.credentials.basic_auth.len(), 2);
        let e = serde_yaml_ng::from_str::<Consumer>("name: a\ncredentials:\n  key-auth: k1\n")
            .unwrap_err();
        assert!(e.to_string().contains("a credential map or a list"), "{e}");
        // A map's own error, not a generic one.
        let e = serde_yaml_ng::from_str::<Consumer>(
            "name: a\ncredentials:\n  basic-auth: {username: u, pasword: p}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `pasword`"), "{e}");
        // A number or boolean YAML read as such is refused (`0x1F` would become `31`); quoted, it is
        // taken as written.
        for value in ["0x1F", "123456", "true", "1e3", "+5"] {
            let e = serde_yaml_ng::from_str::<Consumer>(&format!(
                "name: a\ncredentials:\n  basic-auth: {{username: u, password: {value}}}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains("in quotes"), "{value}: {e}");
        }
        let c: Consumer = serde_yaml_ng::from_str(
            "name: a\ncredentials:\n  basic-auth: {username: '1234', password: '0x1F'}\n",
        )
        .unwrap();
        assert_eq!(c.credentials.basic_auth[0].username, "1234");
        assert_eq!(
            *c.credentials.basic_auth[0]
                .password
                .resolve(Path::new("."))
                .unwrap(),
            "0x1F"
        );
    }
}
