//! Near-duplicate detection on embeddings, SemDeDup-style (Abbas et al. 2023): spherical
//! k-means splits the rows into clusters, and within each cluster a row is a duplicate when
//! its cosine with an *earlier* row of the same cluster is above the threshold. Comparing only
//! within clusters keeps the work near `n²/k` dot products instead of `n²`, and no `n × n`
//! matrix is ever held: each row scans its cluster's earlier rows on its own.
//!
//! The rows are streamed ([`RowBlocks`]: the saved `.npy` files of a whole spec, or a slice),
//! never all held: k-means++ seeds from a uniform sample, each Lloyd iteration is one pass, and
//! the search itself loads the clusters a block at a time, as many whole clusters as fit a
//! byte budget ([`near_duplicates_in_blocks`]). The decisions do not depend on the budget.
//!
//! Choices, where SemDeDup leaves them open or differs:
//! - "Earlier" is position order (the spec's order), so the first of a group is kept, as the
//!   exact-duplicate filter does (SemDeDup orders by distance to the centroid).
//! - A row is dropped if *any* earlier row of its cluster is that close, dropped or not (as
//!   SemDeDup's triangular max), so a decision never depends on another's.
//! - Pairs split across clusters are missed (as in SemDeDup); `clusters = 1` compares all pairs.
//! - Deterministic: the seeding sample and k-means++ from a seeded ChaCha8, centroid sums taken
//!   in row order, ties in assignment to the lower cluster.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings of [`near_duplicates`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NearDedup {
    /// A row whose cosine with an earlier row of its cluster is above this is a duplicate.
    pub threshold: f32,
    /// k-means clusters (at most the number of rows); 1 compares every pair.
    pub clusters: usize,
    /// Lloyd iterations at most (fewer when the assignment stops changing).
    pub iterations: usize,
    /// Seed of the initial centroids.
    pub seed: u64,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rows of unit embeddings that can be read more than once, each time in the same order, a
/// block at a time: the saved `.npy` files of a whole spec, or a slice in memory.
pub trait RowBlocks {
    /// Width of a row.
    fn dim(&self) -> usize;
    /// Calls `f(first, block)` for consecutive row-major blocks of whole rows, `first` the
    /// position of the block's first row.
    fn each_block(&self, f: &mut dyn FnMut(u64, &[f32])) -> std::io::Result<()>;
}

/// Rows held in memory, one block.
#[derive(Debug, Clone, Copy)]
pub struct InMemory<'a> {
    /// Row-major rows.
    pub rows: &'a [f32],
    /// Width of a row.
    pub dim: usize,
}

impl RowBlocks for InMemory<'_> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn each_block(&self, f: &mut dyn FnMut(u64, &[f32])) -> std::io::Result<()> {
        f(0, self.rows);
        Ok(())
    }
}

/// Rows the k-means++ seeding draws from, at most: the seeding's cost is `k` passes over them.
const SEED_SAMPLE: usize = 4096;

/// Which of the `n = embeddings.len() / dim` rows (unit vectors, row-major) are near
/// duplicates of an earlier row; see the module doc. The in-memory form of
/// [`near_duplicates_in_blocks`].
pub fn near_duplicates(embeddings: &[f32], dim: usize, config: &NearDedup) -> Vec<bool> {
    let n = embeddings.len().checked_div(dim).unwrap_or(0);
    let mut duplicate = vec![false; n];
    let rows = InMemory {
        rows: embeddings,
        dim,
    };
    // Reading a slice cannot fail.
    let _ = near_duplicates_in_blocks(&rows, config, usize::MAX, &mut |i| {
        duplicate[i as usize] = true;
    });
    duplicate
}

/// The near-duplicate search over rows too many to hold, in bounded memory: calls
/// `on_duplicate(position)` once for every near duplicate (in no particular order) and returns
/// the number of clusters. Memory: `2k` centroids, at most `max(4096, 16k)` seeding
/// rows, one block of `rows`, and the clusters searched together, `block_bytes` of embeddings
/// (a cluster larger than that on its own). Reads `rows` once for the seeding, once per Lloyd
/// iteration, and once per block of clusters.
pub fn near_duplicates_in_blocks(
    rows: &dyn RowBlocks,
    config: &NearDedup,
    block_bytes: usize,
    on_duplicate: &mut dyn FnMut(u64),
) -> std::io::Result<usize> {
    let dim = rows.dim();
    let (centroids, sizes) = spherical_kmeans(rows, config)?;
    let k = sizes.len();
    // Clusters in order, grouped while their embeddings fit `block_bytes`.
    let row_bytes = dim * std::mem::size_of::<f32>();
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (c, &size) in sizes.iter().enumerate() {
        let add = (size as usize).saturating_mul(row_bytes);
        if c > start && bytes.saturating_add(add) > block_bytes {
            blocks.push(start..c);
            start = c;
            bytes = 0;
        }
        bytes = bytes.saturating_add(add);
    }
    if k > start {
        blocks.push(start..k);
    }
    for block in blocks {
        // The block's clusters: each member's position and embedding, in position order.
        let mut members: Vec<(Vec<u64>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); block.len()];
        rows.each_block(&mut |first, chunk| {
            let assigned = assign(chunk, dim, &centroids);
            for (j, &c) in assigned.iter().enumerate() {
                if block.contains(&c) {
                    let (positions, embeddings) = &mut members[c - block.start];
                    positions.push(first + j as u64);
                    embeddings.extend_from_slice(&chunk[j * dim..(j + 1) * dim]);
                }
            }
        })?;
        for (positions, embeddings) in &members {
            let row = |p: usize| &embeddings[p * dim..(p + 1) * dim];
            let flags: Vec<bool> = (0..positions.len())
                .into_par_iter()
                .map(|p| (0..p).any(|q| dot(row(p), row(q)) > config.threshold))
                .collect();
            for (&position, flag) in positions.iter().zip(flags) {
                if flag {
                    on_duplicate(position);
                }
            }
        }
    }
    Ok(k)
}

