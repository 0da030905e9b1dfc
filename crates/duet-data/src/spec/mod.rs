//! Shard specs as OpenCLIP's `--train-data` takes them, expanded to shard URLs.
//!
//! A spec is one or more **sources** separated by `::`, each a pattern expanded with Python
//! `braceexpand` rules (module `brace`), then, for local paths holding `*`, `?` or `[`, a glob
//! (sorted). `--train-data-upsampling-factors` gives one weight per source (`"1::2"`).
//!
//! ```
//! use duet_data::parse_spec;
//! let spec = parse_spec("laion/{00000..00002}.tar::cc12m/{0..1}.tar", Some("1::2"))?;
//! assert_eq!(spec.num_shards(), 5);
//! assert_eq!(spec.sources()[1].shards, ["cc12m/0.tar", "cc12m/1.tar"]);
//! assert_eq!(spec.sources()[1].weight, 2.0);
//! # Ok::<(), duet_data::DataError>(())
//! ```
//!
//! Nothing here touches the network: remote URLs are expanded but not checked.
//! [`sample_count_hint`] reads the `sizes.json` / `*_stats.json` beside a shard through a store.

mod brace;
mod counts;

use std::fmt;

use crate::DataError;

pub use brace::MAX_EXPANSIONS;
pub use counts::{SampleCounts, sample_count_hint};

/// One `::`-separated part of a spec: its shards in order and its sampling weight.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSource {
    /// The pattern as written in the spec.
    pub pattern: String,
    /// The shard URLs it expands to, in expansion order (globs sorted).
    pub shards: Vec<String>,
    /// Relative sampling weight (OpenCLIP upsampling factor); 1 when none is given.
    pub weight: f64,
}

/// An expanded shard spec: never empty, every source holds at least one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSpec {
    sources: Vec<ShardSource>,
}

impl ShardSpec {
    /// The sources, in spec order.
    pub fn sources(&self) -> &[ShardSource] {
        &self.sources
    }

    /// Every shard URL, source by source.
    pub fn shards(&self) -> impl Iterator<Item = &str> + '_ {
        self.sources
            .iter()
            .flat_map(|s| s.shards.iter().map(String::as_str))
    }

    /// Every shard URL with the weight of its source.
    pub fn weighted_shards(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.sources
            .iter()
            .flat_map(|s| s.shards.iter().map(move |u| (u.as_str(), s.weight)))
    }

    /// Total number of shards.
    pub fn num_shards(&self) -> usize {
        self.sources.iter().map(|s| s.shards.len()).sum()
    }

    /// Shards per source, in spec order.
    pub fn shard_counts(&self) -> Vec<usize> {
        self.sources.iter().map(|s| s.shards.len()).collect()
    }
}

/// One line per source: `pattern  (N shards, weight W: first … last)`, under a total line.
impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.sources.len();
        writeln!(
            f,
            "{} shards in {n} source{}",
            self.num_shards(),
            if n == 1 { "" } else { "s" }
        )?;
        for s in &self.sources {
            let (first, last) = (&s.shards[0], &s.shards[s.shards.len() - 1]);
            let range = if s.shards.len() == 1 {
                first.clone()
            } else {
                format!("{first} … {last}")
            };
            writeln!(
                f,
                "  {}: {} shards, weight {}: {range}",
                s.pattern,
                s.shards.len(),
                s.weight
            )?;
        }
        Ok(())
    }
}

/// Expands `spec` (sources separated by `::`) with optional `upsampling` weights (`"1::2"`).
///
/// Errors: an empty spec or source, a weight count that differs from the source count, a weight
/// that is not a positive finite number, unbalanced braces, a malformed glob, or a glob that
/// matches nothing. A spec never expands to an empty dataset.
pub fn parse_spec(spec: &str, upsampling: Option<&str>) -> Result<ShardSpec, DataError> {
    if spec.trim().is_empty() {
        let reason = "give at least one shard path, URL or pattern".to_owned();
        return Err(DataError::EmptySpec {
            spec: spec.to_owned(),
            reason,
        });
    }
    let patterns: Vec<&str> = spec.split("::").collect();
    let weights = parse_weights(upsampling, patterns.len())?;
    let mut sources = Vec::with_capacity(patterns.len());
    for (i, (pattern, weight)) in patterns.into_iter().zip(weights).enumerate() {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            let reason = format!("source #{} (between `::` separators) is empty", i + 1);
            return Err(DataError::EmptySpec {
                spec: spec.to_owned(),
                reason,
            });
        }
        let shards = expand_source(pattern)?;
        sources.push(ShardSource {
            pattern: pattern.to_owned(),
            shards,
            weight,
        });
    }
    Ok(ShardSpec { sources })
}

fn parse_weights(upsampling: Option<&str>, sources: usize) -> Result<Vec<f64>, DataError> {
    let Some(factors) = upsampling else {
        return Ok(vec![1.0; sources]);
    };
    let parts: Vec<&str> = factors.split("::").collect();
    if parts.len() != sources {
        let (weights, factors) = (parts.len(), factors.to_owned());
        return Err(DataError::UpsamplingMismatch {
            sources,
            weights,
            factors,
        });
    }
    parts
        .iter()
        .map(|p| match p.trim().parse::<f64>() {
            Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
            _ => Err(DataError::UpsamplingFactor {
                value: (*p).to_owned(),
                factors: factors.to_owned(),
            }),
        })
        .collect()
}

