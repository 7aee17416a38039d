//! Character-level language-model data: a text cut into windows of `context` characters, each predicting the
//! next character at every position. The embedded default is the first 300 174 characters of Shakespeare's
//! plays as collected in karpathy/char-rnn's `tinyshakespeare` (public domain; `crates/optlab/data/README.md`).

use super::{Dataset, Target, IGNORE};
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

static SHAKESPEARE_GZ: &[u8] = include_bytes!("../../data/shakespeare.txt.gz");

/// The most distinct characters a text may have (a larger alphabet is almost always binary data).
pub const MAX_VOCAB: usize = 1024;

/// The embedded Shakespeare excerpt.
pub fn shakespeare() -> Result<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(SHAKESPEARE_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("embedded text data is corrupt: {e}")))?;
    Ok(text)
}

/// Reads a UTF-8 text file.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::file(
            path,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// The sorted distinct characters of `text`: token `i` is `vocab[i]`.
pub fn vocabulary(text: &str) -> Vec<char> {
    let mut v: Vec<char> = text.chars().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The vocabulary of `text` and its characters as token ids, refusing binary-looking alphabets.
fn tokenize(name: &str, text: &str) -> Result<(Vec<char>, Vec<u32>)> {
    let vocab = vocabulary(text);
    if vocab.len() > MAX_VOCAB {
        return Err(Error::invalid(format!(
            "{name}: {} distinct characters (at most {MAX_VOCAB}); is this a text file?",
            vocab.len()
        )));
    }
    let ids = text
        .chars()
        .map(|c| vocab.binary_search(&c).expect("in the vocabulary") as u32)
        .collect();
    Ok((vocab, ids))
}

/// A next-character data set of variable-length sequences: one example per non-blank line (with its newline),
/// cut to `context + 1` characters, inputs `line[..n−1]` and targets `line[1..n]`, right-padded to `context`
/// with the input id V (the vocabulary size: no embedding, excluded from normalization statistics) and the
/// target [`IGNORE`]. Batches then mix lengths and padding, the setting where P12 finds BatchNorm's statistics
/// unstable.
pub fn char_lines(name: &str, text: &str, context: usize) -> Result<Dataset> {
    if context == 0 {
        return Err(Error::invalid(format!(
            "{name}: context must be at least 1 character"
        )));
    }
    let (vocab, _) = tokenize(name, text)?;
    let v = vocab.len();
    let lines = text
        .split_inclusive('\n')
        .filter(|l| !l.trim().is_empty())
        .count();
    // Every line is padded to the context: features (f32) and targets (u32).
    crate::memory::check(
        &format!("{name} in lines padded to context={context}"),
        lines as f64 * context as f64 * 8.0,
        "use a shorter context",
    )?;
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for line in text.split_inclusive('\n').filter(|l| !l.trim().is_empty()) {
        let ids: Vec<u32> = line
            .chars()
            .take(context + 1)
            .map(|c| vocab.binary_search(&c).expect("in the vocabulary") as u32)
            .collect();
        if ids.len() < 2 {
            continue;
        }
        let n = ids.len() - 1;
        x.extend(ids[..n].iter().map(|&i| i as f32));
        x.extend(std::iter::repeat_n(v as f32, context - n));
        labels.extend_from_slice(&ids[1..]);
        labels.extend(std::iter::repeat_n(IGNORE, context - n));
    }
    if labels.len() < 2 * context {
        return Err(Error::invalid(format!(
            "{name}: fewer than two lines of at least two characters"
        )));
    }
    sequences(name, x, labels, context, v)
}

/// A next-character data set: windows `text[kT .. (k+1)T]` as token ids (features of shape `[T]`, stored as
/// exact small integers) with targets `text[kT+1 .. (k+1)T+1]`. Windows do not overlap, so a random split of
/// windows never shows a validation character as a training input.
pub fn char_windows(name: &str, text: &str, context: usize) -> Result<Dataset> {
    if context == 0 {
        return Err(Error::invalid(format!(
            "{name}: context must be at least 1 character"
        )));
    }
    let (vocab, ids) = tokenize(name, text)?;
    let n = ids.len().saturating_sub(1) / context;
    if n < 2 {
        return Err(Error::invalid(format!(
            "{name}: {} characters make fewer than two windows of {context}; give a longer text or a shorter context",
            ids.len()
        )));
    }
    let x: Vec<f32> = ids[..n * context].iter().map(|&i| i as f32).collect();
    let labels = ids[1..n * context + 1].to_vec();
    sequences(name, x, labels, context, vocab.len())
}

/// A data set of token sequences of length `context` (ids as exact small floats) with one next-token target per
/// position over `n_classes` tokens.
fn sequences(
    name: &str,
    x: Vec<f32>,
    labels: Vec<u32>,
    context: usize,
    n_classes: usize,
) -> Result<Dataset> {
    Dataset::new(
        name,
        x,
        vec![context],
        Target::Tokens {
            labels,
            len: context,
            n_classes,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_text_and_windows() {
        let t = shakespeare().unwrap();
        assert_eq!(t.chars().count(), 300_174);
        assert!(t.starts_with("First Citizen:"));
        let d = char_windows("text", &t, 64).unwrap();
        assert_eq!(d.len(), 300_173 / 64);
        assert_eq!(d.output_dim(), 62);
        let Target::Tokens { labels, len, .. } = &d.target else {
            panic!("token targets")
        };
        assert_eq!(*len, 64);
        // The target of position i is the input at position i + 1.
        assert_eq!(labels[0] as f32, d.x[1]);
        assert_eq!(labels[64] as f32, d.x[65]);
        let v = vocabulary(&t);
        assert_eq!(v[d.x[0] as usize], 'F');
    }

    #[test]
    fn padded_lines() {
        let d = char_lines("t", "ab:\n\nxyz\nq\n", 3).unwrap();
        // Lines "ab:\n" (cut to 4 chars: 3 inputs), "xyz\n" (3), "q\n" (1 input, 2 pads); the blank line is skipped.
        assert_eq!(d.len(), 3);
        let v = vocabulary("ab:\n\nxyz\nq\n");
        let id = |c: char| v.binary_search(&c).unwrap() as f32;
        assert_eq!(&d.x[6..9], &[id('q'), v.len() as f32, v.len() as f32]);
        let Target::Tokens { labels, .. } = &d.target else {
            panic!("token targets")
        };
        assert_eq!(labels[6], id('\n') as u32);
        assert_eq!(&labels[7..9], &[IGNORE, IGNORE]);
        assert_eq!(d.predictions(&[0, 1, 2]), 7);
        let s = char_lines("s", &shakespeare().unwrap(), 64).unwrap();
        assert_eq!(s.len(), 9031);
    }

    #[test]
    fn bad_texts() {
        assert!(char_windows("t", "abc", 0).is_err());
        assert!(char_windows("t", "abcd", 4).is_err());
        let many: String = (0..2000u32).filter_map(char::from_u32).collect();
        assert!(char_windows("t", &many, 4)
            .unwrap_err()
            .to_string()
            .contains("distinct"));
    }
}
