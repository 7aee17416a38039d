//! [`ScheduleSpec`]: a schedule as a typed value, independent of the run's length. Parsed from a spec string
//! (`cosine:warmup=100`, `seq:constant@80%;linear`, `file:refined.json`) with errors that list the valid names
//! and keys; `Display` writes the canonical spec back; [`ScheduleSpec::build`] makes the schedule of a run.

use super::{Schedule, Sequence, TabulatedSchedule, WarmupDecay, SCHEDULE_NAMES};
use crate::spec::unknown_name;
use crate::{Error, Result, Spec};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The decay after the warmup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    Constant,
    Cosine { min_factor: f64 },
    Linear { end_factor: f64 },
    Step { step_size: u64, gamma: f64 },
    Exponential { gamma: f64 },
    Polynomial { power: f64, end_factor: f64 },
    Wsd { decay_frac: f64, end_factor: f64 },
}

/// How long a segment of a `seq:` schedule runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentLen {
    /// This many steps.
    Steps(u64),
    /// This percentage of the run (rounded to steps).
    Percent(f64),
}

/// One segment of a `seq:` schedule: `SPEC[*SCALE][@LEN]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// A warmup-decay schedule (segments do not nest).
    pub warmup: u64,
    pub decay: Decay,
    /// Multiplies the segment's factors.
    pub scale: f64,
    /// The segment's length; `None` only for the last one (the rest of the run).
    pub len: Option<SegmentLen>,
}

/// A schedule, independent of the run's length.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleSpec {
    /// Linear warmup over `warmup` steps, then `decay` over the rest.
    Decay { warmup: u64, decay: Decay },
    /// Segments one after the other.
    Seq(Vec<Segment>),
    /// Factors tabulated in a JSON file (`optlab schedule refine`), resampled to the run.
    File(PathBuf),
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec::constant()
    }
}

impl ScheduleSpec {
    /// A constant factor 1.
    pub fn constant() -> Self {
        ScheduleSpec::Decay {
            warmup: 0,
            decay: Decay::Constant,
        }
    }

    /// Cosine decay to 0 after a linear warmup of `warmup` steps.
    pub fn cosine(warmup: u64) -> Self {
        ScheduleSpec::Decay {
            warmup,
            decay: Decay::Cosine { min_factor: 0.0 },
        }
    }

    /// The schedule of a run of `total` steps; a warmup or a segment longer than the run is an error.
    pub fn build(&self, total: u64) -> Result<Box<dyn Schedule>> {
        match self {
            ScheduleSpec::Decay { warmup, decay } => {
                Ok(Box::new(warmup_decay(*warmup, *decay, total)?))
            }
            ScheduleSpec::Seq(segments) => Ok(Box::new(sequence(segments, total)?)),
            ScheduleSpec::File(path) => Ok(Box::new(TabulatedSchedule::load(path, total)?)),
        }
    }
}

fn warmup_decay(warmup: u64, decay: Decay, total: u64) -> Result<WarmupDecay> {
    if total > 0 && warmup > total {
        return Err(Error::invalid(format!(
            "{}: warmup={warmup} exceeds the run's {total} steps",
            decay_name(&decay)
        )));
    }
    Ok(WarmupDecay {
        warmup,
        total,
        decay,
    })
}

fn sequence(segments: &[Segment], total: u64) -> Result<Sequence> {
    let mut built = Vec::new();
    let mut start = 0u64;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let left = total.saturating_sub(start);
        let part = segment_text(seg);
        let steps = match seg.len {
            None => left,
            Some(SegmentLen::Steps(n)) => n,
            Some(SegmentLen::Percent(p)) => (p / 100.0 * total as f64).round() as u64,
        };
        if steps == 0 && seg.len.is_some() {
            return Err(Error::invalid(format!(
                "seq: segment `{part}` has no steps"
            )));
        }
        if total > 0 && steps > left && !last {
            return Err(Error::invalid(format!(
                "seq: segment `{part}` ends at step {} but the run has {total}",
                start + steps
            )));
        }
        let s = warmup_decay(seg.warmup, seg.decay, steps.max(1))?;
        built.push((start, Box::new(s) as Box<dyn Schedule>, seg.scale));
        start += steps;
    }
    // The canonical spec of the built schedule: every length in steps, the last segment taking the rest.
    let last = segments.len() - 1;
    let ends: Vec<u64> = built.iter().skip(1).map(|b| b.0).chain([start]).collect();
    let resolved = ScheduleSpec::Seq(
        segments
            .iter()
            .enumerate()
            .map(|(i, seg)| Segment {
                len: (i < last).then(|| SegmentLen::Steps(ends[i] - built[i].0)),
                ..seg.clone()
            })
            .collect(),
    );
    Ok(Sequence {
        segments: built,
        spec: resolved.to_string(),
    })
}

