//! Evaluation of CLIP models on held-out data: image–text retrieval recall and ranks over a shard
//! spec of pairs ([`retrieval_metrics`], [`embed_pairs`]) and zero-shot classification
//! ([`classifier`], [`zero_shot_metrics`]); [`evaluate_retrieval`] and [`evaluate_zero_shot`] run
//! either end to end.

mod classes;
mod embed;
mod error;
mod pipeline;
mod retrieval;
mod text;
mod zero_shot;

pub use classes::{ClassData, LabelledEmbeddings, embed_labelled};
pub use embed::{PairEmbeddings, PairSource, embed_pairs, eval_loader};
pub use error::EvalError;
pub use pipeline::{SCORE_CHUNK, evaluate_retrieval, evaluate_zero_shot};
pub use retrieval::{RetrievalMetrics, ranks, retrieval_metrics};
pub use text::{eval_transform_config, own_rows, text_tokenizer};
pub use zero_shot::{
    BUILTIN_TEMPLATES, ClassAccuracy, ZeroShotMetrics, builtin_templates, classifier,
    load_templates, parse_templates, read_class_names, zero_shot_metrics,
};
