//! Terminal styling that respects `NO_COLOR` and non-terminals: colour only
//! when writing to a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;

/// Whether to emit ANSI colours on stdout.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// A small palette; every method returns plain text when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset.
    pub fn detect() -> Self {
        Style {
            on: color_enabled(),
        }
    }

    /// No colour at all (files, tests).
    pub fn plain() -> Self {
        Style { on: false }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Something wrong.
    pub fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }
    /// Something to watch.
    pub fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }
    /// Something fine.
    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }
    /// Headings.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    /// Secondary detail.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}
