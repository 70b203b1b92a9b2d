//! Networking (step 8): a bridge, a veth pair per container, NAT and port
//! forwarding with netfilter, and bandwidth shaping with tc.
//!
//! After step 2 a container has only `lo`. Docker's default network gives it
//! a real interface: a *bridge* on the host (a virtual switch, `caixa0`), a
//! *veth pair* per container (a virtual cable: one end on the bridge, the
//! other created inside the container's network namespace as `eth0`), an address
//! from a small *IPAM*, and *netfilter* rules: MASQUERADE so the container
//! can reach out through the host's address, DNAT so a published host port
//! reaches the container.
//!
//! caixa drives the kernel mostly through the tools a learner types: `ip`
//! for the bridge, `iptables-restore` and `tc`, each run once per phase in
//! batch mode, and `-v` prints every command with its input, ready to copy.
//! What every start does is done without a program: the veth pair is two
//! rtnetlink messages ([`netlink`], what `ip` itself sends, hand-written
//! because their layout is the lesson; the netlink crates are asynchronous
//! or hide it), and the container's end is configured with ioctls from a
//! thread in its namespace ([`veth::configure_inside`]). `-v` prints those
//! too, one line each.

pub mod bridge;
pub mod cmd;
pub mod files;
pub mod ipam;
pub mod netlink;
pub mod portmap;
pub mod shape;
pub mod subnet;
pub mod usermode;
pub mod veth;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use crate::trace::Trace;
pub use portmap::{Protocol, Publish};
pub use subnet::Subnet;

/// What a container's network should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The host bridge (created on first use, removed with its last container).
    pub bridge: String,
    /// The bridge's subnet; the gateway is its first address.
    pub subnet: Subnet,
    /// Published ports (`-p`).
    pub publish: Vec<Publish>,
    /// `--network-bandwidth`, in tc's syntax (e.g. `10mbit`).
    pub bandwidth: Option<String>,
    /// Where leases and per-container files live.
    pub state_dir: PathBuf,
    /// The names the container answers to on this network, for the other
    /// containers on it (the engine's named networks: its name and
    /// aliases). Empty on step 8's bridge, which resolves no names, as
    /// Docker's default bridge does not.
    pub names: Vec<String>,
    /// Which of the container's interfaces this network is: 0 for the one
    /// it starts on (`eth0`, which carries the default route, the published
    /// ports and the container's `/etc/hosts`), 1… for the networks it
    /// joins later (`docker network connect`: `eth1`…).
    pub interface: u8,
}

/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "caixa0";
/// The default subnet.
pub const DEFAULT_SUBNET: &str = "10.89.0.0/24";

/// The state directory: `$CAIXA_STATE_DIR`, else `/run/caixa` (a tmpfs: the
/// leases go with the bridges at reboot), or the user's runtime directory
/// for a rootless start.
pub fn state_dir() -> PathBuf {
    std::env::var_os("CAIXA_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if crate::rootless::active() {
                crate::rootless::user_dir("runtime")
            } else {
                PathBuf::from("/run/caixa")
            }
        })
}

/// A network failure, one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command is missing.
    #[error("{0} not found: install it (sudo apt-get install {1})")]
    Missing(String, &'static str),
    /// A command failed; its first line of stderr.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// Bad input (`-p`, `--subnet`, …).
    #[error("{0}")]
    Invalid(String),
    /// The host port is taken.
    #[error("{0}")]
    PortTaken(String),
    /// The IPAM state could not be read or written.
    #[error("network state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `--network pasta` started by root: pasta drops to `nobody`, who
    /// may not enter a root container's namespaces.
    #[error(
        "--network pasta is the network of a rootless start: pasta run by root drops to nobody, who may not enter the container's namespaces; as root, use the bridge (the default)"
    )]
    PastaAsRoot,
    /// No address left.
    #[error("no free address left in {0}: stop a container or use a larger --subnet")]
    Exhausted(Subnet),
}

