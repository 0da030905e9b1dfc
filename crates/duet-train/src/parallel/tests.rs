//! Data parallelism over processes (ranks of an in-process [`ThreadGroup`], the same code path
//! as MPI's) and devices: the gradients are the global batch's.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use duet_dist::{Collective, Solo, ThreadGroup};
use duet_loss::Loss;
use duet_model::{ClipModel, preset};

use crate::optim::float_params;
use crate::{NonFinite, OptimizerConfig, Stepper};

/// 8 random images and 8 distinct captions, and a tiny model for `loss` (SigLIP's with a bias).
fn setup(loss: Loss) -> (ClipModel, Tensor<4>, Tensor<2, Int>) {
    let device = Device::flex().autodiff();
    let mut config = preset("tiny").expect("preset");
    config.logit_scale_init = 2.0;
    config.logit_bias_init = loss.init_logit_bias();
    let model = config.init(&device).expect("model");
    crate::lazy::materialize(&model);
    let images = Tensor::<4>::random([8, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let mut ids = vec![0_i64; 8 * 77];
    for (i, row) in ids.chunks_mut(77).enumerate() {
        row[..4].copy_from_slice(&[49406, 320 + i as i64 * 7, 1125 + i as i64, 49407]);
    }
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [8, 77]), &device);
    (model, images, tokens)
}

fn stepper(loss: Loss, model: &ClipModel) -> Stepper {
    Stepper::new(loss, &OptimizerConfig::default(), NonFinite::Stop, model)
}

/// Every float parameter's gradient on the host, in module order (`None`: no gradient).
type HostGrads = Vec<(String, Option<Vec<f32>>)>;

fn host_grads(model: &ClipModel, grads: &burn::optim::GradientsParams) -> HostGrads {
    float_params(model)
        .into_iter()
        .map(|p| {
            let values = match p.rank {
                1 => grads.get::<1>(p.id).map(|g| g.into_data()),
                2 => grads.get::<2>(p.id).map(|g| g.into_data()),
                3 => grads.get::<3>(p.id).map(|g| g.into_data()),
                4 => grads.get::<4>(p.id).map(|g| g.into_data()),
                _ => None,
            };
            let values = values.map(|d| d.try_into_vec::<f32>().expect("f32"));
            (p.path, values)
        })
        .collect()
}

