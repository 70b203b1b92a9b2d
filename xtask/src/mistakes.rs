//! `check-mistakes`: proof that each step's tests catch the mistakes students
//! make, and say which one it was.
//!
//! `check-exercises` shows that a step's tests fail on an empty stub. A
//! student rarely hands in an empty stub: they hand in code that almost
//! works. `xtask/mistakes/stepN.toml` lists, for each exercise region, the
//! wrong solutions the hints warn about, each as a patch of the reference:
//!
//! ```toml
//! [[mistake]]
//! what = "clone3 without SIGCHLD as the exit signal"
//! file = "src/ns/clone.rs"
//! find = "exit_signal: libc::SIGCHLD as u64,"
//! replace = ""
//! expect = "SIGCHLD"
//! ```
//!
//! For each one, a scratch copy of the reference (one copy, one target
//! directory, so each mistake costs an incremental build; its harder
//! regions are their stand-ins, as for a student who did none of them, and
//! it must pass the step's tests before any patch, the harder exercises'
//! own tests aside) gets the patch, and only that step's test binary runs. The mistake is *caught* when a
//! test fails; it is *named* when a failing test's message contains
//! `expect`, the word that points the student at it. A mistake that is not
//! caught, or a patch that no longer applies inside its step's region, fails
//! the check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Where the data files are, from the repository root.
const DIR: &str = "xtask/mistakes";

/// One wrong solution.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mistake {
    /// What the student did, in words (the book's table shows it).
    pub what: String,
    /// The file of the region, from the repository root.
    pub file: String,
    /// Reference text inside one of the step's regions, found exactly once
    /// in the file.
    pub find: String,
    /// What the student wrote instead.
    pub replace: String,
    /// Text a failing test's message must contain, case aside: the words
    /// that name the mistake for the student.
    pub expect: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MistakesFile {
    mistake: Vec<Mistake>,
}

/// What running the tests on one mistake showed.
struct Outcome {
    /// The tests that failed.
    failed: Vec<String>,
    /// The first line of a failing message that contains `expect`.
    named_by: Option<String>,
}

/// The steps that have a mistakes file.
pub fn steps_with_mistakes(root: &Path) -> Result<Vec<u32>> {
    let mut steps: Vec<u32> = std::fs::read_dir(root.join(DIR))
        .with_context(|| format!("cannot read {DIR}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("step")?.strip_suffix(".toml")?.parse().ok())
        .collect();
    steps.sort_unstable();
    Ok(steps)
}

/// Reads `xtask/mistakes/step<step>.toml`.
pub fn load(root: &Path, step: u32) -> Result<Vec<Mistake>> {
    let path = root.join(format!("{DIR}/step{step}.toml"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "step {step} has no list of mistakes: write {}",
            path.display()
        )
    })?;
    let file: MistakesFile =
        toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
    Ok(file.mistake)
}

/// The byte ranges of `text` inside regions of `step`.
fn regions_of(text: &str, step: u32) -> Vec<(usize, usize)> {
    let start_marker = format!("// EXERCISE({step}):");
    let mut ranges = Vec::new();
    let mut open = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with(&start_marker) {
            open = Some(offset + line.len());
        } else if trimmed == "// END EXERCISE"
            && let Some(from) = open.take()
        {
            ranges.push((from, offset));
        }
        offset += line.len();
    }
    ranges
}

/// Checks that `m` patches its step's region of the reference exactly once.
fn validate(root: &Path, step: u32, m: &Mistake) -> Result<()> {
    let path = root.join(&m.file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("step {step}, \"{}\": cannot read {}", m.what, m.file))?;
    let found: Vec<usize> = text.match_indices(&m.find).map(|(i, _)| i).collect();
    if found.len() != 1 {
        bail!(
            "step {step}, \"{}\": its `find` text occurs {} times in {}, it must occur once: \
             update {DIR}/step{step}.toml to the reference as it is now",
            m.what,
            found.len(),
            m.file
        );
    }
    let at = found[0];
    if !regions_of(&text, step)
        .iter()
        .any(|&(from, to)| from <= at && at + m.find.len() <= to)
    {
        bail!(
            "step {step}, \"{}\": its `find` text is not inside a step {step} exercise region of {}: \
             a mistake must be one a student can make there",
            m.what,
            m.file
        );
    }
    Ok(())
}

