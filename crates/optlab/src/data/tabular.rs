//! Embedded tabular classification data with their column schema, for counterfactual explanations (P07): German
//! Credit (UCI Statlog, 1000 applicants, 7 numeric and 13 categorical columns, 63 features once one-hot encoded;
//! class 1 = good credit) and the
//! Wisconsin diagnostic breast-cancer data (569 tumours, 30 numeric columns; class 1 = benign). Sources and
//! licences in `crates/optlab/data/README.md`.
//!
//! [`Table::encode`] one-hot encodes the categorical columns and standardizes the numeric ones with the
//! statistics of all rows; the [`Encoding`] it returns records them (saved next to a model), maps a raw row to
//! features and back, and gives each feature's box and mutability for a counterfactual search.

use super::{Dataset, Target};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;

static GERMAN_GZ: &[u8] = include_bytes!("../../data/german.data.gz");
static BREAST_CANCER_GZ: &[u8] = include_bytes!("../../data/breast_cancer.csv.gz");

/// Whether a counterfactual may change a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutability {
    Free,
    /// Fixed (personal status and sex, foreign worker).
    Immutable,
    /// May only grow (age).
    IncreaseOnly,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The levels of a categorical column (its codes, e.g. `A11`), empty for a numeric one.
    pub levels: Vec<String>,
    pub mutability: Mutability,
}

/// A raw value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    /// The index of a level.
    Level(usize),
}

/// A table: raw rows, binary labels and the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub labels: Vec<u32>,
    /// The names of classes 0 and 1.
    pub classes: [String; 2],
}

/// How a table's rows become features: per column, where its features start and, for a numeric column, its
/// mean and standard deviation and raw range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub columns: Vec<Column>,
    /// The first feature of each column (one feature per numeric column, one per level otherwise).
    pub offsets: Vec<usize>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// The raw minimum and maximum of each numeric column (0 and 1 for categorical ones).
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub features: usize,
}

fn gunzip(bytes: &[u8], what: &str) -> Result<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("embedded {what} data is corrupt: {e}")))?;
    Ok(text)
}

fn column(name: &str, levels: &[&str], mutability: Mutability) -> Column {
    Column {
        name: name.to_string(),
        levels: levels.iter().map(|s| s.to_string()).collect(),
        mutability,
    }
}

/// The 20 attributes of UCI's `german.doc`, in file order.
fn german_columns() -> Vec<Column> {
    use Mutability::*;
    vec![
        column("checking account", &["A11", "A12", "A13", "A14"], Free),
        column("duration in months", &[], Free),
        column("credit history", &["A30", "A31", "A32", "A33", "A34"], Free),
        column(
            "purpose",
            &[
                "A40", "A41", "A42", "A43", "A44", "A45", "A46", "A47", "A48", "A49", "A410",
            ],
            Free,
        ),
        column("credit amount", &[], Free),
        column("savings", &["A61", "A62", "A63", "A64", "A65"], Free),
        column(
            "employment since",
            &["A71", "A72", "A73", "A74", "A75"],
            Free,
        ),
        column("installment rate", &[], Free),
        column(
            "personal status and sex",
            &["A91", "A92", "A93", "A94", "A95"],
            Immutable,
        ),
        column("other debtors", &["A101", "A102", "A103"], Free),
        column("residence since", &[], Free),
        column("property", &["A121", "A122", "A123", "A124"], Free),
        column("age", &[], IncreaseOnly),
        column("other installment plans", &["A141", "A142", "A143"], Free),
        column("housing", &["A151", "A152", "A153"], Free),
        column("existing credits", &[], Free),
        column("job", &["A171", "A172", "A173", "A174"], Free),
        column("people liable", &[], Free),
        column("telephone", &["A191", "A192"], Free),
        column("foreign worker", &["A201", "A202"], Immutable),
    ]
}

