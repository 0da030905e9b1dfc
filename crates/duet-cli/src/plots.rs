//! PNG charts of a run's `metrics.jsonl`: one per training key (`loss.png`, `lr.png`, ...) and,
//! per evaluation set, one of its recalls/accuracies (`eval-<set>.png`) and one of its ranks
//! (`eval-<set>-ranks.png`).
//!
//! Keys are read generically: every numeric field but `step` is a series; a key holding `/` is
//! `<set>/<metric>`, anything else a training key. Null and non-finite values are skipped.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, RGBColor, register_font};
use serde_json::Value;

/// DejaVu Sans 2.37 (see `assets/README.md`): with plotters' `ab_glyph` feature text is drawn
/// from registered fonts only, so charts render the same on a machine without system fonts.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (800, 500);
/// Beyond this many points per series, markers would merge into a blob that hides the line's
/// noise; the line alone is drawn.
const MAX_MARKED_POINTS: usize = 200;
/// matplotlib's tab10, so lines of one chart stay distinguishable.
pub(crate) const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line: `(step, value)` points in step order.
#[derive(Debug)]
struct Series {
    name: String,
    points: Vec<(u64, f64)>,
}

/// One PNG.
#[derive(Debug)]
struct Chart {
    file: String,
    title: String,
    y_desc: String,
    series: Vec<Series>,
    /// Whether `y` spans 0..100 (percentages) rather than the data's range.
    percent: bool,
    /// Where the legend goes when there is more than one line.
    legend: SeriesLabelPosition,
}

/// Writes `<run_dir>/plots/*.png` from `<run_dir>/metrics.jsonl`; returns the files written.
///
/// A missing or empty `metrics.jsonl` writes nothing; a line that is not a JSON object with an
/// integer `step` is an error naming the file and line.
pub fn plot_run(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let path = run_dir.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let charts = charts(parse(&text, &path)?);
    if charts.is_empty() {
        return Ok(Vec::new());
    }
    register_bundled_font()?;
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::with_capacity(charts.len());
    for chart in &charts {
        let file = dir.join(&chart.file);
        draw(chart, &file).with_context(|| format!("drawing {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}

/// Every key's finite values, by key. `path` only names the file in errors.
fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, Vec<(u64, f64)>>> {
    let mut series: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row =
            parse_row(line).with_context(|| format!("{}, line {}", path.display(), index + 1))?;
        for (key, value) in row.values {
            series.entry(key).or_default().push((row.step, value));
        }
    }
    series.retain(|_, points| !points.is_empty());
    for points in series.values_mut() {
        // One row per step in a well-kept file (resume truncates), but a line must not run back.
        points.sort_by_key(|&(step, _)| step);
    }
    Ok(series)
}

#[derive(Debug)]
struct Row {
    step: u64,
    values: Vec<(String, f64)>,
}

fn parse_row(line: &str) -> Result<Row> {
    let Value::Object(fields) = serde_json::from_str::<Value>(line)? else {
        bail!("not a JSON object");
    };
    let step = match fields.get("step") {
        Some(step) => step
            .as_u64()
            .with_context(|| format!("`step` is {step}, not a non-negative integer"))?,
        None => bail!("no `step`"),
    };
    let values = fields
        .into_iter()
        .filter(|(key, _)| key != "step")
        .filter_map(|(key, value)| value.as_f64().filter(|v| v.is_finite()).map(|v| (key, v)))
        .collect();
    Ok(Row { step, values })
}

/// Training keys one chart each, then per evaluation set its metrics and its ranks.
fn charts(series: BTreeMap<String, Vec<(u64, f64)>>) -> Vec<Chart> {
    let mut charts = Vec::new();
    // set -> (metrics, ranks)
    let mut sets: BTreeMap<String, (Vec<Series>, Vec<Series>)> = BTreeMap::new();
    for (key, points) in series {
        match key.split_once('/') {
            None => charts.push(Chart {
                file: format!("{}.png", sanitise(&key)),
                title: key.clone(),
                y_desc: key.clone(),
                series: vec![Series { name: key, points }],
                percent: false,
                legend: SeriesLabelPosition::UpperRight,
            }),
            Some((set, metric)) => {
                let (metrics, ranks) = sets.entry(set.to_owned()).or_default();
                let group = if metric.contains("rank") {
                    ranks
                } else {
                    metrics
                };
                group.push(Series {
                    name: metric.to_owned(),
                    points,
                });
            }
        }
    }
    for (set, (mut metrics, mut ranks)) in sets {
        let name = sanitise(&set);
        if !metrics.is_empty() {
            metrics.sort_by(|a, b| legend_order(&a.name).cmp(&legend_order(&b.name)));
            let percent = metrics
                .iter()
                .flat_map(|s| &s.points)
                .all(|&(_, v)| (0.0..=100.0).contains(&v));
            charts.push(Chart {
                file: format!("eval-{name}.png"),
                title: format!("{set} evaluation"),
                y_desc: if percent { "%" } else { "value" }.to_owned(),
                series: metrics,
                percent,
                // Recalls and accuracies rise as training goes on, leaving the upper left free.
                legend: SeriesLabelPosition::UpperLeft,
            });
        }
        if !ranks.is_empty() {
            ranks.sort_by(|a, b| legend_order(&a.name).cmp(&legend_order(&b.name)));
            charts.push(Chart {
                file: format!("eval-{name}-ranks.png"),
                title: format!("{set} ranks"),
                y_desc: "rank".to_owned(),
                series: ranks,
                percent: false,
                // Ranks fall as training goes on, leaving the upper right free.
                legend: SeriesLabelPosition::UpperRight,
            });
        }
    }
    charts
}

/// Orders names by their text and then numerically by a trailing number, so the legend reads
/// `i2t_r1, i2t_r5, i2t_r10` rather than `i2t_r1, i2t_r10, i2t_r5`.
fn legend_order(name: &str) -> (&str, u64, &str) {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = name[stem.len()..].parse().unwrap_or(u64::MAX);
    (stem, number, name)
}

/// Keeps `[A-Za-z0-9_-]` of a name, replacing every other character by `_`.
fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `lo..hi` widened so plotters gets a non-empty range: a single value gets `±pad_single`
/// (or `±1` when it is 0); a real range gets `margin` of its width on each side.
fn padded(lo: f64, hi: f64, margin: f64, pad_single: f64) -> Range<f64> {
    let width = hi - lo;
    if width <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let pad = if lo == 0.0 {
            1.0
        } else {
            lo.abs() * pad_single
        };
        return (lo - pad)..(hi + pad);
    }
    (lo - width * margin)..(hi + width * margin)
}

/// The smallest and largest of `values`; `None` when there are none.
fn extent<T: Copy + PartialOrd>(values: impl Iterator<Item = T>) -> Option<(T, T)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((if v < lo { v } else { lo }, if v > hi { v } else { hi })),
    })
}

