//! `.dockerignore`: which files of the context the client does not send.
//!
//! One pattern a line, matched against the path relative to the context
//! (`*` any run of characters within a name, `?` one character, `**` any
//! number of directories); `!` re-includes what an earlier line excluded;
//! the last matching line decides; a pattern that matches a directory
//! excludes everything under it. The same matcher serves COPY's
//! wildcards (`COPY *.html /srv/`).

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    /// (excluding?, the pattern's names).
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Reads the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_prefix('!') {
                Some(p) => (false, names(p.trim())),
                None => (true, names(l)),
            })
            .filter(|(_, n)| !n.is_empty())
            .collect();
        Ignore { patterns }
    }

    /// Whether `path` (relative, `/`-separated) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let parts = names(path);
        let mut excluded = false;
        for (excluding, pattern) in &self.patterns {
            // The path itself, or a directory above it, matches.
            if (1..=parts.len()).any(|n| matches(pattern, &parts[..n])) {
                excluded = *excluding;
            }
        }
        excluded
    }
}

fn names(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|n| !n.is_empty() && *n != ".")
        .map(String::from)
        .collect()
}

/// Whether the pattern's names match the path's names.
pub fn matches(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, after)) => glob(first.as_bytes(), name.as_bytes()) && matches(rest, after),
            None => false,
        },
    }
}

/// One name against one pattern name (`*`, `?`).
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

/// Whether a name has a wildcard in it.
pub fn has_wildcard(path: &str) -> bool {
    path.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let ignore = Ignore::parse("# comment\n*.log\nsecret/\n**/tmp\n!keep.log\n");
        assert!(ignore.excludes("a.log"));
        assert!(!ignore.excludes("keep.log"));
        assert!(ignore.excludes("secret/key"));
        assert!(ignore.excludes("x/y/tmp/z"));
        assert!(!ignore.excludes("dir/a.log"));
        assert!(!ignore.excludes("index.html"));
    }
}
