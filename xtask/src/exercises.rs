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
//! bodies (or one expression), so `todo!()` type-checks in their place.
//!
//! The copy must build without a warning, or the students learn to ignore
//! them. A stub leaves two things unused, and each is silenced where it
//! arises rather than by one blanket `allow` over the crate:
//!
//! - the function's parameters: the stub borrows them,
//!   `let _ = (&root, &flags);`, which the student deletes with the
//!   `todo!` (a borrow, not a move, so it type-checks whatever they are);
//! - the imports and helpers only the solution used: a stubbed file gets
//!   `#![allow(unused_imports, dead_code)]` under its `//!` header. The
//!   student's own code in that file is then not warned of unused imports,
//!   a small loss beside forty warnings that are not theirs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Tests at a time when a stub is graded. A stub's failing tests mostly
/// wait out their deadlines (for a daemon, a shim, an exit that never
/// comes), so they overlap well: step 11's stub took 339 s at libtest's
/// two (one per CPU here) and 100 s at eight. Only the count of failures
/// matters here; a student's work is graded at the default.
const STUB_TEST_THREADS: u32 = 8;

const START: &str = "// EXERCISE(";
const END: &str = "// END EXERCISE";

/// A harder, optional exercise: its region starts with `// HARDER(N): …`,
/// then `// STAND-IN: EXPR`, and ends with `// END HARDER`. The student copy
/// gets the stand-in instead of `todo!()`: an expression that keeps the
/// step working the plain way (e.g. "the kernel cannot", which the caller
/// already handles), so the required exercises do not depend on it.
const HARDER_START: &str = "// HARDER(";
const HARDER_END: &str = "// END HARDER";
const STAND_IN: &str = "// STAND-IN:";

/// What a stubbed file says about the `allow` it gets.
const ALLOW: &str = "#![allow(unused_imports, dead_code)] // student copy: an exercise below is stubbed, so what its solution used is unused";

/// Replaces every region that passes `keep` (its step, and whether it is a
/// harder one) with `todo!`, a harder one with its stand-in; returns the
/// new text and how many regions it replaced.
pub fn stub_regions(text: &str, keep: &dyn Fn(u32, bool) -> bool) -> Result<(String, usize)> {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    let mut count = 0;
    // The lines read so far, for the signature of the function a region is in.
    let mut seen: Vec<&str> = Vec::new();
    while let Some(line) = lines.next() {
        seen.push(line);
        let trimmed = line.trim_start();
        let (rest, harder) = match (
            trimmed.strip_prefix(START),
            trimmed.strip_prefix(HARDER_START),
        ) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => {
                out.push_str(line);
                out.push('\n');
                continue;
            }
        };
        let end = if harder { HARDER_END } else { END };
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
                .with_context(|| format!("exercise '{task}' has no `{end}`"))?;
            if next.trim() == end {
                break;
            }
            body.push(next);
        }
        let stand_in = if harder {
            let first = body.first().map(|l| l.trim()).unwrap_or_default();
            let expr = first.strip_prefix(STAND_IN).with_context(|| {
                format!("harder exercise '{task}': its first line must be `{STAND_IN} EXPR`")
            })?;
            body.remove(0);
            Some(expr.trim().to_string())
        } else {
            None
        };
        if keep(step, harder) {
            let indent = &line[..line.len() - line.trim_start().len()];
            if harder {
                out.push_str(&format!(
                    "{indent}// Harder exercise (step {step}, optional): {task}.\n\
                     {indent}// Until it is done, this stand-in keeps the step working the plain way.\n"
                ));
            }
            let params = parameters_of_body(&seen[..seen.len() - 1]);
            if !params.is_empty() {
                let borrowed: Vec<String> = params.iter().map(|p| format!("&{p}")).collect();
                let used = if borrowed.len() == 1 {
                    borrowed[0].clone()
                } else {
                    format!("({})", borrowed.join(", "))
                };
                let with = if harder { "stand-in" } else { "todo!" };
                out.push_str(&format!(
                    "{indent}let _ = {used}; // delete with the {with}\n"
                ));
            }
            match stand_in {
                Some(expr) => out.push_str(&format!("{indent}{expr}\n")),
                None => {
                    let task = task.replace('\\', "\\\\").replace('"', "\\\"");
                    out.push_str(&format!("{indent}todo!(\"step {step}: {task}\")\n"));
                }
            }
            count += 1;
        } else {
            for l in body {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    if count > 0 {
        out = with_allow(&out);
    }
    Ok((out, count))
}

/// `text` with [`ALLOW`] after its `//!` header (inner attributes must come
/// before the first item).
fn with_allow(text: &str) -> String {
    let header: usize = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.len() + 1)
        .sum();
    format!("{}{ALLOW}\n{}", &text[..header], &text[header..])
}

