//! Multi-process training over MPI (`cargo test -p duet-cli --features mpi --test mpi`, after
//! scripts/setup_mpi.sh): `mpirun -np 2 duet …` on the bundled sample, against `--devices
//! cpu,cpu` and one process on the same global batch; faults (a killed rank, a hung rank, a
//! signal to one rank, ranks with different configs); resume, elastic included.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One MPI job at a time: each already has the machine's two cores.
static JOBS: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    JOBS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `mpirun -np <np> duet <args>` (as root where need be), in the repository root.
fn mpirun_command(np: usize, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new("mpirun");
    command
        .args([
            "-np",
            &np.to_string(),
            "--oversubscribe",
            env!("CARGO_BIN_EXE_duet"),
        ])
        .args(args)
        .current_dir(root())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied());
    command
}

/// `mpirun -np 2 duet <args>`, started in the background, its output captured.
fn spawn_two(args: &[String], env: &[(&str, &str)]) -> Child {
    mpirun_command(2, &strs(args), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts")
}

fn mpirun(np: usize, args: &[&str], env: &[(&str, &str)]) -> Output {
    mpirun_command(np, args, env).output().expect("mpirun runs")
}

fn duet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("duet runs")
}

fn succeeded(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tiny model, `steps` steps of a global batch of 16 in 2 data slots, no evaluation.
fn run_args(dir: &Path, steps: u64, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--run-dir",
        dir.to_str().expect("utf-8 path"),
    ]
    .map(String::from)
    .to_vec();
    let steps = format!("train.steps={steps}");
    for set in [
        steps.as_str(),
        "train.batch_size=8",
        "data.slots=2",
        "data.shuffle_buffer=50",
        "schedule.warmup_steps=2",
        "log.every_steps=1",
        "checkpoint.every_steps=2",
        "eval.retrieval=[]",
    ]
    .iter()
    .chain(extra)
    {
        args.push("--set".into());
        args.push((*set).into());
    }
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn losses(dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON row"))
        .filter_map(|row| row.get("loss")?.as_f64())
        .collect()
}

fn bits(losses: &[f64]) -> Vec<u64> {
    losses.iter().map(|l| l.to_bits()).collect()
}

fn worst_relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) / x).abs())
        .fold(0.0, f64::max)
}

