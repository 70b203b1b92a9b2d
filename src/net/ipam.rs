//! IPAM: which container has which address, on disk, safe against two
//! containers starting at once.
//!
//! One file per bridge, `<state>/networks/<bridge>.leases`, one line per
//! container: `ADDRESS ID PID PUBLISHED NAMES`. Every change happens under an
//! exclusive `flock(2)` on `<bridge>.lock`. A lease whose step binary (PID)
//! is gone was left by a crash and is taken back. The network's first lease
//! creates the bridge and its rules; its last release removes them.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::{NetError, NetworkSpec, bridge, portmap, veth};
use crate::trace::{Side, Trace};

/// One line of the leases file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The container's address.
    pub address: Ipv4Addr,
    /// The container's id.
    pub id: String,
    /// The pid of the step binary that holds it.
    pub pid: i32,
    /// Its published ports, as `tcp:8080` items.
    pub published: Vec<String>,
    /// The names the others on the network reach it by (may be empty).
    pub names: Vec<String>,
    /// Which of its interfaces is on this network (0: `eth0`).
    pub interface: u8,
}

impl Lease {
    fn parse(line: &str) -> Option<Lease> {
        let mut f = line.split_whitespace();
        Some(Lease {
            address: f.next()?.parse().ok()?,
            id: f.next()?.to_string(),
            pid: f.next()?.parse().ok()?,
            published: f
                .next()
                .filter(|p| *p != "-")
                .map(|p| p.split(',').map(String::from).collect())
                .unwrap_or_default(),
            names: f
                .next()
                .filter(|n| *n != "-")
                .map(|n| {
                    n.split(',')
                        .filter(|n| super::is_host_name(n))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            interface: match f.next() {
                None => 0,
                Some(n) => n.parse().ok().filter(|n| *n <= 9)?,
            },
        })
    }

    fn line(&self) -> String {
        let published = if self.published.is_empty() {
            "-".to_string()
        } else {
            self.published.join(",")
        };
        let names = if self.names.is_empty() {
            "-".to_string()
        } else {
            self.names.join(",")
        };
        format!(
            "{} {} {} {published} {names} {}\n",
            self.address, self.id, self.pid, self.interface
        )
    }

    fn alive(&self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), None).is_ok()
    }
}

fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.to_path_buf();
    move |source| NetError::State { path, source }
}

/// The leases file, locked while this lives.
struct Locked {
    _lock: Flock<File>,
    path: PathBuf,
    leases: Vec<Lease>,
    /// Leases whose step binary is gone (killed): their rules may be left.
    dead: Vec<Lease>,
}

fn lock(spec: &NetworkSpec) -> Result<Locked, NetError> {
    let dir = spec.state_dir.join("networks");
    std::fs::create_dir_all(&dir).map_err(state_err(&dir))?;
    let lock_path = dir.join(format!("{}.lock", spec.bridge));
    let lock = File::create(&lock_path).map_err(state_err(&lock_path))?;
    // Blocks until the lock is ours.
    let lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, errno)| state_err(&lock_path)(errno.into()))?;
    let path = dir.join(format!("{}.leases", spec.bridge));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (leases, dead): (Vec<Lease>, Vec<Lease>) = text
        .lines()
        .filter_map(Lease::parse)
        .partition(Lease::alive);
    Ok(Locked {
        _lock: lock,
        path,
        leases,
        dead,
    })
}

