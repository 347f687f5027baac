//! Simulated application traffic and leaked sessions, as in the incident.
//!
//! [`Traffic`] is an open-loop request generator: requests arrive at a fixed
//! rate whatever the database does (web traffic does not slow down because
//! the database did), each takes a pooled connection, runs the app's query
//! and gives the connection back. A request slower than the gateway timeout
//! counts as a timeout (the story's 504s). Every request's latency is
//! recorded, so a stall shows up as what users saw.
//!
//! [`LeakedSessions`] reproduces the bug: a `scoped_session` that is never
//! removed leaves its connection *idle in transaction*, holding an
//! `AccessShareLock` on every table it read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locksmith_pg::Connection;
use locksmith_pg::ConnectionSettings;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Error;

/// How the simulated application behaves.
#[derive(Debug, Clone)]
pub struct TrafficProfile {
    /// Requests per second, all queries together.
    pub rate: f64,
    /// Connections the app's pool may open.
    pub pool_size: usize,
    /// The queries requests run, each in its own transaction, in proportion
    /// to their shares; a `$1` in one receives an `int4` from 1 to `keys`.
    pub queries: Vec<Query>,
    /// The largest number a query's `$1` receives.
    pub keys: i32,
    /// A request slower than this is a gateway timeout.
    pub gateway_timeout: Duration,
}

impl Default for TrafficProfile {
    fn default() -> Self {
        TrafficProfile {
            rate: 40.0,
            pool_size: 20,
            queries: vec![Query {
                sql: "SELECT id, name, informal_name FROM academic_partners WHERE id = $1".into(),
                share: 1.0,
            }],
            keys: 250,
            gateway_timeout: Duration::from_secs(5),
        }
    }
}

/// One kind of request: its SQL and its share of the requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The SQL; `$1`, when present, receives a number.
    pub sql: String,
    /// Its weight among the profile's queries (e.g. its own rate per second).
    pub share: f64,
}

/// Picks queries in proportion to their shares, evenly spread (smooth
/// weighted round robin: no randomness, so runs are comparable).
struct Mix {
    shares: Vec<f64>,
    credit: Vec<f64>,
}

impl Mix {
    fn new(queries: &[Query]) -> Mix {
        Mix {
            shares: queries.iter().map(|q| q.share.max(0.0)).collect(),
            credit: vec![0.0; queries.len()],
        }
    }

    fn next(&mut self) -> usize {
        let total: f64 = self.shares.iter().sum();
        for (c, s) in self.credit.iter_mut().zip(&self.shares) {
            *c += s;
        }
        let best = (0..self.credit.len())
            .max_by(|&a, &b| self.credit[a].total_cmp(&self.credit[b]))
            .unwrap_or(0);
        if let Some(c) = self.credit.get_mut(best) {
            *c -= total;
        }
        best
    }
}

/// One request's fate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// When it arrived, from the start of the traffic.
    pub at_ms: u64,
    /// How long the user waited for it.
    pub latency_ms: u64,
    /// Whether it failed (connection refused, query error).
    pub failed: bool,
}

/// What the traffic saw, summarised.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficReport {
    /// Requests that arrived.
    pub requests: usize,
    /// Requests slower than the gateway timeout, or never answered.
    pub timeouts: usize,
    /// Requests that failed outright.
    pub errors: usize,
    /// The longest any request waited.
    pub max_stall_ms: u64,
    /// 99th percentile latency.
    pub p99_ms: u64,
    /// Median latency.
    pub p50_ms: u64,
    /// Most connections the app had open at once.
    pub peak_connections: usize,
    /// Every request, in arrival order.
    pub samples: Vec<Sample>,
    /// The first few errors' messages, for diagnostics.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_errors: Vec<String>,
}

/// How many error messages a report keeps.
const KEPT_ERRORS: usize = 5;

/// What is happening right now, for a live line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveStats {
    /// Requests answered so far.
    pub served: usize,
    /// Requests waiting for an answer now.
    pub in_flight: usize,
    /// The longest wait so far, counting requests still waiting.
    pub worst_ms: u64,
    /// Connections the app has open.
    pub connections: usize,
}

