//! The engine (step 11): a daemon, its clients, and the monitors between
//! the daemon and its containers.
//!
//! The source document's architecture, made literal: a **daemon** owns the
//! images and containers and answers an HTTP API on a unix socket; a
//! **client** turns commands into API calls, and can talk to any daemon it
//! is pointed at (`-H`); each running container has a **monitor** process,
//! so containers outlive the daemon; and a **registry** serves a store's
//! images to any client of the distribution API (step 10's among them).
//! The engine's API is a subset of Docker's, with its paths and field names.
//!
//! - [`server`]: the daemon's HTTP (hyper), in front of synchronous
//!   handlers, which answer through a [`responder::Responder`];
//! - [`bridge`]: where that synchronous code meets hyper's bodies and
//!   upgraded connections (both ends);
//! - [`state`]: containers on disk (config, state, output);
//! - [`daemon`]: the endpoints;
//! - [`monitor`]: one container's life, recorded;
//! - [`client`]: the other end of the socket;
//! - [`registry`]: a registry of your own, serving a store's images (pull).

pub mod bridge;
pub mod client;
pub mod daemon;
pub mod monitor;
pub mod registry;
pub mod responder;
pub mod server;
pub mod state;

/// An engine problem; [`EngineError::status`] is its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such container or image (404).
    #[error("{0}")]
    NotFound(String),
    /// In a state that forbids it, or a name taken (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or asks for something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// A request body over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The daemon's own files or processes failed (500).
    #[error("{0}")]
    Io(String),
    /// The client cannot reach a daemon.
    #[error(
        "cannot connect to the caixa daemon at {0}: {1}; is it running? (step11 daemon), or point -H at another one"
    )]
    NoDaemon(String, String),
    /// The daemon answered with an error (the client's view).
    #[error("{0}")]
    Daemon(String),
}

impl EngineError {
    /// The HTTP status the daemon answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::NotFound(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::BadRequest(_) => 400,
            EngineError::TooLarge(_) => 413,
            _ => 500,
        }
    }
}