fn decay_name(d: &Decay) -> &'static str {
    match d {
        Decay::Constant => "constant",
        Decay::Cosine { .. } => "cosine",
        Decay::Linear { .. } => "linear",
        Decay::Step { .. } => "step",
        Decay::Exponential { .. } => "exponential",
        Decay::Polynomial { .. } => "polynomial",
        Decay::Wsd { .. } => "wsd",
    }
}

fn decay_text(warmup: u64, d: &Decay) -> String {
    let name = decay_name(d);
    match *d {
        Decay::Constant => format!("{name}:warmup={warmup}"),
        Decay::Cosine { min_factor } => format!("{name}:warmup={warmup},min_factor={min_factor}"),
        Decay::Linear { end_factor } => format!("{name}:warmup={warmup},end_factor={end_factor}"),
        Decay::Step { step_size, gamma } => {
            format!("{name}:warmup={warmup},step_size={step_size},gamma={gamma}")
        }
        Decay::Exponential { gamma } => format!("{name}:warmup={warmup},gamma={gamma}"),
        Decay::Polynomial { power, end_factor } => {
            format!("{name}:warmup={warmup},power={power},end_factor={end_factor}")
        }
        Decay::Wsd {
            decay_frac,
            end_factor,
        } => format!("{name}:warmup={warmup},decay_frac={decay_frac},end_factor={end_factor}"),
    }
}

fn segment_text(seg: &Segment) -> String {
    let scale = if seg.scale == 1.0 {
        String::new()
    } else {
        format!("*{}", seg.scale)
    };
    let len = match seg.len {
        None => String::new(),
        Some(SegmentLen::Steps(n)) => format!("@{n}"),
        Some(SegmentLen::Percent(p)) => format!("@{p}%"),
    };
    format!("{}{scale}{len}", decay_text(seg.warmup, &seg.decay))
}

impl fmt::Display for ScheduleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleSpec::Decay { warmup, decay } => f.write_str(&decay_text(*warmup, decay)),
            ScheduleSpec::Seq(segments) => write!(
                f,
                "seq:{}",
                segments
                    .iter()
                    .map(segment_text)
                    .collect::<Vec<_>>()
                    .join(";")
            ),
            ScheduleSpec::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl FromStr for ScheduleSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if let Some(body) = spec.strip_prefix("seq:") {
            return Ok(ScheduleSpec::Seq(parse_segments(body)?));
        }
        if let Some(path) = spec.strip_prefix("file:") {
            return Ok(ScheduleSpec::File(PathBuf::from(path)));
        }
        let (warmup, decay) = parse_decay(spec)?;
        Ok(ScheduleSpec::Decay { warmup, decay })
    }
}

crate::spec::serde_via_string!(ScheduleSpec);

fn parse_decay(spec: &str) -> Result<(u64, Decay)> {
    let mut s = Spec::parse(spec)?;
    let warmup = s.usize("warmup", 0)? as u64;
    let unit = |s: &mut Spec, key: &'static str| -> Result<f64> {
        let v = s.f64(key, 0.0)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::invalid(format!(
                "{}: {key}={v} must be in [0, 1]",
                s.name
            )));
        }
        Ok(v)
    };
    let positive = |s: &mut Spec, key: &'static str, d: f64| -> Result<f64> {
        let v = s.f64(key, d)?;
        if !(v > 0.0 && v.is_finite()) {
            return Err(Error::invalid(format!(
                "{}: {key}={v} must be positive",
                s.name
            )));
        }
        Ok(v)
    };
    let decay = match s.name.as_str() {
        "constant" => Decay::Constant,
        "cosine" => Decay::Cosine {
            min_factor: unit(&mut s, "min_factor")?,
        },
        "linear" => Decay::Linear {
            end_factor: unit(&mut s, "end_factor")?,
        },
        "step" => {
            let step_size = s.usize("step_size", 1000)? as u64;
            if step_size == 0 {
                return Err(Error::invalid("step: step_size must be at least 1"));
            }
            Decay::Step {
                step_size,
                gamma: positive(&mut s, "gamma", 0.1)?,
            }
        }
        "exponential" => Decay::Exponential {
            gamma: positive(&mut s, "gamma", 0.999)?,
        },
        "polynomial" => {
            let power = s.f64("power", 1.0)?;
            if power <= 0.0 {
                return Err(Error::invalid(format!(
                    "polynomial: power={power} must be positive"
                )));
            }
            Decay::Polynomial {
                power,
                end_factor: unit(&mut s, "end_factor")?,
            }
        }
        "wsd" => {
            let decay_frac = s.f64("decay_frac", 0.2)?;
            if !(0.0..=1.0).contains(&decay_frac) {
                return Err(Error::invalid(format!(
                    "wsd: decay_frac={decay_frac} must be in [0, 1]"
                )));
            }
            Decay::Wsd {
                decay_frac,
                end_factor: unit(&mut s, "end_factor")?,
            }
        }
        other => return Err(unknown_name("schedule", other, SCHEDULE_NAMES)),
    };
    s.finish()?;
    Ok((warmup, decay))
}

