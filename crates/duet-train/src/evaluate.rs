//! Held-out evaluation inside a run: every `[[eval.retrieval]]` and `[[eval.zero_shot]]` set,
//! with the current model on the plain (non-autodiff) device.

use burn::module::Module;
use burn::tensor::Device;
use duet_data::FieldSelector;
use duet_eval::{
    ClassData, EvalError, PairSource, RetrievalMetrics, ZeroShotMetrics, evaluate_retrieval,
    evaluate_zero_shot, load_templates, read_class_names,
};
use duet_model::{ClipConfig, ClipModel};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// `[eval]`: held-out sets evaluated every `every_steps` steps and at the end of the run.
///
/// ```toml
/// [eval]
/// every_steps = 100
/// [[eval.retrieval]]
/// name = "val"
/// data = "datasets/sample/val/00000.tar"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps; 0 evaluates only at the end.
    pub every_steps: u64,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Image–text retrieval sets (OpenCLIP `--val-data`).
    pub retrieval: Vec<RetrievalSet>,
    /// Zero-shot classification sets (OpenCLIP `--imagenet-val`, generalised).
    pub zero_shot: Vec<ZeroShotSet>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every_steps: 0,
            batch_size: 256,
            retrieval: Vec::new(),
            zero_shot: Vec::new(),
        }
    }
}

/// One `[[eval.zero_shot]]` set: metrics `<name>/top1`, `<name>/top5`, `<name>/mean_per_class`.
///
/// ```toml
/// [[eval.zero_shot]]
/// name = "fmnist"
/// dataset = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
/// classes = "datasets/fashion-mnist/classes.txt"
/// templates = "cifar"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotSet {
    /// Names the metrics; letters, digits, `_` and `-`.
    pub name: String,
    /// An image folder, an IDX images file, or shards with `.cls` (as `duet eval zero-shot`).
    pub dataset: String,
    /// Class names, one per line in label order; a folder's sub-folders when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<PathBuf>,
    /// A built-in template list (`openai_imagenet`, `simple_imagenet`, `cifar`, `photo`) or a
    /// file with one `{}` template per line.
    #[serde(default = "default_templates")]
    pub templates: String,
}

fn default_templates() -> String {
    "openai_imagenet".into()
}

/// One `[[eval.retrieval]]` set: its metrics are logged as `<name>/i2t_r1`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSet {
    /// Names the metrics; letters, digits, `_` and `-`.
    pub name: String,
    /// Shard spec of image–caption pairs (read with `data.image_keys` / `data.text_key`).
    pub data: String,
}

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

/// Evaluates `model` (on an autodiff `device`) on every set of `eval`, reading retrieval
/// pairs through `fields` (the training data's image and caption fields).
pub fn evaluate(
    model: &ClipModel,
    clip: &ClipConfig,
    eval: &EvalConfig,
    fields: &FieldSelector,
    device: &Device,
) -> Result<Vec<EvalResult>, TrainError> {
    if eval.retrieval.is_empty() && eval.zero_shot.is_empty() {
        return Ok(Vec::new());
    }
    let inference = model.valid();
    let plain = device.clone().without_autodiff();
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