#[test]
fn two_processes_train_like_two_devices_and_like_one_process() {
    let _job = serial();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = |name: &str| tmp.path().join(name);
    // 2 processes × 8 (slot 0 on rank 0, slot 1 on rank 1).
    let out = mpirun(2, &strs(&run_args(&dir("mpi"), 6, &[])), &[]);
    succeeded("mpirun -np 2", &out);
    let mpi = losses(&dir("mpi"));
    assert_eq!(
        mpi.len(),
        6,
        "one metrics.jsonl row per step: rank 0 alone writes"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("6 steps of 16 (8 per device × 1 device(s) × 1 accumulated × 2 process(es))"),
        "{stderr}"
    );

    // One process on two (CPU) devices: the same blocks, the same sums, bit for bit.
    let devices = run_args(&dir("devices"), 6, &[]);
    succeeded(
        "--devices cpu,cpu",
        &duet(&[strs(&devices).as_slice(), &["--devices", "cpu,cpu"]].concat()),
    );
    assert_eq!(bits(&losses(&dir("devices"))), bits(&mpi));

    // One process, one device, the global batch of 16 at once: one block of 16 instead of two
    // of 8, so the matrix products round differently.
    let one = run_args(&dir("one"), 6, &["train.batch_size=16"]);
    succeeded("one process", &duet(&strs(&one)));
    let worst = worst_relative(&mpi, &losses(&dir("one")));
    eprintln!("one process vs 2 processes: worst relative loss difference {worst:e}");
    assert!(worst <= 1e-6, "{worst:e}");

    // Accumulation: 2 processes × 2 micro-batches of 4, against 2 devices × 2 micro-batches
    // and one process × 4 micro-batches (the four block gradients summed in another order).
    let accum = ["train.batch_size=4", "train.accum_freq=2"];
    succeeded(
        "mpirun accum",
        &mpirun(2, &strs(&run_args(&dir("mpi-accum"), 6, &accum)), &[]),
    );
    let mpi_accum = losses(&dir("mpi-accum"));
    let devices_accum = run_args(&dir("devices-accum"), 6, &accum);
    succeeded(
        "devices accum",
        &duet(&[strs(&devices_accum).as_slice(), &["--devices", "cpu,cpu"]].concat()),
    );
    // Not always bitwise: with accumulation, flex's multi-threaded reductions inside the one
    // process of two devices were seen to round one step's loss 1 ulp apart (with
    // RAYON_NUM_THREADS=1 the two agree bit for bit).
    let worst = worst_relative(&mpi_accum, &losses(&dir("devices-accum")));
    eprintln!("accum: 2 devices vs 2 processes: worst relative loss difference {worst:e}");
    assert!(worst <= 1e-6, "{worst:e}");
    let one_accum = run_args(
        &dir("one-accum"),
        6,
        &["train.batch_size=4", "train.accum_freq=4"],
    );
    succeeded("one process accum 4", &duet(&strs(&one_accum)));
    let worst = worst_relative(&mpi_accum, &losses(&dir("one-accum")));
    eprintln!(
        "accum: one process × 4 vs 2 processes × 2: worst relative loss difference {worst:e}"
    );
    assert!(worst <= 1e-6, "{worst:e}");

    // The memory-linear loss (each rank's rows against every column).
    succeeded(
        "mpirun local loss",
        &mpirun(
            2,
            &strs(&run_args(&dir("local"), 6, &["train.local_loss=true"])),
            &[],
        ),
    );
    let worst = worst_relative(&mpi, &losses(&dir("local")));
    eprintln!("local loss vs global loss: worst relative loss difference {worst:e}");
    assert!(worst <= 1e-6, "{worst:e}");

    // Over loopback TCP, as between two nodes: the same bits.
    let tcp = [
        ("OMPI_MCA_btl", "self,tcp"),
        ("OMPI_MCA_btl_tcp_if_include", "lo"),
        ("OMPI_MCA_oob_tcp_if_include", "lo"),
    ];
    succeeded(
        "mpirun over TCP",
        &mpirun(2, &strs(&run_args(&dir("tcp"), 6, &[])), &tcp),
    );
    assert_eq!(bits(&losses(&dir("tcp"))), bits(&mpi));
}

