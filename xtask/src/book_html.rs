//! `book_html`: what `check-book-browser` reads in a page of the built
//! book, without a browser: the links it makes, the ids it offers as
//! anchors, its code blocks and the text of its `<main>`.
//!
//! mdBook writes regular HTML (quoted attributes, one `<main>` per page),
//! and Chromium's `--dump-dom` serializes the DOM the same way, so a small
//! tag scanner reads both; a full HTML parser would be one more dependency
//! for a page whose shape we control. It skips comments and the bodies of
//! `<script>` and `<style>`, whose `<` and quotes are not markup.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// One start tag: its lower-case name, its attributes (values with their
/// entities decoded), and where it starts in the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// `a`, `pre`, `h2`, …
    pub name: String,
    /// `(name, value)` in the page's order; a bare attribute has "".
    pub attrs: Vec<(String, String)>,
    /// The byte offset of its `<`.
    pub at: usize,
}

impl Tag {
    /// The value of attribute `name`, if the tag has it.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every start tag of `html`, in order; end tags, comments, doctypes and
/// what `<script>` and `<style>` hold are skipped.
pub fn tags(html: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(rel) = html[i..].find('<') {
        let at = i + rel;
        let rest = &html[at..];
        if rest.starts_with("<!--") {
            i = rest.find("-->").map_or(html.len(), |end| at + end + 3);
            continue;
        }
        let Some(first) = rest[1..].chars().next() else {
            break;
        };
        if !first.is_ascii_alphabetic() {
            // `</end>`, `<!DOCTYPE>`, or a `<` in text.
            i = at + 1;
            continue;
        }
        let (tag, end) = start_tag(html, at);
        i = end;
        if tag.name == "script" || tag.name == "style" {
            let close = format!("</{}", tag.name);
            i = find_ascii_ci(&html[end..], &close).map_or(html.len(), |p| end + p);
        }
        out.push(tag);
    }
    out
}

/// Reads the start tag at `at` (which holds `<` and a letter); returns it
/// and the offset just past its `>`.
fn start_tag(html: &str, at: usize) -> (Tag, usize) {
    let bytes = html.as_bytes();
    let mut i = at + 1;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && !b" \t\r\n/>=".contains(&bytes[*i]) {
            *i += 1;
        }
        html[start..*i].to_ascii_lowercase()
    };
    let skip_space = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let name = word(&mut i);
    let mut attrs = Vec::new();
    loop {
        skip_space(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b'>') => {
                i += 1;
                break;
            }
            Some(b'/') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let attr = word(&mut i);
        skip_space(&mut i);
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            skip_space(&mut i);
            let raw = match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = html[start..]
                        .find(q as char)
                        .map_or(html.len(), |p| start + p);
                    i = (end + 1).min(html.len());
                    &html[start..end]
                }
                _ => {
                    let start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    &html[start..i]
                }
            };
            value = decode_entities(raw);
        }
        if attr.is_empty() {
            // A stray `=` or quote: step over it rather than loop.
            i += 1;
        } else {
            attrs.push((attr, value));
        }
    }
    (Tag { name, attrs, at }, i)
}

/// `needle` (ASCII) in `hay`, ignoring ASCII case.
fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// The character references mdBook and Chromium write: the five named
/// ones, `&nbsp;`, and numeric ones. Anything else is kept as it is.
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `%XX` escapes of a URL's path or fragment, as bytes, read as UTF-8.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `id` in the page: what a `#fragment` may name.
pub fn ids(html: &str) -> BTreeSet<String> {
    tags(html)
        .into_iter()
        .filter_map(|t| t.attr("id").map(str::to_string))
        .filter(|id| !id.is_empty())
        .collect()
}

/// A link the page makes to a file of the book: `href` of `<a>` and
/// `<link>`, `src` of `<img>`, `<script>`, `<iframe>`, … .
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The attribute as written (entities decoded): what the report shows.
    pub raw: String,
    /// The file, relative to the page's folder, percent-decoded; empty for
    /// the page itself (`#top`).
    pub path: String,
    /// The anchor after `#`, percent-decoded; `None` without one.
    pub fragment: Option<String>,
}

/// The page's relative links; links with a scheme (`https:`, `mailto:`,
/// `data:`, …) or to another host (`//…`) are not the book's to check.
pub fn links(html: &str) -> Vec<Link> {
    tags(html)
        .iter()
        .flat_map(|t| ["href", "src"].into_iter().filter_map(|a| t.attr(a)))
        .filter_map(relative_link)
        .collect()
}

