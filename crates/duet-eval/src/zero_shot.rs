//! Zero-shot classification (CLIP, Radford et al. 2021): each class is the mean of its
//! L2-normalised template embeddings ("a photo of a {}."), normalised again; an image is
//! classified by its cosine similarity to every class (OpenCLIP 3.3
//! `build_zero_shot_classifier` and `zero_shot.py`).
//!
//! Accuracy counts an image top-k correct when its class ranks within the first `k`, ranks as in
//! [`crate::ranks`]: ties go to the lower class index.

use burn::tensor::{Device, Tensor};
use duet_data::{TextTokenizer, tokens_to_tensor};
use duet_model::{ClipModel, l2_normalize};
use serde::Serialize;

use crate::EvalError;
use crate::retrieval::{rank_in_row, score_blocks};

/// Built-in template lists: `openai_imagenet` (OpenAI's 80 ImageNet prompts), `simple_imagenet`
/// (their 7-prompt subset), `cifar` (OpenAI's 18 CIFAR-10 prompts), `photo` ("a photo of a {}.").
/// Written by `scripts/make_templates.py` from open_clip 3.3's copies.
pub const BUILTIN_TEMPLATES: [(&str, &str); 4] = [
    (
        "openai_imagenet",
        include_str!("../templates/openai_imagenet.txt"),
    ),
    (
        "simple_imagenet",
        include_str!("../templates/simple_imagenet.txt"),
    ),
    ("cifar", include_str!("../templates/cifar.txt")),
    ("photo", "a photo of a {}.\n"),
];

/// Templates from text: one per line, each with exactly one `{}` for the class name; blank lines
/// and lines starting with `#` are skipped. `origin` names the source in errors.
pub fn parse_templates(text: &str, origin: &str) -> Result<Vec<String>, EvalError> {
    let mut templates = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.matches("{}").count() != 1 {
            return Err(EvalError::Input {
                origin: format!("{origin}:{}", i + 1),
                message: format!("{line:?} needs exactly one {{}} for the class name"),
            });
        }
        templates.push(line.to_owned());
    }
    if templates.is_empty() {
        return Err(EvalError::Input {
            origin: origin.to_owned(),
            message: "no templates".into(),
        });
    }
    Ok(templates)
}

/// A built-in list by name.
pub fn builtin_templates(name: &str) -> Option<Vec<String>> {
    BUILTIN_TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(n, text)| parse_templates(text, n).ok())
}

/// The templates `arg` names: a built-in list, else a file of templates.
pub fn load_templates(arg: &str) -> Result<Vec<String>, EvalError> {
    if let Some(templates) = builtin_templates(arg) {
        return Ok(templates);
    }
    let names: Vec<&str> = BUILTIN_TEMPLATES.iter().map(|(n, _)| *n).collect();
    let text = std::fs::read_to_string(arg).map_err(|e| EvalError::Input {
        origin: arg.to_owned(),
        message: format!(
            "neither a built-in template list ({}) nor a readable file: {e}",
            names.join(", ")
        ),
    })?;
    parse_templates(&text, arg)
}

/// Class names from a file: one per line, in label order; blank lines skipped.
pub fn read_class_names(path: &std::path::Path) -> Result<Vec<String>, EvalError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Input {
        origin: origin.clone(),
        message: e.to_string(),
    })?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(EvalError::Input {
            origin,
            message: "no class names".into(),
        });
    }
    Ok(names)
}

/// The zero-shot weights `[classes, e]`: per class, the normalised mean of the normalised
/// embeddings of every template filled with its name. `model` is an inference model on `device`.
pub fn classifier(
    model: &ClipModel,
    tokenizer: &TextTokenizer,
    classes: &[String],
    templates: &[String],
    device: &Device,
) -> Result<Tensor<2>, EvalError> {
    if classes.is_empty() || templates.is_empty() {
        return Err(EvalError::Empty {
            what: "zero-shot classes or templates".into(),
        });
    }
    let rows = classes
        .iter()
        .map(|class| {
            let texts: Vec<String> = templates.iter().map(|t| t.replace("{}", class)).collect();
            let ids = tokenizer
                .encode_batch(&texts)
                .map_err(|e| EvalError::Input {
                    origin: format!("class {class:?}"),
                    message: e.to_string(),
                })?;
            let ids = tokens_to_tensor(&ids, tokenizer.context_length(), device).map_err(|e| {
                EvalError::Input {
                    origin: format!("class {class:?}"),
                    message: e.to_string(),
                }
            })?;
            let mean = l2_normalize(model.encode_text(ids)).mean_dim(0);
            Ok(l2_normalize(mean))
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    Ok(Tensor::cat(rows, 0))
}

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// The class name.
    pub class: String,
    /// Images of the class.
    pub count: usize,
    /// Top-1 accuracy on them, in percent (NaN when `count` is 0).
    pub top1: f64,
}

/// Zero-shot metrics (percent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroShotMetrics {
    /// Images classified.
    pub count: usize,
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
    /// Mean of the per-class top-1 accuracies over classes with images.
    pub mean_per_class: f64,
    /// Per class, in class order.
    pub per_class: Vec<ClassAccuracy>,
}

