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
        "step 5: expected `hostname` and $HOSTNAME inside to say caixa-test (--hostname), they \
         said {lines:?}; most likely cause: set_hostname (src/ns/uts.rs) does not call \
         sethostname(2) with the name it is given"
    );
    let after = host_hostname();
    assert_eq!(
        after, before,
        "step 5: expected the host's name unchanged ({before:?}), it is now {after:?}; most \
         likely cause: sethostname ran outside the container's UTS namespace: \
         Namespace::Uts is missing from the step's spec (chapters/step5-uts/main.rs)"
    );
}

#[test]
fn the_default_hostname_is_a_short_id() {
    let out = run(5, &["hostname"]);
    let name = stdout_of(&out).trim().to_string();
    assert!(
        name.len() == 12 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "step 5: expected the default host name to be the container's 12-hex-digit id, it is \
         {name:?}; most likely cause: set_hostname (src/ns/uts.rs) returns without calling \
         sethostname(2), so the container keeps the name it copied from the host"
    );
    assert_ne!(
        name,
        host_hostname(),
        "step 5: expected a host name of the container's own, it has the host's ({name:?}); \
         most likely cause: set_hostname (src/ns/uts.rs) returns without calling \
         sethostname(2)"
    );
}

#[test]
fn the_container_is_in_another_uts_namespace() {
    let ours = std::fs::read_link("/proc/self/ns/uts").expect("read /proc/self/ns/uts");
    let out = run(5, &["readlink", "/proc/self/ns/uts"]);
    let theirs = stdout_of(&out);
    assert_ne!(
        theirs.trim(),
        ours.to_string_lossy(),
        "step 5: expected the container in a UTS namespace of its own, it is in the test's \
         ({}); most likely cause: Namespace::Uts is missing from the step's spec \
         (chapters/step5-uts/main.rs), so clone3 gets no CLONE_NEWUTS",
        theirs.trim()
    );
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
    assert_eq!(
        inside.lines().count(),
        4,
        "step 5: expected four namespace links (pid, net, ipc, mnt), one per line, the \
         container printed {} lines; most likely cause: the container failed before the \
         shell ran, or /proc inside is not the container's (step 4 mounts it)\n{inside}",
        inside.lines().count()
    );
    for (line, ns) in inside.lines().zip(["pid", "net", "ipc", "mnt"]) {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("read our ns link");
        assert_ne!(
            line,
            ours.to_string_lossy(),
            "step 5: expected the container's {ns} namespace to be its own (earlier steps' \
             work kept), it is the test's ({line}); most likely cause: the step's spec \
             (chapters/step5-uts/main.rs) lost a namespace of an earlier step: it must keep \
             Pid, Net, Ipc and Mount and add Uts"
        );
    }
}
