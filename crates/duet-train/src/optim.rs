//! AdamW with OpenCLIP's parameter groups, and global-norm gradient clipping.
//!
//! OpenCLIP (open_clip_train 3.3 `main.py`) decays only weight matrices: parameters with fewer
//! than 2 dimensions (gains, biases, `logit_scale`, the class token) get no weight decay. duet
//! also exempts the token and position embeddings, as this project's trainer spec asks; the patch
//! projection (a conv weight) is decayed, as in OpenCLIP. burn's `ModuleOptimizer` matches groups
//! by parameter path, so the no-decay group is the list of those paths.
//!
//! burn's own clipping is per tensor; [`clip_global_norm`] is PyTorch's `clip_grad_norm_`: one
//! norm over every gradient, each scaled by `min(1, max_norm / (norm + 1e-6))`.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::OptimizerConfig;

/// A float parameter: its module path (`vision.blocks.0.attn.q.weight`), rank and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Dotted module path, as burn's optimizer groups match it.
    pub path: String,
    /// Number of dimensions.
    pub rank: usize,
    /// The parameter's id.
    pub id: ParamId,
}

impl ParamInfo {
    /// Whether AdamW's weight decay skips this parameter: rank < 2 (gains, biases,
    /// `logit_scale`) or an embedding table (`*_embedding`, `*_embeddings`).
    pub fn no_decay(&self) -> bool {
        self.rank < 2
            || self
                .path
                .split('.')
                .any(|part| part.ends_with("embedding") || part.ends_with("embeddings"))
    }
}

#[derive(Default)]
struct Collect {
    stack: Vec<String>,
    params: Vec<ParamInfo>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.params.push(ParamInfo {
            path: self.stack.join("."),
            rank: D,
            id: param.id,
        });
    }
}

/// Every float parameter of `module`, in visiting order.
pub fn float_params<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut collect = Collect::default();
    module.visit(&mut collect);
    collect.params
}

/// AdamW over `module`'s parameters: `config`'s weight decay on weight matrices, none on the
/// parameters [`ParamInfo::no_decay`] names.
pub fn adamw<M: Module>(config: &OptimizerConfig, module: &M) -> ModuleOptimizer {
    let base = AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_beta_2(config.beta2 as f32)
        .with_epsilon(config.eps as f32);
    let exempt: Vec<String> = float_params(module)
        .into_iter()
        .filter(ParamInfo::no_decay)
        .map(|p| p.path)
        .collect();
    let decayed = base.clone().with_weight_decay(config.weight_decay as f32);
    let optimizer = decayed.init();
    if exempt.is_empty() {
        return optimizer;
    }
    optimizer.with_group(
        ParamGroup::from_paths(exempt),
        base.with_weight_decay(0.0).build(),
        None,
    )
}

/// The global L2 norm of `grads` over `params`, before clipping; when it exceeds `max_norm`,
/// every gradient is scaled by `max_norm / (norm + 1e-6)` (PyTorch `clip_grad_norm_`).
pub fn clip_global_norm(grads: &mut GradientsParams, params: &[ParamInfo], max_norm: f64) -> f64 {
    let norm = global_norm(grads, params);
    clip_to(grads, params, max_norm, norm);
    norm
}

