//! Image–text retrieval: image `i` belongs with text `i`; each image ranks every text by cosine
//! similarity (and each text every image), and the metrics are where the true partner lands.
//!
//! Ranks are 1-based. Ties go to the lower index, as a stable descending sort would order them:
//! the rank of candidate `i` for a query is `1 + #{j : s_j > s_i} + #{j < i : s_j = s_i}`. A NaN
//! true score ranks last; NaN candidates never outrank. Scores are computed `chunk` queries at a
//! time, so `n x n` is never held at once (100k pairs at chunk 1024 hold 1024 x 100k).
//!
//! Metrics follow OpenCLIP 3.3's `get_clip_metrics` (`zero_shot`/`train.py`): `R@k` is the share of
//! queries whose partner ranks in the top `k`, here in percent; the mean rank is the mean of the
//! ranks; the median rank is `floor(median(rank - 1)) + 1`.

use burn::tensor::Tensor;
use serde::Serialize;

use crate::EvalError;

/// Retrieval metrics over `pairs` image–text pairs (recalls in percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetrievalMetrics {
    /// Number of pairs.
    pub pairs: usize,
    /// Image -> text recall at 1, 5, 10.
    pub i2t_r1: f64,
    /// Image -> text recall at 5.
    pub i2t_r5: f64,
    /// Image -> text recall at 10.
    pub i2t_r10: f64,
    /// Text -> image recall at 1.
    pub t2i_r1: f64,
    /// Text -> image recall at 5.
    pub t2i_r5: f64,
    /// Text -> image recall at 10.
    pub t2i_r10: f64,
    /// Mean rank of the true text for an image.
    pub i2t_mean_rank: f64,
    /// Median rank of the true text for an image.
    pub i2t_median_rank: f64,
    /// Mean rank of the true image for a text.
    pub t2i_mean_rank: f64,
    /// Median rank of the true image for a text.
    pub t2i_median_rank: f64,
}

impl RetrievalMetrics {
    /// Recall at `k` of a random ranking, in percent: `100 k / pairs`.
    pub fn chance_recall(&self, k: usize) -> f64 {
        100.0 * (k.min(self.pairs) as f64) / self.pairs.max(1) as f64
    }

    /// `(name, value)` for every metric (`i2t_r1`, …), in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 10] {
        [
            ("i2t_r1", self.i2t_r1),
            ("i2t_r5", self.i2t_r5),
            ("i2t_r10", self.i2t_r10),
            ("t2i_r1", self.t2i_r1),
            ("t2i_r5", self.t2i_r5),
            ("t2i_r10", self.t2i_r10),
            ("i2t_mean_rank", self.i2t_mean_rank),
            ("i2t_median_rank", self.i2t_median_rank),
            ("t2i_mean_rank", self.t2i_mean_rank),
            ("t2i_median_rank", self.t2i_median_rank),
        ]
    }
}

/// Metrics of L2-normalised `images` `[n, d]` against L2-normalised `texts` `[n, d]`.
pub fn retrieval_metrics(
    images: Tensor<2>,
    texts: Tensor<2>,
    chunk: usize,
) -> Result<RetrievalMetrics, EvalError> {
    let [n, image_dim] = images.dims();
    let [texts_n, text_dim] = texts.dims();
    if n != texts_n || image_dim != text_dim {
        return Err(EvalError::Shape {
            images: n,
            image_dim,
            texts: texts_n,
            text_dim,
        });
    }
    if n == 0 {
        return Err(EvalError::Empty {
            what: "retrieval".into(),
        });
    }
    let i2t = ranks(images.clone(), texts.clone(), chunk)?;
    let t2i = ranks(texts, images, chunk)?;
    let recall = |ranks: &[usize], k: usize| {
        100.0 * ranks.iter().filter(|&&r| r <= k).count() as f64 / n as f64
    };
    Ok(RetrievalMetrics {
        pairs: n,
        i2t_r1: recall(&i2t, 1),
        i2t_r5: recall(&i2t, 5),
        i2t_r10: recall(&i2t, 10),
        t2i_r1: recall(&t2i, 1),
        t2i_r5: recall(&t2i, 5),
        t2i_r10: recall(&t2i, 10),
        i2t_mean_rank: mean(&i2t),
        i2t_median_rank: median_rank(&i2t),
        t2i_mean_rank: mean(&t2i),
        t2i_median_rank: median_rank(&t2i),
    })
}

/// The 1-based rank of candidate `i` among all `candidates` `[n, d]` for query `i` of
/// `queries` `[n, d]`, by dot product, `chunk` queries at a time.
pub fn ranks(
    queries: Tensor<2>,
    candidates: Tensor<2>,
    chunk: usize,
) -> Result<Vec<usize>, EvalError> {
    let [n, _] = queries.dims();
    let mut out = Vec::with_capacity(n);
    score_blocks(&queries, candidates, chunk, |start, rows| {
        for (r, row) in rows.enumerate() {
            out.push(rank_in_row(row, start + r));
        }
    })?;
    Ok(out)
}

