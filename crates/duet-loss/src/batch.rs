//! What the losses consume: one device's paired features and, optionally, the global batch.

use burn::tensor::Tensor;

use crate::LossError;

/// Paired image and text features of one device's batch, plus the global batch when training on
/// several devices.
///
/// Row `i` of `image` is paired with row `i` of `text`. Features need not be unit-norm: both
/// losses L2-normalise every row themselves (see the crate docs for why).
#[derive(Debug, Clone)]
pub struct ContrastiveBatch {
    /// Local image features, `[b, e]`.
    pub image: Tensor<2>,
    /// Local text features, `[b, e]`, row `i` describing `image` row `i`.
    pub text: Tensor<2>,
    /// Features of all devices, or `None` on a single device (then the local batch *is* the
    /// global batch).
    pub gathered: Option<Gathered>,
}

/// Features gathered from every device (all-gather, concatenated in rank order).
///
/// Chunk `rank` (rows `rank * b .. (rank + 1) * b`) must be this device's own local features; the
/// losses rely on that to place the positives, and do not check it (it would cost a comparison of
/// values every step). Gather *with* gradient (OpenCLIP `gather_with_grad=True`) if the other
/// devices' towers should learn from this device's negatives.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// Image features of all devices, `[world * b, e]`.
    pub image: Tensor<2>,
    /// Text features of all devices, `[world * b, e]`.
    pub text: Tensor<2>,
    /// This device's index among the `world` chunks.
    pub rank: usize,
}

/// Sizes of a validated [`ContrastiveBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDims {
    /// Local batch size `b` (pairs on this device).
    pub local: usize,
    /// Embedding width `e`.
    pub embed: usize,
    /// Number of devices, `world`: gathered rows divided by `b`; 1 without [`Gathered`].
    pub world_size: usize,
    /// This device's rank; 0 without [`Gathered`].
    pub rank: usize,
}

impl BatchDims {
    /// Column of the first positive of this device in the global logits: `rank * b`.
    pub fn label_offset(&self) -> usize {
        self.rank * self.local
    }
}

impl ContrastiveBatch {
    /// A single-device batch of `image` `[b, e]` and `text` `[b, e]`.
    pub fn new(image: Tensor<2>, text: Tensor<2>) -> Self {
        Self {
            image,
            text,
            gathered: None,
        }
    }

    /// The same local batch, with the global batch of a multi-device step.
    pub fn with_gathered(self, gathered: Gathered) -> Self {
        Self {
            gathered: Some(gathered),
            ..self
        }
    }

    /// Checks the shapes and returns the sizes.
    ///
    /// `image` and `text` must both be `[b, e]` with `b, e > 0`; gathered `image` and `text`
    /// must both be `[world * b, e]` with `rank < world`.
    ///
    /// # Errors
    ///
    /// [`LossError::EmptyBatch`], [`LossError::ShapeMismatch`] (naming both tensors) or
    /// [`LossError::RankOutOfRange`].
    pub fn validate(&self) -> Result<BatchDims, LossError> {
        let [b, e] = self.image.dims();
        let text = self.text.dims();
        if b == 0 || e == 0 {
            return Err(LossError::EmptyBatch {
                name: "image",
                shape: vec![b, e],
            });
        }
        if text != [b, e] {
            return Err(mismatch(
                ("image", [b, e]),
                ("text", text),
                "paired features must have the same shape",
            ));
        }
        let Some(gathered) = &self.gathered else {
            return Ok(BatchDims {
                local: b,
                embed: e,
                world_size: 1,
                rank: 0,
            });
        };
        let [n, ge] = gathered.image.dims();
        let gathered_text = gathered.text.dims();
        if gathered_text != [n, ge] {
            return Err(mismatch(
                ("gathered.image", [n, ge]),
                ("gathered.text", gathered_text),
                "gathered features must have the same shape",
            ));
        }
        if ge != e || n < b || n % b != 0 {
            return Err(mismatch(
                ("image", [b, e]),
                ("gathered.image", [n, ge]),
                "gathered features must be [world * b, e] for local [b, e]",
            ));
        }
        let world_size = n / b;
        if gathered.rank >= world_size {
            return Err(LossError::RankOutOfRange {
                rank: gathered.rank,
                world_size,
            });
        }
        Ok(BatchDims {
            local: b,
            embed: e,
            world_size,
            rank: gathered.rank,
        })
    }
}

