//! Tensors between the processes of a job, through a [`Collective`] on host buffers: features
//! gathered and their gradients reduce-scattered, gradients summed, the model broadcast and its
//! replicas compared.
//!
//! Gradients are summed in the module's parameter order (burn's visiting order, the same on
//! every rank), flattened into buckets of at most [`BUCKET_FLOATS`] values, one all-reduce per
//! bucket, so every step makes the same calls with the same sizes and the result is
//! reproducible.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use duet_dist::{Collective, CommError};
use duet_model::ClipModel;

use crate::TrainError;

/// Values per gradient all-reduce: 4 Mi floats, 16 MiB (PyTorch DDP's default bucket is 25 MiB).
pub(crate) const BUCKET_FLOATS: usize = 1 << 22;

/// Maps a collective's error to one naming this rank and what the collective was for.
pub(crate) fn comm_error(
    comm: &dyn Collective,
    what: &'static str,
) -> impl Fn(CommError) -> TrainError {
    let rank = comm.rank();
    move |source| TrainError::Collective { rank, what, source }
}

/// A float tensor's values on the host, as f32.
pub(crate) fn host<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, TrainError> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::invalid("tensor", format!("cannot read back a tensor: {e:?}")))
}

/// Every process's `[n, e]` image and text rows, all the same size, gathered in rank order:
/// `[world · n, e]` each, on `device`.
pub(crate) fn all_gather_rows(
    comm: &dyn Collective,
    (image, text): (Tensor<2>, Tensor<2>),
    device: &Device,
) -> Result<(Tensor<2>, Tensor<2>), TrainError> {
    let [n, e] = image.dims();
    let mut local = host(image)?;
    local.extend(host(text)?);
    let all = comm
        .all_gather(&local)
        .map_err(comm_error(comm, "features"))?;
    let world = comm.world();
    let block = n * e;
    let mut images = Vec::with_capacity(world * block);
    let mut texts = Vec::with_capacity(world * block);
    for part in all.chunks_exact(2 * block) {
        images.extend_from_slice(&part[..block]);
        texts.extend_from_slice(&part[block..]);
    }
    let rows =
        |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [world * n, e]), device);
    Ok((rows(images), rows(texts)))
}

/// The gradients of the gathered image and text rows (`[world · n, e]` each), summed over
/// processes, and of those only this rank's rows `rank · n .. (rank + 1) · n`, on `device`.
pub(crate) fn reduce_scatter_rows(
    comm: &dyn Collective,
    (image, text): (Tensor<2>, Tensor<2>),
    device: &Device,
) -> Result<(Tensor<2>, Tensor<2>), TrainError> {
    let world = comm.world();
    let [rows, e] = image.dims();
    let n = rows / world;
    let block = n * e;
    let (image, text) = (host(image)?, host(text)?);
    // Chunk p of the buffer is rank p's: its image rows, then its text rows.
    let mut buffer = Vec::with_capacity(2 * rows * e);
    for p in 0..world {
        buffer.extend_from_slice(&image[p * block..(p + 1) * block]);
        buffer.extend_from_slice(&text[p * block..(p + 1) * block]);
    }
    let mine = comm
        .reduce_scatter_sum(&buffer)
        .map_err(comm_error(comm, "feature gradients"))?;
    let (image, text) = mine.split_at(block);
    let rows = |values: &[f32]| Tensor::from_data(TensorData::new(values.to_vec(), [n, e]), device);
    Ok((rows(image), rows(text)))
}

/// `grads` summed over every process: every trainable parameter's gradient, in module order,
/// in buckets. A parameter with no gradient on one rank counts as zero there; one with no
/// gradient on any rank stays absent (so AdamW skips it, as on one process).
pub(crate) fn all_reduce_gradients(
    comm: &dyn Collective,
    model: &ClipModel,
    grads: GradientsParams,
) -> Result<GradientsParams, TrainError> {
    let mut flat = Flatten {
        grads: &grads,
        values: Vec::new(),
        present: Vec::new(),
    };
    model.visit(&mut flat);
    let Flatten {
        mut values,
        mut present,
        ..
    } = flat;
    let error = comm_error(comm, "gradients");
    comm.all_reduce_sum(&mut present).map_err(&error)?;
    for bucket in values.chunks_mut(BUCKET_FLOATS) {
        comm.all_reduce_sum(bucket).map_err(&error)?;
    }
    let mut rebuild = Unflatten {
        values: &values,
        present: &present,
        offset: 0,
        index: 0,
        grads: GradientsParams::new(),
    };
    model.visit(&mut rebuild);
    Ok(rebuild.grads)
}

