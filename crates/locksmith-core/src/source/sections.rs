//! A migration file's up section: the whole file, or the part between
//! dbmate's `-- migrate:up` and `-- migrate:down`, or goose's `-- +goose Up`
//! and `-- +goose Down`, with goose's `StatementBegin`/`StatementEnd`
//! blocks and the no-transaction directives.
//!
//! Positions stay those of the original file: the up section is a byte
//! range of it, and [`Sections::blanked`] is the file with everything else
//! replaced by spaces (newlines kept), so a statement found in it has the
//! same offset, line and column as in the file.

use std::ops::Range;

use super::Problem;

/// The tool whose markers a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markers {
    /// None: the whole file is the up section.
    None,
    /// dbmate: `-- migrate:up [transaction:false]` / `-- migrate:down`.
    Dbmate,
    /// goose: `-- +goose Up` / `-- +goose Down` and friends.
    Goose,
}

/// What runs of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    /// Which markers the file uses.
    pub markers: Markers,
    /// The up section, a byte range of the file.
    pub up: Range<usize>,
    /// goose `StatementBegin`…`StatementEnd` blocks inside the up section
    /// (byte ranges of the file): each runs as one statement.
    pub blocks: Vec<Range<usize>>,
    /// dbmate `transaction:false` or goose `NO TRANSACTION`.
    pub no_transaction: bool,
}

/// A marker line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    Up {
        no_transaction: bool,
    },
    Down,
    StatementBegin,
    StatementEnd,
    NoTransaction,
    /// A goose annotation that changes nothing here (`ENVSUB ON`).
    Other,
}

struct Line {
    number: u32,
    /// Start of the line and start of the next one.
    start: usize,
    next: usize,
    marker: Option<(Markers, Marker)>,
    /// Neither blank nor a `--` comment.
    is_sql: bool,
}

/// Finds the up section of `content`. `Err` holds the 1-based line and the problem.
pub fn read(content: &str) -> Result<Sections, (u32, Problem)> {
    let lines = lines(content)?;
    let mut markers = Markers::None;
    for l in &lines {
        if let Some((tool, _)) = &l.marker {
            if markers != Markers::None && markers != *tool {
                return Err((l.number, Problem::BothMarkers));
            }
            markers = *tool;
        }
    }
    if markers == Markers::None {
        return Ok(Sections {
            markers,
            up: 0..content.len(),
            blocks: Vec::new(),
            no_transaction: false,
        });
    }
    let marked = |want: fn(&Marker) -> bool| {
        lines
            .iter()
            .filter(move |l| l.marker.as_ref().is_some_and(|(_, m)| want(m)))
    };
    let mut ups = marked(|m| matches!(m, Marker::Up { .. }));
    let Some(up_line) = ups.next() else {
        return Err((1, Problem::NoUpMarker(markers)));
    };
    if let Some(second) = ups.next() {
        return Err((second.number, Problem::SecondMarker(markers, "up")));
    }
    let mut downs = marked(|m| *m == Marker::Down);
    let down_line = downs.next();
    if let Some(second) = downs.next() {
        return Err((second.number, Problem::SecondMarker(markers, "down")));
    }
    let first_marker = lines.iter().find(|l| l.marker.is_some()).map(|l| l.start);
    if let Some(stray) = lines
        .iter()
        .find(|l| l.is_sql && Some(l.start) < first_marker)
    {
        return Err((stray.number, Problem::SqlOutsideSections(markers)));
    }
    let end = match down_line {
        Some(d) if d.start > up_line.start => d.start,
        _ => content.len(),
    };
    let up = up_line.next..end;
    let in_up = |l: &&Line| l.start >= up.start && l.start < up.end;
    let mut blocks = Vec::new();
    let mut open: Option<&Line> = None;
    for l in lines.iter().filter(in_up) {
        match l.marker.as_ref().map(|(_, m)| m) {
            Some(Marker::StatementBegin) => {
                if let Some(begun) = open {
                    return Err((begun.number, Problem::UnclosedBlock));
                }
                open = Some(l);
            }
            Some(Marker::StatementEnd) => match open.take() {
                Some(begun) => blocks.push(begun.next..l.start),
                None => return Err((l.number, Problem::EndWithoutBegin)),
            },
            _ => {}
        }
    }
    if let Some(begun) = open {
        return Err((begun.number, Problem::UnclosedBlock));
    }
    let no_transaction = matches!(
        up_line.marker,
        Some((
            _,
            Marker::Up {
                no_transaction: true
            }
        ))
    ) || lines
        .iter()
        .any(|l| matches!(l.marker, Some((_, Marker::NoTransaction))));
    Ok(Sections {
        markers,
        up,
        blocks,
        no_transaction,
    })
}

impl Sections {
    /// `content` with every byte outside the up section replaced by a space,
    /// line breaks kept: same length, same lines, same columns.
    pub fn blanked(&self, content: &str) -> String {
        content
            .char_indices()
            .map(|(i, c)| {
                if self.up.contains(&i) || c == '\n' || c == '\r' {
                    c.to_string()
                } else {
                    " ".repeat(c.len_utf8())
                }
            })
            .collect()
    }
}

fn lines(content: &str) -> Result<Vec<Line>, (u32, Problem)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, text) in content.split_inclusive('\n').enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let trimmed = text.trim();
        let marker = marker(trimmed).map_err(|p| (number, p))?;
        out.push(Line {
            number,
            start,
            next: start + text.len(),
            marker,
            is_sql: !trimmed.is_empty() && !trimmed.starts_with("--"),
        });
        start += text.len();
    }
    Ok(out)
}

