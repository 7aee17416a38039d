//! Differential privacy: the Rényi-DP accountant of the sampled Gaussian mechanism ([`rdp`]), with noise
//! calibration from a target ε; per-sample gradients follow (P09, P21 and DP-SGD build on both).

pub mod per_sample;
pub mod rdp;
