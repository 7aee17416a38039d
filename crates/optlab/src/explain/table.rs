//! Counterfactuals for a row of an embedded table ([`crate::data::tabular`]): categories must end one-hot, so
//! the continuous search is followed by rounding each group to its largest entry; where rounding undoes the flip,
//! a second search starts from the rounded row with the categories fixed and moves the numbers only. T-Rex then
//! moves the numbers only too, so that the Stability it reaches is that of the returned, one-hot row.

use super::ead::{elastic_net, EadConfig};
use super::trex::{trex, TrexConfig, TrexResult};
use super::{predict, Bounds};
use crate::data::tabular::Encoding;
use crate::nn::Sequential;
use crate::rng::Rng;
use crate::Result;

/// What [`counterfactual`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCounterfactual {
    /// The counterfactual (one-hot categories), or the closest row tried when none was found.
    pub counterfactual: Vec<f32>,
    pub class: usize,
    /// Whether the model gives the counterfactual the other class.
    pub found: bool,
    /// Whether the second search (categories fixed) was needed.
    pub second_pass: bool,
    pub trex: Option<TrexResult>,
}

/// A counterfactual of the encoded row `x`: the elastic-net search `ead` within the row's [`Bounds`], rounding,
/// the second search where needed, and T-Rex with `trex` when given.
pub fn counterfactual(
    net: &Sequential,
    enc: &Encoding,
    x: &[f32],
    ead: &EadConfig,
    trex_cfg: Option<(&TrexConfig, &mut Rng)>,
) -> Result<TableCounterfactual> {
    let d = enc.features;
    let class = predict(net, x, d)?[0];
    let bounds = Bounds::for_row(enc, x)?;
    let mut cf = elastic_net(net, x, d, &[class], ead, &bounds)?;
    enc.round_groups(&mut cf);
    let mut second_pass = false;
    // The categories fixed at their rounded levels: frozen in both the second search and T-Rex.
    let mut fixed = bounds.clone();
    for (j, c) in enc.columns.iter().enumerate() {
        if !c.levels.is_empty() {
            let at = enc.offsets[j];
            fixed.frozen[at..at + c.levels.len()].fill(true);
        }
    }
    if predict(net, &cf, d)?[0] == class {
        second_pass = true;
        // Numbers start again from the original row; categories keep the first search's levels.
        let mut start = x.to_vec();
        for (j, c) in enc.columns.iter().enumerate() {
            if !c.levels.is_empty() {
                let at = enc.offsets[j];
                start[at..at + c.levels.len()].copy_from_slice(&cf[at..at + c.levels.len()]);
            }
        }
        cf = elastic_net(net, &start, d, &[class], ead, &fixed)?;
    }
    let mut found = predict(net, &cf, d)?[0] != class;
    let mut trex_result = None;
    if let (true, Some((cfg, rng))) = (found, trex_cfg) {
        let r = trex(net, &cf, cfg, &fixed, rng)?;
        cf.clone_from(&r.counterfactual);
        found = predict(net, &cf, d)?[0] != class;
        trex_result = Some(r);
    }
    Ok(TableCounterfactual {
        counterfactual: cf,
        class,
        found,
        second_pass,
        trex: trex_result,
    })
}
