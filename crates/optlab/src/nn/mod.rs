//! Models. A [`Sequential`] model is a list of layers whose parameters are named as PyTorch's `nn.Sequential`
//! state dict names them (`0.weight`, `0.bias`, `2.weight`, ...), so `model.safetensors` loads in PyTorch with
//! `load_state_dict` and a PyTorch state dict saved with `safetensors.torch.save_file` loads here.

mod build;
pub mod conv;
pub mod fused;
mod lanes;
mod layer;
pub mod linear;
pub mod matmul;
mod param;
pub mod pool;
mod sequential;
mod size;
mod spec;
pub mod tape;

pub use layer::{Activation, Layer, NormKind, NormLayer};
pub(crate) use param::Init;
pub use param::{Param, Parametrization};
pub use sequential::{LinearTrace, Sequential};
pub use size::ModelSize;
pub use spec::{ModelSpec, MODEL_NAMES};
pub use transformer::{SeqNormKind, TransformerSpec};
pub mod loss;
pub mod norm;
pub mod penalty;
pub mod powernorm;
pub mod spectral;
pub mod transformer;
