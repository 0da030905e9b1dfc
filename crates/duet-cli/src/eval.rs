//! `duet eval zero-shot` and `duet eval retrieval`: a model (directory, checkpoint or run)
//! scored on labelled images or held-out image–text pairs.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use duet_data::{FieldSelector, TextField};
use duet_eval::{
    ClassData, PairSource, evaluate_retrieval, evaluate_zero_shot, load_templates, read_class_names,
};

use crate::backend::DeviceKind;
use crate::model_arg;

/// `duet eval` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Zero-shot classification: top-1, top-5 and per-class accuracy.
    ZeroShot(ZeroShotArgs),
    /// Image->text and text->image retrieval on held-out pairs: R@1/5/10, mean and median rank.
    Retrieval(RetrievalArgs),
}

/// Arguments of `duet eval zero-shot`.
#[derive(Debug, Args)]
pub struct ZeroShotArgs {
    /// A model directory (HF, OpenCLIP, duet), a checkpoint, or a run directory.
    #[arg(long)]
    model: PathBuf,
    /// An image folder (one sub-folder per class), an IDX images file
    /// (`t10k-images-idx3-ubyte[.gz]`, labels beside it), or shards with a `.cls` member.
    #[arg(long)]
    dataset: String,
    /// Class names, one per line, in label order; a folder's sub-folder names by default.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// A built-in template list (openai_imagenet, simple_imagenet, cifar, photo) or a file with
    /// one template per line, `{}` where the class name goes.
    #[arg(long, default_value = "openai_imagenet")]
    templates: String,
    /// Print one JSON object (`top1`, `top5`, `mean_per_class`, `count`, `per_class`).
    #[arg(long)]
    json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Compute type of the towers' matrix products: f32, bf16 or f16 (OpenCLIP's fp32,
    /// amp_bf16, amp); the weights stay as loaded.
    #[arg(long, default_value = "f32", value_parser = crate::model_arg::parse_precision)]
    precision: duet_model::Precision,
}

/// Arguments of `duet eval retrieval`.
#[derive(Debug, Args)]
pub struct RetrievalArgs {
    /// A model directory (HF, OpenCLIP, duet), a checkpoint, or a run directory.
    #[arg(long)]
    model: PathBuf,
    /// Shard spec of image–caption pairs.
    #[arg(long)]
    data: String,
    /// The caption field.
    #[arg(long, default_value = "txt")]
    text_key: String,
    /// Print one JSON object (`i2t_r1`, `t2i_r5`, …, `pairs`).
    #[arg(long)]
    json: bool,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Where to run.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Compute type of the towers' matrix products: f32, bf16 or f16 (OpenCLIP's fp32,
    /// amp_bf16, amp); the weights stay as loaded.
    #[arg(long, default_value = "f32", value_parser = crate::model_arg::parse_precision)]
    precision: duet_model::Precision,
}

/// Runs `duet eval …`.
pub fn run(command: EvalCommand) -> Result<()> {
    match command {
        EvalCommand::ZeroShot(args) => zero_shot(&args),
        EvalCommand::Retrieval(args) => retrieval(&args),
    }
}

fn zero_shot(args: &ZeroShotArgs) -> Result<()> {
    let data = ClassData::detect(&args.dataset);
    let classes = match (&args.classes, data.folder_classes()?) {
        (Some(path), Some(folders)) => {
            let names = read_class_names(path)?;
            if names.len() != folders.len() {
                bail!(
                    "--classes {} has {} names, {} has {} class folders",
                    path.display(),
                    names.len(),
                    args.dataset,
                    folders.len()
                );
            }
            names
        }
        (Some(path), None) => read_class_names(path)?,
        (None, Some(folders)) => folders,
        (None, None) => bail!(
            "--classes FILE is needed: {} has no class names",
            args.dataset
        ),
    };
    let templates = load_templates(&args.templates)?;
    let device = args.device.device()?;
    let loaded = model_arg::load_in(&args.model, &device, args.precision)?;
    let metrics = evaluate_zero_shot(
        &loaded.model,
        &loaded.config,
        &data,
        &classes,
        &templates,
        args.batch_size,
        &device,
    )?;
    if args.json {
        let per_class: serde_json::Map<String, serde_json::Value> = metrics
            .per_class
            .iter()
            .map(|p| (p.class.clone(), p.top1.into()))
            .collect();
        let out = serde_json::json!({
            "top1": metrics.top1,
            "top5": metrics.top5,
            "mean_per_class": metrics.mean_per_class,
            "count": metrics.count,
            "templates": templates.len(),
            "per_class": per_class,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "zero-shot on {} ({} images, {} classes, {} templates)",
        args.dataset,
        metrics.count,
        classes.len(),
        templates.len()
    );
    println!(
        "  top-1 {:.2}%  top-5 {:.2}%  mean per class {:.2}%  (chance top-1 {:.2}%)",
        metrics.top1,
        metrics.top5,
        metrics.mean_per_class,
        100.0 / classes.len() as f64
    );
    for class in &metrics.per_class {
        println!(
            "  {:>6.2}%  {:>6}  {}",
            class.top1, class.count, class.class
        );
    }
    Ok(())
}

fn retrieval(args: &RetrievalArgs) -> Result<()> {
    let device = args.device.device()?;
    let loaded = model_arg::load_in(&args.model, &device, args.precision)?;
    let source = PairSource {
        spec: args.data.clone(),
        fields: FieldSelector {
            text: TextField::Field {
                name: args.text_key.clone(),
            },
            ..FieldSelector::default()
        },
        batch_size: args.batch_size,
    };
    let (m, skipped) = evaluate_retrieval(&loaded.model, &loaded.config, &source, &device)?;
    if args.json {
        let mut out = serde_json::Map::new();
        for (name, value) in m.named() {
            out.insert(name.into(), value.into());
        }
        out.insert("pairs".into(), m.pairs.into());
        out.insert("skipped".into(), skipped.into());
        println!("{}", serde_json::Value::Object(out));
        return Ok(());
    }
    println!("retrieval on {} ({} pairs)", args.data, m.pairs);
    println!(
        "  image->text R@1 {:.2}%  R@5 {:.2}%  R@10 {:.2}%  mean rank {:.1}  median rank {}",
        m.i2t_r1, m.i2t_r5, m.i2t_r10, m.i2t_mean_rank, m.i2t_median_rank
    );
    println!(
        "  text->image R@1 {:.2}%  R@5 {:.2}%  R@10 {:.2}%  mean rank {:.1}  median rank {}",
        m.t2i_r1, m.t2i_r5, m.t2i_r10, m.t2i_mean_rank, m.t2i_median_rank
    );
    Ok(())
}
