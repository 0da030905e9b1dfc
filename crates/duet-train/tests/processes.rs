//! Training runs of several processes, as ranks of an in-process `ThreadGroup` (the code path
//! MPI jobs take, without MPI): the same losses as one process on the same global batch, every
//! data slot's cursor in the checkpoint, and elastic resume — a run checkpointed on 2
//! processes resumes on 1 with `accum_freq = 2` (and the other way round) to the losses of the
//! uninterrupted run, bit for bit.

use std::path::Path;

use burn::tensor::Device;
use duet_dist::{Collective, Solo, ThreadGroup};
use duet_train::{Control, RunSummary, Start, TrainConfig, run};

mod common;

use common::{bits, workspace};

/// The tiny model, 6 steps of a global batch of 16 in 2 data slots, a checkpoint every 2
/// steps; `overrides` on top.
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
slots = 2
[optimizer]
lr = 1e-3
grad_clip_norm = 1.0
[schedule]
kind = "cosine"
warmup_steps = 2
[train]
steps = 6
batch_size = 8
seed = 5
[checkpoint]
every_steps = 2
keep_last = 5
[log]
every_steps = 1
"#,
        workspace("datasets/sample/train/{00000..00002}.tar")
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&text, "processes-test.toml", &overrides).expect("valid config")
}

/// `config` in `dir` on `world` processes (threads of one group), each on the CPU; every
/// rank's summary, in rank order.
fn on_processes(
    config: &TrainConfig,
    dir: &Path,
    world: usize,
    start: Start,
    stop_before: Option<u64>,
) -> Vec<RunSummary> {
    let control = Control {
        stop_before,
        ..Control::default()
    };
    std::thread::scope(|scope| {
        let ranks: Vec<_> = ThreadGroup::new(world)
            .into_iter()
            .map(|group| {
                let control = control.clone();
                scope.spawn(move || {
                    let device = Device::flex().autodiff();
                    run(config, dir, &[device], start, &control, &group).expect("runs")
                })
            })
            .collect();
        ranks
            .into_iter()
            .map(|r| r.join().expect("rank thread"))
            .collect()
    })
}

fn alone(config: &TrainConfig, dir: &Path, start: Start, stop_before: Option<u64>) -> RunSummary {
    let control = Control {
        stop_before,
        ..Control::default()
    };
    let device = Device::flex().autodiff();
    run(
        config,
        dir,
        &[device],
        start,
        &control,
        &Solo as &dyn Collective,
    )
    .expect("runs")
}

