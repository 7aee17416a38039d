//! Counterfactuals for a row of an embedded table ([`crate::data::tabular`]): categories must end one-hot, so
//! the continuous search is followed by rounding each group to its largest entry; where rounding undoes the flip,
//! a second search starts from the rounded row with the categories fixed and moves the numbers only. T-Rex then
//! moves the numbers only too, so that the Stability it reaches is that of the returned, one-hot row.

use super::ead::{elastic_net, EadConfig};
use super::trex::{trex, TrexConfig, TrexResult};
use super::{predict, Bounds};
use crate::data::tabular::{Encoding, Mutability};
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
    counterfactual_within(net, enc, x, ead, trex_cfg, &Bounds::for_row(enc, x)?)
}

/// [`counterfactual`] within other bounds of the row (e.g. [`Bounds::for_row_immutables_free`]).
pub fn counterfactual_within(
    net: &Sequential,
    enc: &Encoding,
    x: &[f32],
    ead: &EadConfig,
    trex_cfg: Option<(&TrexConfig, &mut Rng)>,
    bounds: &Bounds,
) -> Result<TableCounterfactual> {
    let d = enc.features;
    let class = predict(net, x, d)?[0];
    let mut cf = elastic_net(net, x, d, &[class], ead, bounds)?;
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

/// The closest training point of another class, the data-point baseline that P07 sets beside the searches: among
/// `points` (encoded rows, row-major), those the model assigns a class other than `x`'s, that keep `x`'s immutable
/// columns and lie within `x`'s [`Bounds`] (an increase-only column not below `x`'s value), the nearest to `x` in
/// L2 (standardized units); `None` when no point qualifies.
pub fn closest_point(
    net: &Sequential,
    enc: &Encoding,
    x: &[f32],
    points: &[f32],
) -> Result<Option<Vec<f32>>> {
    let res = closest_counterfactual(net, enc, x, points)?;
    Ok(res.found.then_some(res.counterfactual))
}

/// [`closest_point`] as a [`TableCounterfactual`] (`x` itself, not found, when no point qualifies).
pub fn closest_counterfactual(
    net: &Sequential,
    enc: &Encoding,
    x: &[f32],
    points: &[f32],
) -> Result<TableCounterfactual> {
    closest_within(net, enc, x, points, &Bounds::for_row(enc, x)?)
}

/// [`closest_counterfactual`] within other bounds of the row.
pub fn closest_within(
    net: &Sequential,
    enc: &Encoding,
    x: &[f32],
    points: &[f32],
    bounds: &Bounds,
) -> Result<TableCounterfactual> {
    let d = enc.features;
    if !points.len().is_multiple_of(d) {
        return Err(crate::Error::Shape(format!(
            "closest point: {} values are not rows of {d} features",
            points.len()
        )));
    }
    let class = predict(net, x, d)?[0];
    let labels = predict(net, points, d)?;
    let allowed = |p: &[f32]| {
        p.iter().enumerate().all(|(j, &v)| {
            if bounds.frozen[j] {
                v == x[j]
            } else {
                v >= bounds.lo[j] && v <= bounds.hi[j]
            }
        })
    };
    let dist = |p: &[f32]| -> f32 { p.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum() };
    let nearest = points
        .chunks(d)
        .zip(&labels)
        .filter(|(p, &l)| l != class && allowed(p))
        .map(|(p, _)| p)
        .min_by(|a, b| dist(a).total_cmp(&dist(b)));
    Ok(TableCounterfactual {
        counterfactual: nearest.unwrap_or(x).to_vec(),
        class,
        found: nearest.is_some(),
        second_pass: false,
        trex: None,
    })
}

/// The immutable columns that stand between `x` and a counterfactual, for a row whose search found none: `search`
/// (a counterfactual of `x` within the bounds it is given) is run again with those columns free, and the names of
/// the immutable columns its counterfactual then changes are returned; empty when the table has none, when the
/// search finds nothing either, or finds one that changes none (the budget, not the constraint, was short).
pub fn blocking_immutables(
    enc: &Encoding,
    x: &[f32],
    search: impl FnOnce(&Bounds) -> Result<TableCounterfactual>,
) -> Result<Vec<String>> {
    if !enc
        .columns
        .iter()
        .any(|c| c.mutability == Mutability::Immutable)
    {
        return Ok(Vec::new());
    }
    let released = search(&Bounds::for_row_immutables_free(enc, x)?)?;
    if !released.found {
        return Ok(Vec::new());
    }
    let (before, after) = (
        enc.decode_row(x)?,
        enc.decode_row(&released.counterfactual)?,
    );
    Ok(enc
        .columns
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(c, (p, q))| c.mutability == Mutability::Immutable && p != q)
        .map(|(c, _)| c.name.clone())
        .collect())
}
