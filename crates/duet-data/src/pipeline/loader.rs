//! The loader: shards -> sequencer -> parallel processing -> batches, on a background thread,
//! each batch carrying the cursor that continues right after it.
//!
//! Cursor design: the producer pulls raw samples from the sequencer in chunks, snapshotting the
//! sequencer before each chunk, and processes a chunk in parallel (order kept). A batch that ends
//! at raw sample `k` of a chunk gets the cursor (snapshot, `k`): restoring the sequencer to the
//! snapshot and discarding `k` raw samples (unprocessed, their outcome already counted) puts the
//! stream exactly after the batch. Processing is a pure function of the sample and its ordinal
//! (`process.rs`), so chunk boundaries never change the batches.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::plan::{EpochPlan, Sampling, WeightedShard, rank_seed};
use super::process::{Processed, Processor, Sample};
use super::sequencer::{Sequencer, SequencerConfig, SequencerState};
use crate::reader::ShardReader;
use crate::source::ShardStore;
use crate::transform::ImageTransformConfig;
use crate::{
    BasicFilter, DataError, DecodeConfig, FieldSelector, SampleRef, SkipCounts, TextTokenizer,
};

/// Raw samples processed per parallel chunk, per decode thread.
const CHUNK_PER_THREAD: usize = 16;

/// Settings of a [`Loader`]; [`Self::validate`] checks them before any work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Samples per batch (per rank).
    pub batch_size: usize,
    /// Seed of the shard order, the shuffle buffer and the train crops.
    pub seed: u64,
    /// Exact passes or resampled shards.
    pub sampling: Sampling,
    /// Shuffle buffer in raw samples (OpenCLIP: 5000 per worker); 0 or 1 keeps shard order.
    pub shuffle_buffer: usize,
    /// Reader threads, each streaming its own shards (OpenCLIP's workers).
    pub readers: usize,
    /// Threads that decode, transform and tokenize.
    pub decode_threads: usize,
    /// Finished batches kept ready ahead of the consumer.
    pub prefetch_batches: usize,
    /// This process's rank and the number of ranks: shards are split between them.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Passes to make, exact sampling only; `None` runs until dropped.
    pub epochs: Option<u64>,
    /// Drop each epoch's last, partial batch (training) or emit it (evaluation, inspection).
    pub drop_last: bool,
    /// Which fields hold the image and the caption.
    pub fields: FieldSelector,
    /// Decode limits.
    pub decode: DecodeConfig,
    /// Train or eval transform.
    pub transform: ImageTransformConfig,
    /// Resampled streams: this many skipped samples in a row stop the run with
    /// [`DataError::NoSamples`] instead of spinning forever on broken data.
    pub max_skipped_in_a_row: u64,
    /// Curation on the fly: samples breaking a bound are skipped (counted as
    /// `filtered_<reason>`), a pure function of the sample, so cursors stay exact.
    #[serde(default, skip_serializing_if = "BasicFilter::is_none")]
    pub filter: BasicFilter,
}

impl LoaderConfig {
    /// A training loader: exact passes until dropped, shuffled through OpenCLIP's buffer size,
    /// partial batches dropped, one decode thread per core.
    pub fn train(batch_size: usize, seed: u64, transform: ImageTransformConfig) -> Self {
        Self {
            batch_size,
            seed,
            sampling: Sampling::Exact,
            shuffle_buffer: 5000,
            readers: 2,
            decode_threads: std::thread::available_parallelism().map_or(1, usize::from),
            prefetch_batches: 2,
            rank: 0,
            world_size: 1,
            epochs: None,
            drop_last: true,
            fields: FieldSelector::default(),
            decode: DecodeConfig::default(),
            transform,
            max_skipped_in_a_row: 100_000,
            filter: BasicFilter::default(),
        }
    }

