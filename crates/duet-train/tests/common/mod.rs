//! Helpers shared by the run tests.

use std::path::PathBuf;

/// `relative` under the repository root, as a path string a shard spec can hold.
pub fn workspace(relative: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    format!("{}/{relative}", root.display())
}

/// The losses' bit patterns, for comparisons that must be exact.
pub fn bits(losses: &[f64]) -> Vec<u64> {
    losses.iter().map(|l| l.to_bits()).collect()
}
