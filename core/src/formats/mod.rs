//! Annotation-tool formats (annotation-tool integration; masks as in §1.2 and §1.4): COCO RLE
//! and COCO JSON, Label Studio brush RLE and tasks, CVAT "Segmentation mask 1.1" zips.

pub mod brush;
pub mod coco_rle;
