//! A [`Plan`] laid out as a classic BPF program (step 6).
//!
//! ```text
//!        ld  arch                    seccomp_data.arch
//!        jeq NATIVE, +1, 0
//!        ret KILL_PROCESS            another architecture (i386's int 0x80…)
//!        ld  nr                      seccomp_data.nr
//!        jge 0x40000000, 0, +1       x86_64 only: the x32 ABI…
//!        ret KILL_PROCESS            …killed too
//! node:  jge first_of_right, 0, +1   a binary search on the number:
//!        ja  right                   (32-bit offset: any distance)
//! left:  node … or leaf              numbers below the right half
//! right: node … or leaf
//! leaf:  jeq nr_a, →ret_allow        one test per call with rules,
//!        jeq nr_b, →block_b          at most 32 calls, ascending
//!        …
//!        ret DEFAULT                 a number in range but not named
//!        ret_allow: ret ALLOW        one ret per verdict shared in the leaf
//!        block_b:   rule 1 … ret     a call's rules, then the default
//!                   rule 2 … ret
//!                   ret DEFAULT
//! ```
//!
//! Conditional jumps reach 255 instructions, so every jump of a leaf stays
//! inside it (a leaf is cut at 256 instructions), and a node reaches its
//! right half with `ja`. A search, not a list: the kernel runs the filter
//! once per call number when it installs it, to cache the calls it always
//! allows, and again on every call it does not cache, so the tests a number
//! passes before its verdict are paid at each start. With Docker's profile
//! a linear list costs up to 350 tests; this tree, at most 44 (libseccomp's
//! `SCMP_FLTATR_CTL_OPTIMIZE` builds one too).

use super::bpf::{Asm, Insn, Label, MAX_COND_JUMP, MAX_INSNS, Test, To};
use super::compile::{Action, CallPlan, Comparison, CompileError, Op, Plan, Rule};

/// `offsetof(struct seccomp_data, nr)`.
const NR: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH: u32 = 4;
/// `offsetof(struct seccomp_data, args)`: six u64.
const ARGS: u32 = 16;

/// The `AUDIT_ARCH_*` value of the architecture caixa was built for
/// (linux/audit.h), which the kernel puts in `seccomp_data.arch`.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Option<u32> = Some(0xc000_003e);
/// The `AUDIT_ARCH_*` value of the architecture caixa was built for.
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Option<u32> = Some(0xc000_00b7);
/// The `AUDIT_ARCH_*` value of the architecture caixa was built for.
#[cfg(target_arch = "riscv64")]
const NATIVE_ARCH: Option<u32> = Some(0xc000_00f3);
/// No filter for other architectures.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const NATIVE_ARCH: Option<u32> = None;

/// On x86_64, x32 calls reach the same kernel with this bit set in their
/// number, under the same `AUDIT_ARCH_X86_64`.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The largest leaf: from its first test every jump stays within reach.
const LEAF_INSNS: usize = MAX_COND_JUMP + 1;

/// The most calls a leaf tests one by one. Smaller leaves mean a deeper
/// tree (two instructions per level) and more shared `ret`s; 32 installs
/// fastest of 8, 16 and 32 (Appendix C), the program shorter and the search
/// at most 44 instructions long for Docker's and podman's profiles.
const LEAF_CALLS: usize = 32;

// ANCHOR: lay_out
/// The program for `plan`, at most 4096 instructions.
pub(super) fn lay_out(plan: &Plan) -> Result<Vec<Insn>, CompileError> {
    let native = NATIVE_ARCH.ok_or_else(|| CompileError::Unsupported {
        field: "linux.seccomp".into(),
        why: format!(
            "caixa has no filter for {}: run without one (--security-opt \
             seccomp=unconfined, or no linux.seccomp in config.json)",
            std::env::consts::ARCH
        ),
    })?;
    let kill = Action::KillProcess.verdict();
    let mut asm = Asm::new();
    // Numbers mean different calls on different architectures: check the
    // architecture before anything else.
    asm.load(ARCH);
    let native_call = asm.label();
    asm.jump_if(Test::Eq, native, To::Label(native_call), To::Next);
    asm.ret(kill);
    asm.bind(native_call);
    asm.load(NR);
    if cfg!(target_arch = "x86_64") {
        let not_x32 = asm.label();
        asm.jump_if(Test::Ge, X32_SYSCALL_BIT, To::Next, To::Label(not_x32));
        asm.ret(kill);
        asm.bind(not_x32);
    }
    let leaves = leaves(&plan.calls, plan.default)?;
    emit_tree(&mut asm, &leaves, plan.default);
    let insns = asm.finish().map_err(|e| CompileError::Unsupported {
        field: "linux.seccomp".into(),
        why: e.to_string(),
    })?;
    if insns.len() > MAX_INSNS {
        return Err(CompileError::Unsupported {
            field: "linux.seccomp.syscalls".into(),
            why: format!(
                "the filter needs {} instructions and the kernel loads at most {MAX_INSNS}: \
                 merge entries or drop argument rules",
                insns.len()
            ),
        });
    }
    Ok(insns)
}
// ANCHOR_END: lay_out

