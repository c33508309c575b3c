//! Scene sampling: which objects, where, in what pose, on which background.

use std::f64::consts::{FRAC_PI_2, FRAC_PI_3, FRAC_PI_4, PI};

use super::{BACKGROUNDS, SynthConfig};
use crate::rng::Rng;

/// Radial-harmonic prototype of a class's shape family: `r(θ) = 1 + Σ a_k cos(kθ + φ_k)`,
/// a base aspect ratio, and the direction (object frame) of the discriminative part.
struct Prototype {
    harmonics: &'static [(u32, f64)],
    aspect: f64,
    part_dir: f64,
}

const PROTOTYPES: [Prototype; 10] = [
    Prototype {
        harmonics: &[(5, 0.32)],
        aspect: 1.0,
        part_dir: 0.0,
    },
    Prototype {
        harmonics: &[(1, 0.35), (2, 0.08)],
        aspect: 1.3,
        part_dir: PI,
    },
    Prototype {
        harmonics: &[(2, 0.25), (3, 0.12)],
        aspect: 1.5,
        part_dir: FRAC_PI_2,
    },
    Prototype {
        harmonics: &[(4, 0.38)],
        aspect: 1.0,
        part_dir: FRAC_PI_4,
    },
    Prototype {
        harmonics: &[(1, 0.2), (3, 0.28)],
        aspect: 1.2,
        part_dir: 0.0,
    },
    Prototype {
        harmonics: &[(7, 0.22)],
        aspect: 1.0,
        part_dir: PI + FRAC_PI_2,
    },
    Prototype {
        harmonics: &[(2, 0.15)],
        aspect: 2.6,
        part_dir: 0.0,
    },
    Prototype {
        harmonics: &[(1, 0.3), (2, 0.22)],
        aspect: 1.1,
        part_dir: FRAC_PI_2,
    },
    Prototype {
        harmonics: &[(3, 0.4)],
        aspect: 1.0,
        part_dir: 2.0 * FRAC_PI_3,
    },
    Prototype {
        harmonics: &[(1, 0.15), (6, 0.1)],
        aspect: 1.7,
        part_dir: PI,
    },
];

/// Number of body appearances shared by all classes.
pub const BODY_POOL: usize = 6;

/// One object instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Foreground class, 0-based (label value is `class + 1`).
    pub class: usize,
    /// Centre in pixels.
    pub cx: f64,
    /// Centre in pixels.
    pub cy: f64,
    /// Outer radius in pixels.
    pub radius: f64,
    /// Rotation in radians.
    pub rotation: f64,
    /// Aspect ratio (> 0) of the object frame.
    pub aspect: f64,
    /// Harmonics `(k, amplitude, phase)` of the contour.
    pub harmonics: Vec<(u32, f64, f64)>,
    /// `max_θ r(θ)`, so that the contour fits in `radius`.
    pub r_max: f64,
    /// Direction of the part in the object frame.
    pub part_dir: f64,
    /// Radius of the part disk in normalised object units.
    pub part_radius: f64,
    /// Index into the shared body appearance pool.
    pub body: usize,
    /// Brightness factor of the body.
    pub brightness: f64,
}

/// A background clutter item (an ellipse), drawn as background.
#[derive(Debug, Clone, PartialEq)]
pub struct Clutter {
    pub cx: f64,
    pub cy: f64,
    pub rx: f64,
    pub ry: f64,
    pub rotation: f64,
    /// RGB offset from the background colour, or `None` for a body-pool confuser.
    pub offset: Option<[f64; 3]>,
    /// Body appearance of a confuser.
    pub body: usize,
}

/// Everything needed to render one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub width: usize,
    pub height: usize,
    /// Index into [`BACKGROUNDS`].
    pub background: usize,
    /// Seed of the per-pixel textures and noise.
    pub texture_seed: u64,
    pub clutter: Vec<Clutter>,
    /// Objects in drawing order (later ones occlude earlier ones).
    pub objects: Vec<Object>,
}

impl Object {
    /// Local normalised coordinates of pixel centre `(x, y)`; inside the contour when the
    /// returned radius is below `r(θ)/r_max`.
    pub fn local(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (s, c) = self.rotation.sin_cos();
        let u = dx * c + dy * s;
        let v = -dx * s + dy * c;
        let sa = self.aspect.sqrt();
        (u / (self.radius * sa), v * sa / self.radius)
    }

    fn contour(&self, theta: f64) -> f64 {
        1.0 + self
            .harmonics
            .iter()
            .map(|&(k, a, p)| a * (k as f64 * theta + p).cos())
            .sum::<f64>()
    }

    /// `true` if pixel centre `(x, y)` is inside the object.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (u, v) = self.local(x, y);
        let rho = u.hypot(v);
        rho <= 1.0 && rho < self.contour(v.atan2(u)) / self.r_max
    }

    /// `true` if pixel centre `(x, y)` is inside the object's discriminative part.
    pub fn in_part(&self, x: f64, y: f64) -> bool {
        if !self.contains(x, y) {
            return false;
        }
        let (u, v) = self.local(x, y);
        let reach = 0.62 * self.contour(self.part_dir) / self.r_max;
        let (pu, pv) = (reach * self.part_dir.cos(), reach * self.part_dir.sin());
        (u - pu).hypot(v - pv) < self.part_radius
    }
}

