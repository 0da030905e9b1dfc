//! `cargo xtask validate`: format check, clippy with warnings denied, the tests, clippy of the
//! `wgpu` GPU build, and the docs with warnings denied, cheapest first, stopping at the first
//! failure.

use std::process::{Command, ExitCode};

/// One step: what it checks, the cargo arguments, extra environment variables.
type Step = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// The steps, cheapest first.
const STEPS: &[Step] = &[
    ("format", &["fmt", "--all", "--", "--check"], &[]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    ),
    ("tests", &["test", "--workspace", "--locked"], &[]),
    // The GPU backend that builds anywhere (no GPU or driver needed to compile), so it cannot
    // break unnoticed. `cuda` needs scripts/setup_cuda_llvm.sh first and is checked by hand.
    (
        "wgpu",
        &[
            "clippy",
            "--package",
            "duet-cli",
            "--features",
            "wgpu",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    ),
    (
        "docs",
        &["doc", "--workspace", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    ),
];

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    if task.as_deref() != Some("validate") {
        eprintln!("usage: cargo xtask validate");
        return ExitCode::from(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (what, args, envs) in STEPS {
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
