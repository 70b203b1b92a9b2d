//! HTTP to one registry: authentication on demand, bounded and verified
//! answers, each request bounded in time ([`super::deadline`]).

use std::io::Read;
use std::time::Duration;

use super::RegistryError;
pub use super::answer::Answer;
use super::auth::{
    Challenge, base64_encode, credentials, is_bearer_token, parse_challenge,
    realm_may_get_credentials,
};
use super::deadline::{Budget, late_in, within};
use super::reference::Reference;
use crate::image::validate::{INDEX_TYPES, MANIFEST_TYPES as IMAGE_MANIFESTS, printable};

/// The manifest media types we ask for, most wanted first.
pub const MANIFEST_TYPES: [&str; 4] = [
    INDEX_TYPES[0],
    IMAGE_MANIFESTS[0],
    INDEX_TYPES[1],
    IMAGE_MANIFESTS[1],
];

/// The largest manifest or token answer accepted.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// How to talk to registries: the command line's choices.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts that may be spoken to over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// How long to wait for a connection, for an answer to begin, or for
    /// the next bytes of one, before giving up on a stalled server; and
    /// the base of every request's deadline (`--timeout`).
    pub timeout: Duration,
    /// Blobs larger than this are pushed in chunks (`PATCH`), smaller ones
    /// in one `PUT` (`push --chunk-size`).
    pub chunk_size: u64,
    /// The most bytes one pull may download (`--max-pull-size`).
    pub max_pull_size: u64,
    /// Credentials the caller was handed for this one transfer (a Docker
    /// client's `X-Registry-Auth`, through the daemon), used instead of
    /// the ones saved by `login`.
    pub credentials: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            insecure: Vec::new(),
            timeout: Duration::from_secs(30),
            chunk_size: 8 << 20,
            max_pull_size: super::disk::DEFAULT_MAX_PULL,
            credentials: None,
        }
    }
}

/// A client for one registry and repository.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    https: bool,
    timeout: Duration,
    insecure: Vec<String>,
    extra_scopes: Vec<String>,
    repository: String,
    authorization: Option<String>,
    given: Option<(String, String)>,
}

/// Whether plain HTTP is acceptable for `host`: loopback, or listed.
pub fn plain_http_ok(host: &str, insecure: &[String]) -> bool {
    let bare = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_matches(['[', ']']);
    bare == "localhost"
        || bare.starts_with("127.")
        || bare == "::1"
        || insecure.iter().any(|i| i == host || i == bare)
}

