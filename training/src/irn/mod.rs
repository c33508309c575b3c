//! IRN training (§4.5–4.6): the class-boundary (edge) branch on a frozen ResNet, trained
//! from IR labels (§4.1) with the path-affinity losses.

pub mod loss;
