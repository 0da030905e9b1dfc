//! Exact resume on the CPU backend: a run interrupted after a checkpoint and resumed logs the same
//! losses, bit for bit, as the uninterrupted run; a damaged newest checkpoint is detected and the
//! previous one used.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use duet_dist::Solo;
use duet_train::{Control, RunSummary, Start, TrainConfig, run};

mod common;

use common::{bits, workspace};

fn sample_spec() -> String {
    workspace("datasets/sample/train/{00000..00002}.tar")
}

fn val_spec() -> String {
    workspace("datasets/sample/val/00000.tar")
}

/// The tiny model on the bundled sample: 6 steps of 16, a checkpoint every 2 steps, retrieval
/// on the 132 held-out pairs after step 4 and at the end.
fn config() -> TrainConfig {
    config_with(&[])
}

fn config_with(overrides: &[&str]) -> TrainConfig {
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
[eval]
every_steps = 4
[[eval.retrieval]]
name = "val"
data = "{}"
"#,
        sample_spec(),
        val_spec()
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&text, "resume-test.toml", &overrides).expect("valid config")
}

fn train(dir: &Path, start: Start, stop_before: Option<u64>) -> RunSummary {
    let device = Device::flex().autodiff();
    let control = Control {
        stop_before,
        ..Control::default()
    };
    run(
        &config(),
        dir,
        std::slice::from_ref(&device),
        start,
        &control,
        &Solo,
    )
    .expect("runs")
}

