//! [`DataSpec`]: which data set a run uses, as a typed value. Parsed from the spec strings users write
//! (`digits`, `moons:n=1000,noise=0.1`, `csv:path=data.csv,label=y`, ...) with errors that list the valid names
//! and keys; `Display` writes the canonical spec back; [`DataSpec::load`] reads or generates the data.

use super::{
    char_lines, char_windows, digits, gaussian_mixture, linear_regression, load_csv, load_idx_pair,
    load_safetensors_data, read_text, shakespeare, two_moons, two_spirals, Dataset,
};
use crate::spec::unknown_name;
use crate::{Error, Result, Spec};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The names [`DataSpec`] knows.
pub const DATA_NAMES: &[&str] = &[
    "digits",
    "moons",
    "spirals",
    "gaussians",
    "linreg",
    "csv",
    "idx",
    "safetensors",
    "text",
    "digits-binary",
    "randhie",
    "german",
    "breast-cancer",
];

/// How a text becomes examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextUnit {
    /// Windows of `context` characters, each predicting the next characters.
    Window,
    /// One right-padded line per example.
    Line,
}

/// A data set.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DataSpec {
    /// The embedded UCI digits (1797 8x8 images, 10 classes).
    #[default]
    Digits,
    /// The digits as a binary task: 0-4 (class 0) against 5-9 (class 1).
    DigitsBinary,
    /// The embedded RAND HIE regression set (doctor visits from nine covariates, standardized).
    Randhie,
    /// The embedded German Credit data (one-hot categories, standardized numbers; class 1 = good credit).
    German,
    /// The embedded Wisconsin breast-cancer data (standardized; class 1 = benign).
    BreastCancer,
    /// Two interleaved half circles.
    Moons { n: usize, noise: f64 },
    /// Interleaved spirals.
    Spirals {
        n: usize,
        classes: usize,
        noise: f64,
    },
    /// A mixture of Gaussian blobs.
    Gaussians {
        n: usize,
        classes: usize,
        dim: usize,
        spread: f64,
    },
    /// Linear regression with Gaussian noise.
    Linreg { n: usize, dim: usize, noise: f64 },
    /// A CSV file with a header row; `label` names the target column (the last one when `None`).
    Csv {
        path: PathBuf,
        label: Option<String>,
        regression: bool,
    },
    /// An IDX (MNIST-format) image and label file pair; pixel values are divided by `scale`.
    Idx {
        images: PathBuf,
        labels: PathBuf,
        scale: f64,
    },
    /// Tensors `x` and `y` of a safetensors file.
    Safetensors { path: PathBuf, x: String, y: String },
    /// Characters of a text (the embedded Shakespeare excerpt when `path` is `None`).
    Text {
        context: usize,
        unit: TextUnit,
        path: Option<PathBuf>,
    },
}

impl DataSpec {
    /// Bytes a synthetic set takes to generate (`None` for files and the embedded sets, bounded by their size).
    fn generated_bytes(&self) -> Option<f64> {
        let f = |v: usize| v as f64;
        // f64 generation, then f32 features and targets.
        let per = |n: usize, dim: usize| f(n) * (f(dim) + 1.0) * 12.0;
        match *self {
            DataSpec::Moons { n, .. } | DataSpec::Spirals { n, .. } => Some(per(n, 2)),
            // The mixture's class means too.
            DataSpec::Gaussians {
                n, dim, classes, ..
            } => Some(per(n, dim) + f(classes) * f(dim) * 8.0),
            DataSpec::Linreg { n, dim, .. } => Some(per(n, dim)),
            _ => None,
        }
    }

    /// Reads or generates the data; synthetic sets draw from `seed`. A synthetic set larger than the memory
    /// available is refused before it is generated.
    pub fn load(&self, seed: u64) -> Result<Dataset> {
        if let Some(bytes) = self.generated_bytes() {
            crate::memory::check(&format!("the data set `{self}`"), bytes, "lower n or dim")?;
        }
        match self {
            DataSpec::Digits => digits(),
            DataSpec::DigitsBinary => super::digits::digits_binary(),
            DataSpec::Randhie => super::randhie::randhie_standardized(),
            DataSpec::German => Ok(super::tabular::german_credit()?.encode()?.0),
            DataSpec::BreastCancer => Ok(super::tabular::breast_cancer()?.encode()?.0),
            DataSpec::Moons { n, noise } => two_moons(*n, *noise, seed),
            DataSpec::Spirals { n, classes, noise } => two_spirals(*n, *classes, *noise, seed),
            DataSpec::Gaussians {
                n,
                classes,
                dim,
                spread,
            } => gaussian_mixture(*n, *classes, *dim, *spread, seed),
            DataSpec::Linreg { n, dim, noise } => linear_regression(*n, *dim, *noise, seed),
            DataSpec::Csv {
                path,
                label,
                regression,
            } => load_csv(path, label.as_deref(), *regression),
            DataSpec::Idx {
                images,
                labels,
                scale,
            } => load_idx_pair(images, labels, *scale),
            DataSpec::Safetensors { path, x, y } => load_safetensors_data(path, x, y),
            DataSpec::Text {
                context,
                unit,
                path,
            } => {
                let cut = match unit {
                    TextUnit::Window => char_windows,
                    TextUnit::Line => char_lines,
                };
                match path {
                    None => cut("shakespeare", &shakespeare()?, *context),
                    Some(p) => cut("text", &read_text(p)?, *context)
                        .map_err(|e| Error::file(p, e.to_string())),
                }
            }
        }
    }

    /// Whether the examples are token sequences (the language-model task).
    pub fn is_text(&self) -> bool {
        matches!(self, DataSpec::Text { .. })
    }
}