fn sample_object(cfg: &SynthConfig, rng: &mut Rng, class: usize, w: f64, h: f64) -> Object {
    let proto = &PROTOTYPES[class];
    let side = w.min(h);
    let radius = side * rng.uniform(0.2, 0.34);
    let mut harmonics: Vec<(u32, f64, f64)> = proto
        .harmonics
        .iter()
        .map(|&(k, a)| (k, a * rng.uniform(0.75, 1.25), rng.uniform(-0.25, 0.25)))
        .collect();
    // Random low-frequency deformation shared by no class.
    for k in 2..=3u32 {
        harmonics.push((
            k,
            rng.uniform(0.0, 0.06),
            rng.uniform(0.0, std::f64::consts::TAU),
        ));
    }
    let r_max = (0..128)
        .map(|i| {
            let t = i as f64 / 128.0 * std::f64::consts::TAU;
            1.0 + harmonics
                .iter()
                .map(|&(k, a, p)| a * (k as f64 * t + p).cos())
                .sum::<f64>()
        })
        .fold(f64::MIN, f64::max);
    let margin = radius * 0.5;
    Object {
        class,
        cx: rng.uniform(margin, w - margin),
        cy: rng.uniform(margin, h - margin),
        radius,
        rotation: rng.uniform(0.0, std::f64::consts::TAU),
        aspect: proto.aspect * rng.uniform(0.85, 1.18),
        harmonics,
        r_max,
        part_dir: proto.part_dir + rng.uniform(-0.3, 0.3),
        part_radius: (cfg.part_fraction / 0.45).sqrt() * 0.5,
        body: rng.below(BODY_POOL as u64) as usize,
        brightness: rng.uniform(0.85, 1.15),
    }
}

/// Visible pixels of each object and of its part, after occlusion by later objects.
fn visibility(objects: &[Object], w: usize, h: usize) -> Vec<(usize, usize, usize)> {
    let mut stats = vec![(0usize, 0usize, 0usize); objects.len()];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut top = None;
            for (i, o) in objects.iter().enumerate() {
                if o.contains(fx, fy) {
                    stats[i].0 += 1;
                    top = Some(i);
                }
            }
            if let Some(i) = top {
                stats[i].1 += 1;
                if objects[i].in_part(fx, fy) {
                    stats[i].2 += 1;
                }
            }
        }
    }
    stats
}

/// Samples scene `index` of a dataset: deterministic in `(cfg.seed, index)`.
pub fn sample_scene(cfg: &SynthConfig, index: u64) -> Scene {
    let mut rng = Rng::fork(cfg.seed, index);
    let jitter = |rng: &mut Rng| (cfg.size as f64 * rng.uniform(0.85, 1.15)).round() as usize;
    let (width, height) = (jitter(&mut rng), jitter(&mut rng));
    let (w, h) = (width as f64, height as f64);
    let n_objects = 1 + rng.below(cfg.max_objects as u64) as usize;
    let mut objects: Vec<Object> = Vec::new();
    for _ in 0..n_objects {
        let class = rng.below(cfg.classes as u64) as usize;
        // Retry placements until the new object and every earlier one stay recognisable:
        // at least a third of each body and some of each part visible.
        for _attempt in 0..20 {
            let mut trial = objects.clone();
            trial.push(sample_object(cfg, &mut rng, class, w, h));
            let ok = visibility(&trial, width, height)
                .iter()
                .all(|&(full, vis, part)| full > 0 && vis * 3 >= full && part >= 6);
            if ok {
                objects = trial;
                break;
            }
        }
    }
    if objects.is_empty() {
        // Extremely unlikely; a lone centred object always fits.
        let mut o = sample_object(cfg, &mut rng, 0, w, h);
        o.cx = w / 2.0;
        o.cy = h / 2.0;
        objects.push(o);
    }
    let preferred = objects[0].class % BACKGROUNDS.len();
    let background = if rng.bernoulli(cfg.context_prob) {
        preferred
    } else {
        rng.below(BACKGROUNDS.len() as u64) as usize
    };
    let n_clutter = 3 + rng.below(6) as usize;
    let mut clutter = Vec::with_capacity(n_clutter + 1);
    for _ in 0..n_clutter {
        let g = rng.uniform(-55.0, 55.0);
        clutter.push(Clutter {
            cx: rng.uniform(0.0, w),
            cy: rng.uniform(0.0, h),
            rx: rng.uniform(2.5, 9.0),
            ry: rng.uniform(2.5, 9.0),
            rotation: rng.uniform(0.0, std::f64::consts::PI),
            offset: Some([
                g + rng.uniform(-12.0, 12.0),
                g + rng.uniform(-12.0, 12.0),
                g,
            ]),
            body: 0,
        });
    }
    if rng.bernoulli(0.5) {
        clutter.push(Clutter {
            cx: rng.uniform(0.0, w),
            cy: rng.uniform(0.0, h),
            rx: rng.uniform(5.0, 13.0),
            ry: rng.uniform(5.0, 13.0),
            rotation: rng.uniform(0.0, std::f64::consts::PI),
            offset: None,
            body: rng.below(BODY_POOL as u64) as usize,
        });
    }
    Scene {
        width,
        height,
        background,
        texture_seed: rng.next_u64(),
        clutter,
        objects,
    }
}
