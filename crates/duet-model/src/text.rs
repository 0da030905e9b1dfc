//! The text tower: causal and pooled at the first end-of-text token (CLIP), or bidirectional
//! and pooled at the last position (SigLIP).

use burn::module::{Module, Param};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Device, Int, Tensor};

use crate::block::{Block, BlockConfig};
use crate::config::{TextConfig, TextPool};

/// Token + position embeddings, causal pre-norm blocks, final LN, pooling at the first
/// end-of-text token, projection without bias.
#[derive(Module, Debug)]
pub struct TextTower {
    /// `[vocab, width]`.
    pub token_embedding: Embedding,
    /// `[context_length, width]`.
    pub position_embedding: Param<Tensor<2>>,
    /// The residual blocks, causally masked.
    pub blocks: Vec<Block>,
    /// Final LayerNorm over every position.
    pub ln_final: LayerNorm,
    /// `[width, embed_dim]`, no bias (CLIP); with a bias (SigLIP's `head`).
    pub proj: Linear,
    eot_token_id: u32,
    #[module(skip)]
    causal: bool,
    #[module(skip)]
    pool: TextPool,
}

impl TextConfig {
    /// A randomly initialised tower with OpenCLIP's init (token std 0.02, positions 0.01,
    /// projection `width^-0.5`).
    pub fn init(&self, embed_dim: usize, device: &Device) -> TextTower {
        let block = BlockConfig {
            width: self.width,
            heads: self.heads,
            mlp_dim: self.mlp_dim,
            activation: self.activation,
            layer_norm_eps: self.layer_norm_eps,
            depth: self.layers,
        };
        let normal = |std| Initializer::Normal { mean: 0.0, std };
        TextTower {
            token_embedding: EmbeddingConfig::new(self.vocab_size, self.width)
                .with_initializer(normal(0.02))
                .init(device),
            position_embedding: normal(0.01).init([self.context_length, self.width], device),
            blocks: (0..self.layers).map(|_| block.init(device)).collect(),
            ln_final: LayerNormConfig::new(self.width)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            proj: LinearConfig::new(self.width, embed_dim)
                .with_bias(self.proj_bias)
                .with_initializer(normal((self.width as f64).powf(-0.5)))
                .init(device),
            eot_token_id: self.eot_token_id,
            causal: self.causal,
            pool: self.pool,
        }
    }
}

impl TextTower {
    /// Whether each position attends only to itself and earlier ones.
    pub fn causal(&self) -> bool {
        self.causal
    }

    /// The precision of every block (see [`crate::Precision`]).
    pub fn set_precision(&mut self, precision: crate::Precision) {
        for block in &mut self.blocks {
            block.set_precision(precision);
        }
    }

    /// The sequence the first block takes: token and position embeddings.
    ///
    /// `ids`: `[b, t]` token ids, `t <= context_length` -> `[b, t, width]`.
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, t] = ids.dims();
        let positions = self.position_embedding.val().narrow(0, 0, t);
        self.token_embedding.forward(ids) + positions.unsqueeze_dim::<3>(0)
    }

    /// Every position after `ln_final`.
    ///
    /// `ids`: `[b, t]` token ids, `t <= context_length` -> `[b, t, width]`.
    pub fn forward_hidden(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.ln_final.forward(self.blocks_forward(self.embed(ids)))
    }

    /// The sequence after the last block (causal attention), before `ln_final`.
    fn blocks_forward(&self, mut x: Tensor<3>) -> Tensor<3> {
        for block in &self.blocks {
            x = block.forward(x, self.causal);
        }
        x
    }

    /// Projected features of the sequence after the last block: `ln_final`, the positions
    /// `index` gives ([`Self::pool_index`]), the projection.
    ///
    /// `hidden`: `[b, t, width]`, `index`: `[b, 1]` -> `[b, embed_dim]`.
    pub fn head(&self, hidden: Tensor<3>, index: Tensor<2, Int>) -> Tensor<2> {
        let hidden = self.ln_final.forward(hidden);
        let [b, _, width] = hidden.dims();
        let pooled = hidden.gather(1, index.unsqueeze_dim::<3>(2).expand([b, 1, width]));
        self.proj.forward(pooled.reshape([b, width]))
    }

    /// Index of the first end-of-text token of each row, or of the last position when a row has
    /// none; the last position always for a tower pooled there (SigLIP). Never relies on argmax
    /// tie-breaking: the score `eot * (2t - pos)` is unique at the
    /// first EOT, and a row without one scores only its last position (1).
    ///
    /// `ids`: `[b, t]` -> `[b, 1]`.
    pub fn pool_index(&self, ids: Tensor<2, Int>) -> Tensor<2, Int> {
        let [b, t] = ids.dims();
        let device = ids.device();
        if self.pool == TextPool::Last {
            return Tensor::<2, Int>::full([b, 1], t as i64 - 1, &device);
        }
        let pos = Tensor::<1, Int>::arange(0..t as i64, &device).unsqueeze_dim::<2>(0);
        let is_eot = ids.equal_elem(self.eot_token_id as i64).int();
        let first = is_eot * (pos.clone().neg() + 2 * t as i64);
        let last = pos.equal_elem(t as i64 - 1).int();
        (first + last).expand([b, t]).argmax(1)
    }

    /// Projected text features, not normalised.
    ///
    /// `ids`: `[b, t]` -> `[b, embed_dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let index = self.pool_index(ids.clone());
        self.head(self.blocks_forward(self.embed(ids)), index)
    }
}
