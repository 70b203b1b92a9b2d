//! User-mode networking: a rootless container's way out, through `pasta`.
//!
//! A bridge, veths and netfilter rules change the host's network, which
//! needs root (`CAP_NET_ADMIN` in the host's network namespace). What an
//! ordinary user does hold is every capability in the user namespace it
//! made, and so over the container's own network namespace. `pasta`
//! (Debian's `passt`, what podman uses by default) works from there: it
//! joins the container's user and network namespaces, makes a tap
//! interface in it with the host's address and default route copied
//! (`--config-net`), and goes back out. Every packet the container sends
//! to the tap, pasta reads and replays through an ordinary socket of its
//! own on the host: a TCP connection out is pasta's `connect(2)`, a
//! published port is pasta's `listen(2)` on the host, spliced into the
//! container. No address, route or rule changes on the host, so no root is
//! needed; the cost is a process that copies every byte.
//!
//! caixa runs pasta once the container's namespaces and maps exist and
//! before its command execs, and stops it when the container ends: pasta
//! holds the namespace open and would not notice by itself.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::Pid;

use super::{NetError, Protocol, Publish};
use crate::trace::{Side, Trace};

/// The address the container sends its DNS queries to, which pasta
/// answers by forwarding each to the host's first name server
/// (`--dns-forward`). Link-local (169.254.0.0/16), so it is no host's on
/// any network the container could reach; podman chose the same one.
pub const DNS_FORWARDER: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The hosts file's address for the container's own name. pasta gives the
/// container the host's address, which is known only once pasta has run,
/// after the files are bind-mounted: the name goes on a loopback address,
/// as Debian does for a machine's own name.
const OWN_NAME_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);

/// A user-mode network: what `--network pasta` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserModeNetwork {
    /// Published ports (`-p`): pasta listens on them on the host.
    pub publish: Vec<Publish>,
}

impl UserModeNetwork {
    /// The user-mode network `--network pasta -p … --network-bandwidth …`
    /// describes, or why it cannot be.
    pub fn plan(publish: Vec<Publish>, bandwidth: Option<&str>) -> Result<Self, NetError> {
        if bandwidth.is_some() {
            return Err(NetError::Invalid(
                "--network-bandwidth shapes a bridge's veth with tc, and pasta has no veth: drop it, or use --network bridge as root".into(),
            ));
        }
        if let Some(twice) = super::published_twice(&publish) {
            return Err(NetError::PortTaken(format!(
                "host port {} {} is published twice",
                twice.protocol, twice.host_port
            )));
        }
        Ok(UserModeNetwork { publish })
    }

    // ANCHOR: pasta_args
    /// pasta's command line for the container whose pid 1 is `child`.
    /// Only what is published is forwarded (pasta would forward every
    /// port bound inside, both ways, by default), and the gateway address
    /// is not mapped to the host's loopback, whose services would
    /// otherwise be open to the container; as podman does.
    pub fn pasta_args(&self, child: Pid, pid_file: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["--config-net", "--quiet", "--no-map-gw"]
            .map(String::from)
            .into();
        args.extend(["--pid".into(), pid_file.display().to_string()]);
        // The resolver the container's resolv.conf names (`write_files`).
        args.extend(["--dns-forward".into(), DNS_FORWARDER.to_string()]);
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let flag = match protocol {
                Protocol::Tcp => "--tcp-ports",
                Protocol::Udp => "--udp-ports",
            };
            let ports: Vec<String> = self
                .publish
                .iter()
                .filter(|p| p.protocol == protocol)
                .map(|p| match p.host_ip {
                    Some(ip) => format!("{ip}/{}:{}", p.host_port, p.container_port),
                    None => format!("{}:{}", p.host_port, p.container_port),
                })
                .collect();
            if ports.is_empty() {
                args.extend([flag.into(), "none".into()]);
            }
            for spec in ports {
                args.extend([flag.into(), spec]);
            }
        }
        // Nothing from the container to the host's own ports.
        args.extend(["--tcp-ns", "none", "--udp-ns", "none"].map(String::from));
        args.push(child.to_string());
        args
    }
    // ANCHOR_END: pasta_args

    /// Writes the container's `/etc/hosts`, `/etc/hostname` and
    /// `/etc/resolv.conf` into `dir`, for the child to bind-mount as it does
    /// a bridge's (see [`super::files`]). The resolver is pasta's forwarder:
    /// the host's own name servers may be loopback ones, which the
    /// container cannot reach, and a forwarder reaches them all the same.
    pub fn write_files(&self, dir: &Path, hostname: &str) -> Result<(), NetError> {
        let host = super::files::host_resolv_conf();
        let resolv = super::files::forwarded_resolv_conf(&host, DNS_FORWARDER);
        super::files::write_with(dir, OWN_NAME_ADDRESS, hostname, &resolv).map_err(|source| {
            NetError::State {
                path: dir.to_path_buf(),
                source,
            }
        })
    }
}

/// A running pasta, stopped when dropped.
#[derive(Debug)]
pub struct Pasta {
    /// pasta runs in the background (its parent, our child, has exited):
    /// a pidfd names it until it ends, whatever pid it had.
    pidfd: OwnedFd,
    pid: i32,
}