/// Scores `queries` `[n, d]` against `candidates` `[m, d]` by dot product, `chunk` queries at
/// a time, handing `visit` each block's first query index and its score rows (`m` values each).
pub(crate) fn score_blocks(
    queries: &Tensor<2>,
    candidates: Tensor<2>,
    chunk: usize,
    mut visit: impl FnMut(usize, std::slice::Chunks<'_, f32>),
) -> Result<(), EvalError> {
    let [n, _] = queries.dims();
    let [m, _] = candidates.dims();
    let chunk = chunk.max(1);
    let candidates_t = candidates.transpose();
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let values = queries
            .clone()
            .narrow(0, start, end - start)
            .matmul(candidates_t.clone())
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| EvalError::Readback {
                message: format!("{e:?}"),
            })?;
        visit(start, values.chunks(m.max(1)));
        start = end;
    }
    Ok(())
}

/// 1-based rank of `row[truth]` in `row`: ties go to the lower index, a NaN truth ranks last.
pub(crate) fn rank_in_row(row: &[f32], truth: usize) -> usize {
    let s = row[truth];
    if s.is_nan() {
        return row.len();
    }
    1 + row
        .iter()
        .enumerate()
        .filter(|&(j, &v)| v > s || (v == s && j < truth))
        .count()
}

fn mean(ranks: &[usize]) -> f64 {
    ranks.iter().map(|&r| r as f64).sum::<f64>() / ranks.len().max(1) as f64
}

/// OpenCLIP: `np.floor(np.median(preds)) + 1` over 0-based ranks `preds`.
fn median_rank(ranks: &[usize]) -> f64 {
    let mut zero_based: Vec<f64> = ranks.iter().map(|&r| (r - 1) as f64).collect();
    zero_based.sort_by(f64::total_cmp);
    let n = zero_based.len();
    if n == 0 {
        return f64::NAN;
    }
    let median = if n % 2 == 1 {
        zero_based[n / 2]
    } else {
        (zero_based[n / 2 - 1] + zero_based[n / 2]) / 2.0
    };
    median.floor() + 1.0
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    fn matrix(rows: &[[f32; 2]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Device::flex())
    }

    /// Images I0 = I2 = (1, 0), I1 = (0, 1); texts T0 = (1, 0), T1 = (0, 1), T2 = (0.6, 0.8).
    ///
    /// image -> text scores: I0 [1, 0, .6] -> T0 rank 1; I1 [0, 1, .8] -> T1 rank 1;
    /// I2 [1, 0, .6] -> T2 rank 2 (T0 scores higher).
    /// text -> image scores: T0 [1, 0, 1] -> I0 rank 1 (ties with I2, wins as the lower index);
    /// T1 [0, 1, 0] -> rank 1; T2 [.6, .8, .6] -> I2 rank 3 (I1 higher, I0 ties and is lower).
    fn example() -> (Tensor<2>, Tensor<2>) {
        (
            matrix(&[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
            matrix(&[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]),
        )
    }

    #[test]
    fn ranks_break_ties_toward_the_lower_index() {
        let (images, texts) = example();
        for chunk in [1, 2, 3, 100] {
            assert_eq!(
                ranks(images.clone(), texts.clone(), chunk).expect("ranks"),
                [1, 1, 2]
            );
            assert_eq!(
                ranks(texts.clone(), images.clone(), chunk).expect("ranks"),
                [1, 1, 3]
            );
        }
    }

    #[test]
    fn metrics_of_the_hand_example() {
        let (images, texts) = example();
        let m = retrieval_metrics(images, texts, 2).expect("metrics");
        // i2t ranks [1, 1, 2]: R@1 = 2/3, R@5 = 3/3; mean 4/3; median of [0, 0, 1] is 0 -> 1.
        // t2i ranks [1, 1, 3]: R@1 = 2/3; mean 5/3; median of [0, 0, 2] is 0 -> 1.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(m.i2t_r1, 200.0 / 3.0) && close(m.i2t_r5, 100.0));
        assert!(close(m.t2i_r1, 200.0 / 3.0) && close(m.t2i_r10, 100.0));
        assert!(close(m.i2t_mean_rank, 4.0 / 3.0) && close(m.t2i_mean_rank, 5.0 / 3.0));
        assert_eq!((m.i2t_median_rank, m.t2i_median_rank), (1.0, 1.0));
        assert!(close(m.chance_recall(1), 100.0 / 3.0));
    }

    #[test]
    fn median_rank_floors_an_even_median() {
        // 0-based [0, 1, 2, 5]: median 1.5, floor 1, +1 = 2.
        assert_eq!(median_rank(&[1, 2, 3, 6]), 2.0);
    }

    #[test]
    fn nan_scores_rank_last() {
        assert_eq!(rank_in_row(&[f32::NAN, 0.5, 0.2], 0), 3);
        assert_eq!(rank_in_row(&[f32::NAN, 0.5, 0.2], 1), 1);
    }

    #[test]
    fn mismatched_inputs_are_an_error() {
        let (images, _) = example();
        let two = matrix(&[[1.0, 0.0], [0.0, 1.0]]);
        let err = retrieval_metrics(images, two, 4).expect_err("3 vs 2");
        assert!(err.to_string().contains("3 image embeddings"), "{err}");
    }
}
