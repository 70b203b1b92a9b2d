//! v2 `devices`: there is no file to write. cgroup v2 asks a BPF program
//! instead: one of type `BPF_PROG_TYPE_CGROUP_DEVICE`, attached to the
//! group's directory, runs on every `open(2)` and `mknod(2)` of a device by
//! a process of the group and returns 1 (allow) or 0 (deny, `EPERM`).
//!
//! The program is tiny, so caixa writes its instructions by hand as data
//! (no compiler, no library), from the same [`DevicePolicy`] cgroup v1
//! writes to its files: the checks in order, then the default. See bpf(2),
//! Documentation/bpf/ and `struct bpf_cgroup_dev_ctx` in `linux/bpf.h`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::cgroup::devices::{DeviceKind, DevicePolicy};
use crate::cgroup::{CgroupError, io};

/// One BPF instruction, as the kernel reads it (`struct bpf_insn`):
/// opcode, destination and source registers (4 bits each), a jump offset
/// and an immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// The registers: r0 is the return value, r1 holds the context on entry,
// r2-r5 are scratch.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// `r_dst = *(u32 *)(r_src + off)` (BPF_LDX | BPF_MEM | BPF_W).
const fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
    Insn {
        code: 0x61,
        regs: dst | (src << 4),
        off,
        imm: 0,
    }
}
/// `r_dst = r_src` (BPF_ALU64 | BPF_MOV | BPF_X).
const fn mov_reg(dst: u8, src: u8) -> Insn {
    Insn {
        code: 0xbf,
        regs: dst | (src << 4),
        off: 0,
        imm: 0,
    }
}
/// `r_dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: dst,
        off: 0,
        imm,
    }
}
/// `r_dst &= imm` (BPF_ALU64 | BPF_AND | BPF_K).
const fn and_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0x57,
        regs: dst,
        off: 0,
        imm,
    }
}
/// `r_dst >>= imm` (BPF_ALU64 | BPF_RSH | BPF_K).
const fn shift_right(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0x77,
        regs: dst,
        off: 0,
        imm,
    }
}
/// `if r_dst != imm: skip off instructions` (BPF_JMP | BPF_JNE | BPF_K).
const fn skip_unless_equal(dst: u8, imm: i32, off: i16) -> Insn {
    Insn {
        code: 0x55,
        regs: dst,
        off,
        imm,
    }
}
/// `if r_dst == imm: skip off instructions` (BPF_JMP | BPF_JEQ | BPF_K).
const fn skip_if_equal(dst: u8, imm: i32, off: i16) -> Insn {
    Insn {
        code: 0x15,
        regs: dst,
        off,
        imm,
    }
}
/// `return r0` (BPF_JMP | BPF_EXIT).
const fn exit() -> Insn {
    Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    }
}

/// `BPF_DEVCG_DEV_BLOCK` and `BPF_DEVCG_DEV_CHAR`: the low 16 bits of
/// `access_type`.
const fn kind_number(kind: DeviceKind) -> i32 {
    match kind {
        DeviceKind::Block => 1,
        DeviceKind::Char => 2,
        // `policy` keeps no exception of kind All.
        DeviceKind::All => 3,
    }
}

// ANCHOR: program
/// The program for `policy`: allow (1) or deny (0) one access.
pub fn program(policy: &DevicePolicy) -> Vec<Insn> {
    // Unpack the context, `struct bpf_cgroup_dev_ctx` in r1:
    //   r2 = access asked (BPF_DEVCG_ACC_*: mknod 1, read 2, write 4),
    //   r3 = kind (block 1, char 2), r4 = major, r5 = minor.
    let mut insns = vec![
        load_u32(R2, R1, 0), // access_type = (access << 16) | kind
        mov_reg(R3, R2),
        and_imm(R3, 0xffff),
        shift_right(R2, 16),
        load_u32(R4, R1, 4),
        load_u32(R5, R1, 8),
    ];
    for e in &policy.exceptions {
        // Does this exception name the device? Each check that fails skips
        // to the next exception: past the rest of this block.
        let mut block = vec![skip_unless_equal(R3, kind_number(e.kind), 0)];
        if let Some(major) = e.major {
            block.push(skip_unless_equal(R4, major as i32, 0));
        }
        if let Some(minor) = e.minor {
            block.push(skip_unless_equal(R5, minor as i32, 0));
        }
        // Does it cover the access? As cgroup v1 decides: an allow needs
        // every bit asked (r0 = asked & ~allowed must be 0); a deny needs
        // any one of them (r0 = asked & denied must not be 0).
        let access = i32::from(e.access.bits());
        block.push(mov_reg(R0, R2));
        if e.allow {
            block.push(and_imm(R0, !access & 7));
            block.push(skip_unless_equal(R0, 0, 0));
        } else {
            block.push(and_imm(R0, access));
            block.push(skip_if_equal(R0, 0, 0));
        }
        // It does: its verdict.
        block.push(mov_imm(R0, i32::from(e.allow)));
        block.push(exit());
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if matches!(insn.code, 0x55 | 0x15) {
                insn.off = (len - i - 1) as i16;
            }
        }
        insns.extend(block);
    }
    // No exception named it: the default.
    insns.push(mov_imm(R0, i32::from(policy.default_allow)));
    insns.push(exit());
    insns
}
// ANCHOR_END: program

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to the fields caixa sets (the
/// kernel takes a shorter struct; the rest reads as zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Let groups below attach programs of their own, every one of which must
/// allow (what runc does too; without it a sub-group could not attach).
const BPF_F_ALLOW_MULTI: u32 = 2;

/// bpf(2) with `attr`; the new fd (load) or 0 (attach).
fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] struct of the
    // size passed; the kernel reads at most that many bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

