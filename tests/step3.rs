//! Step 3 grading: the IPC namespace.

mod support;

use support::{run, stdout_of};

/// A System V shared memory segment, removed on drop (also when a test fails).
struct Segment(i32);

impl Segment {
    fn create(key: i32) -> Segment {
        // SAFETY: shmget with IPC_CREAT creates a 4 KiB segment we own.
        let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(
            id >= 0,
            "step 3: expected the test to create its own shared memory segment on the host, \
             shmget(2) answered {}; most likely cause: the host's kernel has no System V IPC \
             or its limits (kernel.shmmni) are reached: `ipcs -m` lists the segments left",
            std::io::Error::last_os_error()
        );
        Segment(id)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID of the segment we created.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// The keys of the SysV shared memory segments the reader's namespace has,
/// as /proc/sysvipc/shm's first column shows them (signed decimal).
fn keys(listing: &str) -> Vec<String> {
    listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_host_shared_memory_segment_is_invisible_inside() {
    let key = 0x0ca1_7a00 + (std::process::id() as i32 & 0xff);
    let _segment = Segment::create(key);
    let host = std::fs::read_to_string("/proc/sysvipc/shm").expect("read /proc/sysvipc/shm");
    assert!(
        keys(&host).contains(&key.to_string()),
        "step 3: expected the test's own segment {key} in the host's /proc/sysvipc/shm, it \
         is missing; most likely cause: the test itself runs in an IPC namespace other than \
         the one /proc shows (run it from the host's)\n{host}"
    );

    let out = run(3, &["cat", "/proc/sysvipc/shm"]);
    let inside = stdout_of(&out);
    assert!(
        !keys(&inside).contains(&key.to_string()),
        "step 3: expected the host's shared memory segment {key} to be invisible inside, the \
         container lists it; most likely cause: the container shares the host's IPC \
         namespace: Namespace::clone_flag must return CLONE_NEWIPC for Namespace::Ipc \
         (CLONE_SYSVSEM only shares semaphore undo lists)\n{inside}"
    );
}

#[test]
fn the_container_is_in_another_ipc_namespace() {
    let ours = std::fs::read_link("/proc/self/ns/ipc").expect("read /proc/self/ns/ipc");
    let out = run(3, &["readlink", "/proc/self/ns/ipc"]);
    let theirs = stdout_of(&out);
    assert_ne!(
        theirs.trim(),
        ours.to_string_lossy(),
        "step 3: expected the container in an IPC namespace of its own, it is in the test's \
         ({}); most likely cause: Namespace::clone_flag does not return CLONE_NEWIPC for \
         Namespace::Ipc",
        theirs.trim()
    );
}

#[test]
fn step_3_keeps_steps_1_and_2() {
    let out = run(3, &["sh", "-c", "echo $$; ip -o link | wc -l"]);
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["1", "1"],
        "step 3: expected step 1's and 2's work kept: the shell as pid 1, and one link (lo); \
         the container printed {lines:?}; most likely cause: the step's spec lost \
         Namespace::Pid or Namespace::Net (chapters/step3-ipc/main.rs must keep step 2's \
         namespaces and add Namespace::Ipc)"
    );
}
