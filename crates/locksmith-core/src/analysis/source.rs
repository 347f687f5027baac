//! Source text: splitting into statements, positions, comments, and syntax
//! errors located at the offending token.
//!
//! `pg_query`'s Rust API returns a parse error's message but drops libpg_query's
//! cursor position. We recover it without unsafe code: the error message names
//! the token (`at or near "X"`, or `at end of input`); the statement that fails
//! is found by parsing the scanner's split pieces one by one; and among the
//! tokens spelled `X` in it, the offending one is the first whose prefix
//! (the text up to and including it) fails with the same message — an LR
//! parser detects an error at the first token that cannot continue a valid
//! prefix, so earlier occurrences parse fine.
//!
//! What it must not do: interpret statements; that is `convert`'s job.

use pg_query::protobuf::{KeywordKind, Token};
use pg_query::NodeEnum;
use serde::Serialize;

/// A syntax error at a position in the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct SyntaxError {
    /// PostgreSQL's message, e.g. `syntax error at or near "TABEL"`.
    pub message: String,
    /// Byte offset of the offending token (the input's length at end of input).
    pub offset: usize,
    /// 1-based line of the offending token.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

/// One line of SQL for a message: whitespace folded, cut to `width`
/// characters with `…`.
pub fn one_line(sql: &str, width: usize) -> String {
    let folded = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= width {
        folded
    } else {
        let cut: String = folded.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A comment in the input, with its position (for suppressions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The comment's text, including its `--` or `/* */` markers.
    pub text: String,
    /// Byte offset of the comment.
    pub offset: usize,
    /// 1-based line of the comment's start.
    pub line: u32,
}

/// Maps byte offsets to 1-based line and character column.
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `text`.
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line as u32 + 1, column as u32 + 1)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: u32) -> &'a str {
        let i = (line as usize).saturating_sub(1).min(self.starts.len() - 1);
        let end = self.starts.get(i + 1).copied().unwrap_or(self.text.len());
        self.text[self.starts[i]..end].trim_end_matches(['\n', '\r'])
    }
}

/// One statement of a parsed input.
pub(crate) struct RawStatement {
    pub node: Option<NodeEnum>,
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub column: u32,
}

fn is_comment(token: i32) -> bool {
    token == Token::SqlComment as i32 || token == Token::CComment as i32
}

/// At most this many scanner pieces are joined to make one statement (a
/// `BEGIN ATOMIC … END` body or a rule's action list holds semicolons).
const MAX_JOINED_PIECES: usize = 256;

/// How much text the scanner is given at once when cutting a file into
/// pieces: scanning a whole 50 MB file at once took about 6 bytes per byte.
const SCAN_WINDOW: usize = 1 << 20;

/// Where each of the scanner's pieces of `sql` ends (top-level semicolons;
/// see `pg_query::split_with_scanner`), found `window` bytes at a time so
/// the scanner's memory stays bounded. Each window starts where a piece
/// ended; its last piece may be cut short, so it is scanned again from the
/// next window. A window that does not scan (cut inside a string or a
/// comment) is doubled until it does or reaches the end of the text; an
/// error there is the file's, reported as scanning all of it reports it.
fn piece_ends(sql: &str, window: usize) -> Result<Vec<usize>, String> {
    let mut ends = Vec::new();
    let mut pos = 0;
    let mut size = window;
    while pos < sql.len() {
        let mut end = pos.saturating_add(size).min(sql.len());
        while !sql.is_char_boundary(end) {
            end += 1;
        }
        let last = end == sql.len();
        let text = &sql[pos..end];
        let base = text.as_ptr() as usize;
        let found: Vec<usize> = match pg_query::split_with_scanner(text) {
            Ok(pieces) => pieces
                .iter()
                .map(|p| pos + p.as_ptr() as usize - base + p.len())
                .collect(),
            Err(_) if !last => {
                size = size.saturating_mul(2);
                continue;
            }
            Err(e) => {
                // The same message a scan of the whole text gives.
                let whole = pg_query::split_with_scanner(sql).err().unwrap_or(e);
                return Err(error_message(whole));
            }
        };
        if last {
            ends.extend(found);
            break;
        }
        if found.len() < 2 {
            size = size.saturating_mul(2);
            continue;
        }
        let keep = found.len() - 1;
        ends.extend_from_slice(&found[..keep]);
        pos = found[keep - 1];
        size = window;
    }
    Ok(ends)
}

