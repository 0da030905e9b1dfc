//! Patch dropout (FLIP; OpenCLIP's `PatchDropout`, `vision_cfg.patch_dropout`): in training
//! steps only, each image keeps `max(1, ⌊n (1 − p)⌋)` of its `n` patch tokens (the class token
//! always), so the image tower's blocks see fewer tokens; evaluation and `duet embed` see all.
//!
//! Which patches an image keeps is drawn from a ChaCha8 stream keyed by the run's seed, the
//! step and the sample's row in the global batch, and nothing else: a resumed run, or one on
//! another number of processes, devices or micro-batches, drops exactly the same patches.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Generator words reserved per row: far more than a draw of `k` of `n ≤ 2^16` patches takes.
const WORDS_PER_ROW: u128 = 1 << 20;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchDropout {
    /// The fraction of patch tokens dropped, in `[0, 1)`.
    pub prob: f64,
    /// The run's seed (`train.seed`).
    pub seed: u64,
}

impl PatchDropout {
    /// Patches kept of `patches`: `max(1, ⌊patches · (1 − prob)⌋)`, as OpenCLIP.
    pub fn kept(&self, patches: usize) -> usize {
        Self::kept_of(self.prob, patches)
    }

    /// [`Self::kept`] for a dropout probability alone (no draws need a seed to count).
    pub fn kept_of(prob: f64, patches: usize) -> usize {
        ((patches as f64 * (1.0 - prob)).floor() as usize).clamp(1, patches.max(1))
    }

    /// The patches rows `first_row .. first_row + rows` of step `step`'s global batch keep, in
    /// increasing order: `[rows, kept(patches)]`.
    pub fn indices(
        &self,
        step: u64,
        first_row: usize,
        rows: usize,
        patches: usize,
        device: &Device,
    ) -> Tensor<2, Int> {
        let k = self.kept(patches);
        let mut all = Vec::with_capacity(rows * k);
        for row in first_row..first_row + rows {
            all.extend(
                self.row(step, row, patches, k)
                    .into_iter()
                    .map(|i| i as i64),
            );
        }
        Tensor::from_data(TensorData::new(all, [rows, k]), device)
    }

    /// `k` distinct patches of `patches` for one row, sorted: a partial Fisher–Yates shuffle.
    fn row(&self, step: u64, row: usize, patches: usize, k: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7061_7463_685f_6472); // "patch_dr"
        rng.set_stream(step);
        rng.set_word_pos(row as u128 * WORDS_PER_ROW);
        let mut order: Vec<usize> = (0..patches).collect();
        for i in 0..k {
            let j = rng.random_range(i..patches);
            order.swap(i, j);
        }
        let mut kept = order[..k].to_vec();
        kept.sort_unstable();
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_openclips_count_of_distinct_sorted_patches() {
        // ViT-B-32 at 224: 7 × 7 = 49 patches; p = 0.5 keeps ⌊24.5⌋ = 24, p = 0.99 keeps 1.
        let d = PatchDropout { prob: 0.5, seed: 3 };
        assert_eq!(d.kept(49), 24);
        assert_eq!(
            PatchDropout {
                prob: 0.99,
                seed: 3
            }
            .kept(49),
            1
        );
        assert_eq!(PatchDropout { prob: 0.0, seed: 3 }.kept(49), 49);
        let rows = d.indices(7, 0, 4, 49, &Device::flex());
        let values: Vec<i64> = rows.into_data().iter::<i64>().collect();
        for row in values.chunks(24) {
            assert!(
                row.windows(2).all(|w| w[0] < w[1]),
                "sorted, distinct: {row:?}"
            );
            assert!(row.iter().all(|&i| (0..49).contains(&i)), "{row:?}");
        }
        assert_ne!(values[..24], values[24..48], "each row draws its own");
    }

    #[test]
    fn a_row_draws_the_same_patches_whatever_block_holds_it() {
        // Row 5 of step 2, asked for alone or as the second row of a block starting at 4.
        let d = PatchDropout {
            prob: 0.75,
            seed: 9,
        };
        let device = Device::flex();
        let draw = |step, first, rows| -> Vec<i64> {
            d.indices(step, first, rows, 64, &device)
                .into_data()
                .iter::<i64>()
                .collect()
        };
        let (alone, block, next_step) = (draw(2, 5, 1), draw(2, 4, 2), draw(3, 5, 1));
        assert_eq!(alone[..], block[16..]);
        assert_ne!(alone, next_step, "another step draws again");
    }
}
