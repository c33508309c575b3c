//! Class maps: names, colours and the ignore value (§1.2, §1.4).

use serde::{Deserialize, Serialize};

/// The label value meaning "ignore / void" in every mask ssc reads or writes.
pub const IGNORE: u8 = 255;

/// Colour of the ignore value in official VOC PNGs.
pub const IGNORE_COLOR: [u8; 3] = [224, 224, 192];

/// The 21 PASCAL VOC class names, background first.
pub const VOC_NAMES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The 80 COCO thing classes in contiguous-index order 1…80 (§1.4).
pub const COCO_NAMES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// COCO category id of contiguous index 1…80 (index 0 of this table is background, id 0).
pub const COCO_CATEGORY_IDS: [u32; 81] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54,
    55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82,
    84, 85, 86, 87, 88, 89, 90,
];

/// The standard VOC colour of label `i` (bit-interleaving map, §1.2). Defined for 0…255.
pub fn voc_color(i: u8) -> [u8; 3] {
    let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
    let mut c = i;
    for j in 0..8 {
        r |= (c & 1) << (7 - j);
        g |= ((c >> 1) & 1) << (7 - j);
        b |= ((c >> 2) & 1) << (7 - j);
        c >>= 3;
    }
    [r, g, b]
}

/// The full 256-entry VOC palette, with entry 255 = the official void colour.
pub fn voc_palette() -> [[u8; 3]; 256] {
    let mut p = [[0u8; 3]; 256];
    for (i, c) in p.iter_mut().enumerate() {
        *c = voc_color(i as u8);
    }
    p[IGNORE as usize] = IGNORE_COLOR;
    p
}

/// A set of classes: index 0 is background, names and colours per index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassMap {
    /// Class names, index = label value.
    pub names: Vec<String>,
    /// RGB colour per class, same length as `names`.
    pub colors: Vec<[u8; 3]>,
}

impl ClassMap {
    /// PASCAL VOC: 21 classes with the VOC palette.
    pub fn voc() -> Self {
        Self::custom(VOC_NAMES.iter().map(|s| s.to_string()).collect())
    }

    /// COCO-2014 WSSS: 81 classes (background + 80), VOC palette colours.
    pub fn coco() -> Self {
        let names = std::iter::once("background")
            .chain(COCO_NAMES)
            .map(str::to_string)
            .collect();
        Self::custom(names)
    }

    /// A custom list (index 0 should be background); colours from the VOC palette.
    /// At most 255 classes, because 255 is the ignore value.
    pub fn custom(names: Vec<String>) -> Self {
        assert!(names.len() <= 255, "at most 255 classes (255 = ignore)");
        let colors = (0..names.len()).map(|i| voc_color(i as u8)).collect();
        ClassMap { names, colors }
    }

    /// Number of classes including background.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `true` when there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Number of foreground classes (what the classifier predicts).
    pub fn num_foreground(&self) -> usize {
        self.names.len().saturating_sub(1)
    }

    /// Index of a class by name (exact match, then case-insensitive).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .or_else(|| self.names.iter().position(|n| n.eq_ignore_ascii_case(name)))
    }

    /// The 256-entry palette for writing indexed PNGs: class colours, 255 = void colour, the
    /// rest from the VOC map.
    pub fn palette(&self) -> [[u8; 3]; 256] {
        let mut p = voc_palette();
        for (i, c) in self.colors.iter().enumerate() {
            p[i] = *c;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_palette_matches_spec_table() {
        let expect: [(u8, [u8; 3]); 7] = [
            (0, [0, 0, 0]),
            (1, [128, 0, 0]),
            (7, [128, 128, 128]),
            (12, [64, 0, 128]),
            (15, [192, 128, 128]),
            (18, [0, 192, 0]),
            (20, [0, 64, 128]),
        ];
        for (i, c) in expect {
            assert_eq!(voc_color(i), c, "class {i}");
        }
        assert_eq!(voc_palette()[255], IGNORE_COLOR);
    }

    #[test]
    fn maps() {
        assert_eq!(ClassMap::voc().len(), 21);
        let coco = ClassMap::coco();
        assert_eq!(coco.len(), 81);
        assert_eq!(coco.index_of("toothbrush"), Some(80));
        assert_eq!(COCO_CATEGORY_IDS[80], 90);
        assert_eq!(COCO_CATEGORY_IDS[12], 13);
        assert_eq!(ClassMap::voc().index_of("Person"), Some(15));
    }
}
