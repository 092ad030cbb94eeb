//! `cache:`: the bounds of the response cache that plugins share (WIT `cache`, the built-in
//! `proxy-cache` plugin). The cache is in this process's memory; every plugin's entries count
//! against one bound, and the least recently used go first when it is reached.
//!
//! ```yaml
//! cache:
//!   max_size: 64MiB        # every plugin's entries together
//!   max_entry_size: 4MiB   # a larger response is not stored
//! ```
//!
//! A reload applies new bounds at once (a smaller `max_size` evicts what no longer fits); the
//! entries themselves survive reloads.

use super::Size;
use crate::host::{CacheLimits, CACHE_DEFAULT_MAX_ENTRY_SIZE, CACHE_DEFAULT_MAX_SIZE};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The response cache's bounds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct CacheConfig {
    /// The bytes of every plugin's entries together (bodies, headers, keys, and 256 bytes of
    /// bookkeeping each). Default: 64MiB.
    pub max_size: Size,
    /// The largest entry stored, at most `max_size`; a larger response goes to the client without
    /// being stored. Default: 4MiB.
    pub max_entry_size: Size,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_size: Size(CACHE_DEFAULT_MAX_SIZE),
            max_entry_size: Size(CACHE_DEFAULT_MAX_ENTRY_SIZE),
        }
    }
}

impl CacheConfig {
    /// Whether this is the default (not shown in `/config`).
    pub fn is_default(&self) -> bool {
        *self == CacheConfig::default()
    }

    /// The bounds for the host's cache.
    pub fn limits(&self) -> CacheLimits {
        CacheLimits {
            max_size: self.max_size.0,
            max_entry_size: self.max_entry_size.0,
        }
    }
}

#[derive(Default)]
struct RawCache {
    max_size: Option<Size>,
    max_entry_size: Option<Size>,
}

/// Read by hand rather than with `try_from`, so that the check of the two fields together fails
/// inside the `cache:` map and the error points at it, not at the top of the file.
impl<'de> Deserialize<'de> for CacheConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CacheConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map with max_size and max_entry_size")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<CacheConfig, A::Error> {
                const FIELDS: &[&str] = &["max_size", "max_entry_size"];
                let mut raw = RawCache::default();
                while let Some(k) = m.next_key::<String>()? {
                    let slot = match k.as_str() {
                        "max_size" => &mut raw.max_size,
                        "max_entry_size" => &mut raw.max_entry_size,
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    };
                    if slot.replace(m.next_value()?).is_some() {
                        return Err(de::Error::custom(format!("{k}: given twice")));
                    }
                }
                CacheConfig::try_from(raw).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(V)
    }
}

impl TryFrom<RawCache> for CacheConfig {
    type Error = String;

    fn try_from(r: RawCache) -> Result<Self, String> {
        let d = CacheConfig::default();
        let max_size = r.max_size.unwrap_or(d.max_size);
        // Without its own figure, an entry may take the whole cache when that is smaller than 4MiB.
        let max_entry_size = match r.max_entry_size {
            Some(s) => s,
            None => Size(d.max_entry_size.0.min(max_size.0)),
        };
        if max_size.0 == 0 {
            return Err("max_size: must be more than 0 bytes".into());
        }
        if max_entry_size.0 > max_size.0 {
            return Err(format!(
                "max_entry_size: {} bytes is more than max_size ({} bytes)",
                max_entry_size.0, max_size.0
            ));
        }
        Ok(CacheConfig {
            max_size,
            max_entry_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<CacheConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_sizes_and_refusals() {
        assert_eq!(parse("{}").unwrap(), CacheConfig::default());
        let c = parse(r#"{"max_size": "1MiB"}"#).unwrap();
        assert_eq!((c.max_size.0, c.max_entry_size.0), (1 << 20, 1 << 20));
        let c = parse(r#"{"max_size": "8MiB", "max_entry_size": 1000}"#).unwrap();
        assert_eq!((c.max_size.0, c.max_entry_size.0), (8 << 20, 1000));
        let e = parse(r#"{"max_size": "1MiB", "max_entry_size": "2MiB"}"#).unwrap_err();
        assert!(
            e.contains("max_entry_size: 2097152 bytes is more than max_size"),
            "{e}"
        );
        let e = parse(r#"{"max_size": 0}"#).unwrap_err();
        assert!(e.contains("max_size: must be more than 0"), "{e}");
        assert!(parse(r#"{"max_sise": 1}"#).is_err());
    }
}
