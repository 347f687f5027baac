//! What the wrapped command runs with: its environment (`PGOPTIONS`,
//! `PGAPPNAME`, `DATABASE_URL`, depending on whether a pooler is in
//! between) and how reports show its command line (no passwords).

use std::process::Stdio;
use std::time::Duration;

/// The command as reports show it: a connection string among its arguments
/// loses its password.
pub fn shown_command(cmd: &[String]) -> String {
    cmd.iter()
        .map(|a| {
            if a.contains("://") || a.contains("password=") {
                crate::redact(a)
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The environment the command runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildEnv {
    /// The `application_name` its sessions carry (`PGAPPNAME`).
    pub app_name: String,
    /// The user's `PGAPPNAME`, replaced behind a pooler.
    pub replaced_app_name: Option<String>,
    /// Variables to set.
    pub set: Vec<(String, String)>,
    /// The `DATABASE_URL` the command sees (its own or the one set).
    pub database_url: Option<String>,
}

impl ChildEnv {
    /// The `DATABASE_URL` the command sees.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// `argv` to start with this environment, its stdout and stderr piped
    /// to us, killed should we drop it.
    pub(crate) fn command(&self, argv: &[String], stdin: Stdio) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(self.set.iter().map(|(k, v)| (k, v)))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// `PGOPTIONS` gains `-c lock_timeout=…` (`lock_wait`; last, so it wins
/// over an earlier one); `PGAPPNAME` is set unless the user set it;
/// `DATABASE_URL` becomes `given_url` (`--database-url`) only when the
/// command's environment has none. Behind a pooler (`pooled`), `PGOPTIONS` is left as
/// it is (the pooler would refuse or drop ours) and `PGAPPNAME` is always
/// ours, one per `attempt`: the watch finds the command's pooled sessions by
/// that name alone, so it must be one no application uses (and no backend
/// an earlier attempt left under its name: see [`crate::guard::watcher::Watcher::rename`]).
pub fn child_env(
    given_url: Option<&str>,
    lock_wait: Duration,
    pooled: bool,
    attempt: u32,
    env: &dyn Fn(&str) -> Option<String>,
) -> ChildEnv {
    let ours = if pooled {
        format!("locksmith-run-{}-{attempt}", std::process::id())
    } else {
        format!("locksmith-run-{}", std::process::id())
    };
    let users = env("PGAPPNAME").filter(|a| !a.is_empty());
    let (app_name, replaced_app_name) = match (users, pooled) {
        (Some(users), false) => (users, None),
        (users, _) => (ours, users),
    };
    let mut set = vec![("PGAPPNAME".to_string(), app_name.clone())];
    if !pooled {
        let budget = format!("-c lock_timeout={}ms", lock_wait.as_millis().max(1));
        let options = match env("PGOPTIONS").filter(|o| !o.trim().is_empty()) {
            Some(existing) => format!("{existing} {budget}"),
            None => budget,
        };
        set.insert(0, ("PGOPTIONS".to_string(), options));
    }
    let mut database_url = env("DATABASE_URL").filter(|u| !u.is_empty());
    if let (Some(url), None) = (given_url, &database_url) {
        set.push(("DATABASE_URL".to_string(), url.to_string()));
        database_url = Some(url.to_string());
    }
    ChildEnv {
        app_name,
        replaced_app_name,
        set,
        database_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_env_keeps_what_the_user_set() {
        let a = Some("postgres://h/db");
        let lock_timeout = Duration::from_millis(150);
        let none = |_: &str| None;
        let env = child_env(a, lock_timeout, false, 1, &none);
        assert!(env.app_name.starts_with("locksmith-run-"));
        assert!(env
            .set
            .contains(&("PGOPTIONS".into(), "-c lock_timeout=150ms".into())));
        assert!(env
            .set
            .contains(&("DATABASE_URL".into(), "postgres://h/db".into())));
        let user = |k: &str| match k {
            "PGOPTIONS" => Some("-c statement_timeout=5s".to_string()),
            "PGAPPNAME" => Some("deploy".to_string()),
            "DATABASE_URL" => Some("postgres://elsewhere/db".to_string()),
            _ => None,
        };
        let env = child_env(a, lock_timeout, false, 1, &user);
        assert_eq!(env.app_name, "deploy");
        assert!(env.set.contains(&(
            "PGOPTIONS".into(),
            "-c statement_timeout=5s -c lock_timeout=150ms".into()
        )));
        assert!(!env.set.iter().any(|(k, _)| k == "DATABASE_URL"));
        assert_eq!(env.database_url(), Some("postgres://elsewhere/db"));
    }

    #[test]
    fn behind_a_pooler_no_options_and_always_our_name() {
        let a = Some("postgres://pooler/db");
        let user = |k: &str| match k {
            "PGOPTIONS" => Some("-c statement_timeout=5s".to_string()),
            "PGAPPNAME" => Some("web-app".to_string()),
            _ => None,
        };
        let env = child_env(a, Duration::from_secs(1), true, 2, &user);
        assert!(env.app_name.starts_with("locksmith-run-"));
        assert!(
            env.app_name.ends_with("-2"),
            "one name per attempt: {env:?}"
        );
        assert_eq!(env.replaced_app_name.as_deref(), Some("web-app"));
        assert!(!env.set.iter().any(|(k, _)| k == "PGOPTIONS"), "{env:?}");
        assert!(env
            .set
            .contains(&("PGAPPNAME".into(), env.app_name.clone())));
        assert_eq!(env.database_url(), Some("postgres://pooler/db"));
    }

    #[test]
    fn the_command_is_shown_without_passwords() {
        let cmd: Vec<String> = ["psql", "postgres://u:secret@h/db", "-c", "SELECT 1"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            shown_command(&cmd),
            "psql postgres://u:***@h/db -c SELECT 1"
        );
    }
}
