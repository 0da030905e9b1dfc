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

/// The histogram's counts, taken one pair at a time (the scores are streamed).
#[derive(Debug, Clone)]
pub struct Bins {
    lo: f32,
    hi: f32,
    /// Per bin `(kept, dropped)`.
    counts: Vec<(u64, u64)>,
}

impl Bins {
    /// [`BINS`] equal bins over `lo..hi` (the top edge falls in the last bin); a single value
    /// (`lo == hi`) gets a visible bar, the range widened around it.
    pub fn new(lo: f32, hi: f32) -> Self {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.05, hi + 0.05)
        };
        Self {
            lo,
            hi,
            counts: vec![(0, 0); BINS],
        }
    }

    /// Counts one pair; NaN and scores outside the range are left out.
    pub fn add(&mut self, score: f32, kept: bool) {
        if !(self.lo..=self.hi).contains(&score) {
            return;
        }
        let width = (self.hi - self.lo) / BINS as f32;
        let at = (((score - self.lo) / width) as usize).min(BINS - 1);
        if kept {
            self.counts[at].0 += 1;
        } else {
            self.counts[at].1 += 1;
        }
    }
}

/// Draws the histogram into `file`, an 800 × 500 PNG; `threshold` is drawn as a vertical line.
pub fn draw(bins: &Bins, threshold: Option<f32>, file: &Path) -> Result<()> {
    register_bundled_font()?;
    let Bins { lo, hi, .. } = *bins;
    ensure!(lo.is_finite() && hi.is_finite(), "no finite scores to draw");
    let bins = &bins.counts;
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
        let mut bins = Bins::new(0.0, 1.0);
        for (s, k) in scores.iter().zip(kept) {
            bins.add(*s, k);
        }
        let bins = bins.counts;
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
        let mut bins = Bins::new(0.0, (199.0f32 / 200.0).sin());
        for s in (0..200).map(|i| (i as f32 / 200.0).sin()) {
            bins.add(s, s > 0.4);
        }
        draw(&bins, Some(0.4), &file).expect("drawn");
        let bytes = std::fs::read(&file).expect("png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // Axes, labels and bars: far more than a blank 800 x 500 PNG's ~2 KB.
        assert!(bytes.len() > 4000, "{} bytes", bytes.len());
        assert!(draw(&Bins::new(f32::NAN, f32::NAN), None, &file).is_err());
    }
}
