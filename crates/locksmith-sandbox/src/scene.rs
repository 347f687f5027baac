//! A piece of work (a migration) under simulated traffic: sessions leaked
//! idle in transaction, request traffic started before the work so the
//! baseline shows and kept running after it so the recovery shows, then the
//! traffic's report. `demo` and rehearsals both stage their runs with it.

use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;

use crate::traffic::{LeakedSessions, Traffic, TrafficProfile, TrafficReport};
use crate::Error;

/// How the scene is set.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The application's requests.
    pub traffic: TrafficProfile,
    /// Sessions to leave idle in transaction, and the table each reads first.
    pub leaks: Option<(usize, String)>,
    /// The leaked sessions' `application_name`.
    pub leak_name: String,
    /// Traffic before the work starts.
    pub warm_up: Duration,
    /// Traffic after the work ends.
    pub cool_down: Duration,
}

/// What happened in the scene.
#[derive(Debug)]
pub struct Played<T> {
    /// What the work returned.
    pub result: T,
    /// What the traffic saw.
    pub report: TrafficReport,
    /// The work's start and end, in ms from the start of the traffic.
    pub work_ms: (u64, u64),
}

impl Scene {
    /// Leaks the sessions, starts the traffic on `app`, warms up, runs
    /// `work` (handed the running traffic and the instant it started),
    /// cools down, lets the leaked sessions go and stops the traffic.
    pub async fn play<T>(
        &self,
        app: &ConnectionSettings,
        work: impl AsyncFnOnce(&Traffic, Instant) -> T,
    ) -> Result<Played<T>, Error> {
        let leaked = match &self.leaks {
            Some((n, table)) if *n > 0 => Some(
                LeakedSessions::open(&app.with_application_name(&self.leak_name), *n, table)
                    .await?,
            ),
            _ => None,
        };
        let traffic = Traffic::start(app.clone(), self.traffic.clone());
        let origin = Instant::now() - traffic.elapsed();
        tokio::time::sleep(self.warm_up).await;
        let begun = origin.elapsed().as_millis() as u64;
        let result = work(&traffic, origin).await;
        let ended = origin.elapsed().as_millis() as u64;
        tokio::time::sleep(self.cool_down).await;
        drop(leaked);
        Ok(Played {
            result,
            report: traffic.stop().await,
            work_ms: (begun, ended),
        })
    }
}
