//! How a command fails: a stable code, a message, and the exit status.
//!
//! Printed as `error: <code>: <message>` on stderr. Exit codes:
//! 0 ok, 1 usage or local error (bad key file, bad arguments, I/O),
//! 2 rejected by the gateway (a 4xx answer, or a session L1 rejected),
//! 3 gateway unreachable, answering 5xx, or not answering in time.

use std::process::ExitCode;

use tandem_client::ClientError;

/// Exit status for usage and local errors.
pub const EXIT_LOCAL: u8 = 1;
/// Exit status when the gateway refused the request.
pub const EXIT_REJECTED: u8 = 2;
/// Exit status when the gateway could not serve the request.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub exit: u8,
    /// Stable snake_case code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A usage or local error with a specific code.
    pub fn new(exit: u8, code: &str, message: impl Into<String>) -> Failure {
        Failure { exit, code: code.into(), message: message.into() }
    }

    /// Wrong or missing arguments.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_LOCAL, "usage", message)
    }

    /// A local error (files, processes) from an `anyhow` chain.
    pub fn local(e: anyhow::Error) -> Failure {
        Failure::new(EXIT_LOCAL, "local", format!("{e:#}"))
    }

    /// Print it and turn it into the process exit status.
    pub fn report(self) -> ExitCode {
        tracing::debug!(code = %self.code, exit = self.exit, "command failed");
        eprintln!("error: {}: {}", self.code, self.message);
        ExitCode::from(self.exit)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Api { status, code, message } => {
                let exit = if status >= 500 { EXIT_UNAVAILABLE } else { EXIT_REJECTED };
                let message = if message.is_empty() { format!("HTTP {status}") } else { message };
                Failure { exit, code, message }
            }
            ClientError::Unreachable { url, reason } => {
                Failure::new(EXIT_UNAVAILABLE, "unreachable", format!("cannot reach the gateway at {url}: {reason}"))
            }
            ClientError::Decode(m) => Failure::new(EXIT_UNAVAILABLE, "bad_answer", format!("unexpected answer from the gateway: {m}")),
            ClientError::Timeout(m) => Failure::new(EXIT_UNAVAILABLE, "timeout", m),
        }
    }
}

impl From<tandem_client::keys::KeyError> for Failure {
    fn from(e: tandem_client::keys::KeyError) -> Failure {
        Failure::new(EXIT_LOCAL, "bad_key", e.to_string())
    }
}

/// Report a command-line parsing failure: help and version go to stdout
/// with status 0, usage errors are `error: usage: ...` with status 1.
pub fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(EXIT_LOCAL)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("error: usage: {text}");
            ExitCode::from(EXIT_LOCAL)
        }
    }
}
