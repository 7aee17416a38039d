//! Applying a trained or imported model to data: the loss, the accuracy and every example's prediction.
//!
//! Two kinds of model: a run directory of `optlab train` (its `config.toml` gives the architecture,
//! `model.safetensors` the weights), or a PyTorch `nn.Sequential` state dict (Linear, Conv2d, ReLU, Flatten,
//! MaxMin; see [`crate::lipschitz::network`]). The loss is computed in f64 from the model's outputs:
//! cross-entropy of the softmax for class labels (and token sequences, over their non-padded positions), mean
//! squared error for real-valued targets.

use crate::data::{DataSpec, Dataset, Target, IGNORE};
use crate::lipschitz::network::Network;
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Result};
use candle_core::{DType, Device};
use serde::Serialize;
use std::path::Path;

/// Examples per forward pass.
const BATCH: usize = 1024;

/// One example's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The example's index in the data.
    pub index: usize,
    /// The class label, or the target values.
    pub target: Vec<f64>,
    /// The predicted class (argmax), or the predicted values.
    pub predicted: Vec<f64>,
    /// Class probabilities (softmax of the outputs); empty for regression.
    pub probabilities: Vec<f64>,
}

/// Loss, accuracy and predictions of a model on a data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// What was evaluated on what.
    pub model: String,
    pub data: String,
    pub examples: usize,
    /// Mean cross-entropy (classes, tokens) or mean squared error (values).
    pub loss: f64,
    /// Fraction of correct argmax predictions (classes, tokens).
    pub accuracy: Option<f64>,
    /// One per example (empty for token sequences, whose predictions are per position).
    pub predictions: Vec<Prediction>,
}

/// Evaluates the model of a run directory on `data`, or on the run's own validation split when `data` is `None`
/// (the same split the run held out, by its seed).
pub fn eval_run(dir: &Path, data: Option<&DataSpec>) -> Result<Evaluation> {
    let config = TrainConfig::from_toml_file(&dir.join("config.toml"))?;
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(Error::file(
            &weights,
            "no trained model here: the run has not finished (resume it with `optlab train --resume`)",
        ));
    }
    let (model_spec, seed) = (config.model.clone(), config.options.seed);
    let trainer = Trainer::new(config)?;
    trainer.model().load(&weights)?;
    let (name, set) = match data {
        Some(spec) => {
            let d = spec.load(seed)?;
            let shape = model_spec.input_shape(&d.feature_shape)?;
            (spec.to_string(), d.reshaped(shape)?)
        }
        None => match trainer.val_data() {
            Some(v) => ("the run's validation split".to_string(), v.clone()),
            None => {
                return Err(Error::invalid(
                    "the run kept no validation split (val_frac = 0); give --data",
                ))
            }
        },
    };
    let model = trainer.model();
    let dtype = trainer.dtype();
    evaluate(dir.display().to_string(), name, &set, |idx| {
        let (x, _) = set.batch(idx, dtype, &Device::Cpu)?;
        let out = model.forward(&x)?.to_dtype(DType::F64)?;
        let per = out.dims()[1..].iter().product::<usize>();
        Ok(out
            .flatten_all()?
            .to_vec1::<f64>()?
            .chunks(per)
            .map(<[f64]>::to_vec)
            .collect())
    })
}

/// Evaluates an imported network on `data` (synthetic sets drawn from `seed`).
pub fn eval_network(net: &Network, model: &str, data: &DataSpec, seed: u64) -> Result<Evaluation> {
    let set = data.load(seed)?;
    if set.feature_dim() != net.input_dim() {
        return Err(Error::Shape(format!(
            "the data's examples have {} features, the network takes {} inputs",
            set.feature_dim(),
            net.input_dim()
        )));
    }
    let d = set.feature_dim();
    evaluate(model.to_string(), data.to_string(), &set, |idx| {
        idx.iter()
            .map(|&i| {
                let x: Vec<f64> = set.x[i * d..(i + 1) * d]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                net.forward(&x)
            })
            .collect()
    })
}