impl Locked {
    /// Writes the leases back: the live ones, and the dead ones not yet
    /// taken back (the next try needs to know what they made).
    fn save(&self) -> Result<(), NetError> {
        let tmp = self.path.with_extension("tmp");
        let text: String = self
            .leases
            .iter()
            .chain(&self.dead)
            .map(Lease::line)
            .collect();
        std::fs::write(&tmp, text).map_err(state_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(state_err(&self.path))
    }
}

impl Locked {
    /// Takes back every dead lease (see [`take_back`]); returns what
    /// happened to each. One that could not be taken back stays, for the
    /// next try. The one loop both a start and a sweep use.
    fn take_back_dead(
        &mut self,
        spec: &NetworkSpec,
        trace: &Trace,
    ) -> Vec<(String, Result<(), NetError>)> {
        let mut outcome = Vec::new();
        for dead in std::mem::take(&mut self.dead) {
            let result = take_back(spec, &dead, trace);
            if result.is_err() {
                self.dead.push(dead.clone());
            }
            outcome.push((dead.id, result));
        }
        outcome
    }
}

/// The network's leases, locked while this lives: what a start reads and
/// changes of the network happens under it, so two starts never interleave.
pub struct Leases(Locked);

/// Opens (and locks) the leases of `spec`'s network, waiting for the lock.
pub fn open(spec: &NetworkSpec) -> Result<Leases, NetError> {
    lock(spec).map(Leases)
}

// ANCHOR: lease
impl Leases {
    /// Whether no live container holds an address of this network.
    pub fn is_empty(&self) -> bool {
        self.0.leases.is_empty()
    }

    /// Refuses a host port another container publishes, or that a process
    /// of the host has bound.
    pub fn check_ports(&self, spec: &NetworkSpec) -> Result<(), NetError> {
        for p in &spec.publish {
            if let Some(holder) = self
                .0
                .leases
                .iter()
                .find(|l| l.published.contains(&p.key()))
            {
                return Err(NetError::PortTaken(format!(
                    "host port {} is already published by container {}: choose another host port",
                    p.key().replace(':', " "),
                    holder.id
                )));
            }
            portmap::check_free(p)?;
        }
        Ok(())
    }

    /// Takes back what killed containers left: their port rules would
    /// still catch their ports, and their files would stay for good.
    pub fn take_back_dead(&mut self, spec: &NetworkSpec, trace: &Trace) -> Result<(), NetError> {
        for (_, result) in self.0.take_back_dead(spec, trace) {
            result?;
        }
        Ok(())
    }

    /// Leases the lowest free address of the subnet to container `id`.
    pub fn take(
        &mut self,
        spec: &NetworkSpec,
        id: &str,
        trace: &Trace,
    ) -> Result<Ipv4Addr, NetError> {
        let taken: Vec<Ipv4Addr> = self.0.leases.iter().map(|l| l.address).collect();
        let address = (2..spec.subnet.size() - 1)
            .map(|n| spec.subnet.nth(n))
            .find(|a| !taken.contains(a))
            .ok_or(NetError::Exhausted(spec.subnet))?;
        self.0.leases.push(Lease {
            address,
            id: id.to_string(),
            pid: std::process::id() as i32,
            published: spec.publish.iter().map(Publish::key).collect(),
            names: spec.names.clone(),
            interface: spec.interface,
        });
        self.0.save()?;
        trace.step(
            Side::Parent,
            format_args!("ipam: leased {address} to {id} ({})", self.0.path.display()),
        );
        Ok(address)
    }

    // ANCHOR: refresh_hosts
    /// Rewrites the `/etc/hosts` of every container on the network that
    /// has names, and of `changed` (the one that joined or left), so that
    /// each lists the containers of every network it is on: name
    /// resolution by managed hosts files. Called under the network's lock,
    /// after a lease is taken or given back (and saved).
    pub fn refresh_hosts(&self, spec: &NetworkSpec, changed: &str) {
        if !spec.resolves_names() {
            return; // step 8's bridge: nobody's names change
        }
        // A container may be on several networks, whose locks differ: one
        // more lock, over every hosts file, so two networks' refreshes never
        // interleave. The leases are read again under it, as saved.
        let Some(_hosts) = lock_hosts(&spec.state_dir) else {
            return;
        };
        let everywhere = live_leases(&spec.state_dir);
        let mut touched: Vec<&str> = self
            .0
            .leases
            .iter()
            .filter(|l| !l.names.is_empty())
            .map(|l| l.id.as_str())
            .collect();
        if !touched.contains(&changed) {
            touched.push(changed);
        }
        for id in touched {
            let bridges: Vec<&str> = everywhere
                .iter()
                .filter(|(_, l)| l.id == id)
                .map(|(bridge, _)| bridge.as_str())
                .collect();
            let mut peers: Vec<(Ipv4Addr, &[String])> = Vec::new();
            for (_, lease) in everywhere
                .iter()
                .filter(|(b, l)| bridges.contains(&b.as_str()) && !l.names.is_empty())
            {
                if !peers.iter().any(|(a, _)| *a == lease.address) {
                    peers.push((lease.address, lease.names.as_slice()));
                }
            }
            let dir = super::files::dir(&spec.state_dir, id);
            if !dir.join("hosts").exists() {
                continue; // gone, or not started yet: nothing to rewrite
            }
            if let Err(e) = super::files::write_peers(&dir, &peers) {
                eprintln!("caixa: warning: the hosts file of {id}: {e}");
            }
        }
    }
    // ANCHOR_END: refresh_hosts