/// The nearest centroid (highest cosine, ties to the lower) of each row of `chunk`.
fn assign(chunk: &[f32], dim: usize, centroids: &[f32]) -> Vec<usize> {
    chunk
        .par_chunks(dim)
        .map(|x| {
            let mut best = (0, f32::NEG_INFINITY);
            for (c, centroid) in centroids.chunks(dim).enumerate() {
                let s = dot(x, centroid);
                if s > best.1 {
                    best = (c, s);
                }
            }
            best.0
        })
        .collect()
}

/// k-means++ seeding (Arthur & Vassilvitskii 2007) over `sample` (row-major): the first
/// centroid a uniform row, each next one a row drawn with probability proportional to its
/// squared distance `2 − 2 cos` to the nearest centroid so far; when every row sits on a
/// centroid, the first unpicked row.
fn kmeans_plus_plus(sample: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = sample.len() / dim;
    let row = |i: usize| &sample[i * dim..(i + 1) * dim];
    let mut picked = vec![rng.random_range(0..n)];
    let mut d2: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| f64::from((2.0 - 2.0 * dot(row(i), row(picked[0]))).max(0.0)))
        .collect();
    while picked.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            let mut choice = n - 1;
            for (i, d) in d2.iter().enumerate() {
                if r < *d {
                    choice = i;
                    break;
                }
                r -= d;
            }
            choice
        } else {
            (0..n).find(|i| !picked.contains(i)).unwrap_or(0)
        };
        picked.push(next);
        let c = row(next);
        d2.par_iter_mut().enumerate().for_each(|(i, d)| {
            *d = d.min(f64::from((2.0 - 2.0 * dot(row(i), c)).max(0.0)));
        });
    }
    picked.iter().flat_map(|&i| row(i).to_vec()).collect()
}

