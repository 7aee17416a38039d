//! The model builder: the layers of a [`ModelSpec`] for given input and output sizes, with PyTorch's default
//! initialisation (muP's where the spec asks for it) and PyTorch's state-dict names.

use super::layer::{NormLayer, ResBlock};
use super::param::Init;
use super::powernorm::PowerNormConfig;
use super::spectral::SpectralLinear;
use super::transformer::{Attention, Block, Dense, Embedding, SeqNorm, TransformerSpec};
use super::{Activation, Layer, ModelSpec, Param, Parametrization};
use crate::rng::{rng_for, Stream};
use crate::Result;
use candle_core::{DType, Tensor};

/// The layers of `spec` for examples of `input_shape` (already the model's, see [`ModelSpec::input_shape`]) and
/// `outputs` outputs, initialised from `seed`.
pub(crate) fn build_layers(
    spec: &ModelSpec,
    input_shape: &[usize],
    outputs: usize,
    seed: u64,
    dtype: DType,
) -> Result<Vec<Layer>> {
    let mut ini = Init {
        rng: rng_for(seed, Stream::Init, 0),
        dtype,
    };
    let mut layers = Vec::new();
    if let ModelSpec::Transformer(t) = spec {
        layers = transformer_layers(t, input_shape[0], outputs, &mut ini)?;
    }
    let mut init = |name: String, shape: &[usize], fan_in: usize| -> Result<Param> {
        ini.uniform(name, shape, 1.0 / (fan_in as f64).sqrt())
    };
    match spec {
        ModelSpec::Transformer(_) => {}
        ModelSpec::Mlp {
            hidden,
            acts,
            param: Parametrization::Standard,
            spectral,
        } => {
            let mut fan_in = input_shape[0];
            let mut power_rng = rng_for(seed, Stream::Init, 1);
            for (k, &w) in hidden.iter().chain(std::iter::once(&outputs)).enumerate() {
                let i = layers.len();
                let weight = init(format!("{i}.weight"), &[w, fan_in], fan_in)?;
                let bias = init(format!("{i}.bias"), &[w], fan_in)?;
                layers.push(if spectral.covers(k, hidden.len() + 1) {
                    Layer::Spectral(SpectralLinear::new(weight, Some(bias), &mut power_rng)?)
                } else {
                    Layer::Linear {
                        weight,
                        bias: Some(bias),
                    }
                });
                if let Some(a) = acts.get(k) {
                    layers.push(Layer::Act(*a));
                }
                fan_in = w;
            }
        }
        ModelSpec::Mlp {
            hidden,
            acts,
            param,
            ..
        } => {
            // muP: the input layer as in SP; hidden layers' biases drawn as at the base width; a MuReadout.
            let m = param.width_mult(hidden[0]);
            let mut fan_in = input_shape[0];
            for (k, &w) in hidden.iter().enumerate() {
                let i = layers.len();
                let bound = 1.0 / (fan_in as f64).sqrt();
                let bias_bound = if k == 0 { bound } else { bound * m.sqrt() };
                let weight = ini.uniform(format!("{i}.weight"), &[w, fan_in], bound)?;
                let bias = ini.uniform(format!("{i}.bias"), &[w], bias_bound)?;
                layers.push(Layer::Linear {
                    weight,
                    bias: Some(bias),
                });
                layers.push(Layer::Act(acts[k]));
                fan_in = w;
            }
            let i = layers.len();
            layers.push(head(&mut ini, i, outputs, fan_in, *param, hidden[0])?);
        }
        ModelSpec::Cnn {
            channels,
            norm,
            ws,
            groups,
            residual,
        } => {
            let (mut c, mut h, mut w) = (input_shape[0], input_shape[1], input_shape[2]);
            for &co in channels {
                let i = layers.len();
                if *residual {
                    let mut conv = |name: &str, ci: usize, k: usize| -> Result<Box<Layer>> {
                        let fan_in = ci * k * k;
                        Ok(Box::new(Layer::Conv2d {
                            weight: init(format!("{i}.{name}.weight"), &[co, ci, k, k], fan_in)?,
                            bias: Some(init(format!("{i}.{name}.bias"), &[co], fan_in)?),
                            padding: k / 2,
                            // A fan-in of 1 (a 1×1 shortcut from one channel) cannot be standardized.
                            standardize: *ws && fan_in > 1,
                        }))
                    };
                    let conv1 = conv("conv1", c, 3)?;
                    let conv2 = conv("conv2", co, 3)?;
                    let shortcut = if c != co {
                        Some(conv("shortcut", c, 1)?)
                    } else {
                        None
                    };
                    let norm_layer = |name: &str| -> Result<Option<Box<Layer>>> {
                        norm.map(|kind| {
                            NormLayer::new(kind, &format!("{i}.{name}."), co, *groups, dtype)
                                .map(|n| Box::new(Layer::Norm(n)))
                        })
                        .transpose()
                    };
                    layers.push(Layer::Residual(ResBlock {
                        conv1,
                        n1: norm_layer("n1")?,
                        conv2,
                        n2: norm_layer("n2")?,
                        shortcut,
                    }));
                    layers.push(Layer::MaxPool2);
                    (c, h, w) = (co, h / 2, w / 2);
                    continue;
                }
                let fan_in = c * 9;
                let weight = init(format!("{i}.weight"), &[co, c, 3, 3], fan_in)?;
                let bias = init(format!("{i}.bias"), &[co], fan_in)?;
                layers.push(Layer::Conv2d {
                    weight,
                    bias: Some(bias),
                    padding: 1,
                    standardize: *ws,
                });
                if let Some(kind) = norm {
                    let i = layers.len();
                    layers.push(Layer::Norm(NormLayer::new(
                        *kind,
                        &format!("{i}."),
                        co,
                        *groups,
                        dtype,
                    )?));
                }
                layers.push(Layer::Act(Activation::Relu));
                layers.push(Layer::MaxPool2);
                (c, h, w) = (co, h / 2, w / 2);
            }
            layers.push(Layer::Flatten);
            let i = layers.len();
            let fan_in = c * h * w;
            let weight = init(format!("{i}.weight"), &[outputs, fan_in], fan_in)?;
            let bias = init(format!("{i}.bias"), &[outputs], fan_in)?;
            layers.push(Layer::Linear {
                weight,
                bias: Some(bias),
            });
        }
    }
    Ok(layers)
}

