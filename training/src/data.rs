//! What the trainers' data pipelines share (§2.9, §4.6, §6.2): the epoch order and the
//! per-sample random streams, the reference's random crop with fill, normalisation with a
//! random flip, and the loader that prepares batches on a background thread.
//!
//! Every random draw of a sample comes from the stream of (seed, epoch, index), so a batch is
//! the same whatever the thread count, and a resumed run sees exactly the data of an
//! uninterrupted one.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use image::RgbImage;
use rayon::prelude::*;
use ssc_core::normalize::{hflip_chw, normalize_chw};
use ssc_core::rng::Rng;

use crate::error::{Result, TrainError};

/// The random stream of sample `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> Rng {
    let epoch_seed = Rng::fork(seed, 0x5EED_0000 + epoch as u64).next_u64();
    Rng::fork(epoch_seed, index as u64)
}

/// The shuffled order of `n` samples in `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::fork(seed, 0x0DE7_0000 + epoch as u64).shuffle(&mut order);
    order
}

/// The ImageNet-normalised `3×H×W` planes of `img`, flipped horizontally with probability
/// `p` together with `planes` (each `H×W`, e.g. labels or superpixels).
pub fn normalise_flip<T: Copy>(
    img: &RgbImage,
    planes: &mut [Vec<T>],
    p: f64,
    rng: &mut Rng,
) -> Result<Vec<f32>> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let mut chw = normalize_chw(img);
    if rng.bernoulli(p) {
        chw = hflip_chw(&chw, 3, h, w)?;
        for plane in planes {
            *plane = hflip_chw(plane, 1, h, w)?;
        }
    }
    Ok(chw)
}

/// Where the reference's `random_crop` puts an `h×w` image in a `crop×crop` canvas: a side
/// longer than the crop is cut at a random offset, a shorter one is placed at a random offset
/// and the rest of the canvas filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Source height and width.
    size: (usize, usize),
    /// Canvas side.
    crop: usize,
    /// `(source start, canvas start, length)` along x.
    x: (usize, usize, usize),
    /// The same along y.
    y: (usize, usize, usize),
}

impl CropBox {
    /// Draws the box; the width first, as the reference does.
    pub fn random(h: usize, w: usize, crop: usize, rng: &mut Rng) -> Self {
        let x = crop_axis(w, crop, rng);
        let y = crop_axis(h, crop, rng);
        CropBox {
            size: (h, w),
            crop,
            x,
            y,
        }
    }

    /// Cuts `planes` planes of a `planes×h×w` buffer into a `planes×crop×crop` canvas filled
    /// with `fill`.
    pub fn apply<T: Copy>(&self, src: &[T], planes: usize, fill: T) -> Vec<T> {
        let ((h, w), c) = (self.size, self.crop);
        let ((sx, cx, lw), (sy, cy, lh)) = (self.x, self.y);
        let mut out = vec![fill; planes * c * c];
        for p in 0..planes {
            for y in 0..lh {
                let src_row = p * h * w + (sy + y) * w + sx;
                let dst_row = p * c * c + (cy + y) * c + cx;
                out[dst_row..dst_row + lw].copy_from_slice(&src[src_row..src_row + lw]);
            }
        }
        out
    }
}

/// One axis of the reference's `random_crop`: `(source start, canvas start, length)`.
fn crop_axis(side: usize, crop: usize, rng: &mut Rng) -> (usize, usize, usize) {
    if side > crop {
        (rng.below((side - crop + 1) as u64) as usize, 0, crop)
    } else {
        (0, rng.below((crop - side + 1) as u64) as usize, side)
    }
}

