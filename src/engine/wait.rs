//! `POST /containers/ID/wait?condition=…`: Docker's three ways to wait for
//! a container, each answered when its condition holds.
//!
//! | condition | answered when | who asks |
//! |---|---|---|
//! | `not-running` (or none) | it does not run: created or exited, at once if so already | `docker wait` |
//! | `next-exit` | a run that began after the request has ended | `docker run`, `docker start -a` |
//! | `removed` | it no longer exists: its directory is gone, its name free | `docker run --rm` |
//!
//! The Docker CLI asks *before* it starts the container, so `next-exit`
//! must not answer with the end of an earlier run (`start -a` of an exited
//! container), and with `--rm` it asks for `removed`: when `docker run
//! --rm --name web …` returns, the name `web` is free again. An engine
//! that answered at the exit would let the next command in a script race
//! the removal, and lose now and then.
//!
//! Every condition is a judgement on what the container's files say
//! ([`Containers::state`]), looked at again each time the directory
//! changes ([`Waiter`]); no wait holds a lock or a thread of the shim's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::EngineError;
use super::state::{Containers, Record, State, Status};
use super::watch::Waiter;

/// What a wait waits for (the API's `condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Not running now: created, or exited (Docker's default).
    NotRunning,
    /// The end of a run that begins after the request, or of the one
    /// running now.
    NextExit,
    /// Gone: removed by `rm`, or by its shim after `--rm`.
    Removed,
}