/// German Credit: 1000 applicants; class 1 = good credit (the file's 1), class 0 = bad (its 2).
pub fn german_credit() -> Result<Table> {
    let text = gunzip(GERMAN_GZ, "German Credit")?;
    let columns = german_columns();
    let (mut rows, mut labels) = (Vec::with_capacity(1000), Vec::with_capacity(1000));
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = |m: String| Error::invalid(format!("embedded German Credit row {}: {m}", i + 1));
        if f.len() != 21 {
            return Err(bad(format!("{} fields, not 21", f.len())));
        }
        let row = columns
            .iter()
            .zip(&f)
            .map(|(c, v)| {
                if c.levels.is_empty() {
                    v.parse::<f64>()
                        .map(Value::Number)
                        .map_err(|_| bad(format!("'{v}' is not a number")))
                } else {
                    c.levels
                        .iter()
                        .position(|l| l == v)
                        .map(Value::Level)
                        .ok_or_else(|| bad(format!("'{v}' is not a level of {}", c.name)))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        labels.push(match f[20] {
            "1" => 1,
            "2" => 0,
            other => return Err(bad(format!("class '{other}'"))),
        });
        rows.push(row);
    }
    Ok(Table {
        name: "german".into(),
        columns,
        rows,
        labels,
        classes: ["bad credit".into(), "good credit".into()],
    })
}

/// The 30 features of the Wisconsin diagnostic data, as scikit-learn names them.
const BREAST_CANCER_FEATURES: [&str; 30] = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "mean compactness",
    "mean concavity",
    "mean concave points",
    "mean symmetry",
    "mean fractal dimension",
    "radius error",
    "texture error",
    "perimeter error",
    "area error",
    "smoothness error",
    "compactness error",
    "concavity error",
    "concave points error",
    "symmetry error",
    "fractal dimension error",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
    "worst concave points",
    "worst symmetry",
    "worst fractal dimension",
];

/// Breast cancer: 569 tumours; class 0 = malignant, class 1 = benign (scikit-learn's coding).
pub fn breast_cancer() -> Result<Table> {
    let text = gunzip(BREAST_CANCER_GZ, "breast-cancer")?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    if lines.next() != Some("569,30,malignant,benign") {
        return Err(Error::invalid(
            "embedded breast-cancer data has an unexpected header",
        ));
    }
    let (mut rows, mut labels) = (Vec::with_capacity(569), Vec::with_capacity(569));
    for (i, line) in lines.enumerate() {
        let v: Vec<f64> = line
            .split(',')
            .map(|s| s.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("embedded breast-cancer row {}: {e}", i + 1)))?;
        if v.len() != 31 || !(v[30] == 0.0 || v[30] == 1.0) {
            return Err(Error::invalid(format!(
                "embedded breast-cancer row {} is not 30 values and a 0/1 class",
                i + 1
            )));
        }
        labels.push(v[30] as u32);
        rows.push(v[..30].iter().map(|&x| Value::Number(x)).collect());
    }
    Ok(Table {
        name: "breast-cancer".into(),
        columns: BREAST_CANCER_FEATURES
            .iter()
            .map(|n| column(n, &[], Mutability::Free))
            .collect(),
        rows,
        labels,
        classes: ["malignant".into(), "benign".into()],
    })
}

/// The embedded table a data spec names (`german`, `breast-cancer`), or `None` for other data.
pub fn of_spec(spec: &super::DataSpec) -> Result<Option<Table>> {
    Ok(match spec {
        super::DataSpec::German => Some(german_credit()?),
        super::DataSpec::BreastCancer => Some(breast_cancer()?),
        _ => None,
    })
}

/// The file next to a model trained on an embedded table that records its [`Encoding`] (statistics included).
pub const ENCODING_FILE: &str = "encoding.json";