impl NetError {
    /// A call the kernel refused, in the shape of a failed command: what
    /// was called, and the errno's words.
    pub(crate) fn call(call: impl Into<String>, errno: nix::errno::Errno) -> NetError {
        NetError::Command {
            command: call.into(),
            stderr: errno.desc().to_string(),
        }
    }
}

impl NetworkSpec {
    /// The plan of a network's bridge alone, for what only the bridge
    /// matters to (a sweep of leftovers; the engine bringing up or
    /// removing a network's bridge): no ports, no rate, no names.
    pub fn of_bridge(bridge: &str, subnet: Subnet, state_dir: &Path) -> NetworkSpec {
        NetworkSpec {
            bridge: bridge.to_string(),
            subnet,
            publish: Vec::new(),
            bandwidth: None,
            state_dir: state_dir.to_path_buf(),
            names: Vec::new(),
            interface: 0,
        }
    }

    /// The network `docker run --network MODE -p … --network-bandwidth …`
    /// describes; `None` for mode `none` (loopback only). One owner for
    /// these rules: the step binaries and the engine both plan through it.
    pub fn plan(
        mode: &str,
        publish: Vec<Publish>,
        bandwidth: Option<&str>,
        bridge: &str,
        subnet: &str,
    ) -> Result<Option<NetworkSpec>, NetError> {
        match mode {
            "none" => {
                if !publish.is_empty() || bandwidth.is_some() {
                    return Err(NetError::Invalid(
                        "--network none has no network to publish ports on or to shape: drop -p and --network-bandwidth, or use --network bridge".into(),
                    ));
                }
                return Ok(None);
            }
            "bridge" => {}
            other => {
                return Err(NetError::Invalid(format!(
                    "network mode {other:?}: caixa has bridge and none"
                )));
            }
        }
        if !is_bridge_name(bridge) {
            return Err(NetError::Invalid(format!(
                "invalid --bridge {bridge:?}: use 1-15 letters, digits, '-' or '_'"
            )));
        }
        if let Some(a) = published_twice(&publish) {
            return Err(NetError::PortTaken(format!(
                "host port {} {} is published twice",
                a.protocol, a.host_port
            )));
        }
        Ok(Some(NetworkSpec {
            bridge: bridge.to_string(),
            subnet: subnet.parse().map_err(NetError::Invalid)?,
            publish,
            bandwidth: bandwidth.map(shape::parse_rate).transpose()?,
            state_dir: state_dir(),
            names: Vec::new(),
            interface: 0,
        }))
    }
}

impl NetworkSpec {
    /// Whether the containers of this network reach each other by name
    /// (an engine's named network: every container on it has names).
    /// Step 8's bridge resolves none, so a start or an end there rewrites
    /// no one's hosts file, and spends nothing on it.
    pub fn resolves_names(&self) -> bool {
        !self.names.is_empty()
    }
}

/// Whether `name` may be a name other containers resolve: 1–63 letters,
/// digits, `_`, `.` or `-`, starting with a letter or a digit (a host
/// name's label, loosened as Docker's container names are).
pub fn is_host_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Whether `name` may name a bridge: 1–15 letters, digits, `-` or `_`
/// (an interface name is at most 15 bytes, IFNAMSIZ).
pub fn is_bridge_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The first published port whose host port an earlier one takes already.
pub fn published_twice(publish: &[Publish]) -> Option<&Publish> {
    publish
        .iter()
        .enumerate()
        .find(|(i, p)| publish[..*i].iter().any(|q| q.key() == p.key()))
        .map(|(_, p)| p)
}

/// A container's place on the network before it exists: its lease and, on
/// its first network, its `/etc/hosts` and `/etc/resolv.conf`. Made before
/// the clone (the files are bind-mounted by the child), connected after it
/// ([`Prepared::connect`]); or, for a network joined later, made and
/// connected while the container runs.
#[derive(Debug)]
pub struct Prepared {
    spec: NetworkSpec,
    id: String,
    /// The container's address.
    pub address: Ipv4Addr,
    files_dir: PathBuf,
    leased: bool,
    connected: Option<veth::Veth>,
    /// The ifb device of the upload limit, when it is on the host.
    ifb: Option<String>,
    rules: Vec<portmap::Rule>,
    /// The container's network namespace has died: see
    /// [`Prepared::namespace_gone`].
    namespace_gone: bool,
}

