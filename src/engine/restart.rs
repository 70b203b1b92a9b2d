//! Restart policies (`--restart`): who starts a container again when it
//! ends, and when.
//!
//! Docker's daemon does it; in caixa the container's shim does, because
//! the shim is the one that sees the end first (it reaps pid 1), and it
//! outlives the daemon: a container with `--restart always` keeps being
//! restarted while the daemon is down or being upgraded. The decision is
//! Docker's, written here as one function ([`Policy::restarts`]):
//!
//! | policy | restarted when it ends, unless `stop` cancelled it |
//! |---|---|
//! | `no` | never |
//! | `on-failure[:N]` | with a code other than 0, at most N times (0: no limit) |
//! | `always` | always |
//! | `unless-stopped` | always, unless a user killed it (`kill`) |
//!
//! Between two starts the shim waits, 100 ms the first time and twice as
//! long each time after, up to a minute, back to 100 ms after a run of
//! ten seconds or more: a program that fails at once is not restarted in
//! a tight loop that would eat a CPU. While it waits it still answers on
//! its socket, so `stop` (and `rm -f`) can cancel the next start.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EngineError;

/// A container's restart policy, as Docker's `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `no` (also ""), `on-failure`, `always` or `unless-stopped`.
    pub name: String,
    /// For `on-failure`: the most restarts (0: no limit).
    pub maximum_retry_count: u32,
}

/// The first pause before a restart; it doubles each time.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest pause before a restart.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the pause to [`FIRST_DELAY`].
const RAN_WELL: Duration = Duration::from_secs(10);

impl Policy {
    /// Reads `HostConfig.RestartPolicy` from a create body, checked as
    /// Docker checks it: a known name, a count only with `on-failure`,
    /// and none with `AutoRemove` (a container cannot both go away and
    /// come back).
    pub fn from_create(body: &Value) -> Result<Policy, EngineError> {
        let bad = |why: String| EngineError::BadRequest(why);
        let given = &body["HostConfig"]["RestartPolicy"];
        let name = given["Name"].as_str().unwrap_or("").to_string();
        let count = match &given["MaximumRetryCount"] {
            Value::Null => 0,
            v => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(format!("invalid MaximumRetryCount {v}: use a count")))?,
        };
        match name.as_str() {
            "" | "no" | "always" | "unless-stopped" if count > 0 => {
                return Err(bad(format!(
                    "maximum retry count cannot be used with restart policy {name:?}: only with on-failure"
                )));
            }
            "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
            other => {
                return Err(bad(format!(
                    "invalid restart policy {other:?}: use no, on-failure[:N], always or unless-stopped"
                )));
            }
        }
        let policy = Policy {
            name,
            maximum_retry_count: count,
        };
        if policy.is_active() && body["HostConfig"]["AutoRemove"].as_bool() == Some(true) {
            return Err(bad(
                "--rm and --restart conflict: a container cannot both be removed and restarted"
                    .into(),
            ));
        }
        Ok(policy)
    }

    /// Whether it may ever restart the container.
    pub fn is_active(&self) -> bool {
        !matches!(self.name.as_str(), "" | "no")
    }

    // ANCHOR: restarts
    /// Whether a container that ended with `exit_code`, after `restarts`
    /// restarts, starts again. `killed`: a user sent it a signal (`kill`),
    /// which only `unless-stopped` heeds; a `stop` never gets here.
    pub fn restarts(&self, exit_code: i32, restarts: u32, killed: bool) -> bool {
        match self.name.as_str() {
            "always" => true,
            "unless-stopped" => !killed,
            "on-failure" => {
                exit_code != 0
                    && (self.maximum_retry_count == 0 || restarts < self.maximum_retry_count)
            }
            _ => false,
        }
    }
    // ANCHOR_END: restarts

    /// Docker's way to write it (`on-failure:3`).
    pub fn to_json(&self) -> Value {
        let name = if self.name.is_empty() {
            "no"
        } else {
            &self.name
        };
        serde_json::json!({ "Name": name, "MaximumRetryCount": self.maximum_retry_count })
    }
}

/// The pause before the next restart, after one that waited `last` (None:
/// the first) and a run that lasted `ran`.
pub fn next_delay(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(last) if ran < RAN_WELL => (last * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, count: u32) -> Policy {
        Policy {
            name: name.into(),
            maximum_retry_count: count,
        }
    }

    #[test]
    fn each_policy_decides_as_dockers_does() {
        assert!(!policy("no", 0).restarts(1, 0, false));
        assert!(!policy("", 0).restarts(1, 0, false));
        assert!(policy("always", 0).restarts(0, 99, true));
        assert!(policy("unless-stopped", 0).restarts(0, 5, false));
        assert!(!policy("unless-stopped", 0).restarts(0, 5, true));
        let on_failure = policy("on-failure", 2);
        assert!(on_failure.restarts(3, 0, false) && on_failure.restarts(3, 1, true));
        assert!(!on_failure.restarts(3, 2, false), "two restarts at most");
        assert!(
            !on_failure.restarts(0, 0, false),
            "a success is not a failure"
        );
        assert!(policy("on-failure", 0).restarts(1, 1000, false));
    }

    #[test]
    fn bad_policies_are_refused_at_create() {
        let body = |p: Value| json!({ "HostConfig": { "RestartPolicy": p } });
        assert_eq!(
            Policy::from_create(&body(json!({"Name": "on-failure", "MaximumRetryCount": 3})))
                .unwrap(),
            policy("on-failure", 3)
        );
        for bad in [
            json!({"Name": "sometimes"}),
            json!({"Name": "always", "MaximumRetryCount": 2}),
            json!({"Name": "on-failure", "MaximumRetryCount": -1}),
        ] {
            assert!(Policy::from_create(&body(bad.clone())).is_err(), "{bad}");
        }
        let both =
            json!({ "HostConfig": { "AutoRemove": true, "RestartPolicy": {"Name": "always"} } });
        assert!(Policy::from_create(&both).is_err());
    }

    #[test]
    fn the_pause_doubles_and_resets_after_a_good_run() {
        let quick = Duration::from_millis(5);
        let mut delay = next_delay(None, quick);
        assert_eq!(delay, FIRST_DELAY);
        for _ in 0..20 {
            delay = next_delay(Some(delay), quick);
        }
        assert_eq!(delay, MAX_DELAY);
        assert_eq!(next_delay(Some(delay), RAN_WELL), FIRST_DELAY);
    }
}
