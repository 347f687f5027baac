//! `locksmith demo`: the incident replayed on a throwaway cluster, plain
//! then guarded (and with `--replica` a fourth act on a hot standby). The
//! scenario is `locksmith_sandbox::demo`'s, the narration and tables
//! `render::demo`'s; this module runs the acts in order and prints `--json`.

use std::time::Duration;

use locksmith_pg::guard::GuardPolicy;
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::demo::standby::{self, StandbyHalf};
use locksmith_sandbox::demo::{self, Half, Migration, LEAKERS};
use locksmith_sandbox::incident::MIGRATION;
use serde::Serialize;

use crate::cli::DemoArgs;
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::{self, demo::Narration};

#[derive(Serialize)]
struct DemoResult {
    naive: Half,
    /// The guard without the terminate policy: gives up, traffic untouched.
    guarded_no_terminate: Half,
    /// The guard with `--terminate-idle-after 1s`: the leakers go, the migration completes.
    guarded: Half,
    /// `--replica`: the standby's reads under each half.
    #[serde(skip_serializing_if = "Option::is_none")]
    standby: Option<StandbyResult>,
}

#[derive(Serialize)]
struct StandbyResult {
    naive: StandbyHalf,
    /// The guard watching the standby (`apply --replica`).
    guarded: StandbyHalf,
}

pub async fn run(args: DemoArgs) -> CmdResult {
    let out = Narration::new(args.json);
    out.say(render::demo::STORY)?;
    let bin = BinDir::find(args.pg_bin.as_deref()).map_err(Failure::from)?;
    out.say(&format!(
        "Starting a throwaway PostgreSQL {} from {} …",
        bin.major,
        bin.path.display()
    ))?;
    let cluster = demo::start_cluster(bin).await?;
    out.say(&format!(
        "  ready in {} on 127.0.0.1:{} (deleted when the demo ends)\n",
        locksmith_core::duration::human(cluster.ready_in()),
        cluster.port()
    ))?;
    let mut show = |s: demo::Show<'_>| out.show(s);

    out.heading("1. The migration as the story ran it: plain ALTER TABLE, no timeout")?;
    out.say(&format!("   {MIGRATION};"))?;
    out.say(&format!(
        "   {LEAKERS} web sessions are idle in transaction (a scoped_session never removed); requests keep arriving.\n"
    ))?;
    let plain = Migration::Plain { cap: args.cap };
    let (naive, outcome) = demo::play(
        &cluster,
        "incident_naive",
        plain.clone(),
        Box::new(out.events().into_handler()),
        &mut show,
    )
    .await?;
    out.end_live();
    out.results("naive (plain ALTER)", &naive, &outcome)?;

    let guarded_cluster =
        demo::start_cluster(BinDir::find(args.pg_bin.as_deref()).map_err(Failure::from)?).await?;
    out.heading("\n2. The same migration under the guard (lock budget 200ms, give up after 5s)")?;
    out.say("   It looks before it queues: while sessions idle in transaction hold the table, it waits without queueing.\n")?;
    let policy = GuardPolicy {
        deadline: Duration::from_secs(5),
        ..GuardPolicy::default()
    };
    let guard = |policy: &GuardPolicy| Migration::Guarded {
        policy: policy.clone(),
        replicas: Vec::new(),
    };
    let (blocked, outcome) = demo::play(
        &guarded_cluster,
        "incident_guarded",
        guard(&policy),
        Box::new(out.events().into_handler()),
        &mut show,
    )
    .await?;
    out.end_live();
    out.results("guard, no termination", &blocked, &outcome)?;

    out.heading("\n3. Under the guard with --terminate-idle-after 1s")?;
    out.say("   Sessions idle in transaction for 1s that block the migration are terminated; nothing else is touched.\n")?;
    let terminating = GuardPolicy {
        terminate_idle_after: Some(Duration::from_secs(1)),
        ..policy.clone()
    };
    let (guarded, outcome) = demo::play(
        &guarded_cluster,
        "incident_terminate",
        guard(&terminating),
        Box::new(out.events().into_handler()),
        &mut show,
    )
    .await?;
    out.end_live();
    out.results("guard + terminate", &guarded, &outcome)?;

    let standby = match args.replica {
        false => None,
        true => {
            out.heading("\n4. A hot standby, with a 2.5s report on it every 3s (--replica)")?;
            out.say("   The app also reads academic_partners on the standby. The standby replays the ALTER's lock: it waits for the report,\n   and every read of the table there queues behind it. Both migrations start just after a report has started.\n")?;
            let replica = standby::start(&guarded_cluster)?;
            let (naive, outcome) = standby::play(
                &guarded_cluster,
                &replica,
                "incident_standby_naive",
                plain,
                Box::new(out.events().into_handler()),
                &mut show,
            )
            .await?;
            out.end_live();
            out.standby_results("plain ALTER, on the standby", &naive, &outcome)?;
            out.say("\n   The same under the guard watching the standby (`apply --replica URL`): it waits for a gap between reports.\n")?;
            let watching = Migration::Guarded {
                policy: GuardPolicy {
                    deadline: Duration::from_secs(10),
                    ..GuardPolicy::default()
                },
                replicas: vec![replica.settings("incident_standby_guarded", "locksmith")],
            };
            let (guarded, outcome) = standby::play(
                &guarded_cluster,
                &replica,
                "incident_standby_guarded",
                watching,
                Box::new(out.events().into_handler()),
                &mut show,
            )
            .await?;
            out.end_live();
            out.standby_results("guard --replica, on the standby", &guarded, &outcome)?;
            Some(StandbyResult { naive, guarded })
        }
    };

    if args.json {
        let result = DemoResult {
            naive,
            guarded_no_terminate: blocked,
            guarded,
            standby,
        };
        render::json(&mut crate::output::stdout(), &result)?;
    } else {
        out.say(&render::demo::side_by_side(&[
            ("plain ALTER", &naive),
            ("guard", &blocked),
            ("guard + terminate 1s", &guarded),
        ]))?;
        if let Some(s) = &standby {
            out.say(&render::demo::standby_side_by_side(&[
                ("plain ALTER", &s.naive),
                ("guard --replica", &s.guarded),
            ]))?;
        }
        out.say(&render::demo::diagnosis(&naive))?;
        out.say(render::demo::NEXT)?;
    }
    Ok(Outcome::Done)
}
