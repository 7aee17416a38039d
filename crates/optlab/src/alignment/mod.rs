//! Preference alignment under f-divergences: f-DPO (P37, Wang et al., "Beyond Reverse KL", ICLR 2024), following
//! the official code (alecwangcq/f-divergence-dpo, `trainers.py`) and TRL's `dpo_loss`.
//!
//! - [`divergence`]: reverse KL, forward KL, Jensen–Shannon and α-divergences through f′;
//! - [`loss`]: the loss of a batch of preference pairs from four log-probabilities;
//! - [`bandit`]: the categorical check whose optimum is known exactly.
//!
//! ```
//! use optlab::alignment::{bandit::{FitConfig, PreferenceBandit}, Divergence, DpoLoss};
//! let bandit = PreferenceBandit::new(vec![0.4, 0.3, 0.2, 0.1], vec![0.0, 0.5, 1.0, -0.5])?;
//! let loss = DpoLoss { divergence: "js".parse::<Divergence>()?, beta: 1.0, ..DpoLoss::default() };
//! let exact = bandit.optimum(loss.divergence, loss.beta)?;
//! let fit = bandit.fit(&loss, &FitConfig { steps: 3000, ..FitConfig::default() })?;
//! assert!(fit.policy.iter().zip(&exact).all(|(p, q)| (p - q).abs() < 1e-3));
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod bandit;
pub mod divergence;
pub mod lm;
pub mod loss;

pub use divergence::Divergence;
pub use loss::{DpoLoss, DpoOutput};