/// Reads a trimmed line as a dbmate or goose marker.
fn marker(line: &str) -> Result<Option<(Markers, Marker)>, Problem> {
    if let Some(rest) = line.strip_prefix("-- +goose") {
        let word = rest.trim().to_ascii_lowercase();
        let m = match word
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .as_str()
        {
            "up" => Marker::Up {
                no_transaction: false,
            },
            "down" => Marker::Down,
            "statementbegin" => Marker::StatementBegin,
            "statementend" => Marker::StatementEnd,
            "no transaction" => Marker::NoTransaction,
            "envsub on" | "envsub off" => Marker::Other,
            _ => return Err(Problem::UnknownAnnotation(rest.trim().to_string())),
        };
        return Ok(Some((Markers::Goose, m)));
    }
    let Some(rest) = line.strip_prefix("--") else {
        return Ok(None);
    };
    let rest = rest.trim_start();
    if let Some(options) = rest.strip_prefix("migrate:up") {
        if options.is_empty() || options.starts_with(char::is_whitespace) {
            let no_transaction = options.split_whitespace().any(|o| o == "transaction:false");
            return Ok(Some((Markers::Dbmate, Marker::Up { no_transaction })));
        }
    }
    if let Some(options) = rest.strip_prefix("migrate:down") {
        if options.is_empty() || options.starts_with(char::is_whitespace) {
            return Ok(Some((Markers::Dbmate, Marker::Down)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(content: &str) -> &str {
        let s = read(content).unwrap();
        &content[s.up]
    }

    #[test]
    fn a_plain_file_is_all_up() {
        let sql = "CREATE TABLE t (id int);\n-- migrate:upward is not a marker\n";
        let s = read(sql).unwrap();
        assert_eq!(
            (s.markers, s.up, s.no_transaction),
            (Markers::None, 0..sql.len(), false)
        );
    }

    #[test]
    fn dbmate_up_only() {
        let sql = "-- migrate:up\nCREATE TABLE a (id int);\n\n-- migrate:down\nDROP TABLE a;\n";
        assert_eq!(up(sql), "CREATE TABLE a (id int);\n\n");
        let s = read(sql).unwrap();
        assert_eq!(s.markers, Markers::Dbmate);
        assert!(!s.no_transaction);
        let blanked = s.blanked(sql);
        assert_eq!(blanked.len(), sql.len());
        assert!(!blanked.contains("DROP"));
        assert_eq!(blanked.lines().nth(1), Some("CREATE TABLE a (id int);"));
        // Down first, up last: the up section runs to the end.
        let sql = "-- migrate:down\nDROP TABLE a;\n-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON a (id);\n";
        assert_eq!(up(sql), "CREATE INDEX CONCURRENTLY i ON a (id);\n");
        assert!(read(sql).unwrap().no_transaction);
    }

    #[test]
    fn goose_up_blocks_and_no_transaction() {
        let sql = "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- +goose StatementEnd\nSELECT 1;\n-- +goose Down\n-- +goose StatementBegin\nDROP FUNCTION f();\n";
        let s = read(sql).unwrap();
        assert_eq!(s.markers, Markers::Goose);
        assert!(s.no_transaction);
        assert!(!sql[s.up.clone()].contains("DROP"));
        assert_eq!(s.blocks.len(), 1);
        assert!(sql[s.blocks[0].clone()].starts_with("CREATE FUNCTION"));
        assert!(sql[s.blocks[0].clone()].ends_with("sql;\n"));
        assert!(!read("-- +goose up\nSELECT 1;\n").unwrap().no_transaction);
    }

    #[test]
    fn crlf_and_unicode_keep_their_places() {
        let sql = "-- migrate:up\r\nSELECT 'é';\r\n-- migrate:down\r\nSELECT 'ü';\r\n";
        let s = read(sql).unwrap();
        assert_eq!(&sql[s.up.clone()], "SELECT 'é';\r\n");
        assert_eq!(s.blanked(sql).len(), sql.len());
    }

    #[test]
    fn errors_name_the_line() {
        let err = |sql: &str| read(sql).unwrap_err();
        assert_eq!(
            err("SELECT 1;\n-- migrate:down\nSELECT 2;\n"),
            (1, Problem::NoUpMarker(Markers::Dbmate))
        );
        assert_eq!(
            err("-- +goose Down\nDROP TABLE a;\n"),
            (1, Problem::NoUpMarker(Markers::Goose))
        );
        assert_eq!(
            err("-- +goose Up\nSELECT 1;\n-- +goose StatementBegin\nSELECT 2;\n-- +goose Down\n"),
            (3, Problem::UnclosedBlock)
        );
        assert_eq!(
            err("-- +goose Up\n-- +goose StatementEnd\n"),
            (2, Problem::EndWithoutBegin)
        );
        assert_eq!(
            err("-- +goose Up\n-- migrate:down\n"),
            (2, Problem::BothMarkers)
        );
        assert_eq!(
            err("CREATE TABLE x (id int);\n-- migrate:up\nSELECT 1;\n"),
            (1, Problem::SqlOutsideSections(Markers::Dbmate))
        );
        assert_eq!(
            err("-- migrate:up\nSELECT 1;\n-- migrate:up\n"),
            (3, Problem::SecondMarker(Markers::Dbmate, "up"))
        );
        assert!(matches!(
            err("-- +goose Upp\n"),
            (1, Problem::UnknownAnnotation(_))
        ));
    }
}
