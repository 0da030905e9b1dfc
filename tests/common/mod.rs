//! Helpers shared by the CLI end-to-end tests: running the `duet` binary in the repository
//! root, reading what it writes.
#![allow(dead_code)] // each test binary uses some of them

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn duet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("duet runs")
}

pub fn ok(args: &[&str]) {
    let out = duet(args);
    assert!(
        out.status.success(),
        "duet {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = duet(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "duet {args:?} should fail");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr of duet {args:?} lacks {needle:?}:\n{stderr}"
        );
    }
}

pub fn inspect_json(spec: &str) -> serde_json::Value {
    let out = duet(&["shards", "inspect", "--json", spec]);
    assert!(
        out.status.success(),
        "inspect {spec} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// Runs `duet args` and SIGKILLs it as soon as `path` exists (within two minutes).
pub fn kill_when_exists(args: &[&str], path: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(args)
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("duet starts");
    let started = std::time::Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Borrows every string of `v`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The `[n, d]` f32 values of an `.npy` file.
pub fn npy_rows(path: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).expect("npy written");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("valid npy");
    let dim = npy.shape()[1] as usize;
    let values: Vec<f32> = npy.into_vec().expect("f32 values");
    values.chunks(dim).map(<[f32]>::to_vec).collect()
}

/// Every member of a tar, by name.
pub fn tar_members(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).expect("tar"));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
        files.insert(name, bytes);
    }
    files
}

/// One line of `duet embed --out FILE.jsonl`.
#[derive(Debug, serde::Deserialize)]
pub struct Row {
    pub kind: String,
    pub input: String,
    pub embedding: Vec<f32>,
}

pub fn read_jsonl(path: &Path) -> Vec<Row> {
    std::fs::read_to_string(path)
        .expect("output written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}
