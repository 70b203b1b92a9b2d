//! `book_site`: the book as `cargo xtask book` writes it, both editions
//! in one site, and the checks `check-book-browser` makes on the HTML
//! mdBook wrote, before any browser opens it: every relative link (a
//! figure's `src` too) leads to a file of the site and its `#anchor` to
//! an id in that page, no mdBook directive is left unresolved, no code
//! block is empty.
//!
//! Each problem names the Markdown to fix: `book/src/…` for the English
//! text, or the translation in `book/po/` when only the Portuguese page
//! has it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::book_html;

/// Where `cargo xtask book` writes the site (English at its root).
pub const SITE: &str = "book/book";

/// One edition of the book: where it is in the site, and its language.
#[derive(Debug, Clone, Copy)]
pub struct Edition {
    /// Its folder in the site ("" for English, at the root).
    pub dir: &'static str,
    /// `<html lang>` and the screenshots' folder.
    pub lang: &'static str,
}

/// Both editions: English at the site's root, the translation in the
/// folder the language switch expects.
pub const EDITIONS: [Edition; 2] = [
    Edition {
        dir: "",
        lang: "en",
    },
    Edition {
        dir: crate::book::LANGUAGE,
        lang: crate::book::LANGUAGE,
    },
];

/// One page of one edition: its path in the edition and in the site.
#[derive(Debug, Clone)]
pub struct Page {
    /// The edition it belongs to.
    pub edition: Edition,
    /// In the edition: `instructor/plans.html`.
    pub rel: PathBuf,
    /// In the site: `pt-BR/instructor/plans.html`.
    pub site_rel: PathBuf,
}

impl Page {
    /// The page's path as the report shows it, from the repository root.
    pub fn shown(&self) -> String {
        Path::new(SITE).join(&self.site_rel).display().to_string()
    }

    /// The same page in the other edition, relative to the site.
    pub fn other_edition(&self) -> PathBuf {
        if self.edition.dir.is_empty() {
            Path::new(crate::book::LANGUAGE).join(&self.rel)
        } else {
            self.rel.clone()
        }
    }
}

/// Every page of both editions, mdBook's `print.html` and `404.html` aside.
pub fn pages(site: &Path) -> Result<Vec<Page>> {
    let mut out = Vec::new();
    for edition in EDITIONS {
        let dir = site.join(edition.dir);
        for file in crate::anchors::files_with_ext(&dir, "html")? {
            let rel = file.strip_prefix(&dir).unwrap_or(&file).to_path_buf();
            // The English edition's folder holds the other edition's.
            if edition.dir.is_empty() && rel.starts_with(crate::book::LANGUAGE) {
                continue;
            }
            if rel == Path::new("print.html") || rel == Path::new("404.html") {
                continue;
            }
            let site_rel = Path::new(edition.dir).join(&rel);
            out.push(Page {
                edition,
                rel,
                site_rel,
            });
        }
    }
    Ok(out)
}

/// The checks on the HTML mdBook wrote; returns how many links it checked.
pub fn check_html(site: &Path, page: &Page, problems: &mut Vec<String>) -> Result<usize> {
    let path = site.join(&page.site_rel);
    let html = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let source = source_of(page);
    let mut ids_of: BTreeMap<PathBuf, Option<BTreeSet<String>>> = BTreeMap::new();
    let links = book_html::links(&html);
    for link in &links {
        let Some(target) = book_html::resolve(&page.site_rel, link) else {
            problems.push(format!(
                "{}: link \"{}\" leads out of the book; {source}",
                page.shown(),
                link.raw
            ));
            continue;
        };
        let mut file = site.join(&target);
        if file.is_dir() {
            file.push("index.html");
        }
        if !file.is_file() {
            problems.push(format!(
                "{}: link \"{}\": {} does not exist; {source}",
                page.shown(),
                link.raw,
                Path::new(SITE).join(&target).display()
            ));
            continue;
        }
        let Some(fragment) = link.fragment.as_deref().filter(|f| !f.is_empty()) else {
            continue;
        };
        if file.extension().is_none_or(|e| e != "html") {
            continue;
        }
        let ids = ids_of.entry(file.clone()).or_insert_with(|| {
            std::fs::read_to_string(&file)
                .ok()
                .map(|h| book_html::ids(&h))
        });
        if ids.as_ref().is_some_and(|ids| !ids.contains(fragment)) {
            problems.push(format!(
                "{}: link \"{}\": {} has no anchor #{fragment}; {source} (a heading's anchor is \
                 its text, lower-cased, spaces as dashes: see the heading's own link)",
                page.shown(),
                link.raw,
                Path::new(SITE).join(&target).display()
            ));
        }
    }
    for directive in book_html::unresolved_directives(&html) {
        problems.push(format!(
            "{}: \"{directive}\" was not resolved: its file or anchor is missing (`cargo xtask \
             check-anchors` says which), or a translation brought it in after mdBook's includes \
             ran; {source}",
            page.shown()
        ));
    }
    for heading in book_html::empty_code_blocks(&html) {
        problems.push(format!(
            "{}: an empty code block (under #{heading}); most likely an include whose anchor \
             holds nothing, or an empty fence; {source}",
            page.shown()
        ));
    }
    Ok(links.len())
}

/// Where a page's text comes from, and so where a problem is fixed.
fn source_of(page: &Page) -> String {
    let md = Path::new("book/src").join(page.rel.with_extension("md"));
    if page.edition.dir.is_empty() {
        format!("fix it in {}", md.display())
    } else {
        format!(
            "fix it in {} if the English page has it too, else in the translation of that \
             paragraph in book/po/{}.po",
            md.display(),
            crate::book::LANGUAGE
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_switches_to_the_same_page_of_the_other_edition() {
        let en = Page {
            edition: EDITIONS[0],
            rel: "instructor/plans.html".into(),
            site_rel: "instructor/plans.html".into(),
        };
        assert_eq!(en.other_edition(), Path::new("pt-BR/instructor/plans.html"));
        let pt = Page {
            edition: EDITIONS[1],
            rel: "step1-pid.html".into(),
            site_rel: "pt-BR/step1-pid.html".into(),
        };
        assert_eq!(pt.other_edition(), Path::new("step1-pid.html"));
        assert_eq!(pt.shown(), "book/book/pt-BR/step1-pid.html");
    }

    #[test]
    fn a_figure_whose_file_is_missing_is_a_problem() {
        // A translation points its figure to `images/NAME.pt-BR.svg`: a
        // file nobody drew must fail the check, not show a broken image.
        let site = std::env::temp_dir().join(format!("caixa-book-site-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&site);
        std::fs::create_dir_all(site.join("pt-BR/images")).unwrap();
        std::fs::write(site.join("pt-BR/images/map.svg"), "<svg/>").unwrap();
        let page = Page {
            edition: EDITIONS[1],
            rel: "map.html".into(),
            site_rel: "pt-BR/map.html".into(),
        };
        let write = |img: &str| {
            let html =
                format!(r#"<main><h1 id="a">A</h1><p><img src="{img}" alt="a map"></p></main>"#);
            std::fs::write(site.join("pt-BR/map.html"), html).unwrap();
        };
        let problems_with = |img: &str| {
            write(img);
            let mut problems = Vec::new();
            check_html(&site, &page, &mut problems).unwrap();
            problems
        };
        let present = problems_with("images/map.svg");
        let missing = problems_with("images/map.pt-BR.svg");
        std::fs::remove_dir_all(&site).unwrap();
        assert!(present.is_empty(), "{present:?}");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].contains("book/book/pt-BR/images/map.pt-BR.svg does not exist"),
            "{missing:?}"
        );
    }
}
