//! `locksmith demo --json`: the incident replayed, then prevented.

use std::process::Command;

use serde_json::Value;

/// `locksmith demo --json ARGS`: exit 0 and its JSON.
fn demo_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["demo", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is only JSON")
}

#[test]
fn demo_shows_the_outage_and_the_guard_preventing_it() {
    let result = demo_json(&["--cap", "4s"]);
    let naive = &result["naive"];
    for key in [
        "max_stall_ms",
        "p99_ms",
        "requests",
        "timeouts",
        "completed",
    ] {
        assert!(naive.get(key).is_some(), "naive lacks {key}: {naive}");
        assert!(result["guarded"].get(key).is_some(), "guarded lacks {key}");
    }
    // The outage: requests waited as long as the ALTER queued (the cap).
    assert!(naive["max_stall_ms"].as_u64().unwrap() > 2000, "{naive}");
    assert_eq!(naive["completed"], false);
    // While the ALTER queued, a whole second went by with nothing answered
    // although requests kept arriving: served against offered shows it.
    assert_eq!(naive["worst_second"]["served"], 0, "{naive}");
    assert!(
        naive["worst_second"]["offered"].as_u64().unwrap() > 0,
        "{naive}"
    );
    // The guard without termination gives up and never makes traffic wait.
    let blocked = &result["guarded_no_terminate"];
    assert_eq!(blocked["completed"], false);
    assert!(
        blocked["max_stall_ms"].as_u64().unwrap() < 1000,
        "{blocked}"
    );
    assert_eq!(blocked["timeouts"], 0);
    // With the terminate policy it completes, still without stalling traffic.
    let guarded = &result["guarded"];
    assert_eq!(guarded["completed"], true);
    assert!(
        guarded["max_stall_ms"].as_u64().unwrap() < 1000,
        "{guarded}"
    );
    assert_eq!(guarded["timeouts"], 0);
    // Without --replica there is no fourth act.
    assert!(result.get("standby").is_none(), "{result}");
    for run in [blocked, guarded] {
        assert!(run["worst_second"]["served"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["served_in_time"], run["requests"], "{run}");
    }
}

/// `demo --replica`: on a hot standby with a long report, the plain ALTER
/// stalls the standby's reads until the report ends; the guard watching the
/// standby waits for a gap between reports and they keep flowing.
#[test]
fn demo_replica_shows_standby_reads_stalled_plain_and_flowing_guarded() {
    let result = demo_json(&["--cap", "2s", "--replica"]);
    let standby = &result["standby"];
    let (naive, guarded) = (&standby["naive"], &standby["guarded"]);
    // The plain ALTER is applied on the primary at once, and its replay on
    // the standby waits for the report (started 0.1-0.4 s before, 2.5 s
    // long): the standby's reads of the table queue behind it.
    assert_eq!(naive["completed"], true, "{standby}");
    assert!(naive["worst_read_ms"].as_u64().unwrap() > 1500, "{standby}");
    assert!(naive["replayed_ms"].as_u64().unwrap() > 1500, "{standby}");
    // The guard waited for the report to end (it started just after one)
    // and the standby's reads never waited for more than the migration.
    assert_eq!(guarded["completed"], true, "{standby}");
    assert!(
        guarded["migration_ms"].as_u64().unwrap() > 1000,
        "{standby}"
    );
    assert!(
        guarded["worst_read_ms"].as_u64().unwrap() < 1000,
        "{standby}"
    );
    assert!(guarded["reads"].as_u64().unwrap() > 0, "{standby}");
}
