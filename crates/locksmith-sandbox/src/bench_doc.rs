//! `docs/benchmarks.md`, written by the benchmarks themselves: each owns one
//! section between `<!-- name:start -->` and `<!-- name:end -->` and rewrites
//! only that, so figures in the docs always come from a run, never by hand.
//! Also what every benchmark reads and reports the same way: `BENCH_ROWS`,
//! the machine, its load, the profile.

use std::path::{Path, PathBuf};

/// The table sizes to measure: `BENCH_ROWS` (comma-separated row counts,
/// e.g. `100000,1000000`), else `default` (the same form).
///
/// # Panics
/// When a count is not a number: a benchmark has no one to ask.
pub fn rows(default: &str) -> Vec<u64> {
    let given = std::env::var("BENCH_ROWS").unwrap_or_else(|_| default.into());
    given
        .split(',')
        .map(|s| {
            s.trim().parse().unwrap_or_else(|_| {
                panic!(
                    "BENCH_ROWS: comma-separated row counts (e.g. 100000,1000000), not {given:?}"
                )
            })
        })
        .collect()
}

/// The load average over 1, 5 and 15 minutes, as `/proc/loadavg` says
/// (`"1.02 0.87 0.80"`), for a report to say how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The program `name` as found on `PATH`, or `None`: a benchmark that
/// compares with a peer tool skips that row, saying so, when it is missing.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Replaces section `name` of the benchmarks file at `path` (created if absent).
pub fn write_section(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path)
        .unwrap_or_else(|_| "# Benchmarks\n\nEach section is written by the benchmark it names; rerun it to refresh.\n".into());
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let block = format!("{start}\n{body}{end}");
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    };
    std::fs::write(path, new)
}

/// The cargo profile the benchmark was built with, as reports name it. Built
/// in the same profile as the benchmark that calls it, so it answers for it.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    }
}

/// One line describing this machine for benchmark reports: cores and CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024 / 1024)
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem_gib} GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("bench-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.md");
        write_section(&path, "a", "one\n").unwrap();
        write_section(&path, "b", "two\n").unwrap();
        write_section(&path, "a", "three\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("<!-- a:start -->\nthree\n<!-- a:end -->"));
        assert!(text.contains("two"));
        assert!(!text.contains("one"));
        assert!(
            text.find("three").unwrap() < text.find("two").unwrap(),
            "order kept"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
