//! Data sets: the embedded digits set, synthetic generators, and loaders for users' CSV, IDX and safetensors
//! files. Every loader returns a [`Dataset`]; bad files give an error naming the file and the problem.

mod csv;
mod digits;
mod idx;
mod randhie;
mod spec;
mod st;
mod synthetic;
pub mod tabular;
mod text;

pub use self::csv::{load_csv, read_numeric_csv, write_numeric_csv, NumericTable};
pub use digits::{digits, digits_binary};
pub use idx::{encode_idx_u8, load_idx_pair, read_idx, IdxArray};
pub use randhie::{randhie, randhie_standardized, RANDHIE_FEATURES};
pub use spec::{DataSpec, TextUnit, DATA_NAMES};
pub use st::load_safetensors_data;
pub use synthetic::{gaussian_mixture, linear_regression, two_moons, two_spirals};
pub use text::{char_lines, char_windows, read_text, shakespeare, vocabulary};

use crate::rng::{permutation, rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// What is predicted.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class indices in `0..n_classes`.
    Classes { labels: Vec<u32>, n_classes: usize },
    /// Real-valued targets, `dim` per example.
    Values { y: Vec<f32>, dim: usize },
    /// A class index per position of a sequence, `len` per example (next-token targets of a language model);
    /// [`IGNORE`] marks padded positions without a target.
    Tokens {
        labels: Vec<u32>,
        len: usize,
        n_classes: usize,
    },
}

/// An in-memory data set: `n` examples of `feature_shape` (e.g. `[64]` or `[1, 8, 8]`), row-major f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name for reports.
    pub name: String,
    /// Features, `n * prod(feature_shape)` values.
    pub x: Vec<f32>,
    /// Shape of one example.
    pub feature_shape: Vec<usize>,
    /// Targets.
    pub target: Target,
}

