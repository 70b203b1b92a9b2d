//! `book`: the book in English and in Brazilian Portuguese, with gettext.
//!
//! The English Markdown under `book/src` is the only source. mdbook-i18n-helpers'
//! `mdbook-xgettext` renderer cuts it into messages (a paragraph, a heading,
//! a list item, a table cell) and writes them to a template,
//! `book/po/messages.pot`; `msgmerge` carries each message's translation
//! in `book/po/pt-BR.po` over to the new template, so an English paragraph
//! that changed shows up as *fuzzy* (its old translation kept, marked for
//! review) and a new one as *untranslated*. The `mdbook-gettext`
//! preprocessor then swaps each message for its translation while the
//! Portuguese edition is built; a message without one stays English, so a
//! half-done translation still builds.
//!
//! The template is extracted with mdBook's own preprocessors off, so it
//! holds `{{#include …}}` lines rather than the code they pull in: a change
//! to the code never reaches the translation, and the code, its comments
//! and its messages stay English in both editions (the gettext preprocessor
//! runs after `links`, on text whose included code no message matches).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The one translation: its language code, as mdBook and gettext spell it.
pub const LANGUAGE: &str = "pt-BR";

/// The Portuguese edition's title (book.toml's `title` is not a message).
const TITLE: &str = "caixa — um motor de contêineres, um recurso do kernel de cada vez";

/// Where the catalogs live, beside the book's sources.
const PO_DIR: &str = "book/po";

/// Where each edition is written: English at the site's root, the
/// translation in a folder named after its language, as the language
/// switch (`book/i18n/language-switch.js`) expects.
const OUT_DIR: &str = "book/book";

/// What `cargo xtask book` does to `book/po/pt-BR.po`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    /// Merge the fresh template into it, in place: what a writer runs after
    /// changing an English paragraph, so the translator sees what changed.
    Update,
    /// Leave it alone, merge into a scratch copy: CI's build, which must not
    /// write to the tree it checks.
    Keep,
}

/// How complete the translation is, as `msgfmt --statistics` counts it
/// after the merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Messages with a translation that is not marked fuzzy.
    pub translated: usize,
    /// Messages whose English changed since they were translated.
    pub fuzzy: usize,
    /// Messages nobody has translated yet.
    pub untranslated: usize,
}

impl Coverage {
    /// Every message of the template.
    pub fn total(&self) -> usize {
        self.translated + self.fuzzy + self.untranslated
    }
}

/// `cargo xtask book`: extract, merge, report coverage and build both
/// editions; with `check_complete`, fail when a message is untranslated or
/// fuzzy (not part of `xtask ci` while the translation is under way).
pub fn run(root: &Path, catalog: Catalog, check_complete: bool) -> Result<()> {
    let started = Instant::now();
    let po_dir = root.join(PO_DIR);
    let scratch = target_dir(root).join("book-i18n");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;

    let pot = extract(root, &scratch)?;
    let po = po_dir.join(format!("{LANGUAGE}.po"));
    if !po.exists() {
        start_catalog(&pot, &po)?;
    }
    let merged = match catalog {
        Catalog::Update => {
            merge(&pot, &po, &po)?;
            po.clone()
        }
        Catalog::Keep => {
            let copy = scratch.join(format!("{LANGUAGE}.po"));
            merge(&pot, &po, &copy)?;
            copy
        }
    };
    let coverage = coverage(&merged)?;
    println!(
        "book: {LANGUAGE}: translated {} of {} messages ({} fuzzy, {} untranslated)",
        coverage.translated,
        coverage.total(),
        coverage.fuzzy,
        coverage.untranslated
    );

    build(root, &merged)?;
    println!(
        "book: built {OUT_DIR}/index.html (en) and {OUT_DIR}/{LANGUAGE}/index.html \
         ({LANGUAGE}) in {:.0?}",
        started.elapsed()
    );

    if check_complete && (coverage.fuzzy > 0 || coverage.untranslated > 0) {
        bail!(
            "the {LANGUAGE} translation is incomplete: {} fuzzy and {} untranslated of {} \
             messages; most likely an English paragraph changed (or was added) without its \
             translation: run `cargo xtask book`, then fill in the empty and `#, fuzzy` \
             entries of {} (book/src/instructor/translation.md says how)",
            coverage.fuzzy,
            coverage.untranslated,
            coverage.total(),
            po.strip_prefix(root).unwrap_or(&po).display()
        );
    }
    Ok(())
}

