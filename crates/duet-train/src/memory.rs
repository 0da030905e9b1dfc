//! What a configured step needs in memory, estimated before any work, so that a batch that
//! cannot fit is refused in one line naming `train.batch_size` instead of aborting the process
//! mid-run ("memory allocation of … bytes failed").
//!
//! The estimate is a lower bound, counted from the shapes: what the backward must keep (per
//! token of each block: the two LayerNorms' inputs and outputs, q, k, v, the attention output,
//! the attention probabilities, the MLP's hidden layer before and after its non-linearity; with
//! activation checkpointing, each block's input and one block's activations; in bf16/f16 all
//! but the LayerNorms' in 2 bytes; with patch dropout, the image tower's kept tokens only),
//! the weights, their gradients and AdamW's two moments, the batch's buffers, and the logits
//! with their gradients. burn keeps some further intermediates, so a step needs more than this
//! (BENCHMARKS.md compares it with measured peaks); refusing only above the lower bound never
//! refuses a step that would fit.
//!
//! Where the step lives decides what is compared with what ([`MemoryBudget`]): on the CPU the
//! whole process's step against the host's available memory; on GPUs the first device's share
//! ([`StepMemory::first_device`]) against that GPU's free memory, and the loader's batch, which
//! stays in host memory, against the host's.

use duet_loss::Loss;
use duet_model::ClipConfig;

use crate::dropout::PatchDropout;
use crate::start::Layout;
use crate::{TrainConfig, TrainError};

const F32: u128 = 4;

/// A step's memory, by part, in bytes, for one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// Activations the backward keeps, for the blocks alive at once.
    pub activations: u64,
    /// Weights, gradients and AdamW's moments.
    pub parameters: u64,
    /// The images and token ids of this process's share of a step.
    pub batch: u64,
    /// The logits and their gradients.
    pub logits: u64,
}

/// The memory a process's step may use, by where the step's parts live (see [`StepMemory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemoryBudget {
    /// Not checked.
    #[default]
    Unchecked,
    /// The step runs on the CPU: bytes of host memory this process may use for all of it.
    Host(u64),
    /// The step runs on GPUs. `host`: bytes of host memory for the loader's batch; `device`:
    /// the free bytes of the emptiest of this process's GPUs (`None` where the backend does not
    /// tell, as wgpu). A `None` part is not checked.
    Gpu {
        /// Host memory this process may use.
        host: Option<u64>,
        /// Free memory of each of this process's GPUs (the smallest).
        device: Option<u64>,
    },
}

impl MemoryBudget {
    /// Refuses, naming `train.batch_size`, a step that does not fit (see [`StepMemory`]).
    pub(crate) fn check(
        self,
        config: &TrainConfig,
        clip: &ClipConfig,
        layout: &Layout,
    ) -> Result<(), TrainError> {
        match self {
            Self::Unchecked => Ok(()),
            Self::Host(budget) => StepMemory::estimate(config, clip, layout).check(
                config,
                budget,
                "per process for a step",
            ),
            Self::Gpu { host, device } => {
                if let Some(budget) = host {
                    check_loader(config, clip, layout, budget)?;
                }
                match device {
                    Some(budget) => StepMemory::first_device(config, clip, layout).check(
                        config,
                        budget,
                        "on the first GPU of each process for a step",
                    ),
                    None => Ok(()),
                }
            }
        }
    }
}

impl StepMemory {
    /// The step `config` configures for `clip` on this process, laid out as `layout`. Counted
    /// in 128 bits and saturated to `u64::MAX`: an absurd batch gives a huge estimate, never an
    /// overflow.
    pub(crate) fn estimate(config: &TrainConfig, clip: &ClipConfig, layout: &Layout) -> Self {
        let train = &config.train;
        let per_sample = activations_per_sample(config, clip);
        let n = |x: usize| x as u128;
        // Without accumulation every local device's block keeps its graph until the loss; with
        // it, one micro-batch is alive at a time (the others are cached features).
        let alive = if train.accum_freq == 1 {
            n(train.batch_size) * n(layout.devices)
        } else {
            n(train.batch_size)
        };
        let global = n(layout.global_batch);
        let (loader, tensors) = batch_parts(clip, layout);
        let rows = if train.local_loss {
            n(train.batch_size)
        } else {
            global
        };
        let matrices = match config.loss {
            Loss::InfoNce { .. } => 2,
            _ => 1,
        };
        Self {
            activations: clamp(alive * per_sample),
            parameters: clamp(4 * F32 * n(clip.num_params())),
            batch: clamp(loader + tensors),
            // Each matrix and its gradient.
            logits: clamp(2 * matrices * rows * global * F32),
        }
    }

