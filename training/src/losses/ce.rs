//! Per-pixel cross entropy with ignore label and per-pixel weights (§6.3 `L_ce`, §10.2).

use candle_core::{DType, Result, Tensor};

/// The label that contributes nothing to the loss.
pub const IGNORE: u8 = 255;

/// `mean( CE(logits, label) · weight )` over **all** `N·H·W` pixels, ignored ones included
/// (they contribute 0), as BECO's `L_ce` averages (§6.3). `weight` is the confidence mask
/// of §4.8 (or 1); pixels labelled [`IGNORE`] get weight 0 whatever `weight` says.
///
/// # Shapes
/// - `logits`: `[N, K, H, W]`
/// - `labels`: `N·H·W` class ids (`< K` or [`IGNORE`]), row-major
/// - `weight`: `N·H·W` per-pixel weights, or `None` for 1
/// - returns a scalar
///
/// # Errors
/// A label that is neither a class id nor [`IGNORE`], or buffers of the wrong length.
pub fn weighted_pixel_ce(logits: &Tensor, labels: &[u8], weight: Option<&[f32]>) -> Result<Tensor> {
    let (n, k, h, w) = logits.dims4()?;
    let len = n * h * w;
    if labels.len() != len || weight.is_some_and(|wt| wt.len() != len) {
        candle_core::bail!(
            "pixel CE: {} labels / {:?} weights for {len} pixels",
            labels.len(),
            weight.map(<[f32]>::len)
        );
    }
    if let Some(&bad) = labels.iter().find(|&&l| l != IGNORE && l as usize >= k) {
        candle_core::bail!("pixel CE: label {bad} with {k} classes (255 = ignore)");
    }
    let idx: Vec<u32> = labels
        .iter()
        .map(|&l| if l == IGNORE { 0 } else { l as u32 })
        .collect();
    let wts: Vec<f32> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if l == IGNORE {
                0.0
            } else {
                weight.map_or(1.0, |wt| wt[i])
            }
        })
        .collect();
    let dev = logits.device();
    let idx = Tensor::from_vec(idx, (n, 1, h, w), dev)?;
    let wts = Tensor::from_vec(wts, (n, 1, h, w), dev)?.to_dtype(logits.dtype())?;
    let logp = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = logp.gather(&idx, 1)?;
    (picked * wts)?
        .sum_all()?
        .to_dtype(DType::F32)?
        .affine(-1.0 / len as f64, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        // N=1, K=3, H=1, W=3
        Tensor::from_vec(
            vec![2.0f32, 0.0, -1.0, 0.5, 1.0, 0.0, -1.0, 0.3, 3.0],
            (1, 3, 1, 3),
            &Device::Cpu,
        )
        .unwrap()
    }

    fn ce(z: [f32; 3], y: usize) -> f64 {
        let m = z.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        lse - z[y] as f64
    }

    #[test]
    fn matches_hand_computed_values_with_ignore_and_weights() {
        let x = logits();
        let per = [
            ce([2.0, 0.5, -1.0], 0),
            ce([0.0, 1.0, 0.3], 2),
            ce([-1.0, 0.0, 3.0], 1),
        ];
        let all = weighted_pixel_ce(&x, &[0, 2, 1], None).unwrap();
        let want = per.iter().sum::<f64>() / 3.0;
        assert!((all.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
        // Ignored pixel: contributes 0 but still counts in the mean.
        let ign = weighted_pixel_ce(&x, &[0, 255, 1], None).unwrap();
        let want = (per[0] + per[2]) / 3.0;
        assert!((ign.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
        // Weight 0 is the same as ignoring; weight 0.5 halves the term.
        let wt = weighted_pixel_ce(&x, &[0, 2, 1], Some(&[1.0, 0.0, 0.5])).unwrap();
        let want = (per[0] + 0.5 * per[2]) / 3.0;
        assert!((wt.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn gradient_skips_zero_weight_pixels() {
        let v = candle_core::Var::from_tensor(&logits()).unwrap();
        let l = weighted_pixel_ce(v.as_tensor(), &[0, 2, 1], Some(&[1.0, 0.0, 1.0])).unwrap();
        let g = l.backward().unwrap();
        let g = g.get(v.as_tensor()).unwrap().flatten_all().unwrap();
        let g = g.to_vec1::<f32>().unwrap();
        // Column 1 (the zero-weight pixel) of every class has no gradient.
        for c in 0..3 {
            assert_eq!(g[c * 3 + 1], 0.0);
            assert_ne!(g[c * 3], 0.0);
        }
    }

    #[test]
    fn bad_label_is_an_error() {
        assert!(weighted_pixel_ce(&logits(), &[0, 3, 1], None).is_err());
        assert!(weighted_pixel_ce(&logits(), &[0, 1], None).is_err());
    }
}
