//! Evaluation of CLIP models on held-out data: image–text retrieval recall and ranks over a shard
//! spec of pairs ([`retrieval_metrics`], [`embed_pairs`]).

mod embed;
mod error;
mod retrieval;

pub use embed::{PairEmbeddings, PairSource, embed_pairs};
pub use error::EvalError;
pub use retrieval::{RetrievalMetrics, ranks, retrieval_metrics};
