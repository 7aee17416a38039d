//! The embedded digits as the bilevel problems use them: a seeded 60/20/20 split into training (the lower level's
//! data), validation (the upper level's) and test (reported only), as f64 tensors.

use crate::data::{digits, Dataset};
use crate::nn::loss::correct;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Examples `[n, 64]` (pixels in [0, 1]) and class indices `[n]` (u32).
#[derive(Debug, Clone)]
pub struct Split {
    pub x: Tensor,
    pub labels: Tensor,
}

impl Split {
    fn of(d: &Dataset) -> Result<Self> {
        let idx: Vec<usize> = (0..d.len()).collect();
        let (x, labels) = d.batch(&idx, DType::F64, &Device::Cpu)?;
        Ok(Split { x, labels })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.x.dims()[0]
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples with a constant 1 appended (an intercept), `[n, 65]`.
    pub fn with_intercept(&self) -> Result<Tensor> {
        let ones = Tensor::ones((self.len(), 1), self.x.dtype(), self.x.device())?;
        Ok(Tensor::cat(&[&self.x, &ones], 1)?)
    }

    /// One-hot targets `[n, classes]`.
    pub fn one_hot(&self, classes: usize) -> Result<Tensor> {
        let labels: Vec<u32> = self.labels.to_vec1()?;
        let mut y = vec![0.0f64; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            y[i * classes + l as usize] = 1.0;
        }
        Ok(Tensor::from_vec(
            y,
            (labels.len(), classes),
            self.x.device(),
        )?)
    }

    /// The fraction of rows of `logits` whose arg-max is the label.
    pub fn accuracy(&self, logits: &Tensor) -> Result<f64> {
        Ok(correct(logits, &self.labels)? as f64 / self.len().max(1) as f64)
    }

    /// The rows at `idx`.
    pub fn rows(&self, idx: &[usize]) -> Result<Split> {
        let i = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<u32>>(),
            idx.len(),
            self.x.device(),
        )?;
        Ok(Split {
            x: self.x.index_select(&i, 0)?,
            labels: self.labels.index_select(&i, 0)?,
        })
    }
}

/// Training, validation and test splits.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Split,
    pub val: Split,
    pub test: Split,
}

/// The digits split 60/20/20 by `seed`.
pub fn digits_splits(seed: u64) -> Result<Splits> {
    let all = digits()?;
    let (rest, test) = all.split(0.2, seed)?;
    let (train, val) = rest.split(0.25, seed.wrapping_add(1))?;
    Ok(Splits {
        train: Split::of(&train)?,
        val: Split::of(&val)?,
        test: Split::of(&test)?,
    })
}

/// The digits of two classes, labelled −1 (`classes.0`) and +1 (`classes.1`) as f64 `[n]`, split 60/20/20.
pub fn binary_digits(classes: (u32, u32), seed: u64) -> Result<(Splits, [Tensor; 3])> {
    if classes.0 == classes.1 || classes.0 > 9 || classes.1 > 9 {
        return Err(Error::invalid(format!(
            "a binary digits task needs two different classes in 0..9, got {classes:?}"
        )));
    }
    let s = digits_splits(seed)?;
    let pick = |sp: &Split| -> Result<(Split, Tensor)> {
        let labels: Vec<u32> = sp.labels.to_vec1()?;
        let idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] == classes.0 || labels[i] == classes.1)
            .collect();
        let signs: Vec<f64> = idx
            .iter()
            .map(|&i| if labels[i] == classes.1 { 1.0 } else { -1.0 })
            .collect();
        let n = signs.len();
        Ok((sp.rows(&idx)?, Tensor::from_vec(signs, n, sp.x.device())?))
    };
    let (train, yt) = pick(&s.train)?;
    let (val, yv) = pick(&s.val)?;
    let (test, ye) = pick(&s.test)?;
    Ok((Splits { train, val, test }, [yt, yv, ye]))
}