/// Classifies L2-normalised `images` `[n, e]` with `weights` `[classes, e]` against `labels`.
pub fn zero_shot_metrics(
    images: Tensor<2>,
    labels: &[usize],
    weights: Tensor<2>,
    classes: &[String],
    chunk: usize,
) -> Result<ZeroShotMetrics, EvalError> {
    let [n, image_dim] = images.dims();
    let [c, class_dim] = weights.dims();
    if n != labels.len() || image_dim != class_dim || c != classes.len() {
        return Err(EvalError::Shape {
            images: n,
            image_dim,
            texts: c,
            text_dim: class_dim,
        });
    }
    if n == 0 {
        return Err(EvalError::Empty {
            what: "zero-shot".into(),
        });
    }
    if let Some((i, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= c) {
        return Err(EvalError::Input {
            origin: format!("image {i}"),
            message: format!("label {label} but only {c} classes"),
        });
    }
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut per_class = vec![(0usize, 0usize); c];
    score_blocks(&images, weights, chunk, |start, rows| {
        for (row, &label) in rows.zip(&labels[start..]) {
            let rank = rank_in_row(row, label);
            top1 += usize::from(rank == 1);
            top5 += usize::from(rank <= 5);
            per_class[label].0 += 1;
            per_class[label].1 += usize::from(rank == 1);
        }
    })?;
    let percent = |hits: usize, of: usize| {
        if of == 0 {
            f64::NAN
        } else {
            100.0 * hits as f64 / of as f64
        }
    };
    let per_class: Vec<ClassAccuracy> = per_class
        .iter()
        .zip(classes)
        .map(|(&(count, hits), class)| ClassAccuracy {
            class: class.clone(),
            count,
            top1: percent(hits, count),
        })
        .collect();
    let seen: Vec<f64> = per_class
        .iter()
        .filter(|p| p.count > 0)
        .map(|p| p.top1)
        .collect();
    Ok(ZeroShotMetrics {
        count: n,
        top1: percent(top1, n),
        top5: percent(top5, n),
        mean_per_class: seen.iter().sum::<f64>() / seen.len().max(1) as f64,
        per_class,
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn matrix(rows: &[[f32; 2]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Device::flex())
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn accuracy_of_a_hand_example_with_a_tie() {
        // Classes c0 = (1, 0), c1 = (0, 1), c2 = (1, 0) (a duplicate of c0).
        // Images: (1, 0) label 0 -> c0 and c2 tie at 1, c0 wins as the lower index: rank 1.
        //         (1, 0) label 2 -> tie lost to c0: rank 2.
        //         (0.6, 0.8) label 1 -> scores [.6, .8, .6]: rank 1.
        //         (0.8, 0.6) label 1 -> scores [.8, .6, .8]: rank 3.
        // top-1 = 2/4 = 50 %, top-5 = 4/4; per class: c0 1/1, c1 1/2, c2 0/1 -> mean 50 %.
        let weights = matrix(&[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]);
        let images = matrix(&[[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.8, 0.6]]);
        for chunk in [1, 3, 10] {
            let m = zero_shot_metrics(
                images.clone(),
                &[0, 2, 1, 1],
                weights.clone(),
                &names(3),
                chunk,
            )
            .expect("metrics");
            assert_eq!((m.count, m.top1, m.top5), (4, 50.0, 100.0));
            let per: Vec<(usize, f64)> = m.per_class.iter().map(|p| (p.count, p.top1)).collect();
            assert_eq!(per, [(1, 100.0), (2, 50.0), (1, 0.0)]);
            assert_eq!(m.mean_per_class, 50.0);
        }
    }

    #[test]
    fn top5_needs_rank_five_or_better() {
        // 7 classes on a line of decreasing scores; the true class 6 scores lowest: rank 7.
        let weights: Vec<[f32; 2]> = (0..7).map(|i| [1.0 - i as f32 * 0.1, 0.0]).collect();
        let m = zero_shot_metrics(
            matrix(&[[1.0, 0.0], [1.0, 0.0]]),
            &[6, 4],
            matrix(&weights),
            &names(7),
            8,
        )
        .expect("metrics");
        // Image 0: rank 7 (miss); image 1: class 4 ranks 5 (top-5 hit, top-1 miss).
        assert_eq!((m.top1, m.top5), (0.0, 50.0));
        assert!(m.per_class[0].top1.is_nan() && m.per_class[0].count == 0);
    }

    #[test]
    fn labels_out_of_range_are_refused() {
        let err = zero_shot_metrics(
            matrix(&[[1.0, 0.0]]),
            &[3],
            matrix(&[[1.0, 0.0]]),
            &names(1),
            4,
        )
        .expect_err("label 3 of 1 class");
        assert!(err.to_string().contains("label 3"), "{err}");
    }

    #[test]
    fn templates_parse_and_builtins_load() {
        assert_eq!(
            builtin_templates("openai_imagenet").map(|t| t.len()),
            Some(80)
        );
        assert_eq!(
            builtin_templates("simple_imagenet").map(|t| t.len()),
            Some(7)
        );
        assert_eq!(builtin_templates("cifar").map(|t| t.len()), Some(18));
        assert_eq!(builtin_templates("photo").map(|t| t.len()), Some(1));
        let t = parse_templates("# mine\n\na {} drawing.\n  art of {}.  \n", "t.txt").expect("ok");
        assert_eq!(t, ["a {} drawing.", "art of {}."]);
        let err = parse_templates("ok {}\nno slot\n", "t.txt").expect_err("no {}");
        assert!(err.to_string().starts_with("t.txt:2"), "{err}");
    }
}