/// Parses `sql` one statement at a time — so memory is bounded by the
/// largest statement, not by the file — and calls `each` with every
/// statement, in order. The scanner cuts the text at top-level semicolons;
/// a piece that does not parse alone is joined with the pieces after it
/// until it does. Stops at the first syntax error, located in `sql`.
pub(crate) fn parse_each(sql: &str, mut each: impl FnMut(RawStatement)) -> Result<(), SyntaxError> {
    pieces(sql, Some(&mut each))
}

/// Whether `sql` parses, as [`parse_each`] would say (the same error), without
/// building parse trees: the parser only tells where statements are.
pub(crate) fn check(sql: &str) -> Result<(), SyntaxError> {
    pieces(sql, None)
}

fn pieces(sql: &str, mut each: Option<&mut dyn FnMut(RawStatement)>) -> Result<(), SyntaxError> {
    let index = LineIndex::new(sql);
    // A NUL byte cannot reach the C parser; report it where it is.
    if let Some(at) = sql.find('\0') {
        return Err(error_at(&index, "invalid NUL byte in input".into(), at));
    }
    // The scanner's split skips what it cannot make sense of (`SELEC 2`),
    // so the pieces run from one split end to the next: every byte is parsed.
    let mut ends = piece_ends(sql, SCAN_WINDOW).map_err(|e| locate_error(sql, &index, &e))?;
    if ends.last().is_none_or(|&e| e < sql.len()) {
        ends.push(sql.len());
    }
    let spans: Vec<(usize, usize)> = ends
        .iter()
        .scan(0, |start, &end| {
            let span = (*start, end);
            *start = end;
            Some(span)
        })
        .collect();
    let mut i = 0;
    while i < spans.len() {
        let start = spans[i].0;
        let mut j = i;
        let parsed = loop {
            let text = &sql[start..spans[j].1];
            let result = if each.is_none() && pg_query::split_with_parser(text).is_ok() {
                Ok(None)
            } else {
                pg_query::parse(text, 0).map(Some)
            };
            match result {
                Ok(parsed) => break parsed,
                Err(_) if j + 1 < spans.len() && j - i < MAX_JOINED_PIECES => j += 1,
                Err(e) => {
                    // The piece's own error, not the joined text's.
                    let message = match pg_query::parse(&sql[start..spans[i].1], 0) {
                        Err(alone) => error_message(alone),
                        Ok(_) => error_message(e),
                    };
                    return Err(locate_error(sql, &index, &message));
                }
            }
        };
        let chunk = &sql[start..spans[j].1];
        i = j + 1;
        let (Some(parsed), Some(each)) = (parsed, each.as_mut()) else {
            continue;
        };
        // Only whitespace, comments or `;`. (With no statement there may be no
        // token, and `scan_tokens` must not be asked for an empty list.)
        if parsed.protobuf.stmts.is_empty() {
            continue;
        }
        let code: Vec<(usize, usize)> = pg_query::scan_tokens(chunk)
            .map_err(|e| locate_error(sql, &index, &error_message(e)))?
            .iter()
            .filter(|t| !is_comment(t.token) && t.token != Token::Ascii59 as i32)
            .map(|t| (start + t.start as usize, start + t.end as usize))
            .collect();
        for raw in parsed.protobuf.stmts {
            let from = start + raw.stmt_location.max(0) as usize;
            let to = if raw.stmt_len <= 0 {
                start + chunk.len()
            } else {
                from + raw.stmt_len as usize
            };
            // The statement's own tokens: the range includes leading comments
            // and whitespace.
            let first = code.partition_point(|&(s, _)| s < from);
            let last = code.partition_point(|&(_, e)| e <= to);
            let (from, to) = if first < last {
                (code[first].0, code[last - 1].1)
            } else {
                (from, to)
            };
            let (line, column) = index.position(from);
            each(RawStatement {
                node: raw.stmt.and_then(|n| n.node),
                start: from,
                end: to,
                line,
                column,
            });
        }
    }
    Ok(())
}

/// Every comment in `sql`, in order. Empty when the text does not scan.
/// Scanned a piece at a time (see [`piece_ends`]), so the scanner's memory
/// stays bounded on a big file.
pub fn comments(sql: &str) -> Vec<Comment> {
    let index = LineIndex::new(sql);
    let Ok(mut ends) = piece_ends(sql, SCAN_WINDOW) else {
        return Vec::new();
    };
    if ends.last().is_none_or(|&e| e < sql.len()) {
        ends.push(sql.len());
    }
    let mut out = Vec::new();
    let mut start = 0;
    for end in ends {
        let Ok(scan) = pg_query::scan(&sql[start..end]) else {
            return Vec::new();
        };
        out.extend(scan.tokens.iter().filter(|t| is_comment(t.token)).map(|t| {
            let offset = start + t.start as usize;
            Comment {
                text: sql[offset..start + t.end as usize].to_string(),
                offset,
                line: index.position(offset).0,
            }
        }));
        start = end;
    }
    out
}

