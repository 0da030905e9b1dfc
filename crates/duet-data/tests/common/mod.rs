//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// A path under the workspace root.
pub fn workspace_path(rel: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    root.to_string_lossy().into_owned()
}
