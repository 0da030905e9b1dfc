//! The pre-norm transformer block both towers share: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, FloatDType, Tensor};

use crate::config::Activation;
use crate::precision::{Precision, attention_in, to};

/// Shape of one block, derived from a tower config.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    /// Model width `d`.
    pub width: usize,
    /// Attention heads; divides `width`.
    pub heads: usize,
    /// MLP hidden size.
    pub mlp_dim: usize,
    /// MLP non-linearity.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Blocks in the tower, for OpenCLIP's depth-scaled init of the output projections.
    pub depth: usize,
}

/// Multi-head self-attention with separate q/k/v projections (the HF layout; OpenCLIP's fused
/// `in_proj_weight` is split on import).
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection, `[d, d]` with bias.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub out: Linear,
    heads: usize,
    #[module(skip)]
    precision: Precision,
}

/// The block's MLP: `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d, mlp_dim]` with bias.
    pub fc1: Linear,
    /// `[mlp_dim, d]` with bias.
    pub fc2: Linear,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    precision: Precision,
}

/// A pre-norm residual attention block.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub ln_1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

impl BlockConfig {
    /// A block with OpenCLIP's init (open_clip transformer.py@v3.3.0 `TextTransformer.init_parameters`):
    /// attention std `d^-0.5`, output projections `d^-0.5 * (2 * depth)^-0.5`, `fc1` `(2d)^-0.5`.
    pub fn init(&self, device: &Device) -> Block {
        let d = self.width as f64;
        let attn_std = d.powf(-0.5);
        let proj_std = attn_std * (2.0 * self.depth as f64).powf(-0.5);
        let fc_std = (2.0 * d).powf(-0.5);
        let linear = |d_in: usize, d_out: usize, std: f64| {
            let mut layer = LinearConfig::new(d_in, d_out)
                .with_initializer(normal(std))
                .init(device);
            // Biases start at zero, as torch's MultiheadAttention and OpenCLIP leave them. A new
            // parameter, not `Param::map`: a mapped `zeros_like` would drop out of autodiff and
            // never train.
            layer.bias = layer.bias.map(|b| Param::from_tensor(b.val().zeros_like()));
            layer
        };
        let ln = || {
            LayerNormConfig::new(self.width)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        Block {
            ln_1: ln(),
            attn: Attention {
                q: linear(self.width, self.width, attn_std),
                k: linear(self.width, self.width, attn_std),
                v: linear(self.width, self.width, attn_std),
                out: linear(self.width, self.width, proj_std),
                heads: self.heads,
                precision: Precision::F32,
            },
            ln_2: ln(),
            mlp: Mlp {
                fc1: linear(self.width, self.mlp_dim, fc_std),
                fc2: linear(self.mlp_dim, self.width, proj_std),
                activation: self.activation,
                precision: Precision::F32,
            },
        }
    }
}

impl Attention {
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// Scaled dot-product self-attention with scale `1/sqrt(d/heads)`.
    ///
    /// `x`: `[b, t, d]` -> `[b, t, d]` (f32 in every [`Precision`]). `causal` masks every key
    /// after its query.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        self.attend(x.clone(), x, causal)
    }

    /// Attention of `query` `[b, tq, d]` over `context` `[b, tk, d]` -> `[b, tq, d]`: queries
    /// projected from the one, keys and values from the other (SigLIP's pooling probe).
    pub fn attend(&self, query: Tensor<3>, context: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, tq, d] = query.dims();
        let [_, tk, _] = context.dims();
        let head_dim = d / self.heads;
        let split =
            |y: Tensor<3>, t: usize| y.reshape([b, t, self.heads, head_dim]).swap_dims(1, 2);
        let merge = |y: Tensor<4>| y.swap_dims(1, 2).reshape([b, tq, d]);
        if let Some(dtype) = self.precision.low() {
            let (query, context) = (to(query, dtype), to(context, dtype));
            let q = split(linear_in(&self.q, query, dtype), tq);
            let k = split(linear_in(&self.k, context.clone(), dtype), tk);
            let v = split(linear_in(&self.v, context, dtype), tk);
            let out = attention_in(q, k, v, causal, dtype);
            return to(linear_in(&self.out, merge(out), dtype), FloatDType::F32);
        }
        let q = split(self.q.forward(query), tq);
        let k = split(self.k.forward(context.clone()), tk);
        let v = split(self.v.forward(context), tk);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        let out = attention(q, k, v, None, None, options);
        self.out.forward(merge(out))
    }
}

