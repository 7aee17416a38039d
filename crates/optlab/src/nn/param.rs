//! Named trainable parameters.

use candle_core::{Tensor, Var};

/// A trainable tensor with its state-dict name. Cloning shares the storage.
#[derive(Debug, Clone)]
pub struct Param {
    /// State-dict name, e.g. `0.weight`.
    pub name: String,
    /// The variable the optimizer updates in place.
    pub var: Var,
}

impl Param {
    /// The parameter as a tensor (shares storage).
    pub fn tensor(&self) -> &Tensor {
        self.var.as_tensor()
    }

    /// Number of scalar values.
    pub fn numel(&self) -> usize {
        self.var.elem_count()
    }
}
