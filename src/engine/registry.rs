//! A registry of your own (step 11): a store's images served over the OCI
//! distribution API, and pushes into it.
//!
//! The source document: a registry stores and distributes images, and you
//! can run your own. Step 10 was the client of that API; this is the other
//! end, small enough to read whole.
//!
//! - Pull: `GET /v2/` says "I speak the API"; `GET /v2/NAME/manifests/TAG`
//!   answers the manifest the store's image `NAME:TAG` points at (or, by
//!   digest, any manifest it holds); `GET /v2/NAME/blobs/DIGEST` answers a
//!   config or a layer. Every answer carries its `Docker-Content-Digest`,
//!   and `HEAD` asks the same without the body.
//! - Push ([`uploads`]): a blob comes in an upload session the server
//!   names (`POST`, `PATCH`es, a closing `PUT ?digest=`), or whole (`POST
//!   ?digest=`), or is mounted from another repository (`POST ?mount=`);
//!   it is hashed as it arrives and enters the store by a rename once it
//!   is proven to be its digest. Then the manifest ([`manifests`]): kept
//!   byte for byte under the sha256 of its bytes, its tag the store's
//!   image name. A pushed image is an ordinary image of the store.
//! - Lists: `GET /v2/NAME/tags/list` and `GET /v2/_catalog`, in pages.
//! - Access ([`auth`]): with `--htpasswd FILE`, HTTP Basic auth against
//!   bcrypt entries, for every request. With `--token-access FILE` too
//!   (`token.rs`, `access.rs`): the distribution spec's token flow, each
//!   user's pull and push per repository, the token server in this
//!   process (`GET /token`).
//!
//! Clients verify what they pull, so a registry is never trusted for
//! integrity, only for availability; it must verify what is pushed for
//! the same reason, the other way round. One store, one namespace of
//! blobs: a blob pushed to one repository can be mounted into any other
//! (and a `GET` finds it under any name). With all-or-nothing Basic auth
//! that hides nothing a user could not read anyway. With token scopes it
//! means a blob is guarded by its digest, not by its repository: who may
//! pull any repository may read a blob of another whose digest they know
//! (a sha256 of content they have not seen, so not guessed; but once
//! learnt, never forgotten). Docker's registry keeps per-repository links
//! to blobs to close that; here, a mount from a repository the token may
//! not pull is refused into an ordinary upload. Plain HTTP: serve on
//! loopback, or tell clients it is insecure.
//!
//! What a client sends is untrusted, and it is checked before it is used:
//! a repository name, a reference and an upload id must match the
//! grammar ([`names`]: `NAME_INVALID`, `TAG_INVALID`, `DIGEST_INVALID`,
//! `BLOB_UPLOAD_UNKNOWN`) before any path is built from them; bodies are
//! bounded (a manifest at 4 MiB, a blob at 4 GiB); a client gets
//! [`Limits`]'s time to send a request's head and to go on with its body,
//! and the connections served at once are capped (`503` past the cap), as
//! the daemon's are. Its HTTP is hyper's ([`http`]): pushes come chunked,
//! and kept alive.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

mod access;
mod auth;
mod http;
mod manifests;
mod names;
mod token;
mod uploads;

use super::EngineError;
use super::server::Limits;
use crate::image::store::Store;
use access::AccessFile;
use auth::Htpasswd;
use http::{Body, Head, Reply};
use names::Route;
pub use token::DEFAULT_TTL;
use token::{Claims, Tokens};
use uploads::{Uploads, range_header};

/// Who may use the registry, as the command line says.
#[derive(Debug, Clone, Default)]
pub struct Access<'a> {
    /// `--htpasswd`: the users (bcrypt entries); without it, everyone may
    /// do everything.
    pub htpasswd: Option<&'a Path>,
    /// `--token-access`: each user's pull and push per repository, proven
    /// by tokens; without it, an htpasswd user may do everything.
    pub token_access: Option<&'a Path>,
    /// How long a token lives ([`DEFAULT_TTL`]; shorter in tests).
    pub token_ttl: Option<std::time::Duration>,
}

// ANCHOR: registry_serve
/// Serves the store at `root` on `addr` (e.g. `127.0.0.1:5000`), with at
/// most `limits.max_connections` connections at once, forever; with an
/// htpasswd file, only to its users, and with an access file too, to each
/// only what it allows, by tokens.
pub fn serve(
    root: &Path,
    addr: &str,
    limits: Limits,
    access: Access<'_>,
) -> Result<(), EngineError> {
    super::state::set_umask();
    let store = Store::open(root)?;
    let guard = Guard::from_files(&access)?;
    let uploads = Uploads::open(&store).map_err(|source| EngineError::File {
        path: store.root.join("uploads"),
        source,
    })?;
    let listener = TcpListener::bind(addr).map_err(|e| {
        EngineError::Conflict(format!(
            "cannot listen on {addr}: {e}: is another registry there? choose another --listen"
        ))
    })?;
    eprintln!(
        "caixa registry: serving {} on http://{addr}{}",
        root.display(),
        match guard {
            Guard::Open => "",
            Guard::Basic(_) => " (htpasswd)",
            Guard::Token(_) => " (tokens: htpasswd and access file)",
        }
    );
    let registry = Registry {
        store,
        uploads,
        guard,
    };
    http::serve(
        listener,
        limits,
        Arc::new(move |head: &Head, body: &mut Body| registry.answer(head, body)),
    )
    .map_err(EngineError::Connection)
}
// ANCHOR_END: registry_serve