/// Trainable parameters only: a locked parameter has no gradient on any rank.
fn trainable<const D: usize>(param: &Param<Tensor<D>>) -> Option<Tensor<D>> {
    let value = param.val();
    value.is_require_grad().then_some(value)
}

struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
    present: Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(value) = trainable(param) else {
            return;
        };
        let count = value.shape().num_elements();
        match self.grads.get::<D>(param.id).map(host) {
            Some(Ok(grad)) if grad.len() == count => {
                self.values.extend(grad);
                self.present.push(1.0);
            }
            // No gradient here (or, impossibly, an unreadable one): zeros, marked absent.
            _ => {
                self.values.resize(self.values.len() + count, 0.0);
                self.present.push(0.0);
            }
        }
    }
}

struct Unflatten<'a> {
    values: &'a [f32],
    present: &'a [f32],
    offset: usize,
    index: usize,
    grads: GradientsParams,
}

impl ModuleVisitor for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(value) = trainable(param) else {
            return;
        };
        let dims = value.dims();
        let count = value.shape().num_elements();
        let range = self.offset..self.offset + count;
        self.offset += count;
        let present = self.present.get(self.index).is_some_and(|p| *p > 0.0);
        self.index += 1;
        if let (true, Some(values)) = (present, self.values.get(range)) {
            let device = value.device().inner();
            let grad = Tensor::<D>::from_data(TensorData::new(values.to_vec(), dims), &device);
            self.grads.register::<D>(param.id, grad);
        }
    }
}

/// Every rank's `model` replaced by `root`'s, parameter for parameter (ids and gradient
/// requirements kept): the job starts from one set of weights whatever each rank loaded or drew.
pub(crate) fn broadcast_model(
    comm: &dyn Collective,
    model: ClipModel,
    root: usize,
) -> Result<ClipModel, TrainError> {
    if comm.world() == 1 {
        return Ok(model);
    }
    crate::lazy::materialize(&model);
    let mut all = AllValues { values: Vec::new() };
    model.visit(&mut all);
    let mut values = all.values;
    let error = comm_error(comm, "initial weights");
    for bucket in values.chunks_mut(BUCKET_FLOATS) {
        comm.broadcast(bucket, root).map_err(&error)?;
    }
    let mut assign = Assign {
        values: &values,
        offset: 0,
    };
    Ok(model.map(&mut assign))
}

/// A CRC-32 of every parameter's bits, in module order: equal on every rank while the replicas
/// agree.
pub(crate) fn fingerprint(model: &ClipModel) -> u32 {
    let mut all = AllValues { values: Vec::new() };
    model.visit(&mut all);
    let mut hasher = crc32fast::Hasher::new();
    for value in &all.values {
        hasher.update(&value.to_le_bytes());
    }
    hasher.finalize()
}

struct AllValues {
    values: Vec<f32>,
}

impl ModuleVisitor for AllValues {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // A parameter that cannot be read back contributes nothing; the broadcast then fails
        // on the sizes, naming the collective.
        if let Ok(values) = host(param.val()) {
            self.values.extend(values);
        }
    }
}

struct Assign<'a> {
    values: &'a [f32],
    offset: usize,
}

impl ModuleMapper for Assign<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let count = tensor.shape().num_elements();
        let Some(values) = self.values.get(self.offset..self.offset + count) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.offset += count;
        let require_grad = tensor.is_require_grad();
        let device = tensor.device();
        let mut value = Tensor::<D>::from_data(TensorData::new(values.to_vec(), dims), &device);
        if require_grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}
