//! Data parallelism: the global batch over several devices of one process and over several
//! processes, every rank's loss with the negatives of the whole global batch.
//!
//! A step's global batch is a sequence of equal *blocks*, in order: process `p`'s blocks come
//! after those of processes `0..p`; within a process, device `d`'s after those of devices
//! `0..d`; within a device, its `accum` micro-batches in turn. Each block is encoded on its
//! device by a replica of the model ([`Module::fork`]), each tower on a thread of its own
//! ([`crate::towers`]). Then:
//!
//! 1. **gather**: every block's features, detached, are brought together on the main device in
//!    block order — the other processes' through [`Collective::all_gather`] on host buffers;
//! 2. **loss**, on leaves made of the gathered features:
//!    - *global* (default; OpenCLIP's `local_loss=False`): the contrastive loss of the whole
//!      global batch, one `[B, B]` logits matrix, back-propagated once into the features'
//!      gradients; every process computes the same value, and only process 0 keeps
//!      `logit_scale`/`logit_bias` live, so they are counted once;
//!    - *local* (`train.local_loss`; OpenCLIP's `--local-loss --gather-with-grad`): each block
//!      takes the loss of its own rows against every column, `[b, B]` logits, divided by the
//!      number of blocks; their sum over blocks is the global loss, and the gradients of the
//!      gathered features are summed over processes and scattered back to the processes that
//!      own the rows ([`Collective::reduce_scatter_sum`]). Memory is linear in the global batch;
//! 3. **towers**: each block back-propagates its tower with its rows of the features' gradient
//!    (recomputing the block's features first when it accumulates, OpenCLIP's feature cache),
//!    and its gradients are summed on the main device;
//! 4. **reduce**: the sum over processes, in buckets, in parameter order ([`crate::sync`]).
//!
//! Every parameter's gradient is then the one-device gradient of the global batch: the loss
//! depends on the tower parameters only through the features, and each block contributes its
//! features' part exactly. With one block (one device, no accumulation, one process) this is
//! the plain step with its towers apart.
//!
//! burn 0.22.1's own collectives (`burn::tensor::distributed`, a differentiable `all_reduce`,
//! and burn-train's DDP on it) exist for CUDA only and inside one process (ARCHITECTURE.md,
//! "Scaling out"); the devices of one process are reached with `to_device`, as burn-train's
//! `MultiDevice` strategy does, and other processes through [`Collective`].

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use duet_dist::Collective;
use duet_loss::{ContrastiveBatch, Gathered, Loss};
use duet_model::ClipModel;

use crate::TrainError;
use crate::dropout::PatchDropout;
use crate::sync::{all_gather_rows, all_reduce_gradients, comm_error, reduce_scatter_rows};
use crate::towers::{TowerPass, encode_apart, loss_of, towers_backward};

/// Where a step's blocks run: the process's devices and the job's other processes.
#[derive(Clone, Copy)]
pub(crate) struct Ranks<'a> {
    /// This process's devices; the first holds the model and the optimizer.
    pub devices: &'a [Device],
    /// The job's processes.
    pub comm: &'a dyn Collective,
    /// Each block's rows against all columns (memory linear in the global batch) instead of
    /// one global logits matrix.
    pub local_loss: bool,
    /// Keep only each block's input in the forward and recompute in the backward.
    pub grad_checkpointing: bool,
    /// Every gradient is of the loss times this (f16's loss scale; 1 otherwise): the towers'
    /// backward sees gradients large enough for f16, the caller divides them back.
    pub loss_scale: f64,
    /// Patch dropout of the training images, drawn per row of the global batch.
    pub patch_dropout: Option<PatchDropout>,
}

/// The features of one block: image and text, `[b, e]` each.
type Features = (Tensor<2>, Tensor<2>);

/// A block's forward: kept for its backward (one micro-batch per device), or only its detached
/// features (with accumulation the block is recomputed in step 3, OpenCLIP's feature cache).
enum Encoded {
    Live(Box<(TowerPass, TowerPass)>),
    Cached(Box<Features>),
}

impl Encoded {
    /// The block's features without their graph.
    fn features(&self) -> Features {
        match self {
            Self::Live(passes) => (passes.0.detached(), passes.1.detached()),
            Self::Cached(features) => (features.0.clone(), features.1.clone()),
        }
    }
}

