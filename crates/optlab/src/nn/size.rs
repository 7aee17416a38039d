//! What a model of a [`ModelSpec`] holds, estimated from the spec alone (before anything is allocated): its
//! parameter count and the activations one example keeps for the backward pass. In f64 arithmetic, so an absurd
//! width gives an absurd number rather than an overflow.

use super::ModelSpec;

/// A model's size, estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSize {
    /// Parameters.
    pub params: f64,
    /// Values one example keeps for the backward pass (layer outputs, attention scores), a generous count.
    pub activations: f64,
}

impl ModelSpec {
    /// The size of this architecture for examples of `input_shape` (the model's, see
    /// [`ModelSpec::input_shape`]) and `outputs` outputs (classes, or the vocabulary of a language model).
    pub fn size(&self, input_shape: &[usize], outputs: usize) -> ModelSize {
        let f = |v: usize| v as f64;
        let out = f(outputs);
        match self {
            ModelSpec::Mlp { hidden, .. } => {
                let mut fan_in = f(input_shape.iter().product());
                let (mut params, mut act) = (0.0, 0.0);
                for &w in hidden {
                    params += (fan_in + 1.0) * f(w);
                    act += 2.0 * f(w);
                    fan_in = f(w);
                }
                ModelSize {
                    params: params + (fan_in + 1.0) * out,
                    activations: act + out,
                }
            }
            ModelSpec::Cnn {
                channels, residual, ..
            } => {
                let (mut c, mut hw) = match input_shape {
                    [c, h, w] => (f(*c), f(*h) * f(*w)),
                    other => (1.0, f(other.iter().product())),
                };
                let (mut params, mut act) = (0.0, 0.0);
                for &co in channels {
                    let co = f(co);
                    // Convolutions with biases, norm scales and shifts; a residual block has two convolutions and
                    // a 1×1 shortcut.
                    params += if *residual {
                        co * (9.0 * c + 1.0) + co * (9.0 * co + 1.0) + co * (c + 1.0) + 4.0 * co
                    } else {
                        co * (9.0 * c + 1.0) + 2.0 * co
                    };
                    act += co * hw * if *residual { 10.0 } else { 5.0 };
                    c = co;
                    hw /= 4.0;
                }
                ModelSize {
                    params: params + (c * hw + 1.0) * out,
                    activations: act + out,
                }
            }
            ModelSpec::Transformer(t) => {
                let (tl, c, r) = (
                    f(input_shape.first().copied().unwrap_or(1)),
                    f(t.dim),
                    f(t.mlp),
                );
                let per_layer = 4.0 * c * c + 2.0 * r * c * c + (9.0 + r) * c;
                ModelSize {
                    params: (out + tl) * c + f(t.layers) * per_layer + 2.0 * c + (c + 1.0) * out,
                    activations: f(t.layers)
                        * (tl * c * (12.0 + 3.0 * r) + 3.0 * f(t.heads) * tl * tl)
                        + 2.0 * tl * out,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::nn::{ModelSpec, Sequential};
    use candle_core::DType;

    #[test]
    fn parameter_counts_match_the_built_models() {
        for (spec, input, outputs) in [
            ("mlp:hidden=128-32", vec![64], 10),
            ("cnn:channels=8-16", vec![1, 8, 8], 10),
            ("cnn:channels=4-8,norm=gn", vec![1, 8, 8], 3),
            ("resnet:channels=4-8,norm=bn", vec![1, 8, 8], 3),
            (
                "transformer:layers=2,dim=16,heads=2,mlp=4,norm=ln",
                vec![12],
                20,
            ),
        ] {
            let s = ModelSpec::parse(spec).unwrap();
            let m = Sequential::new(&s, &input, outputs, 0, DType::F32).unwrap();
            let est = s.size(&input, outputs).params;
            let real = m.num_params() as f64;
            // Exact up to norm parameters the estimate over-counts.
            assert!(est >= real && est <= 1.1 * real, "{spec}: {est} vs {real}");
        }
        let huge = ModelSpec::parse("mlp:hidden=100000000000").unwrap();
        assert!(huge.size(&[64], 10).params > 7e12);
    }
}
