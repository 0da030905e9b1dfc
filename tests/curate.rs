//! End-to-end tests of `duet embed --data` and `duet curate` on the bundled sample and the tiny
//! model fixture: embeddings equal to embedding each sample alone, kill -9 and resume, every
//! filter's kept set computed by hand from the saved embeddings, the bytes copied unchanged.

mod common;

use std::path::Path;

use common::{
    fails_with, inspect_json, kill_when_exists, npy_rows, ok, read_jsonl, root, strs, tar_members,
};

/// The 7 sample-level skip reasons of crates/duet-data's bad-input tar, one sample each (its
/// MANIFEST.json).
const BAD_INPUT_REASONS: [&str; 7] = [
    "missing_image",
    "missing_caption",
    "caption_not_utf8",
    "empty_image",
    "undecodable_image",
    "image_too_large",
    "duplicate_key",
];

/// `duet curate` of the tiny model fixture on `data` into `out`, then `extra` (the model's path
/// is element 2).
fn curate(data: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let out = out.to_str().expect("utf-8 path");
    [
        "curate",
        "--model",
        "tests/fixtures/clip-tiny/hf",
        "--data",
        data,
        "--out",
        out,
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

/// A JSON file.
fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("a JSON file");
    serde_json::from_str(&text).expect("JSON")
}

/// One JSON value per line (`embeddings/{i:05}.jsonl`).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// `a` and `b` hold the same files, byte for byte, in each of `subdirs` (`""`: the top).
fn assert_same_files(a: &Path, b: &Path, subdirs: &[&str]) {
    let listing = |dir: &Path| -> Vec<String> {
        let mut names = Vec::new();
        for sub in subdirs {
            for entry in std::fs::read_dir(dir.join(sub)).expect("dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    let name = path.file_name().expect("a name").to_string_lossy();
                    names.push(Path::new(sub).join(&*name).display().to_string());
                }
            }
        }
        names.sort();
        names
    };
    assert_eq!(listing(a), listing(b));
    for name in listing(a) {
        assert!(
            std::fs::read(a.join(&name)).expect("first")
                == std::fs::read(b.join(&name)).expect("second"),
            "{name} differs"
        );
    }
}

/// The keys written to `dir/shards/*.tar`.
fn kept_keys(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("shards")).expect("shards") {
        let path = entry.expect("entry").path();
        for name in tar_members(&path).keys() {
            keys.insert(name.split('.').next().expect("key").to_owned());
        }
    }
    keys
}

#[test]
fn embed_data_equals_embedding_each_sample_alone() {
    // The first 6 samples of the val shard, extracted, through `duet embed --image/--text`:
    // the same rows, in order, as `duet embed --data` writes for the shard.
    let tmp = tempfile::tempdir().expect("temp dir");
    let shard = "datasets/sample/val/00000.tar";
    let out = tmp.path().join("emb");
    let out_str = out.to_str().expect("utf-8 path");
    let model = "tests/fixtures/clip-tiny/hf";
    ok(&["embed", "--model", model, "--data", shard, "--out", out_str]);
    let images = npy_rows(&out.join("00000.images.npy"));
    let texts = npy_rows(&out.join("00000.texts.npy"));
    let meta = json_lines(&out.join("00000.jsonl"));
    // The val shard's 132 pairs (the README's held-out set), every row with its key.
    assert_eq!((images.len(), texts.len(), meta.len()), (132, 132, 132));

    let files = tar_members(&root().join(shard));
    let mut args: Vec<String> = ["embed", "--model", model].map(String::from).to_vec();
    for row in &meta[..6] {
        let key = row["key"].as_str().expect("key");
        let (name, bytes) = files
            .iter()
            .find(|(name, _)| {
                name.starts_with(key) && (name.ends_with(".jpg") || name.ends_with(".png"))
            })
            .expect("the sample's image");
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).expect("write image");
        args.extend(["--image".into(), path.display().to_string()]);
        args.extend([
            "--text".into(),
            row["caption"].as_str().expect("caption").into(),
        ]);
    }
    let alone = tmp.path().join("alone.jsonl");
    args.extend(["--out".into(), alone.display().to_string()]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let rows = read_jsonl(&alone);
    for i in 0..6 {
        // Image and text rows alternate in command-line order; the same code path: equal.
        assert_eq!(rows[2 * i].embedding, images[i], "image {i}");
        assert_eq!(rows[2 * i + 1].embedding, texts[i], "text {i}");
    }
}

