//! COCO JSON from label maps (annotation-tool integration; category ids as in §1.4), and back.
//!
//! Segmentations are compressed RLE ([`super::coco_rle`], bit-exact with pycocotools). Per-class
//! mode writes one annotation per class present in an image with `iscrowd: 1` (a class region
//! may be several blobs, which COCO marks as crowd); per-instance mode writes one annotation
//! per connected component with `iscrowd: 0`. The results format is the list COCO evaluation
//! and most tools take for predictions: `{image_id, category_id, segmentation, score}`.
//! Ignore pixels (255) belong to no annotation. The writer keeps only the compressed
//! annotations in memory and writes the file atomically in `finish`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use super::components::{Connectivity, label_class};
use super::{MaskSource, MaskWriter, coco_rle, stem_of};
use crate::classes::{COCO_CATEGORY_IDS, ClassMap};
use crate::{CoreError, Result, atomic};

/// One annotation per class or per connected instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CocoMode {
    /// One annotation per class present in an image, `iscrowd: 1`.
    #[default]
    PerClass,
    /// One annotation per connected component of each class, `iscrowd: 0`.
    PerInstance,
}

/// How class indices become category ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CategoryIds {
    /// Class index 1…N is category id 1…N.
    #[default]
    Contiguous,
    /// The real COCO ids ([`COCO_CATEGORY_IDS`]); the class map must be [`ClassMap::coco`].
    Coco,
}

/// A full dataset file or a predictions (results) list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CocoOutput {
    /// `{images, categories, annotations}`.
    #[default]
    Dataset,
    /// `[{image_id, category_id, segmentation, score}]`.
    Results,
}

/// Options of [`CocoWriter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CocoOptions {
    /// Per-class or per-instance annotations.
    pub mode: CocoMode,
    /// Category id scheme.
    pub category_ids: CategoryIds,
    /// Dataset or results file.
    pub output: CocoOutput,
    /// Connectivity of instances in per-instance mode.
    pub connectivity: Connectivity,
    /// Use each [`MaskSource::id`] as the numeric image id (COCO ids such as `42`); otherwise
    /// images are numbered 1, 2, … in the order they are added.
    pub numeric_image_ids: bool,
}

/// Streams label maps into a COCO JSON file.
pub struct CocoWriter {
    path: PathBuf,
    classes: ClassMap,
    opts: CocoOptions,
    images: Vec<Value>,
    annotations: Vec<Value>,
    image_ids: std::collections::HashSet<u64>,
    finished: bool,
}

impl CocoWriter {
    /// Starts a COCO file at `path` (written in `finish`).
    pub fn begin(path: &Path, classes: &ClassMap, opts: CocoOptions) -> Result<Self> {
        super::check_class_names(classes)?;
        if opts.category_ids == CategoryIds::Coco && classes.names != ClassMap::coco().names {
            return Err(CoreError::Invalid(
                "COCO category ids need the COCO class map (background + 80 classes)".into(),
            ));
        }
        Ok(CocoWriter {
            path: path.to_path_buf(),
            classes: classes.clone(),
            opts,
            images: Vec::new(),
            annotations: Vec::new(),
            image_ids: Default::default(),
            finished: false,
        })
    }

    /// Category id of class index `c` (≥ 1).
    fn category_id(&self, c: u8) -> u32 {
        match self.opts.category_ids {
            CategoryIds::Contiguous => u32::from(c),
            CategoryIds::Coco => COCO_CATEGORY_IDS[c as usize],
        }
    }

    fn categories(&self) -> Vec<Value> {
        (1..self.classes.len())
            .map(|c| json!({"id": self.category_id(c as u8), "name": self.classes.names[c]}))
            .collect()
    }

    /// The binary masks to annotate for class `c`: the whole class, or each component.
    fn class_masks(&self, m: &MaskSource, c: u8) -> Result<Vec<Vec<u8>>> {
        match self.opts.mode {
            CocoMode::PerClass => Ok(vec![m.class_mask(c)]),
            CocoMode::PerInstance => {
                let (w, h) = (m.width as usize, m.height as usize);
                let comps = label_class(&m.labels, w, h, c, self.opts.connectivity)?;
                Ok((1..=comps.count() as u32)
                    .map(|k| comps.mask_of(k))
                    .collect())
            }
        }
    }
}

