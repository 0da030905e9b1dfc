//! CLIP text tokenization: byte-level BPE into fixed-length id rows.
//!
//! Every row is `[SOT] + first (context_length - 2) content tokens + [EOT]`, then padding up to
//! `context_length`. This equals OpenCLIP's `tokenize` (pad 0) and HF's
//! `CLIPTokenizer(..., truncation=True, max_length=77, padding="max_length")` (pad EOT); the
//! committed fixture `tests/fixtures/tokenizer_cases.jsonl` checks the latter on real captions.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

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

/// Shape of the id rows a [`ClipTokenizer`] produces.
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

/// A CLIP tokenizer producing rows of exactly `context_length` ids.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    context_length: usize,
    sot_id: u32,
    eot_id: u32,
    pad_id: u32,
}

impl ClipTokenizer {
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
            sot_id,
            eot_id,
            pad_id,
        })
    }

    /// Length of every row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Id of `<|startoftext|>` (49406 in CLIP's vocabulary).
    pub fn sot_id(&self) -> u32 {
        self.sot_id
    }

    /// Id of `<|endoftext|>` (49407 in CLIP's vocabulary); text towers pool at its first position.
    pub fn eot_id(&self) -> u32 {
        self.eot_id
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
        // Special tokens are added here, not by the file's post-processor: CLIP tokenizer.json
        // files differ (RobertaProcessing, TemplateProcessing or none), and truncating the
        // content first is what keeps EOT in the last position of long texts.
        let encoding =
            self.inner
                .encode_fast(text, false)
                .map_err(|source| DataError::Tokenize {
                    index,
                    text: text.chars().take(80).collect(),
                    source,
                })?;
        let content = encoding.get_ids();
        let kept = content.len().min(self.context_length - 2);
        let mut row = Vec::with_capacity(self.context_length);
        row.push(self.sot_id);
        row.extend_from_slice(&content[..kept]);
        row.push(self.eot_id);
        row.resize(self.context_length, self.pad_id);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOT: u32 = 49406;
    const EOT: u32 = 49407;

    fn tokenizer(pad: PadToken) -> ClipTokenizer {
        let config = TokenizerConfig {
            context_length: 77,
            pad,
        };
        ClipTokenizer::bundled(config).expect("bundled tokenizer loads")
    }

    fn single(tok: &ClipTokenizer, text: &str) -> Vec<u32> {
        let mut rows = tok.encode_batch(&[text]).expect("encodes");
        rows.pop().expect("one row")
    }

    #[test]
    fn known_ids_with_zero_padding() {
        let tok = tokenizer(PadToken::Zero);
        assert_eq!((tok.sot_id(), tok.eot_id(), tok.pad_id()), (SOT, EOT, 0));
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
        let tok = ClipTokenizer::bundled(config).expect("loads");
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
        let err = ClipTokenizer::bundled(config).expect_err("must fail");
        assert!(err.to_string().contains("context_length"), "{err}");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let path = std::env::temp_dir().join("duet-no-such-dir/tokenizer.json");
        let err = ClipTokenizer::from_file(&path, TokenizerConfig::default()).expect_err("fails");
        assert!(matches!(err, DataError::TokenizerRead { .. }), "{err:?}");
        assert!(err.to_string().contains("duet-no-such-dir"), "{err}");
    }

    #[test]
    fn invalid_file_error_names_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("broken-tokenizer.json");
        std::fs::write(&path, b"{ not json").expect("write");
        let err = ClipTokenizer::from_file(&path, TokenizerConfig::default()).expect_err("fails");
        assert!(matches!(err, DataError::TokenizerParse { .. }), "{err:?}");
        assert!(err.to_string().contains("broken-tokenizer.json"), "{err}");
    }

    #[test]
    fn file_and_bundled_tokenizers_agree() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/clip-bpe/tokenizer.json"
        );
        let from_file = ClipTokenizer::from_file(path, TokenizerConfig::default()).expect("loads");
        let bundled = tokenizer(PadToken::Zero);
        let texts = ["Chelsea the cat.", "Ångström 日本語 😀"];
        assert_eq!(
            from_file.encode_batch(&texts).expect("encodes"),
            bundled.encode_batch(&texts).expect("encodes")
        );
    }
}
