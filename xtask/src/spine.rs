//! The spine's picture, grown one step at a time.
//!
//! The book's first chapters must not show step 9's overlay before the
//! reader has met a namespace, yet every chapter should point at the same
//! two sequences. So the picture has one source, `book/spine.txt`, whose
//! every row says from which step on (or for which steps) it is shown, and
//! `cargo xtask outputs` writes one picture per step into
//! `book/src/outputs/spine-stepN.txt`, marking with `+` the rows that step
//! adds. `outputs --check` (in CI) fails when a written picture differs
//! from what the source gives, so the chapters cannot drift from it.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The source of every step's picture, relative to the repository.
pub const SOURCE: &str = "book/spine.txt";

/// The last step; the picture of step `LAST` is the whole one.
pub const LAST: u32 = 12;

/// One row of the picture and the steps that show it.
#[derive(Debug, PartialEq)]
struct Row {
    first: u32,
    last: u32,
    text: String,
}

/// Reads `STEPS|text` rows (`A`, `A-` or `A-B`); `#` lines are comments.
fn parse(source: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let at = || format!("{SOURCE}:{}", i + 1);
        let (steps, text) = line
            .split_once('|')
            .with_context(|| format!("{}: a row is STEPS|text", at()))?;
        let number = |s: &str| -> Result<u32> {
            let n: u32 = s
                .trim()
                .parse()
                .with_context(|| format!("{}: {s:?} is not a step number", at()))?;
            if !(1..=LAST).contains(&n) {
                bail!("{}: step {n} is not one of 1 to {LAST}", at());
            }
            Ok(n)
        };
        let (first, last) = match steps.split_once('-') {
            None => (number(steps)?, LAST),
            Some((a, "")) => (number(a)?, LAST),
            Some((a, b)) => (number(a)?, number(b)?),
        };
        if first > last {
            bail!("{}: steps {first}-{last} run backwards", at());
        }
        rows.push(Row {
            first,
            last,
            text: text.trim_end().to_string(),
        });
    }
    Ok(rows)
}

/// Step `step`'s picture: its rows, those it adds behind a `+`.
fn picture(rows: &[Row], step: u32) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|r| (r.first..=r.last).contains(&step)) {
        let mark = if row.first == step && step > 1 {
            '+'
        } else {
            ' '
        };
        out.push(mark);
        out.push_str(&row.text);
        out.push('\n');
    }
    out
}

/// Every step's picture, as (file name, text), from the source in `root`.
pub fn pictures(root: &Path) -> Result<Vec<(String, String)>> {
    let source = std::fs::read_to_string(root.join(SOURCE))
        .with_context(|| format!("cannot read {SOURCE}"))?;
    let rows = parse(&source)?;
    Ok((1..=LAST)
        .map(|step| (format!("spine-step{step}.txt"), picture(&rows, step)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE_TEXT: &str = "# a comment\n1| both\n2-3| middle\n3| late  \n";

    #[test]
    fn rows_show_from_their_step_and_new_ones_are_marked() {
        let rows = parse(SOURCE_TEXT).unwrap();
        assert_eq!(picture(&rows, 1), "  both\n");
        assert_eq!(picture(&rows, 2), "  both\n+ middle\n");
        assert_eq!(picture(&rows, 3), "  both\n  middle\n+ late\n");
        assert_eq!(picture(&rows, 4), "  both\n  late\n");
    }

    #[test]
    fn bad_rows_name_their_line() {
        for (bad, says) in [
            ("x| text", "spine.txt:1: \"x\" is not a step number"),
            ("13| text", "spine.txt:1: step 13 is not one of 1 to 12"),
            ("4-2| text", "spine.txt:1: steps 4-2 run backwards"),
            ("no bar", "spine.txt:1: a row is STEPS|text"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