/// Whether `word` is a keyword that cannot be used as a bare identifier.
pub(crate) fn is_keyword(word: &str) -> bool {
    let Ok(scan) = pg_query::scan(word) else {
        return true;
    };
    scan.tokens.first().is_some_and(|t| {
        t.keyword_kind != KeywordKind::NoKeyword as i32
            && t.keyword_kind != KeywordKind::UnreservedKeyword as i32
    })
}

fn error_message(e: pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) | pg_query::Error::Split(m) => m,
        other => other.to_string(),
    }
}

fn error_at(index: &LineIndex<'_>, message: String, offset: usize) -> SyntaxError {
    let (line, column) = index.position(offset);
    SyntaxError {
        message,
        offset,
        line,
        column,
    }
}

/// Finds where the parse error `message` happened in `sql`.
fn locate_error(sql: &str, index: &LineIndex<'_>, message: &str) -> SyntaxError {
    // The failing piece: the scanner splits on top-level semicolons without
    // parsing, so the first piece that does not parse holds the error.
    let mut piece_start = 0;
    let mut piece = sql;
    let mut piece_message = message.to_string();
    if let Ok(pieces) = pg_query::split_with_scanner(sql) {
        for p in pieces {
            if let Err(e) = pg_query::parse(p, 0) {
                piece_start = p.as_ptr() as usize - sql.as_ptr() as usize;
                piece = p;
                piece_message = error_message(e);
                break;
            }
        }
    }
    let offset = piece_start + offset_in_piece(piece, &piece_message);
    error_at(index, message.to_string(), offset)
}

fn offset_in_piece(piece: &str, message: &str) -> usize {
    let tokens = pg_query::scan(piece).map(|s| s.tokens).unwrap_or_default();
    let code: Vec<(usize, usize)> = tokens
        .iter()
        .filter(|t| !is_comment(t.token))
        .map(|t| (t.start as usize, t.end as usize))
        .collect();
    let first_token = code.first().map_or(0, |t| t.0);
    if message.ends_with("at end of input") {
        return code.last().map_or(piece.len(), |t| t.1);
    }
    let Some(near) = near_text(message) else {
        return first_token;
    };
    let candidates: Vec<usize> = code
        .iter()
        .filter(|&&(s, e)| piece.get(s..e) == Some(near))
        .map(|&(s, _)| s)
        .collect();
    for &start in &candidates {
        let end = start + near.len();
        if let Err(e) = pg_query::parse(&piece[..end], 0) {
            if error_message(e) == message {
                return start;
            }
        }
    }
    if let Some(&start) = candidates.first() {
        return start;
    }
    // Not a whole token (e.g. an unterminated literal runs to the end).
    if piece.ends_with(near) {
        return piece.len() - near.len();
    }
    piece.find(near).unwrap_or(first_token)
}

