//! The first-order backward pass that frees the forward values as it goes (`Tensor::backward_detached`, what
//! `optlab::gradients(loss, false)` and every optimizer's `backward_step` call; vendor/candle-core/PATCHES.md):
//! its gradients are bit-identical to those of the pass that keeps the graph, on the MLP, the CNN and the
//! transformer; what the caller still holds stays readable; a second loss over the same trunk still
//! differentiates; and a second pass through a freed graph is an error, not a panic.

use candle_core::{DType, Device, Tensor};
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Param, Sequential};

/// A model and a batch: `(model, inputs, labels)`.
fn case(spec: &str) -> (Sequential, Tensor, Tensor) {
    let dev = &Device::Cpu;
    let spec = ModelSpec::parse(spec).unwrap();
    if spec.to_string().starts_with("transformer") {
        let model = Sequential::new(&spec, &[8], 11, 3, DType::F32).unwrap();
        let ids: Vec<f32> = (0..4 * 8).map(|i| (i * 7 % 11) as f32).collect();
        let labels: Vec<u32> = (0..4 * 8).map(|i| (i * 5 % 11) as u32).collect();
        let x = Tensor::from_vec(ids, (4, 8), dev).unwrap();
        return (model, x, Tensor::from_vec(labels, (4, 8), dev).unwrap());
    }
    let image = spec.to_string().starts_with("cnn");
    let shape: &[usize] = if image { &[1, 8, 8] } else { &[5] };
    let model = Sequential::new(&spec, shape, 3, 3, DType::F32).unwrap();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..6 * n)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0)
        .collect();
    let dims: Vec<usize> = std::iter::once(6).chain(shape.iter().copied()).collect();
    let x = Tensor::from_vec(values, dims, dev).unwrap();
    let y = Tensor::from_vec((0..6u32).map(|i| i % 3).collect::<Vec<_>>(), 6, dev).unwrap();
    (model, x, y)
}

fn grads_of(params: &[Param], store: &candle_core::backprop::GradStore) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|p| {
            let g = store
                .get(p.tensor())
                .expect("every parameter has a gradient");
            g.flatten_all().unwrap().to_vec1().unwrap()
        })
        .collect()
}

const SPECS: [&str; 3] = [
    "mlp:hidden=7-6,act=relu",
    "cnn:channels=3-4",
    "transformer:layers=2,dim=8,heads=2,mlp=2,norm=ln",
];

#[test]
fn freeing_pass_gives_the_same_gradients_and_keeps_what_the_caller_holds() {
    for spec in SPECS {
        let (model, x, y) = case(spec);
        let params = model.params();
        let kept = {
            let loss = cross_entropy(&model.forward_mode(&x, true).unwrap(), &y).unwrap();
            grads_of(&params, &loss.backward().unwrap())
        };
        let logits = model.forward_mode(&x, true).unwrap();
        let before: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let loss = cross_entropy(&logits, &y).unwrap();
        let freed = grads_of(&params, &optlab::gradients(&loss, false).unwrap());
        assert_eq!(freed, kept, "{spec}: gradients differ");
        // The logits (held here) and the loss (the root) are still readable, and unchanged.
        let after: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(after, before, "{spec}");
        assert!(loss.to_scalar::<f32>().unwrap().is_finite());
        // A second pass through the freed graph is refused with a message.
        let err = loss.backward_detached().expect_err("the graph was freed");
        assert!(err.to_string().contains("already freed"), "{spec}: {err}");
        // The graph-keeping pass frees nothing: it may run twice.
        let loss = cross_entropy(&model.forward_mode(&x, true).unwrap(), &y).unwrap();
        let once = grads_of(&params, &loss.backward().unwrap());
        assert_eq!(grads_of(&params, &loss.backward().unwrap()), once, "{spec}");
    }
}

#[test]
fn a_second_loss_over_the_same_trunk_still_differentiates() {
    let (model, x, y) = case(SPECS[0]);
    let params = model.params();
    let reference = |scale: f64| {
        let logits = model.forward_mode(&x, true).unwrap();
        let loss = (cross_entropy(&logits, &y).unwrap() * scale).unwrap();
        grads_of(&params, &loss.backward().unwrap())
    };
    let (want1, want2) = (reference(1.0), reference(3.0));
    let logits = model.forward_mode(&x, true).unwrap();
    let first = cross_entropy(&logits, &y).unwrap();
    let second = (cross_entropy(&logits, &y).unwrap() * 3.0).unwrap();
    drop(logits);
    // The first pass must leave everything the second loss's graph reaches.
    assert_eq!(
        grads_of(&params, &optlab::gradients(&first, false).unwrap()),
        want1
    );
    assert_eq!(
        grads_of(&params, &optlab::gradients(&second, false).unwrap()),
        want2
    );
}
