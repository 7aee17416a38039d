//! Differential privacy: the Rényi-DP accountant of the sampled Gaussian mechanism ([`rdp`]), with noise
//! calibration from a target ε; per-sample gradients without a per-sample loop ([`per_sample`]); DP-SGD with flat
//! or per-layer clipping ([`dp_sgd`]), which the trainer runs under `--privacy`.

pub mod dp_methods;
pub mod dp_sgd;
pub mod finite_sum;
pub mod per_sample;
pub mod rdp;