/// The loss of the global batch and this process's summed-over-processes gradients (`None`,
/// on every process alike, when the loss is not finite); see the module docs. `images` `[n, 3,
/// s, s]` and `tokens` `[n, t]` are this process's samples on `devices[0]`, `n` a multiple of
/// the device count times `accum`.
pub(crate) fn gradients(
    loss: Loss,
    model: &ClipModel,
    images: Tensor<4>,
    tokens: Tensor<2, Int>,
    ranks: Ranks<'_>,
    accum: usize,
    step: u64,
) -> Result<(f64, Option<GradientsParams>), TrainError> {
    let devices = ranks.devices;
    let accum = accum.max(1);
    let Some(main) = devices.first() else {
        return Err(TrainError::invalid("devices", "no device given"));
    };
    let [n, ..] = images.dims();
    check_split(n, devices.len(), accum)?;
    let per_process = devices.len() * accum;
    let block_size = n / per_process;
    let first_block = ranks.comm.rank() * per_process;

    // burn draws parameters lazily from a process-wide generator: draw any still pending
    // before the replicas are forked and the ranks' threads start.
    crate::lazy::materialize(model);
    let patches = model.vision.num_patches();
    let locals: Vec<_> = images
        .chunk(devices.len(), 0)
        .into_iter()
        .zip(tokens.chunk(devices.len(), 0))
        .zip(devices)
        .enumerate()
        .map(|(rank, ((images, tokens), device))| {
            // Every rank but 0 gets its own autodiff leaves, even on the same device: burn's
            // backward consumes the tape of the leaves it reaches, so two ranks sharing them
            // would race (the second backward panics).
            let replica = if rank == 0 {
                model.clone()
            } else {
                model.clone().fork(device)
            };
            // Block `first_block + rank · accum + j` holds global rows from
            // `(first_block + rank · accum + j) · block_size` on.
            let micro: Vec<Micro> = images
                .to_device(device)
                .chunk(accum, 0)
                .into_iter()
                .zip(tokens.to_device(device).chunk(accum, 0))
                .enumerate()
                .map(|(j, (images, tokens))| {
                    let first_row = (first_block + rank * accum + j) * block_size;
                    let keep = ranks
                        .patch_dropout
                        .map(|d| d.indices(step, first_row, block_size, patches, device));
                    (images, tokens, keep)
                })
                .collect();
            (replica, micro)
        })
        .collect();

    // Devices that differ run on threads of their own; ranks sharing a device run in turn:
    // one device gains nothing from threads (flex already spreads an op over every core), and
    // concurrent autodiff passes over one device's shared buffers were seen to change a
    // step's loss under load.
    let threaded = devices
        .iter()
        .enumerate()
        .all(|(i, device)| !devices[..i].contains(device));
    // Every block's features. With one micro-batch they keep their graph for step 3; with
    // several they are recomputed one at a time there.
    let checkpoint = ranks.grad_checkpointing;
    let encoded = on_every_rank(locals, threaded, |_, (replica, micro)| {
        let blocks: Vec<Encoded> = micro
            .iter()
            .map(|(images, tokens, keep)| {
                let (image, text) = encode_apart(
                    &replica,
                    images.clone(),
                    tokens.clone(),
                    keep.clone(),
                    checkpoint,
                );
                if accum == 1 {
                    Encoded::Live(Box::new((image, text)))
                } else {
                    Encoded::Cached(Box::new((image.detached(), text.detached())))
                }
            })
            .collect();
        (replica, micro, blocks)
    });

    // 1. The gather: this process's blocks, then every process's, in block order.
    let (mine_image, mine_text): (Vec<_>, Vec<_>) = encoded
        .iter()
        .flat_map(|(_, _, blocks)| blocks.iter())
        .map(|block| {
            let (image, text) = block.features();
            (image.to_device(main), text.to_device(main))
        })
        .unzip();
    let mine = (Tensor::cat(mine_image, 0), Tensor::cat(mine_text, 0));
    let all = if ranks.comm.world() > 1 {
        all_gather_rows(ranks.comm, mine, main)?
    } else {
        mine
    };

    // 2. The loss and the gradients of this process's features.
    let blocks = BlockLayout {
        block_size,
        first_block,
        per_process,
        total: per_process * ranks.comm.world(),
    };
    let scored = if ranks.local_loss {
        local_loss(loss, model, all, blocks, ranks, step)?
    } else {
        let live = ranks.comm.rank() == 0;
        global_loss(loss, model, all, blocks, live, ranks.loss_scale, step)?
    };
    let Some((feature_grads, logit_grads)) = scored.grads else {
        return Ok((scored.value, None));
    };

    // 3. Each block's towers, back-propagated from its rows of the features' gradient.
    let (d_image, d_text) = feature_grads;
    let results = on_every_rank(encoded, threaded, |rank, (replica, micro, blocks)| {
        let device = &devices[rank];
        let mut summed = GradientsAccumulator::<ClipModel>::new();
        for (j, ((images_j, tokens_j, keep_j), kept)) in micro.into_iter().zip(blocks).enumerate() {
            let live = match kept {
                Encoded::Live(passes) => *passes,
                Encoded::Cached(_) => {
                    encode_apart(&replica, images_j, tokens_j, keep_j, checkpoint)
                }
            };
            let rows = (rank * accum + j) * block_size;
            let grads = (
                d_image
                    .clone()
                    .narrow(0, rows, block_size)
                    .to_device(&device.clone().inner()),
                d_text
                    .clone()
                    .narrow(0, rows, block_size)
                    .to_device(&device.clone().inner()),
            );
            for tower in towers_backward(&replica, live, grads) {
                summed.accumulate(&replica, tower);
            }
        }
        summed.grads().to_device(main, &replica)
    });
    let mut accumulator = GradientsAccumulator::<ClipModel>::new();
    accumulator.accumulate(model, logit_grads);
    for grads in results {
        accumulator.accumulate(model, grads);
    }
    let grads = accumulator.grads();

    // 4. The sum over processes.
    let grads = if ranks.comm.world() > 1 {
        all_reduce_gradients(ranks.comm, model, grads)?
    } else {
        grads
    };
    Ok((scored.value, Some(grads)))
}

