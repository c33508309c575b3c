//! Finite-difference gradient checking (§10.2): every hand-written op is verified against
//! central differences in f64 before a network is built on it. Other modules reuse this in
//! their tests.

use candle_core::{DType, Device, Result, Tensor};
use ssc_core::rng::Rng;

/// Outcome of one gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// Largest |analytic − numeric| over all checked elements.
    pub max_abs_err: f64,
    /// Largest |numeric| seen (scale of the gradient, for relative judgements).
    pub max_abs_grad: f64,
    /// Number of input elements that were perturbed.
    pub checked: usize,
}

impl GradCheck {
    /// `true` when `max_abs_err ≤ atol + rtol·max_abs_grad`.
    pub fn passes(&self, atol: f64, rtol: f64) -> bool {
        self.max_abs_err <= atol + rtol * self.max_abs_grad
    }
}

/// A deterministic f64 tensor with values uniform in [−1, 1).
pub fn random_f64(shape: &[usize], seed: u64, dev: &Device) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    Tensor::from_vec(v, shape, dev)
}

/// Checks the gradient of `f` at the f64 tensor `x` (every element is perturbed; keep it small).
///
/// The scalar objective is `Σ f(x)·U` with a fixed random `U`, so every output element and the
/// whole Jacobian-vector product are exercised. `eps` is the central-difference step.
pub fn check<F>(f: F, x: &Tensor, eps: f64, seed: u64) -> Result<GradCheck>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let x = x.to_dtype(DType::F64)?;
    let dev = x.device().clone();
    let var = candle_core::Var::from_tensor(&x)?;
    let y = f(var.as_tensor())?;
    let u = random_f64(y.dims(), seed ^ 0x5eed, &dev)?;
    let objective = |t: &Tensor| -> Result<f64> { f(t)?.mul(&u)?.sum_all()?.to_scalar::<f64>() };
    let grads = y.mul(&u)?.sum_all()?.backward()?;
    let analytic: Vec<f64> = match grads.get(var.as_tensor()) {
        Some(g) => g.flatten_all()?.to_vec1()?,
        None => vec![0.0; x.elem_count()],
    };
    let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let mut max_abs_err = 0f64;
    let mut max_abs_grad = 0f64;
    for i in 0..base.len() {
        let mut plus = base.clone();
        plus[i] += eps;
        let mut minus = base.clone();
        minus[i] -= eps;
        let fp = objective(&Tensor::from_vec(plus, x.dims(), &dev)?)?;
        let fm = objective(&Tensor::from_vec(minus, x.dims(), &dev)?)?;
        let numeric = (fp - fm) / (2.0 * eps);
        max_abs_err = max_abs_err.max((numeric - analytic[i]).abs());
        max_abs_grad = max_abs_grad.max(numeric.abs());
    }
    Ok(GradCheck {
        max_abs_err,
        max_abs_grad,
        checked: base.len(),
    })
}
