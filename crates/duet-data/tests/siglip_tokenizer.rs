//! A SigLIP model's own `tokenizer.json` reproduces transformers' `SiglipTokenizer` ids on real
//! captions, padding and truncation included (issue 16, acceptance 2).
//!
//! Fixture: `tests/fixtures/siglip-tiny/` (repository root), made by
//! `scripts/make_siglip_tokenizer_fixture.py`: a SentencePiece unigram vocabulary of 1,000
//! pieces trained on the bundled captions, its `tokenizer.json` (from
//! `scripts/siglip_tokenizer.py`), and `tokenizer_cases.jsonl`: 2,791 strings with
//! `SiglipTokenizer`'s ids at `truncation=True, padding="max_length"`, max_length 64 and 16.

use duet_data::{OwnRows, TextTokenizer};
use serde::Deserialize;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/siglip-tiny"
);
/// `</s>`: SigLIP's end of text and its padding.
const EOS: u32 = 1;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids64: Vec<u32>,
    ids16: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let path = format!("{DIR}/tokenizer_cases.jsonl");
    let jsonl = std::fs::read_to_string(&path).expect("fixture is committed");
    jsonl
        .lines()
        .enumerate()
        .map(|(line, json)| {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}:{}: {e}", line + 1))
        })
        .collect()
}

fn tokenizer(context_length: usize) -> TextTokenizer {
    let path = format!("{DIR}/hf/tokenizer.json");
    let bytes = std::fs::read(&path).expect("fixture is committed");
    let rows = OwnRows {
        context_length,
        pad_id: EOS,
        lowercase: false,
        pad_left: false,
    };
    TextTokenizer::from_model_json(&bytes, &path, rows).expect("tokenizer.json loads")
}

#[test]
fn ids_equal_siglip_tokenizer_at_64_and_16() {
    let cases = cases();
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
        // A row whose second-to-last id is not the pad/eos id was cut at `length`.
        let cut = rows.iter().filter(|row| row[length - 2] != EOS).count();
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
