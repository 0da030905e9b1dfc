//! Exact rank selection over scores streamed from disk, too many to hold: the top-fraction
//! filter's threshold and the report's quantiles over a whole spec in bounded memory.
//!
//! Radix selection on the scores' order-preserving 32-bit keys: a first pass counts the keys'
//! upper 16 bits, which names the bucket each wanted rank falls in; a second pass counts the
//! lower 16 bits of the keys in those buckets only. Two passes, 65,536 counters plus that many
//! per distinct bucket, whatever the number of scores; the result equals sorting.

use std::collections::BTreeMap;

/// A score's rank key: NaN below every number, numbers in [`f32::total_cmp`] order
/// (−0 below +0). Order-preserving: `key(a) < key(b)` exactly when `a` ranks below `b`.
pub fn score_key(score: f32) -> u32 {
    if score.is_nan() {
        return 0;
    }
    let bits = score.to_bits();
    // Negative numbers reversed below the positive ones; −∞ maps to 0x007F_FFFF, above 0.
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The score a [`score_key`] stands for (NaN for 0).
pub fn key_score(key: u32) -> f32 {
    if key == 0 {
        f32::NAN
    } else if key >> 31 == 1 {
        f32::from_bits(key & 0x7FFF_FFFF)
    } else {
        f32::from_bits(!key)
    }
}

/// The score at one rank of a stream, and how many scores rank above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// The [`score_key`] at the rank.
    pub key: u32,
    /// Scores whose key is strictly greater.
    pub above: u64,
}

/// Feeds every score of the stream, in the same order each call, to the callback.
pub type Pass<'a, E> = dyn FnMut(&mut dyn FnMut(f32)) -> Result<(), E> + 'a;

/// The keys at `ranks` (0 = the lowest key, each below `count`, the stream's length) of the
/// scores `pass` streams, in the order of `ranks`. Calls `pass` twice (once if `ranks` is
/// empty or `count` is 0, when every answer is `key` 0).
pub fn select_ranks<E>(
    count: u64,
    ranks: &[u64],
    pass: &mut Pass<'_, E>,
) -> Result<Vec<Ranked>, E> {
    let none = Ranked { key: 0, above: 0 };
    if count == 0 || ranks.is_empty() {
        return Ok(vec![none; ranks.len()]);
    }
    let ranks: Vec<u64> = ranks.iter().map(|&r| r.min(count - 1)).collect();
    let mut high = vec![0u64; 1 << 16];
    pass(&mut |s| high[(score_key(s) >> 16) as usize] += 1)?;
    // Each rank's bucket, its rank inside the bucket, and the scores in higher buckets.
    let located: Vec<(usize, u64, u64)> = ranks
        .iter()
        .map(|&r| {
            let mut below = 0u64;
            for (bucket, &n) in high.iter().enumerate() {
                if r < below + n {
                    let above = count - below - n;
                    return (bucket, r - below, above);
                }
                below += n;
            }
            // The counts sum to `count` > r only if the second pass saw the same stream.
            (high.len() - 1, 0, 0)
        })
        .collect();
    let mut low: BTreeMap<usize, Vec<u64>> = located
        .iter()
        .map(|&(bucket, _, _)| (bucket, vec![0u64; 1 << 16]))
        .collect();
    pass(&mut |s| {
        let key = score_key(s);
        if let Some(counts) = low.get_mut(&((key >> 16) as usize)) {
            counts[(key & 0xFFFF) as usize] += 1;
        }
    })?;
    Ok(located
        .into_iter()
        .map(|(bucket, r, above_bucket)| {
            let counts = &low[&bucket];
            let mut below = 0u64;
            let mut at = (counts.len() - 1, 0);
            for (lo, &n) in counts.iter().enumerate() {
                if r < below + n {
                    at = (lo, below + n);
                    break;
                }
                below += n;
            }
            let in_bucket: u64 = counts.iter().sum();
            Ranked {
                key: ((bucket as u32) << 16) | at.0 as u32,
                above: above_bucket + in_bucket - at.1,
            }
        })
        .collect())
}

/// The streamed twin of [`crate::filter::top_fraction`]: built from two passes over the
/// scores, then asked about each score in position order, it keeps the same ones.
#[derive(Debug, Clone)]
pub struct TopFraction {
    /// The lowest kept key, `None` when nothing is kept.
    threshold: Option<u32>,
    /// Scores at the threshold still to keep (ties go to the earlier position).
    ties: u64,
}

impl TopFraction {
    /// Keeps the `round(fraction · count)` highest of the `count` scores `pass` streams.
    pub fn new<E>(count: u64, fraction: f64, pass: &mut Pass<'_, E>) -> Result<Self, E> {
        let keep = ((fraction.clamp(0.0, 1.0) * count as f64).round() as u64).min(count);
        if keep == 0 {
            return Ok(Self {
                threshold: None,
                ties: 0,
            });
        }
        let [at] = select_ranks(count, &[count - keep], pass)?[..] else {
            unreachable!("one rank asked, one answered")
        };
        Ok(Self {
            threshold: Some(at.key),
            ties: keep - at.above,
        })
    }

