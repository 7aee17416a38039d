//! CSV loader: a header row, numeric feature columns and one label column.

use super::{Dataset, Target};
use crate::error::PathContext;
use crate::{Error, Result};
use std::path::Path;

/// A numeric CSV table: the header's column names and the rows, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericTable {
    pub names: Vec<String>,
    /// `rows × names.len()` values.
    pub values: Vec<f64>,
    pub rows: usize,
    /// The file's line number of each row (for messages).
    pub lines: Vec<usize>,
}

impl NumericTable {
    /// The number of columns.
    pub fn cols(&self) -> usize {
        self.names.len()
    }
}

/// Reads a CSV with a header row whose every cell is a finite number; an error names the file, the line and the
/// column.
pub fn read_numeric_csv(path: &Path) -> Result<NumericTable> {
    let text = std::fs::read_to_string(path).at_path(path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| {
        Error::file(
            path,
            "the file is empty; expected a header row and data rows",
        )
    })?;
    let names: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
    let mut values = Vec::new();
    let mut line_numbers = Vec::new();
    for (lineno, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != names.len() {
            return Err(Error::file(
                path,
                format!(
                    "line {}: {} cells, but the header has {} columns ({} values for {} names)",
                    lineno + 1,
                    cells.len(),
                    names.len(),
                    cells.len(),
                    names.len()
                ),
            ));
        }
        for (j, cell) in cells.iter().enumerate() {
            let v: f64 = cell.parse().map_err(|_| {
                Error::file(
                    path,
                    format!(
                        "line {}, column '{}': '{cell}' is not a number",
                        lineno + 1,
                        names[j]
                    ),
                )
            })?;
            if !v.is_finite() {
                return Err(Error::file(
                    path,
                    format!(
                        "line {}, column '{}': value is {cell}; values must be finite",
                        lineno + 1,
                        names[j]
                    ),
                ));
            }
            values.push(v);
        }
        line_numbers.push(lineno + 1);
    }
    Ok(NumericTable {
        names,
        values,
        rows: line_numbers.len(),
        lines: line_numbers,
    })
}

/// Writes rows of numbers as CSV under a header of `names`, atomically.
pub fn write_numeric_csv(path: &Path, names: &[String], rows: &[Vec<f64>]) -> Result<()> {
    let mut out = names.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    crate::tensor_io::write_atomic(path, out.as_bytes())
}

/// Loads `path`. The label column is `label` by name, or the last column when `None`. For classification the
/// labels must be non-negative integers (classes `0..=max`); with `regression` they are real values.
pub fn load_csv(path: &Path, label: Option<&str>, regression: bool) -> Result<Dataset> {
    let table = read_numeric_csv(path)?;
    let cols = table.cols();
    if cols < 2 {
        return Err(Error::file(
            path,
            "expected at least two columns (features and a label) in the header row",
        ));
    }
    let label_col = match label {
        None => cols - 1,
        Some(name) => table.names.iter().position(|c| c == name).ok_or_else(|| {
            Error::file(
                path,
                format!(
                    "no column named '{name}' in the header ({})",
                    table.names.join(", ")
                ),
            )
        })?,
    };
    if table.rows == 0 {
        return Err(Error::file(path, "no data rows after the header"));
    }
    let mut x = Vec::with_capacity(table.rows * (cols - 1));
    let mut y = Vec::with_capacity(table.rows);
    for row in table.values.chunks(cols) {
        for (j, &v) in row.iter().enumerate() {
            if j == label_col {
                y.push(v);
            } else {
                x.push(v as f32);
            }
        }
    }
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("csv")
        .to_string();
    let target = if regression {
        Target::Values {
            y: y.iter().map(|&v| v as f32).collect(),
            dim: 1,
        }
    } else {
        let (labels, n_classes) = super::class_labels(&y, |i| format!("line {}", table.lines[i]))
            .map_err(|m| Error::file(path, m))?;
        Target::Classes { labels, n_classes }
    };
    Dataset::new(name, x, vec![cols - 1], target).map_err(|e| Error::file(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("optlab-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_by_name_or_last_column() {
        let p = write("ok.csv", "a,label,b\n1,0,2\n3,2,4\n");
        let d = load_csv(&p, Some("label"), false).unwrap();
        assert_eq!(d.x, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            d.target,
            Target::Classes {
                labels: vec![0, 2],
                n_classes: 3
            }
        );
        let d = load_csv(&p, None, true).unwrap();
        assert_eq!(
            d.target,
            Target::Values {
                y: vec![2.0, 4.0],
                dim: 1
            }
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let cases = [
            ("empty.csv", "", "empty"),
            (
                "nonnum.csv",
                "a,y\n1,0\nx,1\n",
                "line 3, column 'a': 'x' is not a number",
            ),
            ("ragged.csv", "a,b,y\n1,2,0\n1,0\n", "line 3: 2 cells"),
            ("frac.csv", "a,y\n1,0.5\n", "not a non-negative integer"),
            ("nan.csv", "a,y\nnan,1\n", "value is nan"),
            ("header.csv", "a,y\n", "no data rows"),
        ];
        for (name, text, want) in cases {
            let p = write(name, text);
            let e = load_csv(&p, None, false).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        }
        let p = write("nolabel.csv", "a,b\n1,2\n");
        let e = load_csv(&p, Some("target"), false).unwrap_err().to_string();
        assert!(e.contains("no column named 'target'"), "{e}");
        let e = load_csv(Path::new("/nonexistent/x.csv"), None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.csv"), "{e}");
    }
}
