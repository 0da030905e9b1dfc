//! Learning-rate schedules, as OpenCLIP's `scheduler.py` (open_clip_train 3.3) computes them.
//!
//! All take the step index (0-based) and return the learning rate for that step. Warmup is
//! linear from `lr / warmup` at step 0 to `lr` at step `warmup - 1` (`lr * (step + 1) / warmup`).

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// A learning-rate schedule, as a config names it (`{ kind = "cosine", warmup_steps = 100 }`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// Warmup, then half a cosine from `lr` down to 0 at the last step (OpenCLIP's default).
    Cosine {
        /// Linear warmup steps.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Warmup, then `lr`.
    Constant {
        /// Linear warmup steps.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Warmup, `lr`, then a polynomial cooldown to `cooldown_end_lr` over the last
    /// `cooldown_steps` (OpenCLIP `const-cooldown`).
    ConstantCooldown {
        /// Linear warmup steps.
        #[serde(default)]
        warmup_steps: u64,
        /// Length of the cooldown, ending at the last step.
        cooldown_steps: u64,
        /// Exponent of the decay (1 = linear).
        #[serde(default = "one")]
        cooldown_power: f64,
        /// Learning rate at the end of the cooldown.
        #[serde(default)]
        cooldown_end_lr: f64,
    },
}

fn one() -> f64 {
    1.0
}

impl Default for ScheduleConfig {
    /// Cosine without warmup.
    fn default() -> Self {
        Self::Cosine { warmup_steps: 0 }
    }
}

impl ScheduleConfig {
    /// Checks the schedule against the run's length; errors name the key.
    pub fn validate(&self, steps: u64) -> Result<(), TrainError> {
        let warmup = self.warmup_steps();
        if warmup >= steps && warmup > 0 {
            return Err(TrainError::invalid(
                "schedule.warmup_steps",
                format!("{warmup} leaves no step after warmup in train.steps = {steps}"),
            ));
        }
        if let Self::ConstantCooldown {
            cooldown_steps,
            cooldown_power,
            cooldown_end_lr,
            ..
        } = *self
        {
            if cooldown_steps == 0 || warmup + cooldown_steps > steps {
                return Err(TrainError::invalid(
                    "schedule.cooldown_steps",
                    format!(
                        "{cooldown_steps} must be positive and fit after warmup ({warmup}) in \
                         train.steps = {steps}"
                    ),
                ));
            }
            if !(cooldown_power.is_finite() && cooldown_power > 0.0) {
                return Err(TrainError::invalid(
                    "schedule.cooldown_power",
                    format!("must be positive, got {cooldown_power}"),
                ));
            }
            if !(cooldown_end_lr.is_finite() && cooldown_end_lr >= 0.0) {
                return Err(TrainError::invalid(
                    "schedule.cooldown_end_lr",
                    format!("must be zero or positive, got {cooldown_end_lr}"),
                ));
            }
        }
        Ok(())
    }

    /// Linear warmup steps.
    pub fn warmup_steps(&self) -> u64 {
        match *self {
            Self::Cosine { warmup_steps }
            | Self::Constant { warmup_steps }
            | Self::ConstantCooldown { warmup_steps, .. } => warmup_steps,
        }
    }

    /// The learning rate of `step` (0-based) in a run of `steps` steps peaking at `lr`.
    pub fn lr(&self, lr: f64, step: u64, steps: u64) -> f64 {
        let warmup = self.warmup_steps();
        if step < warmup {
            // open_clip scheduler.py _warmup_lr: base_lr * (step + 1) / warmup_length
            return lr * (step + 1) as f64 / warmup as f64;
        }
        match *self {
            Self::Constant { .. } => lr,
            Self::Cosine { .. } => {
                let e = (step - warmup) as f64;
                let es = steps.saturating_sub(warmup).max(1) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * e / es).cos()) * lr
            }
            Self::ConstantCooldown {
                cooldown_steps,
                cooldown_power,
                cooldown_end_lr,
                ..
            } => {
                let start = steps.saturating_sub(cooldown_steps);
                if step < start {
                    return lr;
                }
                let e = (step - start) as f64;
                let es = (steps - start).max(1) as f64;
                let decay = (1.0 - e / es).powf(cooldown_power);
                decay * (lr - cooldown_end_lr) + cooldown_end_lr
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warmup_is_linear_from_lr_over_warmup() {
        // warmup 4, lr 1: steps 0..3 give 1/4, 2/4, 3/4, 4/4.
        let s = ScheduleConfig::Constant { warmup_steps: 4 };
        let lrs: Vec<f64> = (0..6).map(|t| s.lr(1.0, t, 10)).collect();
        assert_eq!(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_hand_values() {
        // warmup 2, 10 steps: after warmup e = step - 2, es = 8;
        // step 2: 0.5(1 + cos 0) = 1; step 6: 0.5(1 + cos(pi/2)) = 0.5;
        // step 9: 0.5(1 + cos(7pi/8)) = 0.5(1 - 0.92388) = 0.038060.
        let s = ScheduleConfig::Cosine { warmup_steps: 2 };
        assert!(close(s.lr(2.0, 0, 10), 1.0)); // warmup: 2 * 1/2
        assert!(close(s.lr(2.0, 2, 10), 2.0));
        assert!(close(s.lr(2.0, 6, 10), 1.0));
        assert!((s.lr(1.0, 9, 10) - 0.038_060).abs() < 1e-6);
    }

    #[test]
    fn cooldown_hand_values() {
        // 10 steps, cooldown 4 (steps 6..9), linear to 0.1 from 1:
        // step 6: e=0 -> 1; step 8: e=2, es=4 -> 0.5 * 0.9 + 0.1 = 0.55; step 9: 0.25*0.9+0.1.
        let s = ScheduleConfig::ConstantCooldown {
            warmup_steps: 0,
            cooldown_steps: 4,
            cooldown_power: 1.0,
            cooldown_end_lr: 0.1,
        };
        assert!(close(s.lr(1.0, 5, 10), 1.0));
        assert!(close(s.lr(1.0, 6, 10), 1.0));
        assert!(close(s.lr(1.0, 8, 10), 0.55));
        assert!(close(s.lr(1.0, 9, 10), 0.325));
    }

    #[test]
    fn impossible_schedules_name_their_key() {
        let err = ScheduleConfig::Cosine { warmup_steps: 10 }
            .validate(10)
            .expect_err("no step left");
        assert!(err.to_string().contains("schedule.warmup_steps"), "{err}");
        let err = ScheduleConfig::ConstantCooldown {
            warmup_steps: 5,
            cooldown_steps: 6,
            cooldown_power: 1.0,
            cooldown_end_lr: 0.0,
        }
        .validate(10)
        .expect_err("does not fit");
        assert!(err.to_string().contains("schedule.cooldown_steps"), "{err}");
    }
}
