//! Which shard each reader slot reads, per epoch: a pure function of the seed, the epoch, the
//! rank and the slot, so that an order can be recomputed instead of stored.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How shards are drawn within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every shard exactly once per epoch, in a seeded per-epoch permutation (OpenCLIP without
    /// `--dataset-resampled`).
    Exact,
    /// Every shard once per epoch, in spec order: evaluation and inspection.
    InOrder,
    /// Shards drawn with replacement, weighted by their source's weight: an endless stream that
    /// the caller cuts into "virtual epochs" (OpenCLIP `--dataset-resampled`).
    Resampled,
}

/// A shard and its sampling weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedShard {
    /// The shard URL.
    pub url: Arc<str>,
    /// Relative weight (the source's upsampling factor); used by [`Sampling::Resampled`].
    pub weight: f64,
}

impl WeightedShard {
    /// Every shard of `spec` with its source's weight, in spec order.
    pub fn from_spec(spec: &crate::ShardSpec) -> Vec<Self> {
        spec.weighted_shards()
            .map(|(url, weight)| Self {
                url: url.into(),
                weight,
            })
            .collect()
    }
}

/// The shard order of one epoch on one rank, split over `readers` slots.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    sampling: Sampling,
    /// Exact: this rank's shards in epoch order. Resampled: every shard (drawn from).
    shards: Vec<WeightedShard>,
    cumulative: Vec<f64>,
    readers: usize,
    seed: u64,
    epoch: u64,
    rank: usize,
}

/// Independent stream ids for the RNGs derived from one seed.
pub(crate) mod stream {
    /// The per-epoch shard permutation.
    pub const SHARD_ORDER: u64 = 1;
    /// The shuffle buffer.
    pub const SHUFFLE: u64 = 2;
    /// Resampled shard draws.
    pub const RESAMPLE: u64 = 3;
    /// Per-sample augmentation (the train crop), positioned by the sample's ordinal.
    pub const AUGMENT: u64 = 4;
}

/// The seed of rank `rank`'s own random streams (shuffle buffer, train crops): `seed` itself for
/// rank 0, so a world of one keeps the streams it always had; a distinct seed for every other
/// rank, so two ranks (data slots) never shuffle or crop in lockstep. The shard permutation of
/// an exact epoch is shared by all ranks and keeps `seed`.
pub(crate) fn rank_seed(seed: u64, rank: usize) -> u64 {
    if rank == 0 {
        seed
    } else {
        seed ^ (rank as u64)
            .wrapping_mul(0xD1B5_4A32_D192_ED03)
            .rotate_left(29)
    }
}

/// A ChaCha8 generator for `(seed, epoch, stream)`: each purpose gets its own stream, each
/// epoch its own key, so no draw depends on how many draws another purpose made.
pub(crate) fn rng(seed: u64, epoch: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(stream);
    rng
}

impl EpochPlan {
    /// The plan of `epoch` for `rank` of `world_size`, read by `readers` slots.
    ///
    /// Exact: all shards are permuted with the epoch's seed, then rank `r` takes positions
    /// `r, r + world, …` (OpenCLIP's `split_by_node`), then slot `s` of that list takes
    /// positions `s, s + readers, …` (`split_by_worker`).
    pub fn new(
        shards: &[WeightedShard],
        sampling: Sampling,
        seed: u64,
        epoch: u64,
        rank: usize,
        world_size: usize,
        readers: usize,
    ) -> Self {
        let readers = readers.max(1);
        let world_size = world_size.max(1);
        let shards = match sampling {
            Sampling::Exact => {
                let mut order: Vec<WeightedShard> = shards.to_vec();
                order.shuffle(&mut rng(seed, epoch, stream::SHARD_ORDER));
                order.into_iter().skip(rank).step_by(world_size).collect()
            }
            Sampling::InOrder => shards
                .iter()
                .skip(rank)
                .step_by(world_size)
                .cloned()
                .collect(),
            Sampling::Resampled => shards.to_vec(),
        };
        let mut total = 0.0;
        let cumulative = shards
            .iter()
            .map(|s| {
                total += s.weight.max(0.0);
                total
            })
            .collect();
        Self {
            sampling,
            shards,
            cumulative,
            readers,
            seed,
            epoch,
            rank,
        }
    }

