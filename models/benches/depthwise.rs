//! Forward + backward (input and weight gradients) of the depthwise convolutions of an
//! EfficientNet-Lite0 at 224×224, batch 2: ssc's depthwise op vs candle's grouped
//! convolution on a padded input (the baseline), measured in the same run. Prints the
//! median seconds of each and their ratio.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use ssc_models::ops::depthwise::{DepthwiseParams, depthwise_conv2d, depthwise_conv2d_builtin};

/// (channels, input side, kernel, stride) of every depthwise conv of Lite0 at 224.
fn lite0_layers() -> Vec<(usize, usize, usize, usize)> {
    // (repeats, kernel, stride, expand, in, out) per stage
    let stages = [
        (1, 3, 1, 1, 32, 16),
        (2, 3, 2, 6, 16, 24),
        (2, 5, 2, 6, 24, 40),
        (3, 3, 2, 6, 40, 80),
        (3, 5, 1, 6, 80, 112),
        (4, 5, 2, 6, 112, 192),
        (1, 3, 1, 6, 192, 320),
    ];
    let mut side: usize = 112;
    let mut out = Vec::new();
    for (r, k, s, e, cin, cout) in stages {
        for i in 0..r {
            let c = e * if i == 0 { cin } else { cout };
            let stride = if i == 0 { s } else { 1 };
            out.push((c, side, k, stride));
            side = side.div_ceil(stride);
        }
    }
    out
}

type Op = dyn Fn(&Tensor, &Tensor, DepthwiseParams) -> Result<Tensor>;

fn run(layers: &[(Var, Var, DepthwiseParams)], op: &Op) -> Result<f64> {
    let t = Instant::now();
    for (x, w, p) in layers {
        let y = op(x.as_tensor(), w.as_tensor(), *p)?;
        let g = y.sqr()?.mean_all()?.backward()?;
        std::hint::black_box(g);
    }
    Ok(t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let n = 2;
    let layers = lite0_layers()
        .into_iter()
        .map(|(c, side, k, s)| {
            let x = Var::randn(0f32, 1.0, (n, c, side, side), &dev)?;
            let w = Var::randn(0f32, 0.3, (c, 1, k, k), &dev)?;
            Ok((x, w, DepthwiseParams::same(side, side, k, s, 1)))
        })
        .collect::<Result<Vec<_>>>()?;
    let ours: &Op = &|x, w, p| depthwise_conv2d(x, w, p, true);
    let theirs: &Op = &|x, w, p| depthwise_conv2d_builtin(x, w, p);
    run(&layers, ours)?;
    run(&layers, theirs)?;
    let reps = 5;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        a.push(run(&layers, ours)?);
        b.push(run(&layers, theirs)?);
    }
    let (a, b) = (median(a), median(b));
    println!(
        "depthwise convs of EfficientNet-Lite0 at 224, batch {n}, forward+backward, {} threads",
        rayon::current_num_threads()
    );
    println!("ssc depthwise op        {a:.4} s");
    println!("candle grouped conv2d   {b:.4} s");
    println!("ratio (candle / ssc)    {:.1}×", b / a);
    Ok(())
}
