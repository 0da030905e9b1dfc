//! Labelled image sets for zero-shot classification, embedded with a model:
//!
//! - an image folder with one sub-folder per class (torchvision's `ImageFolder`: classes are the
//!   sub-folder names in sorted order, images the files with an image extension);
//! - Fashion-MNIST / MNIST IDX files (`t10k-images-idx3-ubyte[.gz]` and the `labels-idx1` file
//!   beside it), read directly; grey pixels become RGB;
//! - shards whose samples carry an integer class in a `.cls` member (webdataset's convention).
//!
//! Every image goes through the eval transform (resize the shortest side, centre crop).

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use duet_data::{
    DecodeConfig, EvalTransform, FieldSelector, RgbImage, TextField, decode_rgb8, images_to_tensor,
};
use duet_model::{ClipConfig, ClipModel, l2_normalize};
use rayon::prelude::*;

use crate::EvalError;
use crate::embed::eval_loader;
use crate::text::{eval_transform_config, text_tokenizer};

/// Where labelled images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassData {
    /// `root/<class>/<image>`.
    Folder(PathBuf),
    /// IDX image and label files.
    Idx {
        /// `*-images-idx3-ubyte[.gz]`.
        images: PathBuf,
        /// `*-labels-idx1-ubyte[.gz]`.
        labels: PathBuf,
    },
    /// A shard spec whose samples hold a `.cls` integer.
    Shards(String),
}

impl ClassData {
    /// Reads what `arg` names: an existing directory is a folder, an `…images-idx3-ubyte[.gz]`
    /// file an IDX pair (labels beside it), anything else a shard spec.
    pub fn detect(arg: &str) -> Self {
        let path = Path::new(arg);
        if path.is_dir() {
            return Self::Folder(path.to_path_buf());
        }
        if arg.contains("images-idx3-ubyte") {
            return Self::Idx {
                images: path.to_path_buf(),
                labels: PathBuf::from(arg.replacen("images-idx3-ubyte", "labels-idx1-ubyte", 1)),
            };
        }
        Self::Shards(arg.to_owned())
    }

    /// The class names the data itself gives (a folder's sub-folders), if any.
    pub fn folder_classes(&self) -> Result<Option<Vec<String>>, EvalError> {
        let Self::Folder(root) = self else {
            return Ok(None);
        };
        Ok(Some(folder_listing(root)?.classes))
    }
}

/// L2-normalised image embeddings and their labels.
#[derive(Debug, Clone)]
pub struct LabelledEmbeddings {
    /// `[n, e]`.
    pub images: Tensor<2>,
    /// Class index of each row.
    pub labels: Vec<usize>,
}

/// File extensions an image folder's images have (what duet decodes).
const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

fn io(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Input {
        origin: path.display().to_string(),
        message: e.to_string(),
    }
}

/// An image folder's sorted class names and every `(image path, class index)`.
struct FolderListing {
    classes: Vec<String>,
    items: Vec<(PathBuf, usize)>,
}

fn folder_listing(root: &Path) -> Result<FolderListing, EvalError> {
    let mut classes: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| io(root, e))?
        .map(|entry| entry.map_err(|e| io(root, e)))
        .filter_map(|entry| match entry {
            Ok(e) if e.path().is_dir() => {
                Some(Ok((e.file_name().to_string_lossy().into_owned(), e.path())))
            }
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        })
        .collect::<Result<_, _>>()?;
    classes.sort();
    let mut items = Vec::new();
    for (label, (_, dir)) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .map(|entry| entry.map(|e| e.path()).map_err(|e| io(dir, e)))
            .collect::<Result<_, _>>()?;
        files.retain(|f| {
            f.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        });
        files.sort();
        items.extend(files.into_iter().map(|f| (f, label)));
    }
    if classes.is_empty() {
        return Err(io(root, "no class sub-folders"));
    }
    Ok(FolderListing {
        classes: classes.into_iter().map(|(name, _)| name).collect(),
        items,
    })
}

/// Reads a whole file, gunzipping `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, EvalError> {
    let raw = std::fs::read(path).map_err(|e| io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| io(path, format!("not a valid gzip file: {e}")))?;
        return Ok(out);
    }
    Ok(raw)
}

