//! Classic BPF, the language of seccomp filters: the instructions, a small
//! assembler with forward labels, and the `seccomp(2)` call that installs a
//! program (step 6).
//!
//! A filter is a classic BPF program (`linux/filter.h`; the kernel's
//! `Documentation/networking/filter.rst`). It has one 32-bit register, the
//! accumulator `A`; it loads 32-bit words of `struct seccomp_data` (the call's
//! number, the architecture, six 64-bit arguments), compares `A` with
//! constants, and ends in a `ret` whose value is the verdict. Jumps go
//! forward only, so every filter ends. A conditional jump keeps each of its
//! two offsets in **8 bits** (at most 255 instructions ahead); only the
//! unconditional `ja` has 32. The kernel refuses programs longer than
//! `BPF_MAXINSNS` (4096).
//!
//! [`Asm`] lets the compiler (`super::layout`) jump to a [`Label`] and bind
//! it later; [`Asm::finish`] turns labels into offsets and fails, never
//! truncates, when one is out of reach.

/// One instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// The operation (class | size | mode, or class | op | source).
    pub code: u16,
    /// Conditional jumps: instructions to skip when the test holds.
    pub jt: u8,
    /// Conditional jumps: instructions to skip when it does not.
    pub jf: u8,
    /// The constant: an offset to load, a value to compare, a verdict.
    pub k: u32,
}

// The opcodes caixa's filters use (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;

/// The longest program the kernel loads (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// The farthest a conditional jump reaches: its offsets are 8-bit.
pub const MAX_COND_JUMP: usize = u8::MAX as usize;

/// A place in the program that jumps can target before it is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Where one side of a conditional jump goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// The next instruction (offset 0).
    Next,
    /// A label, bound later in the program.
    Label(Label),
}

/// The comparisons a conditional jump makes of `A` with its constant,
/// unsigned. BPF has no "less than": jump the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// `A == k`.
    Eq,
    /// `A > k`.
    Gt,
    /// `A >= k`.
    Ge,
}

#[derive(Debug)]
enum Slot {
    Ready(Insn),
    Cond { code: u16, k: u32, jt: To, jf: To },
    Always(Label),
}

/// A jump that [`Asm::finish`] could not encode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    /// A conditional jump more than 255 instructions ahead.
    #[error(
        "instruction {at} jumps {distance} instructions ahead; conditional jumps reach {MAX_COND_JUMP}"
    )]
    TooFar {
        /// The jump's index in the program.
        at: usize,
        /// How far it had to go.
        distance: usize,
    },
    /// A label bound before its jump, or never bound: a compiler bug.
    #[error("instruction {at} jumps to a label that is not ahead of it")]
    Backwards {
        /// The jump's index in the program.
        at: usize,
    },
}

/// A program being written: instructions, some with jumps still to resolve.
#[derive(Debug, Default)]
pub struct Asm {
    slots: Vec<Slot>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many instructions so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A new label, to bind with [`Asm::bind`] where it should point.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Points `label` at the next instruction written.
    pub fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.slots.len());
    }

    /// `A = seccomp_data[offset..offset + 4]` (a 32-bit word).
    pub fn load(&mut self, offset: u32) {
        self.emit(BPF_LD | BPF_W | BPF_ABS, offset);
    }

    /// `A &= mask`.
    pub fn and(&mut self, mask: u32) {
        self.emit(BPF_ALU | BPF_AND | BPF_K, mask);
    }

    /// `if A <test> k goto if_true else goto if_false`.
    pub fn jump_if(&mut self, test: Test, k: u32, if_true: To, if_false: To) {
        let op = match test {
            Test::Eq => BPF_JEQ,
            Test::Gt => BPF_JGT,
            Test::Ge => BPF_JGE,
        };
        self.slots.push(Slot::Cond {
            code: BPF_JMP | op | BPF_K,
            k,
            jt: if_true,
            jf: if_false,
        });
    }

    /// `goto label`, however far ahead.
    pub fn jump(&mut self, label: Label) {
        self.slots.push(Slot::Always(label));
    }

    /// Ends the filter with the verdict `value` (`SECCOMP_RET_*`).
    pub fn ret(&mut self, value: u32) {
        self.emit(BPF_RET | BPF_K, value);
    }

    fn emit(&mut self, code: u16, k: u32) {
        self.slots.push(Slot::Ready(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// The instructions, every label replaced by its offset.
    pub fn finish(self) -> Result<Vec<Insn>, AsmError> {
        let distance = |at: usize, to: To| -> Result<usize, AsmError> {
            match to {
                To::Next => Ok(0),
                To::Label(label) => match self.labels[label.0] {
                    Some(target) if target > at => Ok(target - at - 1),
                    _ => Err(AsmError::Backwards { at }),
                },
            }
        };
        let short = |at: usize, to: To| -> Result<u8, AsmError> {
            let d = distance(at, to)?;
            u8::try_from(d).map_err(|_| AsmError::TooFar { at, distance: d })
        };
        self.slots
            .iter()
            .enumerate()
            .map(|(at, slot)| match *slot {
                Slot::Ready(insn) => Ok(insn),
                Slot::Cond { code, k, jt, jf } => Ok(Insn {
                    code,
                    jt: short(at, jt)?,
                    jf: short(at, jf)?,
                    k,
                }),
                Slot::Always(label) => Ok(Insn {
                    code: BPF_JMP | BPF_JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(distance(at, To::Label(label))?)
                        .map_err(|_| AsmError::Backwards { at })?,
                }),
            })
            .collect()
    }
}

// ANCHOR: install
/// Installs `program` on the calling thread with `seccomp(2)`'s
/// `SECCOMP_SET_MODE_FILTER` and `flags` (`SECCOMP_FILTER_FLAG_*`). The
/// filter stays for the life of the process and passes to its children
/// and across `execve`.
///
/// The kernel allows it only to a thread with no_new_privs set or with
/// `CAP_SYS_ADMIN` (else `EACCES`): otherwise a filter could make a setuid
/// program fail in a way its author never expected. Nothing here
/// allocates, so a child just forked from a threaded process may call it.
pub fn install(program: &[Insn], flags: u32) -> Result<(), nix::errno::Errno> {
    let len = u16::try_from(program.len()).map_err(|_| nix::errno::Errno::E2BIG)?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel copies the program and never writes it; `Insn` has
        // the layout of `struct sock_filter` (repr(C), u16 u8 u8 u32).
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` valid instructions that outlive the
    // call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &raw const fprog,
        )
    };
    match rc {
        0 => Ok(()),
        // With TSYNC, a positive answer is a thread that could not follow.
        rc if rc > 0 => Err(nix::errno::Errno::ESRCH),
        _ => Err(nix::errno::Errno::last()),
    }
}
// ANCHOR_END: install
