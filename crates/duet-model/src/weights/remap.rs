//! The remap engine: moves tensors between a foreign state dict (HF, OpenCLIP) and a
//! [`ClipModel`] following a table of [`Mapping`]s, and reports every mismatch at once.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::TensorData;
use burn_store::{ModuleSnapshot, bridge};
use safetensors::{Dtype, SafeTensors};

use crate::{ClipModel, WeightReport};

/// How a source tensor becomes a duet parameter (and back, on export).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Same shape, same layout.
    Copy,
    /// PyTorch `nn.Linear` `[out, in]` to burn's `[in, out]`.
    Transpose,
    /// A 0-dim tensor (`logit_scale`) to a `[1]` parameter.
    Scalar,
    /// Part `index` of `parts` equal row blocks (a fused `in_proj_weight` `[3d, d]` holds q, k, v),
    /// transposed afterwards when `transpose`.
    Rows {
        /// Which block, from 0.
        index: usize,
        /// How many blocks the rows split into.
        parts: usize,
        /// Transpose the block (weights yes, biases no).
        transpose: bool,
    },
    /// A tensor with a leading axis of 1 (timm's `pos_embed` `[1, n, d]`) to the same values
    /// without it (`[n, d]`).
    DropLeadingOne,
    /// SigLIP 2's patch embedding, a Linear `[d, p·p·c]` over patches flattened
    /// (y, x, channel), to the equivalent conv weight `[d, c, p, p]`: a permutation, so the
    /// round trip is exact.
    PatchLinear {
        /// Patch side `p`.
        patch: usize,
        /// Image channels `c`.
        channels: usize,
    },
}

/// `[d, a, b, c]` (row-major `values`) permuted by `order` into `[d, ·, ·, ·]`: output axis `i`
/// is input axis `order[i]`, axis 0 fixed.
fn permute4(values: &[f32], dims: [usize; 4], order: [usize; 4]) -> (Vec<f32>, Vec<usize>) {
    let out_dims = order.map(|axis| dims[axis]);
    let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
    let mut out = Vec::with_capacity(values.len());
    for i0 in 0..out_dims[0] {
        for i1 in 0..out_dims[1] {
            for i2 in 0..out_dims[2] {
                for i3 in 0..out_dims[3] {
                    let at = [i0, i1, i2, i3];
                    let mut source = 0;
                    for (out_axis, &axis) in order.iter().enumerate() {
                        source += at[out_axis] * strides[axis];
                    }
                    out.push(values[source]);
                }
            }
        }
    }
    (out, out_dims.to_vec())
}

/// One row of a key table: `source` in the foreign file is `target` in the duet module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Key in the foreign state dict.
    pub source: String,
    /// Path of the duet parameter (`vision.blocks.0.attn.q.weight`).
    pub target: String,
    /// The layout change between them.
    pub transform: Transform,
}

impl Mapping {
    pub(crate) fn new(
        source: impl Into<String>,
        target: impl Into<String>,
        transform: Transform,
    ) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            transform,
        }
    }
}

/// Expands per-block templates: every `(source suffix, target suffix, transform)` of `block`
/// for each of `layers` blocks under the given prefixes.
pub(crate) fn expand_blocks(
    table: &mut Vec<Mapping>,
    source_prefix: &str,
    target_prefix: &str,
    layers: usize,
    block: &[(&str, &str, Transform)],
) {
    for i in 0..layers {
        for (source, target, transform) in block {
            table.push(Mapping::new(
                format!("{source_prefix}.{i}.{source}"),
                format!("{target_prefix}.{i}.{target}"),
                *transform,
            ));
        }
    }
}

