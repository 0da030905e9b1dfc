//! Held-out evaluation inside a run: every `[[eval.retrieval]]` and `[[eval.zero_shot]]` set,
//! with the current model on the plain (non-autodiff) device.

use burn::module::Module;
use burn::tensor::Device;
use duet_data::{FieldSelector, TextField};
use duet_eval::{
    ClassData, EvalError, PairSource, RetrievalMetrics, ZeroShotMetrics, evaluate_retrieval,
    evaluate_zero_shot, load_templates, read_class_names,
};
use duet_model::{ClipConfig, ClipModel};

use crate::config::ZeroShotSet;
use crate::{TrainConfig, TrainError};

/// What a set measured.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalMetrics {
    /// Image–text retrieval.
    Retrieval(RetrievalMetrics),
    /// Zero-shot classification.
    ZeroShot(ZeroShotMetrics),
}

/// One set's result.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// The set's name.
    pub set: String,
    /// Its metrics.
    pub metrics: EvalMetrics,
    /// Samples of the set the loader skipped (retrieval sets).
    pub skipped: u64,
}

impl EvalResult {
    /// `(metric, value)` pairs as logged: `i2t_r1` …, or `top1`, `top5`, `mean_per_class`.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        match &self.metrics {
            EvalMetrics::Retrieval(m) => m.named().to_vec(),
            EvalMetrics::ZeroShot(m) => vec![
                ("top1", m.top1),
                ("top5", m.top5),
                ("mean_per_class", m.mean_per_class),
            ],
        }
    }
}

/// The class names of a zero-shot set: its `classes` file, else its folder's sub-folders.
pub fn load_classes(set: &ZeroShotSet) -> Result<Vec<String>, EvalError> {
    if let Some(path) = &set.classes {
        return read_class_names(path);
    }
    ClassData::detect(&set.dataset)
        .folder_classes()?
        .ok_or_else(|| EvalError::Input {
            origin: set.dataset.clone(),
            message: "has no class names of its own; set `classes` to a file".into(),
        })
}

/// Evaluates `model` (on an autodiff `device`) on every configured set.
pub fn evaluate(
    model: &ClipModel,
    clip: &ClipConfig,
    config: &TrainConfig,
    device: &Device,
) -> Result<Vec<EvalResult>, TrainError> {
    let eval = &config.eval;
    if eval.retrieval.is_empty() && eval.zero_shot.is_empty() {
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
    let mut results = Vec::new();
    for set in &eval.retrieval {
        let failed = |source| TrainError::Eval {
            set: set.name.clone(),
            source,
        };
        let source = PairSource {
            spec: set.data.clone(),
            fields: fields.clone(),
            batch_size: eval.batch_size,
        };
        let (metrics, skipped) =
            evaluate_retrieval(&inference, clip, &source, &plain).map_err(failed)?;
        results.push(EvalResult {
            set: set.name.clone(),
            metrics: EvalMetrics::Retrieval(metrics),
            skipped,
        });
    }
    for set in &eval.zero_shot {
        let failed = |source| TrainError::Eval {
            set: set.name.clone(),
            source,
        };
        let classes = load_classes(set).map_err(failed)?;
        let templates = load_templates(&set.templates).map_err(failed)?;
        let metrics = evaluate_zero_shot(
            &inference,
            clip,
            &ClassData::detect(&set.dataset),
            &classes,
            &templates,
            eval.batch_size,
            &plain,
        )
        .map_err(failed)?;
        results.push(EvalResult {
            set: set.name.clone(),
            metrics: EvalMetrics::ZeroShot(metrics),
            skipped: 0,
        });
    }
    Ok(results)
}

/// The `metrics.jsonl` row of `results` at `step`: `{"step": 300, "val/i2t_r1": 12.1, …}`.
pub fn metrics_row(step: u64, results: &[EvalResult]) -> serde_json::Value {
    let mut row = serde_json::Map::new();
    row.insert("step".into(), step.into());
    for result in results {
        for (name, value) in result.named() {
            row.insert(format!("{}/{name}", result.set), value.into());
        }
    }
    serde_json::Value::Object(row)
}
