//! IDX files (the MNIST format): magic `0 0 type ndim`, `ndim` big-endian u32 sizes, then the data big-endian.

use super::{Dataset, Target};
use crate::error::PathContext;
use crate::{Error, Result};
use std::path::Path;

/// The contents of one IDX file, converted to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// The dimension sizes.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f64>,
}

/// Reads an IDX file of any of its element types (u8, i8, i16, i32, f32, f64).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).at_path(path)?;
    parse_idx(&bytes).map_err(|m| Error::file(path, m))
}

fn parse_idx(b: &[u8]) -> std::result::Result<IdxArray, String> {
    if b.len() < 4 {
        return Err(format!(
            "truncated IDX file: {} bytes, the header alone needs 4",
            b.len()
        ));
    }
    if b[0] != 0 || b[1] != 0 {
        return Err("not an IDX file: the first two bytes must be zero".into());
    }
    let (width, name) = match b[2] {
        0x08 => (1, "u8"),
        0x09 => (1, "i8"),
        0x0B => (2, "i16"),
        0x0C => (4, "i32"),
        0x0D => (4, "f32"),
        0x0E => (8, "f64"),
        t => return Err(format!("unknown IDX element type 0x{t:02X}")),
    };
    let ndim = b[3] as usize;
    if ndim == 0 {
        return Err("IDX file declares zero dimensions".into());
    }
    let header = 4 + 4 * ndim;
    if b.len() < header {
        return Err(format!(
            "truncated IDX header: {} bytes for {ndim} dimensions",
            b.len()
        ));
    }
    let shape: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("IDX sizes overflow")?;
    let need = count
        .checked_mul(width)
        .and_then(|n| n.checked_add(header))
        .ok_or("IDX sizes overflow")?;
    if b.len() != need {
        return Err(format!(
            "{} IDX file of shape {shape:?} needs {need} bytes but has {} ({})",
            name,
            b.len(),
            if b.len() < need {
                "truncated"
            } else {
                "trailing bytes"
            }
        ));
    }
    let body = &b[header..];
    let data: Vec<f64> = match b[2] {
        0x08 => body.iter().map(|&v| v as f64).collect(),
        0x09 => body.iter().map(|&v| v as i8 as f64).collect(),
        0x0B => body
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]) as f64)
            .collect(),
        0x0C => body
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        0x0D => body
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        _ => body
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes(c.try_into().unwrap()))
            .collect(),
    };
    Ok(IdxArray { shape, data })
}

/// An images file (`[n, h, w]` or `[n, d]`) and a labels file (`[n]`) as a classification set of examples
/// `[1, h, w]` (or `[d]`), pixel values divided by `scale`.
pub fn load_idx_pair(images: &Path, labels: &Path, scale: f64) -> Result<Dataset> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::invalid(format!(
            "idx: scale={scale} must be positive"
        )));
    }
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    if lb.shape.len() != 1 {
        return Err(Error::file(
            labels,
            format!("labels must be one-dimensional, got shape {:?}", lb.shape),
        ));
    }
    if im.shape[0] != lb.shape[0] {
        return Err(Error::Shape(format!(
            "{} has {} images but {} has {} labels",
            images.display(),
            im.shape[0],
            labels.display(),
            lb.shape[0]
        )));
    }
    let feature_shape = match im.shape.len() {
        2 => vec![im.shape[1]],
        3 => vec![1, im.shape[1], im.shape[2]],
        4 => im.shape[1..].to_vec(),
        _ => {
            return Err(Error::file(
                images,
                format!("images must have 2 to 4 dimensions, got {:?}", im.shape),
            ))
        }
    };
    let (ls, n_classes) = super::class_labels(&lb.data, |i| format!("label {i}"))
        .map_err(|m| Error::file(labels, m))?;
    let x = im.data.iter().map(|v| (v / scale) as f32).collect();
    let name = images
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("idx")
        .to_string();
    Dataset::new(
        name,
        x,
        feature_shape,
        Target::Classes {
            labels: ls,
            n_classes,
        },
    )
}

/// Encodes an array of u8 as IDX (used by tests and by users who convert data).
pub fn encode_idx_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, shape.len() as u8];
    for &d in shape {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("optlab-idx-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_images_and_labels() {
        let d = dir();
        let (ip, lp) = (d.join("img.idx3-ubyte"), d.join("lab.idx1-ubyte"));
        let pixels: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 10) as u8).collect();
        std::fs::write(&ip, encode_idx_u8(&[2, 3, 3], &pixels)).unwrap();
        std::fs::write(&lp, encode_idx_u8(&[2], &[7, 1])).unwrap();
        let ds = load_idx_pair(&ip, &lp, 255.0).unwrap();
        assert_eq!(ds.feature_shape, vec![1, 3, 3]);
        assert_eq!(
            ds.target,
            Target::Classes {
                labels: vec![7, 1],
                n_classes: 8
            }
        );
        assert!((ds.x[1] - 10.0 / 255.0).abs() < 1e-7);
        // f32 element type
        let mut f = vec![0, 0, 0x0D, 1, 0, 0, 0, 2];
        f.extend_from_slice(&1.5f32.to_be_bytes());
        f.extend_from_slice(&(-2.0f32).to_be_bytes());
        let fp = d.join("f.idx");
        std::fs::write(&fp, f).unwrap();
        assert_eq!(read_idx(&fp).unwrap().data, vec![1.5, -2.0]);
    }

    #[test]
    fn corrupt_files_are_clear_errors() {
        let d = dir();
        let good = encode_idx_u8(&[2, 3, 3], &[0; 18]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("short.idx", vec![0, 0], "truncated IDX file"),
            ("magic.idx", vec![1, 2, 8, 1, 0, 0, 0, 0], "not an IDX file"),
            (
                "type.idx",
                vec![0, 0, 0x42, 1, 0, 0, 0, 0],
                "unknown IDX element type 0x42",
            ),
            ("hdr.idx", vec![0, 0, 8, 3, 0, 0], "truncated IDX header"),
            ("trunc.idx", good[..good.len() - 5].to_vec(), "truncated"),
            (
                "long.idx",
                [good.clone(), vec![1]].concat(),
                "trailing bytes",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = d.join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = read_idx(&p).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        }
        let (ip, lp) = (d.join("i2.idx"), d.join("l2.idx"));
        std::fs::write(&ip, &good).unwrap();
        std::fs::write(&lp, encode_idx_u8(&[3], &[0, 1, 2])).unwrap();
        let e = load_idx_pair(&ip, &lp, 255.0).unwrap_err().to_string();
        assert!(e.contains("2 images") && e.contains("3 labels"), "{e}");
    }
}
