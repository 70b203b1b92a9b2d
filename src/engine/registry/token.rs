//! The token mode: who may pull and push which repository, proven by a
//! short-lived token the registry signs itself (`--token-access FILE`).
//!
//! The distribution spec's token flow, as Docker Hub runs it, with the
//! token server in the same process:
//!
//! ```text
//! client                                   registry
//!   │ GET /v2/team/app/manifests/1           │
//!   │ ─────────────────────────────────────▶ │ no token
//!   │ 401 WWW-Authenticate: Bearer           │
//!   │   realm="http://HOST/token",           │
//!   │   service="caixa-registry",            │
//!   │   scope="repository:team/app:pull"     │
//!   │ ◀───────────────────────────────────── │
//!   │ GET /token?service=…&scope=…           │
//!   │   Authorization: Basic ana:…  (or none)│ bcrypt (htpasswd), then
//!   │ ─────────────────────────────────────▶ │ asked ∩ access file
//!   │ {"token": "CLAIMS.MAC", …}             │
//!   │ ◀───────────────────────────────────── │
//!   │ GET /v2/team/app/manifests/1           │
//!   │   Authorization: Bearer CLAIMS.MAC     │ MAC, expiry, scope
//!   │ ─────────────────────────────────────▶ │
//!   │ 200 the manifest                       │
//!   │ ◀───────────────────────────────────── │
//! ```
//!
//! A token is its claims (user, granted scopes, expiry) in JSON, base64url,
//! a dot, and the HMAC-SHA256 of that text under a key of 32 random bytes
//! made when the registry starts. Only this process knows the key, so
//! only it can make a token that verifies: change one byte of the claims
//! and the MAC no longer matches; make a MAC without the key and you have
//! guessed 256 bits. The check is in constant time (`hmac`'s
//! `verify_slice`), so the time an answer takes tells nothing of how
//! much of a forged MAC was right. A restart makes a new key: every token
//! given before is void, and clients ask for new ones (they do, on a 401).
//!
//! A token is a bearer's: whoever holds it may do what it grants, with no
//! password, until it expires. So it grants only what was asked and the
//! access file allows, for one repository's pull or push, and lives
//! minutes ([`DEFAULT_TTL`]); a stolen one is worth that much. A
//! password, sent to `/token` once, is not on every request any more.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use super::access::{AccessFile, Actions};
use super::auth::{Htpasswd, basic_credentials};
use super::http::{Head, Reply};
use super::names::{Route, check_name};

/// The `service` this registry's tokens are for; clients echo it back.
pub(super) const SERVICE: &str = "caixa-registry";
/// How long a token lives unless told otherwise: Docker Hub's five minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The most scopes one token request may ask: a push asks two or three.
const MAX_SCOPES: usize = 16;
/// The longest `Authorization: Bearer` value read: sixteen scopes of the
/// longest names fit.
const MAX_TOKEN: usize = 16 << 10;

/// What a request needs its token to grant.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Needs<'a> {
    /// `/v2/`: any valid token ("you are someone this registry knows").
    Base,
    /// `/v2/_catalog`: the scope `registry:catalog:*`.
    Catalog,
    /// An action on a repository.
    Repository(&'a str, Actions),
}

// ANCHOR: needs
/// What `method` on `route` needs: reads (`GET`, `HEAD`) pull, every
/// other method push. A mount's source is checked where the mount is
/// made: without pull on it, no mount (an ordinary upload instead).
pub(super) fn needs<'a>(method: &str, route: &Route<'a>) -> Needs<'a> {
    let action = if matches!(method, "GET" | "HEAD") {
        Actions::PULL
    } else {
        Actions {
            pull: false,
            push: true,
        }
    };
    match *route {
        Route::Base => Needs::Base,
        Route::Catalog => Needs::Catalog,
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. } => Needs::Repository(name, action),
    }
}
// ANCHOR_END: needs

/// A token's claims: who, what, until when. The JSON of the token.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    /// The user, `None` for an anonymous client.
    sub: Option<String>,
    /// Issued at, seconds since the epoch.
    iat: u64,
    /// Expires at, seconds since the epoch.
    exp: u64,
    /// The scopes granted, as Docker's tokens spell them.
    access: Vec<Granted>,
}

