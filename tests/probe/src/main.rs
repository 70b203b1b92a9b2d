//! The probe: a small static program the graded tests copy into a rootfs and
//! run inside a container, to try what busybox cannot.
//!
//! - `probe syscalls`: makes each call a container must not make, with
//!   harmless arguments, and prints `name errno` (`ok` when it succeeded).
//!   A call refused by seccomp answers EPERM; otherwise the kernel answers
//!   something else (EFAULT, EINVAL, ENOENT…) or succeeds.
//!   The list is drawn from Docker's default profile: calls it leaves out
//!   (keyrings, modules, mounts, io_uring, setns…) and arguments it refuses
//!   (`socket(AF_VSOCK)`, `personality` flags, `clone` with namespace flags).
//! - `probe works`: what a shell, a server and a package manager need: fork,
//!   exec, files, sockets, the arguments Docker allows, threads. Prints
//!   `name ok` or `name error`.
//! - `probe fds`: the file descriptors open in this process.
//! - `probe alloc MB`: allocates and touches MB mebibytes, then prints `done`.
//! - `probe forks N`: starts N children that wait, prints how many started.
//! - `probe spin SECONDS`: keeps one CPU busy for that long (wall clock),
//!   printing nothing (the test may have stopped listening by then).
//! - `probe udp-recv PORT`: prints the first UDP datagram to PORT (or, after
//!   20 s, that none came).
//! - `probe udp-send ADDR:PORT TEXT`: sends TEXT as one datagram, 5 times.
//! - `probe tcp-recv PORT`: accepts one connection, prints `listening`
//!   first, then the number of bytes received until the sender closes (or,
//!   after 20 s without a connection, that none came).
//! - `probe tcp-send ADDR:PORT SECONDS`: sends zeros for that long, then closes.
//! - `probe write-direct PATH MB`: writes MB mebibytes with O_DIRECT (past
//!   the page cache, so a block-device throttle applies), prints `done`.

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
        // Not on Docker's allow list at all (io_uring came with 5.1).
        (
            "io_uring_setup",
            Box::new(|| unsafe { libc::syscall(libc::SYS_io_uring_setup, 0, null::<u8>()) }),
        ),
        (
            "io_uring_enter",
            Box::new(|| unsafe {
                libc::syscall(libc::SYS_io_uring_enter, -1, 0, 0, 0, null::<u8>(), 0)
            }),
        ),
        (
            "io_uring_register",
            Box::new(|| unsafe {
                libc::syscall(libc::SYS_io_uring_register, -1, 0, null::<u8>(), 0)
            }),
        ),
        (
            "open_by_handle_at",
            Box::new(|| unsafe { libc::syscall(libc::SYS_open_by_handle_at, -1, null::<u8>(), 0) }),
        ),
        (
            "setns",
            Box::new(|| unsafe { libc::syscall(libc::SYS_setns, -1, 0) }),
        ),
        (
            "unshare(CLONE_NEWUTS)",
            Box::new(|| unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS) }),
        ),
        // Allowed with some arguments only. CLONE_FS with CLONE_NEWNS is
        // invalid, so without the filter the kernel answers EINVAL.
        (
            "clone(CLONE_NEWNS|CLONE_FS)",
            Box::new(|| unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    libc::CLONE_NEWNS | libc::CLONE_FS,
                    0,
                    0,
                    0,
                    0,
                )
            }),
        ),
        (
            "socket(AF_VSOCK)",
            Box::new(|| unsafe { libc::syscall(libc::SYS_socket, 40, libc::SOCK_STREAM, 0) }),
        ),
        (
            "socket(AF_ALG)",
            Box::new(|| unsafe { libc::syscall(libc::SYS_socket, 38, libc::SOCK_SEQPACKET, 0) }),
        ),
        (
            "personality(READ_IMPLIES_EXEC)",
            Box::new(|| unsafe { libc::syscall(libc::SYS_personality, 0x0040_0000) }),
        ),
        (
            "personality(ADDR_NO_RANDOMIZE)",
            Box::new(|| unsafe { libc::syscall(libc::SYS_personality, 0x0004_0000) }),
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
    // The values Docker's profile allows: query, PER_LINUX, and a UNIX socket.
    // SAFETY: personality and socket take plain integers.
    let allowed = unsafe {
        libc::personality(0xffff_ffff) >= 0
            && libc::personality(0) >= 0
            && libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) >= 0
    };
    check("allowed-arguments", allowed);
    // A thread: the C library tries clone3, gets ENOSYS, falls back to clone.
    let thread = std::thread::spawn(|| 6 * 7).join();
    check("threads", thread.is_ok_and(|n| n == 42));
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

