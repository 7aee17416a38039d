//! Nothing to do: the `lipsdp` feature links the system OpenBLAS through openblas-src's `system` feature.
fn main() {}