/// The L2 norm of every gradient of `params` together (one host read); not finite when any
/// gradient is not.
pub fn global_norm(grads: &GradientsParams, params: &[ParamInfo]) -> f64 {
    let mut squares: Option<Tensor<1>> = None;
    for p in params {
        let sum = match p.rank {
            1 => squared_sum::<1>(grads, p.id),
            2 => squared_sum::<2>(grads, p.id),
            3 => squared_sum::<3>(grads, p.id),
            4 => squared_sum::<4>(grads, p.id),
            _ => None,
        };
        if let Some(sum) = sum {
            squares = Some(match squares {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
    match squares {
        Some(squares) => f64::from(squares.sqrt().into_scalar::<f32>()),
        None => 0.0,
    }
}

/// Scales every gradient by `max_norm / (norm + 1e-6)` when that is below 1, `norm` being
/// [`global_norm`]'s.
pub fn clip_to(grads: &mut GradientsParams, params: &[ParamInfo], max_norm: f64, norm: f64) {
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        multiply(grads, params, coef);
    }
}

/// Multiplies every gradient of `params` by `coef`.
pub fn multiply(grads: &mut GradientsParams, params: &[ParamInfo], coef: f64) {
    for p in params {
        match p.rank {
            1 => scale::<1>(grads, p.id, coef),
            2 => scale::<2>(grads, p.id, coef),
            3 => scale::<3>(grads, p.id, coef),
            4 => scale::<4>(grads, p.id, coef),
            _ => {}
        }
    }
}

fn squared_sum<const D: usize>(grads: &GradientsParams, id: ParamId) -> Option<Tensor<1>> {
    grads.get::<D>(id).map(|g| g.square().sum())
}

fn scale<const D: usize>(grads: &mut GradientsParams, id: ParamId, coef: f64) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register(id, g.mul_scalar(coef));
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};
    use duet_model::preset;

    use super::*;

    #[test]
    fn no_decay_group_follows_openclip_plus_embeddings() {
        let model = preset("tiny")
            .expect("preset")
            .init(&Device::flex())
            .expect("model");
        let params = float_params(&model);
        let exempt = |path: &str| {
            params
                .iter()
                .find(|p| p.path == path)
                .unwrap_or_else(|| panic!("no parameter {path}: {params:?}"))
                .no_decay()
        };
        assert!(exempt("logit_scale"));
        assert!(exempt("text.token_embedding.weight"));
        assert!(exempt("text.position_embedding"));
        assert!(exempt("vision.class_embedding"));
        assert!(exempt("vision.ln_pre.gamma"));
        assert!(exempt("vision.blocks.0.attn.q.bias"));
        assert!(!exempt("vision.blocks.0.attn.q.weight"));
        assert!(!exempt("vision.patch_embed.weight"));
        assert!(!exempt("text.proj.weight"));
    }

    #[test]
    fn every_parameter_of_a_fresh_model_gets_a_gradient() {
        // Regression: biases once were re-created by `Param::map(zeros_like)`, which drops them
        // out of autodiff; they then never trained (found by the exact-resume test).
        let device = Device::flex().autodiff();
        let model = preset("tiny")
            .expect("preset")
            .init(&device)
            .expect("model");
        let images = Tensor::<4>::ones([2, 3, 64, 64], &device);
        let ids = vec![49406_i64, 320, 49407]
            .into_iter()
            .chain(std::iter::repeat_n(0, 74));
        let ids: Vec<i64> = ids.clone().chain(ids).collect();
        let tokens =
            Tensor::<2, burn::tensor::Int>::from_data(TensorData::new(ids, [2, 77]), &device);
        let loss = model
            .encode_image(images)
            .sum()
            .add(model.encode_text(tokens).sum())
            .add(model.logit_scale.val().sum());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let missing: Vec<String> = float_params(&model)
            .into_iter()
            .filter(|p| match p.rank {
                1 => grads.get::<1>(p.id).is_none(),
                2 => grads.get::<2>(p.id).is_none(),
                3 => grads.get::<3>(p.id).is_none(),
                _ => grads.get::<4>(p.id).is_none(),
            })
            .map(|p| p.path)
            .collect();
        assert!(missing.is_empty(), "no gradient for {missing:?}");
    }

    #[test]
    fn weight_decay_skips_the_no_decay_group() {
        // Zero gradients: AdamW's update is 0, only decoupled decay moves a parameter,
        // w <- w * (1 - lr * wd) = w * (1 - 0.1 * 0.2) = 0.98 w. ln_pre.gamma must not move.
        // The optimizer works on autodiff parameters, as in training.
        let device = Device::flex().autodiff();
        let model = preset("tiny")
            .expect("preset")
            .init(&device)
            .expect("model");
        let q = model.vision.blocks[0].attn.q.weight.clone();
        let gamma = model.vision.ln_pre.as_ref().expect("ln_pre").gamma.clone();
        let mut grads = GradientsParams::new();
        grads.register(q.id, q.val().zeros_like());
        grads.register(gamma.id, gamma.val().zeros_like());
        let config = OptimizerConfig::default();
        let mut optimizer = adamw(&config, &model);
        let stepped = optimizer.step(0.1, model, grads);
        let before = q.val().into_data().try_to_vec::<f32>().expect("f32");
        let after = stepped.vision.blocks[0]
            .attn
            .q
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        for (b, a) in before.iter().zip(&after) {
            assert!((a - 0.98 * b).abs() < 1e-6, "{a} vs 0.98 * {b}");
        }
        let gamma_after = stepped
            .vision
            .ln_pre
            .as_ref()
            .expect("ln_pre")
            .gamma
            .val()
            .into_data();
        assert_eq!(gamma_after, gamma.val().into_data(), "no decay on gains");
    }

    fn values<const D: usize>(grads: &GradientsParams, id: ParamId) -> Vec<f32> {
        grads
            .get::<D>(id)
            .expect("a gradient")
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    #[test]
    fn global_norm_clipping_scales_all_gradients_together() {
        // Two gradients, [3, 0] and [[0, 4]]: global norm 5. Clipping to 1 scales both by
        // 1 / (5 + 1e-6): [0.6, 0] and [[0, 0.8]]; per-tensor clipping would give [1, 0].
        let device = Device::flex();
        let a: Tensor<1> = Tensor::from_data(TensorData::from([3.0_f32, 0.0]), &device);
        let b: Tensor<2> = Tensor::from_data(TensorData::from([[0.0_f32, 4.0]]), &device);
        let (ida, idb) = (ParamId::new(), ParamId::new());
        let mut grads = GradientsParams::new();
        grads.register(ida, a);
        grads.register(idb, b);
        let params = [
            ParamInfo {
                path: "a".into(),
                rank: 1,
                id: ida,
            },
            ParamInfo {
                path: "b".into(),
                rank: 2,
                id: idb,
            },
        ];
        let norm = clip_global_norm(&mut grads, &params, 1.0);
        assert!((norm - 5.0).abs() < 1e-6, "{norm}");
        let a = values::<1>(&grads, ida);
        let b = values::<2>(&grads, idb);
        assert!((a[0] - 0.6).abs() < 1e-6 && a[1] == 0.0, "{a:?}");
        assert!((b[1] - 0.8).abs() < 1e-6 && b[0] == 0.0, "{b:?}");
        // Under the limit nothing changes: norm 1 (after clipping) <= 10.
        let norm = clip_global_norm(&mut grads, &params, 10.0);
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        let a = values::<1>(&grads, ida);
        assert!((a[0] - 0.6).abs() < 1e-6);
    }
}
