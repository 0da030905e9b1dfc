//! `duet`: contrastive image–text pretraining, fine-tuning and inference.

mod alloc;
mod backend;
mod bench;
mod curate;
mod embed;
mod embed_data;
mod eval;
mod export;
mod histogram;
mod job;
mod model_arg;
mod output;
mod plots;
mod shards;
mod train;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Contrastive image–text models (CLIP) in Rust.
#[derive(Debug, Parser)]
#[command(name = "duet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write L2-normalised image and text embeddings of a model.
    Embed(embed::EmbedArgs),
    /// Score a shard spec with a model, filter it, and write the kept pairs as shards.
    Curate(curate::CurateArgs),
    /// Evaluate a model: zero-shot classification or image-text retrieval.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Write a model directory in another layout (e.g. OpenCLIP -> Hugging Face).
    Export(export::ExportArgs),
    /// Train a model from a train config (TOML) into a run directory.
    Pretrain(train::PretrainArgs),
    /// Fine-tune pretrained weights (Hugging Face, OpenCLIP or duet), optionally with a locked
    /// tower (LiT).
    Finetune(train::FinetuneArgs),
    /// Continue a run from its newest good checkpoint, exactly where it stopped.
    Resume(train::ResumeArgs),
    /// Measure: `bench step` times training steps on a synthetic batch.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Build or inspect webdataset shards.
    #[command(subcommand)]
    Shards(shards::ShardsCommand),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    alloc::retain_freed_memory();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Command::Embed(args) => {
            let sub = matches
                .subcommand_matches("embed")
                .ok_or_else(|| anyhow::anyhow!("embed arguments missing"))?;
            embed::run(args, embed::input_order(sub))
        }
        Command::Curate(args) => curate::run(args),
        Command::Eval(command) => eval::run(command),
        Command::Export(args) => export::run(args),
        Command::Shards(command) => shards::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Pretrain(args) => train::pretrain(&args),
        Command::Finetune(args) => train::finetune(&args),
        Command::Resume(args) => train::resume(&args),
    }
}