fn draw(chart: &Chart, file: &Path) -> Result<()> {
    let points = || chart.series.iter().flat_map(|s| &s.points);
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (
        extent(points().map(|&(step, _)| step)),
        extent(points().map(|&(_, value)| value)),
    ) else {
        bail!("no points to draw");
    };
    // Integer steps, so ticks are whole steps; a single step gets ±1 so its marker sits inside.
    let x_range = if x_hi > x_lo {
        x_lo..x_hi
    } else {
        x_lo.saturating_sub(1)..x_hi.saturating_add(1)
    };
    let y_range = if chart.percent {
        0.0..100.0
    } else {
        padded(y_lo, y_hi, 0.05, 0.1)
    };
    // Values near f64::MAX: an infinite range would map every point to a NaN pixel.
    ensure!(
        (y_range.end - y_range.start).is_finite(),
        "values {y_lo}..{y_hi} are too large to plot"
    );
    render_png(file, |root| draw_into(root, chart, x_range, y_range))
}

/// A chart's canvas: [`SIZE`] RGB8 pixels, white when handed to the painter.
pub(crate) type Canvas<'a> = DrawingArea<BitMapBackend<'a, RGBPixel>, Shift>;

/// Paints a white [`SIZE`] canvas with `paint` and writes it to `file` as a PNG.
pub(crate) fn render_png(file: &Path, paint: impl FnOnce(&Canvas<'_>) -> Result<()>) -> Result<()> {
    let (width, height) = SIZE;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut pixels, SIZE)?
            .into_drawing_area();
        root.fill(&WHITE)?;
        paint(&root)?;
        root.present()?;
    }
    image::save_buffer_with_format(
        file,
        &pixels,
        width,
        height,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    )?;
    Ok(())
}

