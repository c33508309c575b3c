//! Writing the benchmark as a VOC-layout folder:
//!
//! ```text
//! <root>/JPEGImages/<id>.jpg                 RGB images
//! <root>/SegmentationClass/<id>.png          palette PNG ground truth (255 = ignore band)
//! <root>/ImageSets/Segmentation/{train,train_aug,val}.txt
//! <root>/cls_labels.json                     image-level labels: id → [class names]
//! <root>/classes.txt                         class names, background first
//! <root>/synth.json                          the resolved generator config
//! ```

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{SynthConfig, render, sample_scene};
use crate::mask::{LabelMap, write_palette_png};
use crate::{CoreError, Result, atomic};

/// What [`write_dataset`] produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthSummary {
    /// The resolved configuration.
    pub config: SynthConfig,
    /// Images written per split.
    pub train: usize,
    pub val: usize,
    /// Object instances per class (foreground, 0-based), over both splits.
    pub instances_per_class: Vec<usize>,
}

/// The id of image `i` of `split`.
pub fn image_id(split: &str, i: usize) -> String {
    format!("{split}_{i:05}")
}

fn encode_jpeg(rgb: &[u8], w: usize, h: usize, quality: u8) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(std::io::Error::other)?;
    Ok(out)
}

/// Generates and writes the dataset under `root`; `progress` is called once per image.
///
/// Refuses to write into a folder that holds a benchmark made with a different config, so two
/// datasets are never mixed; with the same config the run is repeatable and simply rewrites
/// identical files (every write is atomic, so a killed run can be restarted).
pub fn write_dataset(
    cfg: &SynthConfig,
    root: &Path,
    progress: &(dyn Fn() + Sync),
) -> Result<SynthSummary> {
    cfg.validate()?;
    let meta_path = root.join("synth.json");
    if meta_path.exists() {
        let old = std::fs::read(&meta_path).map_err(|e| CoreError::io(&meta_path, e))?;
        let old: SynthSummary = serde_json::from_slice(&old)
            .map_err(|e| CoreError::format(&meta_path, e.to_string()))?;
        if old.config != *cfg {
            return Err(CoreError::format(
                &meta_path,
                "the folder holds a synthetic benchmark with a different config; \
                 choose another --out or delete it",
            ));
        }
    }
    let classes = cfg.class_map();
    let jobs: Vec<(&str, usize, u64)> = (0..cfg.num_train)
        .map(|i| ("train", i, i as u64))
        .chain((0..cfg.num_val).map(|i| ("val", i, (cfg.num_train + i) as u64)))
        .collect();
    let per_image: Vec<(String, Vec<usize>)> = jobs
        .par_iter()
        .map(|&(split, i, index)| -> Result<(String, Vec<usize>)> {
            let scene = sample_scene(cfg, index);
            let (rgb, labels) = render(&scene, cfg.ignore_band);
            let id = image_id(split, i);
            let jpg = root.join("JPEGImages").join(format!("{id}.jpg"));
            let bytes = encode_jpeg(&rgb, scene.width, scene.height, cfg.jpeg_quality)
                .map_err(|e| CoreError::io(&jpg, e))?;
            atomic::write(&jpg, &bytes)?;
            let mask = LabelMap {
                width: scene.width,
                height: scene.height,
                data: labels,
            };
            let png = root.join("SegmentationClass").join(format!("{id}.png"));
            write_palette_png(&png, &mask, &classes)?;
            let mut present: Vec<usize> = scene.objects.iter().map(|o| o.class).collect();
            present.sort_unstable();
            progress();
            Ok((id, present))
        })
        .collect::<Result<_>>()?;

    let sets = root.join("ImageSets").join("Segmentation");
    let list = |ids: &[&(String, Vec<usize>)]| {
        ids.iter()
            .map(|(id, _)| format!("{id}\n"))
            .collect::<String>()
    };
    let (train, val): (Vec<_>, Vec<_>) = per_image
        .iter()
        .partition(|(id, _)| id.starts_with("train"));
    atomic::write(&sets.join("train.txt"), list(&train).as_bytes())?;
    atomic::write(&sets.join("train_aug.txt"), list(&train).as_bytes())?;
    atomic::write(&sets.join("val.txt"), list(&val).as_bytes())?;

    let mut instances = vec![0usize; cfg.classes];
    let mut labels = serde_json::Map::new();
    for (id, present) in &per_image {
        for &c in present {
            instances[c] += 1;
        }
        let mut names: Vec<&str> = present
            .iter()
            .map(|&c| classes.names[c + 1].as_str())
            .collect();
        names.dedup();
        labels.insert(id.clone(), names.into());
    }
    let json = serde_json::to_vec_pretty(&labels).expect("labels serialise");
    atomic::write(&root.join("cls_labels.json"), &json)?;
    let names: String = classes.names.iter().map(|n| format!("{n}\n")).collect();
    atomic::write(&root.join("classes.txt"), names.as_bytes())?;

    let summary = SynthSummary {
        config: cfg.clone(),
        train: train.len(),
        val: val.len(),
        instances_per_class: instances,
    };
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    atomic::write(&meta_path, &json)?;
    Ok(summary)
}