#[derive(Default)]
struct Shared {
    samples: Vec<Sample>,
    first_errors: Vec<String>,
    in_flight: Vec<(u64, Instant)>,
    next_id: u64,
}

/// A running request generator. Stop it with [`Traffic::stop`].
pub struct Traffic {
    started: Instant,
    shared: Arc<Mutex<Shared>>,
    connections: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
    driver: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Traffic {
    /// Starts sending requests to `settings` with `profile`.
    pub fn start(settings: ConnectionSettings, profile: TrafficProfile) -> Traffic {
        let started = Instant::now();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let timeout = profile.gateway_timeout;
        let driver = {
            let shared = shared.clone();
            let connections = connections.clone();
            let peak = peak.clone();
            tokio::spawn(async move {
                let pool = Arc::new(Pool::new(settings, profile.pool_size, connections, peak));
                let queries = Arc::new(profile.queries);
                let mut mix = Mix::new(&queries);
                let keys = profile.keys.max(1);
                let interval = Duration::from_secs_f64(1.0 / profile.rate.max(0.1));
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut requests = JoinSet::new();
                let mut n: i32 = 0;
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    n = n % keys + 1;
                    let which = mix.next();
                    let id = {
                        let mut s = shared.lock().unwrap();
                        s.next_id += 1;
                        let id = s.next_id;
                        s.in_flight.push((id, Instant::now()));
                        id
                    };
                    let (pool, queries, shared) = (pool.clone(), queries.clone(), shared.clone());
                    requests.spawn(async move {
                        let arrived = Instant::now();
                        let error = match queries.get(which) {
                            Some(q) => pool.request(&q.sql, n).await.err(),
                            None => Some("no such query".into()),
                        };
                        let failed = error.is_some();
                        let mut s = shared.lock().unwrap();
                        if let Some(e) = error.filter(|_| s.first_errors.len() < KEPT_ERRORS) {
                            s.first_errors.push(e);
                        }
                        s.in_flight.retain(|(i, _)| *i != id);
                        s.samples.push(Sample {
                            at_ms: arrived.duration_since(started).as_millis() as u64,
                            latency_ms: arrived.elapsed().as_millis() as u64,
                            failed,
                        });
                    });
                    while requests.try_join_next().is_some() {}
                }
                // Give stuck requests a moment to finish; what is still stuck is abandoned
                // (and counted as a timeout by `stop`).
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while requests.join_next().await.is_some() {}
                })
                .await;
                requests.abort_all();
            })
        };
        Traffic {
            started,
            shared,
            connections,
            peak,
            stop,
            driver,
            timeout,
        }
    }

    /// What is happening now.
    pub fn live(&self) -> LiveStats {
        let s = self.shared.lock().unwrap();
        let worst_done = s.samples.iter().map(|x| x.latency_ms).max().unwrap_or(0);
        let worst_open = s
            .in_flight
            .iter()
            .map(|(_, t)| t.elapsed().as_millis() as u64)
            .max()
            .unwrap_or(0);
        LiveStats {
            served: s.samples.len(),
            in_flight: s.in_flight.len(),
            worst_ms: worst_done.max(worst_open),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }

    /// How long the traffic has been running.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops sending, waits briefly for requests in flight, and summarises.
    pub async fn stop(self) -> TrafficReport {
        let _ = self.stop.send(true);
        let _ = self.driver.await;
        let s = self.shared.lock().unwrap();
        let mut samples = s.samples.clone();
        // Requests never answered waited until now: count them as they are.
        for (_, arrived) in &s.in_flight {
            samples.push(Sample {
                at_ms: arrived.duration_since(self.started).as_millis() as u64,
                latency_ms: arrived.elapsed().as_millis() as u64,
                failed: true,
            });
        }
        samples.sort_by_key(|x| x.at_ms);
        let mut report = summarise(samples, self.timeout, self.peak.load(Ordering::Relaxed));
        report.first_errors = s.first_errors.clone();
        report
    }
}

