//! Who may pull and push which repository: the access file of the
//! registry's token mode (`--token-access FILE`).
//!
//! One rule a line, three words: a user, a repository pattern, actions.
//!
//! ```text
//! ana  team/*    pull,push
//! bob  team/app  pull
//! *    public/*  pull
//! ```
//!
//! A pattern is a repository name (`team/app`), a prefix ending in `/*`
//! (`team/*`: every repository under `team/`), or `*` alone (every one).
//! The user `*` is everyone, anonymous clients included; a user's rights
//! are the union of its own lines and the `*` lines. Nothing is allowed
//! that no line allows. A named user must be in the htpasswd file, so a
//! typo is an error at start, not a rule that never matches.

use std::collections::HashSet;
use std::path::Path;

use super::names::check_name;

/// The most rules a file may hold: it is read once, whole.
const MAX_RULES: usize = 10_000;

/// What may be done with a repository: the distribution spec's two actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Actions {
    /// Read: manifests, blobs, tags (`GET`, `HEAD`).
    pub(super) pull: bool,
    /// Write: uploads, manifests, deletes (`POST`, `PUT`, `PATCH`, `DELETE`).
    pub(super) push: bool,
}

impl Actions {
    /// Pull only.
    pub(super) const PULL: Actions = Actions {
        pull: true,
        push: false,
    };
    /// Pull and push: what a push needs (clients check blobs before they
    /// send them).
    pub(super) const PUSH: Actions = Actions {
        pull: true,
        push: true,
    };

    /// `pull`, `push`, `pull,push` (any order; `*` is both, as Docker's
    /// token servers read it); `None` for another word, so a typo is seen.
    pub(super) fn parse(text: &str) -> Option<Actions> {
        let mut actions = Actions::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "pull" => actions.pull = true,
                "push" => actions.push = true,
                "*" => actions = Actions::PUSH,
                _ => return None,
            }
        }
        Some(actions)
    }

    /// What both allow.
    pub(super) fn and(self, other: Actions) -> Actions {
        Actions {
            pull: self.pull && other.pull,
            push: self.push && other.push,
        }
    }

    /// What either allows.
    pub(super) fn or(self, other: Actions) -> Actions {
        Actions {
            pull: self.pull || other.pull,
            push: self.push || other.push,
        }
    }

    /// Whether every action of `needed` is here.
    pub(super) fn covers(self, needed: Actions) -> bool {
        (self.pull || !needed.pull) && (self.push || !needed.push)
    }

    /// Nothing allowed.
    pub(super) fn is_empty(self) -> bool {
        !self.pull && !self.push
    }

    /// The scope's spelling: `pull`, `push` or `pull,push`.
    pub(super) fn words(self) -> &'static str {
        match (self.pull, self.push) {
            (true, true) => "pull,push",
            (true, false) => "pull",
            (false, true) => "push",
            (false, false) => "",
        }
    }
}

/// One line of the file.
#[derive(Debug)]
struct Rule {
    /// A user of the htpasswd file, or `*` for everyone.
    user: String,
    /// A name, a `prefix/*`, or `*`.
    pattern: String,
    actions: Actions,
}

/// The rules of an access file.
#[derive(Debug)]
pub(super) struct AccessFile {
    rules: Vec<Rule>,
}

