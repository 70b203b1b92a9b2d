//! `cargo xtask`: the project's own tooling, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`             every check CI runs (the README's test command)
//! - `cargo xtask check-anchors`  every `{{#include}}` in the book resolves to text
//! - `cargo xtask outputs [--check]`  regenerate the book's command outputs
//!   (or check they still match, numbers aside)
//! - `cargo xtask exercises [--step N] [--out DIR]`  write the student copy
//! - `cargo xtask check-exercises`  prove each step's tests fail on its stub
//! - `cargo xtask grade [--step N] [--format table|json|gradescope|classroom] [--out FILE] [--dir DIR]`
//! - `cargo xtask status`         which steps pass, as a table
//! - `cargo xtask doctor`         can this machine run each step?
//! - `cargo xtask bench-peers [--runs N]`  caixa beside runc and crun, same run
//! - `cargo xtask vm-test [--steps 4,6,7] [--kernel DIR] [--timeout-min N]`  the tests on pure cgroup v2, in QEMU

mod anchors;
mod doctor;
mod exercises;
mod grade;
mod outputs;
mod peers;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() {
    if let Err(error) = run(std::env::args().skip(1).collect()) {
        eprintln!("xtask: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let root = workspace_root();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("check-anchors") => anchors::check(&root),
        Some("outputs") => outputs::run(&root, rest.contains(&"--check")),
        Some("exercises") => {
            let step = flag_value(&rest, "--step")
                .map(|s| s.parse::<u32>().context("--step takes a number"))
                .transpose()?;
            let out = flag_value(&rest, "--out")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/student"));
            let n =
                exercises::write_student_copy(&root, &out, |s| step.is_none_or(|max| s <= max))?;
            println!(
                "wrote the student copy to {} ({n} exercise regions stubbed)",
                out.display()
            );
            Ok(())
        }
        Some("check-exercises") => exercises::check(&root),
        Some("grade") => grade::command(
            &root,
            flag_value(&rest, "--step"),
            flag_value(&rest, "--format").unwrap_or("table"),
            flag_value(&rest, "--out").map(PathBuf::from),
            flag_value(&rest, "--dir").map(PathBuf::from),
        ),
        Some("status") => grade::command(&root, None, "table", None, None),
        Some("doctor") => doctor::run(),
        Some("vm-test") => {
            let steps: Vec<u32> = flag_value(&rest, "--steps")
                .unwrap_or("4,6,7")
                .split(',')
                .map(|s| s.trim().parse().context("--steps takes numbers like 4,6,7"))
                .collect::<Result<_>>()?;
            let minutes: u64 = flag_value(&rest, "--timeout-min")
                .map(str::parse)
                .transpose()
                .context("--timeout-min takes a number")?
                .unwrap_or(15);
            vm::run(
                &root,
                &steps,
                flag_value(&rest, "--kernel").map(PathBuf::from),
                std::time::Duration::from_secs(minutes * 60),
            )
        }
        Some("bench-peers") => peers::run(
            &root,
            flag_value(&rest, "--runs")
                .map(str::parse)
                .transpose()
                .context("--runs takes a number")?
                .unwrap_or(100),
        ),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | doctor | vm-test [--steps 4,6,7] [--kernel DIR] [--timeout-min N] | bench-peers [--runs N] | status | grade [--step N] [--format table|json|gradescope|classroom] [--out FILE] [--dir DIR] | check-anchors | outputs [--check] | exercises [--step N] [--out DIR] | check-exercises>"
            );
            std::process::exit(2);
        }
    }
}

fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .copied()
}

/// The repository root: xtask lives in `<root>/xtask`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Runs a command in `dir`, streaming its output, and fails if it fails.
pub fn sh(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    println!("\n==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {program}: is it installed?"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The grader itself, on the reference solution: every test must score.
/// (`check-exercises` grades the stubs, where they must not.)
fn grade_reference(root: &Path) -> Result<()> {
    println!("\n==> cargo xtask grade (the reference must score full marks)");
    let graded = grade::grade(root, root, None, None)?;
    print!("{}", grade::table(&graded));
    let missed: Vec<&str> = graded
        .iter()
        .flat_map(|(_, t)| t)
        .filter(|t| !t.passed)
        .map(|t| t.name.as_str())
        .collect();
    if !missed.is_empty() {
        bail!("the reference does not score full marks: {missed:?}");
    }
    Ok(())
}

/// Everything CI checks, in the order a failure is cheapest to find.
fn ci(root: &Path) -> Result<()> {
    sh(root, "cargo", &["fmt", "--all", "--check"])?;
    anchors::check(root)?;
    sh(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    sh(root, "cargo", &["test", "--workspace"])?;
    grade_reference(root)?;
    outputs::run(root, true)?;
    sh(root, "mdbook", &["build", "book"])?;
    exercises::check(root)?;
    println!("\nxtask ci: every check passed");
    Ok(())
}
