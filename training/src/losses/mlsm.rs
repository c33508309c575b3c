//! Multi-label soft-margin loss (§2.3, paper Eq. 2).

use candle_core::{Result, Tensor};

/// `mean_n mean_c BCE-with-logits(q, y)`, identical to PyTorch's
/// `multilabel_soft_margin_loss`; numerically stable for large |q|:
/// `max(q,0) − q·y + log(1 + exp(−|q|))`.
///
/// # Shapes
/// - `logits`: `[N, C]` class scores `q`
/// - `labels`: `[N, C]` multi-hot targets (0/1)
/// - returns a scalar
pub fn multilabel_soft_margin(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let per = ((logits.relu()? - (logits * labels)?)? + softplus_neg_abs)?;
    per.mean_all()
}