    /// One ordered pass, no shuffle, last partial batch kept: evaluation and inspection.
    pub fn single_pass(batch_size: usize, transform: ImageTransformConfig) -> Self {
        Self {
            sampling: Sampling::InOrder,
            shuffle_buffer: 0,
            readers: 1,
            epochs: Some(1),
            drop_last: false,
            ..Self::train(batch_size, 0, transform)
        }
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), DataError> {
        let positive = [
            ("batch_size", self.batch_size),
            ("readers", self.readers),
            ("decode_threads", self.decode_threads),
            ("prefetch_batches", self.prefetch_batches),
            ("world_size", self.world_size),
        ];
        if let Some((field, value)) = positive.into_iter().find(|(_, v)| *v == 0) {
            return Err(DataError::InvalidConfig {
                field,
                value: value.to_string(),
                reason: "must be at least 1",
            });
        }
        if self.rank >= self.world_size {
            return Err(DataError::InvalidConfig {
                field: "rank",
                value: self.rank.to_string(),
                reason: "must be below world_size",
            });
        }
        if self.epochs == Some(0) {
            return Err(DataError::InvalidConfig {
                field: "epochs",
                value: "0".into(),
                reason: "must be at least 1 (or unset for an endless stream)",
            });
        }
        if self.epochs.is_some() && self.sampling == Sampling::Resampled {
            return Err(DataError::InvalidConfig {
                field: "epochs",
                value: format!("{:?}", self.epochs),
                reason: "resampled streams are endless; count steps instead",
            });
        }
        if let Err(unknown) = self.filter.validate() {
            return Err(DataError::InvalidConfig {
                field: "filter.languages",
                value: unknown.code,
                reason: "is not an ISO 639-3 code whatlang knows (eng, deu, fra, spa, cmn, jpn, …)",
            });
        }
        self.transform.init().map(drop)
    }
}

/// Where a loader stands, between two batches; restoring it continues exactly there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderCursor {
    /// The epoch being read.
    pub epoch: u64,
    /// The sequencer at the start of the chunk holding the next raw sample.
    pub sequencer: SequencerState,
    /// Raw samples of that chunk already consumed.
    pub skip_raw: u64,
    /// Batches emitted in this epoch.
    pub epoch_batches: u64,
    /// Batches emitted since the start of the run.
    pub batches: u64,
    /// Samples dropped while processing, in this epoch (reader skips are in the sequencer).
    pub processing_skips: SkipCounts,
    /// Every skip of the finished epochs.
    pub earlier_skips: SkipCounts,
    /// Skipped samples since the last good one.
    pub skipped_in_a_row: u64,
}

impl LoaderCursor {
    /// Every skip up to this point, by reason.
    pub fn skipped(&self) -> SkipCounts {
        let mut total = self.earlier_skips.clone();
        total.merge(&self.sequencer.skips);
        total.merge(&self.processing_skips);
        total
    }
}

/// A batch of samples in stream order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[len, 3, image_size, image_size]`, row-major.
    pub images: Vec<f32>,
    /// `[len, context_length]`, row-major.
    pub tokens: Vec<u32>,
    /// Where each sample came from.
    pub samples: Vec<SampleRef>,
    /// Each sample's key.
    pub keys: Vec<String>,
    /// Each sample's caption.
    pub captions: Vec<String>,
    /// Each sample's decoded image width and height, before the transform.
    pub sizes: Vec<[u32; 2]>,
    /// Side of the images.
    pub image_size: usize,
    /// Length of the token rows.
    pub context_length: usize,
    /// The epoch the batch belongs to.
    pub epoch: u64,
    /// The cursor right after this batch.
    pub cursor: LoaderCursor,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the batch holds no sample (never for batches a [`Loader`] yields).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Where the shards are and how to read them.
#[derive(Debug, Clone)]
pub struct LoaderSource {
    /// Every shard with its sampling weight.
    pub shards: Vec<WeightedShard>,
    /// The shard format.
    pub format: Arc<dyn ShardReader>,
    /// Where the bytes come from.
    pub store: Arc<dyn ShardStore>,
}

impl LoaderSource {
    /// Every shard of `spec` with its weight, each read in the format its URL names
    /// ([`AutoReader`](crate::AutoReader)), from the stores the environment configures
    /// ([`Stores::from_env`](crate::Stores::from_env): local, http(s), s3, pipe).
    pub fn from_spec(spec: &crate::ShardSpec) -> Result<Self, DataError> {
        Ok(Self {
            shards: WeightedShard::from_spec(spec),
            format: Arc::new(crate::AutoReader::for_urls(spec.shards())?),
            store: Arc::new(crate::Stores::from_env()?),
        })
    }
}

/// Batches from shards, produced on a background thread; an iterator of `Result<Batch>`.
///
/// Dropping the loader stops its threads. After an error the iterator ends.
#[derive(Debug)]
pub struct Loader {
    rx: Receiver<Result<Batch, DataError>>,
    recycle: Sender<Vec<f32>>,
    skipped: Arc<Mutex<SkipCounts>>,
    _thread: JoinHandle<()>,
}

