//! Step 2 grading: the network namespace.

mod support;

use support::{host_links, run, stdout_of};

#[test]
fn only_lo_inside_and_it_is_up() {
    let out = run(2, &["ip", "-o", "link"]);
    let links = stdout_of(&out);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "step 2: only lo should exist inside:\n{links}"
    );
    assert!(
        links.contains("UP"),
        "step 2: lo should be up — did bring_up_loopback set IFF_UP?\n{links}"
    );
}

#[test]
fn loopback_answers_inside() {
    // A listener and a client on 127.0.0.1, both inside the container: this
    // works only when lo is up.
    let out = run(
        2,
        &[
            "sh",
            "-c",
            "busybox nc -l -p 7777 -e echo pong & sleep 0.2; echo ping | busybox nc 127.0.0.1 7777",
        ],
    );
    assert_eq!(stdout_of(&out).trim(), "pong");
}

#[test]
fn the_container_is_in_another_network_namespace() {
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let out = run(2, &["readlink", "/proc/self/ns/net"]);
    let theirs = stdout_of(&out);
    assert_ne!(theirs.trim(), ours.to_string_lossy());
}

#[test]
fn the_hosts_links_are_untouched() {
    let before = host_links();
    // A pair of links made inside must exist there and nowhere else.
    let out = run(
        2,
        &[
            "sh",
            "-c",
            "ip link add caixa-test0 type veth peer name caixa-test1 && ip -o link | wc -l",
        ],
    );
    assert_eq!(stdout_of(&out).trim(), "3", "lo and the new pair, inside");
    assert_eq!(
        host_links(),
        before,
        "step 2: a link made in the container appeared on the host"
    );
}
