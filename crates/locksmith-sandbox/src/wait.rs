//! Waiting for a condition instead of sleeping a fixed time: a test that
//! sleeps "long enough" fails on a loaded machine and wastes time on an idle
//! one. [`until`] polls the condition every few milliseconds up to a generous
//! bound ([`BOUND`]) and says what never happened.
//!
//! ```no_run
//! # async fn f(client: locksmith_pg::Connection) -> Result<(), locksmith_sandbox::Error> {
//! use locksmith_sandbox::wait;
//! wait::until(wait::BOUND, "the leaker to go", || async {
//!     let n: i64 = client
//!         .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky'", &[])
//!         .await
//!         .unwrap()
//!         .get(0);
//!     n == 0
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Error;

/// Long enough that only a real failure exceeds it on a busy 2-core machine.
pub const BOUND: Duration = Duration::from_secs(30);

/// How often the condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// Checks `condition` until it holds, or fails with [`Error::Timeout`]
/// naming `what` once `bound` has passed.
pub async fn until<F, Fut>(bound: Duration, what: &str, mut condition: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{what} did not happen within {}",
                locksmith_core::duration::human(bound)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `table` can be read over `settings`: a standby has
/// replayed its creation (and its database's), say.
pub async fn readable(
    settings: &locksmith_pg::ConnectionSettings,
    table: &str,
) -> Result<(), Error> {
    let sql = format!("SELECT count(*) FROM {table}");
    until(BOUND, &format!("{table} to be readable"), || async {
        match settings.connect().await {
            Ok(c) => c.batch_execute(&sql).await.is_ok(),
            Err(_) => false,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds_and_names_what_never_did() {
        let started = Instant::now();
        until(BOUND, "a tenth of a second to pass", || async {
            started.elapsed() > Duration::from_millis(100)
        })
        .await
        .unwrap();
        let err = until(Duration::from_millis(50), "never", || async { false })
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("never did not happen within"),
            "{err}"
        );
    }
}