impl Table {
    /// The encoding of this table (statistics of all rows; a constant column keeps std 1).
    pub fn encoding(&self) -> Encoding {
        let (mut offsets, mut mean, mut std, mut min, mut max) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut features = 0;
        for (j, c) in self.columns.iter().enumerate() {
            offsets.push(features);
            if c.levels.is_empty() {
                let col: Vec<f64> = self
                    .rows
                    .iter()
                    .map(|r| match r[j] {
                        Value::Number(v) => v,
                        Value::Level(l) => l as f64,
                    })
                    .collect();
                let n = col.len().max(1) as f64;
                let m = col.iter().sum::<f64>() / n;
                let sd = (col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
                mean.push(m);
                std.push(if sd > 0.0 { sd } else { 1.0 });
                min.push(col.iter().cloned().fold(f64::INFINITY, f64::min));
                max.push(col.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
                features += 1;
            } else {
                mean.push(0.0);
                std.push(1.0);
                min.push(0.0);
                max.push(1.0);
                features += c.levels.len();
            }
        }
        Encoding {
            columns: self.columns.clone(),
            offsets,
            mean,
            std,
            min,
            max,
            features,
        }
    }

    /// The encoded data set (one-hot categories, standardized numbers) and its encoding.
    pub fn encode(&self) -> Result<(Dataset, Encoding)> {
        let enc = self.encoding();
        let mut x = Vec::with_capacity(self.rows.len() * enc.features);
        for r in &self.rows {
            x.extend(enc.encode_row(r)?);
        }
        let d = Dataset::new(
            self.name.clone(),
            x,
            vec![enc.features],
            Target::Classes {
                labels: self.labels.clone(),
                n_classes: 2,
            },
        )?;
        Ok((d, enc))
    }
}

impl Encoding {
    /// The features of a raw row.
    pub fn encode_row(&self, row: &[Value]) -> Result<Vec<f32>> {
        if row.len() != self.columns.len() {
            return Err(Error::Shape(format!(
                "a row of {} values for {} columns",
                row.len(),
                self.columns.len()
            )));
        }
        let mut out = vec![0.0f32; self.features];
        for (j, (c, v)) in self.columns.iter().zip(row).enumerate() {
            let at = self.offsets[j];
            match (c.levels.is_empty(), v) {
                (true, Value::Number(x)) if x.is_finite() => {
                    out[at] = ((x - self.mean[j]) / self.std[j]) as f32
                }
                (false, Value::Level(l)) if *l < c.levels.len() => out[at + l] = 1.0,
                _ => {
                    return Err(Error::invalid(format!(
                        "column '{}': {v:?} is not a value it takes",
                        c.name
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The raw row of a feature vector: numbers unstandardized, each one-hot group read by its largest entry.
    pub fn decode_row(&self, x: &[f32]) -> Result<Vec<Value>> {
        if x.len() != self.features {
            return Err(Error::Shape(format!(
                "{} features, the encoding has {}",
                x.len(),
                self.features
            )));
        }
        Ok(self
            .columns
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let at = self.offsets[j];
                if c.levels.is_empty() {
                    Value::Number(x[at] as f64 * self.std[j] + self.mean[j])
                } else {
                    Value::Level(crate::explain::argmax(&x[at..at + c.levels.len()]))
                }
            })
            .collect())
    }

    /// Makes every one-hot group of a feature vector one-hot again, at its largest entry (a counterfactual
    /// search moves the entries continuously).
    pub fn round_groups(&self, x: &mut [f32]) {
        for (j, c) in self.columns.iter().enumerate() {
            if c.levels.is_empty() {
                continue;
            }
            let g = &mut x[self.offsets[j]..self.offsets[j] + c.levels.len()];
            let k = crate::explain::argmax(g);
            g.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = (i == k) as u8 as f32);
        }
    }

    /// Each feature's box in encoded units: the raw range of a numeric column, [0, 1] for a one-hot entry.
    pub fn feature_box(&self) -> (Vec<f32>, Vec<f32>) {
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        for (j, c) in self.columns.iter().enumerate() {
            if c.levels.is_empty() {
                lo.push(((self.min[j] - self.mean[j]) / self.std[j]) as f32);
                hi.push(((self.max[j] - self.mean[j]) / self.std[j]) as f32);
            } else {
                lo.extend(std::iter::repeat_n(0.0, c.levels.len()));
                hi.extend(std::iter::repeat_n(1.0, c.levels.len()));
            }
        }
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_credit_has_the_uci_counts() {
        let t = german_credit().unwrap();
        assert_eq!((t.rows.len(), t.columns.len()), (1000, 20));
        // german.doc: 700 good and 300 bad applicants.
        assert_eq!(t.labels.iter().filter(|&&l| l == 1).count(), 700);
        // The first applicant: A11 6 A34 A43 1169 ... age 67.
        assert_eq!(t.rows[0][0], Value::Level(0));
        assert_eq!(t.rows[0][4], Value::Number(1169.0));
        assert_eq!(t.rows[0][12], Value::Number(67.0));
        let (d, enc) = t.encode().unwrap();
        // 7 numeric columns and the 56 levels of german.doc (A47 and A95 never occur in the file).
        assert_eq!(d.feature_dim(), 63);
        assert_eq!(enc.features, 63);
        // Round trip of every row.
        for (i, r) in t.rows.iter().enumerate() {
            let back = enc.decode_row(&d.x[i * 63..(i + 1) * 63]).unwrap();
            for (a, b) in r.iter().zip(&back) {
                match (a, b) {
                    (Value::Number(p), Value::Number(q)) => {
                        assert!((p - q).abs() < 1e-3 * p.abs().max(1.0))
                    }
                    _ => assert_eq!(a, b),
                }
            }
        }
        assert!(enc.encode_row(&t.rows[0][..5]).is_err());
    }

    #[test]
    fn breast_cancer_has_sklearns_counts_and_scales() {
        let t = breast_cancer().unwrap();
        assert_eq!((t.rows.len(), t.columns.len()), (569, 30));
        assert_eq!(t.labels.iter().filter(|&&l| l == 1).count(), 357);
        let enc = t.encoding();
        // scikit-learn: mean radius has mean 14.127291739894552 and std 3.520950760711062 (population).
        assert!((enc.mean[0] - 14.127291739894552).abs() < 1e-9);
        assert!((enc.std[0] - 3.520950760711062).abs() < 1e-9);
        let (lo, hi) = enc.feature_box();
        assert!(lo.iter().zip(&hi).all(|(a, b)| a < b));
    }
}
