//! End-to-end tests of the `duet` binary on the bundled photos and the tiny model fixtures.

mod common;

use std::path::Path;
use std::process::Command;

use common::{duet, fails_with, inspect_json, kill_when_exists, ok, read_jsonl, root};

/// Row `row` of the f32 tensor `key` of a reference safetensors file (relative to the
/// repository root).
fn fixture_row(file: &str, key: &str, row: usize) -> Vec<f32> {
    let bytes = std::fs::read(root().join(file)).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
    let view = st.tensor(key).expect("key");
    let dim = view.shape()[1];
    view.data()[row * dim * 4..(row + 1) * dim * 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Row `row` of an f32 tensor in a reference file of `scripts/make_clip_fixtures.py`.
fn reference_row(file: &str, key: &str, row: usize) -> Vec<f32> {
    fixture_row(&format!("tests/fixtures/clip-tiny/{file}"), key, row)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn embed_keeps_command_line_order_and_matches_open_clip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("e.jsonl");
    let texts = dir.path().join("texts.txt");
    std::fs::write(
        &texts,
        "café au lait ☕\r\nChelsea the cat, a rocket, and a cup of coffee!\n",
    )
    .expect("write");
    ok(&[
        "embed",
        "--model",
        "tests/fixtures/clip-tiny/openclip",
        "--text",
        "a photo of a cat",
        "--image",
        "datasets/photos/chelsea.png",
        "--texts",
        texts.to_str().expect("utf-8 path"),
        "--image",
        "datasets/photos/coffee.png",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let rows = read_jsonl(&out);
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.kind.as_str(), r.input.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("text", "a photo of a cat"),
            ("image", "datasets/photos/chelsea.png"),
            ("text", "café au lait ☕"),
            ("text", "Chelsea the cat, a rocket, and a cup of coffee!"),
            ("image", "datasets/photos/coffee.png"),
        ]
    );
    for row in &rows {
        let norm: f32 = row.embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{} has norm {norm}", row.input);
        assert_eq!(row.embedding.len(), 24);
    }
    // Tokenizer + text tower end to end: captions 0, 2 and 3 of the OpenCLIP reference.
    for (row, reference) in [(0, 0), (2, 2), (3, 3)] {
        let want = reference_row("reference-openclip.safetensors", "text_embeds", reference);
        let diff = max_abs_diff(&rows[row].embedding, &want);
        assert!(diff < 1e-5, "text {row}: max abs diff {diff}");
    }
    // Decode + eval transform + image tower: chelsea and coffee are reference images 0 and 2.
    // The preprocessing differs from PIL by at most 2e-2 per normalised value (its own parity
    // test); measured here it moves the unit embeddings by under 2e-4.
    for (row, reference) in [(1, 0), (4, 2)] {
        let want = reference_row("reference-openclip.safetensors", "image_embeds", reference);
        let diff = max_abs_diff(&rows[row].embedding, &want);
        println!("image row {row}: max abs diff to open_clip {diff:.2e}");
        assert!(diff < 1e-3, "image {row}: max abs diff {diff}");
    }
}

#[test]
fn npy_and_safetensors_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let npy = dir.path().join("e.npy");
    let st = dir.path().join("e.safetensors");
    for out in [&npy, &st] {
        ok(&[
            "embed",
            "--model",
            "tests/fixtures/clip-tiny/hf",
            "--text",
            "a photo of a cat",
            "--text",
            "",
            "--image",
            "datasets/photos/rocket.jpg",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
    }
    let bytes = std::fs::read(&npy).expect("npy");
    let array = npyz::NpyFile::new(&bytes[..]).expect("valid npy");
    assert_eq!(array.shape(), &[3, 24]);
    let values: Vec<f32> = array.into_vec().expect("f32");
    let first = reference_row("reference-hf.safetensors", "text_embeds", 0);
    assert!(max_abs_diff(&values[..24], &first) < 1e-5);

    let bytes = std::fs::read(&st).expect("safetensors");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let inputs = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("inputs"))
        .expect("inputs metadata");
    assert!(
        inputs.contains("\"kind\":\"image\"") && inputs.contains("rocket.jpg"),
        "{inputs}"
    );
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
    assert_eq!(
        file.tensor("embeddings").expect("embeddings").shape(),
        &[3, 24]
    );
}

#[test]
fn exported_models_embed_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hf = dir.path().join("hf");
    let duet_dir = dir.path().join("duet");
    let hf_str = hf.to_str().expect("utf-8 path");
    ok(&[
        "export",
        "--model",
        "tests/fixtures/clip-tiny/openclip",
        "--format",
        "hf",
        "--out",
        hf_str,
    ]);
    ok(&[
        "export",
        "--model",
        hf_str,
        "--format",
        "duet",
        "--out",
        duet_dir.to_str().expect("utf-8"),
    ]);
    let embed = |model: &str, name: &str| {
        let out = dir.path().join(name);
        ok(&[
            "embed",
            "--model",
            model,
            "--text",
            "a photo of a cat",
            "--image",
            "datasets/photos/horse.png",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
        read_jsonl(&out)
    };
    // duet -> OpenCLIP's hub layout closes the circle (open_clip itself loads it:
    // scripts/bench/side_by_side.py evaluates such exports with OpenCLIP's code).
    let openclip = dir.path().join("openclip");
    ok(&[
        "export",
        "--model",
        duet_dir.to_str().expect("utf-8"),
        "--format",
        "openclip",
        "--out",
        openclip.to_str().expect("utf-8"),
    ]);
    let original = embed("tests/fixtures/clip-tiny/openclip", "a.jsonl");
    for exported in [
        embed(hf_str, "b.jsonl"),
        embed(duet_dir.to_str().expect("utf-8"), "c.jsonl"),
        embed(openclip.to_str().expect("utf-8"), "d.jsonl"),
    ] {
        for (a, b) in original.iter().zip(&exported) {
            assert_eq!(a.embedding, b.embedding, "{}", a.input);
        }
    }
}

#[test]
fn bad_input_names_the_culprit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("e.jsonl");
    let out = out.to_str().expect("utf-8 path");
    let model = "tests/fixtures/clip-tiny/hf";
    fails_with(
        &["embed", "--model", model, "--text", "x", "--out", "e.txt"],
        &["e.txt", ".jsonl, .npy or .safetensors"],
    );
    fails_with(
        &[
            "embed",
            "--model",
            "no/such/dir",
            "--text",
            "x",
            "--out",
            out,
        ],
        &["no/such/dir"],
    );
    fails_with(
        &[
            "embed",
            "--model",
            model,
            "--image",
            "no/such.png",
            "--out",
            out,
        ],
        &["no/such.png"],
    );
    fails_with(
        &[
            "embed",
            "--model",
            model,
            "--image",
            "Cargo.toml",
            "--out",
            out,
        ],
        &["Cargo.toml", "not a JPEG, PNG or WebP"],
    );
    fails_with(
        &["embed", "--model", model, "--out", out],
        &["nothing to embed"],
    );
    let texts = dir.path().join("bad.txt");
    std::fs::write(&texts, b"fine\nalso fine\nbroken \xff here\n").expect("write");
    fails_with(
        &[
            "embed",
            "--model",
            model,
            "--texts",
            texts.to_str().expect("utf-8"),
            "--out",
            out,
        ],
        &["bad.txt:3", "UTF-8"],
    );
    assert!(!Path::new(out).exists(), "a failed run leaves no output");
}

#[test]
fn shards_inspect_counts_what_training_would_see() {
    // The bundled img2dataset shards: 499 + 498 + 191 good samples, as _stats.json announces.
    let report = inspect_json("datasets/sample/train/{00000..00002}.tar");
    assert_eq!(report["shards"], 3);
    assert_eq!(report["samples"], 1188);
    assert_eq!(report["hinted_samples"], 1188);
    assert_eq!(report["skipped"], serde_json::json!({}));
    // The bad corpus tar: 3 good samples and one of each sample-level problem.
    let report = inspect_json("crates/duet-data/tests/fixtures/bad/mixed.tar");
    assert_eq!(report["samples"], 3);
    let skipped = report["skipped"].as_object().expect("an object");
    for reason in [
        "duplicate_key",
        "undecodable_image",
        "empty_image",
        "image_too_large",
        "caption_not_utf8",
        "missing_caption",
        "missing_image",
    ] {
        assert_eq!(skipped[reason], 1, "{reason}");
    }
    // Nothing readable: the report still prints, then a clear error (no hang).
    let out = duet(&["shards", "inspect", "--json", "/nonexistent/{0..1}.tar"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["skipped"]["shard_unreachable"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable samples"));
}

#[test]
fn shards_build_writes_img2dataset_layout_that_reads_back() {
    // bad/folder holds 5 rows: a (jpg) and b (png) are good; nocap has no caption, sub/c a
    // non-UTF-8 one, sub/zero an empty image. 3 rows per shard: 2 shards, keys 5 + 1 digits.
    let out = tempfile::tempdir().expect("temp dir");
    let dir = out.path().join("built");
    let dir_str = dir.to_str().expect("utf-8 temp path");
    ok(&[
        "shards",
        "build",
        "--from",
        "crates/duet-data/tests/fixtures/bad/folder/",
        "--out",
        dir_str,
        "--samples-per-shard",
        "3",
    ]);
    for name in [
        "00000.tar",
        "00000.parquet",
        "00000_stats.json",
        "00001.tar",
        "00001.parquet",
        "00001_stats.json",
    ] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("00000_stats.json")).expect("stats"),
    )
    .expect("json");
    assert_eq!(stats["count"], 3);
    assert_eq!(stats["successes"], 2);
    let report = inspect_json(&format!("{dir_str}/{{00000..00001}}.tar"));
    assert_eq!(report["samples"], 2);
    assert_eq!(report["hinted_samples"], 2);
    assert_eq!(report["examples"][0]["key"], "000000");
    assert_eq!(report["examples"][1]["key"], "000001");
}

/// Train flags for a short, checkpoint-heavy run of the tiny model on the bundled sample.
const SHORT_RUN: &[&str] = &[
    "--config",
    "configs/tiny.toml",
    "--set",
    "train.steps=16",
    "--set",
    "train.batch_size=16",
    "--set",
    "checkpoint.every_steps=2",
    "--set",
    "checkpoint.keep_last=3",
    "--set",
    "log.every_steps=1",
    "--set",
    "schedule.warmup_steps=2",
    "--set",
    "data.shuffle_buffer=50",
];

fn losses(run_dir: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    // Training rows; evaluation rows (`val/i2t_r1`, …) have no loss.
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON row"))
        .filter_map(|row| Some((row["step"].as_u64()?, row.get("loss")?.as_f64()?)))
        .collect()
}

/// Runs `duet args` writing into `run_dir`, SIGKILLs it as soon as its first checkpoint is
/// complete, and returns the checkpoint's name.
fn kill_after_first_checkpoint(args: &[&str], run_dir: &Path) -> String {
    let latest = run_dir.join("checkpoints/latest");
    kill_when_exists(args, &latest);
    std::fs::read_to_string(&latest).expect("latest")
}

#[test]
fn pretrain_killed_after_a_checkpoint_resumes_to_the_same_losses() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let full = tmp.path().join("full");
    let killed = tmp.path().join("killed");
    let mut args = vec!["pretrain"];
    args.extend_from_slice(SHORT_RUN);
    let full_str = full.to_str().expect("utf-8 path");
    let out = duet(&[args.as_slice(), &["--run-dir", full_str]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = losses(&full);
    assert_eq!(reference.len(), 16);
    // The end-of-run summary: held-out retrieval next to chance, and the plots it drew.
    for needle in [
        "held-out retrieval on val (132 pairs)",
        "chance      R@1   0.8%",
        "loss.png",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    for plot in ["loss.png", "lr.png", "logit_scale.png", "eval-val.png"] {
        assert!(full.join("plots").join(plot).is_file(), "no {plot}");
    }

    // The same run, SIGKILLed as soon as its first checkpoint is complete.
    let killed_str = killed.to_str().expect("utf-8 path");
    let at_kill = kill_after_first_checkpoint(
        &[args.as_slice(), &["--run-dir", killed_str]].concat(),
        &killed,
    );
    assert_ne!(
        at_kill.trim(),
        "step-00000016",
        "killed too late to test anything"
    );

    ok(&["resume", killed_str]);
    let resumed = losses(&killed);
    // Every step once, and each loss equal to the uninterrupted run's (JSON keeps f64 exact).
    assert_eq!(resumed, reference, "killed at {at_kill}");

    // The run exports as a Hugging Face model (its latest checkpoint).
    let hf = tmp.path().join("hf");
    ok(&[
        "export",
        "--model",
        killed_str,
        "--format",
        "hf",
        "--out",
        hf.to_str().expect("utf-8 path"),
    ]);
    assert!(hf.join("config.json").is_file() && hf.join("model.safetensors").is_file());
}

/// Every f32 tensor of a safetensors file, by name.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).expect("safetensors file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

#[test]
fn finetune_from_hf_with_a_locked_image_tower_trains_only_the_text_side() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run_dir = tmp.path().join("lit");
    let run_str = run_dir.to_str().expect("utf-8 path");
    let hf_fixture = "tests/fixtures/clip-tiny/hf";
    let mut args = vec!["finetune", "--from", hf_fixture, "--lock-image"];
    args.extend_from_slice(SHORT_RUN);
    args.extend_from_slice(&["--set", "train.steps=4", "--run-dir", run_str]);
    ok(&args);
    let config = std::fs::read_to_string(run_dir.join("config.toml")).expect("config.toml");
    assert!(
        config.contains("from = ") && config.contains("image = true"),
        "{config}"
    );

    // Export back to the HF layout (exact round trip) and compare with the weights it started
    // from, tensor by tensor.
    let out = tmp.path().join("hf");
    ok(&[
        "export",
        "--model",
        run_str,
        "--format",
        "hf",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let before = tensors(&root().join(hf_fixture).join("model.safetensors"));
    let after = tensors(&out.join("model.safetensors"));
    let (mut image, mut text_changed, mut text) = (0, 0, 0);
    for (name, old) in &before {
        let Some(new) = after.get(name) else { continue };
        if name.starts_with("vision_model.") || name == "visual_projection.weight" {
            assert_eq!(
                old, new,
                "{name} changed although the image tower is locked"
            );
            image += 1;
        } else if name.starts_with("text_model.") || name == "text_projection.weight" {
            text += 1;
            text_changed += usize::from(old != new);
        }
    }
    // The tiny HF fixture: 2-block towers, so well over 20 tensors per tower.
    assert!(image > 20, "only {image} image tensors compared");
    // Every trained text tensor moves; attention key biases get (near) zero gradient.
    assert!(
        text_changed * 10 >= text * 8,
        "{text_changed} of {text} text tensors changed"
    );
    assert_ne!(
        before.get("logit_scale"),
        after.get("logit_scale"),
        "logit_scale trains"
    );
}

#[test]
fn train_config_errors_are_one_line_naming_the_key() {
    for (set, key) in [
        ("train.batchsize=3", "batchsize"),
        ("train.batch_size=\"x\"", "train.batch_size"),
        ("train.batch_size=0", "train.batch_size"),
        ("model.image_size=60", "model.image_size"),
    ] {
        let out = duet(&["pretrain", "--config", "configs/tiny.toml", "--set", set]);
        assert!(!out.status.success(), "{set} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error")).collect();
        assert_eq!(error.len(), 1, "{set}: {stderr}");
        assert!(error[0].contains(key), "{set}: {stderr}");
    }
}

#[test]
fn pretrain_on_two_cpu_ranks_prints_the_global_batch() {
    // Two data-parallel ranks on the one CPU device, 8 samples each: a global batch of 16.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let dir_str = dir.to_str().expect("utf-8 path");
    let mut args = vec!["pretrain"];
    args.extend_from_slice(SHORT_RUN);
    let out = duet(
        &[
            args.as_slice(),
            &[
                "--run-dir",
                dir_str,
                "--set",
                "train.steps=3",
                "--set",
                "train.batch_size=8",
                "--devices",
                "cpu,cpu",
            ],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("3 steps of 16 (8 per device × 2 device(s) × 1 accumulated × 1 process(es))"),
        "{stderr}"
    );
    assert_eq!(losses(&dir).len(), 3);
    fails_with(
        &[
            "pretrain",
            "--config",
            "configs/tiny.toml",
            "--devices",
            "cuda:0,cuda:1",
        ],
        &["built without CUDA"],
    );
}

#[test]
fn pretrain_with_a_data_filter_reports_what_it_dropped() {
    // 16 steps of 16 = 256 samples drawn from the shuffled stream of 1,188; `min_words = 6`
    // drops the shorter captions on the way (the loader test checks which), and the end of
    // the run counts them.
    let tmp = tempfile::tempdir().expect("temp dir");
    let run_dir = tmp.path().join("run");
    let mut args = vec!["pretrain"];
    args.extend_from_slice(SHORT_RUN);
    args.extend([
        "--set",
        "data.filter.min_words=6",
        "--set",
        "eval.every_steps=0",
        "--run-dir",
        run_dir.to_str().expect("utf-8 path"),
    ]);
    let out = duet(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("training data: "))
        .unwrap_or_else(|| panic!("no skip line in:\n{stdout}"));
    assert!(line.contains("filtered_too_few_words="), "{line}");
    // The filter is part of the run's config: a resume keeps it.
    let config = std::fs::read_to_string(run_dir.join("config.toml")).expect("config.toml");
    assert!(config.contains("min_words = 6"), "{config}");
}

#[test]
fn an_impossible_batch_is_refused_in_one_line_before_any_work() {
    // 9,999,999,999 pairs a step: the estimate alone is petabytes. The run is refused before
    // anything is written, naming the key and the memory, instead of aborting mid-run.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let dir_str = dir.to_str().expect("utf-8 path");
    let out = duet(&[
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--set",
        "train.batch_size=9999999999",
        "--run-dir",
        dir_str,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not an abort: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("train.batch_size"))
        .unwrap_or_else(|| panic!("names the key:\n{stderr}"));
    assert!(
        line.contains("9999999999 samples per micro-batch need at least"),
        "{line}"
    );
    assert!(line.contains("EiB per process for a step"), "{line}");
    assert!(line.contains("available"), "{line}");
    assert!(!dir.exists(), "refused before any work");
}

#[test]
fn sigterm_checkpoints_and_exits_cleanly() {
    // Preemption: SIGTERM finishes the current step, saves a checkpoint at it, exits 0.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let dir_str = dir.to_str().expect("utf-8 path");
    let mut args = vec!["pretrain"];
    args.extend_from_slice(SHORT_RUN);
    let child = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(
            [
                args.as_slice(),
                &["--run-dir", dir_str, "--set", "train.steps=1000"],
            ]
            .concat(),
        )
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("duet starts");
    let metrics = dir.join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("duet exits");
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted at step"));
    let last_step = losses(&dir).last().expect("rows").0;
    let latest = std::fs::read_to_string(dir.join("checkpoints/latest")).expect("latest");
    assert_eq!(latest.trim(), format!("step-{last_step:08}"));
    assert!(last_step < 1000);
}

fn json_stdout(args: &[&str]) -> serde_json::Value {
    let out = duet(args);
    assert!(
        out.status.success(),
        "duet {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn eval_retrieval_and_zero_shot_print_json_metrics() {
    let model = "tests/fixtures/clip-tiny/hf";
    let r = json_stdout(&[
        "eval",
        "retrieval",
        "--model",
        model,
        "--data",
        "datasets/sample/val/00000.tar",
        "--json",
    ]);
    assert_eq!(r["pairs"].as_u64(), Some(132));
    for key in ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"] {
        let v = r[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&v), "{key} = {v}");
    }
    // Recall can only grow with k; the median rank is an integer.
    assert!(r["i2t_r1"].as_f64() <= r["i2t_r5"].as_f64());
    assert_eq!(r["t2i_median_rank"].as_f64().map(f64::fract), Some(0.0));

    // An image folder: classes are the sorted sub-folder names.
    let tmp = tempfile::tempdir().expect("temp dir");
    for (class, photos) in [
        ("cat", &["chelsea.png"][..]),
        ("rocket", &["rocket.jpg", "coffee.png"][..]),
    ] {
        let dir = tmp.path().join(class);
        std::fs::create_dir(&dir).expect("mkdir");
        for photo in photos {
            std::fs::copy(root().join("datasets/photos").join(photo), dir.join(photo))
                .expect("copy");
        }
    }
    let z = json_stdout(&[
        "eval",
        "zero-shot",
        "--model",
        model,
        "--dataset",
        tmp.path().to_str().expect("utf-8"),
        "--templates",
        "cifar",
        "--json",
    ]);
    assert_eq!(z["count"].as_u64(), Some(3));
    assert_eq!(z["templates"].as_u64(), Some(18));
    // Two classes: everything is in the top 5.
    assert_eq!(z["top5"].as_f64(), Some(100.0));
    let per_class = z["per_class"].as_object().expect("per_class");
    assert_eq!(
        per_class.keys().collect::<Vec<_>>(),
        ["cat", "rocket"],
        "{z}"
    );
    fails_with(
        &[
            "eval",
            "zero-shot",
            "--model",
            model,
            "--dataset",
            "datasets/sample/val/00000.tar",
        ],
        &["--classes FILE is needed"],
    );
}

#[test]
fn embed_in_bf16_is_near_f32_and_unknown_precisions_are_refused() {
    // The OpenCLIP fixture's caption 0 in bf16: unit embeddings of 24 values, within 2e-2 of
    // f32's per value (bf16 keeps 8 bits of mantissa; the fixture test bounds the relative
    // error of the features by 1e-2) but not equal to them (the casts happened).
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bf16.jsonl");
    ok(&[
        "embed",
        "--model",
        "tests/fixtures/clip-tiny/openclip",
        "--text",
        "a photo of a cat",
        "--precision",
        "amp_bf16",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let row = &read_jsonl(&out)[0];
    let want = reference_row("reference-openclip.safetensors", "text_embeds", 0);
    let diff = max_abs_diff(&row.embedding, &want);
    assert!(
        diff < 2e-2 && diff > 0.0,
        "bf16 vs f32: max abs diff {diff}"
    );
    fails_with(
        &[
            "embed",
            "--model",
            "tests/fixtures/clip-tiny/openclip",
            "--text",
            "a",
            "--precision",
            "fp8",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
        &["--precision", "fp8", "bf16"],
    );
}

/// Row `row` of an f32 tensor of a SigLIP fixture's reference (`fixture` = `siglip-tiny`,
/// `siglip2-tiny`; `scripts/make_siglip_fixtures.py`, `scripts/make_siglip2_fixtures.py`).
fn siglip_reference_row(fixture: &str, key: &str, row: usize) -> Vec<f32> {
    fixture_row(
        &format!("tests/fixtures/{fixture}/reference-hf.safetensors"),
        key,
        row,
    )
}

#[test]
fn embed_siglip_models_matches_transformers_end_to_end() {
    // Captions through the model's own tokenizer.json and text tower, photos through SigLIP's
    // preprocessing (resize without crop, mean = std = 0.5) and its image tower: the fixture's
    // transformers embeddings (captions 0 and 1; chelsea and coffee are images 0 and 1). SigLIP
    // 2's tokenizer pads on the left, its patch embedding is a Linear (held as a conv).
    for fixture in ["siglip-tiny", "siglip2-tiny"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("e.jsonl");
        let model = format!("tests/fixtures/{fixture}/hf");
        ok(&[
            "embed",
            "--model",
            &model,
            "--text",
            "A photo of Chelsea the cat.",
            "--text",
            "café au lait, a rocket and a horse; in one caption!",
            "--image",
            "datasets/photos/chelsea.png",
            "--image",
            "datasets/photos/coffee.png",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
        let rows = read_jsonl(&out);
        assert_eq!(rows.len(), 4);
        for (row, caption) in [(0, 0), (1, 1)] {
            let want = siglip_reference_row(fixture, "caption_text_embeds", caption);
            let diff = max_abs_diff(&rows[row].embedding, &want);
            assert!(
                diff < 1e-5,
                "{fixture} caption {caption}: max abs diff {diff}"
            );
        }
        // The fixtures' pixels come from the PIL backend of SiglipImageProcessor, one 8-bit
        // level off duet's on a few pixels (tests/preprocess_parity.rs).
        for (row, image) in [(2, 0), (3, 1)] {
            let want = siglip_reference_row(fixture, "image_embeds", image);
            let diff = max_abs_diff(&rows[row].embedding, &want);
            println!("{fixture} image {image}: max abs diff to transformers {diff:.2e}");
            assert!(diff < 1e-3, "{fixture} image {image}: max abs diff {diff}");
        }
    }
}

#[test]
fn embed_an_openclip_siglip_model_matches_open_clip() {
    // OpenCLIP's layout: a timm trunk and a `text.*` tower, captions canonicalised as OpenCLIP
    // does, photos squashed; the four captions and photos of the fixture's reference.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("e.jsonl");
    let mut args = vec!["embed", "--model", "tests/fixtures/siglip-tiny/openclip"];
    let captions = [
        "A photo of Chelsea the cat.",
        "a cup of coffee_with milk!",
        "A horse",
        "a rocket launch, seen from the ground; at night",
    ];
    for caption in &captions {
        args.extend_from_slice(&["--text", caption]);
    }
    let photos: Vec<String> = ["chelsea.png", "coffee.png", "horse.png", "rocket.jpg"]
        .iter()
        .map(|photo| format!("datasets/photos/{photo}"))
        .collect();
    for photo in &photos {
        args.extend_from_slice(&["--image", photo]);
    }
    let out_str = out.to_str().expect("utf-8 path");
    args.extend_from_slice(&["--out", out_str]);
    ok(&args);
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 8);
    let reference = |key: &str, row: usize| {
        fixture_row(
            "tests/fixtures/siglip-tiny/reference-openclip.safetensors",
            key,
            row,
        )
    };
    for i in 0..4 {
        let diff = max_abs_diff(&rows[i].embedding, &reference("text_embeds", i));
        assert!(diff < 1e-5, "caption {i}: max abs diff {diff}");
        // open_clip's squash resize (torchvision on PIL) is within one 8-bit level of duet's.
        let diff = max_abs_diff(&rows[4 + i].embedding, &reference("image_embeds", i));
        println!("image {i}: max abs diff to open_clip {diff:.2e}");
        assert!(diff < 1e-3, "image {i}: max abs diff {diff}");
    }
}

#[test]
fn pretrain_a_fresh_siglip_model_with_its_tokenizer() {
    // A fresh model of OpenCLIP's SigLIP config (the fixture's) with its tokenizer files from
    // model.tokenizer: trains with the sigmoid loss, and its checkpoints carry the tokenizer,
    // so evaluating the run needs nothing else.
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = tmp.path().join("run");
    let run_str = run.to_str().expect("utf-8 path");
    let mut args = vec!["pretrain"];
    args.extend_from_slice(SHORT_RUN);
    args.extend_from_slice(&[
        "--set",
        "train.steps=4",
        "--set",
        "model.config=\"tests/fixtures/siglip-tiny/openclip/open_clip_config.json\"",
        "--set",
        "loss.kind=\"sigmoid\"",
        "--run-dir",
        run_str,
    ]);
    // Without its tokenizer: refused before any work.
    fails_with(&args, &["tokenizer.json"]);
    assert!(!run.exists(), "nothing written");
    args.extend_from_slice(&[
        "--set",
        "model.tokenizer=\"tests/fixtures/siglip-tiny/openclip\"",
    ]);
    ok(&args);
    assert_eq!(losses(&run).len(), 4);
    let checkpoint = run.join("checkpoints/step-00000004");
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        assert!(
            checkpoint.join(name).is_file(),
            "{name} not in the checkpoint"
        );
    }
    let metrics = json_stdout(&[
        "eval",
        "retrieval",
        "--model",
        run_str,
        "--data",
        "datasets/sample/val/00000.tar",
        "--json",
    ]);
    assert_eq!(metrics["pairs"].as_u64(), Some(132), "{metrics}");
}

#[test]
fn finetune_siglip_with_a_locked_image_tower_resumes_exactly_and_exports() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    let fixture = "tests/fixtures/siglip-tiny/hf";
    let mut args = vec!["finetune", "--from", fixture, "--lock-image"];
    args.extend_from_slice(SHORT_RUN);
    args.extend_from_slice(&["--set", "train.steps=6"]);
    // tiny.toml trains with InfoNCE: refused for SigLIP weights before anything is written.
    let full_str = full.to_str().expect("utf-8 path");
    fails_with(
        &[args.as_slice(), &["--run-dir", full_str]].concat(),
        &["loss.kind", "sigmoid"],
    );
    assert!(!full.exists(), "nothing written");
    args.extend_from_slice(&["--set", "loss.kind=\"sigmoid\""]);
    ok(&[args.as_slice(), &["--run-dir", full_str]].concat());
    let reference = losses(&full);
    assert_eq!(reference.len(), 6);

    let killed_str = killed.to_str().expect("utf-8 path");
    let at_kill = kill_after_first_checkpoint(
        &[args.as_slice(), &["--run-dir", killed_str]].concat(),
        &killed,
    );
    assert_ne!(
        at_kill.trim(),
        "step-00000006",
        "killed too late to test anything"
    );
    ok(&["resume", killed_str]);
    assert_eq!(losses(&killed), reference, "killed at {at_kill}");

    // Export: the image tower as it came, the text tower trained, the tokenizer alongside; and
    // the export evaluates (own tokenizer, SigLIP preprocessing).
    let out = tmp.path().join("hf");
    let out_str = out.to_str().expect("utf-8 path");
    ok(&[
        "export", "--model", killed_str, "--format", "hf", "--out", out_str,
    ]);
    let before = tensors(&root().join(fixture).join("model.safetensors"));
    let after = tensors(&out.join("model.safetensors"));
    assert_eq!(before.len(), after.len());
    let (mut image, mut text, mut text_changed) = (0, 0, 0);
    for (name, old) in &before {
        let new = &after[name];
        if name.starts_with("vision_model.") {
            assert_eq!(
                old, new,
                "{name} changed although the image tower is locked"
            );
            image += 1;
        } else if name.starts_with("text_model.") {
            text += 1;
            text_changed += usize::from(old != new);
        }
    }
    assert!(
        image > 30 && text > 20,
        "{image} image, {text} text tensors"
    );
    assert!(
        text_changed * 10 >= text * 8,
        "{text_changed} of {text} text tensors changed"
    );
    assert_ne!(
        before["logit_bias"], after["logit_bias"],
        "logit_bias trains"
    );
    for name in ["tokenizer.json", "spiece.model"] {
        let want = std::fs::read(root().join(fixture).join(name)).expect("fixture");
        assert!(
            std::fs::read(out.join(name)).expect("exported") == want,
            "{name}"
        );
    }
    let metrics = json_stdout(&[
        "eval",
        "retrieval",
        "--model",
        out_str,
        "--data",
        "datasets/sample/val/00000.tar",
        "--json",
    ]);
    assert_eq!(metrics["pairs"].as_u64(), Some(132), "{metrics}");
    assert!(metrics["i2t_r1"].as_f64().is_some(), "{metrics}");

    // OpenCLIP holds SigLIP as a timm trunk, and timm has none of the fixture's shape:
    // refused, nothing made.
    let openclip = tmp.path().join("openclip");
    fails_with(
        &[
            "export",
            "--model",
            fixture,
            "--format",
            "openclip",
            "--out",
            openclip.to_str().expect("utf-8 path"),
        ],
        &["SigLIP", "--format hf"],
    );
    assert!(!openclip.exists(), "nothing written");
}
