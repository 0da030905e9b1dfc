//! The dynamic loss scale of f16 training (torch's `GradScaler`): the loss is multiplied by
//! `scale` before the backward so that small f16 gradients do not flush to zero, and the
//! gradients are divided by it before the optimizer. A step whose gradients are not finite
//! (an f16 overflow) is skipped and the scale halved; after `growth_interval` good steps in a
//! row it doubles. The state is saved in every checkpoint, so a resumed run scales exactly as
//! the uninterrupted one.

use serde::{Deserialize, Serialize};

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The factor the next step's loss is multiplied by.
    pub scale: f64,
    /// Good steps in a row since the scale last changed.
    pub good_steps: u64,
    /// Steps skipped for gradients that were not finite, over the whole run.
    pub skipped_steps: u64,
    /// Good steps after which the scale doubles.
    pub growth_interval: u64,
}

impl LossScale {
    /// torch `GradScaler`'s `init_scale`: 2^16.
    pub const INIT_SCALE: f64 = 65_536.0;
    /// torch `GradScaler`'s `growth_interval`.
    pub const GROWTH_INTERVAL: u64 = 2_000;

    /// A scale starting at `scale`, doubling after `growth_interval` good steps.
    pub fn new(scale: f64, growth_interval: u64) -> Self {
        Self {
            scale,
            good_steps: 0,
            skipped_steps: 0,
            growth_interval: growth_interval.max(1),
        }
    }

    /// After a step whose unscaled gradients were `finite` (or not): grows, or backs off and
    /// counts the step as skipped.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
            self.skipped_steps += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_on_overflow_and_grows_after_the_interval() {
        // 65536 → overflow → 32768 (1 skipped); 3 good steps of an interval of 3 → 65536.
        let mut s = LossScale::new(LossScale::INIT_SCALE, 3);
        s.update(false);
        assert_eq!((s.scale, s.skipped_steps, s.good_steps), (32_768.0, 1, 0));
        s.update(true);
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (32_768.0, 2));
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (65_536.0, 0));
        // An overflow in the middle of a run of good steps restarts the count.
        s.update(true);
        s.update(false);
        s.update(true);
        s.update(true);
        assert_eq!((s.scale, s.good_steps, s.skipped_steps), (32_768.0, 2, 2));
    }
}