/// One micro-batch: images, tokens, and the patches patch dropout keeps.
type Micro = (Tensor<4>, Tensor<2, Int>, Option<Tensor<2, Int>>);

/// Refuses a batch of `n` that does not split into `devices × accum` equal blocks, naming the
/// key to change.
fn check_split(n: usize, devices: usize, accum: usize) -> Result<(), TrainError> {
    if n.is_multiple_of(devices * accum) && n > 0 {
        return Ok(());
    }
    let (key, what) = match (devices, accum) {
        (1, _) => ("train.accum_freq", format!("{accum} equal micro-batches")),
        (_, 1) => (
            "train.batch_size",
            format!("{devices} equal per-device slices"),
        ),
        _ => (
            "train.accum_freq",
            format!("{devices} devices × {accum} micro-batches"),
        ),
    };
    Err(TrainError::invalid(
        key,
        format!("a batch of {n} does not split into {what}"),
    ))
}

/// Where this process's blocks sit in the global batch.
#[derive(Debug, Clone, Copy)]
struct BlockLayout {
    block_size: usize,
    first_block: usize,
    per_process: usize,
    total: usize,
}

/// The loss value and, when it is finite, this process's features' gradients (image, text:
/// `[per_process · b, e]` each, on the main device's inner backend) and the gradients of
/// `logit_scale`/`logit_bias` this process contributes.
struct Scored {
    value: f64,
    grads: Option<(Features, GradientsParams)>,
}

/// The loss of the whole global batch on leaves of the gathered features; `logits_live` on one
/// process only, so the scale's gradient is counted once.
fn global_loss(
    loss: Loss,
    model: &ClipModel,
    (image, text): Features,
    blocks: BlockLayout,
    logits_live: bool,
    loss_scale: f64,
    step: u64,
) -> Result<Scored, TrainError> {
    let image = image.detach().require_grad();
    let text = text.detach().require_grad();
    let (mut scale, mut bias) = (
        model.logit_scale.val(),
        model.logit_bias.as_ref().map(|b| b.val()),
    );
    if !logits_live {
        (scale, bias) = (scale.detach(), bias.map(Tensor::detach));
    }
    let batch = ContrastiveBatch::new(image.clone(), text.clone());
    let value_tensor = loss_of(loss, batch, scale, bias, step)?;
    let value = f64::from(value_tensor.clone().into_scalar::<f32>());
    if !value.is_finite() {
        return Ok(Scored { value, grads: None });
    }
    let mut grads = scaled(value_tensor, loss_scale).backward();
    let (Some(d_image), Some(d_text)) =
        (image.grad_remove(&mut grads), text.grad_remove(&mut grads))
    else {
        return Err(TrainError::invalid(
            "loss",
            "the loss does not depend on the features",
        ));
    };
    let logit_grads = GradientsParams::from_grads(grads, model);
    let rows = blocks.first_block * blocks.block_size;
    let count = blocks.per_process * blocks.block_size;
    let own = (
        d_image.narrow(0, rows, count),
        d_text.narrow(0, rows, count),
    );
    Ok(Scored {
        value,
        grads: Some((own, logit_grads)),
    })
}