/// Waits until `path` exists, at most two minutes.
fn wait_for(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid of `rank` among `mpirun`'s children (read from its `OMPI_COMM_WORLD_RANK`).
fn rank_pid(mpirun: &Child, rank: usize) -> u32 {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let started = Instant::now();
    loop {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", mpirun.id()))
            .unwrap_or_default();
        for pid in children.split_whitespace() {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|var| var == want.as_bytes()) {
                return pid.parse().expect("a pid");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no rank {rank}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for `child`, at most `limit`; its output and how long it took.
fn finish_within(child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
        .expect("waited");
    (out, started.elapsed())
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes_bitwise() {
    let _job = serial();
    let tmp = tempfile::tempdir().expect("temp dir");
    let reference = tmp.path().join("reference");
    succeeded(
        "reference",
        &mpirun(2, &strs(&run_args(&reference, 16, &[])), &[]),
    );

    let killed = tmp.path().join("killed");
    let child = spawn_two(&run_args(&killed, 16, &[]), &[]);
    let victim = rank_pid(&child, 1);
    let latest = killed.join("checkpoints/latest");
    wait_for(&latest);
    signal(victim, "-KILL");
    let (out, took) = finish_within(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job must fail");
    assert!(stderr.contains("rank 1"), "names the dead rank:\n{stderr}");
    eprintln!("the job ended {took:?} after rank 1 was killed");
    let at_kill = std::fs::read_to_string(&latest).expect("latest");
    assert_ne!(
        at_kill.trim(),
        "step-00000016",
        "killed too late to test anything"
    );

    let resume = ["resume", killed.to_str().expect("utf-8 path")];
    succeeded("resume", &mpirun(2, &resume, &[]));
    assert_eq!(
        bits(&losses(&killed)),
        bits(&losses(&reference)),
        "killed at {at_kill}"
    );
}

#[test]
fn a_signal_to_one_rank_stops_all_at_one_step_and_the_run_resumes_elastically() {
    let _job = serial();
    let tmp = tempfile::tempdir().expect("temp dir");
    let reference = tmp.path().join("reference");
    succeeded(
        "reference",
        &mpirun(2, &strs(&run_args(&reference, 12, &[])), &[]),
    );
    let reference = losses(&reference);

    // 2 processes; SIGTERM to rank 1 only (a preempted node): every rank checkpoints after
    // the same step and the job exits 0. Then one process goes on, accumulating 2 micro-batches
    // to keep the global batch of 16.
    let run = tmp.path().join("two-then-one");
    let child = spawn_two(&run_args(&run, 12, &[]), &[]);
    let rank1 = rank_pid(&child, 1);
    wait_for(&run.join("checkpoints/latest"));
    signal(rank1, "-TERM");
    let (out, _) = finish_within(child, Duration::from_secs(60));
    succeeded("the interrupted job", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stopped = losses(&run).len();
    assert!(
        stdout.contains(&format!("interrupted at step {stopped}")),
        "{stdout}"
    );
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).expect("latest");
    assert_eq!(
        latest.trim(),
        format!("step-{stopped:08}"),
        "one checkpoint, at the agreed step"
    );
    assert!(stopped < 12, "interrupted too late to test anything");
    let run_str = run.to_str().expect("utf-8 path");
    succeeded(
        "resume on 1 process",
        &duet(&["resume", run_str, "--set", "train.accum_freq=2"]),
    );
    assert_eq!(
        bits(&losses(&run)),
        bits(&reference),
        "2 -> 1 process after step {stopped}"
    );

    // And the other way: one process accumulating, interrupted, resumed on 2 processes.
    let run = tmp.path().join("one-then-two");
    let mut child = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(run_args(&run, 12, &["train.accum_freq=2"]))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("duet starts");
    wait_for(&run.join("checkpoints/latest"));
    signal(child.id(), "-TERM");
    assert!(child.wait().expect("exits").success());
    let run_str = run.to_str().expect("utf-8 path");
    succeeded(
        "resume on 2 processes",
        &mpirun(2, &["resume", run_str, "--set", "train.accum_freq=1"], &[]),
    );
    assert_eq!(bits(&losses(&run)), bits(&reference), "1 -> 2 processes");
}

#[test]
fn a_hung_rank_ends_the_job_naming_the_collective() {
    // Rank 1 stopped (SIGSTOP: alive, silent): rank 0's next collective waits for it, and the
    // watchdog ends the job after DUET_COLLECTIVE_TIMEOUT_S instead of hanging forever.
    let _job = serial();
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = tmp.path().join("hung");
    let child = spawn_two(
        &run_args(&run, 1000, &[]),
        &[("DUET_COLLECTIVE_TIMEOUT_S", "3")],
    );
    let rank1 = rank_pid(&child, 1);
    wait_for(&run.join("checkpoints/latest"));
    signal(rank1, "-STOP");
    let (out, took) = finish_within(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("duet: rank 0: MPI "), "{stderr}");
    assert!(stderr.contains("has waited"), "{stderr}");
    eprintln!("the job ended {took:?} after rank 1 stopped");
}

#[test]
fn ranks_started_differently_are_refused_naming_the_rank() {
    // MPMD: rank 1 gets another seed. Every rank refuses before any work, naming rank 1.
    let _job = serial();
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = tmp.path().join("mixed");
    let args = run_args(&run, 6, &[]);
    let mut command = Command::new("mpirun");
    command
        .args(["-np", "1", env!("CARGO_BIN_EXE_duet")])
        .args(&args)
        .args([":", "-np", "1", env!("CARGO_BIN_EXE_duet")])
        .args(&args)
        .args(["--set", "train.seed=1"])
        .current_dir(root())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    let out = command.output().expect("mpirun runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rank 1 was started with another train config than rank 0"),
        "{stderr}"
    );
    assert!(!run.join("checkpoints").exists(), "refused before any work");
}
