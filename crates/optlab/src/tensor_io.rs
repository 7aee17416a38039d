//! Reading and writing safetensors files with errors that name the file, and atomic writes.

use crate::error::PathContext;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Reads every tensor of a safetensors file. A truncated or corrupt file is an error naming it.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).at_path(path)?;
    parse_safetensors(&bytes).map_err(|e| Error::file(path, e))
}

/// Reads the `__metadata__` map of a safetensors file.
pub fn read_safetensors_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).at_path(path)?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::file(path, format!("not a valid safetensors file ({e})")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Parses safetensors bytes (what [`read_safetensors`] reads from a file); any malformed input is an error.
pub fn parse_safetensors_bytes(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    parse_safetensors(bytes).map_err(Error::invalid)
}

fn parse_safetensors(bytes: &[u8]) -> std::result::Result<HashMap<String, Tensor>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::U8 => DType::U8,
            safetensors::Dtype::U32 => DType::U32,
            safetensors::Dtype::I64 => DType::I64,
            other => return Err(format!("tensor '{name}' has unsupported dtype {other:?}")),
        };
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
            .map_err(|e| format!("tensor '{name}': {e}"))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Writes tensors (any order; stored sorted by name) with optional string metadata, atomically: the file is
/// written beside its destination and renamed, so a crash never leaves half a file. safetensors stores the
/// metadata map in hash order: pass at most one key when files must be byte-reproducible.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::file(
            path,
            format!("cannot write two tensors named '{}'", w[0]),
        ));
    }
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        owned.push((name.clone(), t));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, t)| Ok((n.clone(), TensorView::new(t)?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| Error::file(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &bytes)
}

/// A fresh temporary path beside `path` (the same directory, so a rename over `path` is atomic), unique to this
/// process and call, hidden, and ending in `path`'s extension (for writers that infer the format from it).
pub fn temp_beside(path: &Path) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = format!("{}-{n}", std::process::id());
    let tmp = match path.extension() {
        Some(ext) => format!(".{name}.{tag}.tmp.{}", ext.to_string_lossy()),
        None => format!(".{name}.{tag}.tmp"),
    };
    path.with_file_name(tmp)
}

/// Writes `bytes` to `path` through a temporary file of its own and a rename; a failure leaves `path` as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path);
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).at_path(&tmp)?;
        f.write_all(bytes).at_path(&tmp)?;
        f.sync_all().at_path(&tmp)?;
        std::fs::rename(&tmp, path).at_path(path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // Make the rename itself durable before anything relies on it (e.g. deleting an older checkpoint).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

struct TensorView {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl TensorView {
    fn new(t: &Tensor) -> Result<Self> {
        let (dtype, data): (safetensors::Dtype, Vec<u8>) = match t.dtype() {
            DType::F32 => (
                safetensors::Dtype::F32,
                le_bytes(&t.flatten_all()?.to_vec1::<f32>()?),
            ),
            DType::F64 => (
                safetensors::Dtype::F64,
                le_bytes(&t.flatten_all()?.to_vec1::<f64>()?),
            ),
            DType::U32 => (
                safetensors::Dtype::U32,
                le_bytes(&t.flatten_all()?.to_vec1::<u32>()?),
            ),
            DType::I64 => (
                safetensors::Dtype::I64,
                le_bytes(&t.flatten_all()?.to_vec1::<i64>()?),
            ),
            DType::U8 => (safetensors::Dtype::U8, t.flatten_all()?.to_vec1::<u8>()?),
            other => {
                return Err(Error::invalid(format!(
                    "cannot save tensors of dtype {other:?}; convert to f32 or f64"
                )))
            }
        };
        Ok(TensorView {
            dtype,
            shape: t.dims().to_vec(),
            data,
        })
    }
}

trait LeBytes: Copy {
    fn put(self, out: &mut Vec<u8>);
}
macro_rules! le_bytes_impl {
    ($($t:ty),*) => {$(impl LeBytes for $t { fn put(self, out: &mut Vec<u8>) { out.extend_from_slice(&self.to_le_bytes()) } })*};
}
le_bytes_impl!(f32, f64, u32, i64);

fn le_bytes<T: LeBytes>(v: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(v));
    for x in v {
        x.put(&mut out);
    }
    out
}

impl safetensors::View for TensorView {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("optlab-tio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.safetensors");
        let t = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors(&p, &[("w".into(), t.clone())], Some(meta)).unwrap();
        let back = read_safetensors(&p).unwrap();
        assert_eq!(
            back["w"].to_vec2::<f32>().unwrap(),
            t.to_vec2::<f32>().unwrap()
        );
        assert_eq!(read_safetensors_metadata(&p).unwrap()["k"], "v");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = read_safetensors(&p).unwrap_err().to_string();
        assert!(
            e.contains("a.safetensors") && e.contains("not a valid safetensors"),
            "{e}"
        );
        std::fs::write(&p, b"garbage").unwrap();
        assert!(read_safetensors(&p).is_err());
        // Two tensors of one name: refused, not a panic inside the serializer.
        let twice = [("w".to_string(), t.clone()), ("w".to_string(), t)];
        let e = write_safetensors(&p, &twice, None).unwrap_err().to_string();
        assert!(e.contains("two tensors named 'w'"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
