//! Training in bf16 and f16 (`train.precision`) and with patch dropout: a run killed and
//! resumed gives bitwise the uninterrupted run's losses, and in f16 the same loss scales (the
//! scaler's state is in the checkpoint); a forced overflow is skipped and halves the scale,
//! both in `metrics.jsonl`.

use std::path::Path;

use burn::tensor::Device;
use duet_dist::Solo;
use duet_train::{Control, RunSummary, Start, TrainConfig, run};

mod common;

use common::{bits, workspace};

/// The tiny model, 6 steps of 8, a checkpoint every 2 steps; `overrides` on top.
fn config(overrides: &[&str]) -> TrainConfig {
    let text = format!(
        r#"
[model]
config = "tiny"
[data]
train = "{}"
shuffle_buffer = 50
readers = 2
decode_threads = 1
[optimizer]
lr = 1e-3
grad_clip_norm = 1.0
[schedule]
kind = "cosine"
warmup_steps = 2
[train]
steps = 6
batch_size = 8
seed = 11
[checkpoint]
every_steps = 2
keep_last = 5
[log]
every_steps = 1
"#,
        workspace("datasets/sample/train/{00000..00002}.tar")
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&text, "precision-test.toml", &overrides).expect("valid config")
}

fn train(config: &TrainConfig, dir: &Path, start: Start, stop_before: Option<u64>) -> RunSummary {
    let control = Control {
        stop_before,
        ..Control::default()
    };
    let device = Device::flex().autodiff();
    run(config, dir, &[device], start, &control, &Solo).expect("runs")
}

fn rows(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .filter(|r: &serde_json::Value| r.get("loss").is_some())
        .collect()
}

fn resumes_exactly(config: &TrainConfig) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let full_dir = tempfile::tempdir().expect("temp dir");
    let full = train(config, full_dir.path(), Start::Fresh, None);
    assert_eq!(full.losses.len(), 6);
    assert!(
        full.losses.iter().all(|l| l.is_finite()),
        "{:?}",
        full.losses
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let head = train(config, dir.path(), Start::Fresh, Some(3));
    assert_eq!(bits(&head.losses), bits(&full.losses[..3]));
    let tail = train(config, dir.path(), Start::Resume, None);
    assert_eq!(tail.started_at, 2);
    assert_eq!(
        bits(&tail.losses),
        bits(&full.losses[2..]),
        "losses after resume"
    );
    (rows(full_dir.path()), rows(dir.path()))
}

#[test]
fn a_bf16_run_resumes_exactly() {
    let (full, resumed) = resumes_exactly(&config(&["train.precision=bf16"]));
    // bf16 needs no loss scale.
    assert!(
        full.iter().all(|r| r.get("loss_scale").is_none()),
        "{full:?}"
    );
    assert_eq!(resumed.len(), 6);
}

#[test]
fn an_f16_run_resumes_exactly_with_its_loss_scale() {
    // A growth interval of 2 doubles the scale after steps 2, 4 and 6: a resume from the
    // step-2 checkpoint that restarted the scaler would log 1024 for step 3, not 2048.
    let config = config(&[
        "train.precision=f16",
        "train.loss_scale=1024",
        "train.loss_scale_growth_interval=2",
    ]);
    let (full, resumed) = resumes_exactly(&config);
    let scales = |rows: &[serde_json::Value]| -> Vec<Option<f64>> {
        rows.iter().map(|r| r["loss_scale"].as_f64()).collect()
    };
    let want = [1024.0, 1024.0, 2048.0, 2048.0, 4096.0, 4096.0].map(Some);
    assert_eq!(scales(&full), want);
    assert_eq!(scales(&resumed), want);
    assert!(full.iter().all(|r| r["skipped_steps"].as_u64() == Some(0)));
}

#[test]
fn a_forced_f16_overflow_skips_the_step_and_halves_the_scale() {
    // 1e38 times the gradients overflows f16 (largest value 65504) in the towers' backward: the
    // step is skipped (logit_scale stays at its init, ln(1/0.07) = 2.6593) and the scale halves.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&[
        "train.precision=f16",
        "train.loss_scale=1e38",
        "train.steps=3",
    ]);
    let summary = train(&config, dir.path(), Start::Fresh, None);
    assert_eq!(summary.losses.len(), 3);
    let rows = rows(dir.path());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["skipped"].as_bool(), Some(true), "{row}");
        let scale = row["loss_scale"].as_f64().expect("loss_scale");
        assert_eq!(scale, 1e38 / f64::from(1u32 << i), "{row}");
        assert_eq!(row["skipped_steps"].as_u64(), Some(i as u64 + 1), "{row}");
        let logit_scale = row["logit_scale"].as_f64().expect("logit_scale");
        assert!((logit_scale - (1.0f64 / 0.07).ln()).abs() < 1e-6, "{row}");
    }
}

#[test]
fn a_patch_dropout_runs_evaluation_sees_every_patch() {
    // 2 steps with half the patches dropped, held-out retrieval at the end; the same weights
    // (the step-2 checkpoint) evaluated on their own, with no train config at all, give the
    // run's numbers exactly: the run's evaluation dropped nothing.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(&[
        "train.patch_dropout=0.5",
        "train.steps=2",
        "schedule.warmup_steps=1",
        "eval.every_steps=2",
    ]);
    config.eval.retrieval.push(duet_train::RetrievalSet {
        name: "val".into(),
        data: workspace("datasets/sample/val/00000.tar"),
    });
    let summary = train(&config, dir.path(), Start::Fresh, None);
    let device = Device::flex().autodiff();
    let saved =
        duet_train::checkpoint::load(&dir.path().join("checkpoints/step-00000002"), &device)
            .expect("checkpoint");
    let alone = duet_train::evaluate(
        &saved.model,
        &saved.clip,
        &config.eval,
        &config.data.fields(),
        &device,
    )
    .expect("evaluates");
    assert_eq!(summary.eval.len(), 1);
    assert_eq!(alone, summary.eval);
}

#[test]
fn a_patch_dropout_run_resumes_exactly() {
    // Half of the tiny model's 64 patches dropped, drawn by (seed, step, row): the same
    // patches after the resume.
    let dropped = config(&["train.patch_dropout=0.5"]);
    let (full, _) = resumes_exactly(&dropped);
    let plain_dir = tempfile::tempdir().expect("temp dir");
    let plain = train(&config(&[]), plain_dir.path(), Start::Fresh, None);
    // The same weights and batch at step 1, so only the dropped patches make the loss differ.
    let first = full[0]["loss"].as_f64().expect("loss");
    assert_ne!(first.to_bits(), plain.losses[0].to_bits(), "dropout acted");
}
