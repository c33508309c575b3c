//! Learning-rate schedules (§2.8): the per-iteration poly decay of IRN's `PolyOptimizer`.

/// Poly decay factor before update `t` of `total`: `(1 − t/T)^power`, clamped to 0 once
/// `t ≥ T` (the reference would raise a negative base to a fractional power there).
pub fn poly_factor(t: u64, total: u64, power: f64) -> f64 {
    if total == 0 || t >= total {
        return 0.0;
    }
    (1.0 - t as f64 / total as f64).powf(power)
}

/// [`poly_factor`] scaled by a linear warm-up over the first `warmup` updates:
/// `min(1, (t + 1)/warmup) · (1 − t/T)^power`. `warmup = 0` is plain poly.
pub fn warmup_poly_factor(t: u64, total: u64, power: f64, warmup: u64) -> f64 {
    let ramp = if warmup == 0 {
        1.0
    } else {
        ((t + 1) as f64 / warmup as f64).min(1.0)
    };
    ramp * poly_factor(t, total, power)
}

/// Poly learning rate `lr0 · (1 − t/T)^power`.
pub fn poly_lr(lr0: f64, t: u64, total: u64, power: f64) -> f64 {
    lr0 * poly_factor(t, total, power)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_values() {
        assert_eq!(poly_lr(0.1, 0, 17_630, 0.9), 0.1);
        // half way: 0.5^0.9
        let half = poly_lr(1.0, 50, 100, 0.9);
        assert!((half - 0.535_886_731_268_146_3).abs() < 1e-12, "{half}");
        assert_eq!(poly_lr(1.0, 100, 100, 0.9), 0.0);
        assert_eq!(poly_lr(1.0, 150, 100, 0.9), 0.0);
        assert!(poly_factor(99, 100, 0.9) > 0.0);
    }

    #[test]
    fn warmup_ramps_linearly_then_follows_poly() {
        assert_eq!(
            warmup_poly_factor(10, 100, 0.9, 0),
            poly_factor(10, 100, 0.9)
        );
        assert!((warmup_poly_factor(0, 100, 0.9, 4) - 0.25).abs() < 1e-12);
        let t1 = warmup_poly_factor(1, 100, 0.9, 4);
        assert!((t1 - 0.5 * poly_factor(1, 100, 0.9)).abs() < 1e-12, "{t1}");
        assert_eq!(warmup_poly_factor(3, 100, 0.9, 4), poly_factor(3, 100, 0.9));
        assert_eq!(
            warmup_poly_factor(50, 100, 0.9, 4),
            poly_factor(50, 100, 0.9)
        );
        assert_eq!(warmup_poly_factor(100, 100, 0.9, 4), 0.0);
    }
}