    /// Gives back `id`'s address.
    pub fn give_back(&mut self, id: &str, trace: &Trace) -> Result<(), NetError> {
        self.0.leases.retain(|l| l.id != id);
        self.0.save()?;
        trace.step(
            Side::Parent,
            format_args!("ipam: released the address of {id}"),
        );
        Ok(())
    }
}
// ANCHOR_END: lease

use super::Publish;

/// Removes what the dead holder of `lease` made for it: its port rules, the
/// host end of its veth (if its namespace has not taken it along), its
/// files. The caller holds the leases' lock and drops the lease.
fn take_back(spec: &NetworkSpec, lease: &Lease, trace: &Trace) -> Result<(), NetError> {
    portmap::remove_rules_of(&lease.id, trace)?;
    let host = veth::host_name(&lease.id, lease.interface);
    let ifb = super::shape::ifb_of(&host);
    if super::link_exists(&host) {
        veth::delete(&veth::Veth { host }, trace)?;
    }
    if super::link_exists(&ifb) {
        super::shape::remove(&ifb, trace)?;
    }
    // The files are the first network's (see `Prepared`).
    if lease.interface != 0 {
        return Ok(());
    }
    let files = super::files::dir(&spec.state_dir, &lease.id);
    match std::fs::remove_dir_all(&files) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(state_err(&files)(e)),
        _ => Ok(()),
    }
}

/// The lock over every container's hosts file (see
/// [`Leases::refresh_hosts`]); `None`, with a warning, when it cannot be
/// taken (the files are then left as they are).
fn lock_hosts(state_dir: &Path) -> Option<Flock<File>> {
    let path = state_dir.join("networks").join("hosts.lock");
    let warn = |e: &dyn std::fmt::Display| {
        eprintln!("caixa: warning: cannot lock {}: {e}", path.display());
    };
    let file = File::create(&path).map_err(|e| warn(&e)).ok()?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| warn(&e))
        .ok()
}

/// Every live lease of every bridge under `state_dir`, with its bridge, as
/// saved (for the hosts files, which list the names of every network a
/// container is on).
fn live_leases(state_dir: &Path) -> Vec<(String, Lease)> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("networks")) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(bridge) = file.strip_suffix(".leases") else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        all.extend(
            text.lines()
                .filter_map(Lease::parse)
                .filter(Lease::alive)
                .map(|l| (bridge.to_string(), l)),
        );
    }
    all
}