fn mismatch(
    (left, left_shape): (&'static str, [usize; 2]),
    (right, right_shape): (&'static str, [usize; 2]),
    rule: &'static str,
) -> LossError {
    LossError::ShapeMismatch {
        left,
        left_shape: left_shape.to_vec(),
        right,
        right_shape: right_shape.to_vec(),
        rule,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::*;
    use crate::test_util::{device, rows, scalar};
    use crate::{Loss, info_nce_loss, siglip_loss};

    fn zeros(shape: [usize; 2]) -> Tensor<2> {
        Tensor::zeros(shape, &device())
    }

    fn gathered(image: [usize; 2], text: [usize; 2], rank: usize) -> ContrastiveBatch {
        ContrastiveBatch::new(zeros([2, 3]), zeros([2, 3])).with_gathered(Gathered {
            image: zeros(image),
            text: zeros(text),
            rank,
        })
    }

    #[test]
    fn dims_of_valid_batches() -> Result<(), LossError> {
        let single = ContrastiveBatch::new(zeros([2, 3]), zeros([2, 3])).validate()?;
        assert_eq!(
            single,
            BatchDims {
                local: 2,
                embed: 3,
                world_size: 1,
                rank: 0
            }
        );
        let multi = gathered([8, 3], [8, 3], 3).validate()?;
        assert_eq!(
            (multi.world_size, multi.rank, multi.label_offset()),
            (4, 3, 6)
        );
        Ok(())
    }

    #[test]
    fn paired_shapes_must_agree() {
        let err = ContrastiveBatch::new(zeros([2, 3]), zeros([3, 3]))
            .validate()
            .expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "shape mismatch: `image` is [2, 3] but `text` is [3, 3] \
             (paired features must have the same shape)"
        );
        let err = gathered([4, 3], [6, 3], 0)
            .validate()
            .expect_err("mismatch");
        assert!(
            matches!(
                err,
                LossError::ShapeMismatch {
                    left: "gathered.image",
                    right: "gathered.text",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn gathered_must_be_whole_chunks_of_the_local_batch() {
        for bad in [[5, 3], [1, 3], [4, 2]] {
            let err = gathered(bad, bad, 0)
                .validate()
                .expect_err("not [world * 2, 3]");
            assert!(
                matches!(
                    err,
                    LossError::ShapeMismatch {
                        left: "image",
                        right: "gathered.image",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn rank_within_world() {
        let err = gathered([4, 3], [4, 3], 2)
            .validate()
            .expect_err("rank 2 of 2");
        assert_eq!(
            err,
            LossError::RankOutOfRange {
                rank: 2,
                world_size: 2
            }
        );
    }

    #[test]
    fn empty_batch() {
        let err = ContrastiveBatch::new(zeros([0, 3]), zeros([0, 3]))
            .validate()
            .expect_err("empty");
        assert!(matches!(err, LossError::EmptyBatch { .. }), "{err}");
    }

    #[test]
    fn scalars_must_be_shape_one() {
        let batch = || ContrastiveBatch::new(rows([[1.0, 0.0]]), rows([[1.0, 0.0]]));
        let two = || Tensor::<1>::zeros([2], &device());
        let err = info_nce_loss(batch(), two()).expect_err("[2] scale");
        assert_eq!(
            err.to_string(),
            "`logit_scale` must have shape [1], got [2]"
        );
        let err = siglip_loss(batch(), scalar(0.0), two()).expect_err("[2] bias");
        assert_eq!(
            err,
            LossError::NotScalar {
                name: "logit_bias",
                shape: vec![2]
            }
        );
        let err = Loss::sigmoid()
            .compute(batch(), two(), Some(scalar(0.0)))
            .expect_err("[2] scale");
        assert!(matches!(
            err,
            LossError::NotScalar {
                name: "logit_scale",
                ..
            }
        ));
    }
}
