//! The access log: one line per request, with the fields `server.access_log.fields` lists, in that
//! order, as JSON (`server.log_format: json`) or as `key=value` text, on stderr next to the other
//! logs, under the `access` target (so `GATEWAY_LOG=access=off` turns it off).
//!
//! The line is written here rather than through a `tracing` event because its fields are chosen in
//! the config (a `tracing` event's fields are fixed where it is written); it has the shape the
//! other log lines have (`timestamp`, `level`, the fields, `target`). JSON keeps the fields' order
//! too: the object is written key by key, not collected into a map (`serde_json`'s maps sort their
//! keys unless the whole build turns on its `preserve_order` feature).

use crate::config::LogFormat;
use std::borrow::Cow;
use std::io::Write;

pub use crate::config::access_log::{default_fields, Field, DEFAULT_FIELDS, FIELDS};

/// When a request's phases ended, for the per-phase timings: set by the proxy as they pass (in the
/// request's extensions, so the backend marks its own start and end).
#[derive(Debug)]
pub struct Marks {
    start: std::time::Instant,
    /// Nanoseconds after `start`, plus one (0: not reached).
    at: [std::sync::atomic::AtomicU64; 3],
}

/// A point of a request's life that [`Marks`] records.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    /// The backend (upstream, function, direct answer) was asked: the request phase is over.
    BackendStart = 0,
    /// The backend's response head arrived (the upstream's, after retries).
    BackendEnd = 1,
    /// The response head went through the response filters and is on its way to the client.
    Responded = 2,
}

impl Marks {
    /// Marks of a request that started at `start`.
    pub fn new(start: std::time::Instant) -> Marks {
        Marks {
            start,
            at: Default::default(),
        }
    }

    /// Records `mark` now (the first time only).
    pub fn mark(&self, mark: Mark) {
        let nanos = self
            .start
            .elapsed()
            .as_nanos()
            .min(u128::from(u64::MAX - 1)) as u64
            + 1;
        let _ = self.at[mark as usize].compare_exchange(
            0,
            nanos,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn get(&self, mark: Mark) -> Option<std::time::Duration> {
        match self.at[mark as usize].load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            n => Some(std::time::Duration::from_nanos(n - 1)),
        }
    }

    /// Time from the start to the backend's start (or, for a request a filter answered, to the
    /// answer): the routing and the request filters.
    pub fn request_phase(&self) -> Option<std::time::Duration> {
        self.get(Mark::BackendStart).or(self.get(Mark::Responded))
    }

    /// Time the backend took to give its response head.
    pub fn backend(&self) -> Option<std::time::Duration> {
        Some(
            self.get(Mark::BackendEnd)?
                .saturating_sub(self.get(Mark::BackendStart)?),
        )
    }

    /// Time from the backend's response head to the response going out: the response filters.
    pub fn response_phase(&self) -> Option<std::time::Duration> {
        Some(
            self.get(Mark::Responded)?
                .saturating_sub(self.get(Mark::BackendEnd)?),
        )
    }
}

/// A field's value in one line.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string (written quoted in JSON; bare in text when it can be).
    Text(String),
    /// An unsigned number.
    Int(u64),
    /// Milliseconds with fractions (microsecond precision).
    Ms(f64),
    /// A boolean.
    Bool(bool),
}

/// Milliseconds of `d`, to the microsecond.
pub fn ms(d: std::time::Duration) -> Value {
    Value::Ms((d.as_secs_f64() * 1e6).round() / 1000.0)
}

/// Whether access lines are written: the `access` target is enabled at `INFO` (`GATEWAY_LOG`).
#[inline]
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// Whether a request gathers the facts of its line (takes the marks, copies the logged fields):
/// only if `config` turns the log on and the line would be written ([`enabled`]), so a log that
/// `GATEWAY_LOG` filters out costs a request nothing beyond this look (a cached answer per call
/// site). The proxy asks once per request.
#[inline]
pub fn gathers(config: &crate::config::AccessLog) -> bool {
    config.enabled && enabled()
}

