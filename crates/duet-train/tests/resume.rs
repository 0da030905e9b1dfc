//! Exact resume on the CPU backend: a run interrupted after a checkpoint and resumed logs the same
//! losses, bit for bit, as the uninterrupted run; a damaged newest checkpoint is detected and the
//! previous one used.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use duet_train::{Control, RunSummary, Start, TrainConfig, run};

fn sample_spec() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    format!(
        "{}/datasets/sample/train/{{00000..00002}}.tar",
        root.display()
    )
}

/// The tiny model on the bundled sample: 6 steps of 16, a checkpoint every 2 steps.
fn config() -> TrainConfig {
    let text = format!(
        r#"
[model]
config = "tiny"
[data]
train = "{}"
shuffle_buffer = 50
readers = 2
decode_threads = 2
[optimizer]
lr = 1e-3
grad_clip_norm = 1.0
[schedule]
kind = "cosine"
warmup_steps = 2
[train]
steps = 6
batch_size = 16
seed = 3
[checkpoint]
every_steps = 2
keep_last = 5
[log]
every_steps = 1
"#,
        sample_spec()
    );
    TrainConfig::parse(&text, "resume-test.toml", &[]).expect("valid config")
}

fn train(dir: &Path, start: Start, stop_before: Option<u64>) -> RunSummary {
    let device = Device::flex().autodiff();
    let control = Control {
        stop_before,
        ..Control::default()
    };
    run(&config(), dir, &device, start, &control).expect("runs")
}

fn bits(losses: &[f64]) -> Vec<u64> {
    losses.iter().map(|l| l.to_bits()).collect()
}

#[test]
fn interrupted_and_resumed_equals_uninterrupted_bitwise() {
    let full_dir = tempfile::tempdir().expect("temp dir");
    let full = train(full_dir.path(), Start::Fresh, None);
    assert_eq!(full.losses.len(), 6);
    assert!(full.losses.iter().all(|l| l.is_finite()));

    // Crash before step 3 (0-based): steps 0..2 ran, the last checkpoint is after step 2.
    let dir = tempfile::tempdir().expect("temp dir");
    let head = train(dir.path(), Start::Fresh, Some(3));
    assert_eq!(bits(&head.losses), bits(&full.losses[..3]));
    let tail = train(dir.path(), Start::Resume, None);
    assert_eq!(tail.started_at, 2, "resumed from the step-2 checkpoint");
    assert_eq!(
        bits(&tail.losses),
        bits(&full.losses[2..]),
        "losses after resume"
    );
    // metrics.jsonl: the crashed run's row for step 3 was replaced, one row per step.
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metrics");
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<duet_train::MetricsRow>(l)
                .expect("row")
                .step
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);

    // Damage the newest checkpoint (step 6): resuming falls back to step 4, saying why.
    let newest = dir
        .path()
        .join("checkpoints/step-00000006/model.safetensors");
    let mut bytes = std::fs::read(&newest).expect("weights");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&newest, bytes).expect("write");
    let again = train(dir.path(), Start::Resume, None);
    assert_eq!(again.started_at, 4);
    assert_eq!(
        again.skipped_checkpoints.len(),
        1,
        "{:?}",
        again.skipped_checkpoints
    );
    assert!(
        again.skipped_checkpoints[0].contains("damaged"),
        "{:?}",
        again.skipped_checkpoints
    );
    assert_eq!(bits(&again.losses), bits(&full.losses[4..]));
}

#[test]
fn fresh_start_refuses_a_run_directory_with_checkpoints() {
    let dir = tempfile::tempdir().expect("temp dir");
    train(dir.path(), Start::Fresh, Some(2));
    let device = Device::flex().autodiff();
    let err = run(
        &config(),
        dir.path(),
        &device,
        Start::Fresh,
        &Control::default(),
    )
    .expect_err("refused");
    assert!(
        err.to_string().contains("already holds checkpoints"),
        "{err}"
    );
}
