//! Forward + backward of a ResNet-50-shaped conv stack (224×224, batch 1, random weights):
//! ssc's im2col conv op (trainable, and frozen = no weight gradients) vs candle's built-in
//! conv2d, measured in the same run. BN is left out: it is identical in both.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var};
use ssc_models::ops::conv::{ConvParams, conv2d, conv2d_builtin};

type ConvFn = dyn Fn(&Tensor, &Tensor, ConvParams) -> Result<Tensor>;

struct Layer {
    w: Var,
    p: ConvParams,
}

fn layer(cin: usize, cout: usize, k: usize, stride: usize, dev: &Device) -> Result<Layer> {
    let std = (2.0 / (cin * k * k) as f64).sqrt();
    let w = Var::randn(0f32, std as f32, (cout, cin, k, k), dev)?;
    let p = ConvParams {
        stride,
        padding: k / 2,
        dilation: 1,
    };
    Ok(Layer { w, p })
}

/// ResNet-50: stem + bottlenecks (3, 4, 6, 3), layer strides (1, 2, 2, 2).
fn build(dev: &Device) -> Result<(Layer, Vec<Vec<Layer>>)> {
    let stem = layer(3, 64, 7, 2, dev)?;
    let mut blocks = Vec::new();
    let mut cin = 64;
    for (l, n) in [3usize, 4, 6, 3].into_iter().enumerate() {
        let planes = 64 << l;
        for i in 0..n {
            let s = if i == 0 && l > 0 { 2 } else { 1 };
            let mut b = vec![
                layer(cin, planes, 1, 1, dev)?,
                layer(planes, planes, 3, s, dev)?,
                layer(planes, 4 * planes, 1, 1, dev)?,
            ];
            if i == 0 {
                b.push(layer(cin, 4 * planes, 1, s, dev)?);
            }
            blocks.push(b);
            cin = 4 * planes;
        }
    }
    Ok((stem, blocks))
}

fn step(net: &(Layer, Vec<Vec<Layer>>), x: &Tensor, conv: &ConvFn) -> Result<()> {
    let (stem, blocks) = net;
    let mut y = conv(x, stem.w.as_tensor(), stem.p)?.relu()?;
    y = ssc_models::ops::max_pool2d(&y, 3, 2, 1, false)?;
    for b in blocks {
        let h = conv(&y, b[0].w.as_tensor(), b[0].p)?.relu()?;
        let h = conv(&h, b[1].w.as_tensor(), b[1].p)?.relu()?;
        let h = conv(&h, b[2].w.as_tensor(), b[2].p)?;
        let sc = match b.get(3) {
            Some(d) => conv(&y, d.w.as_tensor(), d.p)?,
            None => y.clone(),
        };
        y = (h + sc)?.relu()?;
    }
    let grads = y.sqr()?.mean_all()?.backward()?;
    std::hint::black_box(grads);
    Ok(())
}

fn time(net: &(Layer, Vec<Vec<Layer>>), x: &Tensor, conv: &ConvFn, reps: usize) -> Result<f64> {
    step(net, x, conv)?; // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        step(net, x, conv)?;
    }
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let net = build(&dev)?;
    let x = Var::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?
        .as_tensor()
        .detach();
    let x = x.to_dtype(DType::F32)?;
    let reps = 2;
    let ours: &ConvFn = &|x, w, p| conv2d(x, w, p, true);
    let frozen: &ConvFn = &|x, w, p| conv2d(x, w, p, false);
    let builtin: &ConvFn = &|x, w, p| conv2d_builtin(x, w, p);
    let t_builtin = time(&net, &x, builtin, reps)?;
    let t_ours = time(&net, &x, ours, reps)?;
    let t_frozen = time(&net, &x, frozen, reps)?;
    println!("ResNet-50-shaped conv stack, 1×3×224×224, forward + backward, mean of {reps}:");
    println!("  candle built-in conv2d        : {:8.3} s", t_builtin);
    println!(
        "  ssc im2col conv (all grads)   : {:8.3} s  (built-in / ours = {:.2}×)",
        t_ours,
        t_builtin / t_ours
    );
    println!(
        "  ssc im2col conv (frozen: input grads only): {:8.3} s  (built-in / ours = {:.2}×)",
        t_frozen,
        t_builtin / t_frozen
    );
    Ok(())
}