impl Client {
    /// A client for `reference`'s registry. Loopback and `insecure` hosts
    /// speak plain HTTP; all others HTTPS.
    pub fn new(reference: &Reference, options: &Options) -> Client {
        let host = reference.api_host().to_string();
        let https = !plain_http_ok(&host, &options.insecure);
        let scheme = if https { "https" } else { "http" };
        // Reads and writes are bounded by each request's deadline, set
        // per request (see `deadline`).
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.timeout)
            .build();
        Client {
            agent,
            base: format!("{scheme}://{host}/v2/{}", reference.repository),
            host,
            https,
            timeout: options.timeout,
            insecure: options.insecure.clone(),
            extra_scopes: Vec::new(),
            repository: reference.repository.clone(),
            authorization: None,
            given: options.credentials.clone(),
        }
    }

    /// The full URL of `path` (relative to the repository), or `path` if
    /// it is one already.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// `scheme://host` of the registry, for a relative `Location`.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// Asks token servers for `scope` too (e.g. `repository:other:pull`, to
    /// mount a blob from another repository).
    pub fn add_scope(&mut self, scope: String) {
        self.extra_scopes.push(scope);
    }

    /// A transport failure at `url` (a full URL), with what to do about it.
    pub fn transport_error(
        &self,
        url: &str,
        error: &(dyn std::error::Error + 'static),
    ) -> RegistryError {
        let url = self.url(url);
        // A clock of ours that ran out says which, and how long it was.
        if let Some(late) = late_in(error) {
            return RegistryError::Transport {
                url,
                why: late.to_string(),
            };
        }
        // ureq's own message starts with the URL: say it once.
        let why = error.to_string();
        let why = why
            .strip_prefix(&format!("{url}: "))
            .map(str::to_string)
            .unwrap_or(why);
        // A TLS handshake answered in plain HTTP: a registry without TLS.
        if self.https
            && ["InvalidContentType", "corrupt message", "InvalidMessage"]
                .iter()
                .any(|m| why.contains(m))
        {
            return RegistryError::Insecure(self.host.clone());
        }
        let why = if why.contains("timed out") || why.contains("WouldBlock") {
            format!("{why}: {}", super::deadline::Late::Paused(self.timeout))
        } else if why.contains("closed before all bytes") {
            format!("{why}: the registry cut the answer short; nothing was stored, try again")
        } else {
            why
        };
        RegistryError::Transport { url, why }
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks that this registry takes our credentials (`docker login`):
    /// `GET /v2/`, answering its challenge once.
    pub fn check_login(&mut self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.origin());
        self.send("GET", &url, &[], None, "pull").map(drop)
    }

    /// Sends a request whose answer carries no body worth reading (a
    /// `HEAD`, an upload); on `401`, answers the challenge once and retries.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        actions: &str,
    ) -> Result<ureq::Response, RegistryError> {
        self.request(method, path, headers, body, actions, 0)
            .map(|a| a.response)
    }

    /// `GET`s `path`, whose answer is expected to carry at most `size`
    /// bytes: that sets its deadline.
    pub fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        size: u64,
    ) -> Result<Answer, RegistryError> {
        self.request("GET", path, headers, None, "pull", size)
    }

    // ANCHOR: request
    /// Sends a request, bounded by a [`Budget`] for `size` bytes (or the
    /// body's); on `401`, answers the challenge once and retries.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        actions: &str,
        size: u64,
    ) -> Result<Answer, RegistryError> {
        let url = self.url(path);
        let mut answered_challenge = false;
        loop {
            let budget = Budget::new(self.timeout, size.max(body.map_or(0, |b| b.len() as u64)));
            // ureq ends the request at the deadline, whatever the server does.
            let mut request = self.agent.request(method, &url).timeout(budget.total());
            for (k, v) in headers {
                request = request.set(k, v);
            }
            // Credentials and tokens only ever go to this registry's host
            // (an upload Location may point elsewhere).
            if let Some(auth) = self.authorization.as_ref().filter(|_| {
                let scheme = url.split("://").next().unwrap_or("https");
                let ours = origin_of(&format!("{scheme}://{}/", self.host));
                !ours.is_empty() && origin_of(&url) == ours
            }) {
                request = request.set("Authorization", auth);
            }
            let payload = body.map(<[u8]>::to_vec);
            let result = within(&budget, move || {
                match payload {
                    Some(bytes) => request.send_bytes(&bytes),
                    None => request.call(),
                }
                .map_err(Box::new)
            })
            .map_err(|e| self.transport_error(&url, &e))?;
            match result.map_err(|e| *e) {
                Ok(response) => return Ok(Answer { response, budget }),
                Err(ureq::Error::Status(401, response)) if !answered_challenge => {
                    let challenge = response
                        .header("WWW-Authenticate")
                        .and_then(parse_challenge)
                        .ok_or_else(|| RegistryError::Protocol {
                            what: url.clone(),
                            why: "401 without a usable WWW-Authenticate header".into(),
                        })?;
                    self.authorization = Some(self.authenticate(challenge, actions)?);
                    answered_challenge = true;
                }
                // We answered its challenge and it still says no.
                Err(ureq::Error::Status(401, response)) => {
                    // A token server that gave a token short of the scope
                    // (Docker's `insufficient_scope`): the user is known,
                    // the access rules say no.
                    let short = response
                        .header("WWW-Authenticate")
                        .is_some_and(|c| c.contains("insufficient_scope"));
                    let hint = if short {
                        format!(
                            ": the registry's token does not grant {actions} on {}: its access rules do not let this user (step10 login {}) do that",
                            self.repository, self.host
                        )
                    } else {
                        format!(
                            ": the registry refused our credentials or token: check them with step10 login {}",
                            self.host
                        )
                    };
                    return Err(RegistryError::Status {
                        url,
                        status: 401,
                        hint,
                    });
                }
                Err(ureq::Error::Status(status, _)) => {
                    let hint = match status {
                        401 | 403 => ": log in first (step10 login HOST)".to_string(),
                        404 => ": no such image, tag or blob".to_string(),
                        _ => String::new(),
                    };
                    return Err(RegistryError::Status { url, status, hint });
                }
                Err(ureq::Error::Transport(t)) => return Err(self.transport_error(&url, &t)),
            }
        }
    }
    // ANCHOR_END: request

    /// The `Authorization` value that answers `challenge`.
    fn authenticate(&self, challenge: Challenge, actions: &str) -> Result<String, RegistryError> {
        let creds = self.given.clone().or_else(|| credentials(&self.host));
        match challenge {
            Challenge::Basic => {
                let (user, password) = creds.ok_or_else(|| RegistryError::Status {
                    url: self.base.clone(),
                    status: 401,
                    hint: format!(
                        ": the registry wants credentials: step10 login {}",
                        self.host
                    ),
                })?;
                Ok(format!(
                    "Basic {}",
                    base64_encode(format!("{user}:{password}").as_bytes())
                ))
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                if !realm.starts_with("https://") && !realm.starts_with("http://") {
                    return Err(RegistryError::Protocol {
                        what: self.base.clone(),
                        why: format!("the token realm {realm:?} is not an http(s) URL"),
                    });
                }
                // One `scope=` per scope (a challenge may list several,
                // space-separated), plus those this client needs besides
                // (a mount's source repository).
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:{actions}", self.repository));
                let mut url = realm.clone();
                let mut sep = if realm.contains('?') { '&' } else { '?' };
                for s in scope
                    .split_whitespace()
                    .chain(self.extra_scopes.iter().map(String::as_str))
                {
                    url.push_str(&format!("{sep}scope={}", percent_encode(s)));
                    sep = '&';
                }
                if let Some(service) = service {
                    url.push_str(&format!("{sep}service={}", percent_encode(&service)));
                }
                let budget = Budget::new(self.timeout, MAX_MANIFEST);
                let mut request = self.agent.get(&url).timeout(budget.total());
                let allowed = realm_may_get_credentials(&realm, &self.host, &self.insecure);
                if creds.is_some() && !allowed {
                    eprintln!(
                        "caixa: not sending the credentials for {} to the token server {}: it is another host or port",
                        self.host,
                        printable(&realm)
                    );
                }
                if let Some((user, password)) = creds.filter(|_| allowed) {
                    request = request.set(
                        "Authorization",
                        &format!(
                            "Basic {}",
                            base64_encode(format!("{user}:{password}").as_bytes())
                        ),
                    );
                }
                let response = within(&budget, move || request.call().map_err(Box::new))
                    .map_err(|e| self.transport_error(&url, &e))?
                    .map_err(|e| match *e {
                        ureq::Error::Status(status, _) => RegistryError::Status {
                            url: realm.clone(),
                            status,
                            hint:
                                ": the token server refused: check the credentials (step10 login)"
                                    .into(),
                        },
                        ureq::Error::Transport(t) => self.transport_error(&url, &t),
                    })?;
                let body = self.read_bounded(Answer { response, budget }, MAX_MANIFEST)?;
                let json: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                        what: url.clone(),
                        why: format!("token answer is not JSON: {e}"),
                    })?;
                let token = json["token"]
                    .as_str()
                    .or(json["access_token"].as_str())
                    .ok_or_else(|| RegistryError::Protocol {
                        what: url.clone(),
                        why: "no token in the answer".into(),
                    })?;
                // A token goes into a header: one with other characters
                // would break the request, and ureq would quote it in
                // its error. It is neither used nor shown.
                if !is_bearer_token(token) {
                    return Err(RegistryError::Protocol {
                        what: url,
                        why: "the token has characters a bearer token may not have (RFC 6750); not using it".into(),
                    });
                }
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// Reads a whole answer body of at most `bound` bytes (a manifest, a
    /// token answer).
    pub fn read_bounded(&self, answer: Answer, bound: u64) -> Result<Vec<u8>, RegistryError> {
        let url = answer.url();
        let too_big = |len: u64| RegistryError::Protocol {
            what: url.clone(),
            why: format!("{len} bytes is more than the {bound}-byte bound for a manifest"),
        };
        if let Some(len) = answer.content_length() {
            if len > bound {
                return Err(too_big(len));
            }
        }
        let mut body = Vec::new();
        answer
            .body()?
            .take(bound + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.transport_error(&url, &e))?;
        if body.len() as u64 > bound {
            return Err(too_big(body.len() as u64));
        }
        Ok(body)
    }
}

/// The `host[:port]` of a URL, as the `url` crate parses it (a port only
/// when the URL gives one other than its scheme's default); empty when it
/// does not parse, which matches no registry.
pub(crate) fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// The origin of a URL as `host:port`, the port spelled out (the scheme's
/// default when the URL gives none), so `reg.example` and `reg.example:443`
/// are one origin over HTTPS; empty when it does not parse.
pub(crate) fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default()
}

/// The bytes left as they are in a query value or path segment: RFC 3986's
/// unreserved characters; every other byte is `%XX`.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encoding for query values and path segments (step 11's client
/// uses it too).
pub fn percent_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_only_for_loopback_or_listed() {
        assert!(super::plain_http_ok("127.0.0.1:5000", &[]));
        assert!(super::plain_http_ok("localhost:5000", &[]));
        assert!(!super::plain_http_ok("registry.example:5000", &[]));
        assert!(super::plain_http_ok(
            "registry.example:5000",
            &["registry.example:5000".into()]
        ));
        assert_eq!(
            super::percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
