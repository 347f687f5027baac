//! Cluster start-up benchmark: time from `Cluster::start` until the server
//! accepts connections (template copy, port, postgres start), sequentially and
//! four at once; writes the "cluster" section of docs/benchmarks.md.
//!
//!     cargo run -p pg-locksmith-sandbox --example cluster_bench

use std::time::{Duration, Instant};

use locksmith_sandbox::Cluster;

const SEQUENTIAL: usize = 20;
const PARALLEL: usize = 4;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // The first start may have to run initdb for the template; time it apart.
    let first = Instant::now();
    let warm = Cluster::start().unwrap();
    let first = first.elapsed();
    let major = warm.major();
    drop(warm);

    let mut seq: Vec<Duration> = (0..SEQUENTIAL)
        .map(|_| Cluster::start().unwrap().ready_in())
        .collect();
    let started = Instant::now();
    let handles: Vec<_> = (0..PARALLEL)
        .map(|_| std::thread::spawn(|| Cluster::start().unwrap()))
        .collect();
    let clusters: Vec<Cluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let all_ready = started.elapsed();
    let mut par: Vec<Duration> = clusters.iter().map(|c| c.ready_in()).collect();
    drop(clusters);
    let stop = Instant::now();
    drop(Cluster::start().unwrap());
    let start_and_stop = stop.elapsed();

    let mut section = String::from("## cluster\n\n");
    section.push_str(&format!(
        "`cargo run -p pg-locksmith-sandbox --example cluster_bench` on {}, PostgreSQL {major}, profile {}.\n\n",
        locksmith_sandbox::bench_doc::machine(),
        locksmith_sandbox::bench_doc::profile()
    ));
    section.push_str(
        "| cluster ready (start → accepts connections) | median | p95 | max |\n|---|---|---|---|\n",
    );
    let max_seq = *seq.iter().max().unwrap();
    section.push_str(&format!(
        "| sequential, {SEQUENTIAL} starts | {} | {} | {} |\n",
        ms(pct(&mut seq, 0.5)),
        ms(pct(&mut seq, 0.95)),
        ms(max_seq)
    ));
    let max_par = *par.iter().max().unwrap();
    section.push_str(&format!(
        "| {PARALLEL} at once | {} | {} | {} |\n",
        ms(pct(&mut par, 0.5)),
        ms(pct(&mut par, 0.95)),
        ms(max_par)
    ));
    section.push_str(&format!(
        "\nFirst start in this process (template present or made now): {}; {PARALLEL} parallel clusters all ready after {}; one start plus stop and delete: {}.\n",
        ms(first),
        ms(all_ready),
        ms(start_and_stop)
    ));
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "cluster", &section).unwrap();
}
