//! Contrastive objectives on paired image/text embeddings: symmetric InfoNCE (CLIP) and the
//! sigmoid loss (SigLIP). Tensors in, a scalar out; no model, no data.
//!
//! # Conventions
//!
//! - **Features are normalised here.** Every loss L2-normalises each row of its inputs, so
//!   callers may pass raw projections or already-normalised ones: renormalising a unit vector
//!   changes neither its value nor its gradient. (OpenCLIP's losses expect normalised features
//!   from `encode_*(normalize=True)`; doing it here removes a way to get it wrong.)
//! - **`logit_scale` is the raw parameter**, shape `[1]`: the losses apply `exp`. OpenCLIP's
//!   losses instead take `logit_scale.exp()` from the model. `logit_bias` (SigLIP only) is used
//!   as is.
//! - **Multi-device batches are inputs, not communication.** A [`ContrastiveBatch`] holds the
//!   local features and, optionally, the features gathered from all devices ([`Gathered`]);
//!   the losses do the same math either way, so a global batch plugs in without changes here.
//! - The objective is chosen by the [`Loss`] enum, which also carries the init values of the
//!   learnable scalars.
//!
//! # Example
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use duet_loss::{ContrastiveBatch, Loss};
//!
//! let device = Device::flex();
//! let image = Tensor::<2>::from_data([[1.0, 0.0], [0.0, 1.0]], &device); // [b, e]
//! let text = Tensor::<2>::from_data([[1.0, 0.0], [0.0, 1.0]], &device); // [b, e]
//! let loss = Loss::sigmoid();
//! let logit_scale = Tensor::<1>::from_data([loss.init_logit_scale()], &device); // [1]
//! let logit_bias = loss
//!     .init_logit_bias()
//!     .map(|b| Tensor::<1>::from_data([b], &device)); // [1]
//! let value = loss.compute(ContrastiveBatch::new(image, text), logit_scale, logit_bias)?;
//! assert_eq!(value.dims(), [1]);
//! # Ok::<(), duet_loss::LossError>(())
//! ```
//!
//! Reference: open_clip_torch 3.3.0 (PyPI), `open_clip/loss.py` (`ClipLoss`, `SigLipLoss`).

mod batch;
mod error;
mod info_nce;
mod loss;
mod ops;
mod siglip;

#[cfg(test)]
mod test_util;

pub use batch::{BatchDims, ContrastiveBatch, Gathered};
pub use error::LossError;
pub use info_nce::{INFO_NCE_INIT_LOGIT_SCALE, info_nce_loss};
pub use loss::Loss;
pub use siglip::{SIGLIP_INIT_LOGIT_BIAS, SIGLIP_INIT_LOGIT_SCALE, siglip_loss};