/// `layer(x)` with `x`, the weight and the bias in `dtype` (the f32 parameters cast per call).
pub(crate) fn linear_in<const D: usize>(
    layer: &Linear,
    x: Tensor<D>,
    dtype: FloatDType,
) -> Tensor<D> {
    burn::tensor::module::linear(
        to(x, dtype),
        to(layer.weight.val(), dtype),
        layer.bias.as_ref().map(|b| to(b.val(), dtype)),
    )
}

/// `gelu(x)` (the exact, erf form) whose gradient is the exact `Φ(x) + x·φ(x)` on every
/// device. burn's default `gelu_backward`, which its cubecl backends (wgpu, CUDA) keep, is the
/// derivative of the *tanh approximation* while the forward is the erf form: 3.3e-4 relative
/// off torch's gradient for GELU alone on wgpu. Flex's own backward is exact, so the CPU keeps
/// `gelu` itself (bitwise as before).
///
/// Elsewhere: `gelu(z) + (x − z)·slope` with `z = x` detached and `slope` the exact derivative
/// at `z`, computed in f32 and kept in `x`'s type. `x − z` is 0, so the value is `gelu(x)`'s
/// bit for bit; the only path the gradient takes is `(x − z)·slope`, so it is `slope·grad`.
/// The backward keeps one tensor of `x`'s size (`slope`), as `gelu`'s keeps `x`.
fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device().inner() == Device::flex() {
        gelu(x)
    } else {
        gelu_erf_slope(x)
    }
}

/// See [`gelu_exact`]: `gelu(z) + (x − z)·slope`.
fn gelu_erf_slope<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    let z = x.clone().detach();
    let zf = to(z.clone(), FloatDType::F32);
    // Φ(z) = (1 + erf(z/√2))/2; φ(z) = exp(−z²/2)/√(2π).
    let cdf = (zf.clone() / std::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    let pdf = (zf.clone().powi_scalar(2) * -0.5)
        .exp()
        .mul_scalar(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
    let slope = (cdf + zf * pdf).cast(dtype);
    gelu(z.clone()) + (x - z) * slope
}

impl Mlp {
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// `x`: `[b, t, d]` -> `[b, t, d]`.
    ///
    /// In a low [`Precision`] the hidden activations stay in it; the output is f32.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let low = self.precision.low();
        let h = match low {
            Some(dtype) => linear_in(&self.fc1, x, dtype),
            None => self.fc1.forward(x),
        };
        let h = match self.activation {
            Activation::Gelu => gelu_exact(h),
            // OpenAI CLIP model.py: x * sigmoid(1.702 * x).
            Activation::QuickGelu => h.clone() * sigmoid(h * 1.702),
            Activation::GeluTanh => gelu_approximate(h),
        };
        match low {
            Some(dtype) => to(linear_in(&self.fc2, h, dtype), FloatDType::F32),
            None => self.fc2.forward(h),
        }
    }
}

impl Block {
    /// The precision of the block's attention and MLP (see [`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.attn.precision = precision;
        self.mlp.precision = precision;
    }

    /// `x`: `[b, t, d]` -> `[b, t, d]`.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), causal);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::{gelu, gelu_erf_slope};

    /// The route the GPUs take, run on flex (whose own GELU backward is exact): the same
    /// values bit for bit, and the same gradient as flex's `gelu_backward`. By hand at x = 1:
    /// Φ(1) + φ(1) = 0.841345 + 0.241971 = 1.083316; at x = −2: Φ(−2) − 2φ(−2) = 0.022750 −
    /// 0.107982 = −0.085232.
    #[test]
    fn erf_slope_gelu_is_gelu_with_the_exact_gradient() {
        let device = Device::flex().autodiff();
        let xs = [-4.0f32, -2.0, -1.0, -0.3, 0.0, 0.5, 1.0, 2.5, 6.0];
        let input = || {
            Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), &device).require_grad()
        };
        let run = |f: fn(Tensor<1>) -> Tensor<1>| {
            let x = input();
            let y = f(x.clone());
            let grads = y.clone().sum().backward();
            let value: Vec<f32> = y.into_data().try_to_vec::<f32>().expect("f32");
            let grad: Vec<f32> = x
                .grad(&grads)
                .expect("grad")
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32");
            (value, grad)
        };
        let (value, grad) = run(gelu_erf_slope);
        let (flex_value, flex_grad) = run(gelu);
        assert_eq!(value, flex_value, "the value is gelu's, bit for bit");
        for (i, (a, b)) in grad.iter().zip(&flex_grad).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6,
                "x = {}: {a} against flex's {b}",
                xs[i]
            );
        }
        assert!((grad[6] - 1.083316).abs() < 1e-5, "{}", grad[6]);
        assert!((grad[1] + 0.085232).abs() < 1e-5, "{}", grad[1]);
    }
}