impl Dataset {
    /// Builds a data set after checking that sizes agree and every value is finite.
    pub fn new(
        name: impl Into<String>,
        x: Vec<f32>,
        feature_shape: Vec<usize>,
        target: Target,
    ) -> Result<Self> {
        let name = name.into();
        let d: usize = feature_shape.iter().product();
        if d == 0 {
            return Err(Error::Shape(format!("{name}: examples have no features")));
        }
        if !x.len().is_multiple_of(d) {
            return Err(Error::Shape(format!(
                "{name}: {} feature values is not a multiple of {d} per example",
                x.len()
            )));
        }
        let n = x.len() / d;
        if n == 0 {
            return Err(Error::invalid(format!("{name}: the data set is empty")));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "{name}: feature {} of example {} is {}",
                i % d,
                i / d,
                x[i]
            )));
        }
        match &target {
            Target::Classes { labels, n_classes } => {
                if labels.len() != n {
                    return Err(Error::Shape(format!(
                        "{name}: {n} examples but {} labels",
                        labels.len()
                    )));
                }
                if let Some(l) = labels.iter().find(|&&l| l as usize >= *n_classes) {
                    return Err(Error::invalid(format!(
                        "{name}: label {l} is not below the class count {n_classes}"
                    )));
                }
            }
            Target::Tokens {
                labels,
                len,
                n_classes,
            } => {
                if *len == 0 || labels.len() != n * len {
                    return Err(Error::Shape(format!(
                        "{name}: {n} sequences but {} token targets for length {len}",
                        labels.len()
                    )));
                }
                if let Some(l) = labels
                    .iter()
                    .find(|&&l| l != IGNORE && l as usize >= *n_classes)
                {
                    return Err(Error::invalid(format!(
                        "{name}: token {l} is not below the vocabulary size {n_classes}"
                    )));
                }
            }
            Target::Values { y, dim } => {
                if *dim == 0 || y.len() != n * dim {
                    return Err(Error::Shape(format!(
                        "{name}: {n} examples but {} target values of width {dim}",
                        y.len()
                    )));
                }
                if y.iter().any(|v| !v.is_finite()) {
                    return Err(Error::NonFinite(format!(
                        "{name}: a target value is NaN or infinite"
                    )));
                }
            }
        }
        Ok(Dataset {
            name,
            x,
            feature_shape,
            target,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.x.len() / self.feature_dim()
    }

    /// Whether there are no examples (never true for a constructed data set).
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Values per example.
    pub fn feature_dim(&self) -> usize {
        self.feature_shape.iter().product()
    }

    /// Number of model outputs (per position for token targets): classes, or target width.
    pub fn output_dim(&self) -> usize {
        match &self.target {
            Target::Classes { n_classes, .. } | Target::Tokens { n_classes, .. } => *n_classes,
            Target::Values { dim, .. } => *dim,
        }
    }

    /// The number of predictions the examples at `idx` ask for: one per example, one per non-padded position
    /// for token targets.
    pub fn predictions(&self, idx: &[usize]) -> usize {
        match &self.target {
            Target::Tokens { labels, len, .. } => idx
                .iter()
                .map(|&i| {
                    labels[i * len..(i + 1) * len]
                        .iter()
                        .filter(|&&l| l != IGNORE)
                        .count()
                })
                .sum(),
            _ => idx.len(),
        }
    }

    /// The examples at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let d = self.feature_dim();
        let mut x = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            x.extend_from_slice(&self.x[i * d..(i + 1) * d]);
        }
        let target = match &self.target {
            Target::Classes { labels, n_classes } => Target::Classes {
                labels: idx.iter().map(|&i| labels[i]).collect(),
                n_classes: *n_classes,
            },
            Target::Values { y, dim } => Target::Values {
                y: rows(y, *dim, idx),
                dim: *dim,
            },
            Target::Tokens {
                labels,
                len,
                n_classes,
            } => Target::Tokens {
                labels: rows(labels, *len, idx),
                len: *len,
                n_classes: *n_classes,
            },
        };
        Dataset {
            name: self.name.clone(),
            x,
            feature_shape: self.feature_shape.clone(),
            target,
        }
    }

    /// A deterministic random split into (train, validation) with `val_frac` of the examples in validation.
    pub fn split(&self, val_frac: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&val_frac) || val_frac.is_nan() {
            return Err(Error::invalid(format!(
                "val_frac={val_frac} must be in [0, 1)"
            )));
        }
        let n = self.len();
        let n_val = ((n as f64) * val_frac).round() as usize;
        if n_val > 0 && n_val >= n {
            return Err(Error::invalid(format!(
                "{}: too few examples ({n}) to split",
                self.name
            )));
        }
        let perm = permutation(n, &mut rng_for(seed, Stream::Split, 0));
        let (val, train) = perm.split_at(n_val);
        Ok((self.subset(train), self.subset(val)))
    }

    /// Tensors `(x, y)` for the examples at `idx`: x of shape `[b, feature_shape...]` in `dtype`; y as u32 class
    /// indices `[b]`, values `[b, dim]` in `dtype`, or u32 token indices `[b, len]`.
    pub fn batch(&self, idx: &[usize], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let d = self.feature_dim();
        let mut x = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            x.extend_from_slice(&self.x[i * d..(i + 1) * d]);
        }
        let mut shape = vec![idx.len()];
        shape.extend_from_slice(&self.feature_shape);
        let xt = Tensor::from_vec(x, shape, device)?.to_dtype(dtype)?;
        let yt = match &self.target {
            Target::Classes { labels, .. } => Tensor::from_vec(
                idx.iter().map(|&i| labels[i]).collect::<Vec<u32>>(),
                idx.len(),
                device,
            )?,
            Target::Values { y, dim } => {
                Tensor::from_vec(rows(y, *dim, idx), (idx.len(), *dim), device)?.to_dtype(dtype)?
            }
            Target::Tokens { labels, len, .. } => {
                Tensor::from_vec(rows(labels, *len, idx), (idx.len(), *len), device)?
            }
        };
        Ok((xt, yt))
    }

    /// The same data viewed with another example shape of equal size (e.g. `[64]` as `[1, 8, 8]`).
    pub fn reshaped(mut self, feature_shape: Vec<usize>) -> Result<Dataset> {
        if feature_shape.iter().product::<usize>() != self.feature_dim() {
            return Err(Error::Shape(format!(
                "{}: cannot view examples of shape {:?} as {:?}",
                self.name, self.feature_shape, feature_shape
            )));
        }
        self.feature_shape = feature_shape;
        Ok(self)
    }
}