/// The output layer `<i>.weight` `[outputs, fan_in]`, `<i>.bias`: `nn.Linear` under SP; under muP microsoft/mup's
/// MuReadout with zero init, whose input is multiplied by 1/width_mult.
pub(crate) fn head(
    ini: &mut Init,
    i: usize,
    outputs: usize,
    fan_in: usize,
    param: Parametrization,
    width: usize,
) -> Result<Layer> {
    Ok(match param {
        Parametrization::Standard => {
            let bound = 1.0 / (fan_in as f64).sqrt();
            Layer::Linear {
                weight: ini.uniform(format!("{i}.weight"), &[outputs, fan_in], bound)?,
                bias: Some(ini.uniform(format!("{i}.bias"), &[outputs], bound)?),
            }
        }
        Parametrization::Mup { .. } => Layer::Readout {
            weight: ini.zeros(format!("{i}.weight"), &[outputs, fan_in])?,
            bias: Some(ini.zeros(format!("{i}.bias"), &[outputs])?),
            mult: 1.0 / param.width_mult(width),
        },
    })
}

/// The transformer's layers for sequences of `ctx` tokens over a vocabulary of `vocab`.
fn transformer_layers(
    t: &TransformerSpec,
    ctx: usize,
    vocab: usize,
    ini: &mut Init,
) -> Result<Vec<Layer>> {
    let (c, dtype) = (t.dim, ini.dtype);
    let hd = c / t.heads;
    let m = t.param.width_mult(c);
    let mup = matches!(t.param, Parametrization::Mup { .. });
    let pn = PowerNormConfig {
        warmup: t.pn_warmup,
        groups: t.heads,
        ..PowerNormConfig::default()
    };
    // nn.Linear's init; under muP the bias is drawn as at the base width (every fan-in here scales).
    let dense = |ini: &mut Init, name: String, out: usize, fan_in: usize| -> Result<Dense> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        Ok(Dense {
            weight: ini.uniform(format!("{name}weight"), &[out, fan_in], bound)?,
            bias: ini.uniform(format!("{name}bias"), &[out], bound * m.sqrt())?,
        })
    };
    let norm = |prefix: String| -> Result<Option<SeqNorm>> {
        t.norm
            .map(|k| SeqNorm::new(k, &prefix, c, pn, dtype))
            .transpose()
    };
    let mut layers = vec![Layer::Embed(Embedding {
        tok: ini.normal("0.tok.weight".into(), &[vocab, c], 1.0)?,
        pos: ini.normal("0.pos.weight".into(), &[ctx, c], 1.0)?,
    })];
    let scale = match t.param {
        Parametrization::Standard => 1.0 / (hd as f64).sqrt(),
        Parametrization::Mup { base } => ((base / t.heads) as f64).sqrt() / hd as f64,
    };
    for i in 1..=t.layers {
        let qkv = dense(ini, format!("{i}.attn.qkv."), 3 * c, c)?;
        if mup {
            // microsoft/mup's Transformer example zero-initialises the query projection.
            let w = qkv.weight.tensor();
            let zeroed = Tensor::cat(
                &[&w.narrow(0, 0, c)?.zeros_like()?, &w.narrow(0, c, 2 * c)?],
                0,
            )?;
            qkv.weight.var.set(&zeroed)?;
        }
        let attn = Attention {
            qkv,
            proj: dense(ini, format!("{i}.attn.proj."), c, c)?,
            heads: t.heads,
            scale,
        };
        let r = t.mlp * c;
        layers.push(Layer::Block(Box::new(Block {
            norm1: norm(format!("{i}.norm1."))?,
            attn,
            norm2: norm(format!("{i}.norm2."))?,
            fc: dense(ini, format!("{i}.mlp.fc."), r, c)?,
            proj: dense(ini, format!("{i}.mlp.proj."), c, r)?,
        })));
    }
    if let Some(n) = norm(format!("{}.", layers.len()))? {
        layers.push(Layer::SeqNorm(n));
    }
    let i = layers.len();
    layers.push(head(ini, i, vocab, c, t.param, c)?);
    Ok(layers)
}
