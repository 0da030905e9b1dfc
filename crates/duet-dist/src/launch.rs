//! What the launcher (`mpirun`, `srun`) tells a process about its job, read from the
//! environment before any engine is initialised.

use crate::CommError;

/// A process started by a launcher as one rank of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Which launcher's variables were read: `"Open MPI"`, `"MPICH"`, `"Slurm"`.
    pub launcher: &'static str,
    /// Ranks in the job.
    pub world: usize,
    /// This process's rank.
    pub rank: usize,
    /// Its rank among the processes of its node, when the launcher says (picks the GPU).
    pub local_rank: Option<usize>,
    /// How many of the job's processes share its node, when the launcher says.
    pub local_size: Option<usize>,
}

/// The job this process belongs to, from the launcher's variables: Open MPI's
/// `OMPI_COMM_WORLD_{SIZE,RANK,LOCAL_RANK}`, MPICH/Hydra's `PMI_{SIZE,RANK}` and
/// `MPI_LOCALRANKID`, or Slurm's `SLURM_STEP_NUM_TASKS`, `SLURM_PROCID`, `SLURM_LOCALID` (set
/// inside an `srun` step, not in the batch script itself). `None` for a process started by
/// hand or a world of one.
pub fn detect_launch() -> Result<Option<Launch>, CommError> {
    detect_from(|name| std::env::var(name).ok())
}

fn detect_from(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, CommError> {
    let schemes: [(&'static str, &str, &str, &str, &str); 3] = [
        (
            "Open MPI",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        ),
        (
            "MPICH",
            "PMI_SIZE",
            "PMI_RANK",
            "MPI_LOCALRANKID",
            "MPI_LOCALNRANKS",
        ),
        (
            "Slurm",
            "SLURM_STEP_NUM_TASKS",
            "SLURM_PROCID",
            "SLURM_LOCALID",
            "SLURM_NTASKS_PER_NODE",
        ),
    ];
    for (launcher, size, rank, local, local_count) in schemes {
        let Some(world) = var(size) else {
            continue;
        };
        let number = |name: &str, value: &str| {
            value.trim().parse::<usize>().map_err(|_| {
                CommError::Launch(format!("{launcher} set {name}={value:?}, not a number"))
            })
        };
        let world = number(size, &world)?;
        let rank = match var(rank) {
            Some(value) => number(rank, &value)?,
            None => {
                return Err(CommError::Launch(format!(
                    "{launcher} set {size} but not {rank}"
                )));
            }
        };
        let local_rank = var(local).map(|v| number(local, &v)).transpose()?;
        // Slurm writes e.g. `2(x3)` for uneven nodes; the leading count is this layout's.
        let local_size = var(local_count).and_then(|v| {
            let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok().filter(|n| *n > 0)
        });
        if world == 0 || rank >= world {
            return Err(CommError::Launch(format!(
                "{launcher} says rank {rank} of {world}"
            )));
        }
        if world == 1 {
            return Ok(None);
        }
        return Ok(Some(Launch {
            launcher,
            world,
            rank,
            local_rank,
            local_size,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn detect(vars: &[(&str, &str)]) -> Result<Option<Launch>, CommError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        detect_from(|name| map.get(name).cloned())
    }

    #[test]
    fn reads_each_launchers_variables() {
        let open_mpi = detect(&[
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]);
        assert_eq!(
            open_mpi.expect("valid"),
            Some(Launch {
                launcher: "Open MPI",
                world: 4,
                rank: 3,
                local_rank: Some(1),
                local_size: Some(2),
            })
        );
        let slurm = detect(&[("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "0")]);
        assert_eq!(
            slurm.expect("valid").map(|l| (l.launcher, l.rank)),
            Some(("Slurm", 0))
        );
        assert_eq!(detect(&[]).expect("none"), None);
        // A world of one is no job at all.
        let one = detect(&[("PMI_SIZE", "1"), ("PMI_RANK", "0")]);
        assert_eq!(one.expect("valid"), None);
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let err = detect(&[("PMI_SIZE", "2"), ("PMI_RANK", "2")]).expect_err("rank 2 of 2");
        assert!(err.to_string().contains("rank 2 of 2"), "{err}");
        let err = detect(&[("PMI_SIZE", "two"), ("PMI_RANK", "0")]).expect_err("not a number");
        assert!(err.to_string().contains("PMI_SIZE"), "{err}");
        let err = detect(&[("SLURM_STEP_NUM_TASKS", "2")]).expect_err("no rank");
        assert!(err.to_string().contains("SLURM_PROCID"), "{err}");
    }
}