#[test]
fn embed_data_killed_and_run_again_writes_the_same_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    let args = |out: &Path| -> Vec<String> {
        [
            "embed",
            "--model",
            "tests/fixtures/clip-tiny/hf",
            "--data",
            "datasets/sample/train/{00000..00002}.tar",
            "--dtype",
            "f16",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]
        .map(String::from)
        .to_vec()
    };
    ok(&strs(&args(&full)));

    let first = killed.join("00000.jsonl");
    kill_when_exists(&strs(&args(&killed)), &first);
    assert!(
        !killed.join("00002.jsonl").exists(),
        "killed too late to test anything"
    );
    let first_bytes = std::fs::read(&first).expect("first shard");
    ok(&strs(&args(&killed)));
    // The finished shard was not rewritten, and every file equals the uninterrupted run's.
    assert_eq!(std::fs::read(&first).expect("first shard"), first_bytes);
    assert_same_files(&full, &killed, &[""]);
    // Another run's arguments on the same directory: refused, nothing touched.
    let mut other = args(&killed);
    other[6] = "f32".into();
    fails_with(&strs(&other), &["another run", "--out"]);
}

#[test]
fn embed_data_counts_broken_samples_per_reason() {
    // crates/duet-data's bad-input tar (its MANIFEST.json): 3 good samples of 9, and one skip
    // each for 7 reasons, written in the shard's report as training counts them.
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("emb");
    ok(&[
        "embed",
        "--model",
        "tests/fixtures/clip-tiny/hf",
        "--data",
        "crates/duet-data/tests/fixtures/bad/mixed.tar",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let report = read_json(&out.join("00000.json"));
    assert_eq!(report["samples"], 3, "{report}");
    for reason in BAD_INPUT_REASONS {
        assert_eq!(report["skipped"][reason], 1, "{reason}: {report}");
    }
}

#[test]
fn curate_keeps_the_top_fraction_by_hand_and_copies_the_bytes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("cur");
    let shard = "datasets/sample/val/00000.tar";
    let args = curate(shard, &out, &["--top-fraction", "0.25", "--min-words", "4"]);
    ok(&strs(&args));
    // By hand from the saved embeddings: the score is the cosine of each row's two unit
    // vectors; a row survives "at least 4 words" and then the top round(0.25 * 132) = 33
    // scores of all 132 pairs (ties to the earlier row).
    let emb = out.join("embeddings");
    let images = npy_rows(&emb.join("00000.images.npy"));
    let texts = npy_rows(&emb.join("00000.texts.npy"));
    let rows = json_lines(&emb.join("00000.jsonl"));
    let scores: Vec<f32> = images
        .iter()
        .zip(&texts)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
        .collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let top: std::collections::BTreeSet<usize> = order[..33].iter().copied().collect();
    let words = |i: usize| {
        rows[i]["caption"]
            .as_str()
            .expect("caption")
            .split_whitespace()
            .count()
    };
    let want: std::collections::BTreeSet<String> = (0..rows.len())
        .filter(|&i| top.contains(&i) && words(i) >= 4)
        .map(|i| rows[i]["key"].as_str().expect("key").to_owned())
        .collect();
    let written = tar_members(&out.join("shards/00000.tar"));
    let input = tar_members(&root().join(shard));
    let got: std::collections::BTreeSet<String> = written
        .keys()
        .map(|name| name.split('.').next().expect("key").to_owned())
        .collect();
    assert_eq!(got, want);
    assert!(!want.is_empty() && want.len() < 33, "{} kept", want.len());
    // Image bytes and captions exactly as in the input shard.
    for (name, bytes) in &written {
        assert_eq!(Some(bytes), input.get(name), "{name}");
    }
    let report = read_json(&out.join("curate.json"));
    assert_eq!(report["kept"], want.len(), "{report}");
    let dropped = report["dropped"]["too_few_words"].as_u64().unwrap_or(0)
        + report["dropped"]["not_in_top_fraction"]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(dropped as usize + want.len(), 132, "{report}");
    // The written shard reads back through duet's own loader.
    let inspected = inspect_json(out.join("shards/00000.tar").to_str().expect("utf-8"));
    assert_eq!(inspected["samples"], want.len(), "{inspected}");
    // Run again: the finished shard is left as it is.
    let before = std::fs::metadata(out.join("shards/00000.tar"))
        .and_then(|m| m.modified())
        .expect("mtime");
    ok(&strs(&args));
    let after = std::fs::metadata(out.join("shards/00000.tar"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(before, after);
}

#[test]
fn curate_drops_exact_duplicate_images_after_their_first_occurrence() {
    // The bundled training sample holds 1,188 pairs of 1,185 distinct images (3 emoji images
    // occur twice): --dedup-exact keeps each image's first pair in spec order.
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = |name: &str, block_memory: &str| {
        let out = tmp.path().join(name);
        ok(&strs(&curate(
            "datasets/sample/train/{00000..00002}.tar",
            &out,
            &["--dedup-exact", "--block-memory", block_memory],
        )));
        out
    };
    let out = run("cur", "1G");
    // By hand: walk the input in spec order (shard, then member order, which is sample order),
    // remembering image bytes.
    let mut seen = std::collections::BTreeSet::new();
    let mut first_keys = std::collections::BTreeSet::new();
    let mut duplicate_keys = std::collections::BTreeSet::new();
    for i in 0..3 {
        let path = root().join(format!("datasets/sample/train/{i:05}.tar"));
        let mut archive = tar::Archive::new(std::fs::File::open(path).expect("shard"));
        for entry in archive.entries().expect("tar") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            if !(name.ends_with(".jpg") || name.ends_with(".png")) {
                continue;
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
            let key = name.split('.').next().expect("key").to_owned();
            if seen.insert(bytes) {
                first_keys.insert(key);
            } else {
                duplicate_keys.insert(key);
            }
        }
    }
    assert_eq!((first_keys.len(), duplicate_keys.len()), (1185, 3));
    let report = read_json(&out.join("curate.json"));
    assert_eq!(report["dropped"]["exact_duplicate"], 3, "{report}");
    assert_eq!(kept_keys(&out), first_keys);
    // The scratch columns are gone once the run is done.
    assert!(!out.join("decide").exists());

    // A 1-byte --block-memory splits the hashes into the most buckets (256): same decisions.
    let small = run("small", "1");
    // curate.json, scores.png, the settings and the tars.
    assert_same_files(&out, &small, &["", "shards"]);
}

#[test]
fn curate_drops_near_duplicates_as_the_saved_embeddings_say() {
    // By hand from the saved image embeddings (unit rows): with one cluster, a pair is a near
    // duplicate when its cosine with any earlier pair's exceeds 0.99. The tiny random-init
    // model maps the val shard's images close together, so the bound splits them.
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = |clusters: &str, block_memory: &str| {
        let out = tmp.path().join(format!("k{clusters}-{block_memory}"));
        ok(&strs(&curate(
            "datasets/sample/val/00000.tar",
            &out,
            &[
                "--dedup-near",
                "0.99",
                "--dedup-clusters",
                clusters,
                "--block-memory",
                block_memory,
            ],
        )));
        out
    };
    let one = run("1", "1G");
    let images = npy_rows(&one.join("embeddings/00000.images.npy"));
    let rows = json_lines(&one.join("embeddings/00000.jsonl"));
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let want: std::collections::BTreeSet<String> = (0..images.len())
        .filter(|&i| !(0..i).any(|j| cos(&images[i], &images[j]) > 0.99))
        .map(|i| rows[i]["key"].as_str().expect("key").to_owned())
        .collect();
    assert!(want.len() > 10 && want.len() < 120, "{} kept", want.len());
    assert_eq!(kept_keys(&one), want);
    let report = read_json(&one.join("curate.json"));
    assert_eq!(
        report["dropped"]["near_duplicate"],
        132 - want.len(),
        "{report}"
    );
    assert_eq!(report["near_duplicate_clusters"], 1, "{report}");
    // The score histogram, an 800 x 500 PNG (IHDR bytes 16..24).
    let png = std::fs::read(one.join("scores.png")).expect("scores.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[16..24], &[0, 0, 3, 32, 0, 0, 1, 244]);
    // Four clusters compare fewer pairs: every pair they drop, one cluster drops too.
    let four = run("4", "1G");
    let kept_four = kept_keys(&four);
    assert!(
        kept_four.is_superset(&want),
        "{} vs {}",
        kept_four.len(),
        want.len()
    );
    // A 1-byte --block-memory searches the four clusters one block each: same decisions.
    let blocks = run("4", "1");
    assert_same_files(&four, &blocks, &["", "shards"]);
}

#[test]
fn curate_killed_and_run_again_writes_the_same_output() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    let args = |out: &Path| {
        curate(
            "datasets/sample/train/{00000..00002}.tar",
            out,
            &[
                "--top-fraction",
                "0.6",
                "--dedup-exact",
                "--dedup-near",
                "0.995",
            ],
        )
    };
    ok(&strs(&args(&full)));
    // Killed while embedding (pass 1), then run again.
    kill_when_exists(
        &strs(&args(&killed)),
        &killed.join("embeddings/00000.jsonl"),
    );
    assert!(
        !killed.join("curate.json").exists(),
        "killed too late to test anything"
    );
    ok(&strs(&args(&killed)));
    // And as if killed while writing the kept shards (pass 3): the later tars gone, one left
    // half-written.
    std::fs::remove_file(killed.join("shards/00002.tar")).expect("remove");
    std::fs::rename(
        killed.join("shards/00001.tar"),
        killed.join("shards/00001.partial"),
    )
    .expect("rename");
    let partial = std::fs::OpenOptions::new()
        .write(true)
        .open(killed.join("shards/00001.partial"))
        .expect("open");
    partial.set_len(5000).expect("truncate");
    std::fs::remove_file(killed.join("curate.json")).expect("remove");
    ok(&strs(&args(&killed)));
    assert_same_files(&full, &killed, &["", "shards", "embeddings"]);
    // Another model on the same directory: refused before any work, nothing touched.
    let mut other = args(&killed);
    other[2] = "tests/fixtures/siglip-tiny/hf".into();
    let before = std::fs::read(killed.join("curate.json")).expect("report");
    fails_with(&strs(&other), &["other settings", "--out"]);
    assert_eq!(
        std::fs::read(killed.join("curate.json")).expect("report"),
        before
    );
}

#[test]
fn curate_reports_broken_samples_per_reason_and_refuses_a_spec_without_pairs() {
    // crates/duet-data's bad-input tar (its MANIFEST.json): 3 good samples of 9, one skip each
    // for 7 reasons; no filter set, so the 3 are kept and the 7 reported.
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("cur");
    let args = |data: &str, out: &Path| curate(data, out, &[]);
    ok(&strs(&args(
        "crates/duet-data/tests/fixtures/bad/mixed.tar",
        &out,
    )));
    let report = read_json(&out.join("curate.json"));
    assert_eq!(
        (report["pairs"].as_u64(), report["kept"].as_u64()),
        (Some(3), Some(3))
    );
    for reason in BAD_INPUT_REASONS {
        assert_eq!(report["skipped"][reason], 1, "{reason}: {report}");
    }
    // A shard of only broken samples is a shard of 0 pairs, its skips reported, and the spec's
    // other shards go on; a spec of only such shards is an error naming it, no shards written.
    let dir = tmp.path().join("two");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(
        root().join("datasets/sample/val/00000.tar"),
        dir.join("00000.tar"),
    )
    .expect("copy");
    let broken = dir.join("00001.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&broken).expect("tar"));
    for (name, bytes) in [("a.jpg", &b"html"[..]), ("a.txt", &b"cat"[..])] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).expect("member");
    }
    tar.finish().expect("tar");
    let both = tmp.path().join("both");
    let spec = format!("{}/{{00000..00001}}.tar", dir.display());
    ok(&strs(&args(&spec, &both)));
    let report = read_json(&both.join("curate.json"));
    assert_eq!(report["kept"], 132, "{report}");
    assert_eq!(report["skipped"]["undecodable_image"], 1, "{report}");
    assert!(tar_members(&both.join("shards/00001.tar")).is_empty());
    let none = tmp.path().join("none");
    fails_with(
        &strs(&args(broken.to_str().expect("utf-8"), &none)),
        &["no usable pairs", "undecodable_image=1"],
    );
    assert!(!none.join("shards").exists());
}