/// One scope granted: `{"type": "repository", "name": …, "actions": […]}`.
#[derive(Debug, Serialize, Deserialize)]
struct Granted {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl Claims {
    /// What this token allows on `repository`.
    pub(super) fn on(&self, repository: &str) -> Actions {
        self.access
            .iter()
            .filter(|g| g.kind == "repository" && g.name == repository)
            .map(|g| Actions::parse(&g.actions.join(",")).unwrap_or_default())
            .fold(Actions::default(), Actions::or)
    }

    /// Whether this token may list the catalog.
    fn catalog(&self) -> bool {
        self.access
            .iter()
            .any(|g| g.kind == "registry" && g.name == "catalog")
    }

    /// Whether this token grants what `needs` asks.
    fn grants(&self, needs: &Needs<'_>) -> bool {
        match needs {
            Needs::Base => true,
            Needs::Catalog => self.catalog(),
            Needs::Repository(name, actions) => self.on(name).covers(*actions),
        }
    }

    /// The user the token was given to (`None`: anonymous).
    pub(super) fn user(&self) -> Option<&str> {
        self.sub.as_deref()
    }
}

/// The token mode: the users, their rights, the key, the lifetime.
#[derive(Debug)]
pub(super) struct Tokens {
    users: Htpasswd,
    access: AccessFile,
    key: [u8; 32],
    ttl: Duration,
}

impl Tokens {
    /// The token mode for `users` and their `access`, with a new key from
    /// the kernel's random source (`getrandom(2)`): tokens of an earlier
    /// run never verify.
    pub(super) fn new(
        users: Htpasswd,
        access: AccessFile,
        ttl: Duration,
    ) -> Result<Tokens, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Tokens {
            users,
            access,
            key,
            ttl,
        })
    }

    /// What `user` may do with `repository`, per the access file.
    pub(super) fn allowed(&self, user: Option<&str>, repository: &str) -> Actions {
        self.access.allowed(user, repository)
    }

    // ANCHOR: token_endpoint
    /// `GET /token?service=…&scope=…`: a token for what was asked and the
    /// access file allows, to the htpasswd user whose Basic credentials
    /// come with it, or to an anonymous client (no `Authorization`).
    /// Wrong credentials are a `401`, never an anonymous token: a client
    /// that meant to be someone should hear that it is not.
    pub(super) fn issue(&self, head: &Head) -> Reply {
        if let Some(service) = head.param("service")
            && service != SERVICE
        {
            return Reply::error(
                400,
                "UNSUPPORTED",
                &format!("this token server is for the service {SERVICE:?}"),
            );
        }
        let user = match head.header("authorization") {
            None => None,
            Some(header) => match basic_credentials(header)
                .filter(|(user, password)| self.users.verify(user, password))
            {
                Some((user, _)) => Some(user),
                None => {
                    return Reply::error(
                        401,
                        "UNAUTHORIZED",
                        "wrong user or password: log in with a user of the registry's htpasswd file",
                    )
                    .header("www-authenticate", format!("Basic realm=\"{SERVICE}\""));
                }
            },
        };
        let asked = match asked_scopes(head) {
            Ok(asked) => asked,
            Err(why) => return Reply::error(400, "UNSUPPORTED", &why),
        };
        // The intersection of what was asked and what the file allows;
        // a scope the file allows nothing of is left out, not refused
        // (the registry refuses the request that needs it).
        let mut access = Vec::new();
        for scope in asked {
            match scope {
                Scope::Catalog => access.push(Granted {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                }),
                Scope::Repository(name, actions) => {
                    let granted = actions.and(self.access.allowed(user.as_deref(), &name));
                    if !granted.is_empty() {
                        access.push(Granted {
                            kind: "repository".into(),
                            name,
                            actions: granted.words().split(',').map(String::from).collect(),
                        });
                    }
                }
            }
        }
        let now = SystemTime::now();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let iat = since_epoch.as_secs();
        // In whole seconds, rounded up: the token lives at least the
        // `expires_in` it is announced with (rounded down, up to a second
        // would be taken off it, all of a one-second token's life).
        let rounding = u64::from(since_epoch.subsec_nanos() > 0);
        let claims = Claims {
            sub: user,
            iat,
            exp: iat
                .saturating_add(self.ttl.as_secs().max(1))
                .saturating_add(rounding),
            access,
        };
        let token = self.sign(&claims);
        Reply::json(
            200,
            &json!({
                "token": token,
                "access_token": token,
                "expires_in": self.ttl.as_secs().max(1),
                "issued_at": humantime::format_rfc3339_seconds(now).to_string(),
            }),
        )
    }
    // ANCHOR_END: token_endpoint

    // ANCHOR: token_sign
    /// `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first part))`.
    fn sign(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mac = self.mac(&body).finalize().into_bytes();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The claims of `token` if this process signed it and it has not
    /// expired; `None` otherwise, whatever is wrong (the client asks for
    /// a new one either way).
    fn verify(&self, token: &str) -> Option<Claims> {
        let (body, mac) = token.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        // Constant time: hmac compares with `subtle`.
        self.mac(body).verify_slice(&mac).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        (now < claims.exp).then_some(claims)
    }
    // ANCHOR_END: token_sign

    fn mac(&self, text: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(text.as_bytes());
        mac
    }

    // ANCHOR: token_check
    /// The claims of the request's token if they grant what it `needs`;
    /// otherwise the `401` whose challenge names the scope to ask for:
    /// `UNAUTHORIZED` without a valid token (none, forged, expired),
    /// `DENIED` with `error="insufficient_scope"` when the token is good
    /// but grants less. Both are `401`, as Docker's registry answers, so
    /// a client asks `/token` again for the scope it was told; one the
    /// access file does not allow comes back without it, and the second
    /// answer is final.
    pub(super) fn check(&self, head: &Head, needs: &Needs<'_>) -> Result<Claims, Reply> {
        let token = head
            .header("authorization")
            .filter(|h| h.len() <= MAX_TOKEN)
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(claims) = token.and_then(|t| self.verify(t)) else {
            let why = if token.is_some() {
                "the token is not valid here (expired, or not signed by this registry): ask the realm for a new one"
            } else {
                "authentication required: ask the realm of WWW-Authenticate for a token"
            };
            return Err(self.challenge(head, needs, 401, "UNAUTHORIZED", why, false));
        };
        if claims.grants(needs) {
            return Ok(claims);
        }
        let why = match needs {
            Needs::Repository(name, actions) => format!(
                "requested access to the resource is denied: the token does not grant {} on {name}",
                actions.words()
            ),
            _ => "requested access to the resource is denied".to_string(),
        };
        Err(self.challenge(head, needs, 401, "DENIED", &why, true))
    }
    // ANCHOR_END: token_check

    /// The refusal with its `WWW-Authenticate: Bearer` challenge: where to
    /// ask (this registry's own `/token`, on the host the client used),
    /// for which service, for which scope. A push is asked as
    /// `pull,push`: clients check blobs before they send them.
    fn challenge(
        &self,
        head: &Head,
        needs: &Needs<'_>,
        status: u16,
        code: &str,
        why: &str,
        insufficient: bool,
    ) -> Reply {
        let mut value = format!(
            "Bearer realm=\"http://{}/token\",service=\"{SERVICE}\"",
            host_of(head)
        );
        match needs {
            Needs::Base => {}
            Needs::Catalog => value.push_str(",scope=\"registry:catalog:*\""),
            Needs::Repository(name, actions) => {
                let words = if actions.push { "pull,push" } else { "pull" };
                value.push_str(&format!(",scope=\"repository:{name}:{words}\""));
            }
        }
        if insufficient {
            value.push_str(",error=\"insufficient_scope\"");
        }
        Reply::error(status, code, why).header("www-authenticate", value)
    }
}