    /// The share of the first of this process's devices when the step runs on GPUs: it holds
    /// the model with its gradients and AdamW's moments, the logits (every device's features
    /// meet there), the tensors of the process's whole batch (made there, then sent to the
    /// other devices in parts), and one micro-batch's activations (each device keeps its own;
    /// with accumulation the other micro-batches are cached features).
    pub(crate) fn first_device(config: &TrainConfig, clip: &ClipConfig, layout: &Layout) -> Self {
        let (_, tensors) = batch_parts(clip, layout);
        let micro_batch = config.train.batch_size as u128;
        Self {
            activations: clamp(micro_batch * activations_per_sample(config, clip)),
            batch: clamp(tensors),
            ..Self::estimate(config, clip, layout)
        }
    }

    /// All parts together.
    pub fn total(&self) -> u64 {
        self.activations
            .saturating_add(self.parameters)
            .saturating_add(self.batch)
            .saturating_add(self.logits)
    }

    /// Refuses, naming `train.batch_size`, a step whose estimate exceeds `budget` bytes;
    /// `what` says where ("per process for a step").
    pub(crate) fn check(
        &self,
        config: &TrainConfig,
        budget: u64,
        what: &str,
    ) -> Result<(), TrainError> {
        if self.total() <= budget {
            return Ok(());
        }
        Err(TrainError::invalid(
            "train.batch_size",
            format!(
                "{} samples per micro-batch need at least {} {what} \
                 (activations {}, weights/gradients/AdamW {}, batch {}, logits {}), and {} is \
                 available; lower train.batch_size (raise train.accum_freq to keep the global \
                 batch{})",
                config.train.batch_size,
                bytes(self.total()),
                bytes(self.activations),
                bytes(self.parameters),
                bytes(self.batch),
                bytes(self.logits),
                bytes(budget),
                if config.train.local_loss {
                    ""
                } else {
                    ", and set train.local_loss = true on several processes"
                },
            ),
        ))
    }
}

/// The loader's decoded images of this process's batch in bytes: the part of a step that stays
/// in host memory when the step runs on GPUs.
fn loader_bytes(clip: &ClipConfig, layout: &Layout) -> u64 {
    clamp(batch_parts(clip, layout).0)
}

/// Refuses, naming `train.batch_size`, a process batch whose decoded images exceed `budget`
/// bytes of host memory. Accumulation does not help here: the loader decodes a whole step.
fn check_loader(
    config: &TrainConfig,
    clip: &ClipConfig,
    layout: &Layout,
    budget: u64,
) -> Result<(), TrainError> {
    let need = loader_bytes(clip, layout);
    if need <= budget {
        return Ok(());
    }
    let train = &config.train;
    Err(TrainError::invalid(
        "train.batch_size",
        format!(
            "{} samples per micro-batch make {} samples a step on this process (× accum_freq {} \
             × {} device(s)), whose decoded images need at least {} of host memory for the \
             loader, and {} is available; lower train.batch_size or train.accum_freq, or spread \
             the batch over more processes",
            train.batch_size,
            layout.global_batch / layout.processes.max(1),
            train.accum_freq,
            layout.devices,
            bytes(need),
            bytes(budget),
        ),
    ))
}