/// The named parameters of the function whose body starts right after
/// `before` (the lines above a region), or none when the region is not a
/// whole function body (an expression inside one uses no parameter alone).
fn parameters_of_body(before: &[&str]) -> Vec<String> {
    let Some(start) = before.iter().rposition(|l| {
        let t = l.trim_start();
        !t.starts_with("//") && (t.starts_with("fn ") || t.contains(" fn "))
    }) else {
        return Vec::new();
    };
    let signature = before[start..].join("\n");
    let Some(open) = signature.find('(') else {
        return Vec::new();
    };
    let mut depth = 0;
    let mut close = None;
    for (i, c) in signature[open..].char_indices() {
        match c {
            '(' | '[' | '<' => depth += 1,
            '>' if signature[..open + i].ends_with('-') => {} // `->`
            ')' | ']' | '>' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        return Vec::new();
    };
    // The body must begin at the region: only `{` and comments in between.
    let rest = &signature[close..];
    let Some(brace) = rest.find('{') else {
        return Vec::new();
    };
    let after: Vec<&str> = rest[brace + 1..]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    if !after.is_empty() {
        return Vec::new();
    }
    let mut params = Vec::new();
    let (mut depth, mut from) = (0, open + 1);
    let list = &signature[..close];
    for (i, c) in list.char_indices().filter(|(i, _)| *i > open) {
        match c {
            '(' | '[' | '<' => depth += 1,
            '>' if list[..i].ends_with('-') => {} // `->`
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                params.push(&list[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    params.push(&list[from..]);
    params
        .into_iter()
        .filter_map(|p| {
            let name = p.split_once(':')?.0.trim();
            let name = name.strip_prefix("mut ").unwrap_or(name).trim();
            let is_ident = name.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !name.starts_with('_')
                && !name.is_empty();
            is_ident.then(|| name.to_string())
        })
        .collect()
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

/// The steps a student copy stubs: `only` if given, else those up to
/// `up_to`, else every step with an exercise. A step without one is an
/// error that lists the steps there are.
pub fn chosen_steps(root: &Path, up_to: Option<u32>, only: &[u32]) -> Result<BTreeSet<u32>> {
    let all = steps_with_exercises(root)?;
    let listed = || {
        all.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(missing) = only.iter().find(|s| !all.contains(s)) {
        bail!(
            "step {missing} has no exercise region: the steps with exercises are {}",
            listed()
        );
    }
    Ok(match (only.is_empty(), up_to) {
        (false, _) => only.iter().copied().collect(),
        (true, Some(max)) => all.into_iter().filter(|s| *s <= max).collect(),
        (true, None) => all,
    })
}

/// Writes the workspace's tracked files to `out`, with the regions of the
/// steps that pass `keep` stubbed. Returns how many regions were stubbed.
pub fn write_student_copy(root: &Path, out: &Path, keep: impl Fn(u32) -> bool) -> Result<usize> {
    write_copy_where(root, out, |step, _| keep(step))
}

/// As [`write_student_copy`], but `keep` is also told whether a region is
/// a harder one (`check-mistakes` stubs those alone).
pub fn write_copy_where(
    root: &Path,
    out: &Path,
    keep: impl Fn(u32, bool) -> bool,
) -> Result<usize> {
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

/// The check questions' page of the instructor part, which holds answers.
const QUESTIONS: &str = "book/src/instructor/questions.md";

/// Makes the copy at `out` a student edition of the book too, and builds it
/// (into `out/book/book`): the included code is the copy's, so each
/// exercise region shows as its `todo!()`, while the prose and the hints
/// are the reference's. The check questions keep their questions and lose
/// their answers. Returns the built book's index page.
pub fn build_student_book(out: &Path) -> Result<std::path::PathBuf> {
    let questions = out.join(QUESTIONS);
    if questions.exists() {
        let text = std::fs::read_to_string(&questions)?;
        std::fs::write(&questions, questions_only(&text))?;
    }
    crate::sh(out, "mdbook", &["build", "book"])?;
    Ok(out.join("book/book/index.html"))
}

/// The check questions without their answers: each numbered item keeps
/// its `*question*`, and the text after it goes; the page's opening note
/// says so.
fn questions_only(text: &str) -> String {
    let mut out = String::new();
    let mut item: Option<String> = None;
    let flush = |item: &mut Option<String>, out: &mut String| {
        if let Some(text) = item.take() {
            let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let question = joined
                .find(". *")
                .and_then(|open| {
                    let close = joined[open + 3..].find('*')? + open + 3;
                    Some(joined[..=close].to_string())
                })
                .unwrap_or(joined);
            out.push_str(&question);
            out.push('\n');
        }
    };
    let mut intro = true;
    for line in text.lines() {
        if line.starts_with("## ") && intro {
            intro = false;
            out.push_str(
                "Three questions per step, each answerable from the chapter and checkable \
                 with a command. This is the student edition: the answers are in the \
                 instructor's.\n\n",
            );
        }
        if intro {
            if line.starts_with("# ") {
                out.push_str(line);
                out.push_str("\n\n");
            }
            continue;
        }
        let starts_item = line
            .split_once(". *")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if starts_item {
            flush(&mut item, &mut out);
            item = Some(line.to_string());
        } else if line.starts_with("   ") && item.is_some() {
            if let Some(text) = item.as_mut() {
                text.push(' ');
                text.push_str(line);
            }
        } else {
            flush(&mut item, &mut out);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut item, &mut out);
    out
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
        let name = format!("step{step}");
        // The copy must build without a warning (see the module's note):
        // what a student builds, the library, the step binaries and the
        // step's tests. Not every target: the other steps' tests and the
        // benches hold no stubbed code, and relinking them all for each of
        // twelve stubs took most of this check's time.
        let began = Instant::now();
        let build = Command::new("cargo")
            .args(["build", "--quiet", "--lib", "--bins", "--test", &name])
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", &target)
            .output()?;
        if !build.status.success() {
            bail!(
                "step {step}: the student copy does not compile:\n{}",
                String::from_utf8_lossy(&build.stderr)
            );
        }
        let stderr = String::from_utf8_lossy(&build.stderr);
        if stderr.contains("warning") {
            bail!(
                "step {step}: the student copy builds with warnings; a stub must not leave any:\n{stderr}"
            );
        }
        let built = began.elapsed();
        // Grade the stub the way a student's work is graded.
        let graded = crate::grade::grade(
            root,
            &copy,
            Some(&name),
            Some(&target),
            false,
            Some(STUB_TEST_THREADS),
        )?;
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
            "step {step}: {n} regions stubbed -> {failed} of {} tests fail, score {score:.1}/{max:.1} \
             (build {:.0} s, tests {:.0} s)",
            tests.len(),
            built.as_secs_f64(),
            (began.elapsed() - built).as_secs_f64()
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
    fn the_student_questions_have_no_answers() {
        let page = "# Check questions\n\nAnswers here.\n\n## Step 1 — PID\n\n1. *Why pid 1?* Because\n   it is the first.\n2. *What `ps` shows?* All.\n\n## Step 2\n\n1. *Up?* No.\n";
        let student = questions_only(page);
        assert_eq!(
            student,
            "# Check questions\n\nThree questions per step, each answerable from the chapter and checkable with a command. This is the student edition: the answers are in the instructor's.\n\n## Step 1 — PID\n\n1. *Why pid 1?*\n2. *What `ps` shows?*\n\n## Step 2\n\n1. *Up?*\n"
        );
        // The real page loses every answer and keeps every question.
        let real = std::fs::read_to_string(crate::workspace_root().join(QUESTIONS)).unwrap();
        let student = questions_only(&real);
        let items = |t: &str| t.lines().filter(|l| l.contains(". *")).count();
        assert_eq!(items(&student), items(&real));
        assert!(!student.contains("Orphans in the"), "{student}");
    }

    #[test]
    fn regions_become_todo_and_leave_no_trace() {
        let src = "fn a() -> u32 {\n    // EXERCISE(2): return \"two\"\n    2\n    // END EXERCISE\n}\nfn b() {}\n";
        let (out, n) = stub_regions(src, &|_, _| true).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            format!(
                "{ALLOW}\nfn a() -> u32 {{\n    todo!(\"step 2: return \\\"two\\\"\")\n}}\nfn b() {{}}\n"
            )
        );
        let (kept, n) = stub_regions(src, &|s, _| s != 2).unwrap();
        assert_eq!(n, 0);
        assert_eq!(kept, "fn a() -> u32 {\n    2\n}\nfn b() {}\n");
        assert!(stub_regions("// EXERCISE(1): x\n", &|_, _| true).is_err());
    }

    /// A harder exercise becomes its stand-in, said so, never a `todo!()`.
    #[test]
    fn a_harder_region_becomes_its_stand_in() {
        let src = "fn f(x: u8) -> Option<u8> {\n    // HARDER(7): be quick\n    // STAND-IN: None\n    Some(x)\n    // END HARDER\n}\n";
        let (out, n) = stub_regions(src, &|_, _| true).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            format!(
                "{ALLOW}\nfn f(x: u8) -> Option<u8> {{\n    // Harder exercise (step 7, optional): be quick.\n    // Until it is done, this stand-in keeps the step working the plain way.\n    let _ = &x; // delete with the stand-in\n    None\n}}\n"
            )
        );
        let (kept, _) = stub_regions(src, &|_, _| false).unwrap();
        assert_eq!(kept, "fn f(x: u8) -> Option<u8> {\n    Some(x)\n}\n");
        let no_stand_in = "fn f() {\n    // HARDER(7): x\n    1\n    // END HARDER\n}\n";
        assert!(stub_regions(no_stand_in, &|_, _| true).is_err());
    }

    #[test]
    fn a_stubbed_body_borrows_its_parameters_and_the_file_allows_unused_imports() {
        let src = "//! Doc.\n\nuse a::b;\n\n/// F.\npub fn f(\n    mut root: &Path,\n    keep: impl Fn(u32) -> bool,\n    _x: u8,\n    &self,\n) -> Result<(), E> {\n    // EXERCISE(4): do it\n    b(root)\n    // END EXERCISE\n}\n";
        let (out, _) = stub_regions(src, &|_, _| true).unwrap();
        assert_eq!(
            out,
            format!(
                "//! Doc.\n{ALLOW}\n\nuse a::b;\n\n/// F.\npub fn f(\n    mut root: &Path,\n    keep: impl Fn(u32) -> bool,\n    _x: u8,\n    &self,\n) -> Result<(), E> {{\n    let _ = (&root, &keep); // delete with the todo!\n    todo!(\"step 4: do it\")\n}}\n"
            )
        );
        // An expression inside a body uses no parameter on its own.
        let arm = "fn g(x: u8) -> u8 {\n    match x {\n        _ => {\n            // EXERCISE(3): y\n            1\n            // END EXERCISE\n        }\n    }\n}\n";
        let (out, _) = stub_regions(arm, &|_, _| true).unwrap();
        assert!(!out.contains("let _"), "{out}");
        assert_eq!(
            parameters_of_body(&["pub fn e(&self, pid: Pid) {"]),
            ["pid"]
        );
    }
}