/// A dense f32 tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    match dtype {
        Dtype::F32 => Some(
            chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            chunks(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            chunks(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::F64 => Some(
            chunks(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        ),
        _ => None,
    }
}

fn transpose(t: &HostTensor) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut values = vec![0.0; t.values.len()];
    for r in 0..rows {
        for c in 0..cols {
            values[c * rows + r] = t.values[r * cols + c];
        }
    }
    HostTensor {
        shape: vec![cols, rows],
        values,
    }
}

/// Source layout to duet layout, or a message saying why the source shape does not allow it.
fn forward(transform: Transform, t: &HostTensor) -> Result<HostTensor, String> {
    match transform {
        Transform::Copy => Ok(t.clone()),
        Transform::Transpose if t.shape.len() == 2 => Ok(transpose(t)),
        Transform::Transpose => Err("expected a 2-d tensor to transpose".into()),
        Transform::Scalar if t.values.len() == 1 => Ok(HostTensor {
            shape: vec![1],
            values: t.values.clone(),
        }),
        Transform::Scalar => Err("expected a scalar".into()),
        Transform::Rows {
            index,
            parts,
            transpose: tr,
        } => {
            let rows = t.shape.first().copied().unwrap_or(0);
            if t.shape.is_empty() || rows % parts != 0 || (tr && t.shape.len() != 2) {
                return Err(format!("expected {parts} equal row blocks"));
            }
            let block = rows / parts;
            let row_len: usize = t.shape[1..].iter().product();
            let mut shape = t.shape.clone();
            shape[0] = block;
            let start = index * block * row_len;
            let part = HostTensor {
                shape,
                values: t.values[start..start + block * row_len].to_vec(),
            };
            Ok(if tr { transpose(&part) } else { part })
        }
        Transform::DropLeadingOne if t.shape.first() == Some(&1) => Ok(HostTensor {
            shape: t.shape[1..].to_vec(),
            values: t.values.clone(),
        }),
        Transform::DropLeadingOne => Err("expected a leading axis of size 1".into()),
        Transform::PatchLinear { patch, channels } => {
            let [d, n] = t.shape[..] else {
                return Err("expected a 2-d Linear weight [d, p*p*c]".into());
            };
            if n != patch * patch * channels {
                return Err(format!(
                    "expected {} inputs per row ({patch}x{patch} patches of {channels} channels)",
                    patch * patch * channels
                ));
            }
            // [d, p, p, c] -> [d, c, p, p].
            let (values, shape) = permute4(&t.values, [d, patch, patch, channels], [0, 3, 1, 2]);
            Ok(HostTensor { shape, values })
        }
    }
}

/// Reads `bytes` (a safetensors file) into `model` following `table`.
///
/// Keys matching one of `ignorable` (exact suffixes of non-parameter buffers such as HF's
/// `position_ids`) may be present without a mapping. Every other source key must be consumed and
/// every model parameter filled, with the right shape; otherwise nothing is loaded and the
/// report lists every problem.
pub(crate) fn import(
    model: ClipModel,
    table: &[Mapping],
    bytes: &[u8],
    ignorable: &[&str],
) -> Result<(ClipModel, WeightReport), String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let targets: BTreeMap<String, Vec<usize>> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect();
    let mut report = WeightReport::default();
    let mut consumed = BTreeSet::new();
    let mut tensors = Vec::with_capacity(table.len());
    for m in table {
        let Ok(view) = file.tensor(&m.source) else {
            if !report.missing.contains(&m.source) {
                report.missing.push(m.source.clone());
            }
            continue;
        };
        consumed.insert(m.source.as_str());
        let Some(values) = to_f32(view.dtype(), view.data()) else {
            report.mismatched.push(format!(
                "{}: dtype {:?} is not a float type",
                m.source,
                view.dtype()
            ));
            continue;
        };
        let source = HostTensor {
            shape: view.shape().to_vec(),
            values,
        };
        let Some(expected) = targets.get(&m.target) else {
            report.mismatched.push(format!(
                "{} -> {}: no such duet parameter",
                m.source, m.target
            ));
            continue;
        };
        match forward(m.transform, &source) {
            Ok(t) if &t.shape == expected => {
                let data = TensorData::new(t.values, t.shape);
                tensors.push(bridge::from_data(data, m.target.clone(), None));
            }
            Ok(t) => report.mismatched.push(format!(
                "{} {:?} -> {} expects {:?} (got {:?})",
                m.source, source.shape, m.target, expected, t.shape
            )),
            Err(why) => report.mismatched.push(format!(
                "{} {:?} -> {} expects {:?}: {why}",
                m.source, source.shape, m.target, expected
            )),
        }
    }
    report.unexpected = file
        .names()
        .into_iter()
        .filter(|k| !consumed.contains(k) && !ignorable.iter().any(|s| k.ends_with(s)))
        .map(str::to_string)
        .collect();
    report.unexpected.sort();
    let mapped: BTreeSet<&str> = table.iter().map(|m| m.target.as_str()).collect();
    for target in targets.keys().filter(|t| !mapped.contains(t.as_str())) {
        report
            .missing
            .push(format!("(no source for duet parameter {target})"));
    }
    if !report.is_empty() {
        return Ok((model, report));
    }
    let mut model = model;
    let result = model.apply(tensors, None, None, false);
    for err in result.errors {
        report.mismatched.push(err.to_string());
    }
    for (path, _) in result.missing {
        report
            .missing
            .push(format!("(duet parameter {path} not filled)"));
    }
    Ok((model, report))
}