    /// Number of reader slots.
    pub fn readers(&self) -> usize {
        self.readers
    }

    /// The `slot_index`-th shard read by `reader`, or `None` when the reader is done (never for
    /// resampled plans with a positive total weight).
    pub fn shard(&self, reader: usize, slot_index: u64) -> Option<Arc<str>> {
        match self.sampling {
            Sampling::Exact | Sampling::InOrder => {
                let position = reader as u64 + slot_index * self.readers as u64;
                let position = usize::try_from(position).ok()?;
                self.shards.get(position).map(|s| s.url.clone())
            }
            Sampling::Resampled => {
                let total = *self.cumulative.last()?;
                if total <= 0.0 {
                    return None;
                }
                // One generator per (rank, reader, draw): a draw never depends on the others,
                // so a resumed reader recomputes the same shard from its slot index alone.
                let mut draw = rng(
                    self.seed ^ ((self.rank as u64) << 32) ^ reader as u64,
                    self.epoch,
                    stream::RESAMPLE,
                );
                draw.set_word_pos(u128::from(slot_index) * 16);
                let x = draw.random::<f64>() * total;
                let i = self.cumulative.partition_point(|c| *c <= x);
                self.shards
                    .get(i.min(self.shards.len() - 1))
                    .map(|s| s.url.clone())
            }
        }
    }

    /// Exact plans: how many shards this rank reads in the epoch.
    pub fn len(&self) -> Option<usize> {
        matches!(self.sampling, Sampling::Exact | Sampling::InOrder).then_some(self.shards.len())
    }

    /// Whether an exact plan gives this rank no shard at all.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: usize) -> Vec<WeightedShard> {
        (0..n)
            .map(|i| WeightedShard {
                url: format!("{i:05}.tar").into(),
                weight: 1.0,
            })
            .collect()
    }

    fn all(plan: &EpochPlan) -> Vec<String> {
        let mut out = Vec::new();
        for r in 0..plan.readers() {
            let mut j = 0;
            while let Some(s) = plan.shard(r, j) {
                out.push(s.to_string());
                j += 1;
            }
        }
        out.sort();
        out
    }

    #[test]
    fn exact_covers_every_shard_once_across_ranks() {
        let s = shards(10);
        let mut seen: Vec<String> = (0..3)
            .flat_map(|rank| all(&EpochPlan::new(&s, Sampling::Exact, 7, 0, rank, 3, 2)))
            .collect();
        seen.sort();
        let want: Vec<String> = s.iter().map(|w| w.url.to_string()).collect();
        assert_eq!(seen, want);
        // 10 shards over 3 ranks: 4, 3, 3.
        let lens: Vec<_> = (0..3)
            .map(|r| EpochPlan::new(&s, Sampling::Exact, 7, 0, r, 3, 2).len())
            .collect();
        assert_eq!(lens, [Some(4), Some(3), Some(3)]);
    }

    #[test]
    fn exact_order_depends_on_epoch_and_seed_only() {
        let s = shards(20);
        let order = |seed, epoch| {
            let p = EpochPlan::new(&s, Sampling::Exact, seed, epoch, 0, 1, 1);
            (0..20)
                .map(|j| p.shard(0, j).map(|u| u.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(1, 0), order(1, 0));
        assert_ne!(order(1, 0), order(1, 1));
        assert_ne!(order(1, 0), order(2, 0));
    }

    #[test]
    fn resampled_draws_follow_the_weights() {
        // Weights 1 and 3: about a quarter of the draws pick the first shard.
        let s = vec![
            WeightedShard {
                url: "a".into(),
                weight: 1.0,
            },
            WeightedShard {
                url: "b".into(),
                weight: 3.0,
            },
        ];
        let plan = EpochPlan::new(&s, Sampling::Resampled, 3, 0, 0, 1, 1);
        let a = (0..4000)
            .filter(|j| plan.shard(0, *j).as_deref() == Some("a"))
            .count();
        assert!((900..1100).contains(&a), "{a} of 4000");
        // Recomputable: the same slot gives the same shard.
        assert_eq!(plan.shard(0, 123), plan.shard(0, 123));
    }
}
