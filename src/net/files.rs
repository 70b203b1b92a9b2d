//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` of a container.
//!
//! Docker does not write into the image: it keeps these files per container
//! and bind-mounts them over the image's. caixa does the same, so the shared
//! rootfs stays untouched and the files go with the container.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The directory of container `id`'s files under the network state
/// directory `state_dir`: one formula for whoever writes, rewrites or
/// removes them.
pub fn dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("containers").join(id)
}

/// The host's `/etc/resolv.conf` (empty when it cannot be read: the
/// container then resolves no names, as the host would not either), which
/// every container's resolv.conf starts from.
pub fn host_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

/// Writes the three files into `dir`, the name servers the host's own
/// (see [`resolv_conf`]).
pub fn write(dir: &Path, address: Ipv4Addr, hostname: &str) -> std::io::Result<()> {
    write_with(dir, address, hostname, &resolv_conf(&host_resolv_conf()))
}

/// Writes the three files into `dir`: `hostname` at `address` in the hosts
/// file, and `resolv` as the resolv.conf.
pub fn write_with(
    dir: &Path,
    address: Ipv4Addr,
    hostname: &str,
    resolv: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("hosts"),
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{hostname}\n"
        ),
    )?;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    std::fs::write(dir.join("resolv.conf"), resolv)
}

/// The line after which [`write_peers`] keeps the network's names.
const PEERS: &str = "# the containers of this network (caixa keeps this part)";

// ANCHOR: write_peers
/// Replaces the network's part of the hosts file in `dir` with `peers`,
/// one line per container: its address and names. A container on no
/// named network keeps its file as it is.
pub fn write_peers(dir: &Path, peers: &[(Ipv4Addr, &[String])]) -> std::io::Result<()> {
    let path = dir.join("hosts");
    let old = std::fs::read_to_string(&path)?;
    if peers.is_empty() && !old.contains(PEERS) {
        return Ok(()); // on no named network, before as now
    }
    rewrite_in_place(&path, &old, peers)
}

/// Writes `old`'s own part, the marker and `peers` into `path`, in place
/// (the same inode): the file is bind-mounted into its container, and a
/// new file renamed over it would not be seen there.
fn rewrite_in_place(
    path: &Path,
    old: &str,
    peers: &[(Ipv4Addr, &[String])],
) -> std::io::Result<()> {
    // EXERCISE(11): keep the part of old above the PEERS line, add PEERS and one line "ADDRESS<TAB>NAME NAME…" per peer, and write it through the same file: open it for writing, write_all, set_len (never a new file renamed over it)
    let own = old.split(PEERS).next().unwrap_or("");
    let mut text = format!("{own}{PEERS}\n");
    for (address, names) in peers {
        text.push_str(&format!("{address}\t{}\n", names.join(" ")));
    }
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.set_len(text.len() as u64)
    // END EXERCISE
}
// ANCHOR_END: write_peers

/// The host's resolv.conf without loopback name servers (127.0.0.53 of
/// systemd-resolved is unreachable from the container's namespace), or
/// public ones when none is left, as Docker does.
pub fn resolv_conf(host: &str) -> String {
    let mut out: Vec<&str> = host
        .lines()
        .filter(|l| {
            let mut f = l.split_whitespace();
            !(f.next() == Some("nameserver")
                && f.next()
                    .is_some_and(|a| a.starts_with("127.") || a == "::1"))
        })
        .collect();
    if !out.iter().any(|l| l.starts_with("nameserver")) {
        out.extend(["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
    }
    out.join("\n") + "\n"
}

// ANCHOR: forwarded_resolv_conf
/// The host's resolv.conf with one name server, `forwarder`, in place of
/// all of its own: a user-mode network's, whose forwarder (pasta) sends
/// each query on to the host's first name server. The host's loopback
/// resolver (127.0.0.53 of systemd-resolved) works that way too, as it
/// could not from the container's namespace; the search list and options
/// stay the host's.
pub fn forwarded_resolv_conf(host: &str, forwarder: Ipv4Addr) -> String {
    let mut out: Vec<String> = host
        .lines()
        .filter(|l| l.split_whitespace().next() != Some("nameserver"))
        .map(String::from)
        .collect();
    out.push(format!("nameserver {forwarder}"));
    out.join("\n") + "\n"
}
// ANCHOR_END: forwarded_resolv_conf

/// (host file, path in the container) for the bind mounts.
pub fn mounts(dir: &Path) -> Vec<crate::rootfs::binds::Bind> {
    ["hosts", "resolv.conf", "hostname"]
        .iter()
        .map(|f| crate::rootfs::binds::Bind::new(dir.join(f), Path::new("/etc").join(f)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_name_servers_are_dropped() {
        assert_eq!(
            super::resolv_conf("nameserver 127.0.0.53\nsearch lan\n"),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            super::resolv_conf("nameserver 10.0.0.1\n"),
            "nameserver 10.0.0.1\n"
        );
    }

    #[test]
    fn a_forwarded_resolv_conf_keeps_the_search_list_and_one_server() {
        let forwarder = std::net::Ipv4Addr::new(169, 254, 1, 1);
        assert_eq!(
            super::forwarded_resolv_conf(
                "nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan\noptions edns0\n",
                forwarder
            ),
            "search lan\noptions edns0\nnameserver 169.254.1.1\n"
        );
        assert_eq!(
            super::forwarded_resolv_conf("", forwarder),
            "nameserver 169.254.1.1\n"
        );
    }
}
