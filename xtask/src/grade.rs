//! `grade` and `status`: run the graded tests and turn them into scores.
//!
//! Each step's tests run with `cargo test --test stepN`, as a grader would.
//! Points come from `tests/weights.toml`. The result is a table for a person,
//! or the JSON that Gradescope (`results.json`) or GitHub Classroom expects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;

/// One graded test's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    /// `stepN::test_name`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it printed when it failed (the assertion message).
    pub output: String,
    /// Points earned.
    pub score: f64,
    /// Points possible.
    pub max_score: f64,
    /// A harder exercise's test: its points are its own, beyond the step's.
    pub bonus: bool,
}

#[derive(Debug, Deserialize)]
struct StepWeights {
    points: f64,
    #[serde(default)]
    tests: BTreeMap<String, f64>,
    #[serde(default)]
    harder: BTreeMap<String, f64>,
}

/// One step's line of the weights file.
pub struct StepPoints {
    /// `step1` … or `errors`: the test binary's name.
    pub name: String,
    /// The step's points.
    pub points: f64,
    /// Relative weights of named tests (1 when absent).
    pub tests: BTreeMap<String, f64>,
    /// The tests of the step's optional, harder exercises and their points,
    /// which are beyond the step's: `[stepN.harder]`. They run with the
    /// step's other tests; `grade --harder` would add any `#[ignore]`d one.
    pub harder: BTreeMap<String, f64>,
}

