//! Variables in a Dockerfile: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR:+alternative}`, and quotes.
//!
//! The builder substitutes in the instructions the Dockerfile reference
//! lists (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
//! WORKDIR, ARG), never in RUN, CMD or ENTRYPOINT: there the shell does it,
//! at run time, with the container's environment. Single quotes keep text
//! as it is, double quotes group words and still substitute, the escape
//! character keeps the next one literal, as a shell would.

/// A substitution that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ExpandError(pub String);

/// Splits `text` into words, substituting variables from `lookup`.
pub fn words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    process(text, escape, lookup, true)
}

/// `text` as one word: quotes removed, variables substituted, spaces kept.
pub fn word(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    Ok(process(text, escape, lookup, false)?.concat())
}

fn process(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
    split: bool,
) -> Result<Vec<String>, ExpandError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut started = false;
    // A word that expands to nothing is dropped, unless it was quoted.
    let mut quoted = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if split && c.is_whitespace() {
            if started && (quoted || !current.is_empty()) {
                out.push(std::mem::take(&mut current));
            }
            (started, quoted) = (false, false);
            i += 1;
            continue;
        }
        started = true;
        if c == escape && i + 1 < chars.len() {
            current.push(chars[i + 1]);
            i += 2;
        } else if c == '\'' {
            quoted = true;
            let end = find(&chars, i + 1, '\'')
                .ok_or_else(|| ExpandError(format!("unmatched ' in {text:?}")))?;
            current.extend(&chars[i + 1..end]);
            i = end + 1;
        } else if c == '"' {
            quoted = true;
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(ExpandError(format!("unmatched \" in {text:?}"))),
                    Some('"') => break,
                    Some(&e) if e == escape && i + 1 < chars.len() => {
                        current.push(chars[i + 1]);
                        i += 2;
                    }
                    Some('$') => i = variable(&chars, i, lookup, &mut current)?,
                    Some(&other) => {
                        current.push(other);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else if c == '$' {
            i = variable(&chars, i, lookup, &mut current)?;
        } else {
            current.push(c);
            i += 1;
        }
    }
    if started && (quoted || !current.is_empty() || !split) {
        out.push(current);
    }
    Ok(out)
}

fn find(chars: &[char], from: usize, wanted: char) -> Option<usize> {
    (from..chars.len()).find(|&j| chars[j] == wanted)
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Substitutes the variable at `chars[at]` (a `$`) into `out`; returns
/// where reading goes on.
fn variable(
    chars: &[char],
    at: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<usize, ExpandError> {
    let mut i = at + 1;
    if chars.get(i) == Some(&'{') {
        let end = find(chars, i, '}').ok_or_else(|| {
            ExpandError(format!(
                "missing '}}' in ${}",
                chars[i..].iter().collect::<String>()
            ))
        })?;
        let inner: String = chars[i + 1..end].iter().collect();
        let (name, op) = match inner.find(|c: char| !is_name(c)) {
            Some(k) => (&inner[..k], Some(&inner[k..])),
            None => (inner.as_str(), None),
        };
        if name.is_empty() {
            return Err(ExpandError(format!("bad substitution: ${{{inner}}}")));
        }
        let value = lookup(name).filter(|v| !v.is_empty());
        match op {
            None => out.push_str(&value.unwrap_or_default()),
            Some(op) if op.starts_with(":-") => {
                out.push_str(&value.unwrap_or_else(|| op[2..].to_string()))
            }
            Some(op) if op.starts_with(":+") => {
                if value.is_some() {
                    out.push_str(&op[2..]);
                }
            }
            Some(_) => {
                return Err(ExpandError(format!(
                    "unsupported substitution: ${{{inner}}}"
                )));
            }
        }
        return Ok(end + 1);
    }
    let start = i;
    while i < chars.len() && is_name(chars[i]) {
        i += 1;
    }
    if i == start {
        // A lone `$` is itself.
        out.push('$');
        return Ok(i);
    }
    let name: String = chars[start..i].iter().collect();
    out.push_str(&lookup(&name).unwrap_or_default());
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("one".into()),
            "B" => Some("two words".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_as_docker_does() {
        assert_eq!(
            words("$A ${A}x ${C:-dflt} ${A:+alt} ${C:+alt}", '\\', &env).unwrap(),
            ["one", "onex", "dflt", "alt"]
        );
        assert_eq!(
            words(r#""$B" '$A' \$A a\ b"#, '\\', &env).unwrap(),
            ["two words", "$A", "$A", "a b"]
        );
        assert_eq!(word("/srv/$A dir", '\\', &env).unwrap(), "/srv/one dir");
        assert!(words("'open", '\\', &env).is_err());
        assert!(words("${A", '\\', &env).is_err());
    }
}