impl Loader {
    /// Starts reading; with `cursor`, continues exactly after the batch that cursor came from.
    ///
    /// Fails before any work on an invalid config, on a cursor that does not fit the config,
    /// and when this rank gets no shard.
    pub fn start(
        config: &LoaderConfig,
        source: LoaderSource,
        tokenizer: TextTokenizer,
        cursor: Option<&LoaderCursor>,
    ) -> Result<Self, DataError> {
        config.validate()?;
        let processor = Processor {
            fields: config.fields.clone(),
            decode: config.decode,
            transform: config.transform.init()?,
            tokenizer,
            filter: config.filter.clone(),
            seed: rank_seed(config.seed, config.rank),
        };
        let threads = config.decode_threads;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("duet-decode-{i}"))
            .build()
            .map_err(|error| DataError::Thread {
                what: "decode",
                source: std::io::Error::other(error),
            })?;
        let (recycle, recycled) = channel();
        let mut producer = Producer {
            config: config.clone(),
            source,
            processor,
            pool,
            sequencer: None,
            cursor: fresh_cursor(0, config.readers),
            skipped: Arc::default(),
            recycled,
            chunk: (threads * CHUNK_PER_THREAD).max(32),
        };
        match cursor {
            Some(cursor) => producer.restore(cursor)?,
            None => producer.start_epoch(0)?,
        }
        let skipped = producer.skipped.clone();
        let (tx, rx) = sync_channel(config.prefetch_batches);
        let thread = std::thread::Builder::new()
            .name("duet-loader".into())
            .spawn(move || producer.run(&tx))
            .map_err(|source| DataError::Thread {
                what: "loader",
                source,
            })?;
        Ok(Self {
            rx,
            recycle,
            skipped,
            _thread: thread,
        })
    }

    /// Hands a batch's image buffer back for reuse (e.g. once it is on the GPU): later batches
    /// are then written into memory that is already mapped, which saves the page faults of a
    /// fresh `[B, 3, S, S]` allocation. Optional.
    pub fn recycle(&self, images: Vec<f32>) {
        // The producer may be gone; then there is nothing to reuse it for.
        let _ = self.recycle.send(images);
    }

    /// Every skip the background thread has counted so far, by reason; it may be ahead of the
    /// batches received. Once the iterator has ended, these are the final counts.
    pub fn skipped(&self) -> SkipCounts {
        self.skipped
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

fn fresh_cursor(epoch: u64, readers: usize) -> LoaderCursor {
    LoaderCursor {
        epoch,
        sequencer: SequencerState::start(epoch, readers),
        skip_raw: 0,
        epoch_batches: 0,
        batches: 0,
        processing_skips: SkipCounts::default(),
        earlier_skips: SkipCounts::default(),
        skipped_in_a_row: 0,
    }
}

/// The background half of a [`Loader`].
struct Producer {
    config: LoaderConfig,
    source: LoaderSource,
    processor: Processor,
    pool: rayon::ThreadPool,
    sequencer: Option<Sequencer>,
    /// The position after the last emitted batch, kept current while a chunk is consumed.
    cursor: LoaderCursor,
    /// Totals for [`Loader::skipped`], updated after every chunk.
    skipped: Arc<Mutex<SkipCounts>>,
    /// Image buffers handed back by the consumer.
    recycled: Receiver<Vec<f32>>,
    chunk: usize,
}

impl Producer {
    fn plan(&self, epoch: u64) -> Result<EpochPlan, DataError> {
        let c = &self.config;
        let plan = EpochPlan::new(
            &self.source.shards,
            c.sampling,
            c.seed,
            epoch,
            c.rank,
            c.world_size,
            c.readers,
        );
        if plan.is_empty() || self.source.shards.is_empty() {
            return Err(DataError::NoSamples {
                reason: format!(
                    "rank {} of {} gets no shard ({} shards in the spec); use fewer ranks or \
                     more shards",
                    c.rank,
                    c.world_size,
                    self.source.shards.len()
                ),
                skipped: SkipCounts::default(),
            });
        }
        Ok(plan)
    }

    fn sequencer_config(&self) -> SequencerConfig {
        let shards = self.source.shards.len() as u64;
        SequencerConfig {
            seed: rank_seed(self.config.seed, self.config.rank),
            shuffle_buffer: self.config.shuffle_buffer,
            reader_queue: 64,
            max_empty_shards: (8 * shards).max(64),
        }
    }

    fn start_epoch(&mut self, epoch: u64) -> Result<(), DataError> {
        let plan = self.plan(epoch)?;
        let sequencer = Sequencer::start(
            plan,
            epoch,
            self.source.format.clone(),
            self.source.store.clone(),
            &self.sequencer_config(),
        )?;
        self.cursor = LoaderCursor {
            earlier_skips: self.cursor.skipped(),
            batches: self.cursor.batches,
            skipped_in_a_row: self.cursor.skipped_in_a_row,
            ..fresh_cursor(epoch, self.config.readers)
        };
        self.sequencer = Some(sequencer);
        Ok(())
    }

    fn restore(&mut self, cursor: &LoaderCursor) -> Result<(), DataError> {
        if cursor.sequencer.readers.len() != self.config.readers {
            return Err(DataError::InvalidConfig {
                field: "readers",
                value: self.config.readers.to_string(),
                reason: "differs from the cursor's; resume with the reader count it was saved with",
            });
        }
        let plan = self.plan(cursor.epoch)?;
        let mut sequencer = Sequencer::restore(
            plan,
            self.source.format.clone(),
            self.source.store.clone(),
            &self.sequencer_config(),
            &cursor.sequencer,
        )?;
        for _ in 0..cursor.skip_raw {
            if sequencer.next().transpose()?.is_none() {
                break;
            }
        }
        self.cursor = cursor.clone();
        self.sequencer = Some(sequencer);
        Ok(())
    }

    /// Produces until the consumer hangs up, the epochs are done, or an error (which is sent).
    fn run(mut self, tx: &SyncSender<Result<Batch, DataError>>) {
        let mut pending: Vec<Sample> = Vec::new();
        if let Err(error) = reserve(
            &mut pending,
            self.config.batch_size,
            "the pending samples",
            self.config.batch_size,
        ) {
            // The receiver may be gone; nothing else to do with the error then.
            let _ = tx.send(Err(error));
            return;
        }
        loop {
            match self.chunk(&mut pending, tx) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => return,
                Err(error) => {
                    // The receiver may be gone; nothing else to do with the error then.
                    let _ = tx.send(Err(error));
                    return;
                }
            }
        }
    }

    /// Pulls, processes and batches one chunk; at the end of an epoch, starts the next.
    fn chunk(
        &mut self,
        pending: &mut Vec<Sample>,
        tx: &SyncSender<Result<Batch, DataError>>,
    ) -> Result<Flow, DataError> {
        let Some(sequencer) = self.sequencer.as_mut() else {
            return Ok(Flow::Stop);
        };
        let snapshot = sequencer.state();
        let first = sequencer.emitted();
        let mut raw = Vec::with_capacity(self.chunk);
        let mut epoch_done = false;
        while raw.len() < self.chunk {
            match sequencer.next().transpose()? {
                Some(sample) => raw.push(sample),
                None => {
                    epoch_done = true;
                    break;
                }
            }
        }
        let reader_skips = sequencer.skips().clone();
        let epoch = self.cursor.epoch;
        let processor = &self.processor;
        let processed: Vec<Processed> = self.pool.install(|| {
            raw.into_par_iter()
                .enumerate()
                .map(|(i, r)| processor.process(r, epoch, first + i as u64))
                .collect()
        });
        for (i, outcome) in processed.into_iter().enumerate() {
            match outcome {
                Processed::Good(sample) => {
                    pending.push(sample);
                    self.cursor.skipped_in_a_row = 0;
                }
                Processed::Skipped(reason, detail) => {
                    self.cursor.processing_skips.add(reason);
                    crate::skip::log_skip(
                        reason,
                        self.cursor.processing_skips.get(reason),
                        &detail,
                    );
                    self.cursor.skipped_in_a_row += 1;
                    if self.config.sampling == Sampling::Resampled
                        && self.cursor.skipped_in_a_row >= self.config.max_skipped_in_a_row
                    {
                        return Err(DataError::NoSamples {
                            reason: format!(
                                "{} samples in a row were skipped",
                                self.cursor.skipped_in_a_row
                            ),
                            skipped: self.cursor.skipped(),
                        });
                    }
                }
            }
            if pending.len() == self.config.batch_size {
                self.cursor.sequencer = snapshot.clone();
                self.cursor.skip_raw = i as u64 + 1;
                if !self.emit(pending, tx) {
                    return Ok(Flow::Stop);
                }
            }
        }
        let mut totals = self.cursor.earlier_skips.clone();
        totals.merge(&reader_skips);
        totals.merge(&self.cursor.processing_skips);
        if let Ok(mut shared) = self.skipped.lock() {
            *shared = totals;
        }
        if !epoch_done {
            return Ok(Flow::Continue);
        }
        // The end of the epoch: every reader skip is in the sequencer's state; the partial batch
        // goes or stays.
        self.cursor.sequencer = self.sequencer.as_ref().map_or(snapshot, Sequencer::state);
        self.cursor.skip_raw = 0;
        if !pending.is_empty() && !self.config.drop_last && !self.emit(pending, tx) {
            return Ok(Flow::Stop);
        }
        if self.cursor.epoch_batches == 0 {
            let reason = match pending.len() {
                0 => format!("epoch {epoch} gave no good sample"),
                n => format!(
                    "epoch {epoch} gave {n} good samples, fewer than one batch of {}",
                    self.config.batch_size
                ),
            };
            return Err(DataError::NoSamples {
                reason,
                skipped: self.cursor.skipped(),
            });
        }
        pending.clear();
        let next = epoch + 1;
        if self.config.epochs.is_some_and(|n| next >= n) {
            self.sequencer = None;
            return Ok(Flow::Stop);
        }
        self.start_epoch(next)?;
        Ok(Flow::Continue)
    }

    /// Sends `pending` as a batch with the current cursor; false when the consumer is gone.
    fn emit(
        &mut self,
        pending: &mut Vec<Sample>,
        tx: &SyncSender<Result<Batch, DataError>>,
    ) -> bool {
        self.cursor.epoch_batches += 1;
        self.cursor.batches += 1;
        let side = self.config.transform.image_size() as usize;
        let per_image = 3 * side * side;
        let needed = pending.len() * per_image;
        // A buffer the consumer gave back (no page faults on reuse), else a new one.
        let mut images = std::iter::from_fn(|| self.recycled.try_recv().ok())
            .find(|v: &Vec<f32>| v.capacity() >= needed)
            .unwrap_or_default();
        images.clear();
        if let Err(error) = reserve(
            &mut images,
            needed,
            "the batch's images",
            self.config.batch_size,
        ) {
            let _ = tx.send(Err(error));
            return false;
        }
        images.resize(needed, 0.0);
        // Normalising straight into the batch, in parallel: no per-sample float buffers.
        let normalize = self.processor.transform.normalize();
        self.pool.install(|| {
            images
                .par_chunks_mut(per_image)
                .zip(pending.par_iter())
                .for_each(|(out, sample)| sample.image.normalize_into(normalize, out));
        });
        let batch = assemble(
            std::mem::take(pending),
            images,
            side,
            self.processor.tokenizer.context_length(),
            self.cursor.clone(),
        );
        if let Err(error) = reserve(
            pending,
            self.config.batch_size,
            "the pending samples",
            self.config.batch_size,
        ) {
            let _ = tx.send(Err(error));
            return false;
        }
        tx.send(Ok(batch)).is_ok()
    }
}

