//! Data from a safetensors file: a features tensor `[n, ...]` and a labels tensor `[n]` (integer classes) or
//! `[n, k]` / `[n]` float targets.

use super::{Dataset, Target};
use crate::tensor_io::read_safetensors;
use crate::{Error, Result};
use candle_core::DType;
use std::path::Path;

/// Loads tensors `x_name` and `y_name` from `path`. Integer (`u8`, `u32`, `i64`) labels make a classification
/// set; float labels a regression set.
pub fn load_safetensors_data(path: &Path, x_name: &str, y_name: &str) -> Result<Dataset> {
    let t = read_safetensors(path)?;
    let names = || {
        let mut k: Vec<&String> = t.keys().collect();
        k.sort();
        k.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    };
    let x = t.get(x_name).ok_or_else(|| {
        Error::file(
            path,
            format!("no tensor named '{x_name}' (found: {})", names()),
        )
    })?;
    let y = t.get(y_name).ok_or_else(|| {
        Error::file(
            path,
            format!("no tensor named '{y_name}' (found: {})", names()),
        )
    })?;
    if x.rank() < 2 {
        return Err(Error::file(
            path,
            format!(
                "features '{x_name}' must be [n, ...], got shape {:?}",
                x.dims()
            ),
        ));
    }
    let n = x.dims()[0];
    if y.dims().first() != Some(&n) || y.rank() > 2 {
        return Err(Error::file(
            path,
            format!(
                "labels '{y_name}' of shape {:?} do not match {n} examples",
                y.dims()
            ),
        ));
    }
    let xs: Vec<f32> = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    let target = match y.dtype() {
        DType::U8 | DType::U32 | DType::I64 => {
            if y.rank() != 1 {
                return Err(Error::file(
                    path,
                    format!("integer labels '{y_name}' must be [n], got {:?}", y.dims()),
                ));
            }
            let v: Vec<f64> = y.to_dtype(DType::F64)?.to_vec1()?;
            let (labels, n_classes) = super::class_labels(&v, |i| format!("label {i}"))
                .map_err(|m| Error::file(path, m))?;
            Target::Classes { labels, n_classes }
        }
        _ => {
            let dim = if y.rank() == 2 { y.dims()[1] } else { 1 };
            Target::Values {
                y: y.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
                dim,
            }
        }
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("safetensors")
        .to_string();
    Dataset::new(name, xs, x.dims()[1..].to_vec(), target)
        .map_err(|e| Error::file(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor_io::write_safetensors;
    use candle_core::{Device, Tensor};

    #[test]
    fn loads_and_rejects() {
        let d = std::env::temp_dir().join(format!("optlab-std-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("d.safetensors");
        let x = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[0u32, 2, 1], &Device::Cpu).unwrap();
        write_safetensors(&p, &[("x".into(), x.clone()), ("y".into(), y)], None).unwrap();
        let ds = load_safetensors_data(&p, "x", "y").unwrap();
        assert_eq!(
            ds.target,
            Target::Classes {
                labels: vec![0, 2, 1],
                n_classes: 3
            }
        );
        let e = load_safetensors_data(&p, "features", "y")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no tensor named 'features'") && e.contains("found: x, y"),
            "{e}"
        );
        let y2 = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        write_safetensors(&p, &[("x".into(), x), ("y".into(), y2)], None).unwrap();
        let e = load_safetensors_data(&p, "x", "y").unwrap_err().to_string();
        assert!(e.contains("do not match 3 examples"), "{e}");
    }
}