/// Splits a relative URL into file and fragment; `None` for an absolute one.
fn relative_link(raw: &str) -> Option<Link> {
    let raw = raw.trim();
    if raw.starts_with("//") || raw.starts_with('/') {
        return None;
    }
    // A scheme is letters (and `+ - .`) before the first `:`, ahead of any
    // `/ ? #` (RFC 3986, 3.1).
    let head_end = raw.find(['/', '?', '#']).unwrap_or(raw.len());
    if raw[..head_end].contains(':') {
        return None;
    }
    let (before, fragment) = match raw.split_once('#') {
        Some((b, f)) => (b, Some(percent_decode(f))),
        None => (raw, None),
    };
    let path = before.split('?').next().unwrap_or_default();
    Some(Link {
        raw: raw.to_string(),
        path: percent_decode(path),
        fragment,
    })
}

/// Where `link`, made by the page at `page` (relative to the site's root),
/// leads: the file relative to the root, or `None` when it climbs out of
/// the site. A folder means its `index.html`; the caller checks existence.
pub fn resolve(page: &Path, link: &Link) -> Option<PathBuf> {
    if link.path.is_empty() {
        return Some(page.to_path_buf());
    }
    let mut out = PathBuf::new();
    let base = page.parent().unwrap_or(Path::new(""));
    for part in base.join(&link.path).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if link.path.ends_with('/') || out.as_os_str().is_empty() {
        out.push("index.html");
    }
    Some(out)
}

/// Every code block (`<pre>` holding a `<code>`) with no text in it, as
/// the id of the heading it follows (`""` before the first heading): an
/// include whose file or anchor went missing renders as such a block.
pub fn empty_code_blocks(html: &str) -> Vec<String> {
    let all = tags(html);
    let mut out = Vec::new();
    let mut heading = String::new();
    for (n, tag) in all.iter().enumerate() {
        if is_heading(&tag.name) {
            heading = tag.attr("id").unwrap_or_default().to_string();
        }
        if tag.name != "code" || n == 0 || all[n - 1].name != "pre" {
            continue;
        }
        let start = html[tag.at..]
            .find('>')
            .map_or(html.len(), |p| tag.at + p + 1);
        let end = find_ascii_ci(&html[start..], "</code").map_or(html.len(), |p| start + p);
        if text(&html[start..end]).is_empty() {
            out.push(heading.clone());
        }
    }
    out
}

fn is_heading(name: &str) -> bool {
    matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
}

/// mdBook directives (`{{#include …}}`, `{{#rustdoc_include …}}`,
/// `{{#title …}}`) still in the page: each is one the `links`
/// preprocessor did not resolve, or a translation brought in after it ran.
pub fn unresolved_directives(html: &str) -> Vec<String> {
    html.match_indices("{{#")
        .map(|(at, _)| {
            let rest = &html[at..];
            let end = rest.find("}}").map_or(rest.len().min(80), |p| p + 2);
            rest[..end].chars().take(120).collect()
        })
        .collect()
}

/// What `<main>` holds, as text (tags dropped, entities decoded, white
/// space collapsed); `None` when the page has no `<main>`.
pub fn main_text(html: &str) -> Option<String> {
    let open = tags(html).into_iter().find(|t| t.name == "main")?;
    let start = html[open.at..]
        .find('>')
        .map_or(html.len(), |p| open.at + p + 1);
    let end = find_ascii_ci(&html[start..], "</main").map_or(html.len(), |p| start + p);
    Some(text(&html[start..end]))
}

/// The text of the element `tag` starts, up to its end tag (elements of
/// the same name nested in it are not expected: `<a>`, `<h1>`, `<main>`).
pub fn element_text(html: &str, tag: &Tag) -> String {
    let start = html[tag.at..]
        .find('>')
        .map_or(html.len(), |p| tag.at + p + 1);
    let close = format!("</{}", tag.name);
    let end = find_ascii_ci(&html[start..], &close).map_or(html.len(), |p| start + p);
    text(&html[start..end])
}

/// The text of the first `<h1>` in `<main>` (the page's title, not the
/// book's in the menu bar), if the page has one.
pub fn first_h1(html: &str) -> Option<String> {
    let all = tags(html);
    let main = all.iter().position(|t| t.name == "main")?;
    let open = all[main..].iter().find(|t| t.name == "h1")?;
    Some(element_text(html, open))
}

