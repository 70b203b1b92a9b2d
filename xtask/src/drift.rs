//! `check-drift`: the book and the README say what the code says.
//!
//! Prose about a course goes stale silently: a step is added and the
//! introduction still calls it "coming", an exercise moves to another file
//! and the table of exercises still points at the old one, a step's points
//! change and the total in the grading section does not. Each rule below
//! reads one claim of the book or README and compares it with the fact that
//! [`Course`] reads from the code. Every disagreement is reported, each with
//! the file, what it says and what the code says, so one run lists them all.
//!
//! The rules read tables by the heading they sit under and sentences by a
//! fixed phrase: rewording a heading or a phrase that a rule reads is an
//! error here too ("no table under …"), never a rule that passes by
//! finding nothing.
//!
//! One rule reads the book alone: a deep dive's note must lead to a heading
//! of its own page (`deep_dive_links`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::course::Course;

/// Runs every rule against the checkout at `root`; `commands` are the
/// names of xtask's own commands (from its command-line definition).
pub fn check(root: &Path, commands: &[String]) -> Result<()> {
    let course = Course::read(root)?;
    let mut problems = Vec::new();
    steps_agree(root, &course, &mut problems)?;
    step_tables(root, &course, &mut problems)?;
    exercise_tables(root, &course, &mut problems)?;
    harder_table(root, &course, &mut problems)?;
    mistake_table(root, &course, &mut problems)?;
    points(root, &course, &mut problems)?;
    commands_documented(root, commands, &mut problems)?;
    deep_dive_links(root, &mut problems)?;
    console_outputs_are_generated(root, &mut problems)?;
    if !problems.is_empty() {
        bail!(
            "the book or the README says something the code does not ({} found):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    println!(
        "check-drift: the book and the README agree with the code: steps 1-{}, exercises in steps {}, {} points",
        course.last_step(),
        list(course.exercises.keys()),
        course.total_points()
    );
    Ok(())
}

fn list<'a>(numbers: impl Iterator<Item = &'a u32>) -> String {
    numbers.map(u32::to_string).collect::<Vec<_>>().join(", ")
}

fn read(root: &Path, path: &str) -> Result<String> {
    std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
}

/// Each step has its binary, its graded tests, its points and its chapter.
fn steps_agree(root: &Path, course: &Course, problems: &mut Vec<String>) -> Result<()> {
    let summary = read(root, "book/src/SUMMARY.md")?;
    for step in &course.steps {
        if !root.join(format!("tests/step{step}.rs")).exists() {
            problems.push(format!(
                "step {step} has a binary (chapters/) but no graded tests (tests/step{step}.rs)"
            ));
        }
        if !course
            .points
            .iter()
            .any(|(n, _)| *n == format!("step{step}"))
        {
            problems.push(format!(
                "step {step} has no points in tests/weights.toml ([step{step}])"
            ));
        }
        if !summary.contains(&format!("(step{step}-")) {
            problems.push(format!(
                "step {step} has no chapter (stepN-…md) in book/src/SUMMARY.md"
            ));
        }
    }
    for (name, _) in &course.points {
        if let Some(n) = crate::course::step_number(name)
            && !course.steps.contains(&n)
        {
            problems.push(format!(
                "tests/weights.toml gives points to [{name}], a step with no binary in chapters/"
            ));
        }
    }
    Ok(())
}

/// A markdown table: its header cells and rows of cells.
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The first table under the heading `heading` (any level), before the
/// next heading.
fn table_under(text: &str, heading: &str) -> Option<Table> {
    let mut lines = text
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.trim_start_matches('#').trim() == heading));
    lines.next()?;
    let mut rows = lines
        .take_while(|l| !l.starts_with('#'))
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'));
    let header = cells(rows.next()?);
    let rows = rows.skip(1).map(cells).collect();
    Some(Table { header, rows })
}

/// The step numbers of a table's first column.
fn first_column(table: &Table) -> Vec<u32> {
    table
        .rows
        .iter()
        .filter_map(|r| r.first()?.parse().ok())
        .collect()
}

