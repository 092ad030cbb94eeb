//! The route's config, read into the filter's own type.
//!
//! The gateway passes a filter the config written under its route (`filters[].config`) as JSON (a
//! YAML string as it is). [`parse`] reads it into any type that implements serde's `Deserialize`,
//! refuses fields the type does not have, and words every error with the path of the field it is about
//! (`limits[1].per: unknown variant ...`): returned from [`crate::Filter::init`], such an error is
//! reported by the gateway at the line of the route's YAML where that field is written
//! (`routes[0].filters[0].config.limits[1].per`), not at a position in the JSON it was turned into.
//!
//! ```no_run
//! use gateway_plugin_sdk::{config, Filter};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Settings {
//!     header: String,
//!     #[serde(default)]
//!     required: bool,
//! }
//!
//! #[derive(Default)]
//! struct ApiKey {
//!     settings: Option<Settings>,
//! }
//!
//! impl Filter for ApiKey {
//!     fn init(&mut self, raw: &str) -> Result<(), String> {
//!         self.settings = Some(config::parse(raw)?);
//!         Ok(())
//!     }
//! }
//! ```

use serde::de::DeserializeOwned;

/// Reads the route's config into `T`. An absent config (`""`) reads as an empty map, so a type whose
/// fields all have defaults needs none. Errors start with the field's path: a field `T` does not have
/// (`colour: unknown field`), a value of the wrong type (`limits[0].per: invalid type: integer `5`,
/// expected a string`), a missing field (`config: missing field `header``, about the map it is
/// missing from).
pub fn parse<T: DeserializeOwned>(config: &str) -> Result<T, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let mut unknown: Option<String> = None;
    let mut note = |path: serde_ignored::Path| {
        if unknown.is_none() {
            unknown = Some(field_path(&path));
        }
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let tracked = serde_ignored::Deserializer::new(&mut json, &mut note);
    let value: Result<T, _> = serde_path_to_error::deserialize(tracked);
    let value = value.map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.into_inner().to_string();
        // serde_json appends the position in the JSON text, which is not where the user wrote it.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        match path.as_str() {
            "." | "" => format!("config: {message}"),
            p => format!("{p}: {message}"),
        }
    })?;
    if let Some(path) = unknown {
        return Err(format!("{path}: unknown field"));
    }
    Ok(value)
}

/// A path as the gateway writes field paths (`limits[0].burst`; serde_ignored writes `limits.0.burst`).
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Limit {
        per: String,
        limit: u32,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Settings {
        header: String,
        #[serde(default)]
        limits: Vec<Limit>,
    }

    #[derive(Deserialize, Debug, PartialEq, Default)]
    struct AllDefaults {
        #[serde(default)]
        verbose: bool,
    }

    #[test]
    fn a_config_reads_into_the_filters_type() {
        let s: Settings =
            parse(r#"{"header":"x-key","limits":[{"per":"minute","limit":5}]}"#).unwrap();
        assert_eq!(s.header, "x-key");
        assert_eq!(s.limits[0].limit, 5);
        assert_eq!(parse::<AllDefaults>("").unwrap(), AllDefaults::default());
    }

    #[test]
    fn errors_name_the_field_path() {
        let e = parse::<Settings>(
            r#"{"header":"x","limits":[{"per":"m","limit":1},{"per":5,"limit":1}]}"#,
        )
        .unwrap_err();
        assert!(
            e.starts_with("limits[1].per: invalid type: integer `5`"),
            "{e}"
        );
        assert!(!e.contains("line"), "{e}");
        let e = parse::<Settings>(r#"{"header":"x","colour":"red"}"#).unwrap_err();
        assert_eq!(e, "colour: unknown field");
        let e = parse::<Settings>(r#"{"header":"x","limits":[{"per":"m","limit":1,"burst":2}]}"#)
            .unwrap_err();
        assert_eq!(e, "limits[0].burst: unknown field");
        let e = parse::<Settings>(r#"{"limits":[]}"#).unwrap_err();
        assert_eq!(e, "config: missing field `header`");
        let e = parse::<Settings>(r#""just a string""#).unwrap_err();
        assert!(e.starts_with("config: invalid type: string"), "{e}");
    }
}