/// Writes one line of `(key, value)` pairs (a field without a value for this request, such as the
/// trace id of an untraced request or a header it did not have, is left out) to stderr, if the
/// `access` target is enabled.
pub fn write(format: LogFormat, pairs: &[(Cow<'static, str>, Value)]) {
    if !enabled() {
        return;
    }
    let line = render(format, std::time::SystemTime::now(), pairs);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The line for `pairs` at `now`, with its newline.
pub fn render(
    format: LogFormat,
    now: std::time::SystemTime,
    pairs: &[(Cow<'static, str>, Value)],
) -> String {
    let timestamp = rfc3339(now);
    match format {
        LogFormat::Json => {
            let line = JsonLine {
                timestamp: &timestamp,
                pairs,
            };
            // Strings, numbers and booleans into memory: nothing can fail (a non-finite number
            // is written `null`).
            let mut line = serde_json::to_string(&line).expect("an access line serializes");
            line.push('\n');
            line
        }
        LogFormat::Text => {
            let mut line = format!("{timestamp}  INFO access:");
            for (k, v) in pairs {
                line.push(' ');
                line.push_str(k);
                line.push('=');
                match v {
                    Value::Text(s) if bare(s) => line.push_str(s),
                    Value::Text(s) => {
                        line.push_str(&serde_json::Value::from(s.as_str()).to_string())
                    }
                    Value::Int(n) => line.push_str(&n.to_string()),
                    Value::Ms(f) => line.push_str(&f.to_string()),
                    Value::Bool(b) => line.push_str(&b.to_string()),
                }
            }
            line.push('\n');
            line
        }
    }
}

/// A JSON line: `timestamp`, `level`, the fields in the order given, `target`. A key given twice
/// (a field listed twice) is written once.
struct JsonLine<'a> {
    timestamp: &'a str,
    pairs: &'a [(Cow<'static, str>, Value)],
}

impl serde::Serialize for JsonLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.pairs.len() + 3))?;
        m.serialize_entry("timestamp", self.timestamp)?;
        m.serialize_entry("level", "INFO")?;
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if !self.pairs[..i].iter().any(|(seen, _)| seen == k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.serialize_entry("target", "access")?;
        m.end()
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Text(t) => s.serialize_str(t),
            Value::Int(n) => s.serialize_u64(*n),
            Value::Ms(f) => s.serialize_f64(*f),
            Value::Bool(b) => s.serialize_bool(*b),
        }
    }
}

/// A text value written without quotes: not empty, visible ASCII, no `"` or `=`.
fn bare(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=')
}

