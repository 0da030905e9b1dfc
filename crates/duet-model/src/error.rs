//! The one error type of `duet-model`.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, building, loading or saving a model.
///
/// Each variant names the culprit: the file, the config key, or the tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read or written. (The I/O error is part of the message, not a
    /// `source`, so a report does not print it twice.)
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A config file is not valid JSON or does not have the expected schema.
    #[error("{path}: {message}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// What serde (or our schema check) said, including the key where it knows it.
        message: String,
    },
    /// A config value is invalid, e.g. an image size not divisible by the patch size.
    #[error("invalid model config: `{key}` {message}")]
    InvalidConfig {
        /// The offending key, dotted (`vision_cfg.patch_size`).
        key: String,
        /// Why it is invalid.
        message: String,
    },
    /// A directory holds none of the model layouts duet knows.
    #[error(
        "{path}: not a model directory duet knows (expected `config.json` + `model.safetensors` \
         (Hugging Face), `open_clip_config.json` + `open_clip_model.safetensors` (OpenCLIP), or \
         `duet_model.json` + `model.safetensors` (duet))"
    )]
    UnknownLayout {
        /// The directory.
        path: PathBuf,
    },
    /// No preset has this name.
    #[error("unknown model preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The preset names, comma-separated.
        known: String,
    },
    /// A safetensors file could not be parsed.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The weight file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The weights do not fit the model: keys missing, unexpected, or of the wrong shape/dtype.
    #[error("{path}: weights do not match the model config\n{report}")]
    WeightMismatch {
        /// The weight file.
        path: PathBuf,
        /// Every problem found, one per line.
        report: WeightReport,
    },
}

/// The problems found when matching a weight file to a model: all of them, not just the first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WeightReport {
    /// Keys the format requires that the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file that no mapping consumes.
    pub unexpected: Vec<String>,
    /// `source key [shape] -> duet path expects [shape]` lines, and unsupported dtypes.
    pub mismatched: Vec<String>,
}

impl WeightReport {
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl std::fmt::Display for WeightReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sections = [
            ("missing keys", &self.missing),
            ("unexpected keys", &self.unexpected),
            ("mismatched tensors", &self.mismatched),
        ];
        for (title, items) in sections {
            if items.is_empty() {
                continue;
            }
            writeln!(f, "  {title} ({}):", items.len())?;
            for item in items {
                writeln!(f, "    {item}")?;
            }
        }
        Ok(())
    }
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.into(),
            message: message.into(),
        }
    }
}
