//! The checks serde cannot express, each error naming its key.

use duet_model::ClipConfig;

use crate::lock::group_count;
use crate::{TrainConfig, TrainError};

impl TrainConfig {
    /// Every value constraint serde cannot express, the model source included; the error names
    /// the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_settings()?;
        self.validate_lock(&self.clip_config()?)
    }

    /// [`Self::validate`] but for the model source and `[lock]`.
    pub(super) fn validate_settings(&self) -> Result<(), TrainError> {
        let positive = [
            ("train.steps", self.train.steps),
            ("train.batch_size", self.train.batch_size as u64),
            ("train.accum_freq", self.train.accum_freq as u64),
            ("checkpoint.every_steps", self.checkpoint.every_steps),
            ("checkpoint.keep_last", self.checkpoint.keep_last as u64),
            ("log.every_steps", self.log.every_steps),
            ("data.readers", self.data.readers as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TrainError::invalid(*key, "must be at least 1, got 0"));
        }
        if self.data.slots == Some(0) {
            return Err(TrainError::invalid(
                "data.slots",
                "must be at least 1, got 0",
            ));
        }
        if let Err(unknown) = self.data.filter.validate() {
            return Err(TrainError::invalid(
                "data.filter.languages",
                unknown.to_string(),
            ));
        }
        let t = &self.train;
        if !(t.loss_scale.is_finite() && t.loss_scale > 0.0) {
            return Err(TrainError::invalid(
                "train.loss_scale",
                format!("must be positive and finite, got {}", t.loss_scale),
            ));
        }
        if !(0.0..1.0).contains(&t.patch_dropout) {
            return Err(TrainError::invalid(
                "train.patch_dropout",
                format!("must be in [0, 1), got {}", t.patch_dropout),
            ));
        }
        if t.loss_scale_growth_interval == 0 {
            return Err(TrainError::invalid(
                "train.loss_scale_growth_interval",
                "must be at least 1, got 0",
            ));
        }
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(TrainError::invalid(
                "optimizer.lr",
                format!("must be positive, got {}", o.lr),
            ));
        }
        for (key, beta) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::invalid(
                    key,
                    format!("must be in [0, 1), got {beta}"),
                ));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(TrainError::invalid(
                "optimizer.eps",
                format!("must be positive, got {}", o.eps),
            ));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(TrainError::invalid(
                "optimizer.weight_decay",
                format!("must be zero or positive, got {}", o.weight_decay),
            ));
        }
        if let Some(norm) = o.grad_clip_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(TrainError::invalid(
                "optimizer.grad_clip_norm",
                format!("must be positive, got {norm}"),
            ));
        }
        if self.data.image_keys.is_empty() {
            return Err(TrainError::invalid(
                "data.image_keys",
                "must name at least one field",
            ));
        }
        self.schedule.validate(self.train.steps)?;
        if self.eval.batch_size == 0 {
            return Err(TrainError::invalid(
                "eval.batch_size",
                "must be at least 1, got 0",
            ));
        }
        let names: Vec<(String, &str)> = self
            .eval
            .retrieval
            .iter()
            .enumerate()
            .map(|(i, set)| (format!("eval.retrieval[{i}]"), set.name.as_str()))
            .chain(
                self.eval
                    .zero_shot
                    .iter()
                    .enumerate()
                    .map(|(i, set)| (format!("eval.zero_shot[{i}]"), set.name.as_str())),
            )
            .collect();
        for (i, (key, name)) in names.iter().enumerate() {
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(TrainError::invalid(
                    format!("{key}.name"),
                    format!("{name:?}: use letters, digits, _ and -"),
                ));
            }
            if names[..i].iter().any(|(_, other)| other == name) {
                return Err(TrainError::invalid(
                    format!("{key}.name"),
                    format!("{name:?} is used twice"),
                ));
            }
        }
        for (i, set) in self.eval.retrieval.iter().enumerate() {
            duet_data::parse_spec(&set.data, None).map_err(|e| {
                TrainError::invalid(format!("eval.retrieval[{i}].data"), e.to_string())
            })?;
        }
        for (i, set) in self.eval.zero_shot.iter().enumerate() {
            let key = format!("eval.zero_shot[{i}]");
            duet_eval::load_templates(&set.templates)
                .map_err(|e| TrainError::invalid(format!("{key}.templates"), e.to_string()))?;
            crate::evaluate::load_classes(set).map_err(|e| {
                let field = if set.classes.is_some() {
                    "classes"
                } else {
                    "dataset"
                };
                TrainError::invalid(format!("{key}.{field}"), e.to_string())
            })?;
        }
        duet_data::parse_spec(&self.data.train, self.data.upsampling.as_deref()).map_err(|e| {
            let key = if matches!(e, duet_data::DataError::UpsamplingMismatch { .. }) {
                "data.upsampling"
            } else {
                "data.train"
            };
            TrainError::invalid(key, e.to_string())
        })?;
        Ok(())
    }

    /// `[lock]` against the model's tower depths.
    pub fn validate_lock(&self, clip: &ClipConfig) -> Result<(), TrainError> {
        for (key, locked, unlocked, blocks) in [
            (
                "lock.image_unlocked_groups",
                self.lock.image,
                self.lock.image_unlocked_groups,
                clip.vision.layers,
            ),
            (
                "lock.text_unlocked_layers",
                self.lock.text,
                self.lock.text_unlocked_layers,
                clip.text.layers,
            ),
        ] {
            if unlocked > 0 && !locked {
                return Err(TrainError::invalid(
                    key,
                    "only applies to a locked tower; set lock.image / lock.text = true",
                ));
            }
            if unlocked > group_count(blocks) {
                return Err(TrainError::invalid(
                    key,
                    format!(
                        "the tower has {} groups ({blocks} blocks + embeddings + projection), got \
                         {unlocked}",
                        group_count(blocks)
                    ),
                ));
            }
        }
        Ok(())
    }
}