// ANCHOR: pasta_start
/// Starts pasta for the container `child`, whose user and network
/// namespaces exist and whose maps are written. pasta configures the tap
/// interface, binds the published ports, then goes to the background and
/// writes its pid; once the command returns, the network is ready.
pub fn start(net: &UserModeNetwork, child: Pid, trace: &Trace) -> Result<Pasta, NetError> {
    // The pid file in a directory only we may write: pasta opens the path
    // it is given, and a name guessed in /tmp could be someone's symlink.
    let dir = private_dir()?;
    let pid_file = dir.join("pasta.pid");
    let args = net.pasta_args(child, &pid_file);
    let line = format!("pasta {}", args.join(" "));
    trace.step(Side::Parent, format_args!("$ {line}"));
    let mut command = Command::new("pasta");
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // pasta lives as long as the container: it must not keep open what
    // we happen to hold (a lock, a pipe a caller waits on to close).
    // SAFETY: between fork and exec, only one system call, which is
    // async-signal-safe; a kernel without close_range (< 5.11) leaves
    // them open, as any daemon started from here would.
    unsafe {
        command.pre_exec(|| {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        })
    };
    let outcome = command.output();
    let read_pid = std::fs::read_to_string(&pid_file);
    let _ = std::fs::remove_dir_all(&dir);
    let output = match outcome {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NetError::Missing("pasta".into(), "passt"));
        }
        Err(e) => {
            return Err(NetError::Command {
                command: line,
                stderr: e.to_string(),
            });
        }
    };
    if !output.status.success() {
        return Err(NetError::Command {
            command: line,
            stderr: why_pasta_failed(&String::from_utf8_lossy(&output.stderr)),
        });
    }
    let pid = read_pid
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .ok_or_else(|| NetError::Command {
            command: line.clone(),
            stderr: "it wrote no pid file".into(),
        })?;
    let pidfd = crate::pidfd::open(pid).map_err(|errno| NetError::Command {
        command: line,
        stderr: format!("it ended as soon as it started ({errno})"),
    })?;
    trace.step(
        Side::Parent,
        format_args!("pasta is pid {pid}, the container's way out"),
    );
    Ok(Pasta { pidfd, pid })
}
// ANCHOR_END: pasta_start

impl Pasta {
    /// Stops pasta: SIGTERM, and SIGKILL if it has not ended within a
    /// second. The container is gone by now; pasta is what still holds its
    /// network namespace.
    pub fn stop(self, trace: &Trace) {
        trace.step(Side::Parent, format_args!("$ kill {}   # pasta", self.pid));
        // Drop does it.
    }
}

impl Drop for Pasta {
    fn drop(&mut self) {
        if crate::pidfd::signal(&self.pidfd, libc::SIGTERM).is_ok()
            && !crate::pidfd::wait_gone(&self.pidfd, std::time::Duration::from_secs(1))
        {
            let _ = crate::pidfd::signal(&self.pidfd, libc::SIGKILL);
        }
    }
}

/// pasta's reason in one line, with what to do when we know it. pasta
/// logs to the system log when it has no terminal, and where there is no
/// syslog socket each attempt adds a line of noise to stderr: skipped.
fn why_pasta_failed(stderr: &str) -> String {
    let noise = |l: &str| l.starts_with("Failed to send") && l.ends_with("syslog");
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !noise(l))
        .unwrap_or("no message")
        .to_string();
    let advice = if said.contains("tun") {
        "; /dev/net/tun must be open to you (mode 0666, as udev makes it: sudo chmod 0666 /dev/net/tun)"
    } else if said.contains("External interface") {
        "; pasta copies the host's address and default route, and this host has no default route"
    } else if said.contains("bind") {
        "; a host port you publish is taken: choose another with -p"
    } else {
        ""
    };
    format!("{said}{advice}")
}

/// A new directory of mode 0700 under the temporary directory.
fn private_dir() -> Result<PathBuf, NetError> {
    let template = std::env::temp_dir().join("caixa-pasta-XXXXXX");
    nix::unistd::mkdtemp(&template).map_err(|errno| NetError::State {
        path: template,
        source: errno.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(spec: &str) -> Publish {
        spec.parse().unwrap()
    }

    #[test]
    fn only_the_published_ports_are_forwarded() {
        let net = UserModeNetwork::plan(
            vec![publish("8080:80"), publish("127.0.0.1:5353:53/udp")],
            None,
        )
        .unwrap();
        let args = net.pasta_args(Pid::from_raw(42), Path::new("/run/x/pasta.pid"));
        let line = args.join(" ");
        assert!(line.contains("--tcp-ports 8080:80"), "{line}");
        assert!(line.contains("--udp-ports 127.0.0.1/5353:53"), "{line}");
        assert!(line.contains("--tcp-ns none --udp-ns none"), "{line}");
        assert!(line.contains("--no-map-gw"), "{line}");
        assert_eq!(args.last().map(String::as_str), Some("42"));
    }

    #[test]
    fn nothing_published_forwards_nothing() {
        let net = UserModeNetwork::plan(Vec::new(), None).unwrap();
        let line = net.pasta_args(Pid::from_raw(7), Path::new("/p")).join(" ");
        assert!(line.contains("--tcp-ports none --udp-ports none"), "{line}");
    }

    #[test]
    fn bandwidth_and_a_port_twice_are_refused() {
        assert!(UserModeNetwork::plan(Vec::new(), Some("1mbit")).is_err());
        assert!(UserModeNetwork::plan(vec![publish("80:80"), publish("80:81")], None).is_err());
    }

    #[test]
    fn the_syslog_noise_is_not_the_reason() {
        let said = why_pasta_failed(
            "Failed to send 45 bytes to syslog\nFailed to open tun socket in namespace\nFailed to send 7 bytes to syslog\n",
        );
        assert!(
            said.starts_with("Failed to open tun socket in namespace; "),
            "{said}"
        );
    }
}
