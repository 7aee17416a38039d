//! Any bytes given to the network import (and the naive bound of what it accepts) must give a result or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optlab::lipschitz::naive::{naive_bound, Norm};
use optlab::lipschitz::network::{Network, NetworkSpec};

fuzz_target!(|data: &[u8]| {
    for spec in [
        NetworkSpec::default(),
        NetworkSpec {
            input_shape: Some(vec![1, 4, 4]),
            layers: None,
        },
    ] {
        if let Ok(net) = Network::from_bytes(data, &spec) {
            let _ = naive_bound(&net, Norm::Inf);
            let _ = naive_bound(&net, Norm::Two);
        }
    }
});
