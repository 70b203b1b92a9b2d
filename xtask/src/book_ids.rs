//! `book_ids`: the English anchors kept in the translated edition.
//!
//! mdBook makes a heading's id from its text, so "## The idea" is
//! `#the-idea` in English and, translated to "## A ideia", `#a-ideia` in
//! Portuguese. Every link to an anchor (`spine.html#the-pid-1-rule`,
//! `#exercise`) is English in the sources, and stays English in a
//! paragraph nobody translated yet, or whose translator kept the link as
//! it was: in the Portuguese edition it leads to the top of the page.
//! Asking translators to rewrite every anchor by hand would break again at
//! each translated heading. Instead, after the Portuguese build, each
//! translated heading also gets its English id (an empty `<a id>` at its
//! end: mdBook's sidebar takes a heading's first child as its link), paired by position with the English page's headings: both
//! editions come from the same Markdown, so a page has the same headings,
//! in the same order and at the same levels, in both. A page where they
//! differ is left alone (and `check-book-browser` reports its links).
//!
//! [`heading_id`] makes the same ids from the Markdown, for the checks that
//! read the sources rather than a built book.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::book_html;

/// Adds the English heading ids to every page of the translated edition in
/// `site/<language>/`; returns how many ids it added and how many pages
/// could not be paired.
pub fn keep_english_ids(site: &Path, language: &str) -> Result<(usize, Vec<String>)> {
    let mut added = 0;
    let mut unpaired = Vec::new();
    let translated = site.join(language);
    for english in crate::anchors::files_with_ext(site, "html")? {
        let rel = english.strip_prefix(site).unwrap_or(&english);
        // print.html repeats every chapter with ids of its own making.
        if rel.starts_with(language) || rel == Path::new("print.html") {
            continue;
        }
        let page = translated.join(rel);
        let Ok(html) = std::fs::read_to_string(&page) else {
            continue;
        };
        let english = std::fs::read_to_string(&english)
            .with_context(|| format!("cannot read {}", english.display()))?;
        match with_english_ids(&english, &html) {
            Some((html, n)) if n > 0 => {
                std::fs::write(&page, html)
                    .with_context(|| format!("cannot write {}", page.display()))?;
                added += n;
            }
            Some(_) => {}
            None => unpaired.push(rel.display().to_string()),
        }
    }
    Ok((added, unpaired))
}

/// `translated` with an `<a id="ENGLISH"></a>` at the end of each heading
/// whose id differs from the English page's heading at the same position,
/// and how many it added; `None` when the two pages' headings differ in
/// number or level, so no pairing can be trusted.
fn with_english_ids(english: &str, translated: &str) -> Option<(String, usize)> {
    let en = headings(english);
    let pt = headings(translated);
    let levels = |h: &[(String, String, usize)]| -> Vec<String> {
        h.iter().map(|(level, _, _)| level.clone()).collect()
    };
    if levels(&en) != levels(&pt) {
        return None;
    }
    let taken: BTreeSet<String> = book_html::ids(translated);
    let mut out = translated.to_string();
    let mut added = 0;
    // From the end, so each insertion leaves the earlier offsets valid.
    for ((_, en_id, _), (_, pt_id, end)) in en.iter().zip(&pt).rev() {
        if en_id == pt_id || en_id.is_empty() || taken.contains(en_id) {
            continue;
        }
        let id: String = en_id
            .chars()
            .filter(|c| !matches!(c, '"' | '<' | '>' | '&'))
            .collect();
        out.insert_str(*end, &format!("<a id=\"{id}\"></a>"));
        added += 1;
    }
    Some((out, added))
}

/// The headings with an id: level (`h2`), id, and the offset of the
/// heading's end tag.
fn headings(html: &str) -> Vec<(String, String, usize)> {
    book_html::tags(html)
        .into_iter()
        .filter(|t| matches!(t.name.as_str(), "h1" | "h2" | "h3" | "h4" | "h5" | "h6"))
        .filter_map(|t| {
            let id = t.attr("id")?.to_string();
            let end = html[t.at..]
                .find(&format!("</{}", t.name))
                .map(|p| t.at + p)?;
            Some((t.name, id, end))
        })
        .collect()
}

/// The lines of a Markdown page outside fenced code blocks, numbered from
/// 1: a `#` or a `>` inside a block of code is code, not a heading or a
/// quote.
pub fn prose_lines(markdown: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fence: Option<&str> = None;
    markdown.lines().enumerate().filter_map(move |(i, line)| {
        let trimmed = line.trim_start();
        let mark = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, mark) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => return Some((i + 1, line)),
            _ => {}
        }
        None
    })
}