/// Calls cut into runs of at most [`LEAF_CALLS`] that fit one leaf each.
fn leaves(calls: &[CallPlan], default: Action) -> Result<Vec<Vec<&CallPlan>>, CompileError> {
    let mut leaves = Vec::new();
    let mut leaf = Leaf::default();
    for call in calls {
        let full =
            leaf.calls.len() == LEAF_CALLS || leaf.size + leaf.cost(call, default) > LEAF_INSNS;
        if full && !leaf.calls.is_empty() {
            leaves.push(std::mem::take(&mut leaf).calls);
        }
        let cost = leaf.cost(call, default);
        if leaf.size + cost > LEAF_INSNS {
            return Err(CompileError::Unsupported {
                field: format!("linux.seccomp.syscalls ({})", call.name),
                why: format!(
                    "the rules of {} need {} instructions; a conditional jump reaches \
                     {MAX_COND_JUMP}: use fewer argument rules for it",
                    call.name,
                    cost - 1
                ),
            });
        }
        leaf.add(call, cost);
    }
    if !leaf.calls.is_empty() {
        leaves.push(leaf.calls);
    }
    Ok(leaves)
}

/// A leaf being filled: its calls, size, and the verdicts it returns.
struct Leaf<'a> {
    calls: Vec<&'a CallPlan>,
    size: usize,
    verdicts: Vec<Action>,
}

impl Default for Leaf<'_> {
    fn default() -> Self {
        // The `ret` for a number the leaf does not name.
        Leaf {
            calls: Vec::new(),
            size: 1,
            verdicts: Vec::new(),
        }
    }
}

impl<'a> Leaf<'a> {
    /// Instructions `call` adds: its test, and its `ret` or its block.
    fn cost(&self, call: &CallPlan, default: Action) -> usize {
        1 + match call.always {
            Some(action) if self.verdicts.contains(&action) => 0,
            Some(_) => 1,
            None => {
                let mut probe = Asm::new();
                emit_rules(&mut probe, &call.rules, default);
                probe.len()
            }
        }
    }

    fn add(&mut self, call: &'a CallPlan, cost: usize) {
        if let Some(action) = call.always.filter(|a| !self.verdicts.contains(a)) {
            self.verdicts.push(action);
        }
        self.calls.push(call);
        self.size += cost;
    }
}

// ANCHOR: emit_tree
/// A binary search over `leaves` (ascending, never overlapping): a node
/// sends the numbers from its right half's first call on to that half, the
/// others fall into the left half; one leaf tests its calls one by one.
fn emit_tree(asm: &mut Asm, leaves: &[Vec<&CallPlan>], default: Action) {
    match leaves {
        [] => asm.ret(default.verdict()),
        [leaf] => emit_leaf(asm, leaf, default),
        _ => {
            let (left_half, right_half) = leaves.split_at(leaves.len() / 2);
            let first_right = right_half[0][0].nr;
            let (left, right) = (asm.label(), asm.label());
            asm.jump_if(Test::Ge, first_right, To::Next, To::Label(left));
            asm.jump(right);
            asm.bind(left);
            emit_tree(asm, left_half, default);
            asm.bind(right);
            emit_tree(asm, right_half, default);
        }
    }
}

