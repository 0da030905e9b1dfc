//! `duet embed`: L2-normalised projected embeddings of images and texts, in input order.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::Device;
use clap::{ArgMatches, Args};
use duet_data::{
    DecodeConfig, PadToken, TextTokenizer, TokenizerConfig, decode_rgb8, images_to_tensor,
    tokens_to_tensor,
};
use duet_model::{ClipConfig, ClipModel, TokenizerSpec, l2_normalize};

use crate::backend::DeviceKind;
use crate::output::{Embedded, InputKind, OutputFormat, write};

/// Arguments of `duet embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Model directory: Hugging Face (`config.json` + `model.safetensors`), OpenCLIP
    /// (`open_clip_config.json` + `open_clip_model.safetensors`) or duet layout, a checkpoint,
    /// or a run directory (its latest checkpoint).
    #[arg(long)]
    model: PathBuf,
    /// An image file to embed (JPEG, PNG or WebP); repeatable.
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,
    /// A text to embed; repeatable.
    #[arg(long = "text", value_name = "TEXT")]
    texts: Vec<String>,
    /// A UTF-8 file with one text per line; repeatable.
    #[arg(long = "texts", value_name = "FILE")]
    text_files: Vec<PathBuf>,
    /// Every sample of a shard spec (img2dataset tar, parquet, CSV/TSV, folders; brace
    /// ranges, `::` lists), written per shard into the directory `--out`; resumable.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["images", "texts", "text_files", "tokenizer"])]
    data: Option<String>,
    /// Output file (`.jsonl`, `.npy` or `.safetensors`); with `--data`, a directory.
    #[arg(long)]
    out: PathBuf,
    /// With `--data`: the element type of the written `.npy` files.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: crate::embed_data::NpyDtype,
    /// An HF `tokenizer.json` to use instead of the model's (the bundled CLIP BPE, or a SigLIP
    /// model directory's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Where to run the model.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Compute type of the towers' matrix products: f32, bf16 or f16 (OpenCLIP's fp32,
    /// amp_bf16, amp); the weights stay as loaded.
    #[arg(long, default_value = "f32", value_parser = crate::model_arg::parse_precision)]
    precision: duet_model::Precision,
}

/// Which flag an input came from, and its index among that flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--image`.
    Image(usize),
    /// `--text`.
    Text(usize),
    /// `--texts`.
    TextFile(usize),
}

/// The command-line order of every `--image`, `--text` and `--texts` value.
pub fn input_order(matches: &ArgMatches) -> Vec<Source> {
    let mut order: Vec<(usize, Source)> = Vec::new();
    type MakeSource = fn(usize) -> Source;
    let flags: [(&str, MakeSource); 3] = [
        ("images", Source::Image),
        ("texts", Source::Text),
        ("text_files", Source::TextFile),
    ];
    for (id, make) in flags {
        if let Some(indices) = matches.indices_of(id) {
            order.extend(indices.enumerate().map(|(i, at)| (at, make(i))));
        }
    }
    order.sort_by_key(|(at, _)| *at);
    order.into_iter().map(|(_, s)| s).collect()
}

/// One thing to embed.
#[derive(Debug)]
struct Input {
    kind: InputKind,
    /// The image path or the text.
    input: String,
}

/// Reads a `--texts` file: one text per line, `\r\n` accepted; invalid UTF-8 names the line.
fn read_texts(path: &Path) -> Result<Vec<String>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading --texts {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        anyhow::anyhow!("{}:{line}: not valid UTF-8", path.display())
    })?;
    Ok(text.lines().map(str::to_string).collect())
}

fn gather_inputs(args: &EmbedArgs, order: &[Source]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for source in order {
        match *source {
            Source::Image(i) => inputs.push(Input {
                kind: InputKind::Image,
                input: args.images[i].to_string_lossy().into_owned(),
            }),
            Source::Text(i) => inputs.push(Input {
                kind: InputKind::Text,
                input: args.texts[i].clone(),
            }),
            Source::TextFile(i) => inputs.extend(read_texts(&args.text_files[i])?.into_iter().map(
                |input| Input {
                    kind: InputKind::Text,
                    input,
                },
            )),
        }
    }
    ensure!(
        !inputs.is_empty(),
        "nothing to embed: give at least one --image, --text or --texts, or --data"
    );
    Ok(inputs)
}