impl MaskWriter for CocoWriter {
    fn add(&mut self, m: &MaskSource) -> Result<()> {
        if self.finished {
            return Err(CoreError::Invalid(format!(
                "{}: writer already finished",
                self.path.display()
            )));
        }
        let present = m.present_classes(&self.classes)?;
        let image_id = if self.opts.numeric_image_ids {
            m.id.parse::<u64>()
                .map_err(|_| CoreError::Invalid(format!("{}: not a numeric image id", m.id)))?
        } else {
            self.image_ids.len() as u64 + 1
        };
        if self.image_ids.contains(&image_id) {
            return Err(CoreError::Invalid(format!(
                "{}: image id {image_id} added twice",
                m.id
            )));
        }
        let (w, h) = (m.width as usize, m.height as usize);
        let mut anns = Vec::new();
        for c in present {
            for mask in self.class_masks(m, c)? {
                let counts = coco_rle::uncompressed_counts(&mask, h, w)?;
                let segmentation = json!({"size": [m.height, m.width], "counts": coco_rle::counts_to_string(&counts)});
                let category_id = self.category_id(c);
                anns.push(match self.opts.output {
                    CocoOutput::Results => json!({
                        "image_id": image_id,
                        "category_id": category_id,
                        "segmentation": segmentation,
                        "score": m.score(c),
                    }),
                    CocoOutput::Dataset => json!({
                        "id": self.annotations.len() + anns.len() + 1,
                        "image_id": image_id,
                        "category_id": category_id,
                        "segmentation": segmentation,
                        "area": coco_rle::area_counts(&counts),
                        "bbox": coco_rle::bbox_counts(&counts, h, w),
                        "iscrowd": u8::from(self.opts.mode == CocoMode::PerClass),
                    }),
                });
            }
        }
        self.image_ids.insert(image_id);
        self.images.push(json!({
            "id": image_id,
            "file_name": m.image,
            "width": m.width,
            "height": m.height,
        }));
        self.annotations.extend(anns);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Err(CoreError::Invalid(format!(
                "{}: writer already finished",
                self.path.display()
            )));
        }
        self.finished = true;
        let annotations = std::mem::take(&mut self.annotations);
        let doc = match self.opts.output {
            CocoOutput::Results => Value::Array(annotations),
            CocoOutput::Dataset => json!({
                "images": std::mem::take(&mut self.images),
                "categories": self.categories(),
                "annotations": annotations,
            }),
        };
        atomic::write_with(&self.path, |w| {
            serde_json::to_writer(w, &doc).map_err(std::io::Error::other)
        })
    }
}

/// Options of [`read_coco`].
#[derive(Debug, Clone, Copy)]
pub struct CocoReadOptions {
    /// Paint crowd annotations too. `true` reads ssc's per-class files back; §1.4 ground truth
    /// construction uses `false` (crowd regions stay background).
    pub include_crowd: bool,
}

impl Default for CocoReadOptions {
    fn default() -> Self {
        CocoReadOptions {
            include_crowd: true,
        }
    }
}

#[derive(Deserialize)]
struct DatasetIn {
    images: Vec<ImageIn>,
    categories: Vec<CategoryIn>,
    #[serde(default)]
    annotations: Vec<AnnotationIn>,
}

#[derive(Deserialize)]
struct ImageIn {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct CategoryIn {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct AnnotationIn {
    #[serde(default)]
    id: Option<u64>,
    image_id: u64,
    category_id: u64,
    segmentation: Value,
    #[serde(default)]
    iscrowd: u8,
}

/// Reads a COCO dataset JSON with RLE segmentations (compressed or uncompressed) into label
/// maps, one per image in file order. Categories are matched to `classes` by name. As in §1.4,
/// annotations are painted in file order, so later ones overwrite earlier ones. Polygon
/// segmentations are rejected with an error (convert them to RLE first).
pub fn read_coco(
    path: &Path,
    classes: &ClassMap,
    opts: CocoReadOptions,
) -> Result<Vec<MaskSource>> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let doc: DatasetIn = serde_json::from_str(&text)
        .map_err(|e| CoreError::format(path, format!("not a COCO dataset JSON: {e}")))?;
    let mut category = std::collections::HashMap::new();
    for c in &doc.categories {
        let idx = classes.index_of(&c.name).ok_or_else(|| {
            CoreError::format(
                path,
                format!("category {:?} is not in the class map", c.name),
            )
        })?;
        category.insert(c.id, idx as u8);
    }
    let mut slot = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(doc.images.len());
    for im in &doc.images {
        let n = im.width as usize * im.height as usize;
        let m = MaskSource::new(stem_of(&im.file_name), im.width, im.height, vec![0; n])
            .map_err(|e| CoreError::format(path, e.to_string()))?
            .with_image(im.file_name.clone());
        slot.insert(im.id, out.len());
        out.push(m);
    }
    for (i, a) in doc.annotations.iter().enumerate() {
        if a.iscrowd != 0 && !opts.include_crowd {
            continue;
        }
        let name =
            a.id.map_or(format!("annotation #{i}"), |id| format!("annotation {id}"));
        let bad = |m: String| CoreError::format(path, format!("{name}: {m}"));
        let &s = slot
            .get(&a.image_id)
            .ok_or_else(|| bad(format!("unknown image id {}", a.image_id)))?;
        let &c = category
            .get(&a.category_id)
            .ok_or_else(|| bad(format!("unknown category id {}", a.category_id)))?;
        let target = &mut out[s];
        let (h, w) = (target.height as usize, target.width as usize);
        let mask = decode_segmentation(&a.segmentation, h, w).map_err(|e| bad(e.to_string()))?;
        for (v, &set) in target.labels.iter_mut().zip(&mask) {
            if set != 0 {
                *v = c;
            }
        }
    }
    Ok(out)
}

/// Row-major mask of an RLE segmentation value that must be `h × w`.
fn decode_segmentation(seg: &Value, h: usize, w: usize) -> Result<Vec<u8>> {
    let size: Option<[usize; 2]> = seg
        .get("size")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let Some([sh, sw]) = size else {
        return Err(CoreError::Invalid(match seg {
            Value::Array(_) => "polygon segmentations are not supported (convert to RLE)".into(),
            _ => "segmentation is not an RLE object with a size".into(),
        }));
    };
    if (sh, sw) != (h, w) {
        return Err(CoreError::Invalid(format!(
            "RLE size {sh}x{sw} differs from the image {h}x{w}"
        )));
    }
    let counts = match seg.get("counts") {
        Some(Value::String(s)) => coco_rle::counts_from_string(s)?,
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| CoreError::Invalid("uncompressed counts must be integers".into()))?,
        _ => return Err(CoreError::Invalid("RLE without counts".into())),
    };
    coco_rle::decode_counts(&counts, h, w)
}
