//! An untrained perceptual VGG with PyTorch's generic conv init barely tells two images apart
//! at its deep taps (relu5_1, which the reference weights 1), so CDR's perceptual loss turns
//! into a shallow pixel loss; with torchvision's VGG init (Kaiming-normal fan-out, zero bias)
//! every tap responds. Measured on the synthetic preset's VGG (widths ÷ 8) at its 128 crop:
//! mean |φ_j(a) − φ_j(b)| for two independent N(0, 1) images, relative to relu1_1's.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ssc_models::config::PerceptualConfig;
use ssc_models::init::SeededInit;
use ssc_models::vgg::Vgg;
use ssc_training::cam::config::{CamTrainConfig, VggInit};

fn tap_differences(init: VggInit) -> Vec<f64> {
    let cfg = CamTrainConfig::synthetic(6);
    let dev = Device::Cpu;
    let vm = VarMap::new();
    if init == VggInit::Torchvision {
        ssc_training::init::kaiming_fan_out_init_with(
            &vm,
            7,
            &dev,
            |_| false,
            true,
            |vb| Vgg::new(&cfg.vgg, vb).map(|_| ()).map_err(Into::into),
        )
        .unwrap();
    }
    let vgg = Vgg::new(&cfg.vgg, SeededInit::var_builder(&vm, 7, DType::F32, &dev)).unwrap();
    let taps = PerceptualConfig::code(&cfg.vgg).taps;
    let c = cfg.data.crop;
    let a = Tensor::randn(0f32, 1.0, (2, 3, c, c), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, (2, 3, c, c), &dev).unwrap();
    let fa = vgg.forward_taps(&a, &taps).unwrap();
    let fb = vgg.forward_taps(&b, &taps).unwrap();
    fa.iter()
        .zip(&fb)
        .map(|(x, y)| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        })
        .collect()
}

#[test]
fn torchvision_init_makes_the_deep_taps_respond() {
    let generic = tap_differences(VggInit::Pytorch);
    let tv = tap_differences(VggInit::Torchvision);
    eprintln!("mean |φ(a) − φ(b)| per tap, PyTorch default: {generic:?}");
    eprintln!("mean |φ(a) − φ(b)| per tap, torchvision:     {tv:?}");
    let rel = |d: &[f64]| d[4] / d[0];
    // relu5_1 relative to relu1_1: orders of magnitude apart.
    assert!(rel(&generic) < 1e-3, "generic init: {generic:?}");
    assert!(rel(&tv) > 1e-2, "torchvision init: {tv:?}");
}