impl Prepared {
    // ANCHOR: network_prepare
    /// Brings the network up for one more container, in named steps, and
    /// writes the container's files.
    pub fn new(
        spec: &NetworkSpec,
        id: &str,
        hostname: &str,
        trace: &Trace,
    ) -> Result<Prepared, NetError> {
        // The network's lock, held for the steps below, so that two starts
        // never interleave them.
        let address = {
            let mut leases = ipam::open(spec)?;
            // First what can refuse, before anything changes.
            leases.check_ports(spec)?;
            // Rules of killed containers would still catch their ports.
            leases.take_back_dead(spec, trace)?;
            // The network's first container makes the bridge and its rules.
            bridge::bring_up(spec, leases.is_empty(), trace)?;
            // Last, the address: it is the container's once it is written down.
            leases.take(spec, id, trace)?
        };
        // The lock is let go here, before `prepared` exists: from now on a
        // failure drops `prepared`, whose `release` takes the lock again
        // (a lock of ours still held would wait for itself for ever).
        let mut prepared = Prepared {
            spec: spec.clone(),
            id: id.to_string(),
            address,
            files_dir: files::dir(&spec.state_dir, id),
            leased: true,
            connected: None,
            ifb: None,
            rules: Vec::new(),
            namespace_gone: false,
        };
        // The files are the first network's: one /etc/hosts per container,
        // whatever networks it is on.
        if prepared.owns_files() {
            files::write(&prepared.files_dir, address, hostname).map_err(|source| {
                NetError::State {
                    path: prepared.files_dir.clone(),
                    source,
                }
            })?;
        }
        // On a named network, every container's hosts file lists the others
        // (under the lock again: the lease is written down already).
        if spec.resolves_names() {
            ipam::open(spec)?.refresh_hosts(spec, id);
        }
        prepared.rules = portmap::rules(&prepared.spec, &prepared.id, address);
        Ok(prepared)
    }
    // ANCHOR_END: network_prepare

    /// Files to bind-mount into the container: (host file, container path).
    pub fn mounts(&self) -> Vec<crate::rootfs::binds::Bind> {
        if self.owns_files() {
            files::mounts(&self.files_dir)
        } else {
            Vec::new()
        }
    }

    /// Whether this is the container's first network, whose files are
    /// the container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
    fn owns_files(&self) -> bool {
        self.spec.interface == 0
    }

    /// What this network was made from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The bridge this network's end is plugged into.
    pub fn bridge(&self) -> &str {
        &self.spec.bridge
    }

    /// The interface's name inside the container: `eth0`, `eth1`, ….
    pub fn interface(&self) -> String {
        format!("eth{}", self.spec.interface)
    }

    /// Plugs the container in: a veth pair into `pid`'s network namespace,
    /// its address and route, its port rules, its bandwidth.
    pub fn connect(&mut self, pid: Pid, trace: &Trace) -> Result<(), NetError> {
        let link = veth::Link {
            host: veth::host_name(&self.id, self.spec.interface),
            inside: self.interface(),
            address: self.address,
            prefix: self.spec.subnet.prefix,
            gateway: self.owns_files().then(|| self.spec.subnet.gateway()),
        };
        // A pair of the same name may still be there: this container's
        // last run (a restart), whose dead namespace the kernel has not
        // cleaned up yet (see `namespace_gone`). It goes now, by hand.
        if link_exists(&link.host) {
            veth::delete(
                &veth::Veth {
                    host: link.host.clone(),
                },
                trace,
            )?;
        }
        // The link first: rules and shaping name an address and a device
        // that must exist (a DNAT to an address nobody answers is a black
        // hole for the port's clients).
        let veth = match veth::create(&self.spec.bridge, &link, pid, trace) {
            Ok(veth) => veth,
            Err(e) => {
                // Made half-way (the pair, then a later call failed): the
                // pair goes now. Its peer's namespace may live on (a
                // network joined by a running container), and with it
                // the pair.
                if link_exists(&link.host) {
                    let _ = veth::delete(
                        &veth::Veth {
                            host: link.host.clone(),
                        },
                        trace,
                    );
                }
                return Err(e);
            }
        };
        self.connected = Some(veth);
        // Then the ports, in one netfilter transaction.
        if !self.rules.is_empty() {
            portmap::apply(&self.rules, "-A", trace)?;
        }
        // Last the bandwidth: tc shapes a device that is up.
        if let (Some(rate), Some(veth)) = (&self.spec.bandwidth, &self.connected)
            && let shape::Shaped::OnHost { ifb } = shape::limit(&veth.host, pid, rate, trace)?
        {
            self.ifb = Some(ifb);
        }
        Ok(())
    }