fn required_path(s: &mut Spec, key: &'static str) -> Result<PathBuf> {
    let v = s.string(key, "");
    if v.is_empty() {
        return Err(Error::invalid(format!(
            "{}: the key '{key}' (a file path) is required, e.g. {}:{key}=file",
            s.name, s.name
        )));
    }
    Ok(PathBuf::from(v))
}

impl FromStr for DataSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let mut s = Spec::parse(spec)?;
        let d = match s.name.as_str() {
            "digits" => DataSpec::Digits,
            "digits-binary" => DataSpec::DigitsBinary,
            "randhie" => DataSpec::Randhie,
            "german" => DataSpec::German,
            "breast-cancer" => DataSpec::BreastCancer,
            "moons" => DataSpec::Moons {
                n: s.usize("n", 1000)?,
                noise: s.f64("noise", 0.1)?,
            },
            "spirals" => DataSpec::Spirals {
                n: s.usize("n", 1000)?,
                classes: s.usize("classes", 2)?,
                noise: s.f64("noise", 0.2)?,
            },
            "gaussians" => DataSpec::Gaussians {
                n: s.usize("n", 1000)?,
                classes: s.usize("classes", 4)?,
                dim: s.usize("dim", 2)?,
                spread: s.f64("spread", 1.0)?,
            },
            "linreg" => DataSpec::Linreg {
                n: s.usize("n", 1000)?,
                dim: s.usize("dim", 8)?,
                noise: s.f64("noise", 0.1)?,
            },
            "csv" => {
                let path = required_path(&mut s, "path")?;
                let label = s.string("label", "");
                let regression = match s.string("task", "classification").as_str() {
                    "classification" => false,
                    "regression" => true,
                    other => {
                        return Err(Error::invalid(format!(
                            "csv: task={other} must be classification or regression"
                        )))
                    }
                };
                DataSpec::Csv {
                    path,
                    label: (!label.is_empty()).then_some(label),
                    regression,
                }
            }
            "idx" => DataSpec::Idx {
                images: required_path(&mut s, "images")?,
                labels: required_path(&mut s, "labels")?,
                scale: s.f64("scale", 255.0)?,
            },
            "safetensors" => DataSpec::Safetensors {
                path: required_path(&mut s, "path")?,
                x: s.string("x", "x"),
                y: s.string("y", "y"),
            },
            "text" => {
                let context = s.usize("context", 64)?;
                let path = s.string("path", "");
                let unit = match s.string("unit", "window").as_str() {
                    "window" => TextUnit::Window,
                    "line" => TextUnit::Line,
                    other => {
                        return Err(Error::invalid(format!(
                            "text: unit={other} must be window or line"
                        )))
                    }
                };
                DataSpec::Text {
                    context,
                    unit,
                    path: (!path.is_empty()).then(|| PathBuf::from(path)),
                }
            }
            other => return Err(unknown_name("data set", other, DATA_NAMES)),
        };
        s.finish()?;
        Ok(d)
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Digits => write!(f, "digits"),
            DataSpec::DigitsBinary => write!(f, "digits-binary"),
            DataSpec::Randhie => write!(f, "randhie"),
            DataSpec::German => write!(f, "german"),
            DataSpec::BreastCancer => write!(f, "breast-cancer"),
            DataSpec::Moons { n, noise } => write!(f, "moons:n={n},noise={noise}"),
            DataSpec::Spirals { n, classes, noise } => {
                write!(f, "spirals:n={n},classes={classes},noise={noise}")
            }
            DataSpec::Gaussians {
                n,
                classes,
                dim,
                spread,
            } => write!(
                f,
                "gaussians:n={n},classes={classes},dim={dim},spread={spread}"
            ),
            DataSpec::Linreg { n, dim, noise } => write!(f, "linreg:n={n},dim={dim},noise={noise}"),
            DataSpec::Csv {
                path,
                label,
                regression,
            } => {
                write!(f, "csv:path={}", path.display())?;
                if let Some(l) = label {
                    write!(f, ",label={l}")?;
                }
                if *regression {
                    write!(f, ",task=regression")?;
                }
                Ok(())
            }
            DataSpec::Idx {
                images,
                labels,
                scale,
            } => write!(
                f,
                "idx:images={},labels={},scale={scale}",
                images.display(),
                labels.display()
            ),
            DataSpec::Safetensors { path, x, y } => {
                write!(f, "safetensors:path={},x={x},y={y}", path.display())
            }
            DataSpec::Text {
                context,
                unit,
                path,
            } => {
                write!(f, "text:context={context}")?;
                if *unit == TextUnit::Line {
                    write!(f, ",unit=line")?;
                }
                if let Some(p) = path {
                    write!(f, ",path={}", p.display())?;
                }
                Ok(())
            }
        }
    }
}

crate::spec::serde_via_string!(DataSpec);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_errors_list_what_is_valid() {
        for s in [
            "digits",
            "moons:n=200,noise=0.2",
            "csv:path=d.csv,label=y,task=regression",
            "idx:images=a,labels=b,scale=255",
            "text:context=32,unit=line",
            "safetensors:path=d.st,x=x,y=y",
            "digits-binary",
            "randhie",
            "german",
            "breast-cancer",
        ] {
            let d: DataSpec = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<DataSpec>().unwrap(), d, "{s}");
        }
        let e = "digit".parse::<DataSpec>().unwrap_err().to_string();
        assert!(e.contains("available: digits, moons"), "{e}");
        let e = "moons:m=3".parse::<DataSpec>().unwrap_err().to_string();
        assert!(e.contains("valid keys: n, noise"), "{e}");
        assert!("csv".parse::<DataSpec>().is_err());
        assert_eq!(
            DataSpec::Moons { n: 50, noise: 0.1 }.load(0).unwrap().len(),
            50
        );
    }
}
