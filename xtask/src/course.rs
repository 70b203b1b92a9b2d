//! `course`: the facts about the course that the code decides, read from the
//! files that decide them, never typed a second time.
//!
//! - the steps: one directory `chapters/stepN-<concept>/` per step binary;
//! - the exercises: the `// EXERCISE(N): …` markers in `src/` and
//!   `chapters/`, and which files hold them;
//! - the points: `tests/weights.toml`, as `cargo xtask grade` reads it;
//! - the mistakes each step's tests are proven to catch:
//!   `xtask/mistakes/stepN.toml`.
//!
//! `check-drift` compares the book, the README and `doctor` with these;
//! `doctor` names the steps a machine can run from them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

/// What the code says the course is.
#[derive(Debug)]
pub struct Course {
    /// Step numbers, ascending: one per `chapters/stepN-*` directory.
    pub steps: Vec<u32>,
    /// For each step with an exercise, the files (relative to the root)
    /// that hold its regions.
    pub exercises: BTreeMap<u32, BTreeSet<String>>,
    /// For each step with a harder, optional exercise (`// HARDER(N): …`),
    /// the files that hold its regions.
    pub harder: BTreeMap<u32, BTreeSet<String>>,
    /// Each graded test binary (`step1` … and `errors`) and its points.
    pub points: Vec<(String, f64)>,
    /// The points of each step's harder exercises (`[stepN.harder]`),
    /// beyond the total.
    pub harder_points: BTreeMap<u32, f64>,
    /// For each step with a mistakes list, how many mistakes it holds.
    pub mistakes: BTreeMap<u32, usize>,
}

impl Course {
    /// Reads the course from the checkout at `root`.
    pub fn read(root: &Path) -> Result<Course> {
        let weights = crate::grade::load_weights(root)?;
        Ok(Course {
            steps: steps(root)?,
            exercises: regions(root, "// EXERCISE(")?,
            harder: regions(root, "// HARDER(")?,
            harder_points: weights
                .iter()
                .filter(|w| !w.harder.is_empty())
                .filter_map(|w| Some((step_number(&w.name)?, w.harder.values().sum())))
                .collect(),
            points: weights.into_iter().map(|w| (w.name, w.points)).collect(),
            mistakes: mistakes(root)?,
        })
    }

    /// The last step: what "every step" means.
    pub fn last_step(&self) -> u32 {
        self.steps.last().copied().unwrap_or(0)
    }

    /// The points of the whole course, error tests included.
    pub fn total_points(&self) -> f64 {
        self.points.iter().map(|(_, p)| p).sum()
    }
}

/// The number in a `stepN` or `stepN-concept` name.
pub fn step_number(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("step")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = &rest[digits.len()..];
    if after.is_empty() || after.starts_with('-') || after.starts_with('.') {
        digits.parse().ok()
    } else {
        None
    }
}

/// The steps, from the directories of the step binaries.
fn steps(root: &Path) -> Result<Vec<u32>> {
    let dir = root.join("chapters");
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        if entry.path().is_dir()
            && let Some(n) = step_number(&entry.file_name().to_string_lossy())
        {
            steps.push(n);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// The files holding each step's regions that start with `marker`.
fn regions(root: &Path, marker: &str) -> Result<BTreeMap<u32, BTreeSet<String>>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for top in ["src", "chapters"] {
        for file in crate::anchors::files_with_ext(&root.join(top), "rs")? {
            let text = std::fs::read_to_string(&file)?;
            let relative = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            for step in steps_marked(&text, marker) {
                out.entry(step).or_default().insert(relative.clone());
            }
        }
    }
    Ok(out)
}

/// The step of every line of a file that starts with `marker` then `N)`.
fn steps_marked(text: &str, marker: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(marker))
        .filter_map(|rest| rest.split_once(')')?.0.parse().ok())
        .collect()
}

/// How many `[[mistake]]` entries each step's list holds.
fn mistakes(root: &Path) -> Result<BTreeMap<u32, usize>> {
    let mut out = BTreeMap::new();
    for step in crate::mistakes::steps_with_mistakes(root)? {
        out.insert(step, crate::mistakes::load(root, step)?.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_numbers_come_from_names() {
        assert_eq!(step_number("step12-runtime"), Some(12));
        assert_eq!(step_number("step4"), Some(4));
        assert_eq!(step_number("step4.rs"), Some(4));
        assert_eq!(step_number("steps"), None);
        assert_eq!(step_number("step4x"), None);
    }

    #[test]
    fn markers_name_their_step() {
        let text =
            "fn a() {\n    // EXERCISE(11): x\n    1\n    // END EXERCISE\n}\n// EXERCISE(3): y\n";
        assert_eq!(steps_marked(text, "// EXERCISE("), [11, 3]);
    }

    #[test]
    fn this_checkout_is_a_course() {
        let course = Course::read(&crate::workspace_root()).unwrap();
        assert!(course.last_step() >= 12, "{course:?}");
        assert!(course.exercises.contains_key(&1));
        assert!(course.total_points() > 0.0);
    }
}