fn alloc(mib: usize) {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        // Touch every page so the memory is really charged to us.
        blocks.push(vec![1u8; 1 << 20]);
    }
    println!("done {}", blocks.len());
}

fn forks(n: usize) {
    let mut started = Vec::new();
    for _ in 0..n {
        // SAFETY: the child only sleeps and exits.
        match unsafe { libc::fork() } {
            0 => {
                std::thread::sleep(std::time::Duration::from_secs(2));
                unsafe { libc::_exit(0) };
            }
            -1 => break,
            pid => started.push(pid),
        }
    }
    println!("started {}", started.len());
    for pid in started {
        // SAFETY: reaping our own children.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

fn spin(seconds: f64) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let mut x: u64 = 0;
    while std::time::Instant::now() < end {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn write_direct(path: &str, mib: usize) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("open with O_DIRECT");
    // O_DIRECT wants an aligned buffer: allocate with 4096-byte alignment.
    let layout = std::alloc::Layout::from_size_align(1 << 20, 4096).expect("layout");
    // SAFETY: the layout is non-zero; the buffer is freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!buf.is_null());
    // SAFETY: buf points to 1 MiB we own.
    let slice = unsafe { std::slice::from_raw_parts(buf, 1 << 20) };
    for _ in 0..mib {
        file.write_all(slice).expect("write");
    }
    // SAFETY: allocated above with the same layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    println!("done");
}

/// How long a receiving probe waits for its sender: a test whose traffic
/// never arrives (a broken network, which is what it grades) then reads a
/// line that says so and fails, instead of waiting for ever.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

fn udp_recv(port: &str) {
    let socket = std::net::UdpSocket::bind(format!("0.0.0.0:{port}")).expect("bind");
    socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
    println!("listening");
    let mut buf = [0u8; 1500];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => println!("{}", String::from_utf8_lossy(&buf[..n]).trim()),
        Err(e) => println!("no datagram within {} s: {e}", PATIENCE.as_secs()),
    }
}

fn udp_send(to: &str, text: &str) {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
    for _ in 0..5 {
        let _ = socket.send_to(text.as_bytes(), to);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn tcp_recv(port: &str) {
    let listener = std::net::TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("listening");
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    println!("no connection within {} s", PATIENCE.as_secs());
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    let mut buf = vec![0u8; 65536];
    let mut total: u64 = 0;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    println!("{total}");
}

fn tcp_send(to: &str, seconds: f64) {
    let mut stream = std::net::TcpStream::connect(to).expect("connect");
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    stream
        .set_write_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let buf = vec![0u8; 16384];
    while std::time::Instant::now() < end {
        if let Err(e) = stream.write(&buf)
            && e.kind() != std::io::ErrorKind::WouldBlock
            && e.kind() != std::io::ErrorKind::TimedOut
        {
            break;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "syscalls" => syscalls(),
        "works" => works(),
        "fds" => fds(),
        "alloc" => alloc(arg(2).parse().unwrap_or(100)),
        "forks" => forks(arg(2).parse().unwrap_or(10)),
        "spin" => spin(arg(2).parse().unwrap_or(1.0)),
        "write-direct" => write_direct(arg(2), arg(3).parse().unwrap_or(4)),
        "udp-recv" => udp_recv(arg(2)),
        "tcp-recv" => tcp_recv(arg(2)),
        "tcp-send" => tcp_send(arg(2), arg(3).parse().unwrap_or(3.0)),
        "udp-send" => udp_send(arg(2), arg(3)),
        _ => {
            eprintln!(
                "usage: probe syscalls | works | fds | alloc MB | forks N | spin S | write-direct PATH MB"
            );
            std::process::exit(2);
        }
    }
}
