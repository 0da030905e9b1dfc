//! Held-out evaluation inside a run: every `[[eval.retrieval]]` set embedded with the current
//! model (no autodiff) and scored with [`duet_eval::retrieval_metrics`].

use burn::module::Module;
use burn::tensor::Device;
use duet_data::{FieldSelector, TextField};
use duet_eval::{PairSource, RetrievalMetrics, embed_pairs, retrieval_metrics};
use duet_model::{ClipConfig, ClipModel};

use crate::{TrainConfig, TrainError};

/// Queries scored at once; bounds the score block to `CHUNK x pairs`.
const CHUNK: usize = 1024;

/// One set's result.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// The set's name.
    pub set: String,
    /// Its retrieval metrics.
    pub metrics: RetrievalMetrics,
    /// Samples of the set the loader skipped.
    pub skipped: u64,
}

/// Evaluates `model` (on an autodiff `device`) on every configured set.
pub fn evaluate(
    model: &ClipModel,
    clip: &ClipConfig,
    config: &TrainConfig,
    device: &Device,
) -> Result<Vec<EvalResult>, TrainError> {
    if config.eval.retrieval.is_empty() {
        return Ok(Vec::new());
    }
    let inference = model.valid();
    let plain = device.clone().without_autodiff();
    let fields = FieldSelector {
        image: config.data.image_keys.clone(),
        text: TextField::Field {
            name: config.data.text_key.clone(),
        },
    };
    config
        .eval
        .retrieval
        .iter()
        .map(|set| {
            let failed = |source| TrainError::Eval {
                set: set.name.clone(),
                source,
            };
            let source = PairSource {
                spec: set.data.clone(),
                fields: fields.clone(),
                batch_size: config.eval.batch_size,
            };
            let pairs = embed_pairs(&inference, clip, &source, &plain).map_err(failed)?;
            let metrics = retrieval_metrics(pairs.images, pairs.texts, CHUNK).map_err(failed)?;
            Ok(EvalResult {
                set: set.name.clone(),
                metrics,
                skipped: pairs.skipped,
            })
        })
        .collect()
}

/// The `metrics.jsonl` row of `results` at `step`: `{"step": 300, "val/i2t_r1": 12.1, …}`.
pub fn metrics_row(step: u64, results: &[EvalResult]) -> serde_json::Value {
    let mut row = serde_json::Map::new();
    row.insert("step".into(), step.into());
    for result in results {
        for (name, value) in result.metrics.named() {
            row.insert(format!("{}/{name}", result.set), value.into());
        }
    }
    serde_json::Value::Object(row)
}