/// The ids mdBook gives the headings of a Markdown page, in order: each
/// from the heading's text (see [`heading_id`]), a repeated one with `-1`,
/// `-2`… appended, as mdBook makes them unique. What a link to `#id` of
/// the English page must name.
pub fn markdown_heading_ids(markdown: &str) -> Vec<String> {
    let mut used = BTreeSet::new();
    prose_lines(markdown)
        .filter_map(|(_, line)| {
            let hashes = line.len() - line.trim_start_matches('#').len();
            let text = line[hashes..].strip_prefix(' ')?;
            (1..=6).contains(&hashes).then(|| heading_id(text))
        })
        .map(|id| {
            let mut unique = id.clone();
            let mut n = 0;
            while !used.insert(unique.clone()) {
                n += 1;
                unique = format!("{id}-{n}");
            }
            unique
        })
        .collect()
}

/// The id mdBook (0.5) makes from a heading's Markdown text: the text as
/// rendered (no backticks or emphasis, a link's text without its target),
/// lower case, letters, digits, `_` and `-` kept, each space a `-`, every
/// other character dropped. "`start`: the shim, in a session of its own"
/// is `start-the-shim-in-a-session-of-its-own`.
pub fn heading_id(markdown: &str) -> String {
    // A closing run of `#`s, after a space, is not part of the text.
    let text = markdown.trim();
    let open = text.trim_end_matches('#');
    let text = if open.is_empty() || open.ends_with(' ') {
        open
    } else {
        text
    };
    let mut rendered = String::new();
    let mut rest = text;
    // `[text](target)`: keep the text, drop the target.
    while let Some(open) = rest.find("](") {
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        rendered.push_str(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    rendered.push_str(rest);
    rendered
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = r##"<h1 id="step-1">Step 1</h1><h2 id="the-idea"><a href="#the-idea">The idea</a></h2><h2 id="exercise">Exercise</h2>"##;
    const PT: &str = r##"<h1 id="passo-1">Passo 1</h1><h2 id="a-ideia"><a href="#a-ideia">A ideia</a></h2><h2 id="exercise">Exercise</h2>"##;

    #[test]
    fn translated_headings_get_their_english_ids() {
        let (html, n) = with_english_ids(EN, PT).unwrap();
        assert_eq!(n, 2);
        assert!(
            html.contains(r#"<h1 id="passo-1">Passo 1<a id="step-1"></a></h1>"#),
            "{html}"
        );
        assert!(
            html.contains(r##"<a href="#a-ideia">A ideia</a><a id="the-idea"></a></h2>"##),
            "{html}"
        );
        assert_eq!(html.matches("id=\"exercise\"").count(), 1, "{html}");
        assert!(book_html::ids(&html).contains("the-idea"));
    }

    #[test]
    fn pages_whose_headings_differ_are_left_alone() {
        assert!(with_english_ids(EN, r#"<h1 id="passo-1">Passo 1</h1>"#).is_none());
        let other_level = PT.replace("<h2 id=\"a-ideia\"", "<h3 id=\"a-ideia\"");
        assert!(with_english_ids(EN, &other_level).is_none());
    }

    #[test]
    fn an_id_the_page_already_has_is_not_added_twice() {
        let pt = r#"<h1 id="passo-1">x</h1><h2 id="step-1">y</h2><h2 id="exercise">z</h2>"#;
        let (html, n) = with_english_ids(EN, pt).unwrap();
        assert_eq!(n, 1);
        assert_eq!(html.matches("id=\"step-1\"").count(), 1);
    }

    #[test]
    fn heading_ids_are_made_as_mdbook_makes_them() {
        assert_eq!(
            heading_id("`start`: the shim, in a session of its own"),
            "start-the-shim-in-a-session-of-its-own"
        );
        assert_eq!(
            heading_id("Owners shifted into the container's range"),
            "owners-shifted-into-the-containers-range"
        );
        assert_eq!(
            heading_id("setgroups \"deny\" (CVE-2014-8989)"),
            "setgroups-deny-cve-2014-8989"
        );
        assert_eq!(
            heading_id("Hooks: [runc's](https://x.y/z) way"),
            "hooks-runcs-way"
        );
        assert_eq!(heading_id("A ideia: `exec_in` ##"), "a-ideia-exec_in");
        assert_eq!(heading_id("Exercício"), "exercício");
        assert_eq!(heading_id("C#"), "c");
    }

    #[test]
    fn a_page_s_heading_ids_skip_code_and_are_unique() {
        let page =
            "# Step 1\n\n## Run it\n\n```console\n# not a heading\n```\n\n### Run it\n#nospace\n";
        assert_eq!(markdown_heading_ids(page), ["step-1", "run-it", "run-it-1"]);
    }
}
