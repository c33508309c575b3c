//! IRN inference: pair/path index (§4.3), path affinities (§4.4), IRN training targets (§4.5)
//! and the random walk from CAMs to propagated scores (§4.7, §10.4).

pub mod affinity;
pub mod dense;
pub mod labels;
pub mod paths;
pub mod walk;

pub use affinity::{pad_edge, padded_affinity, path_affinity};
pub use labels::{AffinityLabels, affinity_labels};
pub use paths::PathIndex;
pub use walk::{Transition, WalkParams, WalkRoute, random_walk};
