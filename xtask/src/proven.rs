//! The record of proofs: on which tree `check-mistakes` last passed for
//! each step, so CI pays only for the steps changed since.
//!
//! Why a record. Proving a step's mistakes list means one incremental build
//! and one run of the step's graded tests per mistake: steps 1 to 7 alone
//! took 568 s, all eleven much longer, which CI's budget cannot pay on
//! every change. `--changed-since REV` would narrow it, but it needs a base
//! revision, and a clean clone in CI knows no `origin/main`. A proof is a
//! fact about files, not about history, so it is recorded beside them:
//! `xtask/mistakes/proven.toml` maps each step to a fingerprint of the tree
//! on which its check last passed.
//!
//! A step's fingerprint is a SHA-256 over every file that may change its
//! verdict, path and bytes, in path order: the files that
//! [`crate::mistakes::steps_decided_by`] names for it (its regions' source
//! files, its graded test file, `tests/support/`, its mistakes list). That
//! one function decides it for `--changed-since` too, so the two never
//! disagree on what "changed" means.
//!
//! `check-mistakes --record` writes the fingerprints of the steps it just
//! proved (every mistake caught and named); `check-mistakes --unproven`
//! checks only the steps whose fingerprint differs from the record and says
//! so for the others. `cargo xtask ci` runs `--unproven`: a change that
//! touches no step's files costs the hashing (milliseconds), a change to one
//! step's region costs that step's proof, and a contributor who commits a
//! fresh record with the change (`--unproven --record`) costs CI nothing.
//! The record can only claim what was run: a tampered record is caught by
//! no machine, but by review, like any other committed file. The checker
//! itself (`xtask/src/`) is in no fingerprint: a change to how it checks
//! calls for a full `check-mistakes --record` by hand.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The record, from the repository root.
pub const RECORD: &str = "xtask/mistakes/proven.toml";

/// The folders whose files may decide a step's verdict (the rest of the
/// tree cannot: [`crate::mistakes::steps_decided_by`] names none there).
const INPUT_DIRS: [&str; 3] = ["src", "tests", "xtask/mistakes"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    #[serde(default)]
    fingerprints: BTreeMap<String, String>,
}

/// The fingerprint of each step with a mistakes list, of the tree as it is
/// now under `root`.
pub fn fingerprints(root: &Path) -> Result<BTreeMap<u32, String>> {
    let all = crate::mistakes::steps_with_mistakes(root)?;
    let mut files = Vec::new();
    for dir in INPUT_DIRS {
        walk(root, &root.join(dir), &mut files)?;
    }
    let mut per_step: BTreeMap<u32, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (name, bytes) in files {
        let text = String::from_utf8_lossy(&bytes);
        for step in crate::mistakes::steps_decided_by(&name, Some(&text), &all) {
            per_step
                .entry(step)
                .or_default()
                .push((name.clone(), bytes.clone()));
        }
    }
    Ok(all
        .into_iter()
        .map(|step| {
            let files = per_step.remove(&step).unwrap_or_default();
            (step, fingerprint(files))
        })
        .collect())
}

/// Every file under `dir`, as (path from `root` with `/`, bytes).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            out.push((name, bytes));
        }
    }
    Ok(())
}