impl Condition {
    /// The query parameter as Docker spells it; an unknown one is the
    /// client's mistake (400), said before anything waits.
    pub fn parse(param: Option<&str>) -> Result<Condition, EngineError> {
        match param.unwrap_or("") {
            "" | "not-running" => Ok(Condition::NotRunning),
            "next-exit" => Ok(Condition::NextExit),
            "removed" => Ok(Condition::Removed),
            other => Err(EngineError::BadRequest(format!(
                "invalid wait condition {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

// ANCHOR: wait_until
/// Waits until `condition` holds for container `record`; the state that
/// says so (for `removed`, the last one recorded: its tombstone's, after
/// `--rm`, whose exit code the Docker CLI exits with).
pub fn until(
    containers: &Containers,
    record: &Record,
    condition: Condition,
) -> Result<State, EngineError> {
    let dir = containers.dir(&record.id);
    let _reading = Waiting::on(containers, &record.id);
    let mut waiter = Waiter::on_life(&dir);
    // For `next-exit`: the end after the first look.
    let mut next: Option<NextEnd> = None;
    let mut last = State::default();
    loop {
        let mark = waiter.mark();
        // Gone first: a state read after that is the tombstone's, final.
        let gone = !dir.exists() && !containers.holds_name(&record.name, &record.id);
        match containers.state(&record.id) {
            Ok(state) => last = state,
            // Neither the directory nor a tombstone (`rm` keeps none).
            Err(EngineError::NotFound(_)) if gone => {}
            // Being removed (its files go before its directory and its
            // name): look again when that moves on.
            Err(EngineError::NotFound(_)) => {
                waiter.pause(mark, None);
                continue;
            }
            Err(e) => return Err(e),
        }
        let done = match condition {
            Condition::NotRunning => gone || last.status != Status::Running,
            Condition::NextExit => {
                gone || next
                    .get_or_insert_with(|| NextEnd::after(&last))
                    .reached(&last)
            }
            Condition::Removed => gone,
        };
        if done {
            return Ok(last);
        }
        waiter.pause(mark, None);
    }
}
// ANCHOR_END: wait_until

/// The waits and follows under way in this daemon, by container id.
static WAITING: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// One reader of a container's files (a wait, an attach, a `logs -f`),
/// counted while it lasts: the last one to leave a removed container takes
/// its tombstone away, before its answer ends. So a `run --rm` leaves
/// nothing behind once its client has the exit code and the output; a
/// tombstone nobody read (`run -d --rm`) is swept a minute later
/// ([`Containers::retire`]).
pub(super) struct Waiting<'a> {
    containers: &'a Containers,
    id: &'a str,
}

impl<'a> Waiting<'a> {
    /// Counts a reader of container `id` in, until it is dropped.
    pub(super) fn on(containers: &'a Containers, id: &'a str) -> Waiting<'a> {
        *waits().entry(id.to_string()).or_default() += 1;
        Waiting { containers, id }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waits = waits();
        let Some(count) = waits.get_mut(self.id) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            waits.remove(self.id);
            // Under the lock: no other reader can count itself in halfway.
            if !self.containers.dir(self.id).exists() {
                self.containers.bury(self.id);
            }
        }
    }
}

fn waits() -> std::sync::MutexGuard<'static, BTreeMap<String, usize>> {
    WAITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The end of a run that begins after a first look at a container: what
/// `next-exit` waits for, and where an attach to an exited container
/// (`start -a`) stops following.
pub(super) struct NextEnd {
    first: State,
    /// A run has begun since the first look.
    began: bool,
}

impl NextEnd {
    /// From the state of the first look: a container that runs (or has
    /// never run) ends next when it exits; one that has exited must run
    /// again first.
    pub(super) fn after(first: &State) -> NextEnd {
        NextEnd {
            began: first.status != Status::Exited,
            first: first.clone(),
        }
    }

    /// Whether `now` is that end. A start resets the state to `created`,
    /// then the shim says `running`: either is a new run, and so is another
    /// recorded end, when the whole run came and went between two looks.
    pub(super) fn reached(&mut self, now: &State) -> bool {
        self.began |= now.status != Status::Exited || ended_again(&self.first, now);
        self.began && now.status == Status::Exited
    }
}

/// Whether `now` records another end than `before` did (both exited): a
/// run that began and ended between two looks.
fn ended_again(before: &State, now: &State) -> bool {
    (now.started, now.finished, now.restart_count)
        != (before.started, before.finished, before.restart_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_as_docker_spells_them() {
        assert_eq!(Condition::parse(None).unwrap(), Condition::NotRunning);
        assert_eq!(Condition::parse(Some("")).unwrap(), Condition::NotRunning);
        assert_eq!(
            Condition::parse(Some("next-exit")).unwrap(),
            Condition::NextExit
        );
        assert_eq!(
            Condition::parse(Some("removed")).unwrap(),
            Condition::Removed
        );
        let wrong = Condition::parse(Some("exited")).unwrap_err();
        assert!(matches!(wrong, EngineError::BadRequest(_)), "{wrong}");
        assert!(wrong.to_string().contains("next-exit"), "{wrong}");
    }

    #[test]
    fn an_end_in_the_same_second_is_told_by_the_restart_count() {
        let before = State {
            status: Status::Exited,
            started: 10,
            finished: 11,
            ..State::default()
        };
        assert!(!ended_again(&before, &before.clone()));
        let restarted = State {
            restart_count: 1,
            ..before.clone()
        };
        assert!(ended_again(&before, &restarted));
        let later = State {
            finished: 12,
            ..before.clone()
        };
        assert!(ended_again(&before, &later));
    }

    #[test]
    fn the_next_end_of_an_exited_container_comes_after_a_new_run() {
        let exited = State {
            status: Status::Exited,
            exit_code: 3,
            started: 10,
            finished: 11,
            ..State::default()
        };
        let mut next = NextEnd::after(&exited);
        assert!(!next.reached(&exited), "the end already recorded");
        assert!(!next.reached(&State::default()), "started again: created");
        assert!(
            next.reached(&exited),
            "the same code and seconds, after a new run"
        );
        // A running container's next end is its exit.
        let running = State {
            status: Status::Running,
            ..State::default()
        };
        assert!(NextEnd::after(&running).reached(&exited));
    }
}
