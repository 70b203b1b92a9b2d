//! Reading a Dockerfile: lines into instructions.
//!
//! The rules are the Dockerfile reference's (docs.docker.com/reference/
//! dockerfile): parser directives (`# escape=`) only at the very top; a
//! line whose first non-blank character is `#` is a comment, also inside
//! a continued instruction; a line ending in the escape character (`\`, or
//! `` ` `` after `# escape=`) goes on on the next; an instruction's
//! arguments are either a JSON array of strings (the *exec form*) or plain
//! text (the *shell form*). Which variables are substituted, and when, is
//! the builder's business ([`super::expand`]): here nothing is expanded.
//! Every instruction keeps the number of the line it starts on, for errors
//! such as `Dockerfile:7: unknown instruction: RUNN`.

/// The largest Dockerfile read: a real one is a few KiB.
pub const MAX_DOCKERFILE_BYTES: usize = 1 << 20;

/// A problem in the Dockerfile, with the line it is on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Dockerfile:{line}: {what}")]
pub struct ParseError {
    /// The line, counting from 1 (0: the file as a whole).
    pub line: usize,
    /// What is wrong, and what to do.
    pub what: String,
}

/// An instruction's arguments, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`: run without a shell, no substitution by a shell.
    Exec(Vec<String>),
    /// Anything else: the text, run by the shell (RUN, CMD) or split into
    /// words by the builder (COPY, ENV, …).
    Shell(String),
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on.
    pub line: usize,
    /// Its keyword in capitals (`RUN`).
    pub keyword: String,
    /// Its `--name=value` flags (COPY, ADD, FROM, RUN), in order.
    pub flags: Vec<(String, String)>,
    /// What follows the keyword and the flags.
    pub args: Args,
}

impl Instruction {
    /// Its text, as the build's progress shows it (`RUN echo hi`).
    pub fn text(&self) -> String {
        let mut out = self.keyword.clone();
        for (k, v) in &self.flags {
            out.push_str(&format!(" --{k}={v}"));
        }
        match &self.args {
            Args::Exec(words) => {
                out.push(' ');
                out.push_str(&serde_json::to_string(words).unwrap_or_default());
            }
            Args::Shell(text) if !text.is_empty() => {
                out.push(' ');
                out.push_str(text);
            }
            Args::Shell(_) => {}
        }
        out
    }

    /// The flag `name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An error about this instruction.
    pub fn error(&self, what: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            what: what.into(),
        }
    }
}

/// The instructions caixa's builder knows.
pub const KNOWN: [&str; 17] = [
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "STOPSIGNAL",
    "SHELL",
    "HEALTHCHECK",
];

/// Which instructions take `--flags` before their arguments.
const WITH_FLAGS: [&str; 4] = ["FROM", "COPY", "ADD", "RUN"];

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// The instructions, in order.
    pub instructions: Vec<Instruction>,
}

// ANCHOR: parse
/// Parses a Dockerfile's text.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(ParseError {
            line: 0,
            what: format!(
                "the Dockerfile is {} bytes, over the limit of {MAX_DOCKERFILE_BYTES}",
                text.len()
            ),
        });
    }
    let lines: Vec<&str> = text.lines().collect();
    let (escape, first) = directives(&lines)?;
    let mut instructions = Vec::new();
    let mut n = first;
    while n < lines.len() {
        let line = lines[n].trim();
        if line.is_empty() || line.starts_with('#') {
            n += 1;
            continue;
        }
        // One logical line: join while a line ends in the escape character;
        // comment lines inside are dropped, as Docker does.
        let start = n;
        let mut logical = String::new();
        loop {
            let this = lines[n].trim_end();
            n += 1;
            match this.strip_suffix(escape) {
                Some(rest) => {
                    logical.push_str(rest);
                    while n < lines.len() && lines[n].trim_start().starts_with('#') {
                        n += 1;
                    }
                    if n >= lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(this);
                    break;
                }
            }
        }
        instructions.push(instruction(start + 1, logical.trim())?);
    }
    Ok(Dockerfile {
        escape,
        instructions,
    })
}
// ANCHOR_END: parse

