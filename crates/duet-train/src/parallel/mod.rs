//! Data parallelism over several devices of one process, with the negatives of the global batch.
//!
//! burn 0.22.1 has collectives (a differentiable `all_reduce`, and the DDP strategy built on it)
//! for CUDA only: flex has none, and a collective on a wgpu device panics inside cubecl
//! (`burn-backend-extension` 0.22.1 `catalog.rs`). And no GPU has been available to run or test
//! the CUDA build. So duet runs data parallelism the way burn-train's `MultiDevice` strategy does
//! (`learner/supervised/strategies/multi/epoch.rs`, `OptimMainDevice`), through `to_device` and
//! [`GradientsAccumulator`], which every backend has:
//!
//! 1. the step's batch is split into one equal slice per device; rank `r` encodes its slice on
//!    `devices[r]` with a replica of the model ([`Module::fork`]);
//! 2. the gather: each rank's features, detached, are copied to every device, and each rank
//!    takes the contrastive loss of the *global* batch, with its own features live in place
//!    (OpenCLIP `loss.py` `gather_features` with `gather_with_grad=False, local_loss=False`);
//! 3. each rank back-propagates; the gradients are moved to `devices[0]` and summed, and the
//!    optimizer steps there; the next step forks the updated model again.
//!
//! Every tower parameter's summed gradient is then exactly that of the global batch on one
//! device: the global loss depends on the parameters only through the features, and rank `r`
//! contributes exactly its features' part. `logit_scale` (and `logit_bias`) are live on rank 0
//! only, for the same reason as in gradient accumulation ([`crate::Stepper::gradients`]): OpenCLIP
//! averages N copies of the same scale gradient under DDP, duet sums one.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use duet_loss::Loss;
use duet_model::ClipModel;

use crate::TrainError;
use crate::step::{backward_apart, block_loss, encode_apart};

/// The loss of the whole batch and its gradients, on `devices[0]` (`None` when the loss is not
/// finite); see the module docs. `images` is `[b, 3, s, s]` and `tokens` `[b, t]` on
/// `devices[0]`, with `b` a multiple of the device count times `accum`.
///
/// With `accum > 1` each rank's slice is `accum` micro-batches, and the feature cache of
/// [`crate::Stepper::gradients`] runs over all of them: every rank's every micro-batch is
/// encoded and detached first (block `rank · accum + j`, the order of the global batch), then
/// each rank re-encodes micro-batch `j` with gradients against every other block, for each
/// `j` in turn, and the gradients of all passes are summed. `logit_scale` is live in block 0's
/// pass only, so the sum is again exactly the one-device gradient of the global batch.
pub(crate) fn gradients(
    loss: Loss,
    model: &ClipModel,
    images: Tensor<4>,
    tokens: Tensor<2, Int>,
    devices: &[Device],
    accum: usize,
    step: u64,
) -> Result<(f64, Option<GradientsParams>), TrainError> {
    let world = devices.len();
    let accum = accum.max(1);
    let Some(main) = devices.first() else {
        return Err(TrainError::invalid("devices", "no device given"));
    };
    let [b, ..] = images.dims();
    if b % (world * accum) != 0 {
        let (key, what) = match (world, accum) {
            (1, _) => ("train.accum_freq", format!("{accum} equal micro-batches")),
            (_, 1) => (
                "train.batch_size",
                format!("{world} equal per-device slices"),
            ),
            _ => (
                "train.accum_freq",
                format!("{world} devices × {accum} micro-batches"),
            ),
        };
        return Err(TrainError::invalid(
            key,
            format!("a batch of {b} does not split into {what}"),
        ));
    }
    // burn draws parameters lazily from a process-wide generator: draw any still pending
    // before the replicas are forked and the ranks' threads start.
    crate::run::materialize(model);
    let ranks: Vec<_> = images
        .chunk(world, 0)
        .into_iter()
        .zip(tokens.chunk(world, 0))
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
            let micro: Vec<(Tensor<4>, Tensor<2, Int>)> = images
                .to_device(device)
                .chunk(accum, 0)
                .into_iter()
                .zip(tokens.to_device(device).chunk(accum, 0))
                .collect();
            (replica, micro)
        })
        .collect();

    // Ranks on distinct devices run on threads of their own; ranks sharing a device run in
    // turn: one device gains nothing from threads (flex already spreads an op over every
    // core), and concurrent autodiff passes over one device's shared buffers were seen to
    // change a step's loss under load.
    let threaded = devices
        .iter()
        .enumerate()
        .all(|(i, device)| !devices[..i].contains(device));
    // 1. Every rank's features of every micro-batch. With one micro-batch they keep their
    //    graph for the backward; with several they are recomputed one at a time in 3.
    let encoded = on_every_rank(ranks, threaded, |_, (replica, micro)| {
        let features: Vec<(Tensor<2>, Tensor<2>)> = micro
            .iter()
            .map(|(images, tokens)| {
                let (image, text) = encode_apart(&replica, images.clone(), tokens.clone());
                if accum == 1 {
                    (image, text)
                } else {
                    (image.detach(), text.detach())
                }
            })
            .collect();
        (replica, micro, features)
    });
    // 2. The gather: every block's features, without their graphs, in global-batch order.
    let gathered: Vec<(Tensor<2>, Tensor<2>)> = encoded
        .iter()
        .flat_map(|(_, _, features)| features.iter())
        .map(|(image, text)| (image.clone().detach(), text.clone().detach()))
        .collect();
    // 3. The global loss with each of the rank's blocks live in turn, back-propagated into the
    //    rank's replica, summed there and moved to the main device.
    let results = on_every_rank(encoded, threaded, |rank, (replica, micro, features)| {
        let device = &devices[rank];
        let images: Vec<Tensor<2>> = gathered
            .iter()
            .map(|(image, _)| image.clone().to_device(device))
            .collect();
        let texts: Vec<Tensor<2>> = gathered
            .iter()
            .map(|(_, text)| text.clone().to_device(device))
            .collect();
        let logits = (
            replica.logit_scale.val(),
            replica.logit_bias.as_ref().map(|b| b.val()),
        );
        let mut summed = GradientsAccumulator::<ClipModel>::new();
        let mut value = f64::NAN;
        for (j, ((images_j, tokens_j), kept)) in micro.into_iter().zip(features).enumerate() {
            let live = if accum == 1 {
                kept
            } else {
                encode_apart(&replica, images_j, tokens_j)
            };
            let block = rank * accum + j;
            let (block_value, grads) = backward_apart(&replica, live, |image, text| {
                block_loss(
                    loss,
                    images.clone(),
                    texts.clone(),
                    block,
                    (image, text),
                    logits.clone(),
                    step,
                )
            })?;
            if j == 0 {
                value = block_value;
            }
            let Some(grads) = grads else {
                return Ok((block_value, None));
            };
            summed.accumulate(&replica, grads);
        }
        Ok((value, Some(summed.grads().to_device(main, &replica))))
    });

    let mut accumulator = GradientsAccumulator::<ClipModel>::new();
    let mut value = f64::NAN;
    for (rank, result) in results.into_iter().enumerate() {
        let (rank_value, grads) = result?;
        if rank == 0 {
            value = rank_value;
        }
        let Some(grads) = grads else {
            return Ok((rank_value, None));
        };
        accumulator.accumulate(model, grads);
    }
    Ok((value, Some(accumulator.grads())))
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
