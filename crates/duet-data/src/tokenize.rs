//! Text tokenization into fixed-length id rows, two ways.
//!
//! - CLIP's byte-level BPE (bundled, or any CLIP `tokenizer.json`): every row is
//!   `[SOT] + first (context_length - 2) content tokens + [EOT]`, then padding up to
//!   `context_length`. This equals OpenCLIP's `tokenize` (pad 0) and HF's
//!   `CLIPTokenizer(..., truncation=True, max_length=77, padding="max_length")` (pad EOT); the
//!   committed fixture `tests/fixtures/tokenizer_cases.jsonl` checks the latter on real captions.
//! - A model's own `tokenizer.json` (SigLIP, SigLIP 2: [`OwnRows`]): the file's normaliser,
//!   model and post-processor (which adds the special tokens), truncated to `context_length`
//!   special tokens included and padded to it with the model's pad id, as transformers'
//!   `truncation=True, padding="max_length"`; `tests/siglip_tokenizer.rs` checks it against
//!   `SiglipTokenizer` on real captions.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Replace, Sequence, Strip};
use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use crate::DataError;

/// The CLIP BPE vocabulary as a HF `tokenizer.json` (see `assets/clip-bpe/README.md`).
const BUNDLED_CLIP_BPE: &[u8] = include_bytes!("../assets/clip-bpe/tokenizer.json");
const BUNDLED_ORIGIN: &str = "bundled CLIP BPE";
const START_OF_TEXT: &str = "<|startoftext|>";
const END_OF_TEXT: &str = "<|endoftext|>";

/// Which id fills the row after the end-of-text token.
///
/// Models only ever read up to the first EOT, so this matters for bit-exact parity with a
/// reference, not for accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadToken {
    /// Id 0, as OpenCLIP's `tokenize` does.
    #[default]
    Zero,
    /// The `<|endoftext|>` id (49407 in CLIP's vocabulary), as HF's `CLIPTokenizer` does.
    EndOfText,
}

/// Shape of the id rows a [`TextTokenizer`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Length of every row, SOT and EOT included (77 for all CLIP models).
    pub context_length: usize,
    /// What fills the row after EOT.
    pub pad: PadToken,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            context_length: 77,
            pad: PadToken::Zero,
        }
    }
}

/// How rows from a model's own `tokenizer.json` are shaped (the model config's
/// `text.tokenizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnRows {
    /// Length of every row, special tokens included (64 for SigLIP).
    pub context_length: usize,
    /// The id that fills a row after the caption.
    pub pad_id: u32,
    /// Lower-case captions before the file's own normaliser.
    pub lowercase: bool,
    /// Pad on the left instead of the right.
    pub pad_left: bool,
    /// OpenCLIP's `clean="canonicalize"` first: `_` to space, ASCII punctuation removed,
    /// lower-cased (Python's final-sigma rule kept), whitespace runs to one space, trimmed.
    pub canonicalize: bool,
}

/// OpenCLIP's `canonicalize_text` (big_vision's) as tokenizers normalisers.
fn canonicalize_steps() -> tokenizers::Result<Vec<NormalizerWrapper>> {
    // Python's `str.translate` removes exactly `string.punctuation`, the 32 ASCII marks.
    let punctuation: String = (0x21u8..0x7f)
        .map(char::from)
        .filter(char::is_ascii_punctuation)
        .map(|c| format!("\\{c}"))
        .collect();
    let replace = |pattern: &str, content: &str| -> tokenizers::Result<NormalizerWrapper> {
        Ok(Replace::new(ReplacePattern::Regex(pattern.to_owned()), content)?.into())
    };
    let cased = r"[\p{Lu}\p{Ll}\p{Lt}]";
    Ok(vec![
        Replace::new("_", " ")?.into(),
        replace(&format!("[{punctuation}]"), "")?,
        // `str.lower()` writes a final capital sigma as "ς"; tokenizers' Lowercase as "σ".
        replace(&format!("(?<={cased})Σ(?!{cased})"), "ς")?,
        NormalizerWrapper::Lowercase(Lowercase),
        // `" ".join(text.split())`.
        replace(r"\s+", " ")?,
        NormalizerWrapper::StripNormalizer(Strip::new(true, true)),
    ])
}

/// Which special tokens a row gets, and from where.
#[derive(Debug, Clone, Copy)]
enum Specials {
    /// CLIP's: `[SOT] + content + [EOT]`, added here.
    Clip { sot_id: u32, eot_id: u32 },
    /// The file's post-processor's; pad on the left or not.
    Own { pad_left: bool },
}