/// The addresses leased on `bridge` now, by container id (read without
/// the lock: for showing, never for deciding).
pub fn addresses(state_dir: &Path, bridge: &str) -> Vec<(String, Ipv4Addr)> {
    let path = state_dir.join("networks").join(format!("{bridge}.leases"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(Lease::parse)
        .map(|l| (l.id, l.address))
        .collect()
}

/// Every address container `id` holds: (bridge, address, interface
/// index), its first network's first.
pub fn addresses_of(state_dir: &Path, id: &str) -> Vec<(String, Ipv4Addr, u8)> {
    Held::now(state_dir).of(id)
}

/// Every live lease of the host, read once: a listing of many containers
/// asks it for each ([`Held::of`]) instead of reading every lease file
/// again per container.
#[derive(Debug, Default)]
pub struct Held(Vec<(String, Lease)>);

impl Held {
    /// The live leases now, on every bridge under `state_dir`.
    pub fn now(state_dir: &Path) -> Held {
        Held(live_leases(state_dir))
    }

    /// What container `id` holds: (bridge, address, interface index), its
    /// first network's first.
    pub fn of(&self, id: &str) -> Vec<(String, Ipv4Addr, u8)> {
        let mut held: Vec<(String, Ipv4Addr, u8)> = self
            .0
            .iter()
            .filter(|(_, l)| l.id == id)
            .map(|(bridge, l)| (bridge.clone(), l.address, l.interface))
            .collect();
        held.sort_by_key(|(_, _, interface)| *interface);
        held
    }
}

/// The bridge and address container `id` holds, on whichever bridge.
pub fn address_of(state_dir: &Path, id: &str) -> Option<(String, Ipv4Addr)> {
    let entries = std::fs::read_dir(state_dir.join("networks")).ok()?;
    entries.flatten().find_map(|entry| {
        let file = entry.file_name().to_string_lossy().into_owned();
        let bridge = file.strip_suffix(".leases")?;
        addresses(state_dir, bridge)
            .into_iter()
            .find(|(holder, _)| holder == id)
            .map(|(_, address)| (bridge.to_string(), address))
    })
}

// ANCHOR: sweep_leases
/// Takes back every dead lease of every bridge under `state_dir` (see
/// [`take_back`]) and removes a bridge that no live lease holds; returns a
/// line per thing done or not done, for the caller's log. Run it when no
/// start is known to be half-way: the leases' lock keeps it from racing
/// one anyway.
pub fn sweep(state_dir: &Path, trace: &Trace) -> Vec<String> {
    let mut said = Vec::new();
    let Ok(entries) = std::fs::read_dir(state_dir.join("networks")) else {
        return said;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "bridge") {
            continue;
        }
        let (Some(bridge), Ok(marker)) = (
            path.file_stem().map(|b| b.to_string_lossy().into_owned()),
            std::fs::read_to_string(&path),
        ) else {
            continue;
        };
        // The marker's first line is the subnet (see `bridge::marker`).
        let Ok(subnet) = marker.lines().next().unwrap_or("").trim().parse() else {
            said.push(format!(
                "warning: {}: not a subnet; left alone",
                path.display()
            ));
            continue;
        };
        let spec = NetworkSpec::of_bridge(&bridge, subnet, state_dir);
        if let Err(e) = sweep_bridge(&spec, trace, &mut said) {
            said.push(format!(
                "warning: sweeping the leases of {}: {e}",
                spec.bridge
            ));
        }
    }
    said
}
// ANCHOR_END: sweep_leases

fn sweep_bridge(spec: &NetworkSpec, trace: &Trace, said: &mut Vec<String>) -> Result<(), NetError> {
    let mut state = lock(spec)?;
    if state.dead.is_empty() && !state.leases.is_empty() {
        return Ok(());
    }
    for (id, result) in state.take_back_dead(spec, trace) {
        said.push(match result {
            Ok(()) => format!(
                "took back the address, rules and veth of container {id}, whose holder died"
            ),
            Err(e) => format!(
                "warning: cannot take back the lease of dead container {id}: {e}; the next sweep tries again"
            ),
        });
    }
    state.save()?;
    if state.leases.is_empty()
        && state.dead.is_empty()
        && bridge::exists(&spec.bridge)
        && !bridge::is_kept(spec)
    {
        bridge::destroy(spec, trace)?;
        said.push(format!(
            "removed bridge {}: no container holds it",
            spec.bridge
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lines_round_trip() {
        let l = Lease {
            address: Ipv4Addr::new(10, 89, 0, 2),
            id: "abc".into(),
            pid: 42,
            published: vec!["tcp:8080".into(), "udp:53".into()],
            names: vec!["web".into(), "www".into()],
            interface: 2,
        };
        assert_eq!(Lease::parse(&l.line()), Some(l));
        // A name that could not be a host name is dropped, not written.
        assert_eq!(
            Lease::parse("10.89.0.3 x 7 - web,../x,-bad").unwrap().names,
            ["web"]
        );
        assert_eq!(
            Lease::parse("10.89.0.3 x 7 -").unwrap().published,
            Vec::<String>::new()
        );
        assert_eq!(Lease::parse("garbage"), None);
    }
}