/// Who may do what: everyone everything, htpasswd users everything, or
/// each what its token grants.
enum Guard {
    Open,
    Basic(Htpasswd),
    Token(Tokens),
}

impl Guard {
    /// The guard the files ask for, each file checked whole at start: a
    /// bad line is one clear error now, not a user locked out later.
    fn from_files(access: &Access<'_>) -> Result<Guard, EngineError> {
        let bad = |e: String| EngineError::BadRequest(e);
        let users = access
            .htpasswd
            .map(Htpasswd::read)
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        match (users, access.token_access) {
            (None, None) => Ok(Guard::Open),
            (Some(users), None) => Ok(Guard::Basic(users)),
            (None, Some(_)) => Err(bad(
                "--token-access needs --htpasswd: tokens are given to its users".into(),
            )),
            (Some(users), Some(path)) => {
                let rules =
                    AccessFile::read(path, &users.users()).map_err(|e| bad(e.to_string()))?;
                let ttl = access.token_ttl.unwrap_or(DEFAULT_TTL);
                Tokens::new(users, rules, ttl)
                    .map(Guard::Token)
                    .map_err(|e| bad(format!("no random key for the tokens: {e}")))
            }
        }
    }
}

/// What every request is answered from.
struct Registry {
    store: Store,
    uploads: Uploads,
    guard: Guard,
}

impl Registry {
    // ANCHOR: registry_answer
    /// Answers one request: who asks first, then what the path names (its
    /// parts checked), then the method. In token mode the path comes
    /// first: the token is checked against what the route needs, and
    /// `/token` is the token server.
    fn answer(&self, head: &Head, body: &mut Body) -> Reply {
        if let Guard::Basic(users) = &self.guard
            && let Err(refused) = users.check(head)
        {
            return refused;
        }
        if let Guard::Token(tokens) = &self.guard
            && head.path == "/token"
        {
            return match head.method.as_str() {
                "GET" => tokens.issue(head),
                _ => Reply::error(405, "UNSUPPORTED", "the token server answers GET"),
            };
        }
        let route = match Route::parse(&head.path) {
            Ok(route) => route,
            Err(refused) => {
                return Reply::error(refused.status, refused.code, &refused.message);
            }
        };
        let claims = match &self.guard {
            Guard::Token(tokens) => match tokens.check(head, &token::needs(&head.method, &route)) {
                Ok(claims) => Some(claims),
                Err(refused) => return refused,
            },
            _ => None,
        };
        self.dispatch(head, body, route, claims.as_ref())
            .unwrap_or_else(|refused| refused)
    }
    // ANCHOR_END: registry_answer

    // ANCHOR: registry_dispatch
    /// The endpoint for a method and a checked route; `claims`, in token
    /// mode, the request's token (already checked for the route itself).
    fn dispatch(
        &self,
        head: &Head,
        body: &mut Body,
        route: Route<'_>,
        claims: Option<&Claims>,
    ) -> Result<Reply, Reply> {
        match (head.method.as_str(), route) {
            ("GET" | "HEAD", Route::Base) => Ok(Reply::json(200, &serde_json::json!({}))),
            ("GET", Route::Catalog) => Ok(manifests::catalog(&self.store, head, &|repository| {
                self.may_list(claims, repository)
            })),
            ("GET", Route::Tags { name }) => Ok(manifests::tags(&self.store, head, name)),
            ("GET" | "HEAD", Route::Manifest { name, reference }) => {
                Ok(manifests::get(&self.store, name, reference))
            }
            ("PUT", Route::Manifest { name, reference }) => {
                manifests::put(&self.store, &self.uploads, head, body, name, reference)
            }
            ("DELETE", Route::Manifest { name, reference }) => {
                Ok(manifests::delete(&self.store, name, reference))
            }
            ("HEAD", Route::Blob { name, digest }) => Ok(self.blob_size(name, digest)),
            ("GET", Route::Blob { name, digest }) => Ok(self.blob(name, digest)),
            ("DELETE", Route::Blob { .. }) => Err(Reply::error(
                405,
                "UNSUPPORTED",
                "this registry does not delete blobs: the images and containers of its store share them",
            )),
            ("POST", Route::UploadStart { name }) => self.start_upload(head, body, name, claims),
            ("GET", Route::Upload { name, id }) => {
                let size = self.uploads.size(name, id)?;
                Ok(session(Reply::empty(204), name, id, size))
            }
            ("PATCH", Route::Upload { name, id }) => {
                let range = head.header("content-range");
                let size = self.uploads.append(name, id, range, body)?;
                Ok(session(Reply::empty(202), name, id, size))
            }
            ("PUT", Route::Upload { name, id }) => {
                self.uploads.finish(name, id, head.param("digest"), body)?;
                let digest = head.param("digest").unwrap_or_default();
                Ok(stored(name, digest))
            }
            ("DELETE", Route::Upload { name, id }) => {
                self.uploads.cancel(name, id)?;
                Ok(Reply::empty(204))
            }
            (method, _) => Err(Reply::error(
                405,
                "UNSUPPORTED",
                &format!(
                    "{} is not a method of this path",
                    method.chars().take(16).collect::<String>()
                ),
            )),
        }
    }
    // ANCHOR_END: registry_dispatch