/// Cargo's target folder (`CARGO_TARGET_DIR`, else `target/`): where the
/// book's scratch files and the browser check's screenshots go.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Writes the template (`book/po/messages.pot`, not committed: it is
/// derived) from the English sources, and returns its path.
fn extract(root: &Path, scratch: &Path) -> Result<PathBuf> {
    let po_dir = root.join(PO_DIR);
    let out = scratch.join("xgettext");
    println!("\n==> mdbook-xgettext: the English messages into {PO_DIR}/messages.pot");
    mdbook(
        root,
        &out,
        &[
            (
                "MDBOOK_OUTPUT",
                r#"{"xgettext": {"pot-file": "messages.pot"}}"#,
            ),
            // No `links`: the template holds the include lines, not the code.
            ("MDBOOK_BUILD__USE_DEFAULT_PREPROCESSORS", "false"),
        ],
    )?;
    let made = out.join("messages.pot");
    let text = std::fs::read_to_string(&made)
        .with_context(|| format!("mdbook-xgettext wrote no {}", made.display()))?;
    // The extraction's time would change the catalog's header at every
    // merge, a diff with nothing in it; the field stays, empty, as
    // mdbook-gettext requires it.
    let text: String = text
        .split_inclusive('\n')
        .map(|line| {
            if line.starts_with("\"POT-Creation-Date:") {
                "\"POT-Creation-Date: \\n\"\n"
            } else {
                line
            }
        })
        .collect();
    let pot = po_dir.join("messages.pot");
    std::fs::write(&pot, text).with_context(|| format!("cannot write {}", pot.display()))?;
    Ok(pot)
}

/// `msginit`: a new, empty catalog for the template (the first run only).
fn start_catalog(pot: &Path, po: &Path) -> Result<()> {
    println!("\n==> msginit: a new catalog, {}", po.display());
    let status = Command::new("msginit")
        .args(["--no-translator", "--locale=pt_BR.UTF-8", "--input"])
        .arg(pot)
        .arg("--output-file")
        .arg(po)
        .status()
        .context("cannot run msginit: install gettext (sudo apt-get install gettext)")?;
    if !status.success() {
        bail!("msginit {} failed ({status})", po.display());
    }
    Ok(())
}

/// `msgmerge`: `po`'s translations carried over to `pot`'s messages,
/// written to `out` (which may be `po` itself).
fn merge(pot: &Path, po: &Path, out: &Path) -> Result<()> {
    println!("\n==> msgmerge {} onto the template", po.display());
    let status = Command::new("msgmerge")
        .arg("--quiet")
        // A fuzzy entry keeps the English it was translated from (`#|`
        // lines), so the translator sees what changed.
        .arg("--previous")
        .arg("--output-file")
        .arg(out)
        .arg(po)
        .arg(pot)
        .status()
        .context("cannot run msgmerge: install gettext (sudo apt-get install gettext)")?;
    if !status.success() {
        bail!(
            "msgmerge {} {} failed ({status}): most likely a syntax error in the catalog \
             (`msgfmt --check {}` points at the line)",
            po.display(),
            pot.display(),
            po.display()
        );
    }
    Ok(())
}

/// Counts `po`'s messages with `msgfmt --statistics`, which also checks
/// the catalog's syntax and its format strings.
pub fn coverage(po: &Path) -> Result<Coverage> {
    let output = Command::new("msgfmt")
        .args(["--check", "--statistics", "--output-file", "/dev/null"])
        .arg(po)
        .env("LC_ALL", "C")
        .output()
        .context("cannot run msgfmt: install gettext (sudo apt-get install gettext)")?;
    let report = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{} is not a valid catalog:\n{report}", po.display());
    }
    parse_statistics(&report)
        .with_context(|| format!("cannot read msgfmt's statistics line: {report:?}"))
}

