//! Start-up time and size of the binary (a bench binary: `cargo bench
//! --bench startup`): the wall time of `pigeon --version`, `pigeon --help`
//! and `pigeon completions bash` (process start to exit, output discarded),
//! `PIGEON_STARTUP_RUNS` runs each (default 200) after 10 warm-up runs, as
//! median / p90 / min; and the size of the binary.
//!
//! The binary is the one cargo built for the bench: the release profile,
//! but with the features the dev-dependencies add to shared crates (cargo
//! unifies them for bench builds), so it is a little bigger than what
//! `cargo build --release` ships. `PIGEON_STARTUP_BIN=PATH` times another
//! binary instead (a copy of the release build, the installed
//! /usr/bin/pigeon). None of these commands reads the home or touches the
//! network.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The wall time of one run, or None if the command failed (an older
/// binary without `completions`).
fn run_once(exe: &str, args: &[&str], home: &std::path::Path) -> Option<Duration> {
    let start = Instant::now();
    let status = Command::new(exe)
        .args(args)
        .env("PIGEON_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pigeon");
    let took = start.elapsed();
    status.success().then_some(took)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let exe = std::env::var("PIGEON_STARTUP_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_pigeon").to_string());
    let exe = exe.as_str();
    let runs: usize = std::env::var("PIGEON_STARTUP_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let home = std::env::temp_dir().join(format!("pigeon-startup-bench-{}", std::process::id()));

    let size = std::fs::metadata(exe).expect("the binary").len();
    println!("binary: {exe}");
    println!("size: {size} bytes = {:.2} MB = {:.2} MiB", size as f64 / 1e6, size as f64 / (1 << 20) as f64);

    println!("{:<28} {:>10} {:>10} {:>10}  ({runs} runs)", "command", "median", "p90", "min");
    for args in [&["--version"][..], &["--help"], &["completions", "bash"]] {
        let name = format!("pigeon {}", args.join(" "));
        if (0..10).any(|_| run_once(exe, args, &home).is_none()) {
            println!("{name:<28} fails with this binary: skipped");
            continue;
        }
        let mut times: Vec<Duration> =
            (0..runs).map(|_| run_once(exe, args, &home).unwrap_or_else(|| panic!("{name} failed"))).collect();
        times.sort();
        println!(
            "{name:<28} {:>10} {:>10} {:>10}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9)),
            ms(times[0])
        );
    }
    assert!(!home.exists(), "a start-up command created the home {}", home.display());
}