/// Spherical k-means (cosine) with `min(clusters, n)` centroids, streamed: the centroids and
/// each cluster's size under them. Seeded by k-means++ on a uniform sample of the rows
/// (reservoir sampling, every row when there are few); each Lloyd iteration is one pass, and
/// the search stops when the centroids no longer change (the assignment is then stable too).
fn spherical_kmeans(
    rows: &dyn RowBlocks,
    config: &NearDedup,
) -> std::io::Result<(Vec<f32>, Vec<u64>)> {
    let dim = rows.dim();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let cap = SEED_SAMPLE.max(config.clusters.saturating_mul(16));
    let mut sample: Vec<f32> = Vec::new();
    let mut n = 0usize;
    rows.each_block(&mut |_, chunk| {
        for x in chunk.chunks(dim) {
            // Algorithm R: row `n` replaces a sampled one with probability cap / (n + 1).
            if n < cap {
                sample.extend_from_slice(x);
            } else {
                let j = rng.random_range(0..=n);
                if j < cap {
                    sample[j * dim..(j + 1) * dim].copy_from_slice(x);
                }
            }
            n += 1;
        }
    })?;
    let k = config.clusters.clamp(1, n.max(1));
    if n == 0 || k == 1 {
        return Ok((
            sample.get(..dim).map_or_else(Vec::new, <[f32]>::to_vec),
            vec![n as u64],
        ));
    }
    let mut centroids = kmeans_plus_plus(&sample, dim, k, &mut rng);
    drop(sample);
    let mut sizes = vec![0u64; k];
    for iteration in 0..=config.iterations.max(1) {
        let mut sums = vec![0f32; k * dim];
        sizes = vec![0u64; k];
        // Sums taken in position order: the same centroids whatever the blocks.
        rows.each_block(&mut |_, chunk| {
            for (x, c) in chunk.chunks(dim).zip(assign(chunk, dim, &centroids)) {
                sizes[c] += 1;
                for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                    *s += v;
                }
            }
        })?;
        // The last pass only counts the sizes under the final centroids.
        if iteration == config.iterations.max(1) {
            break;
        }
        let mut next = centroids.clone();
        for (c, sum) in sums.chunks(dim).enumerate() {
            let norm = dot(sum, sum).sqrt();
            // An emptied cluster keeps its centroid.
            if norm > 0.0 {
                for (dst, s) in next[c * dim..(c + 1) * dim].iter_mut().zip(sum) {
                    *dst = s / norm;
                }
            }
        }
        if next == centroids {
            break;
        }
        centroids = next;
    }
    Ok((centroids, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = dot(v, v).sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    /// Rows by position: 0 = e1; 1 = e2; 2 = e1 + 0.1 e3 (cos with row 0 = 1 / √1.01 = 0.995);
    /// 3 = e2 + 0.5 e3 (cos with row 1 = 1 / √1.25 = 0.894); 4 = e1 exactly (cos 1 with 0);
    /// 5 = e3 + 0.1 e1 (cos with row 2 = (0.1 + 0.1) / (√1.01 · √1.01) = 0.198).
    fn rows() -> Vec<f32> {
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 0.0, 0.1],
            [0.0, 1.0, 0.5],
            [1.0, 0.0, 0.0],
            [0.1, 0.0, 1.0],
        ]
        .iter()
        .flat_map(|r| unit(r))
        .collect()
    }

    #[test]
    fn one_cluster_drops_rows_close_to_an_earlier_one() {
        let config = NearDedup {
            threshold: 0.95,
            clusters: 1,
            iterations: 10,
            seed: 0,
        };
        // Above 0.95: row 2 (0.995 with 0) and row 4 (1.0 with 0); row 3's 0.894 is not.
        assert_eq!(
            near_duplicates(&rows(), 3, &config),
            [false, false, true, false, true, false]
        );
        // At 0.85 row 3 (0.894 with row 1) goes too.
        let loose = NearDedup {
            threshold: 0.85,
            ..config
        };
        assert_eq!(
            near_duplicates(&rows(), 3, &loose),
            [false, false, true, true, true, false]
        );
    }

    #[test]
    fn clusters_find_the_same_duplicates_when_groups_are_apart() {
        // Three groups (around e1, e2, e3) for three clusters: every close pair shares a
        // cluster, so the decisions equal the all-pairs ones, for any seed.
        for seed in 0..8 {
            let config = NearDedup {
                threshold: 0.95,
                clusters: 3,
                iterations: 20,
                seed,
            };
            assert_eq!(
                near_duplicates(&rows(), 3, &config),
                [false, false, true, false, true, false],
                "seed {seed}"
            );
        }
        assert!(
            near_duplicates(
                &[],
                3,
                &NearDedup {
                    threshold: 0.9,
                    clusters: 4,
                    iterations: 5,
                    seed: 0
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn blocks_of_clusters_find_what_one_block_finds() {
        // 400 random unit rows in 8 dims, each followed by a slightly moved copy (cos ≈ 0.99):
        // whatever the byte budget (from one cluster per block to all at once) and however
        // the rows come in blocks, the same rows are duplicates.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let dim = 8;
        let mut rows = Vec::new();
        for _ in 0..200 {
            let x: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
            let y: Vec<f32> = x
                .iter()
                .map(|v| v + 0.03 * (rng.random::<f32>() - 0.5))
                .collect();
            rows.extend(unit(&x));
            rows.extend(unit(&y));
        }
        let config = NearDedup {
            threshold: 0.97,
            clusters: 6,
            iterations: 20,
            seed: 5,
        };
        let whole = near_duplicates(&rows, dim, &config);
        // The copies are found, and a handful of chance neighbours at most beside them.
        let copies = whole.iter().skip(1).step_by(2).filter(|d| **d).count();
        assert!(copies > 150, "{copies} of 200 copies found");

        /// The rows in blocks of 7.
        struct Sevens<'a>(&'a [f32], usize);
        impl RowBlocks for Sevens<'_> {
            fn dim(&self) -> usize {
                self.1
            }
            fn each_block(&self, f: &mut dyn FnMut(u64, &[f32])) -> std::io::Result<()> {
                for (b, chunk) in self.0.chunks(7 * self.1).enumerate() {
                    f(b as u64 * 7, chunk);
                }
                Ok(())
            }
        }
        for budget in [1, 100 * dim * 4, usize::MAX] {
            let mut flags = vec![false; 400];
            let k = near_duplicates_in_blocks(&Sevens(&rows, dim), &config, budget, &mut |i| {
                assert!(!flags[i as usize], "row {i} reported twice");
                flags[i as usize] = true;
            })
            .expect("in memory");
            assert_eq!(k, 6);
            assert_eq!(flags, whole, "budget {budget}");
        }
    }
}