/// Room for `count` items in `buffer`, or an error instead of the allocator's abort.
fn reserve<T>(
    buffer: &mut Vec<T>,
    count: usize,
    what: &'static str,
    batch_size: usize,
) -> Result<(), DataError> {
    buffer
        .try_reserve_exact(count.saturating_sub(buffer.len()))
        .map_err(|_| DataError::OutOfMemory {
            what,
            bytes: count as u128 * std::mem::size_of::<T>() as u128,
            batch_size,
        })
}

enum Flow {
    Continue,
    Stop,
}

fn assemble(
    samples: Vec<Sample>,
    images: Vec<f32>,
    image_size: usize,
    context_length: usize,
    cursor: LoaderCursor,
) -> Batch {
    let n = samples.len();
    let mut batch = Batch {
        images,
        tokens: Vec::with_capacity(n * context_length),
        samples: Vec::with_capacity(n),
        keys: Vec::with_capacity(n),
        captions: Vec::with_capacity(n),
        sizes: Vec::with_capacity(n),
        image_size,
        context_length,
        epoch: cursor.epoch,
        cursor,
    };
    for sample in samples {
        batch.tokens.extend_from_slice(&sample.tokens);
        batch.samples.push(sample.at);
        batch.keys.push(sample.key);
        batch.captions.push(sample.caption);
        batch.sizes.push(sample.size);
    }
    batch
}
