//! `cargo xtask`: the project's own tooling, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`             every check CI runs (the README's test command)
//! - `cargo xtask check-anchors`  every `{{#include}}` in the book resolves to text
//! - `cargo xtask outputs [--check]`  regenerate the book's command outputs
//!   (or check they still match, numbers aside)
//! - `cargo xtask exercises [--step N] [--out DIR]`  write the student copy
//! - `cargo xtask check-exercises`  prove each step's tests fail on its stub

mod anchors;
mod exercises;
mod outputs;

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
            let n = exercises::write_student_copy(&root, &out, |s| step.is_none_or(|max| s <= max))?;
            println!("wrote the student copy to {} ({n} exercise regions stubbed)", out.display());
            Ok(())
        }
        Some("check-exercises") => exercises::check(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | check-anchors | outputs [--check] | exercises [--step N] [--out DIR] | check-exercises>"
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

/// Everything CI checks, in the order a failure is cheapest to find.
fn ci(root: &Path) -> Result<()> {
    sh(root, "cargo", &["fmt", "--all", "--check"])?;
    anchors::check(root)?;
    sh(root, "cargo", &["clippy", "--all-targets", "--", "-D", "warnings"])?;
    sh(root, "cargo", &["test", "--workspace"])?;
    outputs::run(root, true)?;
    sh(root, "mdbook", &["build", "book"])?;
    exercises::check(root)?;
    println!("\nxtask ci: every check passed");
    Ok(())
}