/// A tokenizer producing rows of exactly `context_length` ids.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
    pad_id: u32,
    specials: Specials,
}

impl TextTokenizer {
    /// The CLIP BPE vocabulary embedded in this crate; needs no file at run time.
    pub fn bundled(config: TokenizerConfig) -> Result<Self, DataError> {
        Self::from_bytes(BUNDLED_CLIP_BPE, BUNDLED_ORIGIN, config)
    }

    /// The bundled vocabulary producing `context_length` ids per row, zero-padded as OpenCLIP's
    /// `tokenize`: what duet trains and evaluates a model of that text context with.
    pub fn for_context(context_length: usize) -> Result<Self, DataError> {
        Self::bundled(TokenizerConfig {
            context_length,
            ..TokenizerConfig::default()
        })
    }

    /// Any HF `tokenizer.json` whose vocabulary has `<|startoftext|>` and `<|endoftext|>`.
    pub fn from_file(path: impl AsRef<Path>, config: TokenizerConfig) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| DataError::TokenizerRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string(), config)
    }

    fn from_bytes(bytes: &[u8], origin: &str, config: TokenizerConfig) -> Result<Self, DataError> {
        if config.context_length < 2 {
            return Err(DataError::InvalidConfig {
                field: "context_length",
                value: config.context_length.to_string(),
                reason: "must hold at least the start and end tokens (>= 2)",
            });
        }
        let parse_error = |source| DataError::TokenizerParse {
            origin: origin.to_owned(),
            source,
        };
        let mut inner = Tokenizer::from_bytes(bytes).map_err(parse_error)?;
        // Truncation or padding stored in the file would cut or pad before we add SOT/EOT.
        inner.with_truncation(None).map_err(parse_error)?;
        inner.with_padding(None);
        let lookup = |token: &'static str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| DataError::MissingSpecialToken {
                    origin: origin.to_owned(),
                    token,
                })
        };
        let sot_id = lookup(START_OF_TEXT)?;
        let eot_id = lookup(END_OF_TEXT)?;
        let pad_id = match config.pad {
            PadToken::Zero => 0,
            PadToken::EndOfText => eot_id,
        };
        Ok(Self {
            inner,
            context_length: config.context_length,
            pad_id,
            specials: Specials::Clip { sot_id, eot_id },
        })
    }

    /// A model's own `tokenizer.json` (`origin` names it in errors), rows shaped by `rows`.
    pub fn from_model_json(bytes: &[u8], origin: &str, rows: OwnRows) -> Result<Self, DataError> {
        let parse_error = |source| DataError::TokenizerParse {
            origin: origin.to_owned(),
            source,
        };
        let mut inner = Tokenizer::from_bytes(bytes).map_err(parse_error)?;
        let added = inner
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(false));
        if rows.context_length <= added {
            return Err(DataError::InvalidConfig {
                field: "context_length",
                value: rows.context_length.to_string(),
                reason: "must hold the tokenizer's special tokens and at least one more",
            });
        }
        if u64::from(rows.pad_id) >= inner.get_vocab_size(true) as u64 {
            return Err(DataError::InvalidConfig {
                field: "pad_id",
                value: rows.pad_id.to_string(),
                reason: "is not an id of the tokenizer's vocabulary",
            });
        }
        // The file's own truncation and padding settings are replaced by the model's.
        inner
            .with_truncation(Some(TruncationParams {
                max_length: rows.context_length,
                ..TruncationParams::default()
            }))
            .map_err(parse_error)?;
        inner.with_padding(None);
        let mut first = Vec::new();
        if rows.canonicalize {
            first.extend(canonicalize_steps().map_err(parse_error)?);
        } else if rows.lowercase {
            first.push(NormalizerWrapper::Lowercase(Lowercase));
        }
        if !first.is_empty() {
            if let Some(own) = inner.get_normalizer() {
                first.push(own.clone());
            }
            inner.with_normalizer(Some(NormalizerWrapper::Sequence(Sequence::new(first))));
        }
        Ok(Self {
            inner,
            context_length: rows.context_length,
            pad_id: rows.pad_id,
            specials: Specials::Own {
                pad_left: rows.pad_left,
            },
        })
    }

    /// How many ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Length of every row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Id of `<|startoftext|>` (49406 in CLIP's vocabulary); `None` for a model's own tokenizer.
    pub fn sot_id(&self) -> Option<u32> {
        match self.specials {
            Specials::Clip { sot_id, .. } => Some(sot_id),
            Specials::Own { .. } => None,
        }
    }

    /// Id of `<|endoftext|>` (49407 in CLIP's vocabulary), where CLIP's text tower pools;
    /// `None` for a model's own tokenizer.
    pub fn eot_id(&self) -> Option<u32> {
        match self.specials {
            Specials::Clip { eot_id, .. } => Some(eot_id),
            Specials::Own { .. } => None,
        }
    }

    /// Id that fills rows after EOT.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokenizes each text into a row of exactly [`Self::context_length`] ids.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>, DataError> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| self.encode_row(index, text.as_ref()))
            .collect()
    }

    fn encode_row(&self, index: usize, text: &str) -> Result<Vec<u32>, DataError> {
        // CLIP's special tokens are added here, not by the file's post-processor: CLIP
        // tokenizer.json files differ (RobertaProcessing, TemplateProcessing or none), and
        // truncating the content first is what keeps EOT in the last position of long texts.
        // A model's own file adds its own, after the truncation set in `from_model_json`.
        let with_specials = matches!(self.specials, Specials::Own { .. });
        let encoding = self
            .inner
            .encode_fast(text, with_specials)
            .map_err(|source| DataError::Tokenize {
                index,
                text: text.chars().take(80).collect(),
                source,
            })?;
        let content = encoding.get_ids();
        let mut row = Vec::with_capacity(self.context_length);
        match self.specials {
            Specials::Clip { sot_id, eot_id } => {
                let kept = content.len().min(self.context_length - 2);
                row.push(sot_id);
                row.extend_from_slice(&content[..kept]);
                row.push(eot_id);
                row.resize(self.context_length, self.pad_id);
            }
            Specials::Own { pad_left } => {
                let padding = self.context_length.saturating_sub(content.len());
                if pad_left {
                    row.resize(padding, self.pad_id);
                }
                row.extend_from_slice(&content[..content.len().min(self.context_length)]);
                row.resize(self.context_length, self.pad_id);
            }
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOT: u32 = 49406;
    const EOT: u32 = 49407;

    fn tokenizer(pad: PadToken) -> TextTokenizer {
        let config = TokenizerConfig {
            context_length: 77,
            pad,
        };
        TextTokenizer::bundled(config).expect("bundled tokenizer loads")
    }

    fn single(tok: &TextTokenizer, text: &str) -> Vec<u32> {
        let mut rows = tok.encode_batch(&[text]).expect("encodes");
        rows.pop().expect("one row")
    }

    #[test]
    fn known_ids_with_zero_padding() {
        let tok = tokenizer(PadToken::Zero);
        assert_eq!(
            (tok.sot_id(), tok.eot_id(), tok.pad_id()),
            (Some(SOT), Some(EOT), 0)
        );
        let row = single(&tok, "a photo of a cat");
        assert_eq!(row[..7], [SOT, 320, 1125, 539, 320, 2368, EOT]);
        assert_eq!(row.len(), 77);
        assert!(row[7..].iter().all(|&id| id == 0));
    }

    #[test]
    fn end_of_text_padding_is_hf_convention() {
        let tok = tokenizer(PadToken::EndOfText);
        assert_eq!(tok.pad_id(), EOT);
        let row = single(&tok, "a photo of a cat");
        assert_eq!(row[..7], [SOT, 320, 1125, 539, 320, 2368, EOT]);
        assert!(row[7..].iter().all(|&id| id == EOT));
    }

    #[test]
    fn truncation_keeps_end_of_text_last() {
        // "word " x 100 is 100 tokens of "word</w>" (id 2653): 75 fit between SOT and EOT.
        let tok = tokenizer(PadToken::Zero);
        let row = single(&tok, &"word ".repeat(100));
        assert_eq!(row.len(), 77);
        assert_eq!(row[0], SOT);
        assert!(row[1..76].iter().all(|&id| id == 2653));
        assert_eq!(row[76], EOT);
    }

    #[test]
    fn empty_and_blank_text_are_sot_eot_then_padding() {
        let tok = tokenizer(PadToken::Zero);
        for text in ["", "   \t\n"] {
            let row = single(&tok, text);
            assert_eq!(row[..2], [SOT, EOT], "{text:?}");
            assert!(row[2..].iter().all(|&id| id == 0), "{text:?}");
        }
    }

    #[test]
    fn short_context_length_is_respected() {
        let config = TokenizerConfig {
            context_length: 4,
            pad: PadToken::Zero,
        };
        let tok = TextTokenizer::bundled(config).expect("loads");
        let rows = tok
            .encode_batch(&["a photo of a cat", "cat"])
            .expect("encodes");
        assert_eq!(
            rows,
            vec![vec![SOT, 320, 1125, EOT], vec![SOT, 2368, EOT, 0]]
        );
    }

    #[test]
    fn context_length_below_two_is_rejected() {
        let config = TokenizerConfig {
            context_length: 1,
            pad: PadToken::Zero,
        };
        let err = TextTokenizer::bundled(config).expect_err("must fail");
        assert!(err.to_string().contains("context_length"), "{err}");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let path = std::env::temp_dir().join("duet-no-such-dir/tokenizer.json");
        let err = TextTokenizer::from_file(&path, TokenizerConfig::default()).expect_err("fails");
        assert!(matches!(err, DataError::TokenizerRead { .. }), "{err:?}");
        assert!(err.to_string().contains("duet-no-such-dir"), "{err}");
    }

    #[test]
    fn invalid_file_error_names_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("broken-tokenizer.json");
        std::fs::write(&path, b"{ not json").expect("write");
        let err = TextTokenizer::from_file(&path, TokenizerConfig::default()).expect_err("fails");
        assert!(matches!(err, DataError::TokenizerParse { .. }), "{err:?}");
        assert!(err.to_string().contains("broken-tokenizer.json"), "{err}");
    }

    #[test]
    fn file_and_bundled_tokenizers_agree() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/clip-bpe/tokenizer.json"
        );
        let from_file = TextTokenizer::from_file(path, TokenizerConfig::default()).expect("loads");
        let bundled = tokenizer(PadToken::Zero);
        let texts = ["Chelsea the cat.", "Ångström 日本語 😀"];
        assert_eq!(
            from_file.encode_batch(&texts).expect("encodes"),
            bundled.encode_batch(&texts).expect("encodes")
        );
    }

    /// A word-level tokenizer.json: "a" 0, "A" 1, "[UNK]" 2, "</s>" 3 (appended by its
    /// post-processor), no normaliser, split on whitespace.
    const WORDS: &str = r#"{
        "version": "1.0",
        "added_tokens": [{"id": 3, "content": "</s>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [3], "tokens": ["</s>"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"a": 0, "A": 1, "[UNK]": 2, "</s>": 3},
            "unk_token": "[UNK]"}
    }"#;

    fn own(context_length: usize, lowercase: bool, pad_left: bool) -> TextTokenizer {
        let rows = OwnRows {
            context_length,
            pad_id: 2,
            lowercase,
            pad_left,
            canonicalize: false,
        };
        TextTokenizer::from_model_json(WORDS.as_bytes(), "words", rows).expect("loads")
    }

    #[test]
    fn own_rows_add_the_files_specials_truncate_and_pad() {
        // "A a A": ids 1 0 1, then </s> 3; padded with 2 to 6, or cut to 3 = 2 words + </s>.
        let text = ["A a A"];
        assert_eq!(
            own(6, false, false).encode_batch(&text).expect("encodes"),
            [[1, 0, 1, 3, 2, 2]]
        );
        assert_eq!(
            own(6, false, true).encode_batch(&text).expect("encodes"),
            [[2, 2, 1, 0, 1, 3]]
        );
        assert_eq!(
            own(3, false, false).encode_batch(&text).expect("encodes"),
            [[1, 0, 3]]
        );
        assert_eq!(
            (own(3, false, false).sot_id(), own(3, false, false).eot_id()),
            (None, None)
        );
    }

    #[test]
    fn own_rows_lowercase_on_request() {
        // Lower-cased first, "A" is "a": id 0.
        assert_eq!(
            own(4, true, false).encode_batch(&["A a"]).expect("encodes"),
            [[0, 0, 3, 2]]
        );
    }

    #[test]
    fn own_rows_refuse_a_length_without_room_or_a_foreign_pad_id() {
        let rows = |context_length, pad_id| OwnRows {
            context_length,
            pad_id,
            lowercase: false,
            pad_left: false,
            canonicalize: false,
        };
        let err = TextTokenizer::from_model_json(WORDS.as_bytes(), "words", rows(1, 2))
            .expect_err("one position holds only </s>");
        assert!(err.to_string().contains("context_length"), "{err}");
        let err = TextTokenizer::from_model_json(WORDS.as_bytes(), "words", rows(4, 4))
            .expect_err("id 4 is not in the vocabulary");
        assert!(err.to_string().contains("pad_id"), "{err}");
    }
}
