//! The embedded RAND Health Insurance Experiment data (20 190 people, public domain), the copy shipped in
//! statsmodels; attribution in `crates/optlab/data/README.md`. The target is `mdvis`, the number of outpatient
//! visits to a doctor; the nine features are the insurance-plan and health covariates, unscaled.

use super::{Dataset, Target};
use crate::{Error, Result};
use std::io::Read;

static RANDHIE_CSV_GZ: &[u8] = include_bytes!("../../data/randhie.csv.gz");

/// The names of the nine features, in column order.
pub const RANDHIE_FEATURES: [&str; 9] = [
    "lncoins", "idp", "lpi", "fmde", "physlm", "disea", "hlthg", "hlthf", "hlthp",
];

/// The RAND HIE set: 20 190 examples of 9 features, target `mdvis` (one value per example).
pub fn randhie() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(RANDHIE_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("embedded randhie data is corrupt: {e}")))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    if !header.starts_with("mdvis,") {
        return Err(Error::invalid(
            "embedded randhie data has no 'mdvis' header",
        ));
    }
    let mut x = Vec::with_capacity(20190 * 9);
    let mut y = Vec::with_capacity(20190);
    for (row, line) in lines.enumerate() {
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("embedded randhie row {row}: {e}")))?;
        if vals.len() != 10 {
            return Err(Error::invalid(format!(
                "embedded randhie row {row} has {} values",
                vals.len()
            )));
        }
        y.push(vals[0]);
        x.extend_from_slice(&vals[1..]);
    }
    Dataset::new("randhie", x, vec![9], Target::Values { y, dim: 1 })
}

/// [`randhie`] with every feature centred and scaled to unit variance (statistics of all 20 190 rows).
pub fn randhie_standardized() -> Result<Dataset> {
    let mut d = randhie()?;
    let k = d.feature_dim();
    let n = d.len() as f64;
    for j in 0..k {
        let col = || d.x.iter().skip(j).step_by(k).map(|&v| v as f64);
        let mean = col().sum::<f64>() / n;
        let sd = (col().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let sd = if sd > 0.0 { sd } else { 1.0 };
        for v in d.x.iter_mut().skip(j).step_by(k) {
            *v = ((*v as f64 - mean) / sd) as f32;
        }
    }
    d.name = "randhie".into();
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_20190_people_with_nine_covariates() {
        let d = super::randhie().unwrap();
        assert_eq!(d.len(), 20190);
        assert_eq!(d.feature_dim(), 9);
        let super::Target::Values { y, dim } = &d.target else {
            panic!()
        };
        assert_eq!(*dim, 1);
        // statsmodels' summary: mean mdvis 2.860426, max 77.
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        assert!((mean - 2.860426).abs() < 1e-6, "{mean}");
        assert_eq!(y.iter().cloned().fold(0f32, f32::max), 77.0);
        let s = super::randhie_standardized().unwrap();
        let col0: Vec<f64> = s.x.iter().step_by(9).map(|&v| v as f64).collect();
        let mean = col0.iter().sum::<f64>() / col0.len() as f64;
        let var = col0.iter().map(|v| v * v).sum::<f64>() / col0.len() as f64;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }
}
