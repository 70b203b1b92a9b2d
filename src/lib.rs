//! caixa ("box" in Portuguese): a container engine built from scratch, one
//! kernel feature at a time.
//!
//! A container is a process plus a plan. The plan is a [`Spec`]; the process is
//! created by [`parent::start`] (which [`parent::run`] calls, then waits),
//! which clones a child into new namespaces, and the child runs [`init::run`]
//! before it becomes the user's command. Every syscall of a container start
//! happens in one of those two sequences, in the order you read there. The modules below are named after the kernel concept they use.

pub mod bundle;
pub mod caps;
pub mod cgroup;
pub mod command;
pub mod engine;
pub mod exit;
pub mod hooks;
pub mod idmap;
pub mod ids;
pub mod image;
pub mod init;
pub mod leftovers;
pub mod net;
pub mod ns;
pub mod parent;
pub mod pidfd;
pub mod privilege;
pub mod reaper;
pub mod registry;
pub mod rlimit;
pub mod rootfs;
pub mod rootless;
pub mod runtime;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod start_gate;
pub mod sync;
pub mod sysctl;
pub mod trace;
pub mod units;
pub mod user;

pub use exit::Exit;
pub use ns::Namespace;
pub use spec::Spec;