/// Why an access file is refused, with its line.
#[derive(Debug, thiserror::Error)]
pub(super) enum AccessError {
    /// The file cannot be read.
    #[error("cannot read the access file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A line is not `user pattern actions`.
    #[error("access file line {line}: {why} (a line is `USER REPOSITORY[/*] pull[,push]`)")]
    Line {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// More rules than [`MAX_RULES`].
    #[error("the access file has more than {MAX_RULES} rules")]
    TooMany,
}

impl AccessFile {
    /// Reads the access file at `path`; `users` are the htpasswd file's,
    /// the only names (besides `*`) a line may give.
    pub(super) fn read(path: &Path, users: &HashSet<String>) -> Result<AccessFile, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.display().to_string(),
            source,
        })?;
        AccessFile::parse(&text, users)
    }

    /// The rules of `text`; every line checked.
    fn parse(text: &str, users: &HashSet<String>) -> Result<AccessFile, AccessError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| AccessError::Line { line: i + 1, why };
            let words: Vec<&str> = line.split_whitespace().collect();
            let [user, pattern, actions] = words[..] else {
                return Err(bad(format!("{} words, not 3", words.len())));
            };
            if user != "*" && !users.contains(user) {
                return Err(bad(format!(
                    "user {user:?} is not in the htpasswd file (`*` is everyone)"
                )));
            }
            if pattern != "*" {
                let name = pattern.strip_suffix("/*").unwrap_or(pattern);
                check_name(name).map_err(|_| {
                    bad(format!(
                        "{pattern:?} is not a repository name, a name/*, or *"
                    ))
                })?;
            }
            let actions = Actions::parse(actions)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad(format!("{actions:?} is not pull, push or pull,push")))?;
            rules.push(Rule {
                user: user.to_string(),
                pattern: pattern.to_string(),
                actions,
            });
            if rules.len() > MAX_RULES {
                return Err(AccessError::TooMany);
            }
        }
        Ok(AccessFile { rules })
    }

    // ANCHOR: allowed
    /// What `user` (`None`: anonymous) may do with `repository`: the union
    /// of every line that names the user, or `*`, and matches the name.
    pub(super) fn allowed(&self, user: Option<&str>, repository: &str) -> Actions {
        self.rules
            .iter()
            .filter(|rule| rule.user == "*" || Some(rule.user.as_str()) == user)
            .filter(|rule| matches(&rule.pattern, repository))
            .fold(Actions::default(), |all, rule| all.or(rule.actions))
    }
    // ANCHOR_END: allowed
}

/// Whether `pattern` names `repository`: equal, `*`, or `prefix/*` with
/// the name under `prefix/` (`team/*` is not `teammate/x`).
fn matches(pattern: &str, repository: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => repository.starts_with(prefix) && repository.len() > prefix.len(),
        None => pattern == repository,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> HashSet<String> {
        ["ana", "bob"].into_iter().map(String::from).collect()
    }

    #[test]
    fn rights_are_the_union_of_the_users_lines_and_everyones() {
        let file = AccessFile::parse(
            "# team\nana team/* pull,push\nbob team/app pull\n* public/* pull\n",
            &users(),
        )
        .unwrap();
        assert_eq!(file.allowed(Some("ana"), "team/app"), Actions::PUSH);
        assert_eq!(file.allowed(Some("ana"), "team/a/b"), Actions::PUSH);
        assert_eq!(file.allowed(Some("ana"), "teammate/x"), Actions::default());
        assert_eq!(file.allowed(Some("ana"), "team"), Actions::default());
        assert_eq!(file.allowed(Some("bob"), "team/app"), Actions::PULL);
        assert_eq!(file.allowed(Some("bob"), "team/other"), Actions::default());
        assert_eq!(file.allowed(Some("bob"), "public/x"), Actions::PULL);
        assert_eq!(file.allowed(None, "public/x"), Actions::PULL);
        assert_eq!(file.allowed(None, "team/app"), Actions::default());
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        for (text, line) in [
            ("ana team/*\n", 1),
            ("\neve team/* pull\n", 2),
            ("ana Team/* pull\n", 1),
            ("ana ../x pull\n", 1),
            ("ana team/* pull,delete\n", 1),
            ("ana team/* ,\n", 1),
        ] {
            assert!(
                matches!(AccessFile::parse(text, &users()), Err(AccessError::Line { line: l, .. }) if l == line),
                "{text:?}"
            );
        }
    }

    #[test]
    fn actions_combine() {
        assert_eq!(Actions::parse("push,pull"), Some(Actions::PUSH));
        assert_eq!(Actions::parse("*"), Some(Actions::PUSH));
        assert_eq!(Actions::parse("pull,nope"), None);
        assert!(Actions::PUSH.covers(Actions::PULL));
        assert!(!Actions::PULL.covers(Actions::PUSH));
        assert_eq!(Actions::PUSH.and(Actions::PULL).words(), "pull");
    }
}
