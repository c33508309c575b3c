//! The built-in synthetic WSSS benchmark.
//!
//! A deterministic generator of images with pixel ground truth that reproduces the problem
//! weakly supervised segmentation exists for, so the whole pipeline can be run and measured on
//! a CPU:
//!
//! * every class has a small **discriminative part** (a cap of the object in a class-specific
//!   direction, with a class-specific colour and stripe texture), while most of the object's
//!   **body** is drawn from an appearance pool shared by all classes — a classifier only needs
//!   the part, so a plain CAM covers mostly the part (under-activation);
//! * shapes come from **class-specific families of smooth contours** (radial harmonics) with
//!   random deformation, scale, aspect and pose; 1–3 objects per image, multi-label images,
//!   partial occlusion;
//! * the background is textured and cluttered, and each class prefers one background type
//!   (**context co-occurrence**), so CAMs also spill into co-occurring background
//!   (over-activation); body-textured "confuser" blobs without a part are background;
//! * object boundaries are visible in low-level colour, so superpixels, a CRF and IRN have
//!   something to find.
//!
//! The output is a VOC-layout folder (see [`write`]) that every ssc tool reads as VOC.

mod mosaic;
mod render;
mod scene;
mod write;

pub use mosaic::mosaic;
pub use render::render;
pub use scene::{Object, Scene, sample_scene};
pub use write::{SynthSummary, image_id, write_dataset};

use serde::{Deserialize, Serialize};

/// Shape families and their names, one per class (at most this many classes).
pub const CLASS_NAMES: [&str; 10] = [
    "star", "drop", "bean", "cross", "kite", "flower", "blade", "heart", "clover", "shell",
];

/// Background types; class `c` prefers background `c % BACKGROUNDS.len()`.
pub const BACKGROUNDS: [&str; 4] = ["meadow", "water", "sand", "wall"];

/// Generator settings. `synthetic()` is the default benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Seed of everything; the same seed gives byte-identical datasets.
    pub seed: u64,
    /// Images in the `train` split (also written as `train_aug`).
    pub num_train: usize,
    /// Images in the `val` split.
    pub num_val: usize,
    /// Nominal image side in pixels; each image's height and width vary by ±15 %.
    pub size: usize,
    /// Number of foreground classes (1…10).
    pub classes: usize,
    /// Probability that an image's background is the preferred one of its first object.
    pub context_prob: f64,
    /// Fraction of the object area covered by the discriminative part (approximate).
    pub part_fraction: f64,
    /// Maximum objects per image (at least one).
    pub max_objects: usize,
    /// Mark a one-pixel ignore (255) band on the inside of object boundaries, as VOC does.
    pub ignore_band: bool,
    /// JPEG quality of the written images.
    pub jpeg_quality: u8,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self::synthetic()
    }
}

impl SynthConfig {
    /// The default benchmark: 2,000 train and 300 val images near 128 px, 6 classes.
    pub fn synthetic() -> Self {
        SynthConfig {
            seed: 0,
            num_train: 2000,
            num_val: 300,
            size: 128,
            classes: 6,
            context_prob: 0.75,
            part_fraction: 0.12,
            max_objects: 3,
            ignore_band: true,
            jpeg_quality: 92,
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::CoreError::Invalid(m));
        if self.classes == 0 || self.classes > CLASS_NAMES.len() {
            return bad(format!(
                "--classes must be 1…{}, got {}",
                CLASS_NAMES.len(),
                self.classes
            ));
        }
        if !(32..=2048).contains(&self.size) {
            return bad(format!("--size must be 32…2048, got {}", self.size));
        }
        if self.max_objects == 0 {
            return bad("max_objects must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.context_prob) {
            return bad(format!(
                "context_prob must be in [0,1], got {}",
                self.context_prob
            ));
        }
        if !(0.02..=0.5).contains(&self.part_fraction) {
            return bad(format!(
                "part_fraction must be in [0.02,0.5], got {}",
                self.part_fraction
            ));
        }
        if self.num_train + self.num_val == 0 {
            return bad("no images requested".into());
        }
        Ok(())
    }

    /// The class map: background followed by the shape-family names.
    pub fn class_map(&self) -> crate::classes::ClassMap {
        let names = std::iter::once("background")
            .chain(CLASS_NAMES.iter().copied().take(self.classes))
            .map(str::to_string)
            .collect();
        crate::classes::ClassMap::custom(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthConfig {
        SynthConfig {
            size: 64,
            ..SynthConfig::synthetic()
        }
    }

    #[test]
    fn deterministic_per_index() {
        let cfg = small();
        assert_eq!(sample_scene(&cfg, 5), sample_scene(&cfg, 5));
        assert_ne!(sample_scene(&cfg, 5), sample_scene(&cfg, 6));
        let other = SynthConfig { seed: 1, ..small() };
        assert_ne!(sample_scene(&cfg, 5), sample_scene(&other, 5));
        assert_eq!(
            render(&sample_scene(&cfg, 3), true),
            render(&sample_scene(&cfg, 3), true)
        );
    }

    #[test]
    fn labels_match_objects_and_band() {
        let cfg = small();
        for i in 0..30 {
            let scene = sample_scene(&cfg, i);
            let (rgb, labels) = render(&scene, true);
            assert_eq!(rgb.len(), scene.width * scene.height * 3);
            let mut present: Vec<u8> = labels
                .iter()
                .copied()
                .filter(|&l| l != 0 && l != 255)
                .collect();
            present.sort_unstable();
            present.dedup();
            let mut expect: Vec<u8> = scene.objects.iter().map(|o| o.class as u8 + 1).collect();
            expect.sort_unstable();
            expect.dedup();
            assert_eq!(present, expect, "scene {i}");
            assert!(labels.contains(&255), "ignore band missing in scene {i}");
            assert!(scene.objects.len() <= cfg.max_objects);
        }
    }

    /// The properties that make this a WSSS benchmark rather than a toy: small parts, shared
    /// bodies, context co-occurrence, and every class represented.
    #[test]
    fn wsss_properties() {
        let cfg = small();
        let mut part_px = 0usize;
        let mut obj_px = 0usize;
        let mut bodies = vec![std::collections::BTreeSet::new(); cfg.classes];
        let mut with_context = 0usize;
        let n = 300;
        for i in 0..n {
            let s = sample_scene(&cfg, i);
            for o in &s.objects {
                bodies[o.class].insert(o.body);
            }
            if s.background == s.objects[0].class % BACKGROUNDS.len() {
                with_context += 1;
            }
            for y in 0..s.height {
                for x in 0..s.width {
                    let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
                    for o in &s.objects {
                        if o.contains(fx, fy) {
                            obj_px += 1;
                            part_px += o.in_part(fx, fy) as usize;
                        }
                    }
                }
            }
        }
        let frac = part_px as f64 / obj_px as f64;
        assert!((0.05..0.25).contains(&frac), "part fraction {frac}");
        for (c, b) in bodies.iter().enumerate() {
            assert!(b.len() >= 4, "class {c} uses only bodies {b:?}");
        }
        let ctx = with_context as f64 / n as f64;
        assert!(ctx > 0.7, "context co-occurrence {ctx}");
    }

    #[test]
    fn validation_names_the_setting() {
        let bad = SynthConfig {
            classes: 11,
            ..small()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--classes")
        );
        let bad = SynthConfig { size: 8, ..small() };
        assert!(bad.validate().unwrap_err().to_string().contains("--size"));
    }
}
