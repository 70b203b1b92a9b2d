//! `grade-vms`: grade a folder of submissions, each in a virtual machine of
//! its own, several at once.
//!
//! The graded tests run as root, make bridges and cgroups and bind ports:
//! two submissions graded at once on one machine would grade each other,
//! and a submission's code runs with the grader's privileges. In the VM
//! lane's machine (`vm.rs`: Debian's kernel, pure cgroup v2, software
//! emulation) each submission has a kernel, a network and a `/tmp` of its
//! own, sees the host only read-only, and can harm nothing but its VM. So
//! submissions can be graded side by side: `--jobs` VMs at a time.
//!
//! For each `SUBMISSIONS/NAME/` (a student's checkout): the reference's
//! `tests/` replace the submission's (nobody is graded by tests they
//! edited); its test binaries are built on the host, in its own `target/`;
//! then a VM runs every test of them (none skipped: a skipped test would
//! count as failed), and the logs are scored with the reference's
//! `tests/weights.toml` into `OUT/NAME.json` (Gradescope's format). A
//! table of totals ends the run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::grade::{self, StepPoints, TestOutcome};

/// A submission, once built: its directory and its test binaries, or why
/// it has none.
struct Built {
    name: String,
    dir: PathBuf,
    tests: Result<Vec<(String, PathBuf)>, String>,
}

/// `cargo xtask grade-vms SUBMISSIONS OUT [--jobs N] [--step S]… [--timeout-min M]`
pub fn run(
    root: &Path,
    submissions: &Path,
    out: &Path,
    jobs: usize,
    only: &[String],
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let weights: Vec<StepPoints> = grade::load_weights(root)?
        .into_iter()
        .filter(|w| only.is_empty() || only.contains(&w.name))
        .collect();
    if weights.is_empty() {
        bail!("no step of tests/weights.toml is named {}", only.join(", "));
    }
    let names: Vec<String> = weights.iter().map(|w| w.name.clone()).collect();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(submissions)
        .with_context(|| format!("cannot read {}", submissions.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("{} holds no submission directory", submissions.display());
    }
    std::fs::create_dir_all(out)?;
    let work = root.join("target/vm");
    let kernel = crate::vm::fetch_kernel(&work.join("kernel"))?;
    let probe = crate::vm::build_probe(root)?;

    // Builds one after another: each takes every core there is.
    let mut built = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("\n==> building {name}");
        let tests = replace_tests(root, &dir)
            .and_then(|()| crate::vm::build_test_binaries(&dir, &names, true))
            .map_err(|e| format!("{e:#}"));
        built.push(Built { name, dir, tests });
    }

    // Then the VMs, `jobs` at a time.
    let queue = Mutex::new(built.into_iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.next()).ok().flatten();
                    let Some(sub) = next else { break };
                    let graded = grade_one(root, &sub, &kernel, &probe, &weights, timeout);
                    if let Ok(mut r) = results.lock() {
                        r.push((sub.name, graded));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    println!("\n{:<30} {:>8} {:>8}", "submission", "score", "of");
    for (name, graded) in &results {
        match graded {
            Ok(graded) => {
                let json = grade::gradescope(graded);
                std::fs::write(
                    out.join(format!("{name}.json")),
                    serde_json::to_string_pretty(&json)?,
                )?;
                let (score, max) = totals(graded);
                println!("{name:<30} {score:>8.2} {max:>8.2}");
            }
            Err(why) => println!("{name:<30} {:>8} {:>8}  {why}", "-", "-"),
        }
    }
    println!(
        "grade-vms: {} submissions in {:.0} s; results in {}",
        results.len(),
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The reference's `tests/` in place of the submission's.
fn replace_tests(root: &Path, dir: &Path) -> Result<()> {
    let tests = dir.join("tests");
    if tests.exists() {
        std::fs::remove_dir_all(&tests)
            .with_context(|| format!("cannot remove {}", tests.display()))?;
    }
    crate::sh(
        root,
        "cp",
        &[
            "-a",
            root.join("tests").to_str().context("utf-8 path")?,
            tests.to_str().context("utf-8 path")?,
        ],
    )
}

/// Runs one built submission in a VM and scores its logs.
fn grade_one(
    root: &Path,
    sub: &Built,
    kernel: &Path,
    probe: &Path,
    weights: &[StepPoints],
    timeout: Duration,
) -> Result<Vec<(String, Vec<TestOutcome>)>, String> {
    let tests = sub
        .tests
        .as_ref()
        .map_err(|e| format!("did not build: {}", first_line(e)))?;
    let work = root.join("target/vm-grade").join(&sub.name);
    let booted = crate::vm::run_in_vm(&sub.dir, &work, kernel, tests, probe, false, timeout)
        .map_err(|e| format!("the VM failed: {e:#}"))?;
    let mut graded = Vec::new();
    for step in weights {
        let log = std::fs::read_to_string(booted.out.join(format!("{}.log", step.name)))
            .unwrap_or_default();
        let mut parsed = grade::parse(&log);
        // A test that reported nothing (the VM's deadline, a crash) counts
        // as failed, so its points are not shared among the others.
        // (The list was written in the VM too: a test binary links the
        // submission's code, which runs nowhere but there.)
        let listed = std::fs::read_to_string(booted.out.join(format!("{}.list", step.name)))
            .unwrap_or_default();
        for name in listed.lines().filter_map(|l| l.strip_suffix(": test")) {
            if !parsed.iter().any(|(n, ..)| n == name) {
                parsed.push((
                    name.to_string(),
                    false,
                    "reported no result in the VM: did it hang or crash?".into(),
                ));
            }
        }
        graded.push((step.name.clone(), grade::score_step(step, &parsed, "")));
    }
    if booted.timed_out {
        println!(
            "grade-vms: {}'s VM reached the deadline ({timeout:?}); what ran is scored",
            sub.name
        );
    }
    Ok(graded)
}

fn totals(graded: &[(String, Vec<TestOutcome>)]) -> (f64, f64) {
    graded
        .iter()
        .flat_map(|(_, tests)| tests)
        .fold((0.0, 0.0), |(s, m), t| (s + t.score, m + t.max_score))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