// ANCHOR: load
/// Loads `insns` into the kernel as a device program; on a verifier
/// refusal, loads it again with the log on, so the error says why.
pub fn load(insns: &[Insn]) -> Result<OwnedFd, CgroupError> {
    // Any license will do: the GPL matters only to programs that call
    // GPL-only kernel helpers, and this one calls none.
    let license = c"MIT OR Apache-2.0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"caixa_devs");
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    let fail = |why: String| {
        CgroupError::Unsupported {
        what: format!("a cgroup v2 device program (bpf BPF_PROG_LOAD: {why})"),
        fix: "caixa needs CAP_BPF or CAP_SYS_ADMIN and a kernel with CONFIG_CGROUP_BPF; or leave out linux.resources.devices".into(),
    }
    };
    match bpf(BPF_PROG_LOAD, &attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            let mut log = vec![0u8; 16 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(fail(format!("{e}; verifier: {last}")))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}
// ANCHOR_END: load

// ANCHOR: attach
/// Builds, loads and attaches the program for `policy` to the group
/// `dir`. The group keeps the program: our fd may close at once, and the
/// program goes when the group is removed.
pub fn attach(dir: &Path, policy: &DevicePolicy) -> Result<(), CgroupError> {
    let program = load(&program(policy))?;
    let group = std::fs::File::open(dir).map_err(io("open", dir))?;
    let attr = ProgAttach {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &attr)
        .map_err(io("attach a device program (bpf BPF_PROG_ATTACH) to", dir))?;
    Ok(())
}
// ANCHOR_END: attach

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::devices::{Access, DeviceRule, policy};

    /// Runs `insns` on one access the way the kernel would, for the
    /// handful of opcodes [`program`] uses.
    fn run(insns: &[Insn], kind: u32, major: u32, minor: u32, access: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                0x61 => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                0xbf => r[dst] = r[src],
                0xb7 => r[dst] = imm,
                0x57 => r[dst] &= imm,
                0x77 => r[dst] >>= imm,
                0x55 if r[dst] != imm => pc += i.off as usize,
                0x15 if r[dst] == imm => pc += i.off as usize,
                0x55 | 0x15 => {}
                0x95 => return r[0],
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn deny_all_but_caixas() -> Vec<Insn> {
        let deny_all = DeviceRule {
            allow: false,
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: Access::ALL,
        };
        program(&policy(&[deny_all]).unwrap())
    }

    #[test]
    fn the_program_follows_the_policy() {
        let p = deny_all_but_caixas();
        let (m, r, w) = (1, 2, 4);
        // /dev/null read-write, a pty, mknod of anything: allowed.
        assert_eq!(run(&p, 2, 1, 3, r | w), 1);
        assert_eq!(run(&p, 2, 136, 7, r | w), 1);
        assert_eq!(run(&p, 2, 10, 237, m), 1);
        assert_eq!(run(&p, 1, 254, 0, m), 1);
        // /dev/loop-control and the disk: denied.
        assert_eq!(run(&p, 2, 10, 237, r | w), 0);
        assert_eq!(run(&p, 1, 254, 0, r), 0);
        let deny_loop = DeviceRule {
            allow: false,
            kind: DeviceKind::Char,
            major: Some(10),
            minor: Some(237),
            access: Access::WRITE,
        };
        let p = program(&policy(&[deny_loop]).unwrap());
        assert_eq!(run(&p, 2, 10, 237, r), 1);
        assert_eq!(run(&p, 2, 10, 237, r | w), 0);
        assert_eq!(run(&p, 1, 10, 237, w), 1);
    }

    #[test]
    fn jumps_land_inside_the_program() {
        let p = deny_all_but_caixas();
        for (pc, i) in p.iter().enumerate() {
            if matches!(i.code, 0x55 | 0x15) {
                assert!(pc + 1 + (i.off as usize) < p.len());
            }
        }
        assert_eq!(p.last().map(|i| i.code), Some(0x95));
    }
}