    /// The lowest kept score, if any is kept.
    pub fn threshold(&self) -> Option<f32> {
        self.threshold.map(key_score)
    }

    /// Whether the next score, in position order, is kept.
    pub fn keep(&mut self, score: f32) -> bool {
        let Some(threshold) = self.threshold else {
            return false;
        };
        let key = score_key(score);
        if key > threshold {
            true
        } else if key == threshold && self.ties > 0 {
            self.ties -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::top_fraction;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::ops::Range;

    fn over(scores: &[f32]) -> impl FnMut(&mut dyn FnMut(f32)) -> Result<(), ()> + '_ {
        move |f| {
            scores.iter().for_each(|&s| f(s));
            Ok(())
        }
    }

    /// `n` seeded scores: NaN with probability `nan`, else `j / divisor` for a uniform `j` in
    /// `grid` (many ties).
    fn grid_scores(seed: u64, n: usize, nan: f64, grid: Range<i32>, divisor: f32) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                if rng.random::<f64>() < nan {
                    f32::NAN
                } else {
                    (rng.random_range(grid.clone()) as f32) / divisor
                }
            })
            .collect()
    }

    #[test]
    fn keys_keep_the_order_and_come_back() {
        let ordered = [
            f32::NAN,
            f32::NEG_INFINITY,
            -1.5,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-30,
            0.25,
            f32::INFINITY,
        ];
        for pair in ordered.windows(2) {
            assert!(score_key(pair[0]) < score_key(pair[1]), "{pair:?}");
        }
        for s in &ordered[1..] {
            assert_eq!(key_score(score_key(*s)).to_bits(), s.to_bits());
        }
        // Every NaN is the lowest key.
        assert_eq!(score_key(-f32::NAN), 0);
        assert!(key_score(0).is_nan());
    }

    #[test]
    fn ranks_equal_sorting_with_ties_and_nans() {
        // Scores [0.5, NaN, 0.2, 0.5, -0.1]: ascending keys NaN, -0.1, 0.2, 0.5, 0.5.
        let scores = [0.5, f32::NAN, 0.2, 0.5, -0.1];
        let got = select_ranks(5, &[0, 1, 3, 4, 2], &mut over(&scores)).expect("in memory");
        let keys: Vec<f32> = got.iter().map(|r| key_score(r.key)).collect();
        assert!(keys[0].is_nan());
        assert_eq!(&keys[1..], &[-0.1, 0.5, 0.5, 0.2]);
        // Strictly above: NaN has 4 above, -0.1 has 3, 0.5 none, 0.2 the two 0.5s.
        let above: Vec<u64> = got.iter().map(|r| r.above).collect();
        assert_eq!(above, [4, 3, 0, 0, 2]);

        // Random scores on a coarse grid (many ties, a few NaNs): every rank equals the sort.
        let scores = grid_scores(7, 3000, 0.01, -50..50, 50.0);
        let mut sorted: Vec<u32> = scores.iter().map(|&s| score_key(s)).collect();
        sorted.sort_unstable();
        let ranks: Vec<u64> = (0..3000).step_by(37).chain([2999]).collect();
        let got = select_ranks(3000, &ranks, &mut over(&scores)).expect("in memory");
        for (r, g) in ranks.iter().zip(got) {
            assert_eq!(g.key, sorted[*r as usize], "rank {r}");
            assert_eq!(
                g.above,
                sorted.iter().filter(|&&k| k > g.key).count() as u64
            );
        }
    }

    #[test]
    fn streamed_top_fraction_keeps_what_the_sort_keeps() {
        let scores = grid_scores(3, 500, 0.05, 0..20, 20.0);
        for fraction in [0.0, 0.001, 0.1, 0.37, 0.5, 0.96, 0.999, 1.0] {
            let mut top = TopFraction::new(500, fraction, &mut over(&scores)).expect("in memory");
            let streamed: Vec<bool> = scores.iter().map(|&s| top.keep(s)).collect();
            assert_eq!(
                streamed,
                top_fraction(&scores, fraction),
                "fraction {fraction}"
            );
        }
        // Threshold: of [0.9, 0.1, 0.5, 0.5] the top half is 0.9 and the first 0.5.
        let top = TopFraction::new(4, 0.5, &mut over(&[0.9, 0.1, 0.5, 0.5])).expect("in memory");
        assert_eq!(top.threshold(), Some(0.5));
        assert_eq!(
            TopFraction::new(4, 0.0, &mut over(&[0.9, 0.1, 0.5, 0.5]))
                .expect("in memory")
                .threshold(),
            None
        );
    }
}
