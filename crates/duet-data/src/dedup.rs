//! Near-duplicate detection on embeddings, SemDeDup-style (Abbas et al. 2023): spherical
//! k-means splits the rows into clusters, and within each cluster a row is a duplicate when
//! its cosine with an *earlier* row of the same cluster is above the threshold. Comparing only
//! within clusters keeps the work near `n²/k` dot products instead of `n²`, and no `n × n`
//! matrix is ever held: each row scans its cluster's earlier rows on its own, so memory is the
//! embeddings plus `k` centroids.
//!
//! Choices, where SemDeDup leaves them open or differs:
//! - "Earlier" is position order (the spec's order), so the first of a group is kept, as the
//!   exact-duplicate filter does (SemDeDup orders by distance to the centroid).
//! - A row is dropped if *any* earlier row of its cluster is that close, dropped or not (as
//!   SemDeDup's triangular max), so a decision never depends on another's.
//! - Pairs split across clusters are missed (as in SemDeDup); `clusters = 1` compares all pairs.
//! - Deterministic: k-means++ seeding from a seeded ChaCha8, centroid sums taken in row order,
//!   ties in assignment to the lower cluster.

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

/// Which of the `n = embeddings.len() / dim` rows (unit vectors, row-major) are near
/// duplicates of an earlier row; see the module doc.
pub fn near_duplicates(embeddings: &[f32], dim: usize, config: &NearDedup) -> Vec<bool> {
    let n = embeddings.len().checked_div(dim).unwrap_or(0);
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let assignment = spherical_kmeans(embeddings, dim, config);
    let k = assignment.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &c) in assignment.iter().enumerate() {
        members[c].push(i);
    }
    let mut duplicate = vec![false; n];
    for cluster in &members {
        let flags: Vec<bool> = (0..cluster.len())
            .into_par_iter()
            .map(|p| {
                let this = row(cluster[p]);
                cluster[..p]
                    .iter()
                    .any(|&q| dot(this, row(q)) > config.threshold)
            })
            .collect();
        for (&i, flag) in cluster.iter().zip(flags) {
            duplicate[i] = flag;
        }
    }
    duplicate
}

/// k-means++ seeding (Arthur & Vassilvitskii 2007): the first centroid a uniform row, each
/// next one a row drawn with probability proportional to its squared distance `2 − 2 cos` to
/// the nearest centroid so far; when every row sits on a centroid, the first unpicked row.
fn kmeans_plus_plus(embeddings: &[f32], dim: usize, k: usize, seed: u64) -> Vec<f32> {
    let n = embeddings.len() / dim;
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
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

/// The cluster of every row: spherical k-means (cosine), `min(clusters, n)` centroids.
fn spherical_kmeans(embeddings: &[f32], dim: usize, config: &NearDedup) -> Vec<usize> {
    let n = embeddings.len().checked_div(dim).unwrap_or(0);
    let k = config.clusters.clamp(1, n.max(1));
    if n == 0 || k == 1 {
        return vec![0; n];
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let mut centroids = kmeans_plus_plus(embeddings, dim, k, config.seed);
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..config.iterations.max(1) {
        let next: Vec<usize> = (0..n)
            .into_par_iter()
            .map(|i| {
                let x = row(i);
                let mut best = (0, f32::NEG_INFINITY);
                for (c, centroid) in centroids.chunks(dim).enumerate() {
                    let s = dot(x, centroid);
                    if s > best.1 {
                        best = (c, s);
                    }
                }
                best.0
            })
            .collect();
        if next == assignment {
            break;
        }
        assignment = next;
        let mut sums = vec![0f32; k * dim];
        for (i, &c) in assignment.iter().enumerate() {
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                *s += x;
            }
        }
        for (c, sum) in sums.chunks(dim).enumerate() {
            let norm = dot(sum, sum).sqrt();
            // An emptied cluster keeps its centroid.
            if norm > 0.0 {
                for (dst, s) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(sum) {
                    *dst = s / norm;
                }
            }
        }
    }
    assignment
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
}
