//! `check-book-browser`: the built book, both editions, read the way a
//! learner reads it, in a real browser.
//!
//! `mdbook build` succeeding says little about the pages it wrote: a link
//! to a renamed chapter or a heading whose anchor changed, an include whose
//! file moved, a code block left empty by a missing anchor, a script error
//! in the language switch, all build clean. This check reads every page of
//! `book/book/` (English) and `book/book/pt-BR/` (Brazilian Portuguese):
//!
//! 1. in the HTML mdBook wrote, every relative link (`href`, `src`) leads
//!    to a file of the site, and its `#anchor` to an id in that page; no
//!    `{{#include …}}` is left unresolved; no `<pre><code>` is empty;
//! 2. in headless Chromium (Debian's `chromium`), every page loads, its
//!    scripts run without an uncaught error, and the DOM they leave has the
//!    page's `<main>` with its heading and its text, and a sidebar whose
//!    entries for the page's headings have text; a screenshot of each
//!    page goes to `<target>/book-screens/<edition>/<page>.png`, CI's
//!    artefact to look at;
//! 3. in that rendered DOM, the language switch
//!    (`book/i18n/language-switch.js`) is there on every page and points to
//!    the same page in the other edition, a file that exists; both
//!    editions' first step chapter are also copied to
//!    `book-screens/language-switch-{en,pt-BR}.png`.
//!
//! mdBook's own pages are left out where they cannot be read as a chapter:
//! `print.html` (every chapter again, its links rewritten), `404.html`
//! (its links are absolute, from the web server's root) and, in the
//! browser, `toc.html` (the sidebar's fallback when scripts are off; its
//! links are still checked).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::book_html;
use crate::book_site::{self, EDITIONS, Page, SITE};

/// The browser's program, as Debian installs it.
pub const PROGRAM: &str = "chromium";
/// Its Debian package: `.ci/packages.txt` must list it (`check-lab`).
pub const PACKAGE: &str = "chromium";

/// Browsers at once: each is several processes, and the machine CI and
/// the lab use has two cores.
const WORKERS: usize = 2;
/// A page that has not loaded by then will not.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The page whose switch is photographed in each edition.
const SWITCH_PAGE: &str = "step1-pid.html";

/// `cargo xtask check-book-browser`: builds both editions (unless `build`
/// is false: they were just built), then checks them.
pub fn run(root: &Path, build: bool) -> Result<()> {
    if build {
        crate::book::run(root, crate::book::Catalog::Keep, false)?;
    }
    check(root)
}

/// The checks on an already built site; every problem is one line.
pub fn check(root: &Path) -> Result<()> {
    println!("\n==> check-book-browser: both editions of {SITE}/ in headless {PROGRAM}");
    let started = Instant::now();
    let site = root.join(SITE);
    let pages = book_site::pages(&site)?;
    if pages.is_empty() {
        bail!(
            "{SITE}/ has no page: build the book first (`cargo xtask book --no-update`, or \
             `cargo xtask check-book-browser` without --no-build)"
        );
    }
    // One line, not one per page, when there is no browser.
    let version = Command::new(PROGRAM).arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("cannot run {PROGRAM}: sudo apt-get install {PACKAGE} (.ci/packages.txt lists it)");
    }
    let mut problems = Vec::new();
    let mut links = 0;
    for page in &pages {
        links += book_site::check_html(&site, page, &mut problems)?;
    }

    let screens = crate::book::target_dir(root).join("book-screens");
    if screens.exists() {
        std::fs::remove_dir_all(&screens)
            .with_context(|| format!("cannot empty {}", screens.display()))?;
    }
    let in_browser: Vec<&Page> = pages
        .iter()
        .filter(|p| p.rel != Path::new("toc.html"))
        .collect();
    let rendered = render_all(&site, &screens, &in_browser)?;
    for (page, result) in in_browser.iter().zip(&rendered) {
        match result {
            Ok(dom) => check_dom(&site, page, dom, &mut problems)?,
            Err(why) => problems.push(format!(
                "{}: {why}; open it in a browser to see why",
                page.shown()
            )),
        }
    }
    for edition in EDITIONS {
        let from = screens
            .join(edition.lang)
            .join(SWITCH_PAGE)
            .with_extension("png");
        let to = screens.join(format!("language-switch-{}.png", edition.lang));
        if let Err(e) = std::fs::copy(&from, &to) {
            problems.push(format!(
                "{}: no screenshot of the language switch ({e}); {PROGRAM} wrote none",
                from.display()
            ));
        }
    }

    for p in &problems {
        println!("{p}");
    }
    let summary = format!(
        "check-book-browser: {} pages of {} editions, {links} links, {} rendered in {PROGRAM}, \
         {} problems, in {:.0?}; screenshots in {}",
        pages.len(),
        EDITIONS.len(),
        in_browser.len(),
        problems.len(),
        started.elapsed(),
        screens.display()
    );
    if !problems.is_empty() {
        bail!("{summary}");
    }
    println!("{summary}");
    Ok(())
}