    // ANCHOR: namespace_gone
    /// Says that the container's network namespace has died (its last
    /// process has exited): the kernel deletes a veth pair when the
    /// namespace of either end goes, so [`Prepared::release`] leaves the
    /// pair to it, as Docker does. Deleting it by hand makes the caller wait
    /// for an RCU grace period (20 to 27 ms on this machine, most of a
    /// bridge start's end); the kernel's cleanup of a dead namespace pays
    /// that in a worker of its own, after the caller has moved on. A network
    /// left while the container runs (`network disconnect`) is deleted by
    /// hand: its namespace lives on.
    pub fn namespace_gone(&mut self) {
        self.namespace_gone = true;
    }
    // ANCHOR_END: namespace_gone

    /// Removes everything of this container: rules, veth, files, lease (and
    /// the bridge with the network's last lease). Collects errors.
    pub fn release(&mut self, trace: &Trace) -> Result<(), NetError> {
        let mut first = None;
        // The reverse of `connect`: rules first, so no packet is sent on to
        // an address that is going away.
        if self.connected.is_some() && !self.rules.is_empty() {
            // One transaction; if it fails (a rule already gone), one by one,
            // so that the others still go.
            if let Err(e) = portmap::apply(&self.rules, "-D", trace) {
                let left = self
                    .rules
                    .iter()
                    .filter(|r| portmap::apply(std::slice::from_ref(*r), "-D", trace).is_err())
                    .count();
                if left == self.rules.len() {
                    first.get_or_insert(e);
                }
            }
        }
        // Then the link (its shaping goes with it), unless its namespace
        // has died and takes it along; and the ifb device that held its
        // uploads, if any: after the link, or (left to the kernel) once
        // no packet can come in through it.
        if let Some(veth) = self.connected.take()
            && !self.namespace_gone
            && let Err(e) = veth::delete(&veth, trace)
        {
            first.get_or_insert(e);
        }
        if let Some(ifb) = self.ifb.take()
            && let Err(e) = shape::remove(&ifb, trace)
        {
            first.get_or_insert(e);
        }
        if self.owns_files() {
            let _ = std::fs::remove_dir_all(&self.files_dir);
        }
        // The address last: while it is leased, no other container gets it
        // (nor its rules, which might still be half there).
        if self.leased {
            self.leased = false;
            let released = ipam::open(&self.spec).and_then(|mut leases| {
                leases.give_back(&self.id, trace)?;
                leases.refresh_hosts(&self.spec, &self.id);
                // The network's last container takes the bridge along,
                // unless the bridge is the network's (the engine's).
                if leases.is_empty() && !bridge::is_kept(&self.spec) {
                    bridge::destroy(&self.spec, trace)?;
                }
                Ok(())
            });
            if let Err(e) = released {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Prepared {
    /// On an error path: release everything, and print a failure beside the
    /// error being returned, never instead of it.
    fn drop(&mut self) {
        if let Err(e) = self.release(&Trace::new(false)) {
            eprintln!("caixa: warning: while cleaning up the network: {e}");
        }
    }
}

/// Whether a network interface of this name exists in our network
/// namespace. `/proc/self/net/dev` follows the reader's namespace; `/sys`
/// follows whoever mounted it, which may be another namespace's view.
pub(crate) fn link_exists(name: &str) -> bool {
    std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(n, _)| n.trim() == name)
}
