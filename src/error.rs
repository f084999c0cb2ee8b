//! Error classification for the CLI's exit codes.
//!
//! Orchestration code returns `anyhow::Result`; an error caused by the user's input (a bad
//! file, a bad flag, a bad config key) carries a [`BadInput`] somewhere in its chain, which the
//! binary maps to exit code 2. Every other failure exits with 1.

use std::fmt;

/// Marker error: the user's input (file, config or CLI value) is wrong.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Builds an `anyhow::Error` tagged as bad input.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// True when any error in the chain is a [`BadInput`].
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<BadInput>())
}

/// `bail!` for bad input: `input_bail!("{path}:{line}: expected ...")`.
#[macro_export]
macro_rules! input_bail {
    ($($arg:tt)*) => {
        return Err($crate::error::bad_input(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn bad_input_is_found_through_context() {
        let err = Err::<(), _>(bad_input("x.txt:3: not an integer")).context("loading dataset").unwrap_err();
        assert!(is_bad_input(&err));
        assert!(!is_bad_input(&anyhow::anyhow!("disk full")));
    }
}
