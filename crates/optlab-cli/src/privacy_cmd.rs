//! `optlab privacy`: the RDP accountant of the sampled Gaussian mechanism (opacus's) from the command line.

use anyhow::Result;
use clap::{Args, Subcommand};
use optlab::privacy::rdp::{noise_multiplier, RdpAccountant};
use serde_json::json;

#[derive(Args, Debug)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    pub what: PrivacyWhat,
}

#[derive(Subcommand, Debug)]
pub enum PrivacyWhat {
    /// ε spent by `steps` steps of the sampled Gaussian mechanism (DP-SGD) at sampling rate q and noise
    /// multiplier sigma, at δ, with the Rényi order that gives it (opacus's RDP accountant and default orders).
    #[command(
        after_help = "Examples:\n  optlab privacy epsilon --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5\n  optlab privacy epsilon --q 0.01 --sigma 1.1 --steps 10000 --delta 1e-5 --json"
    )]
    Epsilon {
        /// Sampling rate: expected batch size / training examples, in [0, 1].
        #[arg(long)]
        q: f64,
        /// Noise multiplier: the noise's standard deviation over the clipping norm.
        #[arg(long)]
        sigma: f64,
        #[arg(long)]
        steps: u64,
        #[arg(long)]
        delta: f64,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The smallest noise multiplier (to opacus's tolerance 0.01 in ε) that keeps `steps` steps at rate q within
    /// (ε, δ): opacus's get_noise_multiplier.
    #[command(
        after_help = "Examples:\n  optlab privacy noise --epsilon 8 --delta 1e-5 --q 0.04 --steps 2250\n  optlab privacy noise --epsilon 3 --delta 1e-5 --q 0.01 --steps 5000 --json"
    )]
    Noise {
        #[arg(long)]
        epsilon: f64,
        #[arg(long)]
        delta: f64,
        #[arg(long)]
        q: f64,
        #[arg(long)]
        steps: u64,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: PrivacyArgs) -> Result<()> {
    match a.what {
        PrivacyWhat::Epsilon {
            q,
            sigma,
            steps,
            delta,
            json,
        } => {
            let mut acc = RdpAccountant::new();
            acc.compose(sigma, q, steps)?;
            let s = acc.epsilon(delta)?;
            if json {
                println!(
                    "{}",
                    json!({"epsilon": s.epsilon, "delta": delta, "order": s.order, "q": q, "sigma": sigma, "steps": steps})
                );
            } else {
                println!(
                    "epsilon = {:.6} at delta = {delta:e} (best Renyi order {}) after {steps} steps, q = {q}, sigma = {sigma}",
                    s.epsilon, s.order
                );
            }
        }
        PrivacyWhat::Noise {
            epsilon,
            delta,
            q,
            steps,
            json,
        } => {
            let sigma = noise_multiplier(epsilon, delta, q, steps, 0.01)?;
            let mut acc = RdpAccountant::new();
            acc.compose(sigma, q, steps)?;
            let spent = acc.epsilon(delta)?.epsilon;
            if json {
                println!(
                    "{}",
                    json!({"sigma": sigma, "epsilon_target": epsilon, "epsilon": spent, "delta": delta, "q": q, "steps": steps})
                );
            } else {
                println!(
                    "sigma = {sigma} spends epsilon = {spent:.6} (target {epsilon}) at delta = {delta:e} after {steps} steps, q = {q}"
                );
            }
        }
    }
    Ok(())
}
