//! Learning-rate schedules (§2.8): the per-iteration poly decay of IRN's `PolyOptimizer`.

/// Poly decay factor before update `t` of `total`: `(1 − t/T)^power`, clamped to 0 once
/// `t ≥ T` (the reference would raise a negative base to a fractional power there).
pub fn poly_factor(t: u64, total: u64, power: f64) -> f64 {
    if total == 0 || t >= total {
        return 0.0;
    }
    (1.0 - t as f64 / total as f64).powf(power)
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
}