/// The weights file, steps in number order and `errors` last.
pub fn load_weights(root: &Path) -> Result<Vec<StepPoints>> {
    let path = root.join("tests/weights.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut steps = Vec::new();
    // toml::Table keeps keys sorted; order steps by their number, `errors` last.
    for (name, value) in table {
        let w: StepWeights = value
            .try_into()
            .with_context(|| format!("[{name}] in {}", path.display()))?;
        steps.push(StepPoints {
            name,
            points: w.points,
            tests: w.tests,
            harder: w.harder,
        });
    }
    steps.sort_by_key(|s| {
        s.name
            .strip_prefix("step")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    Ok(steps)
}

/// Runs one test binary in `dir` and returns its stdout and stderr; with
/// `harder`, its ignored tests too (the harder exercises'); with
/// `threads`, that many tests at a time (libtest's default: one per CPU).
pub fn run_tests(
    dir: &Path,
    test: &str,
    target_dir: Option<&Path>,
    harder: bool,
    threads: Option<u32>,
) -> Result<(String, String)> {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--test", test, "--no-fail-fast", "--"])
        .current_dir(dir);
    if harder {
        cmd.arg("--include-ignored");
    }
    if let Some(n) = threads {
        cmd.arg(format!("--test-threads={n}"));
    }
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let out = cmd.output().context("cannot run cargo test")?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The names of the tests of one test binary (`cargo test -- --list`).
fn list_tests(dir: &Path, test: &str, target_dir: Option<&Path>) -> Vec<String> {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--quiet", "--test", test, "--", "--list"])
        .current_dir(dir);
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let out = cmd
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(String::from)
        .collect()
}

/// Reads libtest's output: each `test NAME ... ok|FAILED` line, and for the
/// failures the text of their `---- NAME stdout ----` section.
pub fn parse(stdout: &str) -> Vec<(String, bool, String)> {
    let mut results: Vec<(String, bool, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test "))
        .filter_map(|l| {
            let (name, verdict) = l.rsplit_once(" ... ")?;
            // `--report-time` adds ` <0.123s>` after the verdict.
            match verdict.split_whitespace().next().unwrap_or("") {
                "ok" => Some((name.to_string(), true, String::new())),
                "FAILED" => Some((name.to_string(), false, String::new())),
                _ => None,
            }
        })
        .collect();
    for (name, passed, output) in &mut results {
        if *passed {
            continue;
        }
        let header = format!("---- {name} stdout ----");
        if let Some(start) = stdout.find(&header) {
            let body = &stdout[start + header.len()..];
            let end = [body.find("\n---- "), body.find("\nfailures:")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(body.len());
            *output = body[..end].trim().to_string();
        }
    }
    results
}

/// Scores one step: its points shared by weight among the tests that ran;
/// a harder exercise's test (named in `step.harder`) has its own points.
pub fn score_step(
    step: &StepPoints,
    parsed: &[(String, bool, String)],
    build_output: &str,
) -> Vec<TestOutcome> {
    let (name, points, weights) = (&step.name, step.points, &step.tests);
    let (harder, parsed): (Vec<_>, Vec<_>) = parsed
        .iter()
        .cloned()
        .partition(|(n, ..)| step.harder.contains_key(n));
    let mut outcomes = score_shares(name, points, weights, &parsed, build_output);
    outcomes.extend(harder.into_iter().map(|(test, passed, output)| {
        let max = step.harder[&test];
        TestOutcome {
            name: format!("{name}::{test}"),
            passed,
            output,
            score: if passed { max } else { 0.0 },
            max_score: max,
            bonus: true,
        }
    }));
    outcomes
}

/// The step's own points, shared by weight among the tests that ran.
fn score_shares(
    step: &str,
    points: f64,
    weights: &BTreeMap<String, f64>,
    parsed: &[(String, bool, String)],
    build_output: &str,
) -> Vec<TestOutcome> {
    if parsed.is_empty() {
        return vec![TestOutcome {
            name: format!("{step} (did not build or run)"),
            passed: false,
            output: build_output
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
            score: 0.0,
            max_score: points,
            bonus: false,
        }];
    }
    let weight = |name: &str| weights.get(name).copied().unwrap_or(1.0);
    let shares: Vec<f64> = parsed.iter().map(|(n, ..)| weight(n)).collect();
    let maxima = in_hundredths(points, &shares);
    parsed
        .iter()
        .zip(maxima)
        .map(|((name, passed, output), max)| TestOutcome {
            name: format!("{step}::{name}"),
            passed: *passed,
            output: output.clone(),
            score: if *passed { max } else { 0.0 },
            max_score: max,
            bonus: false,
        })
        .collect()
}

/// `points` shared in proportion to `shares`, each share a whole number of
/// hundredths, and the hundredths adding up to `points` exactly.
///
/// Every report shows scores to two decimals, and Gradescope and GitHub
/// Classroom add up the per-test scores they are given. Rounded one by one,
/// 30 points among 56 weights add up to 29.97, and a reference that passes
/// every test shows 274.81 of 275. So the hundredths are dealt out whole:
/// each share gets its rounded-down part, and the hundredths left over go
/// one each to the shares that rounding down cut most (the largest
/// remainder method, as seats are shared among parties).
fn in_hundredths(points: f64, shares: &[f64]) -> Vec<f64> {
    let total: f64 = shares.iter().sum();
    if total <= 0.0 {
        return vec![0.0; shares.len()];
    }
    let hundredths = (points * 100.0).round();
    let exact: Vec<f64> = shares.iter().map(|s| hundredths * s / total).collect();
    let mut dealt: Vec<f64> = exact.iter().map(|e| e.floor()).collect();
    let left = (hundredths - dealt.iter().sum::<f64>()).round() as usize;
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    // Largest remainder first; a tie goes to the earlier test, so the
    // result does not depend on the sort.
    by_remainder.sort_by(|&a, &b| {
        (exact[b] - dealt[b])
            .total_cmp(&(exact[a] - dealt[a]))
            .then(a.cmp(&b))
    });
    for &i in by_remainder.iter().take(left) {
        dealt[i] += 1.0;
    }
    dealt.into_iter().map(|d| d / 100.0).collect()
}

/// What `grade` prints, or writes with `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A score table for a person.
    Table,
    /// Gradescope's JSON, printed.
    Json,
    /// Gradescope's `results.json`.
    Gradescope,
    /// GitHub Classroom's `classroom-results.json`.
    Classroom,
}

/// The test binary `step` names (`4`, `step4` or `errors`), if the weights
/// file grades it; otherwise an error that lists the steps there are.
fn test_binary(weights: &[StepPoints], step: &str) -> Result<String> {
    let name = if step.starts_with("step") || step == "errors" {
        step.to_string()
    } else {
        format!("step{step}")
    };
    if weights.iter().any(|w| w.name == name) {
        return Ok(name);
    }
    let numbers: Vec<u32> = weights
        .iter()
        .filter_map(|w| w.name.strip_prefix("step")?.parse().ok())
        .collect();
    let range = match (numbers.iter().min(), numbers.iter().max()) {
        (Some(first), Some(last)) => format!("{first}-{last}"),
        _ => "none".into(),
    };
    bail!("no step {step}: steps are {range} (or `errors`), as tests/weights.toml lists them")
}

/// Grades every step of the weights file (or only `only`) in `dir`; with
/// `harder`, the optional harder exercises too.
pub fn grade(
    root: &Path,
    dir: &Path,
    only: Option<&str>,
    target_dir: Option<&Path>,
    harder: bool,
    threads: Option<u32>,
) -> Result<Vec<(String, Vec<TestOutcome>)>> {
    let mut graded = Vec::new();
    for step in load_weights(root)? {
        if only.is_some_and(|o| o != step.name) {
            continue;
        }
        let (stdout, stderr) = run_tests(dir, &step.name, target_dir, harder, threads)?;
        let mut parsed = parse(&stdout);
        // A test that reported nothing (its binary crashed mid-run) counts
        // as failed, so its points are not shared among the others.
        for name in list_tests(dir, &step.name, target_dir) {
            let left_out = !harder && step.harder.contains_key(&name);
            if !left_out && !parsed.iter().any(|(n, ..)| *n == name) {
                parsed.push((
                    name,
                    false,
                    "reported no result: did the test binary crash?".into(),
                ));
            }
        }
        let scored = score_step(&step, &parsed, &stderr);
        graded.push((step.name, scored));
    }
    if graded.is_empty() {
        match only {
            Some(name) => bail!("no step named {name} in tests/weights.toml"),
            None => bail!("tests/weights.toml lists no step: give each step its points there"),
        }
    }
    Ok(graded)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The per-step table a person reads: the steps and their total, then
/// the harder exercises that ran, whose points are beyond the total.
pub fn table(graded: &[(String, Vec<TestOutcome>)]) -> String {
    let mut out = format!("{:<8} {:>7} {:>13}\n", "step", "tests", "score");
    let row = |out: &mut String, label: &str, tests: &[&TestOutcome]| -> (f64, f64) {
        let passed = tests.iter().filter(|t| t.passed).count();
        let s: f64 = tests.iter().map(|t| t.score).sum();
        let m: f64 = tests.iter().map(|t| t.max_score).sum();
        let mark = if passed == tests.len() {
            ""
        } else {
            "  <- see the failures above, and the hint in the book"
        };
        out.push_str(&format!(
            "{label:<8} {:>7} {:>13}{mark}\n",
            format!("{passed}/{}", tests.len()),
            format!("{:.1}/{:.1}", round(s), round(m))
        ));
        (s, m)
    };
    let (mut total, mut max) = (0.0, 0.0);
    for (step, tests) in graded {
        let own: Vec<&TestOutcome> = tests.iter().filter(|t| !t.bonus).collect();
        let (s, m) = row(&mut out, step, &own);
        total += s;
        max += m;
    }
    out.push_str(&format!(
        "{:<8} {:>7} {:>13}\n",
        "total",
        "",
        format!("{:.1}/{:.1}", round(total), round(max))
    ));
    for (step, tests) in graded {
        let bonus: Vec<&TestOutcome> = tests.iter().filter(|t| t.bonus).collect();
        if !bonus.is_empty() {
            row(&mut out, &format!("{step}+"), &bonus);
        }
    }
    if graded.iter().flat_map(|(_, t)| t).any(|t| t.bonus) {
        out.push_str("(stepN+: the optional harder exercises, points beyond the total)\n");
    }
    out
}

/// Gradescope's `results.json`.
pub fn gradescope(graded: &[(String, Vec<TestOutcome>)]) -> serde_json::Value {
    let tests: Vec<_> = graded
        .iter()
        .flat_map(|(_, t)| t)
        .map(|t| {
            json!({
                "name": t.name,
                "score": round(t.score),
                "max_score": round(t.max_score),
                "output": if t.passed { "passed".to_string() } else { t.output.clone() },
                "visibility": "visible",
            })
        })
        .collect();
    let score: f64 = graded.iter().flat_map(|(_, t)| t).map(|t| t.score).sum();
    json!({ "score": round(score), "tests": tests })
}

/// GitHub Classroom's autograding result (version 1).
pub fn classroom(graded: &[(String, Vec<TestOutcome>)]) -> serde_json::Value {
    let all: Vec<&TestOutcome> = graded.iter().flat_map(|(_, t)| t).collect();
    let max: f64 = all.iter().map(|t| t.max_score).sum();
    let tests: Vec<_> = all
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "status": if t.passed { "pass" } else { "fail" },
                "score": round(t.score),
                "message": t.output,
                "test_code": format!("cargo test --test {}", t.name.split("::").next().unwrap_or_default()),
            })
        })
        .collect();
    json!({
        "version": 1,
        "status": if all.iter().all(|t| t.passed) { "pass" } else { "fail" },
        "max_score": round(max),
        "tests": tests,
    })
}

/// `cargo xtask grade [--step N] [--format table|json|gradescope|classroom] [--out FILE] [--dir DIR] [--harder]`
pub fn command(
    root: &Path,
    step: Option<&str>,
    format: Format,
    out: Option<PathBuf>,
    dir: Option<PathBuf>,
    harder: bool,
) -> Result<()> {
    let only = match step {
        Some(step) => Some(test_binary(&load_weights(root)?, step)?),
        None => None,
    };
    let dir = dir.unwrap_or_else(|| root.to_path_buf());
    let graded = grade(root, &dir, only.as_deref(), None, harder, None)?;
    let (text, default_file) = match format {
        Format::Table => (table(&graded), None),
        Format::Json => (serde_json::to_string_pretty(&gradescope(&graded))?, None),
        Format::Gradescope => (
            serde_json::to_string_pretty(&gradescope(&graded))?,
            Some("results.json"),
        ),
        Format::Classroom => (
            serde_json::to_string_pretty(&classroom(&graded))?,
            Some("classroom-results.json"),
        ),
    };
    for (_, tests) in &graded {
        for t in tests.iter().filter(|t| !t.passed) {
            println!("FAILED {}\n{}\n", t.name, t.output);
        }
    }
    match out.or(default_file.map(PathBuf::from)) {
        Some(path) => {
            std::fs::write(&path, text)?;
            print!("{}", table(&graded));
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILING: &str = "\nrunning 2 tests\ntest a_passes ... ok\ntest b_fails ... FAILED\n\nfailures:\n\n---- b_fails stdout ----\n\nthread 'b_fails' panicked at tests/x.rs:1:1:\nstep 4: / is still the host's\n\nfailures:\n    b_fails\n\ntest result: FAILED. 1 passed; 1 failed;\n";

    #[test]
    fn a_step_is_a_number_a_binary_name_or_errors() {
        let weights: Vec<StepPoints> = ["step1", "step2", "step11", "errors"]
            .into_iter()
            .map(|name| StepPoints {
                name: name.into(),
                points: 1.0,
                tests: BTreeMap::new(),
                harder: BTreeMap::new(),
            })
            .collect();
        assert_eq!(test_binary(&weights, "2").unwrap(), "step2");
        assert_eq!(test_binary(&weights, "step11").unwrap(), "step11");
        assert_eq!(test_binary(&weights, "errors").unwrap(), "errors");
        let err = test_binary(&weights, "99").unwrap_err().to_string();
        assert_eq!(
            err,
            "no step 99: steps are 1-11 (or `errors`), as tests/weights.toml lists them"
        );
    }

    #[test]
    fn parses_passes_failures_and_their_messages() {
        let parsed = parse(FAILING);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], ("a_passes".into(), true, String::new()));
        assert!(!parsed[1].1);
        assert!(
            parsed[1].2.contains("step 4: / is still the host's"),
            "{:?}",
            parsed[1].2
        );
    }

    #[test]
    fn scores_share_points_by_weight() {
        let step = StepPoints {
            name: "step4".into(),
            points: 20.0,
            tests: BTreeMap::from([("b_fails".to_string(), 3.0)]),
            harder: BTreeMap::new(),
        };
        let scored = score_step(&step, &parse(FAILING), "");
        assert_eq!(scored[0].max_score, 5.0);
        assert_eq!(scored[0].score, 5.0);
        assert_eq!(scored[1].max_score, 15.0);
        assert_eq!(scored[1].score, 0.0);
        let graded = vec![("step4".to_string(), scored)];
        assert_eq!(gradescope(&graded)["score"], 5.0);
        assert_eq!(classroom(&graded)["status"], "fail");
        assert!(table(&graded).contains("1/2"));
    }

    /// A harder exercise's test has its own points: the step's are shared
    /// among the others, and the table shows it below the total.
    #[test]
    fn a_harder_exercise_scores_beyond_the_step() {
        let step = StepPoints {
            name: "step4".into(),
            points: 20.0,
            tests: BTreeMap::new(),
            harder: BTreeMap::from([("b_fails".to_string(), 5.0)]),
        };
        let scored = score_step(&step, &parse(FAILING), "");
        assert_eq!((scored[0].max_score, scored[0].bonus), (20.0, false));
        assert_eq!((scored[1].max_score, scored[1].bonus), (5.0, true));
        let table = table(&[("step4".to_string(), scored)]);
        assert!(table.contains("total"), "{table}");
        assert!(table.contains("20.0/20.0"), "{table}");
        assert!(
            table.contains("step4+") && table.contains("0.0/5.0"),
            "{table}"
        );
    }

    /// 30 points among 56 weights: each share is whole hundredths, and
    /// they add up to 30.00, not 29.97 (the `274.81/274.81` of old).
    #[test]
    fn shares_add_up_to_the_points_exactly() {
        let shares: Vec<f64> = (0..48).map(|i| if i < 8 { 2.0 } else { 1.0 }).collect();
        let maxima = in_hundredths(30.0, &shares);
        let sum: f64 = maxima.iter().sum();
        assert_eq!(round(sum), 30.0);
        for m in &maxima {
            assert_eq!(round(*m), *m, "{m} is not whole hundredths");
        }
        let summed_in_hundredths: i64 = maxima.iter().map(|m| (m * 100.0).round() as i64).sum();
        assert_eq!(summed_in_hundredths, 3000);
        // A heavier test never gets less than a lighter one.
        assert!(maxima[0] >= maxima[47]);
        assert_eq!(in_hundredths(10.0, &[1.0, 1.0, 1.0]), [3.34, 3.33, 3.33]);
        assert_eq!(in_hundredths(5.0, &[]), Vec::<f64>::new());
    }

    /// The whole weights file: each step's per-test maxima, as a grader
    /// adds them up, give the step's points to the hundredth.
    #[test]
    fn every_step_of_the_weights_file_adds_up() {
        for step in load_weights(&crate::workspace_root()).unwrap() {
            let names: Vec<String> = step
                .tests
                .keys()
                .cloned()
                .chain((0..40).map(|i| format!("unweighted_{i}")))
                .collect();
            let shares: Vec<f64> = names
                .iter()
                .map(|n| step.tests.get(n).copied().unwrap_or(1.0))
                .collect();
            let cents: i64 = in_hundredths(step.points, &shares)
                .iter()
                .map(|m| (m * 100.0).round() as i64)
                .sum();
            assert_eq!(cents, (step.points * 100.0).round() as i64, "{}", step.name);
        }
    }

    #[test]
    fn a_step_that_does_not_build_scores_zero() {
        let step = StepPoints {
            name: "step1".into(),
            points: 10.0,
            tests: BTreeMap::new(),
            harder: BTreeMap::new(),
        };
        let scored = score_step(&step, &[], "error[E0308]: mismatched types");
        assert_eq!(scored.len(), 1);
        assert_eq!(scored[0].score, 0.0);
        assert_eq!(scored[0].max_score, 10.0);
        assert!(scored[0].output.contains("E0308"));
    }

    #[test]
    fn the_weights_file_parses() {
        let steps = load_weights(&crate::workspace_root()).unwrap();
        assert_eq!(steps.first().map(|s| s.name.as_str()), Some("step1"));
        assert_eq!(steps.last().map(|s| s.name.as_str()), Some("errors"));
    }
}