/// The target of a padded position of a token sequence (no prediction; PyTorch's `ignore_index`). The input id
/// of such a position is the vocabulary size.
pub const IGNORE: u32 = u32::MAX;

/// Rows `idx` of a row-major table with `width` columns, concatenated.
fn rows<T: Copy>(table: &[T], width: usize, idx: &[usize]) -> Vec<T> {
    idx.iter()
        .flat_map(|&i| table[i * width..(i + 1) * width].iter().copied())
        .collect()
}

/// The most classes a loader accepts; a larger label almost always means real-valued targets.
pub const MAX_CLASSES: usize = 100_000;

/// Class indices from numeric labels: each must be a non-negative integer below [`MAX_CLASSES`]; the class
/// count is the largest label + 1. `name(i)` names the i-th label in errors (e.g. "line 7").
pub(crate) fn class_labels(
    values: &[f64],
    name: impl Fn(usize) -> String,
) -> std::result::Result<(Vec<u32>, usize), String> {
    let mut labels = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        if !(v >= 0.0 && v.fract() == 0.0) {
            return Err(format!("{}: label {v} is not a non-negative integer class (use task=regression for real targets)", name(i)));
        }
        if v >= MAX_CLASSES as f64 {
            return Err(format!(
                "{}: label {v} would make more than {MAX_CLASSES} classes; for real-valued targets use task=regression",
                name(i)
            ));
        }
        labels.push(v as u32);
    }
    let n_classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    Ok((labels, n_classes))
}

/// Loads a data set from a spec string (see [`DataSpec`] for the names and keys): `digits`,
/// `moons:n=1000,noise=0.1`, `csv:path=data.csv,label=label`, `text:context=64`, ... Synthetic sets draw from
/// `seed`.
pub fn load_spec(spec: &str, seed: u64) -> Result<Dataset> {
    spec.parse::<DataSpec>()?.load(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let d = digits().unwrap();
        let (a, b) = d.split(0.2, 7).unwrap();
        let (a2, b2) = d.split(0.2, 7).unwrap();
        assert_eq!(a, a2);
        assert_eq!(b, b2);
        assert_eq!(a.len() + b.len(), 1797);
        assert_eq!(b.len(), 359);
        let (_, b3) = d.split(0.2, 8).unwrap();
        assert_ne!(b, b3);
        assert!(d.split(1.0, 0).is_err());
    }

    #[test]
    fn batch_tensors_have_the_right_shapes() {
        let d = digits().unwrap().reshaped(vec![1, 8, 8]).unwrap();
        let (x, y) = d.batch(&[0, 5, 9], DType::F64, &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[3, 1, 8, 8]);
        assert_eq!(x.dtype(), DType::F64);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![0, 5, 9]);
    }

    #[test]
    fn spec_errors_are_clear() {
        let e = load_spec("mnist", 0).unwrap_err().to_string();
        assert!(
            e.contains("unknown data set 'mnist'") && e.contains("digits"),
            "{e}"
        );
        let e = load_spec("csv", 0).unwrap_err().to_string();
        assert!(e.contains("'path'"), "{e}");
        let e = load_spec("moons:n=100,nois=0.1", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'nois'"), "{e}");
    }

    #[test]
    fn constructor_rejects_bad_data() {
        let bad = Dataset::new(
            "t",
            vec![1.0, f32::NAN],
            vec![2],
            Target::Classes {
                labels: vec![0],
                n_classes: 2,
            },
        );
        assert!(matches!(bad, Err(Error::NonFinite(_))));
        let bad = Dataset::new(
            "t",
            vec![1.0, 2.0, 3.0],
            vec![2],
            Target::Classes {
                labels: vec![0],
                n_classes: 2,
            },
        );
        assert!(matches!(bad, Err(Error::Shape(_))));
        let bad = Dataset::new(
            "t",
            vec![1.0, 2.0],
            vec![2],
            Target::Classes {
                labels: vec![3],
                n_classes: 2,
            },
        );
        assert!(bad.is_err());
    }
}