/// As many losses in `b` as in `a`, each within 1e-4 (relative) of `a`'s at the same step.
fn assert_same_losses(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-4 * x.abs(), "{a:?} vs {b:?}");
    }
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
    // metrics.jsonl: the crashed run's row for step 3 was replaced, one row per step, and the
    // evaluation rows (steps 4 and 6) equal the uninterrupted run's, metric for metric.
    let rows = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| serde_json::from_str(l).expect("row"))
            .collect()
    };
    let resumed_rows = rows(dir.path());
    let steps: Vec<u64> = resumed_rows
        .iter()
        .filter(|r| r.get("loss").is_some())
        .map(|r| r["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    let evals = |rows: &[serde_json::Value]| -> Vec<serde_json::Value> {
        rows.iter()
            .filter(|r| r.get("val/i2t_r1").is_some())
            .cloned()
            .collect()
    };
    let full_evals = evals(&rows(full_dir.path()));
    assert_eq!(full_evals.len(), 2, "{full_evals:?}");
    assert_eq!(evals(&resumed_rows), full_evals);
    let last = &full.eval[0];
    let duet_train::EvalMetrics::Retrieval(m) = &last.metrics else {
        panic!("a retrieval set: {last:?}");
    };
    assert_eq!((last.set.as_str(), m.pairs), ("val", 132));
    assert_eq!(full_evals[1]["val/t2i_r5"].as_f64(), Some(m.t2i_r5));

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
fn accumulating_two_half_batches_trains_like_the_full_batch() {
    // Both runs read 16 samples per step (the loader batch is batch_size x accum_freq) and see
    // the same 16 negatives; only the gradient's summation order differs.
    let full_dir = tempfile::tempdir().expect("temp dir");
    let accum_dir = tempfile::tempdir().expect("temp dir");
    let device = Device::flex().autodiff();
    let short = ["train.steps=3", "eval.retrieval=[]"];
    let full = run(
        &config_with(&short),
        full_dir.path(),
        std::slice::from_ref(&device),
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect("runs");
    let accum = run(
        &config_with(&[&short[..], &["train.batch_size=8", "train.accum_freq=2"]].concat()),
        accum_dir.path(),
        std::slice::from_ref(&device),
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect("runs");
    assert_eq!(full.losses.len(), 3);
    assert_same_losses(&full.losses, &accum.losses);
}

#[test]
fn two_devices_train_like_one_device_on_the_global_batch() {
    // 2 ranks x 8 samples (in turn on the one flex device) against 1 device x 16: both steps see
    // the same 16 samples and negatives; the per-rank gradients summed on rank 0 are the global
    // batch's, so the losses match to float rounding.
    let one_dir = tempfile::tempdir().expect("temp dir");
    let two_dir = tempfile::tempdir().expect("temp dir");
    let device = Device::flex().autodiff();
    let short = ["train.steps=3", "eval.retrieval=[]"];
    let one = run(
        &config_with(&short),
        one_dir.path(),
        std::slice::from_ref(&device),
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect("runs");
    let two = run(
        &config_with(&[&short[..], &["train.batch_size=8"]].concat()),
        two_dir.path(),
        &[device.clone(), device.clone()],
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect("runs");
    assert_eq!(two.losses.len(), 3);
    assert_same_losses(&one.losses, &two.losses);
    let state = std::fs::read_to_string(
        two.last_checkpoint
            .expect("checkpointed")
            .join("state.json"),
    )
    .expect("state.json");
    let state: serde_json::Value = serde_json::from_str(&state).expect("JSON");
    assert_eq!(state["devices"], 2, "{state}");
    // 2 devices × 2 micro-batches of 4: the same 16 samples per step, the same losses.
    let both = run(
        &config_with(&[&short[..], &["train.batch_size=4", "train.accum_freq=2"]].concat()),
        tempfile::tempdir().expect("temp dir").path(),
        &[device.clone(), device],
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect("runs");
    assert_same_losses(&one.losses, &both.losses);
}

#[test]
fn zero_shot_sets_are_evaluated_and_logged() {
    // Two classes from the bundled photos: with 2 classes every image is in the top 5.
    let data = tempfile::tempdir().expect("temp dir");
    let photos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/photos");
    for (class, photo) in [("cat", "chelsea.png"), ("horse", "horse.png")] {
        std::fs::create_dir(data.path().join(class)).expect("mkdir");
        std::fs::copy(photos.join(photo), data.path().join(class).join(photo)).expect("copy");
    }
    let dataset = format!(
        "eval.zero_shot=[{{name = \"photos\", dataset = \"{}\", templates = \"photo\"}}]",
        data.path().display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let device = Device::flex().autodiff();
    let summary = run(
        &config_with(&["train.steps=3", "eval.retrieval=[]", &dataset]),
        dir.path(),
        std::slice::from_ref(&device),
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect("runs");
    let duet_train::EvalMetrics::ZeroShot(m) = &summary.eval[0].metrics else {
        panic!("a zero-shot set: {:?}", summary.eval);
    };
    assert_eq!((m.count, m.top5), (2, 100.0));
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metrics");
    let last: serde_json::Value =
        serde_json::from_str(metrics.lines().last().expect("a row")).expect("json");
    assert_eq!(last["step"].as_u64(), Some(3));
    assert_eq!(last["photos/top5"].as_f64(), Some(100.0));
    assert_eq!(last["photos/top1"].as_f64(), Some(m.top1));

    // A set without class names (IDX, shards) must name a classes file, before any work.
    let no_classes = "eval.zero_shot=[{name = \"x\", dataset = \"t10k-images-idx3-ubyte.gz\"}]";
    let text = std::fs::read_to_string(dir.path().join("config.toml")).expect("config");
    let err = TrainConfig::parse(&text, "run.toml", &[no_classes.to_string()])
        .expect_err("no class names");
    assert!(
        err.to_string().starts_with("eval.zero_shot[0].dataset"),
        "{err}"
    );
}

#[test]
fn fresh_start_refuses_a_run_directory_with_checkpoints() {
    let dir = tempfile::tempdir().expect("temp dir");
    train(dir.path(), Start::Fresh, Some(2));
    let device = Device::flex().autodiff();
    let err = run(
        &config(),
        dir.path(),
        std::slice::from_ref(&device),
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect_err("refused");
    assert!(
        err.to_string().contains("already holds checkpoints"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_write_killed_midway_is_never_trusted() {
    // A kill while the step-4 checkpoint is being written leaves its files in
    // `.tmp-step-00000004/` (truncated, no manifest) and `latest` at step 2: resume ignores the
    // temporary directory and continues from step 2, to the uninterrupted run's losses.
    let full_dir = tempfile::tempdir().expect("temp dir");
    let full = train(full_dir.path(), Start::Fresh, None);
    let dir = tempfile::tempdir().expect("temp dir");
    train(dir.path(), Start::Fresh, Some(3));
    let checkpoints = dir.path().join("checkpoints");
    let partial = checkpoints.join(".tmp-step-00000004");
    std::fs::create_dir(&partial).expect("mkdir");
    let weights = std::fs::read(checkpoints.join("step-00000002/model.safetensors")).expect("w");
    std::fs::write(
        partial.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .expect("write");
    std::fs::copy(
        checkpoints.join("step-00000002/state.json"),
        partial.join("state.json"),
    )
    .expect("copy");
    let tail = train(dir.path(), Start::Resume, None);
    assert_eq!(tail.started_at, 2, "the partial write is not a checkpoint");
    assert!(
        tail.skipped_checkpoints.is_empty(),
        "{:?}",
        tail.skipped_checkpoints
    );
    assert_eq!(bits(&tail.losses), bits(&full.losses[2..]));
}
