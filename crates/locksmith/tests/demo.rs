//! `locksmith demo --json`: the incident replayed, then prevented.

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_shows_the_outage_and_the_guard_preventing_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["demo", "--json", "--cap", "4s"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is only JSON");
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
    for run in [blocked, guarded] {
        assert!(run["worst_second"]["served"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["served_in_time"], run["requests"], "{run}");
    }
}