/// Brace-expands one source, then globs each local name that holds a glob metacharacter.
fn expand_source(pattern: &str) -> Result<Vec<String>, DataError> {
    let names = brace::braceexpand(pattern).map_err(|reason| DataError::SpecSyntax {
        spec: pattern.to_owned(),
        reason,
    })?;
    let mut shards = Vec::with_capacity(names.len());
    for name in names {
        if is_local(&name) && name.contains(['*', '?', '[']) {
            shards.extend(glob_sorted(&name)?);
        } else {
            shards.push(name);
        }
    }
    Ok(shards)
}

/// Local paths (plain or `file://`); URLs and `pipe:` commands are never globbed.
fn is_local(name: &str) -> bool {
    name.starts_with("file://") || !(name.contains("://") || name.starts_with("pipe:"))
}

fn glob_sorted(pattern: &str) -> Result<Vec<String>, DataError> {
    let (prefix, path) = match pattern.strip_prefix("file://") {
        Some(path) => ("file://", path),
        None => ("", pattern),
    };
    let paths = glob::glob(path).map_err(|source| DataError::GlobPattern {
        pattern: pattern.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in paths {
        let path = entry.map_err(|source| DataError::GlobRead {
            pattern: pattern.to_owned(),
            source,
        })?;
        if path.is_file() {
            out.push(format!("{prefix}{}", path.display()));
        }
    }
    if out.is_empty() {
        return Err(DataError::GlobNoMatch {
            pattern: pattern.to_owned(),
        });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_weights() {
        let spec = parse_spec("a/{0..9}.tar::b/{0..4}.tar", Some("1::2")).expect("valid spec");
        // 10 + 5 shards.
        assert_eq!(spec.shard_counts(), [10, 5]);
        assert_eq!(spec.num_shards(), 15);
        assert_eq!(spec.shards().next(), Some("a/0.tar"));
        assert_eq!(spec.shards().last(), Some("b/4.tar"));
        let weights: Vec<f64> = spec.sources().iter().map(|s| s.weight).collect();
        assert_eq!(weights, [1.0, 2.0]);
        assert_eq!(spec.weighted_shards().nth(10), Some(("b/0.tar", 2.0)));
        let shown = spec.to_string();
        assert!(shown.starts_with("15 shards in 2 sources"), "{shown}");
        assert!(
            shown.contains("b/{0..4}.tar: 5 shards, weight 2: b/0.tar … b/4.tar"),
            "{shown}"
        );
    }

    #[test]
    fn default_weight_and_remote_urls_untouched() {
        let spec = parse_spec("s3://bkt/x-{000..001}.tar", None).expect("valid spec");
        assert_eq!(
            spec.sources()[0].shards,
            ["s3://bkt/x-000.tar", "s3://bkt/x-001.tar"]
        );
        assert_eq!(spec.sources()[0].weight, 1.0);
        let spec = parse_spec("pipe:curl -s http://h/a?.tar", None).expect("pipe is not globbed");
        assert_eq!(spec.num_shards(), 1);
    }

    #[test]
    fn weight_errors_name_both_counts() {
        let err = parse_spec("a.tar::b.tar", Some("1::2::3")).expect_err("3 weights, 2 sources");
        let msg = err.to_string();
        assert!(
            msg.contains("2 source(s)") && msg.contains("3 weight(s)"),
            "{msg}"
        );
        let err = parse_spec("a.tar::b.tar", Some("1::x")).expect_err("bad factor");
        assert!(matches!(err, DataError::UpsamplingFactor { ref value, .. } if value == "x"));
        assert!(parse_spec("a.tar", Some("0")).is_err());
    }

    #[test]
    fn empty_and_syntax_errors() {
        assert!(matches!(
            parse_spec("", None),
            Err(DataError::EmptySpec { .. })
        ));
        assert!(matches!(
            parse_spec("  ", None),
            Err(DataError::EmptySpec { .. })
        ));
        let err = parse_spec("a.tar::", None).expect_err("empty second source");
        assert!(err.to_string().contains("source #2"), "{err}");
        assert!(matches!(
            parse_spec("a/{0..2.tar", None),
            Err(DataError::SpecSyntax { .. })
        ));
    }

    #[test]
    fn globs_are_sorted_and_must_match() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["b.tar", "a.tar", "c.txt"] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let root = dir.path().display();
        let spec = parse_spec(&format!("{root}/*.tar"), None).expect("glob matches");
        let want = [format!("{root}/a.tar"), format!("{root}/b.tar")];
        assert_eq!(spec.sources()[0].shards, want);
        let spec = parse_spec(&format!("file://{root}/{{a,c}}.*"), None).expect("brace, glob");
        let want = [
            format!("file://{root}/a.tar"),
            format!("file://{root}/c.txt"),
        ];
        assert_eq!(spec.sources()[0].shards, want);
        let err = parse_spec(&format!("{root}/*.parquet"), None).expect_err("no match");
        assert!(
            matches!(err, DataError::GlobNoMatch { ref pattern } if pattern.ends_with("*.parquet"))
        );
    }
}
