//! A SigLIP model's own `tokenizer.json` reproduces transformers' ids on real captions, padding
//! and truncation included (issue 16, acceptance 2).
//!
//! Fixtures (repository root): `tests/fixtures/siglip-tiny/`, made by
//! `scripts/make_siglip_tokenizer_fixture.py`: a SentencePiece unigram vocabulary of 1,000
//! pieces trained on the bundled captions, its `tokenizer.json` (from
//! `scripts/siglip_tokenizer.py`), and `tokenizer_cases.jsonl`: 2,791 strings with
//! `SiglipTokenizer`'s ids at `truncation=True, padding="max_length"`, max_length 64 and 16;
//! `tests/fixtures/siglip2-tiny/`, made by `scripts/make_siglip2_fixtures.py`: a Gemma-style BPE
//! (byte fallback, lower-casing, `<eos>` appended) and `Siglip2Tokenizer`'s ids for the same
//! strings (left padding with `<pad>` = 0, as that class pads); `tests/fixtures/siglip-tiny/openclip/`,
//! made by `scripts/make_openclip_siglip_fixtures.py`: a T5-style `tokenizer.json` without
//! canonicalisation of its own and open_clip's `HFTokenizer(clean="canonicalize")` ids.

use duet_data::{OwnRows, TextTokenizer};
use serde::Deserialize;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/siglip-tiny"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
/// `</s>`: SigLIP's end of text and its padding.
const EOS: u32 = 1;
/// SigLIP 2's `<pad>`.
const PAD2: u32 = 0;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids64: Vec<u32>,
    ids16: Vec<u32>,
    /// OpenCLIP's fixture only: open_clip's `basic_clean` (ftfy.fix_text, html.unescape), which
    /// duet does not run, changes this string's canonical form.
    #[serde(default)]
    basic_clean_changes: bool,
}

fn cases(dir: &str) -> Vec<Case> {
    let path = format!("{dir}/tokenizer_cases.jsonl");
    let jsonl = std::fs::read_to_string(&path).expect("fixture is committed");
    jsonl
        .lines()
        .enumerate()
        .map(|(line, json)| {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}:{}: {e}", line + 1))
        })
        .collect()
}

/// The `tokenizer.json` in `model_dir`.
fn load(model_dir: &str, rows: OwnRows) -> TextTokenizer {
    let path = format!("{model_dir}/tokenizer.json");
    let bytes = std::fs::read(&path).expect("fixture is committed");
    TextTokenizer::from_model_json(&bytes, &path, rows).expect("tokenizer.json loads")
}

fn tokenizer(context_length: usize) -> TextTokenizer {
    let rows = OwnRows {
        context_length,
        pad_id: EOS,
        lowercase: false,
        pad_left: false,
        canonicalize: false,
    };
    load(&format!("{DIR}/hf"), rows)
}

#[test]
fn ids_equal_siglip_tokenizer_at_64_and_16() {
    // SigLIP pads with its eos id, so a row cut at `length` has no padding after its eos.
    check(DIR, tokenizer, |row, length| row[length - 2] != EOS);
}

#[test]
fn ids_equal_siglip2_tokenizer_at_64_and_16() {
    let dir = format!("{FIXTURES}/siglip2-tiny");
    let tokenizer = |context_length| {
        let rows = OwnRows {
            context_length,
            pad_id: PAD2,
            lowercase: false,
            pad_left: true,
            canonicalize: false,
        };
        load(&format!("{dir}/hf"), rows)
    };
    // Padding is on the left: a cut row starts with content.
    check(&dir, tokenizer, |row, _| row[0] != PAD2);
}

#[test]
fn ids_equal_open_clip_canonicalizing_tokenizer_at_64_and_16() {
    // Every string but the 10 (of 2,791) that open_clip's ftfy/HTML clean-up changes (HTML
    // entities, mojibake, full-width forms: duet does not run ftfy, see the README).
    let dir = format!("{DIR}/openclip");
    let flagged = cases(&dir).iter().filter(|c| c.basic_clean_changes).count();
    assert_eq!(flagged, 10);
    let tokenizer = |context_length| {
        let rows = OwnRows {
            context_length,
            pad_id: EOS,
            lowercase: false,
            pad_left: false,
            canonicalize: true,
        };
        load(&dir, rows)
    };
    check(&dir, tokenizer, |row, length| row[length - 2] != EOS);
}

fn check(
    dir: &str,
    tokenizer: impl Fn(usize) -> TextTokenizer,
    is_cut: impl Fn(&[u32], usize) -> bool,
) {
    let all = cases(dir);
    let cases: Vec<Case> = all.into_iter().filter(|c| !c.basic_clean_changes).collect();
    assert!(cases.len() > 2_000, "{} cases", cases.len());
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    for (length, want) in [
        (64, cases.iter().map(|c| &c.ids64).collect::<Vec<_>>()),
        (16, cases.iter().map(|c| &c.ids16).collect()),
    ] {
        let rows = tokenizer(length)
            .encode_batch(&texts)
            .expect("every case encodes");
        let wrong: Vec<String> = texts
            .iter()
            .zip(&rows)
            .zip(&want)
            .filter(|((_, got), want)| got != *want)
            .map(|((text, got), want)| format!("{text:?}\n  hf:   {want:?}\n  duet: {got:?}"))
            .collect();
        let cut = rows.iter().filter(|row| is_cut(row, length)).count();
        println!(
            "max_length {length}: {} strings, {cut} cut, {} differ",
            texts.len(),
            wrong.len()
        );
        assert!(cut > 0, "no case exercises truncation at {length}");
        assert!(
            wrong.is_empty(),
            "{} of {} differ:\n{}",
            wrong.len(),
            texts.len(),
            wrong.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn rows_end_with_eos_then_padding() {
    // "a cat" is two or three pieces, then </s> (1), then the pad id (also 1) up to 16.
    let row = tokenizer(16)
        .encode_batch(&["A cat!"])
        .expect("encodes")
        .remove(0);
    let content = row.iter().position(|&id| id == EOS).expect("ends with eos");
    assert!((1..=3).contains(&content), "{row:?}");
    assert!(row[content..].iter().all(|&id| id == EOS), "{row:?}");
    // Lower-casing and punctuation removal are the file's own normaliser's work.
    let same = tokenizer(16)
        .encode_batch(&["a cat"])
        .expect("encodes")
        .remove(0);
    assert_eq!(row, same);
}
