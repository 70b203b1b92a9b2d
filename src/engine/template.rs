//! `--format`: a small, safe subset of Go's templates, as the Docker CLI
//! takes them (`{{.ID}} {{.Names}}`, `table {{.ID}}\t{{.Status}}`).
//!
//! The Docker CLI runs real Go templates, which can call functions and
//! range over values. caixa's client needs only what people type after
//! `ps --format`: literal text, `{{.Field}}` of a known field, `\t` for a
//! tab, and an optional `table` prefix that prints a header line. Anything
//! else is refused with one line, before any request, rather than printed
//! wrong.

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `table …`: print a header first.
    pub table: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// What is wrong with a `--format`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("invalid --format {0:?}: a {{{{ is not closed with }}}}")]
    Unclosed(String),
    /// `{{…}}` that is not `{{.Field}}`.
    #[error("invalid --format: {{{{{0}}}}} is not supported: use {{{{.Field}}}} and text")]
    Unsupported(String),
    /// A field the listing does not have.
    #[error("invalid --format: there is no field .{field}: use one of {known}")]
    UnknownField {
        /// The field asked for.
        field: String,
        /// The fields there are.
        known: String,
    },
}

// ANCHOR: template_parse
/// Parses `text`, whose fields must be among `fields`.
pub fn parse(text: &str, fields: &[&str]) -> Result<Template, TemplateError> {
    let (table, body) = match text.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
            (true, rest.trim_start())
        }
        _ => (false, text),
    };
    let body = body.replace("\\t", "\t").replace("\\n", "\n");
    let mut parts = Vec::new();
    let mut rest = body.as_str();
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(text.to_string()))?;
        let inner = after[..close].trim();
        let field = inner
            .strip_prefix('.')
            .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| TemplateError::Unsupported(inner.to_string()))?;
        if !fields.contains(&field) {
            return Err(TemplateError::UnknownField {
                field: field.to_string(),
                known: fields.join(", "),
            });
        }
        parts.push(Part::Field(field.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(Template { table, parts })
}
// ANCHOR_END: template_parse

impl Template {
    /// One line: each field replaced by `value(field)`.
    pub fn render(&self, value: &dyn Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Field(f) => value(f),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [&str; 3] = ["ID", "Names", "Status"];

    #[test]
    fn fields_and_text_render_and_the_rest_is_refused() {
        let t = parse("{{.ID}} {{ .Names }}!", &FIELDS).unwrap();
        assert!(!t.table);
        assert_eq!(t.render(&|f| f.to_lowercase()), "id names!");
        let t = parse("table {{.ID}}\\t{{.Status}}", &FIELDS).unwrap();
        assert!(t.table);
        assert_eq!(t.render(&|f| f.to_string()), "ID\tStatus");
        assert!(matches!(
            parse("{{.Colour}}", &FIELDS),
            Err(TemplateError::UnknownField { .. })
        ));
        assert!(matches!(
            parse("{{json .}}", &FIELDS),
            Err(TemplateError::Unsupported(_))
        ));
        assert!(matches!(
            parse("{{.ID", &FIELDS),
            Err(TemplateError::Unclosed(_))
        ));
        assert_eq!(
            parse("tablet", &FIELDS).unwrap().render(&|_| String::new()),
            "tablet"
        );
    }
}
