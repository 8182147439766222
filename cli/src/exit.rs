//! The CLI's failures and their exit codes (documented in `--help` and the
//! README).

use std::fmt;

use safeguard_sdk::sps::SpsError;
use safeguard_sdk::Error;

/// Exit code: the command succeeded.
pub const OK: i32 = 0;
/// Exit code: anything not classified below.
pub const OTHER: i32 = 1;
/// Exit code: the command line was wrong (clap's own code for usage errors).
pub const USAGE: i32 = 2;
/// Exit code: not signed in, the token was refused or ran out, the sign-in failed.
pub const AUTHENTICATION: i32 = 3;
/// Exit code: signed in, but not allowed (HTTP 403).
pub const AUTHORIZATION: i32 = 4;
/// Exit code: no such object (HTTP 404).
pub const NOT_FOUND: i32 = 5;
/// Exit code: the appliance refused the request as invalid (HTTP 400, 409, 422, ...).
pub const INVALID: i32 = 6;
/// Exit code: the appliance could not be reached (connection, TLS, timeout, proxy).
pub const TRANSPORT: i32 = 7;

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure
  2  usage: a wrong command line, a missing or unreadable file
  3  authentication: not signed in, token refused or expired, sign-in failed
  4  authorization: the appliance forbids it (HTTP 403)
  5  not found (HTTP 404)
  6  invalid request: the appliance refused the request (HTTP 400, 409, 422, ...)
  7  transport: connection, TLS, timeout or proxy failure";

/// A failure of a command.
#[derive(Debug)]
pub enum CliError {
    /// The SDK's failure (classified by variant).
    Sdk(Error),
    /// A wrong command line or input file.
    Usage(String),
    /// The stored sign-in cannot be used or renewed.
    SignInAgain {
        /// The profile to sign in again.
        profile: String,
        /// Why.
        reason: String,
    },
    /// Anything else.
    Other(String),
    /// stdout was closed by its reader (`| head`): the output is no longer
    /// wanted, which is not a failure.
    BrokenPipe,
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Sdk(e) => sdk_exit_code(e),
            CliError::Usage(_) => USAGE,
            CliError::SignInAgain { .. } => AUTHENTICATION,
            CliError::Other(_) => OTHER,
            CliError::BrokenPipe => OK,
        }
    }
}

/// Maps an SDK error to an exit code by what happened.
pub fn sdk_exit_code(e: &Error) -> i32 {
    match e {
        Error::Authentication(_)
        | Error::Sts(_)
        | Error::CannotRefresh { .. }
        | Error::SignedOut
        | Error::SignInIncomplete(_) => AUTHENTICATION,
        Error::Authorization(_) => AUTHORIZATION,
        Error::NotFound(_) => NOT_FOUND,
        Error::Transport(_)
        | Error::Tls(_)
        | Error::Timeout(_)
        | Error::Proxy { .. }
        | Error::Redirect(_) => TRANSPORT,
        Error::Config(_) | Error::Sps(SpsError::InvalidQuery(_)) => USAGE,
        Error::Sps(SpsError::CommitMessageRequired | SpsError::TransactionClosed) => INVALID,
        Error::Sps(SpsError::SessionExpiredInTransaction(_)) => AUTHENTICATION,
        _ => match e.status().map(|s| s.as_u16()) {
            Some(401) => AUTHENTICATION,
            Some(403) => AUTHORIZATION,
            Some(404) => NOT_FOUND,
            Some(400..=499) => INVALID,
            _ => OTHER,
        },
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Sdk(e) => write!(f, "{e}"),
            CliError::Usage(m) | CliError::Other(m) => f.write_str(m),
            CliError::BrokenPipe => f.write_str("stdout was closed"),
            CliError::SignInAgain { profile, reason } => write!(
                f,
                "{reason}; sign in again: safeguard login --profile {profile}"
            ),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Sdk(e)
    }
}

/// `Result` of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// A usage error from anything displayable.
pub fn usage(message: impl fmt::Display) -> CliError {
    CliError::Usage(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_their_codes() {
        assert_eq!(sdk_exit_code(&Error::SignedOut), AUTHENTICATION);
        assert_eq!(sdk_exit_code(&Error::Timeout("x".into())), TRANSPORT);
        assert_eq!(sdk_exit_code(&Error::Config("x".into())), USAGE);
        assert_eq!(
            sdk_exit_code(&SpsError::InvalidQuery("AND".into()).into()),
            USAGE
        );
        assert_eq!(
            sdk_exit_code(&SpsError::CommitMessageRequired.into()),
            INVALID
        );
        assert_eq!(CliError::Other("x".into()).exit_code(), OTHER);
        let again = CliError::SignInAgain {
            profile: "p".into(),
            reason: "expired".into(),
        };
        assert_eq!(again.exit_code(), AUTHENTICATION);
        assert!(again.to_string().contains("safeguard login --profile p"));
    }
}