/// Applies `m` in the scratch copy, runs the step's tests, and puts the
/// file back whatever happened.
fn try_mistake(
    copy: &Path,
    target: &Path,
    step: u32,
    m: &Mistake,
    harder: &BTreeSet<String>,
) -> Result<Outcome> {
    let path = copy.join(&m.file);
    let pristine = std::fs::read_to_string(&path)?;
    std::fs::write(&path, pristine.replacen(&m.find, &m.replace, 1))?;
    let ran = crate::grade::run_tests(copy, &format!("step{step}"), Some(target), false, None);
    std::fs::write(&path, &pristine)
        .with_context(|| format!("cannot put back {}", path.display()))?;
    let (stdout, stderr) = ran?;
    let parsed = crate::grade::parse(&stdout);
    if parsed.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        bail!(
            "step {step}, \"{}\": the patched copy did not build or ran no test; \
             a mistake must compile to be one a student hands in:\n{}",
            m.what,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let expect = m.expect.to_lowercase();
    // A harder exercise's test fails on the copy whatever the mistake:
    // its region is a stand-in there.
    let failed: Vec<&(String, bool, String)> = parsed
        .iter()
        .filter(|(name, ok, _)| !ok && !harder.contains(name))
        .collect();
    // A line of a message, not libtest's "thread 'NAME' panicked at": a
    // test's name may hold the very words.
    let named_by = failed.iter().find_map(|(_, _, output)| {
        output
            .lines()
            .filter(|l| !l.starts_with("thread '"))
            .find_map(|l| {
                let at = l.to_lowercase().find(&expect)?;
                Some(around(l.trim_end(), at, 140))
            })
    });
    Ok(Outcome {
        failed: failed.iter().map(|(n, ..)| n.clone()).collect(),
        named_by,
    })
}

/// The steps whose mistakes may be caught differently since `base` (a git
/// revision): those [`steps_decided_by`] a changed file. This is what a CI
/// job on a pull request can check.
pub fn changed_since(root: &Path, base: &str) -> Result<Vec<u32>> {
    let out = std::process::Command::new("git")
        .args(["diff", "--name-only", base, "--"])
        .current_dir(root)
        .output()
        .context("cannot run git diff")?;
    if !out.status.success() {
        bail!(
            "git diff {base} failed: {}; give a revision git knows (a branch, a tag, a commit)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let all = steps_with_mistakes(root)?;
    let mut steps = std::collections::BTreeSet::new();
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let text = std::fs::read_to_string(root.join(name)).ok();
        steps.extend(steps_decided_by(name, text.as_deref(), &all));
    }
    Ok(steps.into_iter().collect())
}

/// The steps (of `all`, those with a mistakes list) whose check-mistakes
/// verdict file `name` (from the repository root) may change: any step for
/// the tests' shared support; step N for `tests/stepN.rs` and its mistakes
/// list; and, for a file under `src/` whose `text` holds a step's exercise
/// region, that step. The one owner of this notion: `--changed-since` asks
/// it of each changed file, and a step's proof fingerprint
/// ([`crate::proven`]) hashes every file it names for that step.
pub fn steps_decided_by(name: &str, text: Option<&str>, all: &[u32]) -> Vec<u32> {
    if name.starts_with("tests/support/") {
        return all.to_vec();
    }
    let numbered = |prefix: &str, suffix: &str| -> Option<u32> {
        name.strip_prefix(prefix)?
            .strip_suffix(suffix)?
            .parse()
            .ok()
    };
    // A step's test modules (`tests/step7/devices.rs`) are its tests too.
    let module = || {
        let rest = name.strip_prefix("tests/step")?;
        rest.split_once('/')?.0.parse().ok()
    };
    if let Some(n) = numbered("tests/step", ".rs")
        .or_else(|| numbered(&format!("{DIR}/step"), ".toml"))
        .or_else(module)
    {
        return all.iter().copied().filter(|&s| s == n).collect();
    }
    match text {
        Some(text) if name.starts_with("src/") => all
            .iter()
            .copied()
            .filter(|&n| !regions_of(text, n).is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// `cargo xtask check-mistakes [--steps N,…] [--write-book] [--record]`:
/// checks `steps` (every step with a list when empty). With `record`, each
/// step whose every mistake was caught and named gets the fingerprint of
/// the tree it was proven on written into [`crate::proven`]'s record.
pub fn check(root: &Path, steps: &[u32], write_book: bool, record: bool) -> Result<()> {
    let started = Instant::now();
    let all = steps_with_mistakes(root)?;
    let steps: Vec<u32> = if steps.is_empty() {
        all
    } else {
        if let Some(s) = steps.iter().find(|s| !all.contains(s)) {
            bail!(
                "step {s} has no list of mistakes ({DIR}/step{s}.toml); the steps with one are {}",
                all.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        steps.to_vec()
    };
    let mut lists = BTreeMap::new();
    for &step in &steps {
        let list = load(root, step)?;
        for m in &list {
            validate(root, step, m)?;
        }
        lists.insert(step, list);
    }
    // The tree the scratch copy is made from, fingerprinted before the
    // copy: what a proof recorded at the end vouches for.
    let fingerprints = crate::proven::fingerprints(root)?;
    // One copy of the reference (markers gone) and one target directory:
    // each mistake is then an incremental build of the library and bins.
    // The copy is what a student who did every required exercise and no
    // harder one has: the harder regions are their stand-ins. A mistake
    // in a required region is then graded on the path that student runs
    // (step 7's harder birth in the cgroup would otherwise skip the very
    // move `Cgroup::enter` makes, and hide its mistakes).
    let scratch = root.join("target/mistakes");
    let copy = scratch.join("copy");
    let target = scratch.join("target");
    crate::exercises::write_copy_where(root, &copy, |_, harder| harder)?;
    let weights = crate::grade::load_weights(root)?;

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    let mut proven = BTreeMap::new();
    for (step, list) in &lists {
        let step_started = Instant::now();
        let mut table = String::from(
            "| the mistake | the tests that fail | the message that names it |\n|---|---|---|\n",
        );
        let (mut caught, mut named) = (0, 0);
        // First the copy as it is: every test must pass, or a "caught"
        // below could be a failure no mistake made.
        let (stdout, stderr) =
            crate::grade::run_tests(&copy, &format!("step{step}"), Some(&target), false, None)?;
        let parsed = crate::grade::parse(&stdout);
        let harder: BTreeSet<String> = weights
            .iter()
            .find(|w| w.name == format!("step{step}"))
            .map(|w| w.harder.keys().cloned().collect())
            .unwrap_or_default();
        let failing: Vec<&str> = parsed
            .iter()
            .filter(|(name, ok, _)| !ok && !harder.contains(name))
            .map(|(n, ..)| n.as_str())
            .collect();
        if parsed.is_empty() || !failing.is_empty() {
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            // What each failing test said, from its `---- NAME stdout ----`
            // section: a failure that does not come back is still explained.
            let said: Vec<&str> = stdout
                .lines()
                .skip_while(|l| !(l.starts_with("---- ") && l.ends_with(" stdout ----")))
                .take_while(|l| *l != "failures:")
                .take(60)
                .collect();
            bail!(
                "step {step}: before any mistake, the copy (required exercises done, harder ones \
                 their stand-ins) fails {failing:?}: a stand-in must keep the step working the \
                 plain way\n{}\n{}",
                said.join("\n"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let aside = parsed.iter().filter(|(n, ..)| harder.contains(n)).count();
        println!(
            "step {step}: the copy passes its {} tests before any mistake ({aside} of harder exercises aside)",
            parsed.len() - aside
        );
        for m in list {
            let t = Instant::now();
            let outcome = try_mistake(&copy, &target, *step, m, &harder)?;
            let secs = t.elapsed().as_secs();
            if outcome.failed.is_empty() {
                println!("step {step}: NOT CAUGHT ({secs} s): {}", m.what);
                failures.push(format!("step {step}: not caught: {}", m.what));
                continue;
            }
            caught += 1;
            let message = match &outcome.named_by {
                Some(line) => {
                    named += 1;
                    line.clone()
                }
                None => {
                    failures.push(format!(
                        "step {step}: caught, but no failing message says \"{}\": {}",
                        m.expect, m.what
                    ));
                    format!("(no message contains \"{}\")", m.expect)
                }
            };
            println!(
                "step {step}: caught ({secs} s, {} failing): {}\n    {message}",
                outcome.failed.len(),
                m.what
            );
            let tests: Vec<String> = outcome.failed.iter().map(|n| format!("`{n}`")).collect();
            let _ = writeln!(
                table,
                "| {} | {} | {} |",
                cell(&m.what),
                tests.join(", "),
                cell(&message)
            );
        }
        summary.push(format!(
            "step {step}: {caught} of {} mistakes caught, {named} named by their message ({} s)",
            list.len(),
            step_started.elapsed().as_secs()
        ));
        if caught == list.len()
            && named == list.len()
            && let Some(fingerprint) = fingerprints.get(step)
        {
            proven.insert(*step, fingerprint.clone());
            // At once: a later step that cannot even start (its copy fails
            // before any mistake) must not cost this one its proof.
            if record {
                crate::proven::record(root, &BTreeMap::from([(*step, fingerprint.clone())]))?;
            }
        }
        if write_book {
            let path = book_table(root, *step);
            std::fs::create_dir_all(path.parent().unwrap_or(root))?;
            std::fs::write(&path, table)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    println!();
    for line in &summary {
        println!("{line}");
    }
    println!(
        "check-mistakes took {} s",
        started.elapsed().as_secs_f64().round()
    );
    if record && !proven.is_empty() {
        let steps: Vec<String> = proven.keys().map(u32::to_string).collect();
        println!(
            "recorded the proof of step{} {} in {}",
            if steps.len() == 1 { "" } else { "s" },
            steps.join(", "),
            crate::proven::RECORD
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} mistakes are not caught, or not named, by their step's tests: add or \
             sharpen a test so that one fails on each, with a message that names it:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The book's table of step `step`'s mistakes.
fn book_table(root: &Path, step: u32) -> PathBuf {
    root.join(format!("book/src/mistakes/step{step}.md"))
}

/// Text fit for a Markdown table cell: no line break, `|` escaped, and
/// `<`, `>` escaped outside code spans (`<LOOPBACK>` is not an HTML tag).
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('\n', " ")
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.replace('<', "&lt;").replace('>', "&gt;")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// At most about `max` bytes of `line` around byte `at` (the named words),
/// with an ellipsis where it is cut.
fn around(line: &str, at: usize, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut from = at.saturating_sub(max / 2);
    while !line.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (from + max).min(line.len());
    while !line.is_char_boundary(to) {
        to += 1;
    }
    let (head, tail) = (from > 0, to < line.len());
    format!(
        "{}{}{}",
        if head { "…" } else { "" },
        &line[from..to],
        if tail { "…" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_escape_what_markdown_would_read() {
        assert_eq!(
            cell("flags <LOOPBACK> in `/proc/<child>` a|b"),
            "flags &lt;LOOPBACK&gt; in `/proc/<child>` a\\|b"
        );
    }

    #[test]
    fn a_long_line_is_cut_around_the_named_words() {
        let line = format!("{}MNT_DETACH{}", "a".repeat(300), "b".repeat(300));
        let cut = around(&line, 300, 40);
        assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
        assert!(cut.contains("MNT_DETACH"), "{cut}");
        assert_eq!(around("short", 0, 40), "short");
    }

    #[test]
    fn regions_are_found_by_step() {
        let text =
            "a\n// EXERCISE(4): x\nb\n// END EXERCISE\n// EXERCISE(5): y\nc\n// END EXERCISE\n";
        let four = regions_of(text, 4);
        assert_eq!(four.len(), 1);
        assert_eq!(&text[four[0].0..four[0].1], "b\n");
        assert_eq!(regions_of(text, 6), []);
    }

    #[test]
    fn every_mistakes_file_parses_and_patches_its_region() {
        let root = crate::workspace_root();
        for step in steps_with_mistakes(&root).unwrap() {
            let list = load(&root, step).unwrap();
            assert!(!list.is_empty(), "step {step}");
            for m in &list {
                validate(&root, step, m).unwrap();
            }
        }
    }
}
