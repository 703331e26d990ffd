//! The seccomp filter: stop for the tracer only on syscalls that take a path, let every
//! other syscall run at full speed (the way `strace --seccomp-bpf` keeps its cost low).

use super::arch;
use super::syscall::Call;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

// Classic BPF opcodes (linux/bpf_common.h).
/// BPF_LD | BPF_W | BPF_ABS (BPF_LD and BPF_W are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

// Offsets into `struct seccomp_data`: nr, arch (then the instruction pointer and args).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// One instruction, laid out as `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// Builds the filter program for this architecture.
pub fn program() -> Vec<Insn> {
    build(
        arch::AUDIT_ARCH,
        arch::FOREIGN_NR_FLOOR,
        &arch::calls(),
        &arch::refused(),
    )
}

fn build(
    audit_arch: u32,
    foreign_floor: Option<u32>,
    calls: &[(u64, Call)],
    refused: &[u64],
) -> Vec<Insn> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        // Another ABI: trace it, so that the tracer can say the run was not fully seen.
        jump(BPF_JMP_JEQ_K, audit_arch, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_TRACE),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    if let Some(floor) = foreign_floor {
        p.push(jump(BPF_JMP_JGE_K, floor, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_TRACE));
    }
    for &nr in refused {
        p.push(jump(BPF_JMP_JEQ_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    // Every path syscall stops, those with AT_EMPTY_PATH too (fstat() in current libcs):
    // the flag means "the descriptor itself" only with an empty path, which the filter
    // cannot see; the tracer looks at the stop and lets an empty one go at once.
    for (nr, _) in calls {
        p.push(jump(BPF_JMP_JEQ_K, *nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_TRACE));
    }
    p.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::syscall::{Dir, Kind};

    /// Runs the program the way the kernel does, on one `seccomp_data`.
    fn eval(p: &[Insn], arch: u32, nr: u32, args: [u32; 6]) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    acc = match i.k {
                        DATA_NR => nr,
                        DATA_ARCH => arch,
                        k => args[((k - 16) / 8) as usize],
                    }
                }
                BPF_RET_K => return i.k,
                code => {
                    let taken = match code {
                        BPF_JMP_JEQ_K => acc == i.k,
                        BPF_JMP_JGE_K => acc >= i.k,
                        _ => panic!("unknown opcode {code}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
            }
        }
    }

    #[test]
    fn only_path_syscalls_stop_with_or_without_the_empty_path_flag() {
        let calls = [
            (257, Call::new(Kind::Open, Dir::Arg(0), 1).flags(2)),
            (262, Call::new(Kind::Probe, Dir::Arg(0), 1)),
        ];
        let p = build(0xc000_003e, Some(0x4000_0000), &calls, &[425]);
        let native = 0xc000_003e;
        assert_eq!(eval(&p, native, 257, [0; 6]), SECCOMP_RET_TRACE);
        assert_eq!(eval(&p, native, 262, [0; 6]), SECCOMP_RET_TRACE);
        let empty_path = libc::AT_EMPTY_PATH as u32;
        assert_eq!(
            eval(&p, native, 262, [0, 0, 0, empty_path, 0, 0]),
            SECCOMP_RET_TRACE
        );
        assert_eq!(eval(&p, native, 0, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(
            eval(&p, native, 425, [0; 6]),
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(eval(&p, native, 0x4000_0101, [0; 6]), SECCOMP_RET_TRACE);
        assert_eq!(eval(&p, 0x4000_0003, 5, [0; 6]), SECCOMP_RET_TRACE);
    }

    #[test]
    fn the_real_program_traps_every_listed_call() {
        let p = program();
        assert!(
            p.len() < 4096,
            "a seccomp program holds at most 4096 instructions"
        );
        for (nr, call) in arch::calls() {
            assert_eq!(
                eval(&p, arch::AUDIT_ARCH, nr as u32, [0; 6]),
                SECCOMP_RET_TRACE,
                "{call:?}"
            );
        }
        assert_eq!(
            eval(&p, arch::AUDIT_ARCH, libc::SYS_read as u32, [0; 6]),
            SECCOMP_RET_ALLOW
        );
    }
}
