//! Deterministic parameter initialisation for training from scratch (§2.4, §4.2, §6.1, §10.5).
//!
//! Models take their parameters from a candle `VarBuilder` and pass PyTorch's default
//! initialisation as the `Init` hint. candle's `VarMap` would draw those from its own global
//! RNG; [`SeededInit`] draws them from `ssc_core::rng::Rng` instead, with one stream per
//! parameter name, so a seed gives the same weights on every platform and whatever order the
//! model asks for its parameters.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, Init, NonLinearity, NormalOrUniform};
use candle_nn::{VarBuilder, VarMap};
use ssc_core::rng::Rng;

/// PyTorch's default for conv weights: Kaiming-uniform with a = √5, i.e.
/// U(−1/√fan_in, 1/√fan_in); fan_in = `shape[1]·k·k` (for a transposed conv, whose weight is
/// in×out×k×k, that is out·k·k, exactly as PyTorch computes it).
pub const PYTORCH_CONV_WEIGHT: Init = Init::Kaiming {
    dist: NormalOrUniform::Uniform,
    fan: FanInOut::FanIn,
    // gain √(2/(1+a²)) with a = √5
    non_linearity: NonLinearity::ExplicitGain(0.577_350_269_189_625_8),
};

/// PyTorch's default bias init for a conv whose weight has `shape`:
/// U(−1/√fan_in, 1/√fan_in) with the weight's fan_in.
pub fn pytorch_conv_bias(weight_shape: &[usize]) -> Init {
    let fan_in = FanInOut::FanIn.for_shape(&Shape::from(weight_shape)).max(1);
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A `VarBuilder` backend that creates missing parameters as trainable `Var`s in a `VarMap`,
/// drawn from `Rng::fork(seed, hash(name))` according to the hint.
pub struct SeededInit {
    varmap: VarMap,
    seed: u64,
}

impl SeededInit {
    /// A backend storing into `varmap` (existing entries are reused, shapes checked).
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        SeededInit { varmap, seed }
    }

    /// A `VarBuilder` over this backend.
    pub fn var_builder(
        varmap: &VarMap,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(SeededInit::new(varmap.clone(), seed)),
            dtype,
            dev.clone(),
        )
    }
}

/// FNV-1a: a stable hash of a parameter name (std's hasher is not stable across versions).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Values for `shape` drawn per `init` from `rng` (f64, row-major).
pub fn sample(init: Init, shape: &Shape, rng: &mut Rng) -> Vec<f64> {
    let n = shape.elem_count();
    match init {
        Init::Const(c) => vec![c; n],
        Init::Uniform { lo, up } => (0..n).map(|_| rng.uniform(lo, up)).collect(),
        Init::Randn { mean, stdev } => (0..n).map(|_| mean + stdev * rng.normal()).collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    (0..n).map(|_| rng.uniform(-b, b)).collect()
                }
                NormalOrUniform::Normal => (0..n).map(|_| std * rng.normal()).collect(),
            }
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().map_err(|_| {
            candle_core::Error::Msg("SeededInit: parameter map lock poisoned".into())
        })?;
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = Rng::fork(self.seed, name_hash(name));
        let values = sample(h, &s, &mut rng);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        match self.varmap.data().lock() {
            Ok(d) => match d.get(name) {
                Some(v) => Ok(v.as_tensor().clone()),
                None => candle_core::bail!("SeededInit: `{name}` needs a shape to be created"),
            },
            Err(_) => candle_core::bail!("SeededInit: parameter map lock poisoned"),
        }
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        // Every parameter can be created on demand.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_name_and_pytorch_bounds() {
        let dev = Device::Cpu;
        let a = VarMap::new();
        let b = VarMap::new();
        let va = SeededInit::var_builder(&a, 3, DType::F32, &dev);
        let vb = SeededInit::var_builder(&b, 3, DType::F32, &dev);
        // Different request order, same values per name.
        let w1 = va
            .get_with_hints((4, 2, 3, 3), "w1", PYTORCH_CONV_WEIGHT)
            .unwrap();
        let _ = va
            .get_with_hints((5,), "b", pytorch_conv_bias(&[4, 2, 3, 3]))
            .unwrap();
        let _ = vb
            .get_with_hints((5,), "b", pytorch_conv_bias(&[4, 2, 3, 3]))
            .unwrap();
        let w2 = vb
            .get_with_hints((4, 2, 3, 3), "w1", PYTORCH_CONV_WEIGHT)
            .unwrap();
        let d = (w1 - &w2).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
        // Kaiming-uniform a=√5 bound is 1/√fan_in = 1/√18; the sample should come close to it.
        let m = w2
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let bound = 1.0 / 18f32.sqrt();
        assert!(m <= bound && m > 0.8 * bound, "max {m}, bound {bound}");
        assert_eq!(a.all_vars().len(), 2);
        // A second request returns the stored Var, not a fresh draw.
        let again = va
            .get_with_hints((4, 2, 3, 3), "w1", Init::Const(0.0))
            .unwrap();
        assert!(
            again
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }
}