/// SHA-256 over `files` in path order, each as its path, a NUL, its length
/// (8 bytes, little-endian) and its bytes: a renamed, moved, added or
/// removed file changes it, and no two lists of files hash alike by
/// shifting bytes from one file into the next.
pub fn fingerprint(mut files: Vec<(String, Vec<u8>)>) -> String {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Sha256::new();
    for (name, bytes) in &files {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Reads the record text: step → fingerprint.
fn parse(text: &str) -> Result<BTreeMap<u32, String>> {
    let file: RecordFile = toml::from_str(text).context("it is not valid TOML")?;
    file.fingerprints
        .into_iter()
        .map(|(step, fingerprint)| {
            let Ok(n) = step.parse::<u32>() else {
                bail!("{step:?} is not a step number");
            };
            if !fingerprint.starts_with("sha256:") {
                bail!("step {n}'s fingerprint {fingerprint:?} does not start with sha256:");
            }
            Ok((n, fingerprint))
        })
        .collect()
}

/// The record's text for `proofs`, steps in numeric order, with a header
/// that says what the file is to whoever opens it.
fn format(proofs: &BTreeMap<u32, String>) -> String {
    let mut text = String::from(
        "# The tree on which `cargo xtask check-mistakes` last proved each step: a\n\
         # SHA-256 over the step's region files, graded tests, tests/support and\n\
         # mistakes list (see xtask/src/proven.rs). Written by `check-mistakes\n\
         # --record`; `check-mistakes --unproven` (run by `cargo xtask ci`) skips\n\
         # the steps whose files still hash to this. Do not edit by hand.\n\n\
         [fingerprints]\n",
    );
    for (step, fingerprint) in proofs {
        text.push_str(&format!("{step} = \"{fingerprint}\"\n"));
    }
    text
}

/// The recorded proofs (none when there is no record yet).
pub fn read(root: &Path) -> Result<BTreeMap<u32, String>> {
    let path = root.join(RECORD);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).with_context(|| {
            format!(
                "{RECORD} is damaged; remove it and run `cargo xtask check-mistakes --record` \
                 to prove every step again"
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {RECORD}")),
    }
}

/// Adds (or replaces) `proofs` in the record; other steps' proofs stay.
pub fn record(root: &Path, proofs: &BTreeMap<u32, String>) -> Result<()> {
    let mut all = read(root)?;
    all.extend(proofs.iter().map(|(s, f)| (*s, f.clone())));
    std::fs::write(root.join(RECORD), format(&all))
        .with_context(|| format!("cannot write {RECORD}"))
}

/// Splits `current` into the steps to check (no proof, or a proof of
/// another tree) and those proven at their current fingerprint.
pub fn split(
    current: &BTreeMap<u32, String>,
    recorded: &BTreeMap<u32, String>,
) -> (Vec<u32>, Vec<(u32, String)>) {
    let mut unproven = Vec::new();
    let mut proven = Vec::new();
    for (step, fingerprint) in current {
        match recorded.get(step) {
            Some(r) if r == fingerprint => proven.push((*step, fingerprint.clone())),
            _ => unproven.push(*step),
        }
    }
    (unproven, proven)
}

/// The steps `--unproven` must check, after a line for each one it skips.
pub fn unproven(root: &Path) -> Result<Vec<u32>> {
    let (unproven, proven) = split(&fingerprints(root)?, &read(root)?);
    for (step, fingerprint) in &proven {
        println!(
            "step {step}: proven at fingerprint {}, skipped",
            short(fingerprint)
        );
    }
    Ok(unproven)
}

/// The first 12 hex digits: enough to tell fingerprints apart in a log.
fn short(fingerprint: &str) -> &str {
    let hex = fingerprint.strip_prefix("sha256:").unwrap_or(fingerprint);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, b)| (n.to_string(), b.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_fingerprint_depends_on_names_and_bytes_not_on_the_walks_order() {
        let base = fingerprint(files(&[("src/a.rs", "one"), ("tests/step1.rs", "two")]));
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        let reordered = fingerprint(files(&[("tests/step1.rs", "two"), ("src/a.rs", "one")]));
        assert_eq!(base, reordered, "the order of the walk must not matter");
        for changed in [
            files(&[("src/a.rs", "one!"), ("tests/step1.rs", "two")]),
            files(&[("src/b.rs", "one"), ("tests/step1.rs", "two")]),
            files(&[("src/a.rs", "one")]),
            files(&[("src/a.rs", "one"), ("tests/step1.rs", "two"), ("x", "")]),
            // The same bytes, shifted from one file into the next.
            files(&[("src/a.rs", "onet"), ("tests/step1.rs", "wo")]),
        ] {
            assert_ne!(fingerprint(changed.clone()), base, "{changed:?}");
        }
    }

    #[test]
    fn the_record_reads_back_what_it_wrote_in_step_order() {
        let proofs: BTreeMap<u32, String> = [(10, "sha256:bb"), (2, "sha256:aa")]
            .into_iter()
            .map(|(s, f)| (s, f.to_string()))
            .collect();
        let text = format(&proofs);
        assert!(
            text.find("2 = ").unwrap() < text.find("10 = ").unwrap(),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), proofs);
        assert_eq!(parse("").unwrap(), BTreeMap::new());
        assert!(parse("[fingerprints]\nx = \"sha256:aa\"\n").is_err());
        assert!(parse("[fingerprints]\n1 = \"md5:aa\"\n").is_err());
        assert!(parse("[other]\n").is_err());
    }

    #[test]
    fn only_steps_without_a_proof_of_this_tree_are_checked() {
        let map = |pairs: &[(u32, &str)]| -> BTreeMap<u32, String> {
            pairs.iter().map(|(s, f)| (*s, f.to_string())).collect()
        };
        let current = map(&[(1, "sha256:a"), (2, "sha256:b"), (3, "sha256:c")]);
        let recorded = map(&[(1, "sha256:a"), (2, "sha256:old"), (9, "sha256:z")]);
        let (run, skipped) = split(&current, &recorded);
        assert_eq!(run, [2, 3], "a changed step and a step never proven");
        assert_eq!(skipped, [(1, "sha256:a".to_string())]);
        let (run, skipped) = split(&current, &current);
        assert!(run.is_empty() && skipped.len() == 3);
    }

    #[test]
    fn the_files_of_a_step_are_those_that_decide_its_verdict() {
        use crate::mistakes::steps_decided_by;
        let all = [1, 4, 8, 11];
        assert_eq!(steps_decided_by("tests/support/mod.rs", None, &all), all);
        assert_eq!(steps_decided_by("tests/step8.rs", None, &all), [8]);
        assert_eq!(steps_decided_by("tests/step8/devices.rs", None, &all), [8]);
        assert_eq!(
            steps_decided_by("tests/step5.rs", None, &all),
            [] as [u32; 0]
        );
        assert_eq!(
            steps_decided_by("xtask/mistakes/step11.toml", None, &all),
            [11]
        );
        let region = "fn f() {\n    // EXERCISE(4): x\n    y\n    // END EXERCISE\n}\n";
        assert_eq!(steps_decided_by("src/a.rs", Some(region), &all), [4]);
        assert_eq!(
            steps_decided_by("src/a.rs", Some("fn f() {}"), &all),
            [] as [u32; 0]
        );
        // A region's words outside src/ (the book quotes them) decide nothing.
        assert_eq!(
            steps_decided_by("book/src/x.md", Some(region), &all),
            [] as [u32; 0]
        );
        assert_eq!(
            steps_decided_by("tests/probe/src/main.rs", None, &all),
            [] as [u32; 0]
        );
    }

    #[test]
    fn the_committed_record_parses() {
        read(&crate::workspace_root()).unwrap();
    }

    #[test]
    fn a_short_fingerprint_is_twelve_hex_digits() {
        assert_eq!(
            short(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
        assert_eq!(short("sha256:ab"), "ab");
    }
}
