//! A model's own tokenizer files (SigLIP, SigLIP 2): read from a model directory, settled into
//! a [`FileTokenizer`], and written back into every directory duet saves.
//!
//! From transformers' `tokenizer_config.json` duet reads `pad_token` (a string or an added
//! token's `{"content": …}`; its id looked up in `tokenizer.json`'s added tokens or vocabulary,
//! else the model config's `pad_token_id`), `padding_side` (left by default for
//! `tokenizer_class = "Siglip2Tokenizer"`, as its class says, right otherwise), and
//! `do_lower_case` (implied by `Siglip2Tokenizer`, which lower-cases in transformers whatever the
//! file says); lower-casing is applied by duet only where the `tokenizer.json` normaliser does
//! not lower-case already (twice is not always once: Python's final-sigma rule).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::ModelError;
use crate::config::{FileTokenizer, TOKENIZER_FILES, TokenizerFiles, TokenizerSpec};

/// Reads the [`TOKENIZER_FILES`] `dir` holds (none is an error only when the model is used).
pub fn read_tokenizer_files(dir: &Path) -> Result<TokenizerFiles, ModelError> {
    let mut files = BTreeMap::new();
    for name in TOKENIZER_FILES {
        let path = dir.join(name);
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
            files.insert(name.to_owned(), bytes);
        }
    }
    Ok(TokenizerFiles(Arc::new(files)))
}

/// Writes the tokenizer files of `spec` (if it has any) into `dir`.
pub fn write_tokenizer_files(spec: &TokenizerSpec, dir: &Path) -> Result<(), ModelError> {
    if let TokenizerSpec::File(file) = spec {
        for (name, bytes) in file.files.0.iter() {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| ModelError::io(&path, e))?;
        }
    }
    Ok(())
}

fn parse(bytes: &[u8], path: &Path) -> Result<Value, ModelError> {
    serde_json::from_slice(bytes).map_err(|e| ModelError::ConfigParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A token's text in `tokenizer_config.json`: a string or an added token `{"content": …}`.
fn token_text(value: &Value) -> Option<&str> {
    value
        .as_str()
        .or_else(|| value.get("content").and_then(Value::as_str))
}

/// The id of `token` in a `tokenizer.json`: its added tokens, then its model's vocabulary (a
/// map for BPE/WordPiece, a list of `[piece, score]` for Unigram).
fn token_id(tokenizer: &Value, token: &str) -> Option<u32> {
    let added = tokenizer.get("added_tokens").and_then(Value::as_array);
    let from_added = added
        .into_iter()
        .flatten()
        .find_map(|t| (t.get("content")?.as_str()? == token).then(|| t.get("id")?.as_u64())?);
    let vocab = tokenizer.get("model").and_then(|m| m.get("vocab"));
    let from_vocab = || match vocab? {
        Value::Object(map) => map.get(token)?.as_u64(),
        Value::Array(pieces) => pieces
            .iter()
            .position(|p| p.get(0).and_then(Value::as_str) == Some(token))
            .map(|i| i as u64),
        _ => None,
    };
    from_added
        .or_else(from_vocab)
        .and_then(|id| u32::try_from(id).ok())
}

/// Whether a normaliser (or any step of a sequence of them) lower-cases.
fn lowercases(normalizer: &Value) -> bool {
    match normalizer.get("type").and_then(Value::as_str) {
        Some("Lowercase") => true,
        Some("BertNormalizer") => normalizer.get("lowercase") == Some(&Value::Bool(true)),
        Some("Sequence") => normalizer
            .get("normalizers")
            .and_then(Value::as_array)
            .is_some_and(|steps| steps.iter().any(lowercases)),
        _ => false,
    }
}

/// Reads `dir`'s tokenizer files into `tokenizer` and settles its pad id, padding side and
/// lower-casing from `tokenizer_config.json` (see the module doc).
pub fn read_hf_tokenizer(dir: &Path, tokenizer: &mut FileTokenizer) -> Result<(), ModelError> {
    tokenizer.files = read_tokenizer_files(dir)?;
    let json_path = dir.join(TOKENIZER_FILES[0]);
    let config_path = dir.join(TOKENIZER_FILES[1]);
    let parsed = match tokenizer.files.tokenizer_json() {
        Some(bytes) => Some(parse(bytes, &json_path)?),
        None => None,
    };
    let config = match tokenizer.files.0.get(TOKENIZER_FILES[1]) {
        Some(bytes) => parse(bytes, &config_path)?,
        None => Value::Null,
    };
    if let Some(pad) = config.get("pad_token").and_then(token_text) {
        match parsed.as_ref().and_then(|t| token_id(t, pad)) {
            Some(id) => tokenizer.pad_id = id,
            None if parsed.is_some() => {
                return Err(ModelError::ConfigParse {
                    path: config_path,
                    message: format!(
                        "pad_token {pad:?} is not a token of {}",
                        json_path.display()
                    ),
                });
            }
            None => {}
        }
    }
    let class = config.get("tokenizer_class").and_then(Value::as_str);
    tokenizer.pad_left = match config.get("padding_side").and_then(Value::as_str) {
        // transformers' Siglip2Tokenizer pads on the left unless its config says otherwise.
        None => class == Some("Siglip2Tokenizer"),
        Some("right") => false,
        Some("left") => true,
        Some(other) => {
            return Err(ModelError::ConfigParse {
                path: config_path,
                message: format!("padding_side = {other:?}: expected \"right\" or \"left\""),
            });
        }
    };
    let asks = config.get("do_lower_case") == Some(&Value::Bool(true))
        || class == Some("Siglip2Tokenizer");
    let already = parsed
        .as_ref()
        .and_then(|t| t.get("normalizer"))
        .is_some_and(lowercases);
    tokenizer.lowercase = asks && !already;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_added_tokens_then_either_vocabulary_shape() {
        let unigram = serde_json::json!({
            "added_tokens": [{"id": 7, "content": "<pad>"}],
            "model": {"vocab": [["<unk>", 0.0], ["</s>", 0.0], ["▁a", -2.5]]}
        });
        assert_eq!(token_id(&unigram, "<pad>"), Some(7));
        assert_eq!(token_id(&unigram, "</s>"), Some(1));
        assert_eq!(token_id(&unigram, "▁b"), None);
        let bpe = serde_json::json!({"model": {"vocab": {"<pad>": 0, "<eos>": 1}}});
        assert_eq!(token_id(&bpe, "<eos>"), Some(1));
    }

    #[test]
    fn lowercasing_found_inside_sequences() {
        let seq = serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "Replace"}, {"type": "Lowercase"}]});
        assert!(lowercases(&seq));
        assert!(!lowercases(&serde_json::json!({"type": "Replace"})));
        assert!(lowercases(
            &serde_json::json!({"type": "BertNormalizer", "lowercase": true})
        ));
    }
}