/// A training set that yields augmented samples by index; [`load_epoch`] turns it into the
/// batches of an epoch.
pub trait SampleSet: Send + Sync + 'static {
    /// One augmented sample.
    type Sample: Send;
    /// Samples collated for one step.
    type Batch: Send + 'static;

    /// Images the epoch order shuffles.
    fn images(&self) -> usize;

    /// Images trained per epoch: the first of the epoch's order (all by default).
    fn per_epoch(&self) -> usize {
        self.images()
    }

    /// Batches the loader prepares ahead of the training step.
    fn prefetch(&self) -> usize;

    /// Image `i` of `epoch`, augmented with its own random stream ([`sample_rng`]).
    fn sample(&self, i: usize, seed: u64, epoch: usize) -> Result<Self::Sample>;

    /// Batch number `index` of an epoch from its samples, in order.
    fn collate(&self, index: usize, samples: Vec<Self::Sample>) -> Self::Batch;
}

/// Full batches per epoch of `set` (the last incomplete batch is dropped); none is an error
/// naming the sizes.
pub fn batches_per_epoch<S: SampleSet>(set: &S, batch_size: usize) -> Result<usize> {
    match set.per_epoch() / batch_size.max(1) {
        0 => Err(TrainError::Config(format!(
            "{} images make no full batch of {batch_size}",
            set.per_epoch()
        ))),
        n => Ok(n),
    }
}

/// Batch `b` of `epoch` under `order` (samples loaded in parallel).
pub fn batch<S: SampleSet>(
    set: &S,
    order: &[usize],
    b: usize,
    bs: usize,
    seed: u64,
    epoch: usize,
) -> Result<S::Batch> {
    let idx = order.get(b * bs..(b + 1) * bs).ok_or_else(|| {
        TrainError::Config(format!("batch {b} of {bs} is past the end of the epoch"))
    })?;
    let samples = idx
        .par_iter()
        .map(|&i| set.sample(i, seed, epoch))
        .collect::<Result<Vec<_>>>()?;
    Ok(set.collate(b, samples))
}

/// Loads the batches `from..` of `epoch` on a background thread, at most `prefetch` ahead.
pub fn load_epoch<S: SampleSet>(
    set: Arc<S>,
    seed: u64,
    epoch: usize,
    batch_size: usize,
    from: usize,
) -> Receiver<Result<S::Batch>> {
    let (tx, rx) = sync_channel(set.prefetch().max(1));
    std::thread::spawn(move || {
        let order = epoch_order(set.images(), seed, epoch);
        for b in from..set.per_epoch() / batch_size.max(1) {
            let batch = batch(&*set, &order, b, batch_size, seed, epoch);
            let stop = batch.is_err();
            if tx.send(batch).is_err() || stop {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `w×h` image and a label map whose right half is class 1 and left half background.
    pub(crate) fn half_and_half(w: u32, h: u32) -> (RgbImage, Vec<u8>) {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 9) as u8, (y * 7) as u8, 90]));
        let lab = (0..h)
            .flat_map(|_| (0..w).map(move |x| (x >= w / 2) as u8))
            .collect();
        (img, lab)
    }

    #[test]
    fn epoch_orders_are_permutations_that_differ() {
        let a = epoch_order(50, 1, 0);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_eq!(a, epoch_order(50, 1, 0));
    }

    #[test]
    fn crop_box_cuts_large_sides_and_pads_small_ones() {
        // 2 planes of 3×6: wider than the 4-crop, shorter than it.
        let src: Vec<u8> = (0..36).collect();
        let b = CropBox::random(3, 6, 4, &mut Rng::new(5));
        let out = b.apply(&src, 2, 99);
        assert_eq!(out.len(), 2 * 16);
        let (sx, cx, lw) = b.x;
        let (sy, cy, lh) = b.y;
        assert_eq!((cx, lw, sy, lh), (0, 4, 0, 3));
        assert!(sx <= 2 && cy <= 1);
        for p in 0..2 {
            for y in 0..4 {
                for x in 0..4 {
                    let v = out[p * 16 + y * 4 + x];
                    if y < cy || y >= cy + lh {
                        assert_eq!(v, 99, "fill outside the image");
                    } else {
                        assert_eq!(v as usize, p * 18 + (y - cy) * 6 + sx + x);
                    }
                }
            }
        }
    }
}
