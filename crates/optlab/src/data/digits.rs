//! The embedded UCI optical-recognition digits set (1797 images of 8x8 pixels, 10 classes), the copy shipped in
//! scikit-learn; attribution in `crates/optlab/data/README.md`. Pixels are scaled from 0..16 to [0, 1].

use super::{Dataset, Target};
use crate::{Error, Result};
use std::io::Read;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The digits set with examples of shape `[64]` (use [`Dataset::reshaped`] for `[1, 8, 8]`).
pub fn digits() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("embedded digits data is corrupt: {e}")))?;
    let mut x = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (row, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("embedded digits row {row}: {e}")))?;
        if vals.len() != 65 {
            return Err(Error::invalid(format!(
                "embedded digits row {row} has {} values",
                vals.len()
            )));
        }
        x.extend(vals[..64].iter().map(|v| v / 16.0));
        labels.push(vals[64] as u32);
    }
    Dataset::new(
        "digits",
        x,
        vec![64],
        Target::Classes {
            labels,
            n_classes: 10,
        },
    )
}

/// The digits as a binary task: digits 0-4 are class 0, digits 5-9 class 1.
pub fn digits_binary() -> Result<Dataset> {
    let mut d = digits()?;
    if let Target::Classes { labels, n_classes } = &mut d.target {
        labels.iter_mut().for_each(|l| *l = u32::from(*l >= 5));
        *n_classes = 2;
    }
    d.name = "digits-binary".into();
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_1797_images_of_10_classes() {
        let d = super::digits().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.feature_dim(), 64);
        let super::Target::Classes { labels, n_classes } = &d.target else {
            panic!()
        };
        assert_eq!(*n_classes, 10);
        let mut counts = [0usize; 10];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
        assert!(d.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert_eq!(labels[..3], [0, 1, 2]);
    }
}
