//! `duet export`: read a model directory of any known layout, write it in another.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use duet_model::{save_duet, save_hf, save_openclip};

/// Layouts `duet export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `transformers.CLIPModel.from_pretrained` loads it.
    Hf,
    /// duet's own layout (`duet_model.json` + `model.safetensors`).
    Duet,
    /// OpenCLIP's hub layout: `open_clip.create_model_and_transforms("local-dir:DIR")` loads it.
    Openclip,
}

/// Arguments of `duet export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Source: a model directory (Hugging Face, OpenCLIP or duet layout), a checkpoint
    /// (`runs/x/checkpoints/step-00000300`), or a run directory (its `latest` checkpoint).
    #[arg(long)]
    model: PathBuf,
    /// Layout to write.
    #[arg(long)]
    format: Format,
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `duet export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let device = Device::flex();
    let loaded = crate::model_arg::load(&args.model, &device)?;
    match args.format {
        Format::Hf => save_hf(&loaded.model, &loaded.config, &args.out)?,
        Format::Duet => {
            save_duet(&loaded.model, &loaded.config, &args.out)?;
        }
        Format::Openclip => save_openclip(&loaded.model, &loaded.config, &args.out)?,
    }
    tracing::info!(
        from = ?loaded.format,
        to = ?args.format,
        out = %args.out.display(),
        "exported"
    );
    Ok(())
}
