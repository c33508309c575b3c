//! Pseudo-masks for every image of a folder from a run's exported CAM and IRN networks, with
//! the library alone (no `ssc-*` binary): the labels are predicted from the CAM network's
//! class scores, and each mask is written as a palette PNG beside nothing else.
//!
//! ```sh
//! cargo run --release -p ssc-inference --example label_folder -- \
//!     runs/main/cam.onnx runs/main/irn.onnx my-photos/ my-masks/
//! ```
//!
//! `ssc-label masks --predict-labels` does the same at scale (shards, resume, a manifest,
//! annotation-tool formats); this is the few lines a program embedding ssc needs.

use std::path::PathBuf;

use ssc_core::classes::ClassMap;
use ssc_core::dataset::folder::list_images;
use ssc_core::mask::write_palette_png;
use ssc_inference::labeler::{ImageLabels, Labeler};
use ssc_inference::runtime::SessionConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [cam, irn, images, out] = args.as_slice() else {
        return Err("usage: label_folder CAM.onnx IRN.onnx IMAGE_FOLDER OUT_FOLDER".into());
    };
    let mut labeler = Labeler::open(cam, irn, &SessionConfig::default())?;
    let classes = ClassMap::custom(labeler.class_names());
    for (rel, path) in list_images(images)? {
        let image = ssc_core::imageio::read_rgb(&path)?;
        let labelling = labeler.label(&image, ImageLabels::Predict)?;
        let mask = out.join(rel).with_extension("png");
        std::fs::create_dir_all(mask.parent().unwrap_or(out))?;
        write_palette_png(&mask, &labelling.mask, &classes)?;
        let found: Vec<&str> = labelling
            .keys
            .iter()
            .map(|&k| classes.names[k as usize + 1].as_str())
            .collect();
        println!("{}: {}", mask.display(), found.join(", "));
    }
    Ok(())
}
