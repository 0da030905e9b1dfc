//! Stacking per-sample buffers into burn tensors: the only stage that touches burn.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::DataError;
use crate::pipeline::{Batch, SlotBatch};

/// Stacks `[3, image_size, image_size]` CHW buffers (from
/// [`EvalTransform::apply`](crate::EvalTransform::apply)) into a `[B, 3, image_size, image_size]`
/// float tensor on `device`.
pub fn images_to_tensor(
    images: &[Vec<f32>],
    image_size: usize,
    device: &Device,
) -> Result<Tensor<4>, DataError> {
    let per_item = 3 * image_size * image_size;
    let data = concat_checked(images, per_item)?;
    let shape = [images.len(), 3, image_size, image_size];
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

/// Stacks token rows of `context_length` ids (from
/// [`TextTokenizer::encode_batch`](crate::TextTokenizer::encode_batch)) into a
/// `[B, context_length]` int tensor on `device`.
pub fn tokens_to_tensor(
    rows: &[Vec<u32>],
    context_length: usize,
    device: &Device,
) -> Result<Tensor<2, Int>, DataError> {
    let ids = concat_checked(rows, context_length)?;
    let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
    let shape = [rows.len(), context_length];
    Ok(Tensor::from_data(TensorData::new(ids, shape), device))
}

impl Batch {
    /// The images as a `[B, 3, image_size, image_size]` float tensor on `device`.
    pub fn images_tensor(&self, device: &Device) -> Tensor<4> {
        let shape = [self.len(), 3, self.image_size, self.image_size];
        Tensor::from_data(TensorData::new(self.images.clone(), shape), device)
    }

    /// The token ids as a `[B, context_length]` int tensor on `device`.
    pub fn tokens_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let ids: Vec<i64> = self.tokens.iter().map(|&id| i64::from(id)).collect();
        let shape = [self.len(), self.context_length];
        Tensor::from_data(TensorData::new(ids, shape), device)
    }
}

impl SlotBatch {
    /// Every part's images, in slot order, as one `[B, 3, image_size, image_size]` tensor.
    pub fn images_tensor(&self, device: &Device) -> Tensor<4> {
        match self.parts.as_slice() {
            [one] => one.images_tensor(device),
            parts => Tensor::cat(parts.iter().map(|p| p.images_tensor(device)).collect(), 0),
        }
    }

    /// Every part's token ids, in slot order, as one `[B, context_length]` tensor.
    pub fn tokens_tensor(&self, device: &Device) -> Tensor<2, Int> {
        match self.parts.as_slice() {
            [one] => one.tokens_tensor(device),
            parts => Tensor::cat(parts.iter().map(|p| p.tokens_tensor(device)).collect(), 0),
        }
    }
}

fn concat_checked<T: Copy>(items: &[Vec<T>], per_item: usize) -> Result<Vec<T>, DataError> {
    let mut out = Vec::with_capacity(items.len() * per_item);
    for (index, item) in items.iter().enumerate() {
        if item.len() != per_item {
            return Err(DataError::BatchShape {
                index,
                expected: per_item,
                actual: item.len(),
            });
        }
        out.extend_from_slice(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_stack_in_batch_order() {
        // Two 1x1 images: [0.1, 0.2, 0.3] and [1.1, 1.2, 1.3] -> [2, 3, 1, 1].
        let device = Device::flex();
        let images = vec![vec![0.1, 0.2, 0.3], vec![1.1, 1.2, 1.3]];
        let tensor = images_to_tensor(&images, 1, &device).expect("stacks");
        assert_eq!(tensor.dims(), [2, 3, 1, 1]);
        let values = tensor.into_data().try_to_vec::<f32>().expect("f32 data");
        let want = [0.1, 0.2, 0.3, 1.1, 1.2, 1.3];
        for (got, want) in values.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn tokens_stack_as_ints() {
        let device = Device::flex();
        let rows = vec![vec![49406, 320, 49407], vec![49406, 49407, 0]];
        let tensor = tokens_to_tensor(&rows, 3, &device).expect("stacks");
        assert_eq!(tensor.dims(), [2, 3]);
        let ids = tensor
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("int data");
        assert_eq!(ids, vec![49406, 320, 49407, 49406, 49407, 0]);
    }

    #[test]
    fn wrong_sized_item_is_named() {
        let device = Device::flex();
        let images = vec![vec![0.0; 12], vec![0.0; 11]];
        let err = images_to_tensor(&images, 2, &device).expect_err("bad shape");
        assert!(
            matches!(
                err,
                DataError::BatchShape {
                    index: 1,
                    expected: 12,
                    actual: 11
                }
            ),
            "{err:?}"
        );
    }
}
