//! Step 5 grading: the UTS namespace.

mod support;

use support::{assert_one_line_error, host_hostname, run, stdout_of};

#[test]
fn the_hostname_is_set_inside_and_unchanged_outside() {
    let before = host_hostname();
    let out = run(
        5,
        &[
            "--hostname",
            "caixa-test",
            "sh",
            "-c",
            "hostname; echo $HOSTNAME",
        ],
    );
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["caixa-test", "caixa-test"],
        "step 5: the container's host name — did set_hostname run?"
    );
    assert_eq!(host_hostname(), before, "the host's name changed!");
}

#[test]
fn the_default_hostname_is_a_short_id() {
    let out = run(5, &["hostname"]);
    let name = stdout_of(&out).trim().to_string();
    assert_eq!(name.len(), 12, "{name}");
    assert!(name.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert_ne!(name, host_hostname());
}

#[test]
fn the_container_is_in_another_uts_namespace() {
    let ours = std::fs::read_link("/proc/self/ns/uts").unwrap();
    let out = run(5, &["readlink", "/proc/self/ns/uts"]);
    assert_ne!(stdout_of(&out).trim(), ours.to_string_lossy());
}

#[test]
fn an_invalid_hostname_is_one_clear_line() {
    let out = run(5, &["--hostname", "not a name", "true"]);
    assert_one_line_error(&out, 5, 125, "invalid host name");
}

#[test]
fn step_5_keeps_every_earlier_namespace() {
    let out = run(
        5,
        &[
            "sh",
            "-c",
            "for ns in pid net ipc mnt; do readlink /proc/1/ns/$ns; done",
        ],
    );
    let inside = stdout_of(&out);
    assert_eq!(inside.lines().count(), 4, "{inside}");
    for (line, ns) in inside.lines().zip(["pid", "net", "ipc", "mnt"]) {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(line, ours.to_string_lossy(), "{ns} namespace is the host's");
    }
}
