//! Annotation-tool formats (annotation-tool integration; label maps as in §1.2 and §1.4): COCO
//! RLE and COCO JSON, Label Studio brush RLE, tasks and labeling config, CVAT "Segmentation
//! mask 1.1" zips, and the connected components used for per-instance outputs.
//!
//! Every writer follows one streaming protocol so ssc-label / ssc-predict / ssc-convert can feed
//! masks one at a time: `XWriter::begin(path, &ClassMap, options)`, then
//! [`MaskWriter::add`] per [`MaskSource`], then [`MaskWriter::finish`], which makes the output
//! appear atomically. Images are never kept: the CVAT zip streams PNGs into a temporary file,
//! the JSON writers keep only the (compressed) annotations. Label maps are row-major `u8`,
//! value = class index of the [`ClassMap`], 255 = ignore.

pub mod brush;
pub mod coco;
pub mod coco_rle;
pub mod components;
pub mod corrections;
pub mod cvat;
pub mod labelstudio;
mod png_io;

use crate::classes::ClassMap;
use crate::{CoreError, Result};

/// One image's label map, as a writer consumes it and a reader returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskSource {
    /// Image id (file stem, e.g. `2007_000032`); names per-image files in CVAT zips.
    pub id: String,
    /// Image file name or relative path as the tool should reference it (COCO `file_name`,
    /// Label Studio `data.image` after the prefix). Defaults to `<id>.jpg`.
    pub image: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major label map, `width × height` values.
    pub labels: Vec<u8>,
    /// Optional per-class confidence (index = class index), e.g. classifier probabilities; used
    /// as prediction scores. Absent means 1.0.
    pub scores: Option<Vec<f32>>,
}

impl MaskSource {
    /// A mask for image `id`; fails when `labels` is not `width × height` or the image is empty.
    pub fn new(id: impl Into<String>, width: u32, height: u32, labels: Vec<u8>) -> Result<Self> {
        let id = id.into();
        if width == 0 || height == 0 {
            return Err(CoreError::Invalid(format!(
                "{id}: empty image {width}x{height}"
            )));
        }
        if (width as usize).checked_mul(height as usize) != Some(labels.len()) {
            return Err(CoreError::Invalid(format!(
                "{id}: label map has {} values, expected {width}x{height}",
                labels.len()
            )));
        }
        Ok(MaskSource {
            image: format!("{id}.jpg"),
            id,
            width,
            height,
            labels,
            scores: None,
        })
    }

    /// Sets the image file name / relative path.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// Sets per-class scores (index = class index).
    pub fn with_scores(mut self, scores: Vec<f32>) -> Self {
        self.scores = Some(scores);
        self
    }

    /// Score of class `c` (1.0 without scores or past their end).
    pub fn score(&self, c: u8) -> f64 {
        self.scores
            .as_ref()
            .and_then(|s| s.get(c as usize))
            .map_or(1.0, |&v| f64::from(v))
    }

    /// Foreground classes present (ascending, background and ignore excluded), after checking
    /// the size and that every value is a class of `classes` or 255.
    pub fn present_classes(&self, classes: &ClassMap) -> Result<Vec<u8>> {
        if (self.width as usize).checked_mul(self.height as usize) != Some(self.labels.len()) {
            return Err(CoreError::Invalid(format!(
                "{}: label map has {} values, expected {}x{}",
                self.id,
                self.labels.len(),
                self.width,
                self.height
            )));
        }
        let mut seen = [false; 256];
        for &v in &self.labels {
            seen[v as usize] = true;
        }
        if let Some(bad) = (classes.len()..255).find(|&v| seen[v]) {
            return Err(CoreError::Invalid(format!(
                "{}: label {bad} is not a class ({} classes, 255 = ignore)",
                self.id,
                classes.len()
            )));
        }
        Ok((1..classes.len().min(255))
            .filter(|&c| seen[c])
            .map(|c| c as u8)
            .collect())
    }

    /// Row-major 0/1 mask of class `c`.
    pub fn class_mask(&self, c: u8) -> Vec<u8> {
        self.labels.iter().map(|&v| u8::from(v == c)).collect()
    }
}

/// A streaming annotation writer (see the module docs for the protocol).
pub trait MaskWriter {
    /// Adds one image's masks. Fails on a label map that does not fit the class map or an id
    /// already added; the writer stays usable, so a long run can skip the item.
    fn add(&mut self, mask: &MaskSource) -> Result<()>;
    /// Writes the remaining parts and moves the output into place. Calling `add` or `finish`
    /// again afterwards is an error.
    fn finish(&mut self) -> Result<()>;
}

/// Checks that class names survive formats that split on `:`, quotes or line breaks.
pub(crate) fn check_class_names(classes: &ClassMap) -> Result<()> {
    if classes.is_empty() {
        return Err(CoreError::Invalid("the class map is empty".into()));
    }
    for n in &classes.names {
        if n.is_empty() || n.contains([':', '\n', '\r']) {
            return Err(CoreError::Invalid(format!(
                "class name {n:?} cannot be written (empty, or contains ':' or a line break)"
            )));
        }
    }
    Ok(())
}

/// Image file stem of a path or URL (`/data/x/2007_000032.jpg` → `2007_000032`).
pub(crate) fn stem_of(path: &str) -> String {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match name.rfind('.') {
        Some(i) if i > 0 => name[..i].to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_validation() {
        assert!(MaskSource::new("a", 2, 2, vec![0; 3]).is_err());
        assert!(MaskSource::new("a", 0, 2, vec![]).is_err());
        let m = MaskSource::new("a", 3, 1, vec![0, 2, 255]).unwrap();
        assert_eq!(m.image, "a.jpg");
        assert_eq!(m.present_classes(&ClassMap::voc()).unwrap(), vec![2]);
        let tiny = ClassMap::custom(vec!["background".into(), "x".into()]);
        let e = m.present_classes(&tiny).unwrap_err().to_string();
        assert!(e.contains("label 2") && e.starts_with("a:"), "{e}");
        assert_eq!(
            m.clone().with_scores(vec![0.1, 0.2, 0.7]).score(2),
            0.7f32 as f64
        );
        assert_eq!(m.score(2), 1.0);
        assert_eq!(stem_of("/data/local-files/?d=x/2007_1.jpg"), "2007_1");
        assert_eq!(stem_of("42"), "42");
    }
}