/// Reads the parser directives at the top; returns the escape character
/// and the index of the first line after them.
fn directives(lines: &[&str]) -> Result<(char, usize), ParseError> {
    let mut escape = '\\';
    for (i, line) in lines.iter().enumerate() {
        let Some(comment) = line.trim().strip_prefix('#') else {
            return Ok((escape, i));
        };
        let Some((key, value)) = comment.split_once('=') else {
            return Ok((escape, i));
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        match key.as_str() {
            "escape" => {
                escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError {
                            line: i + 1,
                            what: format!("invalid escape character {value:?}: use \\ or `"),
                        });
                    }
                }
            }
            // A front end to use: caixa has one.
            "syntax" | "check" => {}
            _ => return Ok((escape, i)),
        }
    }
    Ok((escape, lines.len()))
}

/// One logical line as an instruction.
fn instruction(line: usize, text: &str) -> Result<Instruction, ParseError> {
    let (word, mut rest) = text
        .split_once(char::is_whitespace)
        .map_or((text, ""), |(w, r)| (w, r.trim_start()));
    let keyword = word.to_ascii_uppercase();
    let err = |what: String| ParseError { line, what };
    if !KNOWN.contains(&keyword.as_str()) {
        let shown: String = word.chars().take(40).collect();
        return Err(err(format!("unknown instruction: {shown}")));
    }
    let mut flags = Vec::new();
    if WITH_FLAGS.contains(&keyword.as_str()) {
        while let Some(flag) = rest.strip_prefix("--") {
            let (word, after) = flag
                .split_once(char::is_whitespace)
                .map_or((flag, ""), |(w, r)| (w, r.trim_start()));
            let (name, value) = word.split_once('=').unwrap_or((word, "true"));
            flags.push((name.to_string(), value.to_string()));
            rest = after;
        }
    }
    let args = match rest.strip_prefix('[') {
        Some(_) => match serde_json::from_str::<Vec<String>>(rest) {
            Ok(words) => Args::Exec(words),
            // Not JSON after all: Docker runs it as shell text.
            Err(_) => Args::Shell(rest.to_string()),
        },
        None => Args::Shell(rest.to_string()),
    };
    let needs_args = !matches!(keyword.as_str(), "CMD" | "ENTRYPOINT" | "SHELL");
    if needs_args && args == Args::Shell(String::new()) {
        return Err(err(format!("{keyword} requires at least one argument")));
    }
    Ok(Instruction {
        line,
        keyword,
        flags,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_forms() {
        let df = parse(
            "# escape=`\n# a comment\nFROM demo:1 AS base\nRUN echo a `\n# inside\n  && echo b\nCMD [\"sh\", \"-c\", \"x\"]\ncopy --chown=1:2 a b\n",
        )
        .unwrap();
        assert_eq!(df.escape, '`');
        let i = &df.instructions;
        assert_eq!(i.len(), 4);
        assert_eq!(i[0].args, Args::Shell("demo:1 AS base".into()));
        assert_eq!(i[1].line, 4);
        assert_eq!(i[1].args, Args::Shell("echo a   && echo b".into()));
        assert_eq!(
            i[2].args,
            Args::Exec(vec!["sh".into(), "-c".into(), "x".into()])
        );
        assert_eq!(i[3].keyword, "COPY");
        assert_eq!(i[3].flag("chown"), Some("1:2"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("FROM x\n\nRUNN true\n").unwrap_err();
        assert_eq!(err.to_string(), "Dockerfile:3: unknown instruction: RUNN");
        let err = parse("FROM x\nCOPY\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Dockerfile:2: COPY requires at least one argument"
        );
        let big = "#".repeat(MAX_DOCKERFILE_BYTES + 1);
        assert!(
            parse(&big)
                .unwrap_err()
                .to_string()
                .contains("over the limit")
        );
    }
}