/// Reads `msgfmt --statistics`' line, such as
/// "12 translated messages, 3 fuzzy translations, 40 untranslated messages."
/// (a kind with none is left out; one message is "message").
fn parse_statistics(report: &str) -> Option<Coverage> {
    let line = report.lines().rev().find(|l| l.contains("translat"))?;
    let mut coverage = Coverage {
        translated: 0,
        fuzzy: 0,
        untranslated: 0,
    };
    for part in line.trim_end_matches('.').split(',') {
        let mut words = part.split_whitespace();
        let n: usize = words.next()?.parse().ok()?;
        match words.next()? {
            "translated" => coverage.translated = n,
            "fuzzy" => coverage.fuzzy = n,
            "untranslated" => coverage.untranslated = n,
            _ => return None,
        }
    }
    Some(coverage)
}

/// Builds the English edition into `book/book` and the Portuguese one, from
/// the catalog `po`, into `book/book/pt-BR` (after the English build, which
/// empties `book/book`).
fn build(root: &Path, po: &Path) -> Result<()> {
    let out = root.join(OUT_DIR);
    println!("\n==> mdbook build book (en)");
    mdbook(root, &out, &[])?;
    println!("\n==> mdbook build book ({LANGUAGE})");
    let po_dir = po
        .parent()
        .context("the catalog has no folder")?
        .to_str()
        .context("the catalog's folder is not UTF-8")?;
    // The gettext preprocessor is configured here, not in book.toml, so a
    // plain `mdbook build book` (a student's, the English edition) needs
    // no mdbook-i18n-helpers. It runs after `links`: the code an include
    // pulls in is never translated.
    let gettext = serde_json::json!({ "after": ["links"], "po-dir": po_dir }).to_string();
    mdbook(
        root,
        &out.join(LANGUAGE),
        &[
            ("MDBOOK_BOOK__LANGUAGE", LANGUAGE),
            ("MDBOOK_BOOK__TITLE", TITLE),
            ("MDBOOK_PREPROCESSOR__GETTEXT", &gettext),
        ],
    )?;
    // The links to English anchors keep working in the translation.
    let (added, unpaired) = crate::book_ids::keep_english_ids(&out, LANGUAGE)?;
    println!("book: {LANGUAGE}: {added} translated headings also answer to their English anchor");
    if !unpaired.is_empty() {
        println!(
            "book: {LANGUAGE}: the headings of {} differ from the English ones (a heading \
             translated as two, or one left out?): their English anchors lead nowhere",
            unpaired.join(", ")
        );
    }
    Ok(())
}

/// `mdbook build book -d OUT` with configuration from the environment,
/// failing on any warning mdBook prints (the book builds clean).
fn mdbook(root: &Path, out: &Path, env: &[(&str, &str)]) -> Result<()> {
    let output = Command::new("mdbook")
        .arg("build")
        .arg("book")
        .arg("--dest-dir")
        .arg(out)
        .envs(env.iter().copied())
        .current_dir(root)
        .output()
        .context("cannot run mdbook: cargo install mdbook --locked --version 0.5.4")?;
    let log = String::from_utf8_lossy(&output.stderr);
    eprint!("{log}");
    if !output.status.success() {
        bail!(
            "mdbook build book -d {} failed ({}): most likely mdbook-i18n-helpers is \
             missing (cargo install mdbook-i18n-helpers --locked --version '^0.4'), or \
             mdbook-gettext cannot read the catalog (its message is above)",
            out.display(),
            output.status
        );
    }
    if log.contains(" WARN ") || log.contains("[WARN") {
        let hint = if log.contains("search index is very large") {
            ": the search index passed mdBook's 10 MB; leave another page that nobody \
             searches out of it ([output.html.search.chapter] in book/book.toml), or cut \
             its sections coarser (heading-split-level there)"
        } else {
            ""
        };
        bail!(
            "mdbook build book -d {} printed warnings{hint}",
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgfmt_statistics_lines_are_read() {
        let c = parse_statistics(
            "12 translated messages, 3 fuzzy translations, 40 untranslated messages.\n",
        )
        .unwrap();
        assert_eq!((c.translated, c.fuzzy, c.untranslated), (12, 3, 40));
        let c = parse_statistics("1 translated message.\n").unwrap();
        assert_eq!((c.translated, c.total()), (1, 1));
        let c = parse_statistics("0 translated messages, 7 untranslated messages.\n").unwrap();
        assert_eq!((c.translated, c.untranslated), (0, 7));
        assert!(parse_statistics("msgfmt: error\n").is_none());
    }
}
