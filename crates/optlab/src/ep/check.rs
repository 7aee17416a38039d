//! P31's gradient check on a batch of the digits: the EP estimate against the exact gradient (recurrent
//! backpropagation) over the number of nudges N, the nudge size β and the initial weight asymmetry, with and
//! without a spell of homeostasis first (gradient descent on the penalty alone).

use super::grad::{agreement, neuron_estimate, rbp, weight_gradient, Agreement, Estimator};
use super::homeostasis;
use super::net::{EpNet, Planar, Shape};
use crate::data::{digits, Target};
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use serde::Serialize;

/// What [`sweep`] varies.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub layers: Vec<usize>,
    pub ns: Vec<usize>,
    pub betas: Vec<f64>,
    pub angles: Vec<f64>,
    /// Steps of gradient descent on the homeostatic penalty alone (0: only the untouched network), each with step
    /// size η·D/4, which removes the fraction η of K − Bᵀ in expectation.
    pub homeostasis_steps: usize,
    pub homeostasis_lr: f64,
    pub batch_size: usize,
    pub t1: usize,
    pub t2: usize,
    pub seed: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            layers: vec![128, 10],
            ns: vec![1, 2, 4, 6],
            betas: vec![0.05, 0.5],
            angles: vec![0.0, 45.0, 90.0],
            homeostasis_steps: 200,
            homeostasis_lr: 0.25,
            batch_size: 50,
            t1: 150,
            t2: 20,
            seed: 0,
        }
    }
}

/// One cell of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRow {
    pub angle: f64,
    pub homeostasis: bool,
    /// ‖K − Bᵀ‖²/D of the network checked.
    pub asymmetry: f64,
    /// How far the free phase's end is from a fixed point ([`EpNet::fixed_point_residual`]).
    pub fixed_point_residual: f64,
    pub n: usize,
    pub beta: f64,
    #[serde(flatten)]
    pub agreement: Agreement,
}

/// Runs the sweep on the first `batch_size` digits.
pub fn sweep(cfg: &CheckConfig, on_row: &mut dyn FnMut(&CheckRow)) -> Result<Vec<CheckRow>> {
    if cfg.ns.is_empty() || cfg.betas.is_empty() || cfg.angles.is_empty() || cfg.batch_size == 0 {
        return Err(Error::invalid(
            "ep grad-check: need at least one N, beta, angle and sample",
        ));
    }
    if let Some(b) = cfg.betas.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
        return Err(Error::invalid(format!(
            "ep grad-check: beta must be a positive number, not {b}"
        )));
    }
    if !(cfg.homeostasis_lr > 0.0 && cfg.homeostasis_lr <= 1.0) {
        return Err(Error::invalid(format!(
            "ep grad-check: the homeostasis learning rate (a fraction of the asymmetry per step) must be in (0, 1], \
             not {}",
            cfg.homeostasis_lr
        )));
    }
    let data = digits()?;
    let Target::Classes { labels, .. } = &data.target else {
        return Err(Error::invalid("EP: the digits must have class labels"));
    };
    let b = cfg.batch_size.min(labels.len());
    let x = Planar::real(
        b,
        64,
        &data.x[..b * 64]
            .iter()
            .map(|&v| f64::from(v))
            .collect::<Vec<_>>(),
    );
    let y: Vec<usize> = labels[..b].iter().map(|&l| l as usize).collect();
    let mut rows = Vec::new();
    for &angle in &cfg.angles {
        let base = EpNet::new(
            Shape {
                input: 64,
                layers: cfg.layers.clone(),
                classes: 10,
            },
            angle,
            cfg.seed,
        )?;
        let mut nets = vec![(false, base.clone())];
        if cfg.homeostasis_steps > 0 {
            let mut net = base;
            let mut rng = rng_for(cfg.seed, Stream::Probe, 32);
            let step = cfg.homeostasis_lr * net.state_size() as f64 / 4.0;
            for _ in 0..cfg.homeostasis_steps {
                let (_, g) = homeostasis::estimate(&net, 5 * b, &mut rng)?;
                for (a, g) in net.arrays_mut().into_iter().zip(&g) {
                    a.iter_mut().zip(g).for_each(|(a, g)| *a -= step * g);
                }
            }
            nets.push((true, net));
        }
        for (homeo, net) in &nets {
            let u = net.relax(&x, &y, cfg.t1)?;
            let residual = net.fixed_point_residual(&u, &x, &y)?;
            let d = rbp(net, &y, &u)?;
            let exact = weight_gradient(net, &x, &y, &u, &d)?;
            for &n in &cfg.ns {
                let betas: &[f64] = if n == 0 { &[0.0] } else { &cfg.betas };
                for &beta in betas {
                    let g = neuron_estimate(net, &x, &y, &u, Estimator::from_n(n), beta, cfg.t2)?;
                    let row = CheckRow {
                        angle,
                        homeostasis: *homeo,
                        asymmetry: homeostasis::exact(net),
                        fixed_point_residual: residual,
                        n,
                        beta,
                        agreement: agreement(
                            &weight_gradient(net, &x, &y, &u, &g)?,
                            &exact,
                            &g,
                            &d,
                            b,
                        ),
                    };
                    on_row(&row);
                    rows.push(row);
                }
            }
        }
    }
    Ok(rows)
}
