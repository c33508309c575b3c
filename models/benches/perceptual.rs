//! Perceptual loss (§2.5) forward + backward to the reconstruction: ssc's frozen VGG (im2col
//! conv op that skips the weight gradient) against the same network on candle's built-in
//! conv, whose backward always computes the unused weight gradients. Same weights, same
//! inputs, losses and input gradients compared first.
//!
//! Run: `cargo bench -p ssc-models --bench perceptual`.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use ssc_models::config::{PerceptualConfig, VggConfig};
use ssc_models::init::SeededInit;
use ssc_models::ops::pool::max_pool2d;
use ssc_models::vgg::{PerceptualLoss, Vgg};

/// The baseline: VGG features on candle's built-in conv, up to the largest tap.
fn baseline_loss(
    varmap: &VarMap,
    cfg: &VggConfig,
    pc: &PerceptualConfig,
    x: &Tensor,
    t: &Tensor,
) -> Result<Tensor> {
    let data = varmap.data().lock().unwrap();
    let feats = |input: &Tensor| -> Result<Vec<Tensor>> {
        let last = *pc.taps.iter().max().unwrap();
        let mut outs = Vec::new();
        let mut h = input.clone();
        let mut i = 0;
        'outer: for &n in &cfg.convs {
            for _ in 0..n {
                let w = data[&format!("features.{i}.weight")].as_tensor().detach();
                let b = data[&format!("features.{i}.bias")].as_tensor().detach();
                h = h
                    .conv2d(&w, 1, 1, 1, 1)?
                    .broadcast_add(&b.reshape((1, (), 1, 1))?)?;
                outs.push(h.clone());
                h = h.relu()?;
                outs.push(h.clone());
                i += 2;
                if i > last {
                    break 'outer;
                }
            }
            h = max_pool2d(&h, 2, 2, 0, false)?;
            outs.push(h.clone());
            i += 1;
        }
        Ok(pc.taps.iter().map(|&k| outs[k].clone()).collect())
    };
    let (fx, ft) = (feats(x)?, feats(&t.detach())?);
    let mut loss = Tensor::zeros((), x.dtype(), x.device())?;
    for ((a, b), &w) in fx.iter().zip(&ft).zip(&pc.weights) {
        loss = (loss + ((a - b)?.abs()?.mean_all()? * w)?)?;
    }
    Ok(loss)
}

fn time<F: FnMut() -> Result<(f32, Tensor)>>(iters: usize, mut f: F) -> Result<(f64, f32, Tensor)> {
    let mut out = f()?; // warm-up
    let start = Instant::now();
    for _ in 0..iters {
        out = f()?;
    }
    Ok((start.elapsed().as_secs_f64() / iters as f64, out.0, out.1))
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let (size, iters) = (96, 3);
    let cfg = VggConfig::vgg19();
    let varmap = VarMap::new();
    let vgg = Vgg::new(&cfg, SeededInit::var_builder(&varmap, 1, DType::F32, &dev))?;
    let pc = PerceptualConfig::code(&cfg);
    let loss = PerceptualLoss::new(vgg, pc.clone())?;
    let x = Var::from_tensor(&Tensor::rand(-1f32, 1.0, (1, 3, size, size), &dev)?)?;
    let t = Tensor::randn(0f32, 1.0, (1, 3, size, size), &dev)?;
    let ours = || -> Result<(f32, Tensor)> {
        let l = loss.forward(x.as_tensor(), &t)?;
        let g = l.backward()?;
        Ok((l.to_scalar()?, g.get(x.as_tensor()).unwrap().clone()))
    };
    let base = || -> Result<(f32, Tensor)> {
        let l = baseline_loss(&varmap, &cfg, &pc, x.as_tensor(), &t)?;
        let g = l.backward()?;
        Ok((l.to_scalar()?, g.get(x.as_tensor()).unwrap().clone()))
    };
    let (t_ours, l_ours, g_ours) = time(iters, ours)?;
    let (t_base, l_base, g_base) = time(iters, base)?;
    let gdiff = (&g_ours - &g_base)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("perceptual loss fwd+bwd, VGG-19 full width, 1x3x{size}x{size}, {iters} iterations");
    println!("  loss ours {l_ours:.6} baseline {l_base:.6}; max |grad diff| {gdiff:.2e}");
    println!("  ssc (frozen im2col conv):   {:8.1} ms", t_ours * 1e3);
    println!("  baseline (candle conv2d):   {:8.1} ms", t_base * 1e3);
    println!("  speed-up: {:.2}x", t_base / t_ours);
    Ok(())
}