/// `2026-12-07T11:00:00.123456Z`, as the other log lines write their time.
fn rfc3339(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_refuse() {
        assert_eq!(Field::parse("route").unwrap(), Field::Named("route"));
        assert_eq!(
            Field::parse("request_header.X-Foo").unwrap(),
            Field::RequestHeader(http::HeaderName::from_static("x-foo"))
        );
        assert_eq!(
            Field::parse("response_header.x-bar").unwrap().key(),
            "response_header.x-bar"
        );
        assert!(Field::parse("rout")
            .unwrap_err()
            .contains("unknown access log field `rout`"));
        assert!(Field::parse("request_header.a b").is_err());
        for f in DEFAULT_FIELDS {
            assert!(FIELDS.contains(f), "{f}");
        }
    }

    /// A field listed twice is a config error at its second listing, with its path; one header
    /// in two spellings is one field. The same list without the repeat is taken.
    #[test]
    fn a_field_listed_twice_is_a_config_error_at_its_line() {
        let path = std::path::Path::new("g.yaml");
        let text = "listeners: []\nserver:\n  access_log:\n    fields:\n      - status\n      - route\n      - status\n";
        let e = crate::config::Config::parse(path, text).unwrap_err();
        assert_eq!(e.location.map(|(line, _)| line), Some(7), "{e}");
        assert_eq!(e.field, "server.access_log.fields[2]", "{e}");
        assert!(e.message.contains("`status` is listed twice"), "{e}");
        let text = "listeners: []\nserver:\n  access_log: {fields: [route, request_header.X-Id, request_header.x-id]}\n";
        let e = crate::config::Config::parse(path, text).unwrap_err();
        assert_eq!(e.field, "server.access_log.fields[2]", "{e}");
        assert!(
            e.message.contains("`request_header.x-id` is listed twice"),
            "{e}"
        );
        let text = "listeners: []\nserver:\n  access_log: {fields: [route, request_header.x-id, response_header.x-id]}\n";
        let c = crate::config::Config::parse(path, text).unwrap();
        assert_eq!(c.server.access_log.fields.len(), 3);
    }

    /// An unknown field is a config error at its line, with its path.
    #[test]
    fn an_unknown_field_is_a_config_error_at_its_line() {
        let text = "listeners: []\nserver:\n  access_log:\n    fields:\n      - route\n      - upstream_time\n";
        let e = crate::config::Config::parse(std::path::Path::new("g.yaml"), text).unwrap_err();
        assert_eq!(e.location.map(|(line, _)| line), Some(6), "{e}");
        assert_eq!(e.field, "server.access_log.fields[1]", "{e}");
        assert!(
            e.message
                .contains("unknown access log field `upstream_time`"),
            "{e}"
        );
        let ok = "listeners: []\nserver:\n  access_log: {fields: [status, request_header.x-foo]}\n";
        let c = crate::config::Config::parse(std::path::Path::new("g.yaml"), ok).unwrap();
        assert_eq!(c.server.access_log.fields.len(), 2);
    }

    /// A JSON line has its fields in the configured order, between `level` and `target` as the
    /// other log lines have theirs; a field listed twice is written once.
    #[test]
    fn a_json_line_keeps_the_fields_in_order() {
        let pairs = [
            ("status".into(), Value::Int(200)),
            ("route".into(), Value::Text("api".into())),
            ("bytes".into(), Value::Int(5)),
            ("request_header.x-a".into(), Value::Text("1".into())),
            ("duration_ms".into(), Value::Ms(0.25)),
            ("status".into(), Value::Int(200)),
        ];
        assert_eq!(
            render(LogFormat::Json, std::time::UNIX_EPOCH, &pairs),
            concat!(
                r#"{"timestamp":"1970-01-01T00:00:00.000000Z","level":"INFO","status":200,"#,
                r#""route":"api","bytes":5,"request_header.x-a":"1","duration_ms":0.25,"#,
                r#""target":"access"}"#,
                "\n"
            )
        );
    }

    /// A request gathers the facts of its line only when the line would be written: the config
    /// turns the log on and the log filter lets the `access` target through at INFO.
    #[test]
    fn a_request_gathers_its_line_only_when_the_line_is_written() {
        use tracing_subscriber::layer::SubscriberExt;
        let on = crate::config::AccessLog::default();
        let off = crate::config::AccessLog {
            enabled: false,
            ..Default::default()
        };
        let under = |filter: &str, config: &crate::config::AccessLog| {
            let subscriber =
                tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new(filter));
            tracing::subscriber::with_default(subscriber, || gathers(config))
        };
        assert!(under("info", &on));
        assert!(under("warn,access=info", &on));
        assert!(!under("info,access=off", &on), "access=off");
        assert!(!under("warn", &on), "warn");
        assert!(!under("info", &off), "enabled: false");
    }

    #[test]
    fn lines_in_both_formats() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_641_200_123_456);
        let pairs = [
            ("route".into(), Value::Text("api".into())),
            ("path".into(), Value::Text("/a b".into())),
            ("status".into(), Value::Int(200)),
            (
                "upstream_ms".into(),
                ms(std::time::Duration::from_micros(1500)),
            ),
            ("complete".into(), Value::Bool(true)),
        ];
        let json: serde_json::Value =
            serde_json::from_str(&render(LogFormat::Json, t, &pairs)).unwrap();
        assert_eq!(json["timestamp"], "2026-12-07T11:00:00.123456Z");
        assert_eq!(json["target"], "access");
        assert_eq!(json["route"], "api");
        assert_eq!(json["status"], 200);
        assert_eq!(json["upstream_ms"], 1.5);
        assert_eq!(
            render(LogFormat::Text, t, &pairs),
            "2026-12-07T11:00:00.123456Z  INFO access: route=api path=\"/a b\" status=200 upstream_ms=1.5 complete=true\n"
        );
    }
}
