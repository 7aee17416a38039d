//! Data-parallel training over in-process workers (the MPI ranks of `mpirun -n R optlab train --distributed`
//! run the same code against another communicator): R workers equal one process accumulating R micro-batches
//! bit for bit, and plain one-process training to 1e-6; DP-SGD, resume and bad settings.

use optlab::distributed::local::{run, DEFAULT_TIMEOUT};
use optlab::distributed::Communicator;
use optlab::nn::ModelSpec;
use optlab::train::{RunOptions, TrainConfig, Trainer};

fn config(optimizer: &str, batch: usize, privacy: Option<&str>) -> TrainConfig {
    let mut c = TrainConfig {
        model: ModelSpec::parse("mlp:hidden=16").unwrap(),
        optimizer: optimizer.parse().unwrap(),
        schedule: "cosine:warmup=2".parse().unwrap(),
        ..Default::default()
    };
    c.options.steps = Some(10);
    c.options.epochs = None;
    c.options.batch_size = batch;
    c.options.privacy = privacy.map(|p| p.parse().unwrap());
    c
}

fn weights(t: &Trainer) -> Vec<f32> {
    t.model()
        .params()
        .iter()
        .flat_map(|p| p.tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

fn bits(w: &[f32]) -> Vec<u32> {
    w.iter().map(|v| v.to_bits()).collect()
}

/// Final weights of every worker of an R-worker run.
fn parallel(c: &TrainConfig, workers: usize) -> Vec<Vec<f32>> {
    // Each worker builds its own trainer from the config's text (a built optimizer is not shared).
    let text = c.to_toml().unwrap();
    run(workers, DEFAULT_TIMEOUT, |comm| {
        let mut t = Trainer::new(TrainConfig::from_toml(&text)?)?;
        t.distribute(Box::new(comm.clone()))?;
        t.run(None, &mut [])?;
        Ok(weights(&t))
    })
    .unwrap()
}

fn single(c: &TrainConfig, accumulate: usize) -> Vec<f32> {
    let mut c = c.clone();
    c.options.accumulate = accumulate;
    let mut t = Trainer::new(c).unwrap();
    t.run(None, &mut []).unwrap();
    weights(&t)
}

#[test]
fn workers_equal_accumulated_micro_batches_bit_for_bit() {
    for opt in ["sgd:lr=0.1,momentum=0.9", "adamw:lr=1e-2,weight_decay=0.01"] {
        // 30 examples: parts of 15 (2 ranks), 10 (3), 8-8-8-6 (4).
        let c = config(opt, 30, None);
        let plain = single(&c, 1);
        for workers in [2, 3, 4] {
            let all = parallel(&c, workers);
            for w in &all[1..] {
                assert_eq!(bits(w), bits(&all[0]), "{opt}: ranks differ");
            }
            assert_eq!(
                bits(&all[0]),
                bits(&single(&c, workers)),
                "{opt} x{workers}"
            );
            let diff = all[0]
                .iter()
                .zip(&plain)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-6, "{opt} x{workers}: {diff}");
        }
    }
}

#[test]
fn private_training_splits_clipping_and_adds_noise_once() {
    let c = config("sgd:lr=0.5", 64, Some("noise=1.0,delta=1e-5,clip=1.0"));
    let plain = single(&c, 1);
    let all = parallel(&c, 3);
    let diff = all[0]
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // The same Poisson batches, clipping and noise draw; only the order of the additions differs.
    assert!(diff < 1e-5, "{diff}");
    let moved = all[0]
        .iter()
        .zip(&single(
            &config("sgd:lr=0.5", 64, Some("noise=0,delta=1e-5,clip=1.0")),
            1,
        ))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the noise should move the weights: {moved}");
}

#[test]
fn a_resumed_parallel_run_continues_exactly() {
    let c = config("adamw:lr=1e-2", 32, None);
    let want = parallel(&c, 2);
    let text = c.to_toml().unwrap();
    let dir = std::env::temp_dir().join(format!("optlab-dist-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stop = |t: &mut Trainer, rank: usize, stop_at: Option<u64>| {
        let opts = RunOptions {
            run_dir: (rank == 0).then(|| dir.clone()),
            stop_at,
        };
        t.run_with(&opts, &mut []).map(|_| ())
    };
    run(2, DEFAULT_TIMEOUT, |comm| {
        let mut t = Trainer::new(TrainConfig::from_toml(&text)?)?;
        t.distribute(Box::new(comm.clone()))?;
        stop(&mut t, comm.rank(), Some(4))
    })
    .unwrap();
    let got = run(2, DEFAULT_TIMEOUT, |comm| {
        // Rank 0 holds the directory's lock; the others read it without.
        let mut t = if comm.rank() == 0 {
            Trainer::resume(&dir)?
        } else {
            Trainer::resume_shared(&dir)?
        };
        assert_eq!(t.step(), 4);
        t.distribute(Box::new(comm.clone()))?;
        stop(&mut t, comm.rank(), None)?;
        Ok(weights(&t))
    })
    .unwrap();
    assert_eq!(bits(&got[0]), bits(&want[0]));
    assert_eq!(bits(&got[1]), bits(&want[0]));
}

#[test]
fn bad_parallel_settings_are_refused() {
    let err = run(4, DEFAULT_TIMEOUT, |comm| {
        let mut t = Trainer::new(config("sgd:lr=0.1", 3, None))?;
        t.distribute(Box::new(comm.clone()))
    })
    .unwrap_err();
    assert!(err.to_string().contains("cannot feed 4 ranks"), "{err}");
    let err = run(2, DEFAULT_TIMEOUT, |comm| {
        let mut c = config("sgd:lr=0.1", 8, None);
        c.options.seed = comm.rank() as u64;
        let mut t = Trainer::new(c)?;
        t.distribute(Box::new(comm.clone()))
    })
    .unwrap_err();
    assert!(err.to_string().contains("disagrees with rank 0"), "{err}");
    let err = run(2, DEFAULT_TIMEOUT, |comm| {
        let mut c = config("sgd:lr=0.1", 8, None);
        c.options.accumulate = 2;
        let mut t = Trainer::new(c)?;
        t.distribute(Box::new(comm.clone()))
    })
    .unwrap_err();
    assert!(err.to_string().contains("accumulate"), "{err}");
}
