//! Exercises: the student copy, and the proof that the tests discriminate.
//!
//! A region of the reference solution is marked in `src/`:
//!
//! ```text
//!     // EXERCISE(4): bind-mount the rootfs onto itself …
//!     …the solution…
//!     // END EXERCISE
//! ```
//!
//! In the student copy the whole region, markers included, becomes
//! `todo!("step 4: bind-mount the rootfs onto itself …")`, so the copy still
//! compiles and holds no trace of the solution. Regions are whole function
//! bodies, so `todo!()` type-checks in their place.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const START: &str = "// EXERCISE(";
const END: &str = "// END EXERCISE";

/// Replaces every region whose step passes `keep` with `todo!`; returns the
/// new text and how many regions it replaced.
pub fn stub_regions(text: &str, keep: &dyn Fn(u32) -> bool) -> Result<(String, usize)> {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    let mut count = 0;
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix(START) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let (step, task) = rest
            .split_once("):")
            .with_context(|| format!("malformed exercise marker: {line}"))?;
        let step: u32 = step
            .parse()
            .with_context(|| format!("bad step in: {line}"))?;
        let task = task.trim();
        let mut body = Vec::new();
        loop {
            let next = lines
                .next()
                .with_context(|| format!("exercise '{task}' has no `{END}`"))?;
            if next.trim() == END {
                break;
            }
            body.push(next);
        }
        if keep(step) {
            let indent = &line[..line.len() - line.trim_start().len()];
            let task = task.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!("{indent}todo!(\"step {step}: {task}\")\n"));
            count += 1;
        } else {
            for l in body {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    Ok((out, count))
}

/// The step numbers that have exercise regions.
pub fn steps_with_exercises(root: &Path) -> Result<BTreeSet<u32>> {
    let mut steps = BTreeSet::new();
    for file in crate::anchors::files_with_ext(&root.join("src"), "rs")? {
        let text = std::fs::read_to_string(&file)?;
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix(START)
                && let Some((n, _)) = rest.split_once(')')
            {
                steps.insert(n.parse()?);
            }
        }
    }
    Ok(steps)
}

/// Writes the workspace's tracked files to `out`, with the regions of the
/// steps that pass `keep` stubbed. Returns how many regions were stubbed.
pub fn write_student_copy(root: &Path, out: &Path, keep: impl Fn(u32) -> bool) -> Result<usize> {
    let listing = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ])
        .current_dir(root)
        .output()
        .context("cannot run git ls-files")?;
    if !listing.status.success() {
        bail!("git ls-files failed in {}", root.display());
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let mut count = 0;
    for name in listing.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name)?;
        let (from, to) = (root.join(name), out.join(name));
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if name.starts_with("src/") && name.ends_with(".rs") {
            let (text, n) = stub_regions(&std::fs::read_to_string(&from)?, &keep)
                .with_context(|| format!("in {name}"))?;
            std::fs::write(&to, text)?;
            count += n;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(count)
}

/// For each step with exercises: builds the copy with that step's regions
/// stubbed, and requires its graded tests to fail there. (They pass on the
/// reference: that is `cargo test`.)
pub fn check(root: &Path) -> Result<()> {
    let copy = root.join("target/exercise-check/copy");
    let target = root.join("target/exercise-check/target");
    let mut report = Vec::new();
    for step in steps_with_exercises(root)? {
        let n = write_student_copy(root, &copy, |s| s == step)?;
        // The stubs leave unused variables behind: warnings are expected.
        let build = Command::new("cargo")
            .args(["build", "--quiet", "--all-targets"])
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", &target)
            .output()?;
        if !build.status.success() {
            bail!(
                "step {step}: the student copy does not compile:\n{}",
                String::from_utf8_lossy(&build.stderr)
            );
        }
        // Grade the stub the way a student's work is graded.
        let name = format!("step{step}");
        let graded = crate::grade::grade(root, &copy, Some(&name), Some(&target))?;
        let tests = &graded[0].1;
        let failed = tests.iter().filter(|t| !t.passed).count();
        let score: f64 = tests.iter().map(|t| t.score).sum();
        let max: f64 = tests.iter().map(|t| t.max_score).sum();
        if failed == 0 {
            bail!(
                "step {step}: its tests PASS with the solution removed ({n} regions stubbed): the tests do not grade the exercise"
            );
        }
        report.push(format!(
            "step {step}: {n} regions stubbed -> {failed} of {} tests fail, score {score:.1}/{max:.1}",
            tests.len()
        ));
    }
    println!("check-exercises: every step's tests fail on its stub");
    for line in report {
        println!("  {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_become_todo_and_leave_no_trace() {
        let src = "fn a() -> u32 {\n    // EXERCISE(2): return \"two\"\n    2\n    // END EXERCISE\n}\nfn b() {}\n";
        let (out, n) = stub_regions(src, &|_| true).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "fn a() -> u32 {\n    todo!(\"step 2: return \\\"two\\\"\")\n}\nfn b() {}\n"
        );
        let (kept, n) = stub_regions(src, &|s| s != 2).unwrap();
        assert_eq!(n, 0);
        assert_eq!(kept, "fn a() -> u32 {\n    2\n}\nfn b() {}\n");
        assert!(stub_regions("// EXERCISE(1): x\n", &|_| true).is_err());
    }
}