/// Loads every page in the browser, `WORKERS` at a time; each result is
/// the DOM after the page's scripts ran, or why there is none.
fn render_all(
    site: &Path,
    screens: &Path,
    pages: &[&Page],
) -> Result<Vec<std::result::Result<String, String>>> {
    let scratch = screens.join(".profiles");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<std::result::Result<String, String>>>> =
        Mutex::new(vec![None; pages.len()]);
    std::thread::scope(|s| {
        for worker in 0..WORKERS {
            let (next, results, scratch) = (&next, &results, &scratch);
            s.spawn(move || {
                let profile = scratch.join(worker.to_string());
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some(page) = pages.get(n) else { break };
                    let shot = screens
                        .join(page.edition.lang)
                        .join(&page.rel)
                        .with_extension("png");
                    let result = render(&site.join(&page.site_rel), &shot, &profile);
                    if let Ok(mut all) = results.lock() {
                        all[n] = Some(result);
                    }
                }
            });
        }
    });
    // The profiles are the browser's scratch, not the artefact.
    let _ = std::fs::remove_dir_all(&scratch);
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a browser worker panicked"))?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("was never rendered".to_string())))
        .collect())
}

/// Opens `file` in headless Chromium once: writes its screenshot to `shot`
/// and returns the DOM its scripts left, or why it could not.
fn render(file: &Path, shot: &Path, profile: &Path) -> std::result::Result<String, String> {
    let folder = shot.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .and_then(|()| std::fs::create_dir_all(profile))
        .map_err(|e| format!("cannot create {} ({e})", folder.display()))?;
    let out_path = profile.join("dom.html");
    let err_path = profile.join("stderr.txt");
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut child = Command::new(PROGRAM)
        .arg("--headless=new")
        // CI and the graders run as root, and Chromium refuses to start as
        // root inside its own sandbox; the pages are our own files.
        .arg("--no-sandbox")
        .arg("--disable-gpu")
        .arg("--hide-scrollbars")
        .arg("--no-first-run")
        // A profile per worker: two browsers must not share one.
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        // The page's console on stderr: an uncaught script error shows there.
        .arg("--enable-logging=stderr")
        .arg("--v=0")
        .arg("--window-size=1280,2000")
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(file_url(file))
        .stdin(Stdio::null())
        .stdout(open(&out_path)?)
        .stderr(open(&err_path)?)
        .spawn()
        .map_err(|e| format!("cannot run {PROGRAM} ({e}): sudo apt-get install {PACKAGE}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PAGE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{PROGRAM} did not finish loading it in {PAGE_TIMEOUT:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot wait for {PROGRAM}: {e}")),
        }
    };
    let dom = std::fs::read_to_string(&out_path).unwrap_or_default();
    let log = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        let last = log
            .lines()
            .rev()
            .find(|l| !l.contains("dbus"))
            .unwrap_or("");
        return Err(format!("{PROGRAM} failed ({status}): {last}"));
    }
    let errors = script_errors(&log);
    if !errors.is_empty() {
        return Err(format!(
            "a script failed in the browser: {}",
            errors.join("; ")
        ));
    }
    if !shot.is_file() {
        return Err(format!("{PROGRAM} wrote no screenshot {}", shot.display()));
    }
    Ok(dom)
}

