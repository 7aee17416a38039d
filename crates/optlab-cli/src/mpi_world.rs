//! Joining the MPI world for `--distributed` (cargo feature `mpi`); without the feature, one clear error.

use anyhow::Result;
use optlab::distributed::Communicator;

/// This process's rank of the world started by `mpirun`.
#[cfg(feature = "mpi")]
pub fn join() -> Result<Box<dyn Communicator>> {
    Ok(Box::new(optlab::distributed::mpi::MpiComm::init()?))
}

#[cfg(not(feature = "mpi"))]
pub fn join() -> Result<Box<dyn Communicator>> {
    anyhow::bail!(
        "--distributed needs MPI: this optlab was built without it (build with --features optlab-cli/mpi, which links the system Open MPI)"
    )
}
