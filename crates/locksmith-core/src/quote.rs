//! Quoting identifiers and literals for SQL that locksmith writes itself
//! (`LOCK TABLE`, `SET lock_timeout`, `CREATE DATABASE`). Anything named by a
//! user or read from a catalog goes through here, never through `format!` alone.

/// Quotes an identifier: `academic_partners` → `"academic_partners"`, doubling inner quotes.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a possibly schema-qualified name, part by part: `app.users` → `"app"."users"`.
/// A part already in double quotes is kept as written.
pub fn qualified(name: &str) -> String {
    split_qualified(name)
        .iter()
        .map(|part| ident(part))
        .collect::<Vec<_>>()
        .join(".")
}

/// Splits `schema.table` (respecting double quotes) into unquoted parts.
pub fn split_qualified(name: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                parts.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

/// Quotes a string literal: `it's` → `'it''s'`.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("users"), "\"users\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(qualified("app.users"), "\"app\".\"users\"");
        assert_eq!(qualified("\"My.Schema\".t"), "\"My.Schema\".\"t\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(
            split_qualified("\"a\"\"b\".c"),
            vec!["a\"b".to_string(), "c".to_string()]
        );
    }
}
