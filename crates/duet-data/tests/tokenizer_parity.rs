//! The bundled CLIP tokenizer reproduces HF `CLIPTokenizer` ids on real captions.
//!
//! Fixture: `tests/fixtures/tokenizer_cases.jsonl`, made by `scripts/make_tokenizer_fixture.py`
//! (HF convention: truncation to 77, padding with `<|endoftext|>`).

use duet_data::{PadToken, TextTokenizer, TokenizerConfig};
use serde::Deserialize;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tokenizer_cases.jsonl"
);

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn load_cases() -> Vec<Case> {
    let jsonl = std::fs::read_to_string(FIXTURE).expect("fixture is committed");
    jsonl
        .lines()
        .enumerate()
        .map(|(line, json)| {
            serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("{FIXTURE}:{}: bad case: {e}", line + 1))
        })
        .collect()
}

#[test]
fn ids_equal_hf_clip_tokenizer_on_real_captions() {
    let cases = load_cases();
    let config = TokenizerConfig {
        context_length: 77,
        pad: PadToken::EndOfText,
    };
    let tokenizer = TextTokenizer::bundled(config).expect("bundled tokenizer loads");
    let texts: Vec<&str> = cases.iter().map(|case| case.text.as_str()).collect();
    let rows = tokenizer.encode_batch(&texts).expect("every case encodes");

    // Token ids are integers: exact equality is the right check.
    let mismatches: Vec<String> = cases
        .iter()
        .zip(&rows)
        .filter(|(case, row)| case.ids != **row)
        .map(|(case, row)| format!("{:?}\n  hf:   {:?}\n  duet: {row:?}", case.text, case.ids))
        .collect();
    let non_ascii = texts.iter().filter(|t| !t.is_ascii()).count();
    let truncated = rows
        .iter()
        .filter(|row| Some(row[75]) != tokenizer.eot_id())
        .count();
    println!(
        "tokenizer parity: {} cases checked ({non_ascii} non-ASCII, {truncated} filling all 77 \
         positions), {} mismatches",
        cases.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from HF:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    assert!(cases.len() >= 1_000, "only {} cases", cases.len());
    assert!(texts.contains(&""), "the empty string is covered");
    assert!(
        truncated > 0 && non_ascii > 0,
        "long and non-ASCII texts are covered"
    );
}