/// Draws `chart` on `root`.
fn draw_into(
    root: &Canvas<'_>,
    chart: &Chart,
    x_range: Range<u64>,
    y_range: Range<f64>,
) -> Result<()> {
    let mut plot = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        // Room for half of the last x tick label, which is centred on the plot's right edge.
        .margin_right(32)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d(
            x_range,
            YAxis {
                ticks: ticks(&y_range),
                linear: y_range.into(),
            },
        )?;
    plot.configure_mesh()
        .x_desc("step")
        .y_desc(chart.y_desc.as_str())
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        // Labelled mesh lines only: the light ones between them crowd an 800x500 chart.
        .light_line_style(TRANSPARENT)
        .draw()?;
    for (index, series) in chart.series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        plot.draw_series(LineSeries::new(
            series.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(series.name.as_str())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        if series.points.len() <= MAX_MARKED_POINTS {
            plot.draw_series(
                series
                    .points
                    .iter()
                    .map(|&point| Circle::new(point, 3, color.filled())),
            )?;
        }
    }
    if chart.series.len() > 1 {
        plot.configure_series_labels()
            .position(chart.legend.clone())
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// `y` ticks: their values and the decimals that tell neighbours apart.
#[derive(Debug)]
struct Ticks {
    values: Vec<f64>,
    decimals: usize,
}

/// Ticks 1, 2 or 5 x 10^k apart, the closest spacing that puts at most 11 on `range`, each
/// computed as `i * spacing`. plotters' own tick search adds the spacing up and loses the last
/// tick to rounding (2.43..3.97 ends at 3.6, not 3.8), and its float labels print 0.00030 and
/// 0.00031 both as `0.0003`.
fn ticks(range: &Range<f64>) -> Ticks {
    let tenth = (range.end - range.start) / 10.0;
    let exponent = tenth.log10().floor();
    let magnitude = 10f64.powf(exponent);
    // The tolerance keeps a tenth that is 5 x 10^k up to rounding at 5 x 10^k.
    let mantissa = [1.0, 2.0, 5.0]
        .into_iter()
        .find(|m| m * magnitude >= tenth * (1.0 - 1e-9))
        .unwrap_or(10.0);
    let spacing = mantissa * magnitude;
    if !(spacing.is_finite() && spacing > 0.0) {
        return Ticks {
            values: vec![range.start],
            decimals: 0,
        };
    }
    let first = (range.start / spacing - 1e-9).ceil() as i64;
    let last = (range.end / spacing + 1e-9).floor() as i64;
    let values = (first..=last)
        .take(11)
        .map(|i| i as f64 * spacing)
        .collect();
    let exponent = if mantissa == 10.0 {
        exponent + 1.0
    } else {
        exponent
    };
    // At most 12 decimals, enough for any learning rate worth plotting.
    let decimals = (-exponent).clamp(0.0, 12.0) as usize;
    Ticks { values, decimals }
}

/// The `y` axis: plotters' linear `f64` axis with [`ticks`] as its mesh lines and labels.
struct YAxis {
    linear: RangedCoordf64,
    ticks: Ticks,
}

impl Ranged for YAxis {
    type ValueType = f64;
    type FormatOption = NoDefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.values.clone()
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

impl ValueFormatter<f64> for YAxis {
    fn format_ext(&self, value: &f64) -> String {
        format_tick(*value, self.ticks.decimals)
    }
}

/// `value` with `decimals` decimals, never `-0.00`.
fn format_tick(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    match text.strip_prefix('-') {
        Some(digits) if digits.chars().all(|c| c == '0' || c == '.') => digits.to_owned(),
        _ => text,
    }
}

/// Registers [`FONT`] as plotters' `sans-serif` once per process.
pub(crate) fn register_bundled_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    ensure!(
        ok,
        "the bundled DejaVuSans.ttf is not a font plotters can read"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the PNG signature and the IHDR size (bytes 16..24: width, height, big-endian).
    fn assert_png_800x500(path: &Path) {
        let bytes = std::fs::read(path).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
        assert_eq!((width, height), (800, 500), "{}", path.display());
        // A blank 800x500 white PNG compresses to well under 2 KB; axes, text and lines do not.
        assert!(
            bytes.len() > 4000,
            "{} is {} bytes",
            path.display(),
            bytes.len()
        );
    }

    fn eval_row(step: u64, r1: f64) -> String {
        format!(
            r#"{{"step":{step},"val/i2t_r1":{r1},"val/i2t_r5":{},"val/i2t_r10":{},"val/t2i_r1":{r1},"val/t2i_r5":38.0,"val/t2i_r10":59.1,"val/i2t_mean_rank":9.5,"val/i2t_median_rank":4.0,"val/t2i_mean_rank":9.1,"val/t2i_median_rank":4.0}}"#,
            r1 + 20.0,
            r1 + 40.0
        )
    }

    fn file_names(paths: &[PathBuf]) -> Vec<String> {
        let mut names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_run_plots_every_training_key_and_each_eval_set_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lines = Vec::new();
        for step in 1..=20u64 {
            let s = step as f64;
            let grad_norm = if step == 7 {
                "null".to_owned()
            } else {
                format!("{}", 1.0 + 0.1 * s)
            };
            lines.push(format!(
                r#"{{"step":{step},"loss":{},"lr":{},"logit_scale":2.66,"grad_norm":{grad_norm},"samples_per_sec":85.1}}"#,
                4.0 - 0.1 * s,
                3e-4 * s / 20.0
            ));
            if step % 10 == 0 {
                lines.push(eval_row(step, s));
            }
        }
        std::fs::write(dir.path().join("metrics.jsonl"), lines.join("\n") + "\n").expect("write");

        let written = plot_run(dir.path()).expect("plot");

        let expected = [
            "eval-val-ranks.png",
            "eval-val.png",
            "grad_norm.png",
            "logit_scale.png",
            "loss.png",
            "lr.png",
            "samples_per_sec.png",
        ];
        assert_eq!(file_names(&written), expected);
        let mut on_disk: Vec<String> = std::fs::read_dir(dir.path().join("plots"))
            .expect("plots dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, expected);
        for path in &written {
            assert_eq!(path.parent(), Some(dir.path().join("plots").as_path()));
            assert_png_800x500(path);
        }
    }

    #[test]
    fn a_single_eval_point_still_plots() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("metrics.jsonl"), eval_row(300, 12.1)).expect("write");

        let written = plot_run(dir.path()).expect("plot");

        assert_eq!(file_names(&written), ["eval-val-ranks.png", "eval-val.png"]);
        for path in &written {
            assert_png_800x500(path);
        }
    }

    #[test]
    fn a_malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "{\"step\":1,\"loss\":3.9}\n{\"step\":2,\"loss\":3.8}\n{\"step\":3,\"lo\n";
        std::fs::write(dir.path().join("metrics.jsonl"), text).expect("write");

        let err = plot_run(dir.path()).expect_err("line 3 is cut off");

        let message = format!("{err:#}");
        assert!(message.contains("metrics.jsonl"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(!dir.path().join("plots").exists());
    }

    #[test]
    fn a_row_without_an_integer_step_is_an_error() {
        let path = Path::new("metrics.jsonl");
        for line in [r#"{"loss":1.0}"#, r#"{"step":1.5}"#, r#"[1,2]"#] {
            let err = parse(line, path).expect_err(line);
            assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        }
    }

    #[test]
    fn a_missing_or_empty_file_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            plot_run(dir.path()).expect("missing"),
            Vec::<PathBuf>::new()
        );
        std::fs::write(dir.path().join("metrics.jsonl"), "").expect("write");
        assert_eq!(plot_run(dir.path()).expect("empty"), Vec::<PathBuf>::new());
        assert!(!dir.path().join("plots").exists());
    }

    #[test]
    fn null_and_non_numeric_values_are_skipped_and_empty_keys_not_charted() {
        let text = "{\"step\":1,\"loss\":2.0,\"grad_norm\":null,\"phase\":\"warmup\"}\n\
                    {\"step\":2,\"loss\":1.0}\n";
        let series = parse(text, Path::new("metrics.jsonl")).expect("parse");
        assert_eq!(series.keys().collect::<Vec<_>>(), ["loss"]);
        assert_eq!(series["loss"], [(1, 2.0), (2, 1.0)]);
    }

    #[test]
    fn eval_keys_split_by_set_into_metrics_and_ranks() {
        let mut series = BTreeMap::new();
        for key in [
            "val/i2t_r10",
            "val/i2t_r5",
            "val/i2t_r1",
            "val/t2i_mean_rank",
        ] {
            series.insert(key.to_owned(), vec![(1, 50.0)]);
        }
        series.insert("fmnist.v2/top1".to_owned(), vec![(1, 150.0)]);
        let charts = charts(series);
        let summary: Vec<(&str, Vec<&str>, bool)> = charts
            .iter()
            .map(|c| {
                let names = c.series.iter().map(|s| s.name.as_str()).collect();
                (c.file.as_str(), names, c.percent)
            })
            .collect();
        assert_eq!(
            summary,
            [
                // 150 is outside 0..=100: the range follows the data.
                ("eval-fmnist_v2.png", vec!["top1"], false),
                ("eval-val.png", vec!["i2t_r1", "i2t_r5", "i2t_r10"], true),
                ("eval-val-ranks.png", vec!["t2i_mean_rank"], false),
            ]
        );
    }

    #[test]
    fn degenerate_ranges_are_padded() {
        // One value v != 0 gets ±10% of |v|: 3e-4 -> 2.7e-4..3.3e-4.
        let r = padded(3e-4, 3e-4, 0.05, 0.1);
        assert!(
            (r.start - 2.7e-4).abs() < 1e-12 && (r.end - 3.3e-4).abs() < 1e-12,
            "{r:?}"
        );
        // Zero gets ±1.
        assert_eq!(padded(0.0, 0.0, 0.05, 0.1), -1.0..1.0);
        // A real range gets 5% of its width (10) on each side.
        let r = padded(0.0, 10.0, 0.05, 0.1);
        assert!(
            (r.start + 0.5).abs() < 1e-12 && (r.end - 10.5).abs() < 1e-12,
            "{r:?}"
        );
    }

    #[test]
    fn y_ticks_are_round_and_reach_both_ends() {
        let labels = |range: Range<f64>| {
            let Ticks { values, decimals } = ticks(&range);
            values
                .iter()
                .map(|&v| format_tick(v, decimals))
                .collect::<Vec<_>>()
        };
        // 0..100: a tenth is 10, so ticks 10 apart.
        let percent: Vec<String> = (0..=10).map(|i| (i * 10).to_string()).collect();
        assert_eq!(labels(0.0..100.0), percent);
        // 2.43..3.97: a tenth is 0.154, so 0.2 apart; plotters' own search stops at 3.6.
        assert_eq!(
            labels(2.43..3.97),
            ["2.6", "2.8", "3.0", "3.2", "3.4", "3.6", "3.8"]
        );
        // 2.7e-4..3.3e-4: a tenth is 6e-6, so 1e-5 apart, 5 decimals.
        assert_eq!(
            labels(2.7e-4..3.3e-4),
            [
                "0.00027", "0.00028", "0.00029", "0.00030", "0.00031", "0.00032", "0.00033"
            ]
        );
        // 0..5e-4: a tenth is 5e-5 exactly, so 5e-5 apart (11 ticks).
        let lr = ticks(&(0.0..5e-4));
        assert_eq!((lr.values.len(), lr.decimals), (11, 5));
        // 83..87: a tenth is 0.4, so 0.5 apart.
        assert_eq!(
            labels(83.0..87.0),
            [
                "83.0", "83.5", "84.0", "84.5", "85.0", "85.5", "86.0", "86.5", "87.0"
            ]
        );
        // 0..7: a tenth is 0.7, so 1 apart, whole numbers.
        assert_eq!(ticks(&(0.0..7.0)).decimals, 0);
        assert_eq!(format_tick(-1e-9, 2), "0.00");
        assert_eq!(format_tick(-0.5, 1), "-0.5");
    }

    #[test]
    fn sanitise_keeps_only_safe_characters() {
        assert_eq!(sanitise("val"), "val");
        assert_eq!(sanitise("coco-5k_test"), "coco-5k_test");
        assert_eq!(sanitise("in/1k v2.é"), "in_1k_v2__");
    }
}