/// The loss, accuracy and predictions from the outputs `forward` gives for batches of example indices.
fn evaluate(
    model: String,
    data: String,
    set: &Dataset,
    forward: impl Fn(&[usize]) -> Result<Vec<Vec<f64>>>,
) -> Result<Evaluation> {
    let n = set.len();
    if n == 0 {
        return Err(Error::invalid(format!("{data} has no examples")));
    }
    let idx: Vec<usize> = (0..n).collect();
    let (mut loss_sum, mut hits, mut counted) = (0.0, 0usize, 0usize);
    let mut predictions = Vec::new();
    for chunk in idx.chunks(BATCH) {
        let outs = forward(chunk)?;
        for (&i, out) in chunk.iter().zip(&outs) {
            match &set.target {
                Target::Classes { labels, .. } => {
                    let label = labels[i] as usize;
                    let probs = softmax(out);
                    if label >= probs.len() {
                        return Err(Error::Shape(format!(
                            "example {i} has class {label}, but the model has {} outputs",
                            probs.len()
                        )));
                    }
                    let arg = argmax(&probs);
                    loss_sum -= probs[label].max(f64::MIN_POSITIVE).ln();
                    hits += usize::from(arg == label);
                    counted += 1;
                    predictions.push(Prediction {
                        index: i,
                        target: vec![label as f64],
                        predicted: vec![arg as f64],
                        probabilities: probs,
                    });
                }
                Target::Values { y, dim } => {
                    let t: Vec<f64> = y[i * dim..(i + 1) * dim]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    if out.len() != *dim {
                        return Err(Error::Shape(format!(
                            "the model has {} outputs, the targets {dim} values",
                            out.len()
                        )));
                    }
                    loss_sum += out
                        .iter()
                        .zip(&t)
                        .map(|(o, t)| (o - t).powi(2))
                        .sum::<f64>()
                        / *dim as f64;
                    counted += 1;
                    predictions.push(Prediction {
                        index: i,
                        target: t,
                        predicted: out.clone(),
                        probabilities: Vec::new(),
                    });
                }
                Target::Tokens {
                    labels,
                    len,
                    n_classes,
                } => {
                    if out.len() != len * n_classes {
                        return Err(Error::Shape(format!(
                            "the model gives {} outputs per sequence, the data needs {len} positions x {n_classes} classes",
                            out.len()
                        )));
                    }
                    for (pos, logits) in out.chunks(*n_classes).enumerate() {
                        let label = labels[i * len + pos];
                        if label == IGNORE {
                            continue;
                        }
                        let probs = softmax(logits);
                        loss_sum -= probs[label as usize].max(f64::MIN_POSITIVE).ln();
                        hits += usize::from(argmax(&probs) == label as usize);
                        counted += 1;
                    }
                }
            }
        }
    }
    let classes = !matches!(set.target, Target::Values { .. });
    let loss = loss_sum / counted.max(1) as f64;
    if !loss.is_finite() {
        return Err(Error::NonFinite(format!(
            "the model's loss on {data} is {loss}: its outputs overflow"
        )));
    }
    Ok(Evaluation {
        model,
        data,
        examples: n,
        loss,
        accuracy: classes.then(|| hits as f64 / counted.max(1) as f64),
        predictions,
    })
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

impl Evaluation {
    /// The predictions as CSV: `index,label,predicted,p_0,...` for classes, `index,target_0,...,predicted_0,...`
    /// for values.
    pub fn predictions_csv(&self) -> Result<String> {
        let Some(first) = self.predictions.first() else {
            return Err(Error::invalid(
                "per-example predictions of a language model are per position; none are written (use --json for the loss and accuracy)",
            ));
        };
        let mut out = String::new();
        if first.probabilities.is_empty() {
            let t: Vec<String> = (0..first.target.len())
                .map(|k| format!("target_{k}"))
                .collect();
            let p: Vec<String> = (0..first.predicted.len())
                .map(|k| format!("predicted_{k}"))
                .collect();
            out.push_str(&format!("index,{},{}\n", t.join(","), p.join(",")));
        } else {
            let p: Vec<String> = (0..first.probabilities.len())
                .map(|k| format!("p_{k}"))
                .collect();
            out.push_str(&format!("index,label,predicted,{}\n", p.join(",")));
        }
        for r in &self.predictions {
            let cells: Vec<String> = std::iter::once(r.index.to_string())
                .chain(
                    r.target
                        .iter()
                        .chain(&r.predicted)
                        .chain(&r.probabilities)
                        .map(|v| format!("{v}")),
                )
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_argmax() {
        let p = softmax(&[1000.0, 1000.0]);
        assert_eq!(p, vec![0.5, 0.5]);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }
}
