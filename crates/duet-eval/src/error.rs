//! The one error type of `duet-eval`.

/// What can stop an evaluation, naming the data or shapes at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The evaluation data could not be read.
    #[error("{spec}: {source}")]
    Data {
        /// The shard spec.
        spec: String,
        /// The loader's error.
        source: Box<duet_data::DataError>,
    },
    /// Image and text embeddings do not pair up.
    #[error(
        "{images} image embeddings of width {image_dim} against {texts} text embeddings of width {text_dim}"
    )]
    Shape {
        /// Image rows.
        images: usize,
        /// Image width.
        image_dim: usize,
        /// Text rows.
        texts: usize,
        /// Text width.
        text_dim: usize,
    },
    /// An input file or value is unusable.
    #[error("{origin}: {message}")]
    Input {
        /// The file (and line) or value.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing to evaluate.
    #[error("{what}: no pairs to evaluate")]
    Empty {
        /// What was empty.
        what: String,
    },
    /// Scores could not be read back from the device.
    #[error("reading scores back: {message}")]
    Readback {
        /// burn's message.
        message: String,
    },
}
