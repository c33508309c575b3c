//! Unary energies as pydensecrf's `utils` builds them (§4.1.1, §6.6). Both return
//! label-major arrays (`n_labels × n_pixels`), the layout [`super::DenseCrf::set_unary_energy`]
//! takes.

use crate::{CoreError, Result};

/// Energies from hard labels (`unary_from_labels`): `−ln gt_prob` at the pixel's label and
/// `−ln((1 − gt_prob)/(n_labels − 1))` elsewhere.
///
/// With `zero_unsure`, labels are 1-based and 0 means "unsure": such pixels get the uniform
/// energy `−ln(1/n_labels)` for every label. Energies are computed in double and stored as
/// float, as numpy does there.
///
/// # Errors
/// `gt_prob` not in (0, 1), fewer than 2 labels, or a label out of range.
pub fn unary_from_labels(
    labels: &[u8],
    n_labels: usize,
    gt_prob: f64,
    zero_unsure: bool,
) -> Result<Vec<f32>> {
    if !(gt_prob > 0.0 && gt_prob < 1.0) {
        return Err(CoreError::Invalid(format!(
            "unary_from_labels: gt_prob {gt_prob} is not in (0, 1)"
        )));
    }
    if n_labels < 2 {
        return Err(CoreError::Invalid(format!(
            "unary_from_labels: needs at least 2 labels, got {n_labels}"
        )));
    }
    let n_energy = (-((1.0 - gt_prob) / (n_labels - 1) as f64).ln()) as f32;
    let p_energy = (-gt_prob.ln()) as f32;
    let unsure = (-(1.0 / n_labels as f64).ln()) as f32;
    let n = labels.len();
    let mut u = vec![n_energy; n_labels * n];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        match (zero_unsure, l) {
            (true, 0) => (0..n_labels).for_each(|k| u[k * n + i] = unsure),
            (true, l) if l <= n_labels => u[(l - 1) * n + i] = p_energy,
            (false, l) if l < n_labels => u[l * n + i] = p_energy,
            _ => {
                return Err(CoreError::Invalid(format!(
                    "unary_from_labels: label {l} at pixel {i} is out of range for {n_labels} labels"
                )));
            }
        }
    }
    Ok(u)
}

/// Energies from probabilities (`unary_from_softmax`): `−ln(clamp(p, clip, 1))`, elementwise,
/// in float. The layout of `probs` is kept (pass label-major `n_labels × n_pixels`).
///
/// # Errors
/// A probability is NaN, or `clip` is not in (0, 1].
pub fn unary_from_softmax(probs: &[f32], clip: f32) -> Result<Vec<f32>> {
    if !(clip > 0.0 && clip <= 1.0) {
        return Err(CoreError::Invalid(format!(
            "unary_from_softmax: clip {clip} is not in (0, 1]"
        )));
    }
    if let Some(i) = probs.iter().position(|p| p.is_nan()) {
        return Err(CoreError::Invalid(format!(
            "unary_from_softmax: probability {i} is NaN"
        )));
    }
    Ok(probs.iter().map(|&p| -p.clamp(clip, 1.0).ln()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_energies() {
        let u = unary_from_labels(&[0, 2], 3, 0.7, false).unwrap();
        let p = -(0.7f64.ln()) as f32;
        let q = -((0.3f64 / 2.0).ln()) as f32;
        assert_eq!(u, vec![p, q, q, q, q, p]);
        let u = unary_from_labels(&[0, 3], 3, 0.7, true).unwrap();
        let s = -((1.0f64 / 3.0).ln()) as f32;
        assert_eq!(u, vec![s, q, s, q, s, p]);
        assert!(unary_from_labels(&[3], 3, 0.7, false).is_err());
        assert!(unary_from_labels(&[4], 3, 0.7, true).is_err());
        assert!(unary_from_labels(&[0], 3, 1.0, false).is_err());
        assert!(unary_from_labels(&[0], 1, 0.5, false).is_err());
    }

    #[test]
    fn softmax_energies_are_clipped() {
        let u = unary_from_softmax(&[1.0, 0.5, 0.0], 1e-5).unwrap();
        assert_eq!(u[0], 0.0);
        assert!((u[1] - std::f32::consts::LN_2).abs() < 1e-7);
        assert!((u[2] - (-(1e-5f32).ln())).abs() < 1e-5);
        assert!(unary_from_softmax(&[f32::NAN], 1e-5).is_err());
        assert!(unary_from_softmax(&[0.5], 0.0).is_err());
    }
}