/// One leaf: a test per call, the default for a number it does not name,
/// then the targets.
fn emit_leaf(asm: &mut Asm, calls: &[&CallPlan], default: Action) {
    let mut shared: Vec<(Action, Label)> = Vec::new();
    let mut blocks: Vec<(&CallPlan, Label)> = Vec::new();
    for call in calls {
        let target = match call.always {
            Some(action) => match shared.iter().find(|(a, _)| *a == action) {
                Some((_, label)) => *label,
                None => {
                    let label = asm.label();
                    shared.push((action, label));
                    label
                }
            },
            None => {
                let label = asm.label();
                blocks.push((call, label));
                label
            }
        };
        asm.jump_if(Test::Eq, call.nr, To::Label(target), To::Next);
    }
    asm.ret(default.verdict());
    for (action, label) in shared {
        asm.bind(label);
        asm.ret(action.verdict());
    }
    for (call, label) in blocks {
        asm.bind(label);
        emit_rules(asm, &call.rules, default);
    }
}

/// A call's rules in order, each falling through to its `ret` when all
/// its comparisons hold and jumping to the next rule at the first that
/// fails; the default when none holds.
fn emit_rules(asm: &mut Asm, rules: &[Rule], default: Action) {
    for rule in rules {
        let next_rule = asm.label();
        for comparison in &rule.all_of {
            emit_comparison(asm, comparison, next_rule);
        }
        asm.ret(rule.action.verdict());
        asm.bind(next_rule);
    }
    asm.ret(default.verdict());
}
// ANCHOR_END: emit_tree

// ANCHOR: emit_comparison
/// Falls through when `args[arg] <op>` holds for the 64-bit argument, and
/// jumps to `fail` when it does not. BPF loads 32 bits at a time: the high
/// words decide unless they are equal, then the low words do.
fn emit_comparison(asm: &mut Asm, comparison: &Comparison, fail: Label) {
    let (hi, lo) = (
        arg_word(comparison.arg, true),
        arg_word(comparison.arg, false),
    );
    let fail = To::Label(fail);
    let pass = asm.label();
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    match comparison.op {
        Op::Eq(v) => {
            let (v_hi, v_lo) = split(v);
            asm.load(hi);
            asm.jump_if(Test::Eq, v_hi, To::Next, fail);
            asm.load(lo);
            asm.jump_if(Test::Eq, v_lo, To::Next, fail);
        }
        Op::Ne(v) => {
            let (v_hi, v_lo) = split(v);
            asm.load(hi);
            asm.jump_if(Test::Eq, v_hi, To::Next, To::Label(pass));
            asm.load(lo);
            asm.jump_if(Test::Eq, v_lo, fail, To::Next);
        }
        Op::MaskedEq { mask, value } => {
            let ((m_hi, m_lo), (v_hi, v_lo)) = (split(mask), split(value));
            asm.load(hi);
            asm.and(m_hi);
            asm.jump_if(Test::Eq, v_hi, To::Next, fail);
            asm.load(lo);
            asm.and(m_lo);
            asm.jump_if(Test::Eq, v_lo, To::Next, fail);
        }
        // Orderings: a greater high word decides at once; an equal one
        // leaves it to the low words; a smaller one decides the other way.
        Op::Gt(v) | Op::Ge(v) => {
            let (v_hi, v_lo) = split(v);
            let low_test = if matches!(comparison.op, Op::Gt(_)) {
                Test::Gt
            } else {
                Test::Ge
            };
            asm.load(hi);
            asm.jump_if(Test::Gt, v_hi, To::Label(pass), To::Next);
            asm.jump_if(Test::Eq, v_hi, To::Next, fail);
            asm.load(lo);
            asm.jump_if(low_test, v_lo, To::Next, fail);
        }
        // `a < v` is `!(a >= v)`, `a <= v` is `!(a > v)`: the same tests
        // with the targets swapped.
        Op::Lt(v) | Op::Le(v) => {
            let (v_hi, v_lo) = split(v);
            let low_test = if matches!(comparison.op, Op::Lt(_)) {
                Test::Ge
            } else {
                Test::Gt
            };
            asm.load(hi);
            asm.jump_if(Test::Gt, v_hi, fail, To::Next);
            asm.jump_if(Test::Eq, v_hi, To::Next, To::Label(pass));
            asm.load(lo);
            asm.jump_if(low_test, v_lo, fail, To::Next);
        }
    }
    asm.bind(pass);
}

/// The offset of one 32-bit half of argument `arg` in `seccomp_data`.
fn arg_word(arg: u8, high: bool) -> u32 {
    let start = ARGS + 8 * u32::from(arg);
    // Little-endian machines keep the low word first.
    if high == cfg!(target_endian = "little") {
        start + 4
    } else {
        start
    }
}
// ANCHOR_END: emit_comparison