/// `x` in a `u64`, saturated.
fn clamp(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// This process's batch in bytes: the loader's decoded images (f32), and the tensors made of
/// them (images in f32, token ids as i64).
fn batch_parts(clip: &ClipConfig, layout: &Layout) -> (u128, u128) {
    let n = |x: usize| x as u128;
    let local = n(layout.global_batch) / n(layout.processes).max(1);
    let pixels = 3 * n(clip.vision.image_size).pow(2);
    (
        local * pixels * F32,
        local * (pixels * F32 + n(clip.text.context_length) * 8),
    )
}

/// Bytes the backward keeps per sample of a micro-batch, both towers.
fn activations_per_sample(config: &TrainConfig, clip: &ClipConfig) -> u128 {
    let train = &config.train;
    let (v, t) = (&clip.vision, &clip.text);
    let kind = Kept {
        low: if train.precision.low().is_some() {
            2
        } else {
            F32
        },
        checkpoint: train.grad_checkpointing,
    };
    // The class token (if any) and the patches patch dropout keeps.
    let patches = v.num_patches();
    let vision_tokens =
        v.num_positions() - patches + PatchDropout::kept_of(train.patch_dropout, patches);
    kind.tower(vision_tokens, v.width, v.heads, v.mlp_dim, v.layers)
        + kind.tower(t.context_length, t.width, t.heads, t.mlp_dim, t.layers)
}

/// How the step keeps activations.
struct Kept {
    /// Bytes per element of the blocks' matrix products (4 in f32, 2 in bf16/f16).
    low: u128,
    /// Activation checkpointing: the blocks' inputs and one block's activations.
    checkpoint: bool,
}

impl Kept {
    /// Bytes the backward keeps per sample for a tower of `layers` blocks over `tokens` tokens
    /// of `width`, `heads` heads and an MLP of `mlp`: per token and block, 4 `width`-vectors
    /// in f32 (LayerNorm inputs and outputs) and, in the compute type, 4 more (q, k, v, the
    /// attention output), 2 `mlp`-vectors (before and after the non-linearity) and `heads ×
    /// tokens` attention probabilities. With checkpointing: every block's f32 input, and one
    /// block's activations.
    fn tower(&self, tokens: usize, width: usize, heads: usize, mlp: usize, layers: usize) -> u128 {
        let n = |x: usize| x as u128;
        let per_token =
            4 * n(width) * F32 + (4 * n(width) + 2 * n(mlp) + n(heads * tokens)) * self.low;
        let block = n(tokens) * per_token;
        if self.checkpoint {
            n(layers) * n(tokens) * n(width) * F32 + block
        } else {
            n(layers) * block
        }
    }
}

/// `1.5 GiB`, `23.4 TiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_b_32_by_hand() {
        // ViT-B/32 image tower: 50 tokens, width 768, 12 heads, MLP 3072, 12 blocks:
        // per token 8·768 + 2·3072 + 12·50 = 12,888 floats; × 50 × 12 × 4 B = 30,931,200 B.
        let f32 = Kept {
            low: 4,
            checkpoint: false,
        };
        assert_eq!(f32.tower(50, 768, 12, 3072, 12), 30_931_200);
        // Its text tower: 77 tokens, width 512, 8 heads, MLP 2048, 12 blocks:
        // 8·512 + 2·2048 + 8·77 = 8,808 floats; × 77 × 12 × 4 B = 32,554,368 B.
        assert_eq!(f32.tower(77, 512, 8, 2048, 12), 32_554_368);
        // bf16: 4·768 floats of 4 B, 4·768 + 2·3072 + 600 = 9,816 values of 2 B: 31,920 B per
        // token; × 50 × 12 = 19,152,000 B.
        let bf16 = Kept {
            low: 2,
            checkpoint: false,
        };
        assert_eq!(bf16.tower(50, 768, 12, 3072, 12), 19_152_000);
        // Checkpointed f32: 12 block inputs of 50 × 768 × 4 B = 1,843,200 B, plus one block's
        // 30,931,200 / 12 = 2,577,600 B.
        let checkpointed = Kept {
            low: 4,
            checkpoint: true,
        };
        assert_eq!(checkpointed.tower(50, 768, 12, 3072, 12), 4_420_800);
        assert_eq!(bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(bytes(1000), "1000 B");
    }

    fn tiny(overrides: &[&str]) -> (TrainConfig, ClipConfig) {
        let text = "[model]\nconfig = \"tiny\"\n[data]\ntrain = \"x/{0..1}.tar\"\n\
                    [train]\nsteps = 10\nbatch_size = 64\n";
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let config = TrainConfig::parse(text, "t.toml", &overrides).expect("config");
        let clip = config.clip_config().expect("clip");
        (config, clip)
    }

    #[test]
    fn the_tiny_step_by_hand_and_a_refusal_naming_the_key() {
        let (config, clip) = tiny(&[]);
        let layout = Layout::new(&config, 1, &duet_dist::Solo, 1).expect("layout");
        let m = StepMemory::estimate(&config, &clip, &layout);
        // tiny: image 65 tokens (8×8 patches + class), width 128, 4 heads (head width 32),
        // MLP 512, 2 blocks: per token 8·128 + 2·512 + 4·65 = 2,308 floats → 65·2·2,308·4 B =
        // 1,200,160 B; text 77 tokens, width 128, 4 heads, MLP 512, 2 blocks:
        // 8·128 + 2·512 + 4·77 = 2,356 → 77·2·2,356·4 B = 1,451,296 B. × 64 samples.
        assert_eq!(m.activations, 64 * (1_200_160 + 1_451_296));
        assert_eq!(m.parameters, 16 * clip.num_params() as u64);
        // 64 × (2 × 3·64² × 4 B + 77 × 8 B) = 64 × 98,920 B.
        assert_eq!(m.batch, 64 * 98_920);
        // InfoNCE's two 64 × 64 matrices and their gradients: 4 × 4,096 × 4 B.
        assert_eq!(m.logits, 65_536);
        assert!(
            m.check(&config, m.total(), "per process for a step")
                .is_ok()
        );
        let err = m
            .check(&config, m.total() - 1, "per process for a step")
            .expect_err("one byte short");
        let message = err.to_string();
        assert!(
            message.starts_with("train.batch_size: 64 samples per micro-batch"),
            "{message}"
        );
        assert!(!message.contains('\n'));
        // The local loss: each block's 64 rows of a global batch of 128 over 2 processes.
        let (config, _) = tiny(&["train.local_loss=true"]);
        let two = Layout::new(&config, 1, &duet_dist::ThreadGroup::new(2)[0], 2).expect("layout");
        assert_eq!(
            StepMemory::estimate(&config, &clip, &two).logits,
            4 * 64 * 128 * 4
        );
        // Patch dropout 0.5: the image tower keeps 32 of its 64 patches, 33 tokens: per token
        // 8·128 + 2·512 + 4·33 = 2,180 floats → 33·2·2,180·4 B = 575,520 B.
        let (config, _) = tiny(&["train.patch_dropout=0.5"]);
        let m = StepMemory::estimate(&config, &clip, &layout);
        assert_eq!(m.activations, 64 * (575_520 + 1_451_296));
    }

    #[test]
    fn on_gpus_the_first_device_and_the_host_loader_are_checked_apart() {
        // 2 devices, accum_freq 2: a micro-batch of 64, 128 samples per device, 256 a step.
        let (config, clip) = tiny(&["train.accum_freq=2"]);
        let layout = Layout::new(&config, 2, &duet_dist::Solo, 1).expect("layout");
        let process = StepMemory::estimate(&config, &clip, &layout);
        let first = StepMemory::first_device(&config, &clip, &layout);
        // One micro-batch's activations (as in the tiny test above: 1,200,160 + 1,451,296 B per
        // sample); the tensors of the process's 256 samples: 256 × (3·64²·4 B + 77 × 8 B) =
        // 256 × 49,768 B.
        assert_eq!(first.activations, 64 * (1_200_160 + 1_451_296));
        assert_eq!(first.batch, 256 * 49_768);
        assert_eq!(first.parameters, process.parameters);
        assert_eq!(first.logits, process.logits);
        // The loader's decoded images stay on the host: 256 × 3·64²·4 B = 256 × 49,152 B; the
        // process's batch counts them and the tensors: 256 × 98,920 B.
        let loader = loader_bytes(&clip, &layout);
        assert_eq!(loader, 256 * 49_152);
        assert_eq!(process.batch, 256 * 98_920);

        let gpu = |host, device| MemoryBudget::Gpu { host, device };
        let ok = |b: MemoryBudget| b.check(&config, &clip, &layout).is_ok();
        let refusal = |b: MemoryBudget| {
            b.check(&config, &clip, &layout)
                .expect_err("refused")
                .to_string()
        };
        assert!(ok(gpu(Some(loader), Some(first.total()))));
        // Neither part known: nothing to check (wgpu on a machine without /proc/meminfo).
        assert!(ok(gpu(None, None)));
        assert!(ok(MemoryBudget::Unchecked));
        let device = refusal(gpu(None, Some(first.total() - 1)));
        assert!(
            device.starts_with("train.batch_size: 64 samples per micro-batch need at least")
                && device.contains("on the first GPU of each process"),
            "{device}"
        );
        let host = refusal(gpu(Some(loader - 1), None));
        assert!(
            host.starts_with(
                "train.batch_size: 64 samples per micro-batch make 256 samples a step on this \
                 process (× accum_freq 2 × 2 device(s)), whose decoded images need at least \
                 12.0 MiB of host memory for the loader"
            ),
            "{host}"
        );
        // On the CPU the whole process's step counts, more than the first device's share.
        assert!(process.total() > first.total());
        assert!(!ok(MemoryBudget::Host(process.total() - 1)));
        assert!(ok(MemoryBudget::Host(process.total())));
    }
}