fn state(summary: &RunSummary) -> serde_json::Value {
    let path = summary.last_checkpoint.as_ref().expect("checkpointed");
    let text = std::fs::read_to_string(path.join("state.json")).expect("state.json");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn two_processes_train_like_one_process_accumulating_the_same_blocks() {
    // 2 processes × 8 (slot 0 on rank 0, slot 1 on rank 1) against 1 process × 2 micro-batches
    // of 8 (slot 0, then slot 1): the same two blocks, encoded alike, gradients summed alike.
    let two_dir = tempfile::tempdir().expect("temp dir");
    let one_dir = tempfile::tempdir().expect("temp dir");
    let two = on_processes(&config(&[]), two_dir.path(), 2, Start::Fresh, None);
    let one = alone(
        &config(&["train.accum_freq=2"]),
        one_dir.path(),
        Start::Fresh,
        None,
    );
    assert_eq!(one.losses.len(), 6);
    for rank in &two {
        assert_eq!(
            bits(&rank.losses),
            bits(&one.losses),
            "every rank logs the global loss"
        );
    }
    // Rank 0 alone wrote the run directory: one row per step, and a checkpoint holding both
    // slots' cursors, written by a job of 2 processes.
    let metrics = std::fs::read_to_string(two_dir.path().join("metrics.jsonl")).expect("rows");
    assert_eq!(metrics.lines().count(), 6, "{metrics}");
    let saved = state(&two[0]);
    assert_eq!(saved["processes"], 2, "{saved}");
    assert_eq!(saved["cursors"].as_array().map(Vec::len), Some(2));
    assert_eq!(saved["config"]["data"]["slots"], 2);
}

#[test]
fn a_two_process_run_resumes_on_one_process_and_back_exactly() {
    // Elastic resume: the global batch (16) and the data slots (2) stay; the process count and
    // accum_freq change at the checkpoint. The losses are the uninterrupted run's, bit for bit.
    let reference_dir = tempfile::tempdir().expect("temp dir");
    let reference = on_processes(&config(&[]), reference_dir.path(), 2, Start::Fresh, None);
    let reference = &reference[0].losses;

    // 2 processes until the step-2 checkpoint (stopped before step 3: a crash), then 1.
    let dir = tempfile::tempdir().expect("temp dir");
    let head = on_processes(&config(&[]), dir.path(), 2, Start::Fresh, Some(3));
    assert_eq!(bits(&head[0].losses), bits(&reference[..3]));
    let tail = alone(
        &config(&["train.accum_freq=2"]),
        dir.path(),
        Start::Resume,
        None,
    );
    assert_eq!(tail.started_at, 2);
    assert_eq!(bits(&tail.losses), bits(&reference[2..]), "2 -> 1 process");
    assert_eq!(state(&tail)["processes"], 1);

    // And back: 1 process (accumulating) until step 4, then 2 processes.
    let dir = tempfile::tempdir().expect("temp dir");
    let head = alone(
        &config(&["train.accum_freq=2"]),
        dir.path(),
        Start::Fresh,
        Some(5),
    );
    assert_eq!(bits(&head.losses), bits(&reference[..5]));
    let tail = on_processes(&config(&[]), dir.path(), 2, Start::Resume, None);
    for rank in &tail {
        assert_eq!(rank.started_at, 4);
        assert_eq!(
            bits(&rank.losses),
            bits(&reference[4..]),
            "1 -> 2 processes"
        );
    }
}

#[test]
fn memory_linear_local_loss_trains_like_the_global_loss() {
    // Each rank's rows against all columns (OpenCLIP --local-loss --gather-with-grad): the same
    // gradients as the global logits matrix up to float rounding, so the same losses to 1e-6.
    let global_dir = tempfile::tempdir().expect("temp dir");
    let local_dir = tempfile::tempdir().expect("temp dir");
    let global = on_processes(&config(&[]), global_dir.path(), 2, Start::Fresh, None);
    let local = on_processes(
        &config(&["train.local_loss=true"]),
        local_dir.path(),
        2,
        Start::Fresh,
        None,
    );
    let worst = global[0]
        .losses
        .iter()
        .zip(&local[0].losses)
        .map(|(g, l)| ((g - l) / g).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-6, "worst relative difference {worst:e}");
    assert_eq!(bits(&local[0].losses), bits(&local[1].losses));
}

#[test]
fn slots_that_do_not_split_are_refused_before_any_work() {
    // 3 processes cannot share 2 slots; 2 slots of a global batch of 8 × 1 × 1 split, 3 do not.
    let dir = tempfile::tempdir().expect("temp dir");
    let errors = std::thread::scope(|scope| {
        let ranks: Vec<_> = ThreadGroup::new(3)
            .into_iter()
            .map(|group| {
                let dir = dir.path();
                scope.spawn(move || {
                    let device = Device::flex().autodiff();
                    run(
                        &config(&[]),
                        dir,
                        &[device],
                        Start::Fresh,
                        &Control::default(),
                        &group,
                    )
                    .expect_err("2 slots over 3 processes")
                    .to_string()
                })
            })
            .collect();
        ranks
            .into_iter()
            .map(|r| r.join().expect("rank thread"))
            .collect::<Vec<_>>()
    });
    for error in errors {
        assert!(error.starts_with("data.slots: "), "{error}");
        assert!(
            error.contains("do not split evenly over 3 process(es)"),
            "{error}"
        );
    }
    let err = run(
        &config(&["data.slots=3"]),
        dir.path(),
        &[Device::flex().autodiff()],
        Start::Fresh,
        &Control::default(),
        &Solo,
    )
    .expect_err("8 over 3 slots");
    assert!(
        err.to_string()
            .contains("does not split into 3 equal slot batches"),
        "{err}"
    );
    assert!(
        !dir.path().join("config.toml").exists(),
        "refused before any work"
    );
}
