//! `curate`'s score histogram: the pairs' CLIP scores in equal-width bins, each bar split into
//! the kept pairs and the dropped ones, with the score threshold drawn when there is one.

use std::path::Path;

use anyhow::{Result, ensure};
use plotters::prelude::*;

use crate::plots::{COLORS, register_bundled_font, render_png};

/// A bar layer's extent in a bin of `(kept, dropped)` counts: from, to.
type Span = fn(&(u64, u64)) -> (u64, u64);

/// Bins of the histogram.
const BINS: usize = 50;

/// Per bin `(kept, dropped)` counts of `scores` over `lo..hi` in [`BINS`] equal bins (the top
/// edge falls in the last bin); NaN scores are left out.
fn bin(scores: &[f32], kept: &[bool], lo: f32, hi: f32) -> Vec<(u64, u64)> {
    let mut bins = vec![(0u64, 0u64); BINS];
    let width = (hi - lo) / BINS as f32;
    for (score, keep) in scores.iter().zip(kept) {
        if score.is_nan() {
            continue;
        }
        let at = if width > 0.0 {
            (((score - lo) / width) as usize).min(BINS - 1)
        } else {
            0
        };
        if *keep {
            bins[at].0 += 1;
        } else {
            bins[at].1 += 1;
        }
    }
    bins
}

/// Draws the histogram of `scores` (`kept[i]` says whether pair `i` was kept) into `file`, an
/// 800 × 500 PNG; `threshold` is drawn as a vertical line.
pub fn draw(scores: &[f32], kept: &[bool], threshold: Option<f32>, file: &Path) -> Result<()> {
    register_bundled_font()?;
    let finite = || scores.iter().copied().filter(|s| s.is_finite());
    let lo = finite().fold(f32::INFINITY, f32::min);
    let hi = finite().fold(f32::NEG_INFINITY, f32::max);
    ensure!(lo.is_finite() && hi.is_finite(), "no finite scores to draw");
    // A single value gets a visible bar: widen the range around it.
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.05, hi + 0.05)
    };
    let bins = bin(scores, kept, lo, hi);
    let tallest = bins.iter().map(|(k, d)| k + d).max().unwrap_or(0).max(1);
    let width = (hi - lo) / BINS as f32;
    render_png(file, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("CLIP score of each pair", ("sans-serif", 24))
            .margin(16)
            .margin_right(32)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(f64::from(lo)..f64::from(hi), 0f64..(tallest as f64 * 1.08))?;
        chart
            .configure_mesh()
            .x_desc("cosine of the image and text embeddings")
            .y_desc("pairs")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(TRANSPARENT)
            .draw()?;
        let edge = |i: usize| f64::from(lo + width * i as f32);
        // Each bar: the kept pairs from 0, the dropped ones stacked on them.
        let layers: [(&str, RGBColor, Span); 2] = [
            ("kept", COLORS[0], |&(k, _)| (0, k)),
            ("dropped", COLORS[1], |&(k, d)| (k, k + d)),
        ];
        for (label, color, span) in layers {
            chart
                .draw_series(bins.iter().enumerate().filter_map(|(i, bin)| {
                    let (from, to) = span(bin);
                    (to > from).then(|| {
                        Rectangle::new(
                            [(edge(i), from as f64), (edge(i + 1), to as f64)],
                            color.filled(),
                        )
                    })
                }))?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled())
                });
        }
        if let Some(t) = threshold.filter(|t| t.is_finite()) {
            let t = f64::from(t);
            chart.draw_series(std::iter::once(PathElement::new(
                [(t, 0.0), (t, tallest as f64 * 1.08)],
                BLACK.stroke_width(2),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_split_kept_and_dropped_and_close_the_top_edge() {
        // Range 0..1 in 50 bins of 0.02: 0.0 -> bin 0, 0.03 -> bin 1, 0.5 -> bin 25, 1.0 (the
        // top edge) -> bin 49; NaN is left out.
        let scores = [0.0, 0.03, 0.5, 1.0, 0.5, f32::NAN];
        let kept = [true, false, true, true, false, true];
        let bins = bin(&scores, &kept, 0.0, 1.0);
        assert_eq!(bins[0], (1, 0));
        assert_eq!(bins[1], (0, 1));
        assert_eq!(bins[25], (1, 1));
        assert_eq!(bins[49], (1, 0));
        let total: u64 = bins.iter().map(|(k, d)| k + d).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn the_png_is_drawn() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("scores.png");
        let scores: Vec<f32> = (0..200).map(|i| (i as f32 / 200.0).sin()).collect();
        let kept: Vec<bool> = scores.iter().map(|s| *s > 0.4).collect();
        draw(&scores, &kept, Some(0.4), &file).expect("drawn");
        let bytes = std::fs::read(&file).expect("png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // Axes, labels and bars: far more than a blank 800 x 500 PNG's ~2 KB.
        assert!(bytes.len() > 4000, "{} bytes", bytes.len());
        assert!(draw(&[f32::NAN], &[true], None, &file).is_err());
    }
}
