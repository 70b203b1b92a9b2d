//! The engine (step 11): a daemon, its clients, and the shims between
//! the daemon and its containers.
//!
//! The source document's architecture, made literal: a **daemon** owns the
//! images and containers and answers an HTTP API on a unix socket; a
//! **client** turns commands into API calls, and can talk to any daemon it
//! is pointed at (`-H`); each running container has a **shim** process, its
//! parent, so containers outlive the daemon; and a **registry** serves a
//! store's images to any client of the distribution API (step 10's among
//! them). The engine's API is a subset of Docker's, with its paths and
//! field names. Between the daemon and the runtime sits the OCI bundle
//! (`crate::bundle`), as between containerd and runc.
//!
//! ```text
//!  client ──HTTP/unix──▶ daemon ──request.rs──▶ Spec ──bundle──▶ config.json
//!                          │                                        │
//!                          └──spawns──▶ shim ──parent::start──▶ container
//! ```
//!
//! - [`server`]: the daemon's HTTP (hyper), in front of synchronous
//!   handlers, which answer through a [`responder::Responder`];
//! - [`bridge`]: where that synchronous code meets hyper's bodies and
//!   upgraded connections (both ends);
//! - [`request`]: a create request becomes a [`crate::Spec`];
//! - [`state`]: containers on disk (record, state, locks, names);
//! - [`daemon`]: the endpoints and the lifecycle;
//! - [`shim`]: one container's parent, from start to end;
//! - [`launcher`]: the fork server that starts each shim;
//! - [`attach`]: a client's keys, through the daemon, to a container;
//! - [`stdin`]: what attached clients type, into the container (`-i`);
//! - [`terminal`]: raw mode, the window's size, the detach keys (`-t`);
//! - [`exec`]: a second process in a running container (joining it);
//! - [`images`]: tag, inspect, history, remove, save, log in, push;
//! - [`log`]: the output, in Docker's json-file format;
//! - [`restart`]: when a shim starts its container again (`--restart`);
//! - [`volumes`]: data that outlives containers (`-v`, `/volumes`);
//! - [`networks`]: networks of your own, isolated, with names (`/networks`);
//! - [`events`]: what happened, in one log the daemon and the shims share;
//! - [`info`], [`usage`]: the host as the engine sees it, and the disk it uses;
//! - [`ps`], [`filters`]: the container list, filtered as Docker filters it;
//! - [`client`]: the other end of the socket;
//! - [`session`]: an attach as the client lives it (raw mode, resize);
//! - [`archive`]: `cp`, files in and out of a container, resolved inside its root;
//! - [`top`], [`stats`]: its processes and what they use, from its cgroup;
//! - [`ports`]: its published ports, as `inspect` and `port` show them;
//! - [`outside`]: the client's `cp`, `top`, `stats` and `port`;
//! - [`build`]: images you make: `build` from a Dockerfile, `commit`;
//! - [`watch`]: waiting for a container's files to change (one inotify);
//! - [`wait`]: Docker's wait conditions (`not-running`, `next-exit`, `removed`);
//! - [`registry`]: a registry of your own, serving a store's images and
//!   taking pushes into it.

pub mod archive;
pub mod attach;
pub mod bridge;
pub mod build;
pub mod client;
pub mod connect;
pub mod daemon;
pub mod events;
pub mod exec;
pub mod filters;
pub mod images;
pub mod info;
pub mod launcher;
pub mod log;
pub mod networks;
pub mod outside;
pub mod ports;
pub mod ps;
pub mod recall;
pub mod registry;
pub mod request;
pub mod responder;
pub mod restart;
pub mod server;
pub mod session;
pub mod shed;
pub mod shim;
pub mod state;
pub mod stats;
pub mod stdin;
pub mod template;
pub mod terminal;
pub mod top;
pub mod usage;
pub mod volumes;
pub mod wait;
pub mod watch;

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
    /// Credentials a registry refused (401, `docker login`'s failure).
    #[error("{0}")]
    Unauthorized(String),
    /// Allowed to nobody, as the container was made (403: `cp` into a
    /// `--read-only` root).
    #[error("{0}")]
    Forbidden(String),
    /// A request body over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A file or directory of the engine's could not be used (500).
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What the kernel answered.
        source: std::io::Error,
    },
    /// A system call of the engine's own failed (500).
    #[error("{call}: {source}")]
    Sys {
        /// The call, with what it was for.
        call: &'static str,
        /// What the kernel answered.
        source: nix::errno::Errno,
    },
    /// A state or record file does not parse (500): someone edited it.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// Writing the answer, or talking to a shim, failed: the other end went
    /// away or broke off (500, if it can still be told).
    #[error("the connection broke: {0}")]
    Connection(#[from] std::io::Error),
    /// A shim refused a request (its words).
    #[error("the shim answered {0:?}")]
    Shim(String),
    /// A helper process (a shim) could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The image store failed (500; a missing image is `NotFound`).
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The bundle could not be written or read (500).
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// The container could not start; `reason` is the runtime's own words
    /// (400 when its command cannot run, as Docker answers).
    #[error("cannot start container {name}: {reason}{}", docker_words(*.code))]
    StartFailed {
        /// The container's name.
        name: String,
        /// The exit code `docker run` gives for it (125, 126, 127).
        code: i32,
        /// Why.
        reason: String,
    },
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
            EngineError::Unauthorized(_) => 401,
            EngineError::Forbidden(_) => 403,
            EngineError::StartFailed {
                code: 126 | 127, ..
            } => 400,
            EngineError::TooLarge(_) => 413,
            _ => 500,
        }
    }
}

/// The words the Docker CLI looks for to exit 127 or 126 after a failed
/// start, as it does against Docker's daemon.
fn docker_words(code: i32) -> &'static str {
    match code {
        127 => " (executable file not found)",
        126 => " (permission denied)",
        _ => "",
    }
}
