//! `check-anchors`: mdBook renders an include whose anchor is missing as empty
//! text, silently. This fails instead, and also on an ANCHOR without its END.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Checks every `{{#include …}}` of `book/src` and every anchor pair in the code.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let mut includes = 0;
    for md in files_with_ext(&root.join("book/src"), "md")? {
        let text = std::fs::read_to_string(&md)?;
        for target in include_targets(&text) {
            includes += 1;
            if let Err(e) = resolve(md.parent().unwrap_or(root), target) {
                problems.push(format!(
                    "{}: {{{{#include {target}}}}}: {e:#}",
                    md.display()
                ));
            }
        }
    }
    for dir in ["src", "chapters"] {
        for rs in files_with_ext(&root.join(dir), "rs")? {
            let text = std::fs::read_to_string(&rs)?;
            for name in anchor_names(&text, "ANCHOR:") {
                if !anchor_names(&text, "ANCHOR_END:").contains(&name) {
                    problems.push(format!("{}: ANCHOR {name} has no ANCHOR_END", rs.display()));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} broken includes or anchors:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    println!("check-anchors: {includes} includes resolve to text");
    Ok(())
}

/// The text between `{{#include ` and `}}`, for every include in `md`.
fn include_targets(md: &str) -> Vec<&str> {
    md.split("{{#include ")
        .skip(1)
        .filter_map(|rest| rest.split("}}").next())
        .map(str::trim)
        .collect()
}

fn anchor_names(text: &str, marker: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split(marker).nth(1))
        .map(|name| name.trim().to_string())
        .collect()
}

/// The non-empty text an include stands for, or why there is none.
fn resolve(dir: &Path, target: &str) -> Result<String> {
    let (path, anchor) = match target.rsplit_once(':') {
        Some((p, a)) if !a.chars().all(|c| c.is_ascii_digit()) => (p, Some(a)),
        _ => (target, None),
    };
    let file = dir.join(path);
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let body = match anchor {
        None => text,
        Some(anchor) => {
            let start = format!("ANCHOR: {anchor}");
            let end = format!("ANCHOR_END: {anchor}");
            let lines: Vec<&str> = text.lines().collect();
            let from = lines
                .iter()
                .position(|l| l.trim_end().ends_with(&start))
                .with_context(|| format!("no `{start}` in {}", file.display()))?;
            let to = lines[from..]
                .iter()
                .position(|l| l.trim_end().ends_with(&end))
                .with_context(|| format!("no `{end}` in {}", file.display()))?;
            lines[from + 1..from + to].join("\n")
        }
    };
    if body.trim().is_empty() {
        bail!("resolves to empty text");
    }
    Ok(body)
}

/// Every file under `dir` (recursively) whose name ends in `.ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(_) if d == dir => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("read {}", d.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_includes_and_resolves_anchors() {
        let md = "a {{#include ../x.rs:one}} b {{#include out.txt}}";
        assert_eq!(include_targets(md), ["../x.rs:one", "out.txt"]);
        let dir = std::env::temp_dir().join(format!("xtask-anchors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("x.rs"),
            "// ANCHOR: one\nfn a() {}\n// ANCHOR_END: one\n// ANCHOR: empty\n// ANCHOR_END: empty\n",
        )
        .unwrap();
        assert_eq!(resolve(&dir, "x.rs:one").unwrap(), "fn a() {}");
        assert!(resolve(&dir, "x.rs:empty").is_err());
        assert!(resolve(&dir, "x.rs:missing").is_err());
        assert!(resolve(&dir, "nope.rs:one").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
