//! The adaptive batch-size statistics (P29) against the reference code timlautk/AdAdaGrad `tests.py` on a fixed
//! MLP batch (fixture from `tools/reference/adadagrad_fixtures.py`): the norm test to 1e-10; the inner-product
//! and orthogonality statistics against the whole-vector values computed from the reference's own per-sample
//! gradients (the paper's definition; the reference's per-tensor sums are recorded for comparison).

use candle_core::DType;
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Sequential};
use optlab::tensor_io::read_safetensors;
use optlab::train::batch_size::{linear_grad_stats, BatchSchedule};
use std::path::Path;

#[test]
fn statistics_match_the_reference_per_sample_gradients() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adadagrad/batch_tests.safetensors");
    let fx = read_safetensors(&path).unwrap();
    let scalar = |k: &str| fx[k].flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=16,act=tanh").unwrap(),
        &[8],
        3,
        0,
        DType::F64,
    )
    .unwrap();
    let weights = fx
        .iter()
        .filter(|(k, _)| k.ends_with("weight") || k.ends_with("bias"));
    model
        .load_state_dict(&weights.map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap();
    let x = &fx["x"];
    let y = fx["y"].to_dtype(DType::U32).unwrap();
    let (out, traces) = model.forward_traced(x).unwrap().unwrap();
    let grads = cross_entropy(&out, &y).unwrap().backward().unwrap();
    let st = linear_grad_stats(&traces, &grads, 32).unwrap();
    let rel = |a: f64, b: f64| ((a - b) / b).abs();

    assert!(rel(st.mean_sq_norm, scalar("norm_test.batch_grad_norm_squared")) < 1e-10);
    assert!(rel(st.variance_sum(), scalar("norm_test.variance_one_norm")) < 1e-10);
    assert!(rel(st.sq_norms.iter().sum(), scalar("whole.sum_sq_norms")) < 1e-10);
    assert!(rel(st.inner_variance(), scalar("whole.inner_variance")) < 1e-10);
    assert!(
        rel(
            st.orthogonal_variance_sum(),
            scalar("whole.orthogonal_variance_sum")
        ) < 1e-10
    );

    let norm = BatchSchedule::parse("norm:eta=0.5,max_batch=100000").unwrap();
    assert_eq!(
        norm.next_batch(32, &st) as f64,
        scalar("norm_test.new_batch_size")
    );
    // Whole-vector tests: inner product 6.5 -> stays 32; augmented max(6.5, 100.9) -> 101.
    let ip = BatchSchedule::parse("inner_product:theta=0.5").unwrap();
    assert_eq!(ip.next_batch(32, &st), 32);
    let aug = BatchSchedule::parse("augmented:theta=0.5,nu=0.5,max_batch=100000").unwrap();
    assert_eq!(aug.next_batch(32, &st), 101);
}