fn tokenizer(args: &EmbedArgs, config: &ClipConfig) -> Result<TextTokenizer> {
    let Some(path) = &args.tokenizer else {
        return Ok(duet_eval::text_tokenizer(config)?);
    };
    let tokenizer = match &config.text.tokenizer {
        TokenizerSpec::ClipBpe => {
            let tok_config = TokenizerConfig {
                context_length: config.text.context_length,
                pad: PadToken::Zero,
            };
            TextTokenizer::from_file(path, tok_config)?
        }
        TokenizerSpec::File(file) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading --tokenizer {}", path.display()))?;
            let rows = duet_eval::own_rows(config.text.context_length, file);
            TextTokenizer::from_model_json(&bytes, &path.display().to_string(), rows)?
        }
    };
    if let Some(eot) = tokenizer.eot_id()
        && eot != config.text.eot_token_id
    {
        bail!(
            "the tokenizer's end-of-text id {eot} differs from the model's {}; pass the model's tokenizer.json with --tokenizer",
            config.text.eot_token_id
        );
    }
    Ok(tokenizer)
}

fn rows(t: burn::tensor::Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, dim] = t.dims();
    let values = t
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading embeddings back: {e:?}"))?;
    Ok(values.chunks(dim).map(<[f32]>::to_vec).collect())
}

fn embed_texts(
    model: &ClipModel,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let ids = tokenizer.encode_batch(texts)?;
    let ids = tokens_to_tensor(&ids, tokenizer.context_length(), device)?;
    rows(l2_normalize(model.encode_text(ids)))
}

fn embed_images(
    model: &ClipModel,
    config: &ClipConfig,
    paths: &[&str],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let transform = duet_eval::eval_transform_config(config).init()?;
    let decode = DecodeConfig::default();
    let pixels = paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).with_context(|| format!("reading --image {path}"))?;
            Ok(transform.apply(&decode_rgb8(&bytes, path, &decode)?)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let pixels = images_to_tensor(&pixels, config.vision.image_size, device)?;
    rows(l2_normalize(model.encode_image(pixels)))
}

/// Runs `duet embed` with the inputs in `order`.
pub fn run(args: EmbedArgs, order: Vec<Source>) -> Result<()> {
    if let Some(spec) = &args.data {
        let device = args.device.device()?;
        let loaded = crate::model_arg::load_in(&args.model, &device, args.precision)?;
        let run = crate::embed_data::DataRun {
            model_arg: &args.model,
            spec,
            out: &args.out,
            batch_size: args.batch_size as usize,
            dtype: args.dtype,
            device: &device,
        };
        return crate::embed_data::run(&run, &loaded.model, &loaded.config);
    }
    let format = OutputFormat::from_path(&args.out)?;
    let inputs = gather_inputs(&args, &order)?;
    let device = args.device.device()?;
    let loaded = crate::model_arg::load_in(&args.model, &device, args.precision)?;
    let (model, config) = (loaded.model, loaded.config);
    let tokenizer = tokenizer(&args, &config)?;

    let mut embeddings: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
    let batch = args.batch_size as usize;
    for kind in [InputKind::Text, InputKind::Image] {
        let positions: Vec<usize> = (0..inputs.len())
            .filter(|i| inputs[*i].kind == kind)
            .collect();
        for chunk in positions.chunks(batch) {
            let items: Vec<&str> = chunk.iter().map(|i| inputs[*i].input.as_str()).collect();
            let out = match kind {
                InputKind::Text => embed_texts(&model, &tokenizer, &items, &device)?,
                InputKind::Image => embed_images(&model, &config, &items, &device)?,
            };
            for (i, e) in chunk.iter().zip(out) {
                embeddings[*i] = Some(e);
            }
        }
    }
    let rows: Vec<Embedded> = inputs
        .into_iter()
        .zip(embeddings)
        .map(|(input, embedding)| Embedded {
            kind: input.kind,
            input: input.input,
            embedding: embedding.unwrap_or_default(),
        })
        .collect();
    write(&args.out, format, &rows)?;
    tracing::info!(inputs = rows.len(), dim = config.embed_dim, out = %args.out.display(), "wrote embeddings");
    Ok(())
}