/// `file://` and the path, percent-encoded where a URL needs it (a space,
/// `#`, `?`, `%`, anything not ASCII).
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(b) {
            url.push(char::from(*b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The uncaught script errors among Chromium's console lines, such as
/// `…:INFO:CONSOLE:12] "Uncaught TypeError: …", source: file:///… (12)`.
fn script_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") && l.contains("Uncaught"))
        .map(|l| l.split_once("] ").map_or(l, |(_, m)| m).to_string())
        .collect()
}

/// The checks on the DOM a page's scripts left: the page is there, in the
/// right language, with a language switch to the same page in the other
/// edition.
fn check_dom(site: &Path, page: &Page, dom: &str, problems: &mut Vec<String>) -> Result<()> {
    let path = site.join(&page.site_rel);
    let html = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let shown = page.shown();
    let written = book_html::main_text(&html).unwrap_or_default();
    match book_html::main_text(dom) {
        None => problems.push(format!(
            "{shown}: the rendered page has no <main>; most likely a script replaced the \
             page (book/theme/ or book/i18n/): open it in a browser"
        )),
        Some(text) if text.is_empty() || text.len() < written.len() * 9 / 10 => {
            problems.push(format!(
                "{shown}: the rendered <main> has {} characters of text where the page has {}; \
                 a script removed the content: open it in a browser",
                text.len(),
                written.len()
            ))
        }
        Some(text) => {
            let h1 = book_html::first_h1(&html).unwrap_or_default();
            if !text.contains(&h1) {
                problems.push(format!(
                    "{shown}: the rendered page lacks its heading \"{h1}\": open it in a browser"
                ));
            }
        }
    }
    // mdBook's script lists the page's headings in the sidebar, each as a
    // copy of the heading's first child: an empty entry is a heading whose
    // first child is not its link.
    let empty = book_html::tags(dom)
        .into_iter()
        .filter(|t| {
            t.attr("class")
                .is_some_and(|c| c.contains("header-in-summary"))
        })
        .filter(|t| book_html::element_text(dom, t).is_empty())
        .count();
    if empty > 0 {
        problems.push(format!(
            "{shown}: {empty} of the sidebar's entries for this page's headings are empty; a \
             heading's first child is not its `<a class=\"header\">` (xtask/src/book_ids.rs \
             or a theme change?)"
        ));
    }
    let lang = book_html::html_lang(dom).unwrap_or_default();
    if lang != page.edition.lang {
        problems.push(format!(
            "{shown}: the rendered page says lang=\"{lang}\", not \"{}\": the {} edition was \
             built without its book.language (`cargo xtask book` sets it)",
            page.edition.lang, page.edition.lang
        ));
    }
    check_switch(site, page, dom, problems);
    Ok(())
}

/// The language switch in the rendered DOM: there, and leading to the same
/// page of the other edition, which exists.
fn check_switch(site: &Path, page: &Page, dom: &str, problems: &mut Vec<String>) {
    let shown = page.shown();
    let switch = book_html::tags(dom).into_iter().find(|t| {
        t.name == "a"
            && t.attr("class")
                .is_some_and(|c| c.contains("language-switch"))
    });
    let Some(switch) = switch else {
        problems.push(format!(
            "{shown}: no language switch in the rendered page; book/i18n/language-switch.js \
             did not run or found no `.menu-bar .right-buttons` (book.toml's additional-js \
             lists it)"
        ));
        return;
    };
    let href = switch.attr("href").unwrap_or_default();
    let expected = site.join(page.other_edition());
    let leads_to = href.strip_prefix("file://").map(|p| {
        PathBuf::from(book_html::percent_decode(
            p.split(['#', '?']).next().unwrap_or(p),
        ))
    });
    if leads_to.as_deref() != Some(expected.as_path()) {
        problems.push(format!(
            "{shown}: the language switch leads to \"{href}\", not to {}; fix \
             book/i18n/language-switch.js",
            expected.display()
        ));
    } else if !expected.is_file() {
        problems.push(format!(
            "{shown}: the language switch leads to {}, which does not exist; the other \
             edition lacks the page (`cargo xtask book` builds both)",
            expected.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/a b/contêiner#1.html")),
            "file:///a%20b/cont%C3%AAiner%231.html"
        );
        let back = book_html::percent_decode("/a%20b/cont%C3%AAiner%231.html");
        assert_eq!(back, "/a b/contêiner#1.html");
    }

    #[test]
    fn uncaught_errors_are_read_from_the_console_log() {
        let log = "[1:1:1203/121932.320872:WARNING:media/gpu/vaapi] drm\n\
[2:2:1203/121932.766445:INFO:CONSOLE:1] \"boom\", source: file:///t.html (1)\n\
[2:2:1203/121932.766653:INFO:CONSOLE:1] \"Uncaught ReferenceError: f is not defined\", source: file:///t.html (1)\n";
        assert_eq!(
            script_errors(log),
            ["\"Uncaught ReferenceError: f is not defined\", source: file:///t.html (1)"]
        );
    }

    #[test]
    fn a_switch_to_the_wrong_page_is_reported() {
        let site = Path::new("/nonexistent/site");
        let page = Page {
            edition: EDITIONS[0],
            rel: "step1-pid.html".into(),
            site_rel: "step1-pid.html".into(),
        };
        let mut problems = Vec::new();
        check_switch(
            site,
            &page,
            r#"<a class="language-switch" href="file:///nonexistent/site/pt-BR/index.html">"#,
            &mut problems,
        );
        assert!(
            problems[0].contains("not to /nonexistent/site/pt-BR/step1-pid.html"),
            "{problems:?}"
        );
        problems.clear();
        check_switch(site, &page, "<main></main>", &mut problems);
        assert!(problems[0].contains("no language switch"), "{problems:?}");
        problems.clear();
        check_switch(
            site,
            &page,
            r#"<a class="language-switch" href="file:///nonexistent/site/pt-BR/step1-pid.html">"#,
            &mut problems,
        );
        assert!(problems[0].contains("does not exist"), "{problems:?}");
    }
}