fn parse_segments(body: &str) -> Result<Vec<Segment>> {
    let parts: Vec<&str> = body.split(';').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::invalid(format!(
            "seq:{body}: empty segment (segments are SPEC[*SCALE][@LEN] separated by ';')"
        )));
    }
    let mut segments = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (rest, len) = match part.rsplit_once('@') {
            Some((r, l)) => (r, Some(l.trim())),
            None => (*part, None),
        };
        let (inner, scale) = match rest.rsplit_once('*') {
            Some((r, f)) => (
                r,
                f.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "seq: segment `{part}`: scale `{f}` must be a non-negative number"
                        ))
                    })?,
            ),
            None => (rest, 1.0),
        };
        let len = match len {
            None if last => None,
            None => {
                return Err(Error::invalid(format!(
                    "seq: segment `{part}` needs a length @STEPS or @N% (only the last one takes the rest)"
                )))
            }
            Some(l) => Some(if let Some(pct) = l.strip_suffix('%') {
                let f: f64 = pct
                    .trim()
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite() && *f >= 0.0)
                    .ok_or_else(|| {
                        Error::invalid(format!("seq: segment `{part}`: `{l}` is not a percentage"))
                    })?;
                SegmentLen::Percent(f)
            } else {
                let n = l.parse::<u64>().map_err(|_| {
                    Error::invalid(format!(
                        "seq: segment `{part}`: length `{l}` is not a whole number of steps or N%"
                    ))
                })?;
                if n == 0 {
                    return Err(Error::invalid(format!(
                        "seq: segment `{part}` has no steps"
                    )));
                }
                SegmentLen::Steps(n)
            }),
        };
        let inner = inner.trim();
        if inner.starts_with("seq:") || inner.starts_with("file:") {
            return Err(Error::invalid(format!(
                "seq: segment `{part}`: segments are plain schedules (no seq: or file:)"
            )));
        }
        let (warmup, decay) = parse_decay(inner)?;
        segments.push(Segment {
            warmup,
            decay,
            scale,
            len,
        });
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_without_a_run_length() {
        for s in [
            "constant",
            "cosine:warmup=100",
            "seq:constant@80%;linear",
            "seq:linear:warmup=10,end_factor=0.5@20;constant*0.5@30;cosine*0.5",
            "file:refined.json",
        ] {
            let spec: ScheduleSpec = s.parse().unwrap();
            let again: ScheduleSpec = spec.to_string().parse().unwrap();
            assert_eq!(again, spec, "{s}");
        }
        assert_eq!(
            ScheduleSpec::cosine(10).to_string(),
            "cosine:warmup=10,min_factor=0"
        );
        // Errors that need the run's length come from build.
        let long: ScheduleSpec = "linear:warmup=20".parse().unwrap();
        assert!(long.build(10).is_err());
        let seq: ScheduleSpec = "seq:constant@0%;linear".parse().unwrap();
        assert!(seq.build(10).unwrap_err().to_string().contains("no steps"));
        // A last segment left with no steps still builds, and its canonical spec parses back.
        let full: ScheduleSpec = "seq:constant@100%;linear".parse().unwrap();
        let built = full.build(10).unwrap();
        assert_eq!(
            built.spec(),
            "seq:constant:warmup=0@10;linear:warmup=0,end_factor=0"
        );
        let again: ScheduleSpec = built.spec().parse().unwrap();
        assert_eq!(again.build(10).unwrap().spec(), built.spec());
    }
}
