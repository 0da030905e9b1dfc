//! The crate's one error type.

/// Why a loss could not be computed.
///
/// Every variant names the offending tensors and their shapes, so a failure deep in a training
/// step reads as a configuration or plumbing error rather than a backend panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LossError {
    /// Two tensors whose shapes must agree do not.
    #[error("shape mismatch: `{left}` is {left_shape:?} but `{right}` is {right_shape:?} ({rule})")]
    ShapeMismatch {
        /// Name of the first tensor, e.g. `image`.
        left: &'static str,
        /// Shape of the first tensor.
        left_shape: Vec<usize>,
        /// Name of the second tensor, e.g. `text`.
        right: &'static str,
        /// Shape of the second tensor.
        right_shape: Vec<usize>,
        /// The rule the two shapes break.
        rule: &'static str,
    },
    /// A per-batch parameter (`logit_scale`, `logit_bias`) does not have shape `[1]`.
    #[error("`{name}` must have shape [1], got {shape:?}")]
    NotScalar {
        /// Name of the parameter.
        name: &'static str,
        /// Its actual shape.
        shape: Vec<usize>,
    },
    /// The local features have no rows or no columns.
    #[error("empty batch: `{name}` is {shape:?}; need at least one row and one column")]
    EmptyBatch {
        /// Name of the tensor.
        name: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The rank of the gathered batch is not below the world size implied by the shapes.
    #[error(
        "rank {rank} is out of range: gathered features hold {world_size} chunk(s) of the local batch"
    )]
    RankOutOfRange {
        /// The rank given in [`Gathered::rank`](crate::Gathered::rank).
        rank: usize,
        /// Gathered rows divided by local rows.
        world_size: usize,
    },
    /// The sigmoid (SigLIP) loss was asked for without a `logit_bias`.
    #[error("the sigmoid loss needs a `logit_bias`, but none was given")]
    MissingBias,
    /// The InfoNCE loss was given a `logit_bias`.
    ///
    /// A bias shared by all logits cancels in the softmax, so it would be a parameter with no
    /// gradient; passing one almost always means the model and loss configs disagree.
    #[error(
        "the InfoNCE loss takes no `logit_bias` (a shared offset cancels in the softmax); \
         the model has a bias but the loss is `info_nce`"
    )]
    UnexpectedBias,
}
