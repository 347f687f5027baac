//! How serious a finding is: one scale for lint's findings and `doctor`'s.

use std::fmt;

use serde::Serialize;

/// How serious a finding is, least first. Lint errors fail `locksmith lint`
/// (exit 1); `doctor` exits 1 on a warning or worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; requires no action and never fails a build.
    Info,
    /// Probably unsafe, or makes an outage likely: review it.
    Warning,
    /// Blocks traffic, fails outright, or the outage is happening: fix it
    /// (or suppress a lint finding with a reason).
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}
