//! Locked towers (LiT, Zhai et al. 2022): parameters of a locked tower get no gradient, so the
//! optimizer never touches them, and autodiff skips the tower's backward pass entirely.
//!
//! Groups follow OpenCLIP 3.3 (`VisionTransformer.lock`, `lock_text_tower` in `transformer.py`)
//! so `unlocked` counts mean the same as its `--lock-image-unlocked-groups` and
//! `--lock-text-unlocked-layers`. A tower of `L` blocks has `L + 2` groups, first to last:
//!
//! | group | image tower | text tower |
//! |---|---|---|
//! | 0 | patch embedding, class token, position embedding, `ln_pre` | token and position embeddings |
//! | 1 ..= L-1 | blocks 0 ..= L-2 | blocks 0 ..= L-2 |
//! | L | the last block and `ln_post` | the last block and `ln_final` |
//! | L+1 | `proj` | `proj` |
//!
//! Leaving `n` groups unlocked unlocks the last `n`: 1 trains only the projection, 2 also the last
//! block and final norm. `logit_scale` (and `logit_bias`) always train.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use duet_model::{Block, ClipModel, TextTower, VisionTower};
use serde::{Deserialize, Serialize};

/// `[lock]`: which towers are locked (all off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockConfig {
    /// Lock the image tower (OpenCLIP `--lock-image`).
    pub image: bool,
    /// Leave the image tower's last N groups trainable (OpenCLIP `--lock-image-unlocked-groups`).
    pub image_unlocked_groups: usize,
    /// Lock the text tower (OpenCLIP `--lock-text`).
    pub text: bool,
    /// Leave the text tower's last N groups trainable (OpenCLIP `--lock-text-unlocked-layers`).
    pub text_unlocked_layers: usize,
}

/// The number of lockable groups of a tower with `blocks` blocks.
pub fn group_count(blocks: usize) -> usize {
    blocks + 2
}

/// `model` with the towers `lock` names frozen (no gradients). Apply after every load: a
/// parameter's gradient setting is not saved with the weights.
pub fn apply(mut model: ClipModel, lock: &LockConfig) -> ClipModel {
    if lock.image {
        model.vision = lock_vision(model.vision, lock.image_unlocked_groups);
    }
    if lock.text {
        model.text = lock_text(model.text, lock.text_unlocked_layers);
    }
    model
}

/// Whether group `g` stays locked when the last `unlocked` of `groups` are trainable.
fn locked(g: usize, groups: usize, unlocked: usize) -> bool {
    g < groups.saturating_sub(unlocked)
}

fn freeze<const D: usize>(param: Param<Tensor<D>>) -> Param<Tensor<D>> {
    param.set_require_grad(false)
}

/// Block `i` is in group `i + 1` (the last block shares group `L` with the final norm).
fn lock_blocks(blocks: Vec<Block>, unlocked: usize) -> Vec<Block> {
    let groups = group_count(blocks.len());
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, block)| {
            if locked(i + 1, groups, unlocked) {
                block.no_grad()
            } else {
                block
            }
        })
        .collect()
}

fn lock_vision(mut v: VisionTower, unlocked: usize) -> VisionTower {
    let layers = v.blocks.len();
    let groups = group_count(layers);
    if locked(0, groups, unlocked) {
        v.patch_embed = v.patch_embed.no_grad();
        v.class_embedding = v.class_embedding.map(freeze);
        v.position_embedding = freeze(v.position_embedding);
        v.ln_pre = v.ln_pre.no_grad();
    }
    v.blocks = lock_blocks(v.blocks, unlocked);
    if locked(layers, groups, unlocked) {
        v.ln_post = v.ln_post.no_grad();
    }
    if locked(layers + 1, groups, unlocked) {
        // The head group: CLIP's projection, or SigLIP's attention-pooling head.
        v.proj = v.proj.no_grad();
        v.attn_pool = v.attn_pool.no_grad();
    }
    v
}

fn lock_text(mut t: TextTower, unlocked: usize) -> TextTower {
    let layers = t.blocks.len();
    let groups = group_count(layers);
    if locked(0, groups, unlocked) {
        t.token_embedding = t.token_embedding.no_grad();
        t.position_embedding = freeze(t.position_embedding);
    }
    t.blocks = lock_blocks(t.blocks, unlocked);
    if locked(layers, groups, unlocked) {
        t.ln_final = t.ln_final.no_grad();
    }
    if locked(layers + 1, groups, unlocked) {
        t.proj = t.proj.no_grad();
    }
    t
}

#[cfg(test)]
mod tests {
    use burn::module::ModuleVisitor;
    use burn::tensor::Device;
    use duet_model::preset;

    use super::*;

    /// Paths of the parameters that still require gradients.
    #[derive(Default)]
    struct Trainable {
        stack: Vec<String>,
        paths: Vec<String>,
    }

    impl ModuleVisitor for Trainable {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.paths.push(self.stack.join("."));
            }
        }
    }

    fn trainable(lock: LockConfig) -> Vec<String> {
        let device = Device::flex().autodiff();
        let model = preset("tiny")
            .expect("preset")
            .init(&device)
            .expect("model");
        let mut visitor = Trainable::default();
        apply(model, &lock).visit(&mut visitor);
        visitor.paths
    }

    fn towers(paths: &[String], prefix: &str) -> Vec<String> {
        paths
            .iter()
            .filter(|p| p.starts_with(prefix))
            .cloned()
            .collect()
    }

    #[test]
    fn locking_a_tower_leaves_only_the_other_and_logit_scale() {
        let all = trainable(LockConfig::default());
        let image_locked = trainable(LockConfig {
            image: true,
            ..LockConfig::default()
        });
        assert!(
            towers(&image_locked, "vision").is_empty(),
            "{image_locked:?}"
        );
        assert_eq!(towers(&image_locked, "text"), towers(&all, "text"));
        assert!(image_locked.iter().any(|p| p == "logit_scale"));
    }

    #[test]
    fn unlocked_groups_count_from_the_projection_back() {
        // The tiny preset's image tower has 2 blocks: groups are [embeddings], [block 0],
        // [block 1 + ln_post], [proj].
        let vision = |n| {
            towers(
                &trainable(LockConfig {
                    image: true,
                    image_unlocked_groups: n,
                    ..LockConfig::default()
                }),
                "vision",
            )
        };
        assert_eq!(vision(1), ["vision.proj.weight"]);
        let two = vision(2);
        assert!(two.iter().all(|p| p.starts_with("vision.blocks.1")
            || p.starts_with("vision.ln_post")
            || p == "vision.proj.weight"));
        assert!(two.iter().any(|p| p.starts_with("vision.blocks.1")));
        assert!(two.iter().any(|p| p.starts_with("vision.ln_post")));
        let three = vision(3);
        assert!(three.iter().any(|p| p.starts_with("vision.blocks.0")));
        assert!(!three.iter().any(|p| p.starts_with("vision.ln_pre")));
        // All 4 groups unlocked (or more) is the unlocked tower.
        let all = towers(&trainable(LockConfig::default()), "vision");
        assert_eq!(vision(4), all);
        let text = towers(
            &trainable(LockConfig {
                text: true,
                text_unlocked_layers: 1,
                ..LockConfig::default()
            }),
            "text",
        );
        assert_eq!(text, ["text.proj.weight"]);
    }
}
