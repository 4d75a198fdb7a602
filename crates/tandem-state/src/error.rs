//! The one error type of this crate: database failures, tree failures,
//! misuse of the prepare/commit protocol and corrupted internal records.

/// Everything that can go wrong in [`crate::Storage`]. A missing key is not an
/// error (reads answer `None`); these are infrastructure or protocol failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb failed: I/O, a corrupted file, a table that cannot be opened.
    #[error("database: {0}")]
    Db(#[from] redb::Error),

    /// The Jellyfish Merkle tree failed while computing or reading a version
    /// (usually because a node it needs is missing or unreadable).
    #[error("merkle tree: {0}")]
    Tree(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// `prepare` or `commit` was asked for a height that does not follow the
    /// last committed one.
    #[error("expected height {expected}, got {got}")]
    HeightMismatch {
        /// The only height that may be prepared or committed now.
        expected: u64,
        /// The height that was asked for.
        got: u64,
    },

    /// A pending commit was prepared on top of a state with a different root
    /// than the one committed now (e.g. it comes from another store).
    #[error("pending commit was prepared on a different base state")]
    BaseMismatch,

    /// An internal record does not decode: the file was damaged or written by
    /// something else.
    #[error("corrupted store: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// jmt reports through `anyhow`; keep its context chain as the source.
    pub(crate) fn tree(err: anyhow::Error) -> Self {
        StorageError::Tree(err.into())
    }

    /// Any of redb's specific error types, folded into [`redb::Error`].
    pub(crate) fn db(err: impl Into<redb::Error>) -> Self {
        StorageError::Db(err.into())
    }
}