/// The text of an HTML fragment: tags and comments dropped, entities
/// decoded, runs of white space (and no-break spaces) made one space.
pub fn text(fragment: &str) -> String {
    let mut plain = String::with_capacity(fragment.len());
    let mut rest = fragment;
    while let Some(p) = rest.find('<') {
        plain.push_str(&rest[..p]);
        plain.push(' ');
        rest = &rest[p..];
        let end = if rest.starts_with("<!--") {
            rest.find("-->").map_or(rest.len(), |e| e + 3)
        } else {
            rest.find('>').map_or(rest.len(), |e| e + 1)
        };
        rest = &rest[end..];
    }
    plain.push_str(rest);
    decode_entities(&plain)
        .split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `lang` of the page's `<html>`.
pub fn html_lang(html: &str) -> Option<String> {
    tags(html)
        .into_iter()
        .find(|t| t.name == "html")
        .and_then(|t| t.attr("lang").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_read_quoted_bare_and_entity_attributes() {
        let t = tags(r##"<p>x</p><a class=header href="a.html?x=1&amp;y=2#b" hidden>"##);
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].name, "a");
        assert_eq!(t[1].attr("class"), Some("header"));
        assert_eq!(t[1].attr("href"), Some("a.html?x=1&y=2#b"));
        assert_eq!(t[1].attr("hidden"), Some(""));
    }

    #[test]
    fn scripts_styles_and_comments_hold_no_links() {
        let html = r#"<script>var s = '<a href="gone.html">';</script>
<style>a[href="x.html"]{}</style><!-- <a href="old.html"> --><a href="kept.html">"#;
        let l = links(html);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].path, "kept.html");
    }

    #[test]
    fn links_split_path_and_fragment_and_skip_other_sites() {
        let html = r##"<a href="step1-pid.html#the-idea"><a href="#run-it">
<a href="https://man7.org/x.html"><a href="mailto:a@b"><a href="//cdn/x.js">
<img src="images/map%20one.svg"><link href="css/general.css">"##;
        let l = links(html);
        let got: Vec<(&str, Option<&str>)> = l
            .iter()
            .map(|l| (l.path.as_str(), l.fragment.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("step1-pid.html", Some("the-idea")),
                ("", Some("run-it")),
                ("images/map one.svg", None),
                ("css/general.css", None),
            ]
        );
    }

    #[test]
    fn links_resolve_against_the_pages_folder() {
        let link = |raw: &str| relative_link(raw).unwrap();
        let page = Path::new("pt-BR/instructor/plans.html");
        assert_eq!(
            resolve(page, &link("../step1-pid.html#x")),
            Some(PathBuf::from("pt-BR/step1-pid.html"))
        );
        assert_eq!(resolve(page, &link("#top")), Some(page.to_path_buf()));
        assert_eq!(
            resolve(page, &link("./")),
            Some(PathBuf::from("pt-BR/instructor/index.html"))
        );
        assert_eq!(resolve(page, &link("../../../etc/passwd")), None);
    }

    #[test]
    fn ids_are_every_id_attribute() {
        let ids = ids(
            r##"<h2 id="the-idea"><a class="header" href="#the-idea">The idea</a></h2>
<div id=plain></div><p id="">"##,
        );
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["plain", "the-idea"].map(String::from)
        );
    }

    #[test]
    fn an_empty_code_block_is_found_under_its_heading() {
        let html = r#"<h2 id="the-code">The code</h2>
<pre><code class="language-rust">fn main() {}</code></pre>
<h2 id="run-it">Run it</h2><pre><code class="language-console">
</code></pre><p>An inline <code></code> is not a block.</p>
<pre><code><span class="boring"> </span></code></pre>"#;
        assert_eq!(empty_code_blocks(html), ["run-it", "run-it"]);
    }

    #[test]
    fn an_unresolved_include_is_found() {
        let html = "<pre><code>{{#include ../../src/gone.rs:plan}}\n</code></pre><p>{{ x }}</p>";
        assert_eq!(
            unresolved_directives(html),
            ["{{#include ../../src/gone.rs:plan}}"]
        );
        assert!(unresolved_directives("<p>{{ not mdbook }}</p>").is_empty());
    }

    #[test]
    fn main_text_is_the_words_of_main() {
        let html = "<html lang=\"pt-BR\"><h1 class=\"menu-title\">Livro</h1><main>\n<h1 id=\"a\">Passo&nbsp;1 &amp; <em>mais</em></h1>\n<p>x</p></main><nav>n</nav>";
        assert_eq!(main_text(html).as_deref(), Some("Passo 1 & mais x"));
        assert_eq!(first_h1(html).as_deref(), Some("Passo 1 & mais"));
        assert_eq!(html_lang(html).as_deref(), Some("pt-BR"));
        assert_eq!(main_text("<body><p>no main</p></body>"), None);
        assert_eq!(main_text("<main>\n  </main>").as_deref(), Some(""));
    }

    #[test]
    fn entities_and_percent_escapes_decode() {
        assert_eq!(
            decode_entities("a&amp;b&#39;c&#x41;&bogus;&"),
            "a&b'cA&bogus;&"
        );
        assert_eq!(percent_decode("cont%C3%AAiner%2"), "contêiner%2");
    }
}
