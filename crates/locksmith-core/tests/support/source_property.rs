//! The property both fuzzers check on migration sources, in one place: any
//! folder (paths and contents) → `read_folder` and `read_file` without a
//! panic; every position (up section, blocks, statements of the blanked
//! text, error lines) inside its file; the blanked text the file's length and
//! lines. Used by `tests/source_fuzz_smoke.rs` (stable) and
//! `fuzz/fuzz_targets/migration_sources.rs` (cargo fuzz).

use locksmith_core::analysis::{analyze, MAX_PG_VERSION};
use locksmith_core::source::{group_blocks, read_file, read_folder, SourceError, SourceFile};

/// Splits fuzz input into a folder: files separated by `\u{1}`, each
/// `path\ncontent` (a file without a newline is a path with no content).
pub fn folder(input: &str) -> Vec<SourceFile> {
    input
        .split('\u{1}')
        .map(|f| {
            let (path, content) = f.split_once('\n').unwrap_or((f, ""));
            SourceFile {
                path: path.to_string(),
                content: content.to_string(),
            }
        })
        .collect()
}

/// Runs the readers on `files`; panics if any position falls outside its file.
pub fn check(files: &[SourceFile]) {
    for f in files {
        let lines = f.content.split('\n').count() as u32;
        match read_file(&f.content) {
            Ok(s) => {
                assert!(f.content.get(s.up.clone()).is_some(), "{:?}", s.up);
                for b in &s.blocks {
                    assert!(s.up.start <= b.start && b.end <= s.up.end, "{b:?}");
                }
                let blanked = s.blanked(&f.content);
                assert_eq!(blanked.len(), f.content.len());
                assert_eq!(blanked.split('\n').count() as u32, lines);
            }
            Err((line, _)) => assert!(line >= 1 && line <= lines, "line {line} of {lines}"),
        }
    }
    match read_folder(files) {
        Ok(migrations) => {
            for m in migrations {
                let file = files
                    .iter()
                    .find(|f| f.path == m.path)
                    .expect("a listed file");
                assert_eq!(m.sql.len(), file.content.len());
                assert_eq!(m.up_sql(), &file.content[m.up.clone()]);
                if let Ok(statements) = analyze(&m.sql, MAX_PG_VERSION) {
                    for s in group_blocks(statements, &m.blocks, &m.sql) {
                        assert!(
                            m.up.start <= s.offset && s.offset <= m.up.end,
                            "{}",
                            s.offset
                        );
                        assert!(file.content.get(s.offset..).is_some());
                        assert!(
                            file.content.contains(s.sql.as_str())
                                || m.blocks.iter().any(|b| b.contains(&s.offset))
                        );
                    }
                }
            }
        }
        Err(SourceError::File { path, line, .. }) => {
            let file = files
                .iter()
                .find(|f| f.path == path)
                .expect("a listed file");
            assert!(line >= 1 && line as usize <= file.content.split('\n').count());
        }
        Err(SourceError::NoMigrations) => {}
    }
}