/// The foreign state dict of `model` under `table`: the inverse of [`import`]. Fused sources
/// (several [`Transform::Rows`] mappings) are concatenated back in block order.
pub(crate) fn export(
    model: &ClipModel,
    table: &[Mapping],
) -> Result<BTreeMap<String, HostTensor>, String> {
    let params: BTreeMap<String, HostTensor> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let data = bridge::into_data(t).map_err(|e| format!("{name}: {e}"))?;
            let shape = data.shape().to_vec();
            let values = data
                .try_to_vec::<f32>()
                .map_err(|e| format!("{name}: {e:?}"))?;
            Ok((name, HostTensor { shape, values }))
        })
        .collect::<Result<_, String>>()?;
    let mut out: BTreeMap<String, HostTensor> = BTreeMap::new();
    for m in table {
        let param = params
            .get(&m.target)
            .ok_or_else(|| format!("{}: no such duet parameter", m.target))?;
        match m.transform {
            Transform::Copy => {
                out.insert(m.source.clone(), param.clone());
            }
            Transform::Transpose => {
                out.insert(m.source.clone(), transpose(param));
            }
            Transform::Scalar => {
                out.insert(
                    m.source.clone(),
                    HostTensor {
                        shape: vec![],
                        values: param.values.clone(),
                    },
                );
            }
            Transform::DropLeadingOne => {
                let mut shape = vec![1];
                shape.extend_from_slice(&param.shape);
                out.insert(
                    m.source.clone(),
                    HostTensor {
                        shape,
                        values: param.values.clone(),
                    },
                );
            }
            Transform::PatchLinear { patch, channels } => {
                let [d, ..] = param.shape[..] else {
                    return Err(format!("{}: expected a conv weight", m.target));
                };
                // [d, c, p, p] -> [d, p, p, c] -> [d, p*p*c].
                let (values, _) =
                    permute4(&param.values, [d, channels, patch, patch], [0, 2, 3, 1]);
                out.insert(
                    m.source.clone(),
                    HostTensor {
                        shape: vec![d, patch * patch * channels],
                        values,
                    },
                );
            }
            Transform::Rows {
                index,
                transpose: tr,
                ..
            } => {
                let part = if tr { transpose(param) } else { param.clone() };
                let entry = out.entry(m.source.clone()).or_insert_with(|| HostTensor {
                    shape: {
                        let mut s = part.shape.clone();
                        s[0] = 0;
                        s
                    },
                    values: Vec::new(),
                });
                // Tables list the blocks of a fused tensor in order (q, k, v).
                if entry.shape[0] != index * part.shape[0] {
                    return Err(format!("{}: fused blocks out of order", m.source));
                }
                entry.shape[0] += part.shape[0];
                entry.values.extend_from_slice(&part.values);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(shape: &[usize], values: &[f32]) -> HostTensor {
        HostTensor {
            shape: shape.to_vec(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn transpose_2x3() {
        // [[1,2,3],[4,5,6]] -> [[1,4],[2,5],[3,6]]
        let t = forward(
            Transform::Transpose,
            &host(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        )
        .expect("2-d");
        assert_eq!(t, host(&[3, 2], &[1., 4., 2., 5., 3., 6.]));
    }

    #[test]
    fn rows_split_a_fused_weight() {
        // A [3*1, 2] fused weight: q = [1,2], k = [3,4], v = [5,6]; k transposed is [[3],[4]].
        let fused = host(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let k = forward(
            Transform::Rows {
                index: 1,
                parts: 3,
                transpose: true,
            },
            &fused,
        )
        .expect("splits");
        assert_eq!(k, host(&[2, 1], &[3., 4.]));
        let bias = host(&[6], &[0., 1., 2., 3., 4., 5.]);
        let v = forward(
            Transform::Rows {
                index: 2,
                parts: 3,
                transpose: false,
            },
            &bias,
        )
        .expect("splits");
        assert_eq!(v, host(&[2], &[4., 5.]));
    }

    #[test]
    fn rows_reject_indivisible() {
        let err = forward(
            Transform::Rows {
                index: 0,
                parts: 3,
                transpose: false,
            },
            &host(&[4], &[0.; 4]),
        );
        assert!(err.is_err());
    }

    #[test]
    fn half_precision_is_widened() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(to_f32(Dtype::F16, &bytes), Some(vec![1.5, -2.0]));
        assert_eq!(to_f32(Dtype::I64, &[0; 8]), None);
    }

    #[test]
    fn patch_linear_is_the_conv_weight_permuted_and_back() {
        // d = 1, p = 2, c = 2: Linear input index (y*2 + x)*2 + ch holds value 10*ch + 2*y + x
        // (tens digit the channel), so the conv weight [1, 2, 2, 2] reads channel-major:
        // ch 0: [0, 1, 2, 3], ch 1: [10, 11, 12, 13].
        let linear = host(&[1, 8], &[0., 10., 1., 11., 2., 12., 3., 13.]);
        let transform = Transform::PatchLinear {
            patch: 2,
            channels: 2,
        };
        let conv = forward(transform, &linear).expect("permutes");
        assert_eq!(conv.shape, [1, 2, 2, 2]);
        assert_eq!(conv.values, [0., 1., 2., 3., 10., 11., 12., 13.]);
        let (back, _) = permute4(&conv.values, [1, 2, 2, 2], [0, 2, 3, 1]);
        assert_eq!(back, linear.values);
        assert!(forward(transform, &host(&[1, 6], &[0.; 6])).is_err());
    }
}