/// The host (and port) the client used, from its `Host` header, if it is
/// a plain host name or address; else loopback. It goes back into a
/// header, so nothing but those characters passes. A client that lies
/// about it only misleads itself; step 10's client sends credentials only
/// to a realm of the registry's own origin whatever a challenge says.
fn host_of(head: &Head) -> String {
    head.header("host")
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1")
        .to_string()
}

/// A scope a client asks for.
#[derive(Debug, PartialEq, Eq)]
enum Scope {
    /// `registry:catalog:*`.
    Catalog,
    /// `repository:NAME:pull,push`.
    Repository(String, Actions),
}

/// The scopes of a token request: every `scope=` parameter, each a
/// space-separated list (clients do both). Another resource type is left
/// out, as Docker's token servers do; a repository scope with a name
/// outside the grammar, or an unknown action, is refused.
fn asked_scopes(head: &Head) -> Result<Vec<Scope>, String> {
    let mut repositories: BTreeMap<String, Actions> = BTreeMap::new();
    let mut catalog = false;
    let mut count = 0;
    for text in head
        .query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace())
    {
        count += 1;
        if count > MAX_SCOPES {
            return Err(format!("at most {MAX_SCOPES} scopes in one token request"));
        }
        let shown: String = text.chars().take(300).collect();
        // The name may not hold a `:`, the actions may not: split at the
        // first and the last.
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let (name, actions) = rest.rsplit_once(':').unwrap_or((rest, ""));
        match kind {
            "repository" => {
                check_name(name).map_err(|_| {
                    format!("scope {shown:?}: not repository:NAME:ACTIONS with a valid NAME")
                })?;
                let actions = Actions::parse(actions)
                    .ok_or_else(|| format!("scope {shown:?}: actions are pull and push"))?;
                let all = repositories.entry(name.to_string()).or_default();
                *all = all.or(actions);
            }
            "registry" if name == "catalog" => catalog = true,
            _ => {}
        }
    }
    let mut scopes: Vec<Scope> = repositories
        .into_iter()
        .map(|(name, actions)| Scope::Repository(name, actions))
        .collect();
    if catalog {
        scopes.push(Scope::Catalog);
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderMap;

    fn tokens(ttl: u64) -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&file, format!("ana:{hash}\n")).unwrap();
        let users = Htpasswd::read(&file).unwrap();
        let access = dir.path().join("access");
        std::fs::write(&access, "ana team/* pull,push\n* public/* pull\n").unwrap();
        let access = AccessFile::read(&access, &users.users()).unwrap();
        Tokens::new(users, access, Duration::from_secs(ttl)).unwrap()
    }

    fn head(query: &[(&str, &str)], authorization: Option<&str>) -> Head {
        let mut headers = HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert("authorization", a.parse().unwrap());
        }
        Head {
            method: "GET".into(),
            path: "/token".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let tokens = tokens(300);
        let claims = Claims {
            sub: Some("ana".into()),
            iat: 0,
            exp: u64::MAX,
            access: vec![],
        };
        let token = tokens.sign(&claims);
        assert!(tokens.verify(&token).is_some());
        let mut forged = token.into_bytes();
        forged[3] ^= 1;
        assert!(tokens.verify(&String::from_utf8_lossy(&forged)).is_none());
        let expired = tokens.sign(&Claims { exp: 1, ..claims });
        assert!(tokens.verify(&expired).is_none());
        assert!(tokens.verify("no-dot").is_none());
    }

    #[test]
    fn scopes_are_parsed_merged_and_bounded() {
        let asked = asked_scopes(&head(
            &[
                ("scope", "repository:team/app:pull"),
                ("scope", "repository:team/app:push registry:catalog:*"),
                ("scope", "thing:x:y"),
            ],
            None,
        ))
        .unwrap();
        assert_eq!(
            asked,
            vec![
                Scope::Repository("team/app".into(), Actions::PUSH),
                Scope::Catalog
            ]
        );
        assert!(asked_scopes(&head(&[("scope", "repository:../x:pull")], None)).is_err());
        assert!(asked_scopes(&head(&[("scope", "repository:x:delete")], None)).is_err());
        let many = vec![("scope", "repository:x:pull"); MAX_SCOPES + 1];
        assert!(asked_scopes(&head(&many, None)).is_err());
    }

    #[test]
    fn a_token_grants_the_intersection_of_asked_and_allowed() {
        let tokens = tokens(300);
        let granted = |auth: Option<&str>| {
            let reply = tokens.issue(&head(
                &[
                    ("scope", "repository:team/app:pull,push"),
                    (
                        "scope",
                        "repository:public/x:pull,push repository:other/z:pull",
                    ),
                ],
                auth,
            ));
            assert_eq!(reply.status(), 200);
            let json: serde_json::Value = serde_json::from_str(&reply.body_text()).unwrap();
            let claims = tokens.verify(json["token"].as_str().unwrap()).unwrap();
            (
                claims.user().map(String::from),
                claims.on("team/app"),
                claims.on("public/x"),
                claims.on("other/z"),
            )
        };
        // base64("ana:pw")
        assert_eq!(
            granted(Some("Basic YW5hOnB3")),
            (
                Some("ana".into()),
                Actions::PUSH,
                Actions::PULL,
                Actions::default()
            )
        );
        assert_eq!(
            granted(None),
            (None, Actions::default(), Actions::PULL, Actions::default())
        );
        // base64("ana:wx"): a wrong password is refused, not made anonymous.
        let wrong = tokens.issue(&head(&[], Some("Basic YW5hOnd4")));
        assert_eq!(wrong.status(), 401);
    }
}
