//! The gateway's errors: one stable machine code and an HTTP status for every
//! way a request can fail. Workflow rejections keep the core's codes; the
//! gateway adds its own for locks, limits and availability.

use serde::Serialize;
use tandem_core::{Code, Rejection};

/// What kind of failure, which decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: a signature does not verify.
    Unauthorized,
    /// 403: the signer may not do this.
    Forbidden,
    /// 404: no such thing.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: conflicts with the current state (locks, sequence).
    Conflict,
    /// 413: over a size limit.
    TooLarge,
    /// 422: refused by the workflow.
    Rejected,
    /// 429: too many requests.
    RateLimited,
    /// 503: the gateway cannot take more work now.
    Unavailable,
    /// 500: a bug or an infrastructure failure.
    Internal,
}

impl Kind {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Kind::BadRequest => 400,
            Kind::Unauthorized => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Conflict => 409,
            Kind::TooLarge => 413,
            Kind::Rejected => 422,
            Kind::RateLimited => 429,
            Kind::Unavailable => 503,
            Kind::Internal => 500,
        }
    }
}

/// A failed request: kind, stable code, human message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct GwError {
    /// Decides the status.
    pub kind: Kind,
    /// Stable snake_case code.
    pub code: &'static str,
    /// What exactly went wrong.
    pub message: String,
}

impl GwError {
    /// A gateway error.
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        Self { kind, code, message: message.into() }
    }
    /// Another session holds the package.
    pub fn package_locked(package: &str) -> Self {
        Self::new(Kind::Conflict, "package_locked", format!("package {package} is locked by another open session"))
    }
    /// A seq of `session` already holds another step (a re-send must be
    /// byte-identical to get the original answer).
    pub fn seq_taken(session: impl std::fmt::Display, seq: u64) -> Self {
        Rejection::new(Code::BadSequence, format!("seq {seq} of session {session} was taken by another step")).into()
    }
    /// No such session at this gateway.
    pub fn unknown_session(id: impl std::fmt::Display) -> Self {
        Self::new(Kind::NotFound, "unknown_session", format!("no session {id} at this gateway"))
    }
}

/// The status for a core rejection code.
pub fn kind_of(code: Code) -> Kind {
    use Code::*;
    match code {
        Malformed | InvalidPayload | WrongChain | BadBatch | WrongSession | UnknownAction | WeakKey => Kind::BadRequest,
        BadSignature => Kind::Unauthorized,
        UnknownActor | ActorRevoked | RoleDenied | NotSessionOwner | NotAdmin | GatewayMismatch | UnknownGateway | GatewayRevoked => {
            Kind::Forbidden
        }
        UnknownSession => Kind::NotFound,
        BadSequence | SessionExists | Duplicate | SessionFull | KeyExists | BadNonce | SessionClosed => Kind::Conflict,
        TooLarge => Kind::TooLarge,
        UnknownPackage
        | PackageExists
        | WrongStage
        | ManifestSignatureInvalid
        | ManifestMismatch
        | QcIssuesRequired
        | UnknownCourier
        | NotAssignedCourier
        | HistoryFull
        | StaleTime
        | OutcomeMismatch => Kind::Rejected,
    }
}

impl From<Rejection> for GwError {
    fn from(r: Rejection) -> Self {
        GwError { kind: kind_of(r.code), code: r.code.name(), message: r.detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_maps_to_a_client_error_status() {
        for &c in Code::ALL {
            let s = kind_of(c).status();
            assert!((400..500).contains(&s), "{c:?} -> {s}");
        }
    }
}
