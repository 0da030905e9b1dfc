//! `cargo xtask validate`: format check, clippy with warnings denied, the tests, clippy of the
//! `wgpu` GPU build, the multi-process build and its `mpirun` tests where MPI is installed,
//! clippy of the `cuda` build (and of `cuda` with NCCL) where its LLVM is installed, and the
//! docs with warnings denied, cheapest first, stopping at the first failure.
//!
//! `duet-mpi` links the system's MPI, so the steps that need no MPI leave it out
//! (`--exclude duet-mpi`): the two README commands work on a machine without it.

use std::process::{Command, ExitCode};

/// One step: what it checks, the cargo arguments, extra environment variables, and a check that
/// says why the step cannot run on this machine (then it is skipped, saying so).
type Step = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    Option<fn() -> Option<String>>,
);

/// `cargo clippy` with warnings denied, then the selection arguments.
macro_rules! clippy {
    ($($selection:literal),+) => {
        &[
            "clippy",
            $($selection,)+
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]
    };
}

/// The steps, cheapest first.
const STEPS: &[Step] = &[
    ("format", &["fmt", "--all", "--", "--check"], &[], None),
    (
        "clippy",
        clippy!("--workspace", "--exclude", "duet-mpi"),
        &[],
        None,
    ),
    (
        "tests",
        &["test", "--workspace", "--exclude", "duet-mpi", "--locked"],
        &[],
        None,
    ),
    // The GPU backend that builds anywhere (no GPU or driver needed to compile), so it cannot
    // break unnoticed.
    (
        "wgpu",
        clippy!("--package", "duet-cli", "--features", "wgpu"),
        &[],
        None,
    ),
    // Several processes: everything with MPI and NCCL (cudarc loads CUDA and NCCL at run time,
    // so this builds without a GPU), then the `mpirun -np 2` tests. `--workspace` keeps the
    // dependencies' features those of the steps above, so only the MPI crates and duet-cli
    // build again. scripts/setup_mpi.sh installs MPI; .ci/run runs it.
    (
        "mpi",
        clippy!("--workspace", "--features", "duet-cli/nccl"),
        &[],
        Some(mpi_missing),
    ),
    (
        "mpi tests",
        &[
            "test",
            "--workspace",
            "--features",
            "duet-cli/mpi",
            "--test",
            "mpi",
            "--locked",
        ],
        &[],
        Some(mpi_missing),
    ),
    // The CUDA build needs burn's LLVM with NVPTX, which scripts/setup_cuda_llvm.sh installs
    // from PyPI (~400 MB); where it is installed, the build is checked like wgpu's.
    (
        "cuda",
        clippy!("--package", "duet-cli", "--features", "cuda"),
        &[],
        Some(cuda_llvm_missing),
    ),
    // NCCL next to CUDA: the multi-GPU build (needs both set-ups).
    (
        "cuda + nccl",
        clippy!("--package", "duet-cli", "--features", "cuda,nccl"),
        &[],
        Some(cuda_or_mpi_missing),
    ),
    (
        "docs",
        &[
            "doc",
            "--workspace",
            "--exclude",
            "duet-mpi",
            "--no-deps",
            "--locked",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
        None,
    ),
    (
        "mpi docs",
        &[
            "doc",
            "--package",
            "duet-mpi",
            "--features",
            "nccl",
            "--no-deps",
            "--locked",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
        Some(mpi_missing),
    ),
];

/// Why the MPI steps cannot run: no `mpicc` (rsmpi's build finds MPI through it) or no
/// `mpirun` on PATH.
fn mpi_missing() -> Option<String> {
    let found = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    };
    let missing: Vec<&str> = ["mpicc", "mpirun"]
        .into_iter()
        .filter(|tool| !found(tool))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "no {} on PATH (run scripts/setup_mpi.sh to check and test the multi-process build)",
            missing.join(" or ")
        )
    })
}

fn cuda_or_mpi_missing() -> Option<String> {
    cuda_llvm_missing().or_else(mpi_missing)
}

/// Why the `cuda` step cannot run: the LLVM tree cubecl-llvm links (and would otherwise try to
/// download, which fails offline) is not installed where its build script looks.
fn cuda_llvm_missing() -> Option<String> {
    let Some(data) = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share"))
        })
    else {
        return Some("neither XDG_DATA_HOME nor HOME is set, so its LLVM cannot be found".into());
    };
    let tree = data.join("tracel/tracel-llvm-23.1.0-4");
    if tree.join(".tracel-llvm-installed").is_file() {
        None
    } else {
        Some(format!(
            "no LLVM with NVPTX in {} (run scripts/setup_cuda_llvm.sh to check the cuda build)",
            tree.display()
        ))
    }
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    if task.as_deref() != Some("validate") {
        eprintln!("usage: cargo xtask validate");
        return ExitCode::from(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (what, args, envs, missing) in STEPS {
        if let Some(reason) = missing.and_then(|why| why()) {
            eprintln!("==> {what}: SKIPPED: {reason}");
            continue;
        }
        eprintln!("==> {what}: cargo {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(*args)
            .envs(envs.iter().copied())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("==> {what} failed ({s})");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("==> {what}: could not run cargo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("==> validate: all steps passed");
    ExitCode::SUCCESS
}
