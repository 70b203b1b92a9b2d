//! HTTP to one registry: authentication on demand, bounded and verified
//! answers, timeouts.

use std::io::Read;
use std::time::Duration;

use super::RegistryError;
use super::auth::{Challenge, base64_encode, credentials, parse_challenge};
use super::reference::Reference;

/// The manifest media types we ask for, most wanted first.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The largest manifest or token answer accepted.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// How to talk to registries: the command line's choices.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts that may be spoken to over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// How long to wait for a connection or for the next bytes of an answer
    /// before giving up on a stalled server (`--timeout`).
    pub timeout: Duration,
    /// Blobs larger than this are pushed in chunks (`PATCH`), smaller ones
    /// in one `PUT` (`push --chunk-size`).
    pub chunk_size: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            insecure: Vec::new(),
            timeout: Duration::from_secs(30),
            chunk_size: 8 << 20,
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
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.timeout)
            .timeout_read(options.timeout)
            .timeout_write(options.timeout)
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

    /// A transport failure, with what to do about it.
    pub fn transport_error(&self, url: &str, error: impl std::fmt::Display) -> RegistryError {
        let url = self.url(url);
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
            format!(
                "{why}: no answer within {} s (the registry stalled; --timeout SECS waits longer)",
                self.timeout.as_secs()
            )
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

    /// Sends a request; on `401`, answers the challenge once and retries.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        actions: &str,
    ) -> Result<ureq::Response, RegistryError> {
        let url = self.url(path);
        let mut answered_challenge = false;
        loop {
            let mut request = self.agent.request(method, &url);
            for (k, v) in headers {
                request = request.set(k, v);
            }
            // Credentials and tokens only ever go to this registry's host
            // (an upload Location may point elsewhere).
            if let Some(auth) = self
                .authorization
                .as_ref()
                .filter(|_| host_of(&url) == self.host)
            {
                request = request.set("Authorization", auth);
            }
            let result = match body {
                Some(bytes) => request.send_bytes(bytes),
                None => request.call(),
            };
            match result {
                Ok(response) => return Ok(response),
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
                Err(ureq::Error::Status(401, _)) => {
                    return Err(RegistryError::Status {
                        url,
                        status: 401,
                        hint: format!(
                            ": the registry refused our credentials or token: check them with step10 login {}",
                            self.host
                        ),
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
                Err(ureq::Error::Transport(t)) => return Err(self.transport_error(&url, t)),
            }
        }
    }

    /// The `Authorization` value that answers `challenge`.
    fn authenticate(&self, challenge: Challenge, actions: &str) -> Result<String, RegistryError> {
        let creds = credentials(&self.host);
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
                let mut request = self.agent.get(&url);
                let allowed = realm_may_get_credentials(&realm, &self.host, &self.insecure);
                if creds.is_some() && !allowed {
                    eprintln!(
                        "caixa: not sending the credentials for {} to the token server {realm}: it is another host",
                        self.host
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
                let response = request.call().map_err(|e| match e {
                    ureq::Error::Status(status, _) => RegistryError::Status {
                        url: realm.clone(),
                        status,
                        hint: ": the token server refused: check the credentials (step10 login)"
                            .into(),
                    },
                    ureq::Error::Transport(t) => self.transport_error(&url, t),
                })?;
                let mut body = Vec::new();
                response
                    .into_reader()
                    .take(MAX_MANIFEST)
                    .read_to_end(&mut body)
                    .map_err(|e| self.transport_error(&url, e))?;
                let json: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                        what: url.clone(),
                        why: format!("token answer is not JSON: {e}"),
                    })?;
                let token = json["token"]
                    .as_str()
                    .or(json["access_token"].as_str())
                    .ok_or_else(|| RegistryError::Protocol {
                        what: url,
                        why: "no token in the answer".into(),
                    })?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// Reads a whole, bounded answer body.
    pub fn read_bounded(
        &self,
        response: ureq::Response,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some(len) = response
            .header("Content-Length")
            .and_then(|l| l.parse::<u64>().ok())
        {
            if len > MAX_MANIFEST {
                return Err(RegistryError::Protocol {
                    what: what.into(),
                    why: format!(
                        "{len} bytes is more than the {MAX_MANIFEST}-byte bound for a manifest"
                    ),
                });
            }
        }
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.transport_error(what, e))?;
        if body.len() as u64 > MAX_MANIFEST {
            return Err(RegistryError::Protocol {
                what: what.into(),
                why: "larger than the manifest bound".into(),
            });
        }
        Ok(body)
    }
}

/// Whether the token server at `realm` may see the credentials saved for
/// `registry`: only when it is the registry's own host (any port), or
/// Docker Hub's token server for Docker Hub; and only over HTTPS, or plain
/// HTTP where that is allowed (loopback, `--insecure-registry`). Docker
/// sends them to any realm a registry names; caixa does not.
pub fn realm_may_get_credentials(realm: &str, registry: &str, insecure: &[String]) -> bool {
    let realm_host = host_of(realm);
    let name = |host: &str| host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
    let same = name(realm_host) == name(registry)
        || (realm_host == "auth.docker.io" && registry == "registry-1.docker.io");
    same && (realm.starts_with("https://") || plain_http_ok(realm_host, insecure))
}

/// The `host[:port]` of a URL.
fn host_of(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
}

/// Percent-encoding for query values and path segments (step 11's client
/// uses it too).
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
        let ok =
            |realm: &str, registry: &str| super::realm_may_get_credentials(realm, registry, &[]);
        assert!(ok("https://auth.docker.io/token", "registry-1.docker.io"));
        assert!(ok("http://127.0.0.1:5000/token", "127.0.0.1:5000"));
        assert!(ok("https://reg.example:5001/auth", "reg.example:5000"));
        assert!(!ok("http://reg.example:5001/auth", "reg.example:5000"));
        assert!(super::realm_may_get_credentials(
            "http://reg.example:5001/auth",
            "reg.example:5000",
            &["reg.example:5001".into()]
        ));
        assert!(!ok("http://auth.docker.io/token", "registry-1.docker.io"));
        assert!(!ok("https://evil.example/token", "registry-1.docker.io"));
        assert!(!ok("https://other.azurecr.io/token", "mine.azurecr.io"));
        assert!(!ok("https://127.0.0.2/token", "127.0.0.1:5000"));
        assert_eq!(
            super::percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