    // ANCHOR: start_upload
    /// `POST /v2/NAME/blobs/uploads/`: a whole blob (`?digest=`), a mount
    /// from another repository (`?mount=DIGEST&from=REPO`: `201` if the
    /// blob is here, else an ordinary session), or a session (`202`).
    /// In token mode, a mount also needs pull on its source: without it,
    /// the blob is not mounted (the client is asked for its bytes, which
    /// it can send only if it has them).
    fn start_upload(
        &self,
        head: &Head,
        body: &mut Body,
        name: &str,
        claims: Option<&Claims>,
    ) -> Result<Reply, Reply> {
        let checked = |digest: &str| {
            names::check_digest(digest).map_err(|r| Reply::error(r.status, r.code, &r.message))
        };
        if let Some(digest) = head.param("digest") {
            checked(digest)?;
            self.uploads.monolithic(digest, body)?;
            return Ok(stored(name, digest));
        }
        if let Some(digest) = head.param("mount") {
            checked(digest)?;
            let from = head.param("from");
            if let Some(from) = from {
                names::check_name(from).map_err(|r| Reply::error(r.status, r.code, &r.message))?;
            }
            let may_read_source = match (claims, from) {
                (None, _) => true,
                (Some(claims), Some(from)) => claims.on(from).pull,
                (Some(_), None) => false,
            };
            // One store, one namespace of blobs: here is here for all.
            if may_read_source && self.store.blob_path(digest).is_ok_and(|p| p.exists()) {
                return Ok(stored(name, digest));
            }
        }
        let id = self.uploads.start(name)?;
        Ok(session(Reply::empty(202), name, &id, 0))
    }
    // ANCHOR_END: start_upload

    /// Whether `_catalog` shows `repository`: always without tokens; with
    /// them, only to a holder the access file lets pull it (the token
    /// says who; the file says what that user may read).
    fn may_list(&self, claims: Option<&Claims>, repository: &str) -> bool {
        match (&self.guard, claims) {
            (Guard::Token(tokens), Some(claims)) => tokens.allowed(claims.user(), repository).pull,
            (Guard::Token(_), None) => false,
            _ => true,
        }
    }

    /// `HEAD /v2/NAME/blobs/DIGEST`: is the blob here, and how big: a stat
    /// of its file, which is neither opened nor read.
    fn blob_size(&self, name: &str, digest: &str) -> Reply {
        let len = self
            .store
            .blob_path(digest)
            .ok()
            .and_then(|path| std::fs::metadata(path).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len());
        match len {
            Some(len) => Reply::size_only(len).header("docker-content-digest", digest),
            None => blob_unknown(name, digest),
        }
    }

    /// `GET /v2/NAME/blobs/DIGEST`: the blob, sent as it is read from its
    /// file.
    fn blob(&self, name: &str, digest: &str) -> Reply {
        let file = self
            .store
            .blob_path(digest)
            .ok()
            .and_then(|path| std::fs::File::open(path).ok());
        let len = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len());
        match (file, len) {
            (Some(file), Some(len)) => {
                Reply::file(file, len).header("docker-content-digest", digest)
            }
            _ => blob_unknown(name, digest),
        }
    }
}

/// The spec's `404 BLOB_UNKNOWN` for `digest` in `name`.
fn blob_unknown(name: &str, digest: &str) -> Reply {
    Reply::error_with(
        404,
        "BLOB_UNKNOWN",
        &format!("no blob {digest} in {name}"),
        serde_json::json!({ "digest": digest }),
    )
}

/// The headers of an upload under way: where to send the next chunk, its
/// id, and the bytes it holds.
fn session(reply: Reply, name: &str, id: &str, size: u64) -> Reply {
    reply
        .header("location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("docker-upload-uuid", id)
        .header("range", range_header(size))
}

/// `201 Created` for blob `digest`, now in the store.
fn stored(name: &str, digest: &str) -> Reply {
    Reply::empty(201)
        .header("location", format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest)
}