/// An IDX file's dimensions and its u8 payload; `magic` is 0x801 (labels) or 0x803 (images).
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), EvalError> {
    let bytes = read_maybe_gz(path)?;
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| io(path, "shorter than an IDX header"))?;
    if found != magic {
        return Err(io(
            path,
            format!("IDX magic {found:#x}, expected {magic:#x} (u8 data)"),
        ));
    }
    let rank = (magic & 0xff) as usize;
    let dims: Vec<usize> = (1..=rank)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| io(path, "truncated IDX header"))?;
    let header = 4 * (rank + 1);
    let len: usize = dims.iter().product();
    if bytes.len() != header + len {
        return Err(io(
            path,
            format!(
                "IDX dims {dims:?} need {len} bytes of data, the file has {}",
                bytes.len().saturating_sub(header)
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

fn eval_transform(clip: &ClipConfig) -> Result<EvalTransform, EvalError> {
    eval_transform_config(clip)
        .init()
        .map_err(|e| EvalError::Input {
            origin: "eval transform".into(),
            message: e.to_string(),
        })
}

/// Embeds `pixels` (already transformed, `[3, s, s]` each) in one forward pass.
fn embed_pixels(
    model: &ClipModel,
    clip: &ClipConfig,
    pixels: &[Vec<f32>],
    device: &Device,
) -> Result<Tensor<2>, EvalError> {
    let batch =
        images_to_tensor(pixels, clip.vision.image_size, device).map_err(|e| EvalError::Input {
            origin: "image batch".into(),
            message: e.to_string(),
        })?;
    Ok(l2_normalize(model.encode_image(batch)))
}

/// Embeds every image of `data` with `model` (an inference model on `device`), `batch_size` at a
/// time, with its label.
pub fn embed_labelled(
    model: &ClipModel,
    clip: &ClipConfig,
    data: &ClassData,
    batch_size: usize,
    device: &Device,
) -> Result<LabelledEmbeddings, EvalError> {
    let batch_size = batch_size.max(1);
    let transform = eval_transform(clip)?;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    match data {
        ClassData::Folder(root) => {
            let items = folder_listing(root)?.items;
            let decode = DecodeConfig::default();
            for chunk in items.chunks(batch_size) {
                let pixels = chunk
                    .par_iter()
                    .map(|(path, _)| {
                        let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
                        let origin = path.display().to_string();
                        let image =
                            decode_rgb8(&bytes, &origin, &decode).map_err(|e| io(path, e))?;
                        transform.apply(&image).map_err(|e| io(path, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                rows.push(embed_pixels(model, clip, &pixels, device)?);
                labels.extend(chunk.iter().map(|(_, l)| *l));
            }
        }
        ClassData::Idx {
            images,
            labels: label_path,
        } => {
            let (dims, pixels) = read_idx(images, 0x803)?;
            let (label_dims, label_bytes) = read_idx(label_path, 0x801)?;
            let [n, h, w] = dims[..] else {
                return Err(io(images, "expected 3 IDX dimensions (n, rows, cols)"));
            };
            if label_dims[0] != n {
                return Err(io(
                    label_path,
                    format!("{} labels for {n} images", label_dims[0]),
                ));
            }
            let side = h * w;
            for (start, chunk) in (0..n)
                .step_by(batch_size)
                .map(|s| (s, s..(s + batch_size).min(n)))
            {
                let batch = chunk
                    .into_par_iter()
                    .map(|i| {
                        let grey = &pixels[i * side..(i + 1) * side];
                        let rgb: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
                        let image = RgbImage::from_raw(w as u32, h as u32, rgb)
                            .ok_or_else(|| io(images, format!("image {i}: bad size")))?;
                        transform
                            .apply(&image)
                            .map_err(|e| io(images, format!("image {i}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                rows.push(embed_pixels(model, clip, &batch, device)?);
                let end = start + batch.len();
                labels.extend(label_bytes[start..end].iter().map(|&l| l as usize));
            }
        }
        ClassData::Shards(spec) => {
            let failed = |e| EvalError::Data {
                spec: spec.clone(),
                source: Box::new(e),
            };
            // The `.cls` text rides in the caption slot; the tokens are not used.
            let fields = FieldSelector {
                text: TextField::Field { name: "cls".into() },
                ..FieldSelector::default()
            };
            let loader = eval_loader(spec, fields, batch_size, clip, text_tokenizer(clip)?)?;
            for batch in loader {
                let batch = batch.map_err(failed)?;
                for (key, cls) in batch.keys.iter().zip(&batch.captions) {
                    let label = cls.trim().parse::<usize>().map_err(|_| EvalError::Input {
                        origin: format!("{spec}: sample {key}"),
                        message: format!(".cls is {cls:?}, not a class index"),
                    })?;
                    labels.push(label);
                }
                rows.push(l2_normalize(
                    model.encode_image(batch.images_tensor(device)),
                ));
            }
        }
    }
    if labels.is_empty() {
        return Err(EvalError::Empty {
            what: format!("{data:?}"),
        });
    }
    Ok(LabelledEmbeddings {
        images: Tensor::cat(rows, 0),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use duet_model::preset;

    use super::*;

    /// An IDX file: big-endian magic, dims, then the bytes.
    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[test]
    fn idx_files_read_plain_and_gzipped_and_refuse_bad_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("x-images-idx3-ubyte");
        let data: Vec<u8> = (0..8).collect();
        std::fs::write(&plain, idx(0x803, &[2, 2, 2], &data)).expect("write");
        assert_eq!(
            read_idx(&plain, 0x803).expect("idx"),
            (vec![2, 2, 2], data.clone())
        );
        let gz = dir.path().join("x-images-idx3-ubyte.gz");
        std::fs::write(&gz, gzip(&idx(0x803, &[2, 2, 2], &data))).expect("write");
        assert_eq!(read_idx(&gz, 0x803).expect("idx").1, data);
        // One byte short, and a labels file read as images.
        std::fs::write(&plain, idx(0x803, &[2, 2, 2], &data[..7])).expect("write");
        let err = read_idx(&plain, 0x803).expect_err("short");
        assert!(err.to_string().contains("need 8 bytes"), "{err}");
        std::fs::write(&plain, idx(0x801, &[2], &[0, 1])).expect("write");
        let err = read_idx(&plain, 0x803).expect_err("labels");
        assert!(err.to_string().contains("magic 0x801"), "{err}");
    }

    #[test]
    fn detect_tells_folders_idx_and_specs_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_str().expect("utf-8");
        assert_eq!(
            ClassData::detect(root),
            ClassData::Folder(dir.path().into())
        );
        assert_eq!(
            ClassData::detect("/d/t10k-images-idx3-ubyte.gz"),
            ClassData::Idx {
                images: "/d/t10k-images-idx3-ubyte.gz".into(),
                labels: "/d/t10k-labels-idx1-ubyte.gz".into(),
            }
        );
        assert_eq!(
            ClassData::detect("s/{0..3}.tar"),
            ClassData::Shards("s/{0..3}.tar".into())
        );
    }

    #[test]
    fn folders_idx_files_and_cls_shards_give_labels_in_order() {
        let device = Device::flex();
        let clip = preset("tiny").expect("preset");
        let model = clip.init(&device).expect("model");
        let dir = tempfile::tempdir().expect("tempdir");
        // Classes sort as ["cat", "dog"]; a text file in a class folder is not an image.
        for (class, n) in [("dog", 2), ("cat", 1)] {
            let sub = dir.path().join(class);
            std::fs::create_dir(&sub).expect("mkdir");
            for i in 0..n {
                RgbImage::from_pixel(20, 10, image::Rgb([i * 50, 9, 200]))
                    .save(sub.join(format!("{i}.png")))
                    .expect("png");
            }
            std::fs::write(sub.join("notes.txt"), "x").expect("write");
        }
        let folder = ClassData::Folder(dir.path().into());
        assert_eq!(
            folder.folder_classes().expect("listing"),
            Some(vec!["cat".to_string(), "dog".to_string()])
        );
        let got = embed_labelled(&model, &clip, &folder, 2, &device).expect("embeds");
        assert_eq!(got.labels, [0, 1, 1]);
        assert_eq!(got.images.dims(), [3, clip.embed_dim]);

        // 3 grey 4x4 IDX images with labels 7, 0, 7.
        let images = dir.path().join("t-images-idx3-ubyte");
        std::fs::write(&images, idx(0x803, &[3, 4, 4], &[128; 48])).expect("write");
        std::fs::write(
            dir.path().join("t-labels-idx1-ubyte"),
            idx(0x801, &[3], &[7, 0, 7]),
        )
        .expect("write");
        let data = ClassData::detect(images.to_str().expect("utf-8"));
        let got = embed_labelled(&model, &clip, &data, 2, &device).expect("embeds");
        assert_eq!(got.labels, [7, 0, 7]);
        assert_eq!(got.images.dims(), [3, clip.embed_dim]);

        // A webdataset tar whose samples carry `.cls`: labels in shard order; a `.cls` that is
        // not an integer is an error naming the sample.
        let mut png = Vec::new();
        RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let shard = |path: &Path, classes: &[&str]| {
            let mut tar = tar::Builder::new(std::fs::File::create(path).expect("tar"));
            for (i, cls) in classes.iter().enumerate() {
                for (ext, bytes) in [("png", png.as_slice()), ("cls", cls.as_bytes())] {
                    let mut header = tar::Header::new_ustar();
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    tar.append_data(&mut header, format!("{i:09}.{ext}"), bytes)
                        .expect("member");
                }
            }
            tar.finish().expect("tar");
        };
        let good = dir.path().join("cls.tar");
        shard(&good, &["2", "0\n", "1"]);
        let data = ClassData::detect(good.to_str().expect("utf-8"));
        assert_eq!(data, ClassData::Shards(good.display().to_string()));
        let got = embed_labelled(&model, &clip, &data, 2, &device).expect("embeds");
        assert_eq!(got.labels, [2, 0, 1]);
        let bad = dir.path().join("bad.tar");
        shard(&bad, &["3", "cat"]);
        let err = embed_labelled(
            &model,
            &clip,
            &ClassData::Shards(bad.display().to_string()),
            2,
            &device,
        )
        .expect_err("not an index");
        assert!(err.to_string().contains("sample 000000001"), "{err}");
    }
}
