//! Where a config came from: its file and text, so that errors found after parsing can name the
//! line and column of the field.

use super::{field_error, Config, ConfigError};
use std::path::{Path, PathBuf};

/// Where a config came from, for error messages.
#[derive(Clone, Debug)]
pub struct Source {
    /// File path (or a name for configs given in memory).
    pub path: PathBuf,
    /// The text, to locate fields in.
    pub text: Option<String>,
}

impl Source {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<(Config, Source), ConfigError> {
        let cannot = |message: String| ConfigError {
            file: path.to_owned(),
            location: None,
            field: "(file)".into(),
            message,
        };
        // A file over the size limit is not read into memory at all.
        let len = std::fs::metadata(path)
            .map_err(|e| cannot(format!("cannot read: {e}")))?
            .len();
        if len > super::MAX_CONFIG_BYTES as u64 {
            return Err(cannot(format!(
                "the file is {len} bytes; at most {} are read",
                super::MAX_CONFIG_BYTES
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| cannot(format!("cannot read: {e}")))?;
        let cfg = Config::parse(path, &text)?;
        Ok((
            cfg,
            Source {
                path: path.to_owned(),
                text: Some(text),
            },
        ))
    }

    /// Whether `field` (a path such as `routes[2].filters[0].config.key_names[1]`) is written in this
    /// source's text.
    pub fn has_field(&self, field: &str) -> bool {
        self.text
            .as_deref()
            .is_some_and(|t| super::locate::locate(t, field).is_some())
    }

    /// A config error at `field`, located in this source's text.
    pub fn err(&self, field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        field_error(&self.path, self.text.as_deref(), &field.into(), msg.into())
    }
}
