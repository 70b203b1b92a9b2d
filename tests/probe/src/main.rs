//! The probe: a small static program the graded tests copy into a rootfs and
//! run inside a container, to try what busybox cannot.
//!
//! - `probe syscalls`: makes each call a container must not make, with
//!   harmless arguments, and prints `name errno` (`ok` when it succeeded).
//!   A call refused by seccomp answers EPERM; otherwise the kernel answers
//!   something else (EFAULT, EINVAL, ENOENT…) or succeeds.
//! - `probe works`: what a shell, a server and a package manager need: fork,
//!   exec, files, sockets. Prints `name ok` or `name error`.
//! - `probe fds`: the file descriptors open in this process.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::ptr::null;

fn errno_name(ret: libc::c_long) -> String {
    if ret >= 0 {
        return "ok".into();
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EBADF => "EBADF".into(),
        libc::EACCES => "EACCES".into(),
        other => format!("errno{other}"),
    }
}

/// Makes one call in a child process, so that a call which succeeds (a new
/// user namespace, a userfaultfd) changes nothing in the probe itself.
fn in_child(call: impl FnOnce() -> libc::c_long) -> String {
    let mut pipe = [0; 2];
    // SAFETY: pipe/fork/_exit; the child only makes the call and writes.
    unsafe {
        if libc::pipe(pipe.as_mut_ptr()) != 0 {
            return "pipe-failed".into();
        }
        match libc::fork() {
            0 => {
                let answer = errno_name(call());
                libc::write(pipe[1], answer.as_ptr().cast(), answer.len());
                libc::_exit(0);
            }
            -1 => "fork-failed".into(),
            pid => {
                libc::close(pipe[1]);
                let mut out = String::new();
                let mut file = std::fs::File::from_raw_fd(pipe[0]);
                let _ = file.read_to_string(&mut out);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
                out
            }
        }
    }
}

/// One system call to try, made in a child process.
type Call = Box<dyn FnOnce() -> libc::c_long>;

fn syscalls() {
    let nothing = null::<libc::c_char>();
    let missing = c"/nonexistent-caixa".as_ptr();
    let empty = c"".as_ptr();
    // SAFETY (all below): each call gets arguments the kernel rejects or
    // that are harmless; none dereferences memory we do not own.
    let calls: Vec<(&str, Call)> = vec![
        (
            "keyctl",
            Box::new(|| unsafe { libc::syscall(libc::SYS_keyctl, -1, 0, 0, 0, 0) }),
        ),
        (
            "add_key",
            Box::new(move || unsafe {
                libc::syscall(libc::SYS_add_key, nothing, nothing, null::<u8>(), 0, 0)
            }),
        ),
        (
            "request_key",
            Box::new(move || unsafe {
                libc::syscall(libc::SYS_request_key, nothing, nothing, nothing, 0)
            }),
        ),
        (
            "kexec_load",
            Box::new(|| unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, null::<u8>(), 0) }),
        ),
        (
            "init_module",
            Box::new(move || unsafe {
                libc::syscall(libc::SYS_init_module, null::<u8>(), 0, nothing)
            }),
        ),
        (
            "finit_module",
            Box::new(move || unsafe { libc::syscall(libc::SYS_finit_module, -1, empty, 0) }),
        ),
        (
            "delete_module",
            Box::new(move || unsafe { libc::syscall(libc::SYS_delete_module, missing, 0) }),
        ),
        (
            "bpf",
            Box::new(|| unsafe { libc::syscall(libc::SYS_bpf, -1, null::<u8>(), 0) }),
        ),
        (
            "perf_event_open",
            Box::new(|| unsafe {
                libc::syscall(libc::SYS_perf_event_open, null::<u8>(), 0, -1, -1, 0)
            }),
        ),
        (
            "userfaultfd",
            Box::new(|| unsafe { libc::syscall(libc::SYS_userfaultfd, 0) }),
        ),
        (
            "mount",
            Box::new(move || unsafe {
                libc::syscall(libc::SYS_mount, missing, missing, nothing, 0, null::<u8>())
            }),
        ),
        (
            "umount2",
            Box::new(move || unsafe { libc::syscall(libc::SYS_umount2, missing, 0) }),
        ),
        (
            "pivot_root",
            Box::new(move || unsafe { libc::syscall(libc::SYS_pivot_root, missing, missing) }),
        ),
        (
            "swapon",
            Box::new(move || unsafe { libc::syscall(libc::SYS_swapon, missing, 0) }),
        ),
        (
            "swapoff",
            Box::new(move || unsafe { libc::syscall(libc::SYS_swapoff, missing) }),
        ),
        // A wrong magic number: even with CAP_SYS_BOOT this reboots nothing.
        (
            "reboot",
            Box::new(|| unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, null::<u8>()) }),
        ),
        (
            "unshare(CLONE_NEWUSER)",
            Box::new(|| unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) }),
        ),
        (
            "clone3",
            Box::new(|| unsafe { libc::syscall(libc::SYS_clone3, null::<u8>(), 0) }),
        ),
    ];
    for (name, call) in calls {
        println!("{name} {}", in_child(call));
    }
}

fn works() {
    let check = |name: &str, ok: bool| println!("{name} {}", if ok { "ok" } else { "error" });
    // fork + wait
    // SAFETY: the child exits at once.
    let forked = unsafe {
        match libc::fork() {
            0 => libc::_exit(7),
            -1 => false,
            pid => {
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0) == pid && libc::WEXITSTATUS(status) == 7
            }
        }
    };
    check("fork", forked);
    let exec = std::process::Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .status();
    check("exec", exec.is_ok_and(|s| s.code() == Some(3)));
    let path = format!("/tmp/caixa-probe-{}", std::process::id());
    let files = std::fs::write(&path, "data").is_ok()
        && std::fs::read_to_string(&path).is_ok_and(|s| s == "data")
        && std::fs::remove_file(&path).is_ok();
    check("files", files);
    let sockets = (|| -> std::io::Result<bool> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        client.write_all(b"ping")?;
        let (mut server, _) = listener.accept()?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf)?;
        Ok(&buf == b"ping")
    })();
    check("sockets", sockets.unwrap_or(false));
}

fn fds() {
    // Reading the directory opens one more descriptor; once the listing is
    // done and the directory closed, keep only those still open.
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    let mut fds: Vec<i32> = listed
        .into_iter()
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } != -1)
        .collect();
    fds.sort();
    let list: Vec<String> = fds.iter().map(i32::to_string).collect();
    println!("{}", list.join(" "));
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("syscalls") => syscalls(),
        Some("works") => works(),
        Some("fds") => fds(),
        _ => {
            eprintln!("usage: probe syscalls | works | fds");
            std::process::exit(2);
        }
    }
}