/// The `X` of `… at or near "X"`.
fn near_text(message: &str) -> Option<&str> {
    let at = message.rfind(" at or near \"")?;
    let rest = &message[at + " at or near \"".len()..];
    rest.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    #[test]
    fn checking_says_what_parsing_says() {
        for sql in [
            "SELECT 1; SELECT 2",
            "SELEC 1;",
            "SELECT 1;\nALTER TABLE t ADD COLUMN;\nSELECT 2;",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
            "SELECT 'open",
            "SELECT 1; \0",
            "-- only a comment\n;",
            "",
        ] {
            let parsed = parse(sql).err().map(|e| (e.line, e.column, e.message));
            let checked = check(sql).err().map(|e| (e.line, e.column, e.message));
            assert_eq!(checked, parsed, "{sql}");
        }
    }

    #[test]
    fn comments_found_a_piece_at_a_time_are_those_of_the_whole() {
        let catalogue = include_str!("../../../locksmith-pg/tests/conformance/catalogue.sql");
        let tricky =
            "-- a;\nSELECT '-- no; /* no */'; /* b; */ SELECT $$ -- no $$; -- c\nSELECT 1 -- d";
        for text in [tricky, catalogue] {
            let whole: Vec<(usize, String)> = pg_query::scan(text)
                .unwrap()
                .tokens
                .iter()
                .filter(|t| is_comment(t.token))
                .map(|t| {
                    (
                        t.start as usize,
                        text[t.start as usize..t.end as usize].to_string(),
                    )
                })
                .collect();
            let pieces: Vec<(usize, String)> = comments(text)
                .into_iter()
                .map(|c| (c.offset, c.text))
                .collect();
            assert!(!whole.is_empty());
            assert_eq!(pieces, whole);
        }
    }

    #[test]
    fn pieces_found_a_window_at_a_time_are_the_pieces_of_the_whole() {
        let catalogue = include_str!("../../../locksmith-pg/tests/conformance/catalogue.sql");
        let tricky = "SELECT 'a;b'; /* c; */ SELECT $$ d; $$;\n-- e;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\nSELECT 'é;ü' ;; SELECT 3";
        for text in [tricky, catalogue] {
            let whole = super::piece_ends(text, usize::MAX).unwrap();
            for window in [1, 2, 3, 7, 16, 64, 1000] {
                assert_eq!(
                    super::piece_ends(text, window).unwrap(),
                    whole,
                    "window {window}"
                );
            }
        }
        let broken = "SELECT 1; SELECT 'open";
        assert_eq!(
            super::piece_ends(broken, 4).unwrap_err(),
            super::piece_ends(broken, usize::MAX).unwrap_err()
        );
    }

    use super::*;

    fn err(sql: &str) -> SyntaxError {
        parse(sql).err().expect("should fail")
    }

    fn parse(sql: &str) -> Result<Vec<RawStatement>, SyntaxError> {
        let mut out = Vec::new();
        parse_each(sql, |s| out.push(s))?;
        Ok(out)
    }

    #[test]
    fn statements_with_semicolons_inside_are_joined() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\nSELECT 3;";
        let p = parse(sql).unwrap();
        let got: Vec<_> = p.iter().map(|s| (s.line, &sql[s.start..s.end])).collect();
        assert_eq!(
            got,
            vec![
                (1, "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END"),
                (2, "SELECT 3")
            ]
        );
        let e = err("SELECT 1;\nSELEC 2;\nSELECT 3;");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 1, "syntax error at or near \"SELEC\"")
        );
    }

    #[test]
    fn positions_are_of_the_first_token_not_comments() {
        let sql = "-- hello\n  /* c */ SELECT 1;\nSELECT 2; -- trailing\n\n   update t set a = 1";
        let p = parse(sql).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|s| (s.line, s.column, &sql[s.start..s.end]))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, 11, "SELECT 1"),
                (3, 1, "SELECT 2"),
                (5, 4, "update t set a = 1")
            ]
        );
    }

    #[test]
    fn columns_count_characters() {
        let sql = "SELECT 'é'; SELECT 2";
        let p = parse(sql).unwrap();
        assert_eq!((p[1].line, p[1].column), (1, 13));
    }

    #[test]
    fn syntax_error_at_the_offending_token() {
        let e = err("SELECT 1;\nALTER TABEL users ADD COLUMN a int;");
        assert_eq!(e.message, "syntax error at or near \"TABEL\"");
        assert_eq!((e.line, e.column), (2, 7));
    }

    #[test]
    fn syntax_error_picks_the_right_occurrence() {
        // `a` appears three times; only the last one is wrong.
        let e = err("SELECT a FROM a WHERE a a a;");
        assert_eq!(e.message, "syntax error at or near \"a\"");
        assert_eq!(e.column, 25);
    }

    #[test]
    fn syntax_error_at_end_of_input() {
        let e = err("SELECT 1;\nCREATE TABLE t (");
        assert_eq!(e.message, "syntax error at end of input");
        assert_eq!((e.line, e.column), (2, 17));
    }

    #[test]
    fn unterminated_string() {
        let e = err("SELECT 1;\nSELECT 'abc");
        assert!(
            e.message.starts_with("unterminated quoted string"),
            "{}",
            e.message
        );
        assert_eq!((e.line, e.column), (2, 8));
    }

    #[test]
    fn comments_are_listed_with_lines() {
        let c = comments("-- a\nSELECT '-- not a comment'; /* b */");
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].text.as_str(), c[0].line), ("-- a", 1));
        assert_eq!(c[1].text, "/* b */");
    }

    #[test]
    fn line_text() {
        let idx = LineIndex::new("a\r\nbc\n");
        assert_eq!(idx.line_text(2), "bc");
        assert_eq!(idx.line_text(1), "a");
    }
}