fn expect_table(
    root: &Path,
    path: &str,
    heading: &str,
    problems: &mut Vec<String>,
) -> Result<Option<Table>> {
    let table = table_under(&read(root, path)?, heading);
    match &table {
        None => problems.push(format!(
            "{path}: no table under the heading \"{heading}\" (a rule of xtask/src/drift.rs reads it)"
        )),
        Some(t) if t.header.first().map(String::as_str) != Some("step") => problems.push(format!(
            "{path}: the table under \"{heading}\" must start with a `step` column"
        )),
        Some(_) => {}
    }
    Ok(table)
}

fn compare_steps(what: &str, said: &[u32], fact: &[u32], source: &str, problems: &mut Vec<String>) {
    if said != fact {
        problems.push(format!(
            "{what} lists steps [{}]; by {source} they are [{}]",
            list(said.iter()),
            list(fact.iter())
        ));
    }
}

/// The step tables of the introduction and the README list every step, and
/// none as "coming".
fn step_tables(root: &Path, course: &Course, problems: &mut Vec<String>) -> Result<()> {
    let chapters = "chapters/stepN-*";
    for (path, heading) in [
        ("book/src/introduction.md", "How caixa teaches it"),
        ("README.md", "The steps"),
    ] {
        let Some(table) = expect_table(root, path, heading, problems)? else {
            continue;
        };
        let what = format!("{path} (\"{heading}\")");
        compare_steps(
            &what,
            &first_column(&table),
            &course.steps,
            chapters,
            problems,
        );
        for row in &table.rows {
            if row.iter().any(|c| c.contains("coming")) {
                problems.push(format!(
                    "{what}: step {} is called \"coming\", but its binary exists",
                    row[0]
                ));
            }
        }
    }
    // "a small binary (`step1` … `stepN`)": N is the last step.
    let intro = read(root, "book/src/introduction.md")?;
    for at in intro
        .match_indices("`step1` … `step")
        .map(|(i, m)| i + m.len())
    {
        let n: String = intro[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if n.parse() != Ok(course.last_step()) {
            problems.push(format!(
                "book/src/introduction.md: \"`step1` … `step{n}`\", but the last step is {}",
                course.last_step()
            ));
        }
    }
    Ok(())
}

/// The learning chapter's table of harder exercises: one row per step with
/// a `HARDER(N)` region, naming its files, with the points of its
/// `[stepN.harder]` tests; and no region without points, or points without
/// a region.
fn harder_table(root: &Path, course: &Course, problems: &mut Vec<String>) -> Result<()> {
    let path = "book/src/learning.md";
    let steps: Vec<u32> = course.harder.keys().copied().collect();
    let weighted: Vec<u32> = course.harder_points.keys().copied().collect();
    if steps != weighted {
        problems.push(format!(
            "tests/weights.toml gives harder points to steps [{}]; the HARDER(N) markers are in steps [{}]",
            list(weighted.iter()),
            list(steps.iter())
        ));
    }
    let heading = "Harder exercises (optional)";
    let markers = "the HARDER(N) markers";
    if let Some(table) = files_table(root, heading, markers, &course.harder, problems)? {
        for row in &table.rows {
            let Some(step) = row.first().and_then(|c| c.parse::<u32>().ok()) else {
                continue;
            };
            let said = row.get(3).and_then(|c| c.parse::<f64>().ok());
            let fact = course.harder_points.get(&step).copied();
            if said != fact {
                problems.push(format!(
                    "{path} (\"{heading}\"): step {step} says {said:?} points; [step{step}.harder] in tests/weights.toml gives {fact:?}"
                ));
            }
        }
    }
    Ok(())
}

/// A table of the learning chapter under `heading` whose rows are steps
/// (first column) and the files of their regions (second, in backticks):
/// the steps and files must be those of `regions`, as `markers` place them.
/// Returns the table for the caller's own columns.
fn files_table(
    root: &Path,
    heading: &str,
    markers: &str,
    regions: &BTreeMap<u32, BTreeSet<String>>,
    problems: &mut Vec<String>,
) -> Result<Option<Table>> {
    let path = "book/src/learning.md";
    let Some(table) = expect_table(root, path, heading, problems)? else {
        return Ok(None);
    };
    let what = format!("{path} (\"{heading}\")");
    let steps: Vec<u32> = regions.keys().copied().collect();
    compare_steps(&what, &first_column(&table), &steps, markers, problems);
    for row in &table.rows {
        let Some(step) = row.first().and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        let named: BTreeSet<String> = row
            .get(1)
            .map(|c| {
                c.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(files) = regions.get(&step)
            && &named != files
        {
            problems.push(format!(
                "{what}: step {step} names {named:?}; its markers are in {files:?}"
            ));
        }
    }
    Ok(Some(table))
}

/// The learning chapter's two exercise tables: one row per step with an
/// exercise, and the files named are the files with its markers.
fn exercise_tables(root: &Path, course: &Course, problems: &mut Vec<String>) -> Result<()> {
    let path = "book/src/learning.md";
    let steps: Vec<u32> = course.exercises.keys().copied().collect();
    let markers = "the EXERCISE(N) markers";
    files_table(
        root,
        "Where the exercises are",
        markers,
        &course.exercises,
        problems,
    )?;
    if let Some(table) = expect_table(root, path, "One step at a time", problems)? {
        let what = format!("{path} (\"One step at a time\")");
        compare_steps(&what, &first_column(&table), &steps, markers, problems);
        for row in &table.rows {
            if let (Some(step), Some(only)) = (row.first(), row.get(1))
                && *only != format!("`--only {step}`")
            {
                problems.push(format!("{what}: the row of step {step} says {only}"));
            }
        }
    }
    // The instructor part repeats the times, per step, beside the
    // objectives: the same numbers as the learning chapter's.
    let times =
        |path: &str, heading: &str, problems: &mut Vec<String>| -> Result<Vec<Vec<String>>> {
            let Some(table) = expect_table(root, path, heading, problems)? else {
                return Ok(Vec::new());
            };
            let reading = table.header.iter().position(|h| h == "reading");
            let lab = table
                .header
                .iter()
                .position(|h| h == "lab" || h == "exercise");
            Ok(table
                .rows
                .iter()
                .map(|r| {
                    [Some(0), reading, lab]
                        .iter()
                        .map(|i| i.and_then(|i| r.get(i)).cloned().unwrap_or_default())
                        .collect()
                })
                .collect())
        };
    let objectives = "book/src/instructor/objectives.md";
    let heading = "Objectives, prerequisites and time";
    let taught = times(objectives, heading, problems)?;
    let learned = times(path, "One step at a time", problems)?;
    if taught != learned {
        problems.push(format!(
            "{objectives} (\"{heading}\"): the steps, reading and lab times differ from \
             {path}'s \"One step at a time\" ({objectives}: {taught:?}; {path}: {learned:?})"
        ));
    }
    Ok(())
}

/// The learning chapter's count of the mistakes the tests are proven to
/// catch, per step and in all.
fn mistake_table(root: &Path, course: &Course, problems: &mut Vec<String>) -> Result<()> {
    let path = "book/src/learning.md";
    let heading = "Proving the tests catch the usual mistakes";
    let fact: Vec<u32> = course.mistakes.keys().copied().collect();
    if let Some(table) = expect_table(root, path, heading, problems)? {
        let what = format!("{path} (\"{heading}\")");
        compare_steps(
            &what,
            &first_column(&table),
            &fact,
            "xtask/mistakes/",
            problems,
        );
        for row in &table.rows {
            let (Some(step), Some(caught)) =
                (row.first().and_then(|c| c.parse::<u32>().ok()), row.get(1))
            else {
                continue;
            };
            let count = course.mistakes.get(&step).copied().unwrap_or(0);
            if *caught != format!("{count} of {count}") {
                problems.push(format!(
                    "{what}: step {step} says \"{caught}\"; xtask/mistakes/step{step}.toml lists {count}"
                ));
            }
        }
    }
    let text = flat(&read(root, path)?);
    let total: usize = course.mistakes.values().sum();
    let said = numbers_before(&text, " mistakes in steps 1 to ");
    if said.is_empty() {
        problems.push(format!(
            "{path}: no sentence \"… N mistakes in steps 1 to M\" (a rule of xtask/src/drift.rs reads it)"
        ));
    }
    for n in said {
        if n != total as f64 {
            problems.push(format!(
                "{path}: \"{n} mistakes\"; xtask/mistakes/ lists {total}"
            ));
        }
    }
    Ok(())
}

/// Text with every run of white space made one space, so a phrase that a
/// line break cuts is still found.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The number right before each occurrence of `phrase`.
fn numbers_before(text: &str, phrase: &str) -> Vec<f64> {
    text.match_indices(phrase)
        .filter_map(|(i, _)| {
            let before = &text[..i];
            let start = before
                .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
                .map_or(0, |s| s + 1);
            before[start..].parse().ok()
        })
        .collect()
}

/// The number right after each occurrence of `phrase`.
fn numbers_after(text: &str, phrase: &str) -> Vec<f64> {
    text.match_indices(phrase)
        .filter_map(|(i, m)| {
            let after = &text[i + m.len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(after.len());
            after[..end].trim_end_matches('.').parse().ok()
        })
        .collect()
}

/// Every total, step's points and list of points that the book and the
/// README state is the one `tests/weights.toml` gives.
fn points(root: &Path, course: &Course, problems: &mut Vec<String>) -> Result<()> {
    let total = course.total_points();
    let of = |name: &str| course.points.iter().find(|(n, _)| n == name).map(|p| p.1);
    let mut files = vec![root.join("README.md")];
    files.extend(crate::anchors::files_with_ext(
        &root.join("book/src"),
        "md",
    )?);
    files.sort();
    let mut totals_found = 0;
    for file in files {
        let name = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let text = flat(&std::fs::read_to_string(&file)?);
        for phrase in [" points in all"] {
            for n in numbers_before(&text, phrase) {
                totals_found += 1;
                if n != total {
                    problems.push(format!(
                        "{name}: \"{n}{phrase}\"; tests/weights.toml gives {total}"
                    ));
                }
            }
        }
        // "`tests/weights.toml` gives step 9 30 points"
        for (i, m) in text.match_indices("`tests/weights.toml` gives step ") {
            let words: Vec<&str> = text[i + m.len()..].splitn(3, ' ').collect();
            if let [step, points, _] = words[..]
                && let Some(fact) = of(&format!("step{step}"))
                && points.parse() != Ok(fact)
            {
                problems.push(format!(
                    "{name}: \"gives step {step} {points} points\"; tests/weights.toml gives {fact}"
                ));
            }
        }
        // "… points in all: 20, 15, … for steps 1 to 12, and 15 for the error tests"
        for (i, m) in text.match_indices(" points in all: ") {
            let rest = &text[i + m.len()..];
            let Some((numbers, tail)) = rest.split_once(" for steps 1 to ") else {
                continue;
            };
            let said: Vec<String> = numbers
                .split([',', ' '])
                .filter(|w| !w.is_empty() && *w != "and")
                .map(str::to_string)
                .collect();
            let fact: Vec<String> = course
                .steps
                .iter()
                .map(|s| of(&format!("step{s}")).unwrap_or(0.0).to_string())
                .collect();
            if said != fact {
                problems.push(format!(
                    "{name}: the points of steps 1 to N are said to be {}; tests/weights.toml gives {}",
                    said.join(", "),
                    fact.join(", ")
                ));
            }
            let last = numbers_before(tail, " for the error tests");
            if let (Some(n), Some(errors)) = (last.first(), of("errors"))
                && *n != errors
            {
                problems.push(format!(
                    "{name}: the error tests are said to give {n}; tests/weights.toml gives {errors}"
                ));
            }
            let upto = numbers_before(tail, ",");
            if upto.first() != Some(&f64::from(course.last_step())) {
                problems.push(format!(
                    "{name}: the points are listed \"for steps 1 to {}\"; the last step is {}",
                    upto.first().copied().unwrap_or_default(),
                    course.last_step()
                ));
            }
        }
        for n in numbers_after(&text, "score full marks, ") {
            totals_found += 1;
            if n != total {
                problems.push(format!(
                    "{name}: \"full marks, {n}\"; tests/weights.toml gives {total}"
                ));
            }
        }
    }
    if totals_found == 0 {
        problems.push(
            "no file states the points in all (\"N points in all\"): a rule of xtask/src/drift.rs reads it"
                .into(),
        );
    }
    Ok(())
}

/// Every xtask command is shown somewhere (`cargo xtask NAME`) in the book
/// or the README, so none is a command only its author knows.
fn commands_documented(root: &Path, commands: &[String], problems: &mut Vec<String>) -> Result<()> {
    let mut text = read(root, "README.md")?;
    for file in crate::anchors::files_with_ext(&root.join("book/src"), "md")? {
        text.push_str(&std::fs::read_to_string(file)?);
    }
    let text = flat(&text);
    for command in commands {
        if !text.contains(&format!("cargo xtask {command}")) {
            problems.push(format!(
                "`cargo xtask {command}` is a command that neither the README nor the book shows"
            ));
        }
    }
    Ok(())
}

/// A deep dive's note (`> **Deep dive** (…): a first reading can skip to
/// [X](#x).`) is how a first reading gets past it, so its link must lead to
/// a heading of the same page. mdBook does not check a link to `#x`: once
/// that heading is renamed, the link silently leads to the top of the page,
/// and a beginner is left inside the deep dive.
fn deep_dive_links(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    for (name, text) in files_under(root, "book/src", "md")? {
        for (line, problem) in deep_dive_problems(&text) {
            problems.push(format!("{name}:{line}: {problem}"));
        }
    }
    Ok(())
}

/// The line and the fault of each deep dive note of `markdown` whose quote
/// has no `](#anchor)`, or whose anchor is no heading of the page.
fn deep_dive_problems(markdown: &str) -> Vec<(usize, String)> {
    let ids = crate::book_ids::markdown_heading_ids(markdown);
    let lines: Vec<(usize, &str)> = crate::book_ids::prose_lines(markdown).collect();
    let mut problems = Vec::new();
    for (i, (number, line)) in lines.iter().enumerate() {
        if !line.trim_start().starts_with("> **Deep dive**") {
            continue;
        }
        // The note is the whole quote: it may wrap onto more `>` lines.
        let note: String = lines[i..]
            .iter()
            .map(|(_, l)| l.trim_start())
            .take_while(|l| l.starts_with('>'))
            .collect::<Vec<_>>()
            .join(" ");
        let anchor = note
            .split_once("](#")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(anchor, _)| anchor);
        match anchor {
            None => problems.push((
                *number,
                "a Deep dive note with no link to a heading of its page, `[where to go on](#anchor)`"
                    .to_string(),
            )),
            Some(anchor) if !ids.iter().any(|id| id == anchor) => problems.push((
                *number,
                format!("a Deep dive note links to #{anchor}, which is no heading of its page"),
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Output in the book is only true when a run made it. So in a
/// ```` ```console ```` block every line is a command (`$ ` or `# `, or the
/// rest of one that ended with `\`), a blank, or an `{{#include
/// outputs/…}}` of a file `cargo xtask outputs` writes (and `--check`
/// runs again); a line of output typed by hand is a problem. And no
/// written output may hold an absolute path to a build directory, which
/// names the machine it was made on.
fn console_outputs_are_generated(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    for (name, text) in files_under(root, "book/src", "md")? {
        for line in typed_output_lines(&text) {
            problems.push(format!(
                "{name}:{line}: a console block shows output no run made: add the command to \
                 xtask/src/outputs.rs or transcripts.rs and include its file, or say it in prose"
            ));
        }
    }
    for (name, text) in files_under(root, "book/src/outputs", "txt")? {
        if let Some(path) = build_path_in(&text) {
            problems.push(format!(
                "{name}: holds {path}, a path of the machine it was made on: run the binary by a \
                 relative path or through a variable"
            ));
        }
    }
    Ok(())
}

/// Every `.ext` file under `dir` (from the root, recursively), as its path
/// from the root and its text.
fn files_under(root: &Path, dir: &str, ext: &str) -> Result<Vec<(String, String)>> {
    crate::anchors::files_with_ext(&root.join(dir), ext)?
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            Ok((name, text))
        })
        .collect()
}

/// The numbers of the lines of `markdown`'s console blocks that are output
/// typed into the page.
fn typed_output_lines(markdown: &str) -> Vec<usize> {
    let mut typed = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    // A block in a list item is indented as a whole: its lines are read
    // without the fence's indentation.
    let mut indent = 0;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if !in_console {
            in_console = fence && line.trim_start().trim_start_matches('`') == "console";
            indent = line.len() - line.trim_start().len();
            continued = false;
            continue;
        }
        let line = line
            .get(indent..)
            .filter(|_| line.is_char_boundary(indent))
            .unwrap_or(line);
        if fence {
            in_console = false;
            continue;
        }
        let command = line.starts_with("$ ") || line.starts_with("# ");
        let included = line.starts_with("{{#include outputs/");
        if !(command || included || continued || line.trim().is_empty()) {
            typed.push(i + 1);
        }
        continued = (command || continued) && line.ends_with('\\');
    }
    typed
}

/// The first absolute path to a cargo build directory (`/…/target/debug/…`)
/// in `text`, if any.
fn build_path_in(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '=' || c == '\'')
        .find(|word| {
            word.starts_with('/')
                && (word.contains("/target/debug/") || word.contains("/target/release/"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_output_in_a_console_block_is_found() {
        let page = "  ```console\n  $ indented\n  ```\n```console\n$ step1 true\n{{#include outputs/step1.txt}}\n$ long \\\n    --flag\n\nhand-typed\n```\n\nprose\n```text\nnot a console\n```\n";
        assert_eq!(typed_output_lines(page), [10]);
    }

    #[test]
    fn a_build_path_is_found_and_a_variable_is_not() {
        assert_eq!(
            build_path_in("ran /home/ana/caixa/target/debug/step9 run"),
            Some("/home/ana/caixa/target/debug/step9")
        );
        assert_eq!(build_path_in("# $REPO/target/debug/step10 pull"), None);
        assert_eq!(build_path_in("cp target/debug/step11 /tmp/eng/"), None);
    }

    const PAGE: &str = "# Top\n\n## The steps\n\nSome words.\n\n| step | adds |\n|---|---|\n| 1 | `src/a.rs`, `src/b.rs` |\n| 2 | coming |\n\n## Next\n\n| x |\n|---|\n| 9 |\n";

    #[test]
    fn a_table_is_found_by_its_heading() {
        let t = table_under(PAGE, "The steps").unwrap();
        assert_eq!(t.header, ["step", "adds"]);
        assert_eq!(first_column(&t), [1, 2]);
        assert_eq!(t.rows[0][1], "`src/a.rs`, `src/b.rs`");
        assert_eq!(first_column(&table_under(PAGE, "Next").unwrap()), [9]);
        assert!(
            table_under(PAGE, "Top").is_none(),
            "a table past the next heading"
        );
        assert!(table_under(PAGE, "Missing").is_none());
    }

    #[test]
    fn numbers_are_read_beside_a_phrase() {
        let text = flat("gives 305 points\nin all: 20, 15 and full marks, 245.");
        assert_eq!(numbers_before(&text, " points in all"), [305.0]);
        assert_eq!(numbers_after(&text, "full marks, "), [245.0]);
        assert!(numbers_before("points in all", " points in all").is_empty());
    }

    #[test]
    fn a_deep_dive_note_must_lead_to_a_heading_of_its_page() {
        let page = "# Step 7\n\n## The idea\n\n### Hybrid hosts\n\n\
            > **Deep dive** (hosts with both versions): a first reading can\n\
            > skip to [What cgroups do not limit](#what-cgroups-do-not-limit).\n\n\
            ### What cgroups do not limit\n\n\
            ### Timings\n\n> **Deep dive**: a first reading can skip to [Run it](#run-it).\n\n\
            ### Crashes\n\n> **Deep dive**: skip it.\n\n\
            ```text\n> **Deep dive**: in code, not a note\n```\n";
        let problems = deep_dive_problems(page);
        let lines: Vec<usize> = problems.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [14, 18], "{problems:?}");
        assert!(
            problems[0].1.contains("#run-it, which is no heading"),
            "{problems:?}"
        );
        assert!(problems[1].1.contains("no link"), "{problems:?}");
    }

    /// The rule that found today's drift passes on this checkout (the CI
    /// check runs the same function with the real command names).
    #[test]
    fn this_checkout_does_not_drift() {
        let root = crate::workspace_root();
        check(&root, &crate::command_names()).unwrap();
    }
}
