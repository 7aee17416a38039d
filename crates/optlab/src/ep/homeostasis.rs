//! P31's Jacobian homeostasis: a penalty on the asymmetric part of the network's Jacobian in activation
//! coordinates, J = J_G − I (the official code's `homeo_loss`). With Gaussian probes ε ∈ R^D (D the state size),
//!
//!   h(ε) = (‖Jε‖² − εᵀJ(Jε)) / D,     E[h] = ‖J − Jᵀ‖²_F / (2D),
//!
//! an unbiased estimate from two Jacobian-vector products. The identity cancels (h = εᵀ(MᵀM − M²)ε/D with
//! M = J_G), so for this network the penalty depends only on the weights: E[h] = Σ_l ‖K_{l+1} − B_lᵀ‖²_F / D.
//! Its gradient in M is (2 (Mε)εᵀ − ε(Mε)ᵀ − (Mᵀε)εᵀ)/D per probe, averaged; the official code takes 5 probes per
//! sample of the batch.

use super::net::{EpNet, Planar};
use crate::nn::matmul::{gemm_into, Strided};
use crate::rng::{normal, Rng};
use crate::{Error, Result};

/// The penalty's exact expectation, Σ_l ‖K_{l+1} − B_lᵀ‖²_F / D.
pub fn exact(net: &EpNet) -> f64 {
    let l = &net.shape.layers;
    let mut s = 0.0;
    for i in 0..l.len() - 1 {
        let (rows, cols) = (l[i + 1], l[i]);
        for p in 0..rows {
            for q in 0..cols {
                s += (net.forward[i + 1][q * rows + p] - net.feedback[i][p * cols + q]).powi(2);
            }
        }
    }
    s / net.state_size() as f64
}

/// The estimate over `probes` Gaussian probes and its gradient in every array ([`EpNet::arrays`] order; zero for
/// the input kernel, the biases and the readout).
pub fn estimate(net: &EpNet, probes: usize, rng: &mut Rng) -> Result<(f64, Vec<Vec<f64>>)> {
    if probes == 0 {
        return Err(Error::invalid("homeostasis: need at least one probe"));
    }
    let eps: Vec<Planar> = net
        .shape
        .layers
        .iter()
        .map(|&n| {
            Planar::real(
                probes,
                n,
                &(0..probes * n).map(|_| normal(rng)).collect::<Vec<_>>(),
            )
        })
        .collect();
    estimate_with(net, &eps)
}

/// The estimate and its gradient for given probes: one [`Planar`] per state layer, a probe per row.
pub fn estimate_with(net: &EpNet, eps: &[Planar]) -> Result<(f64, Vec<Vec<f64>>)> {
    let l = &net.shape.layers;
    let probes = eps.first().map_or(0, |e| e.b);
    if probes == 0
        || eps.len() != l.len()
        || eps.iter().zip(l).any(|(e, &n)| e.n != n || e.b != probes)
    {
        return Err(Error::Shape(format!(
            "homeostasis: need one probe array per state layer ({l:?} columns, the same rows)"
        )));
    }
    let d = net.state_size() as f64;
    let me = net.jg(eps)?;
    let mte = net.jgt(eps)?;
    let mut value = 0.0;
    for i in 0..l.len() {
        let (m, mt) = (me[i].re(), mte[i].re());
        value += m.iter().map(|v| v * v).sum::<f64>()
            - mt.iter().zip(m).map(|(a, b)| a * b).sum::<f64>();
    }
    value /= probes as f64 * d;
    // ∂h/∂K for a kernel pre → post (pre × post, new_u_post += a_pre K): the transpose of the M block's gradient,
    // 2 ε_pre (Mε)_postᵀ − (Mε)_pre ε_postᵀ − ε_pre (Mᵀε)_postᵀ, averaged over probes and divided by D.
    let block = |pre: usize, post: usize| -> Result<Vec<f64>> {
        let (p, q) = (l[pre], l[post]);
        let mut g = vec![0.0; p * q];
        let mut tmp = vec![0.0; p * q];
        gemm_into(
            &mut g,
            (p, q, probes),
            Strided::row_major(eps[pre].re(), p).t(),
            Strided::row_major(me[post].re(), q),
            false,
        )?;
        g.iter_mut().for_each(|v| *v *= 2.0);
        gemm_into(
            &mut tmp,
            (p, q, probes),
            Strided::row_major(me[pre].re(), p).t(),
            Strided::row_major(eps[post].re(), q),
            false,
        )?;
        g.iter_mut().zip(&tmp).for_each(|(g, t)| *g -= t);
        gemm_into(
            &mut tmp,
            (p, q, probes),
            Strided::row_major(eps[pre].re(), p).t(),
            Strided::row_major(mte[post].re(), q),
            false,
        )?;
        g.iter_mut().zip(&tmp).for_each(|(g, t)| *g -= t);
        let s = probes as f64 * d;
        g.iter_mut().for_each(|v| *v /= s);
        Ok(g)
    };
    let mut grads: Vec<Vec<f64>> = net.arrays().iter().map(|a| vec![0.0; a.len()]).collect();
    for i in 1..l.len() {
        grads[2 * i] = block(i - 1, i)?;
    }
    for i in 0..l.len() - 1 {
        grads[2 * l.len() + i] = block(i + 1, i)?;
    }
    Ok((value, grads))
}
