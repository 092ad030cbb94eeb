//! A route's protocol upgrades (`upgrades:`): which protocols a client may switch to through it
//! (HTTP/1.1 `Upgrade`, HTTP/2 extended CONNECT), and how long a tunnel may live.

use super::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The protocol tunnelled when a route says nothing: WebSocket.
pub const WEBSOCKET: &str = "websocket";

/// Time a tunnel may pass no byte in either direction before it is closed, when the route sets
/// none. Default: 5 minutes (Envoy's stream idle timeout, which applies to its upgraded streams).
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How a route treats requests that ask to switch protocols.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upgrades {
    /// Protocols tunnelled (`Upgrade` tokens; HTTP/2 `:protocol` values), compared without case.
    /// An upgrade to any other protocol is answered 403. `[]` forbids every upgrade on the route.
    /// Default: `[websocket]`.
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// Time a tunnel may pass no byte in either direction; then both sides are closed. Default: 5m.
    #[serde(default = "default_idle")]
    pub idle_timeout: Dur,
    /// Longest life of a tunnel, from the upstream's 101; then both sides are closed. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<Dur>,
}

impl Default for Upgrades {
    fn default() -> Self {
        Upgrades {
            allow: default_allow(),
            idle_timeout: default_idle(),
            max_duration: None,
        }
    }
}

fn default_allow() -> Vec<String> {
    vec![WEBSOCKET.to_owned()]
}

fn default_idle() -> Dur {
    Dur(DEFAULT_TUNNEL_IDLE_TIMEOUT)
}

impl Upgrades {
    /// What is wrong with these settings, as `(field under upgrades, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (i, p) in self.allow.iter().enumerate() {
            let at = format!("allow[{i}]");
            if p.is_empty() || !p.bytes().all(is_token_byte) {
                return Err((
                    at,
                    format!("`{p}` is not a protocol name (an HTTP token such as `websocket`)"),
                ));
            }
            if p.eq_ignore_ascii_case("h2c") {
                return Err((
                    at,
                    "h2c is not tunnelled: a client's `Upgrade: h2c` is dropped and the request served as HTTP/1.1".into(),
                ));
            }
        }
        if self.idle_timeout.0.is_zero() {
            return Err(("idle_timeout".into(), "must be more than 0".into()));
        }
        if self.max_duration.is_some_and(|d| d.0.is_zero()) {
            return Err(("max_duration".into(), "must be more than 0".into()));
        }
        Ok(())
    }
}

/// A `tchar` of RFC 9110 section 5.6.2 (the characters of a protocol name), `/` included for a
/// protocol version (`Upgrade: foo/2`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_durations_are_checked() {
        let ok: Upgrades = serde_yaml_ng::from_str("max_duration: 1h").unwrap();
        assert_eq!(ok.allow, vec!["websocket"]);
        assert_eq!(ok.idle_timeout.0, DEFAULT_TUNNEL_IDLE_TIMEOUT);
        assert!(ok.check().is_ok());
        for (yaml, field) in [
            ("allow: [websocket, 'a b']", "allow[1]"),
            ("allow: ['']", "allow[0]"),
            ("allow: [H2C]", "allow[0]"),
            ("idle_timeout: 0s", "idle_timeout"),
            ("max_duration: 0s", "max_duration"),
        ] {
            let u: Upgrades = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(u.check().unwrap_err().0, field, "{yaml}");
        }
        let none: Upgrades = serde_yaml_ng::from_str("allow: []").unwrap();
        assert!(none.check().is_ok());
    }
}

/// A route's upgrade settings, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Protocols tunnelled, lowercase.
    allow: Box<[Box<str>]>,
    /// Time a tunnel may pass no byte either way.
    pub idle_timeout: Duration,
    /// Longest life of a tunnel.
    pub max_duration: Option<Duration>,
}

impl Policy {
    /// Compiles checked settings (see [`Upgrades::check`]).
    pub fn new(u: &Upgrades) -> Policy {
        Policy {
            allow: u
                .allow
                .iter()
                .map(|p| p.to_ascii_lowercase().into_boxed_str())
                .collect(),
            idle_timeout: u.idle_timeout.0,
            max_duration: u.max_duration.map(|d| d.0),
        }
    }

    /// Whether no protocol is tunnelled (`allow: []`).
    pub fn forbids_all(&self) -> bool {
        self.allow.is_empty()
    }

    /// Whether `protocol` (an `Upgrade` token) is tunnelled.
    pub fn allows(&self, protocol: &str) -> bool {
        self.allow.iter().any(|p| p.eq_ignore_ascii_case(protocol))
    }
}