/// Summarises samples: percentiles, timeouts, worst stall.
pub fn summarise(
    samples: Vec<Sample>,
    gateway_timeout: Duration,
    peak_connections: usize,
) -> TrafficReport {
    let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_ms).collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    let limit = gateway_timeout.as_millis() as u64;
    TrafficReport {
        requests: samples.len(),
        timeouts: samples.iter().filter(|s| s.latency_ms > limit).count(),
        errors: samples
            .iter()
            .filter(|s| s.failed && s.latency_ms <= limit)
            .count(),
        max_stall_ms: latencies.last().copied().unwrap_or(0),
        p99_ms: pct(0.99),
        p50_ms: pct(0.50),
        peak_connections,
        samples,
        first_errors: Vec::new(),
    }
}

/// A minimal connection pool, like the app's: at most `size` connections,
/// opened on demand, returned after each request.
struct Pool {
    settings: ConnectionSettings,
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Pool {
    fn new(
        settings: ConnectionSettings,
        size: usize,
        open: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    ) -> Pool {
        Pool {
            settings,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
            open,
            peak,
        }
    }

    /// Runs `query` on a pooled connection; the error's text when it fails.
    async fn request(&self, query: &str, n: i32) -> Result<(), String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let pooled = self.idle.lock().unwrap().pop();
        let client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => {
                let c = self.settings.connect().await.map_err(|e| e.to_string())?;
                let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
                self.peak.fetch_max(now, Ordering::Relaxed);
                c
            }
        };
        let result = if query.contains("$1") {
            client.query(query, &[&n]).await
        } else {
            client.query(query, &[]).await
        };
        if client.is_closed() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.idle.lock().unwrap().push(client);
        }
        result
            .map(|_| ())
            .map_err(|e| locksmith_pg::Error::query("the app's query", e).to_string())
    }
}

/// Sessions left *idle in transaction*, as an unremoved SQLAlchemy
/// `scoped_session` leaves them: `BEGIN`, one `SELECT`, then nothing.
pub struct LeakedSessions {
    clients: Vec<Connection>,
    pids: Vec<i32>,
}

impl LeakedSessions {
    /// Opens `count` sessions that each read `table` inside a transaction and stay idle.
    pub async fn open(
        settings: &ConnectionSettings,
        count: usize,
        table: &str,
    ) -> Result<LeakedSessions, Error> {
        let read = format!(
            "SELECT * FROM {} LIMIT 10",
            locksmith_core::quote::qualified(table)
        );
        Self::holding(settings, count, &read).await
    }

    /// Opens `count` sessions that each run `statement` (one statement, e.g.
    /// a `SELECT … FOR UPDATE` taking row locks) inside a transaction and stay idle.
    pub async fn holding(
        settings: &ConnectionSettings,
        count: usize,
        statement: &str,
    ) -> Result<LeakedSessions, Error> {
        let sql_error = |e| Error::Sql {
            context: "opening a leaked session".into(),
            source: e,
        };
        // The pid inside the transaction: behind a transaction pooler that
        // is the backend the session keeps.
        let sql = format!("BEGIN; SELECT pg_backend_pid(); {statement};");
        let mut leaked = LeakedSessions {
            clients: Vec::with_capacity(count),
            pids: Vec::with_capacity(count),
        };
        for _ in 0..count {
            let client = settings.connect().await?;
            // One round trip: any later query would reset the session's idle time.
            let rows = client.simple_query(&sql).await.map_err(sql_error)?;
            let pid: i32 = rows
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                    _ => None,
                })
                .unwrap_or_default();
            leaked.clients.push(client);
            leaked.pids.push(pid);
        }
        Ok(leaked)
    }

    /// The sessions' backend pids.
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    /// The app ends its transactions at last (`COMMIT`), releasing their locks.
    pub async fn commit(&self) -> Result<(), Error> {
        for client in &self.clients {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| Error::Sql {
                    context: "ending a leaked session's transaction".into(),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// How many of the sessions are still connected (a terminated one is closed).
    pub fn alive(&self) -> usize {
        self.clients.iter().filter(|c| !c.is_closed()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_shares_evenly() {
        let q = |share| Query {
            sql: String::new(),
            share,
        };
        let mut mix = Mix::new(&[q(3.0), q(1.0)]);
        let picks: Vec<usize> = (0..8).map(|_| mix.next()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6);
        assert_ne!(picks[..4], [0, 0, 0, 0], "spread, not bunched: {picks:?}");
    }
}