/// The loss and gradients of `world` processes, each with its own replica and `8 / world`
/// pairs, in threads joined by a [`ThreadGroup`]; results in rank order.
fn on_processes(
    loss: Loss,
    model: &ClipModel,
    images: &Tensor<4>,
    tokens: &Tensor<2, Int>,
    world: usize,
    accum: usize,
    local_loss: bool,
) -> Vec<(f64, HostGrads)> {
    let device = Device::flex().autodiff();
    let n = 8 / world;
    let work: Vec<_> = ThreadGroup::new(world)
        .into_iter()
        .map(|group| {
            let rank = group.rank();
            // Each process has its own copy of the weights (own autodiff leaves, same ids).
            let replica = model.clone().fork(&device);
            let images = images.clone().narrow(0, rank * n, n);
            let tokens = tokens.clone().narrow(0, rank * n, n);
            (group, replica, images, tokens)
        })
        .collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = work
            .into_iter()
            .map(|(group, replica, images, tokens)| {
                scope.spawn(move || {
                    let stepper = stepper(loss, &replica).with_local_loss(local_loss);
                    let (value, grads) = stepper
                        .gradients(&replica, images, tokens, accum, 0, &group)
                        .expect("gradients");
                    (value, host_grads(&replica, &grads.expect("finite")))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("rank thread"))
            .collect()
    })
}

/// Each gradient of `b` within 1e-4 of `a`'s largest value (1e-7 floor for gradients that are
/// zero in exact arithmetic, such as attention key biases); both present or both absent.
fn assert_close(a: &HostGrads, b: &HostGrads, what: &str) {
    assert_eq!(a.len(), b.len());
    for ((path, x), (_, y)) in a.iter().zip(b) {
        let (Some(x), Some(y)) = (x, y) else {
            assert_eq!(
                x.is_some(),
                y.is_some(),
                "{what}: {path}: present in one only"
            );
            continue;
        };
        let scale = x.iter().fold(1e-6_f32, |m, v| m.max(v.abs()));
        let worst = x
            .iter()
            .zip(y)
            .fold(0.0_f32, |m, (u, v)| m.max((u - v).abs()));
        assert!(
            worst <= 1e-4 * scale + 1e-7,
            "{what}: {path}: {worst} vs max {scale}"
        );
    }
}

#[test]
fn processes_give_the_global_batch_gradients_with_either_loss_layout() {
    // 8 pairs on one process against 2 and 4 processes, with and without accumulation, with
    // the global logits matrix and with each block's rows only (memory-linear): every rank's
    // loss is the global loss and its all-reduced gradients are the one-process gradients of
    // the 8 pairs, logit_scale (and SigLIP's logit_bias) included, counted once.
    for loss in [Loss::info_nce(), Loss::sigmoid()] {
        let (model, images, tokens) = setup(loss);
        let (full_loss, full) = stepper(loss, &model)
            .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
            .expect("gradients");
        let full = host_grads(&model, &full.expect("finite"));
        assert!(
            full.iter().all(|(_, g)| g.is_some()),
            "every parameter trains"
        );
        for (world, accum, local_loss) in [
            (2, 1, false),
            (2, 1, true),
            (2, 2, false),
            (2, 2, true),
            (4, 1, true),
        ] {
            let what = format!("{loss:?} world {world} accum {accum} local {local_loss}");
            for (rank, (value, grads)) in
                on_processes(loss, &model, &images, &tokens, world, accum, local_loss)
                    .into_iter()
                    .enumerate()
            {
                assert!(
                    (value - full_loss).abs() <= 1e-6 * full_loss.abs(),
                    "{what} rank {rank}: {value} vs {full_loss}"
                );
                assert_close(&full, &grads, &format!("{what} rank {rank}"));
            }
        }
    }
}

#[test]
fn processes_devices_and_accumulation_with_the_same_blocks_agree_bitwise() {
    // The same two blocks of 4 pairs three ways: one process accumulating 2 micro-batches, one
    // process on 2 (CPU) devices, and 2 processes. Each encodes the same blocks and sums the
    // same two per-block gradients, so loss and gradients are bit for bit the same: what
    // resuming a 2-process run on 1 process with accum_freq = 2 relies on.
    let loss = Loss::info_nce();
    let (model, images, tokens) = setup(loss);
    let device = Device::flex().autodiff();
    let (accumulated_loss, accumulated) = stepper(loss, &model)
        .gradients(&model, images.clone(), tokens.clone(), 2, 0, &Solo)
        .expect("gradients");
    let accumulated = host_grads(&model, &accumulated.expect("finite"));
    let (devices_loss, devices) = stepper(loss, &model)
        .with_devices(&[device.clone(), device])
        .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
        .expect("gradients");
    let devices = host_grads(&model, &devices.expect("finite"));
    assert_eq!(accumulated_loss.to_bits(), devices_loss.to_bits());
    assert_eq!(accumulated, devices, "two devices vs accumulation");
    for (rank, (value, grads)) in on_processes(loss, &model, &images, &tokens, 2, 1, false)
        .into_iter()
        .enumerate()
    {
        assert_eq!(value.to_bits(), accumulated_loss.to_bits(), "rank {rank}");
        assert_eq!(grads, accumulated, "rank {rank}: processes vs accumulation");
    }
}

#[test]
fn a_process_that_fails_ends_the_others_naming_it() {
    // Rank 1 gives up before its first collective (as a data error would end it): rank 0's
    // step fails at once, naming rank 1, instead of waiting for it.
    let loss = Loss::info_nce();
    let (model, images, tokens) = setup(loss);
    let mut groups = ThreadGroup::new(2);
    let rank1 = groups.pop().expect("rank 1");
    let rank0 = groups.pop().expect("rank 0");
    let failing = std::thread::spawn(move || rank1.leave("data: no usable samples"));
    let err = stepper(loss, &model)
        .gradients(
            &model,
            images.narrow(0, 0, 4),
            tokens.narrow(0, 0, 4),
            1,
            0,
            &rank0,
        )
        .expect_err("rank 1 left");
    failing.join().expect("rank 1 thread");
    let message = err.to_string();
    assert!(message.starts_with("rank 0: features: "), "{message}");
    assert!(
        message.contains("rank 1 left the job (data: no usable samples)"),
        "{message}"
    );
}