/// Each of this process's blocks' rows against every column, divided by the number of blocks;
/// the gathered features' gradients summed over processes and this process's rows kept.
fn local_loss(
    loss: Loss,
    model: &ClipModel,
    (image, text): Features,
    blocks: BlockLayout,
    ranks: Ranks<'_>,
    step: u64,
) -> Result<Scored, TrainError> {
    let b = blocks.block_size;
    let scale = model.logit_scale.val();
    let bias = model.logit_bias.as_ref().map(|b| b.val());
    let mut value = 0.0;
    let mut d_all: Option<Features> = None;
    let mut logit_grads = GradientsAccumulator::<ClipModel>::new();
    for g in blocks.first_block..blocks.first_block + blocks.per_process {
        let all_image = image.clone().detach().require_grad();
        let all_text = text.clone().detach().require_grad();
        let batch = ContrastiveBatch::new(
            all_image.clone().narrow(0, g * b, b),
            all_text.clone().narrow(0, g * b, b),
        )
        .with_gathered(Gathered {
            image: all_image.clone(),
            text: all_text.clone(),
            rank: g,
        });
        let block_loss = loss_of(loss, batch, scale.clone(), bias.clone(), step)?
            .div_scalar(blocks.total as f64);
        value += f64::from(block_loss.clone().into_scalar::<f32>());
        let mut grads = scaled(block_loss, ranks.loss_scale).backward();
        let (Some(d_image), Some(d_text)) = (
            all_image.grad_remove(&mut grads),
            all_text.grad_remove(&mut grads),
        ) else {
            return Err(TrainError::invalid(
                "loss",
                "the loss does not depend on the features",
            ));
        };
        logit_grads.accumulate(model, GradientsParams::from_grads(grads, model));
        d_all = Some(match d_all {
            Some((i, t)) => (i + d_image, t + d_text),
            None => (d_image, d_text),
        });
    }
    // The value over every process, summed in rank order: the same on every process, so all
    // agree on skipping a non-finite step.
    let comm = ranks.comm;
    let value = if comm.world() > 1 {
        let parts = comm
            .all_gather_bytes(&value.to_le_bytes())
            .map_err(comm_error(comm, "loss value"))?;
        parts.iter().try_fold(0.0, |sum, bytes| {
            let bytes: [u8; 8] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| TrainError::RanksDisagree {
                        message: format!("a rank sent a {}-byte loss value", bytes.len()),
                    })?;
            Ok::<f64, TrainError>(sum + f64::from_le_bytes(bytes))
        })?
    } else {
        value
    };
    let Some(d_all) = d_all else {
        return Err(TrainError::invalid("train.batch_size", "no block to score"));
    };
    if !value.is_finite() {
        return Ok(Scored { value, grads: None });
    }
    let own = if comm.world() > 1 {
        let device = d_all.0.device();
        reduce_scatter_rows(comm, d_all, &device)?
    } else {
        d_all
    };
    Ok(Scored {
        value,
        grads: Some((own, logit_grads.grads())),
    })
}

/// `loss × scale` (the loss itself when the scale is 1).
fn scaled(loss: Tensor<1>, scale: f64) -> Tensor<1> {
    if scale == 1.0 {
        loss
    } else {
        loss.mul_scalar(scale)
    }
}

/// `work(rank, item)` for every item, results in rank order: with `threaded`, each on its own
/// thread (a device's queue is fed by its own thread, as in burn-train's multi-device step),
/// and a panic on any rank is re-raised here after every thread has finished; else in turn.
fn on_every_rank<T: Send, R: Send>(
    items: Vec<T>,
    threaded: bool,
    work: impl Fn(usize, T) -> R + Sync,
) -> Vec<R> {
    if !threaded {
        return items
            .into_iter()
            .enumerate()
            .map(|(rank, item)| work(rank, item))
            .collect();
    }
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .into_iter()
            .enumerate()
            .map(|(rank, item)| scope.spawn(move || work(rank, item)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests;
