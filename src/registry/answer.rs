//! A registry's answer: its status and headers now, its body later, read
//! under the request's clocks; and the digest the registry claims for it.

use super::RegistryError;
use super::deadline::{Budget, Watched, watch};
use crate::image::digest::hex_of;

/// An answer whose body is still to come, with the time it may take.
pub struct Answer {
    /// The status and headers.
    pub response: ureq::Response,
    /// The request's clocks, which go on for the body.
    pub budget: Budget,
}

impl Answer {
    /// The URL that answered (after any redirect).
    pub fn url(&self) -> String {
        self.response.get_url().to_string()
    }

    /// The body, under the request's clocks; its deadline narrows to the
    /// `Content-Length` when the server gives one.
    pub fn body(self) -> Result<Watched, RegistryError> {
        let url = self.url();
        let length = self.content_length();
        watch(self.response.into_reader(), self.budget.narrowed_to(length)).map_err(|e| {
            RegistryError::Transport {
                url,
                why: format!("cannot start a reader thread: {e}"),
            }
        })
    }

    /// The `Content-Length` the server gave, if a number.
    pub fn content_length(&self) -> Option<u64> {
        self.response
            .header("Content-Length")
            .and_then(|l| l.parse().ok())
    }

    /// What the server says the content's digest is, to check once the
    /// content is read.
    pub fn claimed_digest(&self) -> ClaimedDigest {
        ClaimedDigest {
            url: self.url(),
            said: self
                .response
                .header("Docker-Content-Digest")
                .map(String::from),
        }
    }
}

/// An answer's `Docker-Content-Digest` header, if it had one.
pub struct ClaimedDigest {
    url: String,
    said: Option<String>,
}

impl ClaimedDigest {
    /// Checks the claim, when it is a sha256 one, against `actual`: a
    /// registry that names one digest and sends other bytes is broken, or
    /// something on the way changed them.
    pub fn check(&self, actual: &str) -> Result<(), RegistryError> {
        let Some(said) = self.said.as_deref().filter(|s| s.starts_with("sha256:")) else {
            return Ok(());
        };
        let bad = |why: String| RegistryError::Protocol {
            what: self.url.clone(),
            why,
        };
        if hex_of(said).is_none() {
            return Err(bad(format!(
                "its Docker-Content-Digest {said:?} is not a sha256 digest"
            )));
        }
        if said != actual {
            return Err(bad(format!(
                "its Docker-Content-Digest says {said}, not {actual}: the registry is broken or the answer was altered on the way"
            )));
        }
        Ok(())
    }
}
