//! `preflight worker` against a real BuildGrid 0.4.4: the real binary serves the farm, and
//! BuildGrid's own client (`bgd execute command`, or a few lines of Python on BuildGrid's
//! generated stubs where bgd cannot say what is needed) submits the work.

use crate::buildgrid::BuildGrid;
use crate::common::{BIN, tools};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A farm for one test: the server, workers and submitters, all killed when it drops
/// (also on a panic), and every action process left behind by a killed worker with them.
struct Farm {
    workers: Vec<(String, Child)>,
    submitters: Vec<Child>,
    grid: BuildGrid,
    // Last: removed once everything that writes into it is dead.
    dir: tempfile::TempDir,
}

impl Drop for Farm {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for child in &mut self.submitters {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_actions_under(self.dir.path());
    }
}

/// Kills every process whose working directory is under `dir`, with its process group:
/// the actions of workers whose work dirs are there.
fn kill_actions_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            // SAFETY: signalling processes this test's workers started.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Farm {
    fn new() -> Farm {
        Farm {
            workers: Vec::new(),
            submitters: Vec::new(),
            grid: BuildGrid::with_execution(),
            dir: tempfile::Builder::new()
                .prefix("preflight-worker-test")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn venv_bin(program: &str) -> PathBuf {
        tools::dir().join("buildgrid-venv/bin").join(program)
    }

    fn remote(&self) -> String {
        format!("http://127.0.0.1:{}", self.grid.port())
    }

    /// Starts `preflight worker` named `name` and waits until it serves.
    fn start_worker(&mut self, name: &str, properties: &[&str]) {
        self.start_worker_with(name, properties, &[]);
    }

    /// The same with more flags.
    fn start_worker_with(&mut self, name: &str, properties: &[&str], flags: &[&std::ffi::OsStr]) {
        let work = self.path(&format!("work-{name}"));
        let log = File::create(self.path(&format!("{name}.log"))).expect("worker log");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "worker",
            "--endpoint",
            &self.grid.endpoint(),
            "--name",
            name,
        ])
        .arg("--work-dir")
        .arg(&work);
        for p in properties {
            cmd.args(["--property", p]);
        }
        cmd.args(flags);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("preflight worker starts");
        self.workers.push((name.to_string(), child));
        self.wait_for(
            &format!("worker {name} to serve"),
            Duration::from_secs(20),
            |f| f.log(name).contains("serving"),
        );
    }

    fn worker(&mut self, name: &str) -> &mut Child {
        &mut self
            .workers
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("a worker of that name")
            .1
    }

    /// An output bgd downloaded; bgd exits 0 also when the action failed, so a missing one
    /// shows everything.
    /// Waits for a worker that was told to stop to end, with exit code 0.
    #[track_caller]
    fn exits_cleanly(&mut self, name: &str, limit: Duration) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.worker(name).try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "worker {name} is still running:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}\n{}", self.logs());
    }

    fn got(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path("got").join(rel))
            .unwrap_or_else(|e| panic!("got/{rel}: {e}\n{}", self.logs()))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Everything the test saw, for a failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for (name, _) in &self.workers {
            text.push_str(&format!("--- worker {name}\n{}\n", self.log(name)));
        }
        for i in 0..self.submitters.len() {
            let out = std::fs::read_to_string(self.path(&format!("submit-{i}.log")));
            text.push_str(&format!("--- submitter {i}\n{}\n", out.unwrap_or_default()));
        }
        text.push_str(&format!("--- server\n{}", self.grid.log()));
        text
    }

    fn wait_for(&self, what: &str, limit: Duration, ready: impl Fn(&Farm) -> bool) {
        let started = Instant::now();
        while !ready(self) {
            assert!(
                started.elapsed() < limit,
                "waited {limit:?} for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `bgd execute command` in the background: `outputs` as --output-file, the
    /// outputs downloaded into `got`, results cached (so that the test can read them back).
    fn submit(
        &mut self,
        input: &Path,
        outputs: &[&str],
        platform: &[(&str, &str)],
        script: &str,
    ) -> usize {
        let index = self.submitters.len();
        let log = File::create(self.path(&format!("submit-{index}.log"))).expect("submit log");
        let mut cmd = Command::new(Farm::venv_bin("bgd"));
        cmd.args(["execute", "--remote", &self.remote(), "command", "-c"])
            .arg("--output-directory")
            .arg(self.path("got"));
        for o in outputs {
            cmd.args(["--output-file", o]);
        }
        for (k, v) in platform {
            cmd.args(["-p", k, v]);
        }
        // The `--` keeps `-c` of the shell from being read as bgd's --enable-action-cache.
        let child = cmd
            .arg(input)
            .args(["--", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("bgd execute starts");
        self.submitters.push(child);
        index
    }

    /// Waits for a submission to end and returns the digest of the Action it sent.
    fn finished(&mut self, index: usize, limit: Duration) -> String {
        let (ok, out) = self.ended(index, limit);
        assert!(ok, "bgd execute failed\n{}", self.logs());
        action_digest(&out).unwrap_or_else(|| panic!("no action digest in:\n{out}"))
    }

    /// Waits for a submission to end: whether bgd succeeded, and what it printed.
    fn ended(&mut self, index: usize, limit: Duration) -> (bool, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.submitters[index].try_wait().expect("poll bgd") {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "bgd execute did not finish in {limit:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(self.path(&format!("submit-{index}.log"))).unwrap();
        (status.success(), out)
    }

    /// The ActionResult the server stored for an Action, as JSON.
    fn result(&self, action: &str) -> serde_json::Value {
        let out = self.bgd(&[
            "actioncache",
            "--remote",
            &self.remote(),
            "get",
            "--json",
            action,
        ]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{}", self.logs()))
    }

    fn bgd(&self, args: &[&str]) -> String {
        let out = Command::new(Farm::venv_bin("bgd"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("bgd runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "bgd {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

/// `Sent action=[hash: "…"\nsize_bytes: N\n]` in bgd's output, as `hash/N`.
fn action_digest(out: &str) -> Option<String> {
    let rest = &out[out.find("Sent action=[")?..];
    let hash = rest.split('"').nth(1)?;
    let size = rest
        .split("size_bytes: ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    Some(format!("{hash}/{size}"))
}

/// A folder as path → content (`dir`, `link -> target`, or the bytes with `x` for an
/// executable file), to compare two folders whole.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(at).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = path.symlink_metadata().unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("link -> {}", target.display()).into_bytes());
            } else if meta.is_dir() {
                out.insert(rel, b"dir".to_vec());
                walk(root, &path, out);
            } else {
                let mut content = std::fs::read(&path).unwrap();
                if meta.permissions().mode() & 0o111 != 0 {
                    content.splice(0..0, *b"x:");
                }
                out.insert(rel, content);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Bytes that do not compress and are the same in every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An input root with a nested executable, a symlink, an empty folder and a file above the
/// 4 MiB batch limit (so that both sides stream it).
fn input_root(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("in.txt"), b"hello from the input root\n").unwrap();
    std::fs::write(dir.join("sub/tool.sh"), b"#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(
        dir.join("sub/tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("in.txt", dir.join("link")).unwrap();
    std::fs::write(dir.join("big.bin"), noise(5 << 20)).unwrap();
}

#[test]
fn an_action_runs_on_the_worker_and_its_outputs_come_back_identical() {
    let started = Instant::now();
    let mut farm = Farm::new();
    let setup = started.elapsed();
    farm.start_worker("w-one", &[]);
    let input = farm.path("in");
    input_root(&input);
    let script = "mkdir -p outdir/deep && tr a-z A-Z < in.txt > out/up.txt \
                  && sub/tool.sh > outdir/tool.txt && chmod +x outdir/tool.txt \
                  && cp big.bin outdir/deep/big.bin && readlink link > outdir/link.txt \
                  && ln -s tool.txt outdir/tool.link && mkdir outdir/empty \
                  && test -d empty && test -x sub/tool.sh && echo to-stderr >&2";
    let submitted = Instant::now();
    let job = farm.submit(&input, &["out/up.txt", "outdir"], &[], script);
    let action = farm.finished(job, Duration::from_secs(60));
    let round_trip = submitted.elapsed();

    // The same script run here is the reference; the worker made the outputs' parent
    // folders, as REAPI asks, so they are made here too.
    let local = farm.path("local");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&input)
        .arg(&local)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::create_dir_all(local.join("out")).unwrap();
    let ran = Command::new("/bin/sh")
        .args(["-c", script])
        .current_dir(&local)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    // bgd downloads output files itself...
    assert_eq!(
        std::fs::read(farm.path("got/out/up.txt")).unwrap(),
        std::fs::read(local.join("out/up.txt")).unwrap()
    );
    // ...and the folder comes back through the result the server cached.
    let result = farm.result(&action);
    assert_eq!(
        result.pointer("/executionMetadata/worker"),
        Some(&"w-one".into()),
        "{result}"
    );
    assert_eq!(
        result.pointer("/outputDirectories/0/path"),
        Some(&"outdir".into()),
        "{result}"
    );
    let root = result
        .pointer("/outputDirectories/0/rootDirectoryDigest")
        .unwrap_or_else(|| panic!("no root directory digest: {result}"));
    let root = format!(
        "{}/{}",
        root["hash"].as_str().unwrap(),
        root["sizeBytes"].as_str().unwrap()
    );
    let got_dir = farm.path("got/outdir");
    let pulled = farm.bgd(
        &[
            "cas",
            "--remote",
            &farm.remote(),
            "download-dir",
            "--verify",
            &root,
        ]
        .iter()
        .copied()
        .chain([got_dir.to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert!(
        pulled.contains("Success") && !pulled.contains("Error"),
        "{pulled}"
    );
    assert_eq!(snapshot(&got_dir), snapshot(&local.join("outdir")));
    let log = farm.log("w-one");
    assert!(log.contains("running /bin/sh (action"), "{log}");
    assert!(log.contains("done exit 0 in"), "{log}");
    // The action's folder is gone; the blob cache stays.
    let left: Vec<_> = std::fs::read_dir(farm.path("work-w-one"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["preflight-worker-cache"]);
    eprintln!(
        "server up in {setup:?}; submit to result {round_trip:?}; total {:?}",
        started.elapsed()
    );
}

#[test]
fn the_action_of_a_killed_worker_completes_on_another() {
    let started = Instant::now();
    let mut farm = Farm::new();
    farm.start_worker("w-first", &[]);
    let input = farm.path("in");
    std::fs::create_dir_all(&input).unwrap();
    let job = farm.submit(
        &input,
        &["out.txt"],
        &[],
        "sleep 5; echo finished > out.txt",
    );
    farm.wait_for(
        "the first worker to run the action",
        Duration::from_secs(30),
        |f| f.log("w-first").contains("running /bin/sh"),
    );
    // The machine dies: the worker and its action with it.
    let killed = Instant::now();
    farm.worker("w-first").kill().unwrap();
    farm.worker("w-first").wait().unwrap();
    kill_actions_under(&farm.path("work-w-first"));
    farm.start_worker("w-second", &[]);

    let action = farm.finished(job, Duration::from_secs(90));
    let requeued_in = killed.elapsed();
    assert_eq!(
        std::fs::read(farm.path("got/out.txt")).unwrap(),
        b"finished\n"
    );
    let result = farm.result(&action);
    assert_eq!(
        result.pointer("/executionMetadata/worker"),
        Some(&"w-second".into()),
        "{result}"
    );
    let log = farm.log("w-second");
    assert!(log.contains("done exit 0 in"), "{log}");
    assert!(
        !farm.log("w-first").contains("done"),
        "{}",
        farm.log("w-first")
    );
    eprintln!(
        "done on the second worker {requeued_in:?} after the kill; total {:?}",
        started.elapsed()
    );
}

#[test]
fn an_action_runs_on_a_worker_with_its_platform() {
    let started = Instant::now();
    let mut farm = Farm::new();
    farm.start_worker("w-pool-a", &["pool=a"]);
    farm.start_worker("w-pool-b", &["pool=b"]);
    let input = farm.path("in");
    std::fs::create_dir_all(&input).unwrap();
    let on_b = farm.submit(&input, &["b.txt"], &[("pool", "b")], "echo b > b.txt");
    let on_a = farm.submit(&input, &["a.txt"], &[("pool", "a")], "echo a > a.txt");
    let action_b = farm.finished(on_b, Duration::from_secs(60));
    let action_a = farm.finished(on_a, Duration::from_secs(60));
    for (action, worker) in [(&action_b, "w-pool-b"), (&action_a, "w-pool-a")] {
        let result = farm.result(action);
        assert_eq!(
            result.pointer("/executionMetadata/worker"),
            Some(&worker.into()),
            "{result}"
        );
        let short = &action[..12];
        assert!(
            farm.log(worker).contains(&format!("(action {short})")),
            "{}",
            farm.logs()
        );
    }
    assert_eq!(std::fs::read(farm.path("got/b.txt")).unwrap(), b"b\n");
    assert_eq!(std::fs::read(farm.path("got/a.txt")).unwrap(), b"a\n");
    eprintln!("total {:?}", started.elapsed());
}

/// Submits an Action with a timeout, which bgd cannot set, with BuildGrid's own stubs;
/// prints the ExecuteResponse's status code, message and exit code.
const SUBMIT_WITH_TIMEOUT: &str = r#"
import sys, hashlib, grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as rg
url, timeout, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
channel = grpc.insecure_channel(url)
cas = rg.ContentAddressableStorageStub(channel)
def put(message):
    data = message.SerializeToString()
    digest = re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    request = re.BatchUpdateBlobsRequest.Request(digest=digest, data=data)
    cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(requests=[request]))
    return digest
command = re.Command(arguments=args)
action = re.Action(command_digest=put(command), input_root_digest=put(re.Directory()),
                   do_not_cache=True)
action.timeout.FromNanoseconds(int(timeout * 1e9))
request = re.ExecuteRequest(action_digest=put(action), skip_cache_lookup=True)
for operation in rg.ExecutionStub(channel).Execute(request):
    if operation.done:
        response = re.ExecuteResponse()
        operation.response.Unpack(response)
        print(response.status.code, response.result.exit_code, response.status.message)
"#;

#[test]
fn an_action_past_its_timeout_is_killed_with_its_children() {
    let mut farm = Farm::new();
    farm.start_worker("w-timeout", &[]);
    let script = farm.path("submit.py");
    std::fs::write(&script, SUBMIT_WITH_TIMEOUT).unwrap();
    let marker = farm.path("child-alive");
    let started = Instant::now();
    let out = Command::new(Farm::venv_bin("python"))
        .arg(&script)
        .arg(format!("127.0.0.1:{}", farm.grid.port()))
        .arg("1.5")
        .args(["/bin/sh", "-c"])
        .arg(format!("(sleep 3; touch {}) & sleep 30", marker.display()))
        .output()
        .unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // DEADLINE_EXCEEDED (4), killed by SIGKILL (128 + 9).
    assert!(
        text.starts_with("4 137 the action ran past its timeout"),
        "{text}\n{}",
        farm.logs()
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    // The background child went with its group.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !marker.exists(),
        "a child of the action outlived its timeout"
    );
    assert!(
        farm.log("w-timeout").contains("timed out"),
        "{}",
        farm.logs()
    );
}

#[test]
fn a_stopped_worker_finishes_and_reports_its_action_then_exits() {
    let mut farm = Farm::new();
    farm.start_worker("w-stop", &[]);
    let input = farm.path("in");
    std::fs::create_dir_all(&input).unwrap();
    let job = farm.submit(
        &input,
        &["out.txt"],
        &[],
        "sleep 2; echo finished > out.txt",
    );
    farm.wait_for("the action to start", Duration::from_secs(30), |f| {
        f.log("w-stop").contains("running /bin/sh")
    });
    let pid = farm.worker("w-stop").id() as i32;
    // SAFETY: signalling the worker this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    farm.finished(job, Duration::from_secs(30));
    assert_eq!(
        std::fs::read(farm.path("got/out.txt")).unwrap(),
        b"finished\n"
    );
    farm.exits_cleanly("w-stop", Duration::from_secs(10));
    let log = farm.log("w-stop");
    assert!(
        log.contains("stopping") && log.contains("done exit 0"),
        "{log}"
    );
}

/// `sha256sum` of files in `dir`, as bytes (what the actions below print).
fn sums(dir: &Path, files: &[&str]) -> Vec<u8> {
    let out = Command::new("sha256sum")
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn an_input_root_is_fetched_once_then_copied_from_the_workers_cache() {
    let mut farm = Farm::new();
    farm.start_worker("w-warm", &["pool=warm"]);
    let cold_cache = farm.path("cold-cache");
    farm.start_worker_with(
        "w-cold",
        &["pool=cold"],
        &["--cache-dir".as_ref(), cold_cache.as_os_str()],
    );
    // Blobs of every kind: batched (in.txt), large but read in one batch (mid.bin), streamed
    // (big.bin), and one content at two paths, executable at one only.
    let input = farm.path("in");
    input_root(&input);
    std::fs::write(input.join("mid.bin"), &noise(2 << 20)[..3 << 19]).unwrap();
    std::fs::copy(input.join("sub/tool.sh"), input.join("plain-tool.sh")).unwrap();
    std::fs::set_permissions(
        input.join("plain-tool.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let files = [
        "in.txt",
        "mid.bin",
        "big.bin",
        "sub/tool.sh",
        "plain-tool.sh",
    ];
    let expected = sums(&input, &files);
    let check = format!(
        "test -x sub/tool.sh && test ! -x plain-tool.sh && sha256sum {}",
        files.join(" ")
    );

    let first = farm.submit(
        &input,
        &["one.txt"],
        &[("pool", "warm")],
        &format!("{check} > one.txt"),
    );
    farm.finished(first, Duration::from_secs(60));
    assert_eq!(farm.got("one.txt"), expected);
    let cache = farm.path("work-w-warm/preflight-worker-cache");
    for line in String::from_utf8_lossy(&expected).lines() {
        let hash = &line[..64];
        let cached = cache.join(&hash[..2]).join(hash);
        assert!(cached.is_file(), "{} is not cached", cached.display());
    }

    // From here on, the server serves every input file damaged (the same size, other bytes):
    // fetching any of them again fails.
    for line in String::from_utf8_lossy(&expected).lines() {
        let blob = farm.grid.cas_blob_path(&line[..64]);
        let mut bytes = std::fs::read(&blob).unwrap();
        assert!(!bytes.is_empty(), "{}", blob.display());
        for b in &mut bytes {
            *b ^= 0x5a;
        }
        std::fs::write(&blob, bytes).unwrap();
    }

    // Another command on the same inputs, which also changes them: the cache must not change
    // with them.
    let second = farm.submit(
        &input,
        &["two.txt"],
        &[("pool", "warm")],
        &format!(
            "{check} > two.txt && for f in {}; do echo changed >> $f; done",
            files.join(" ")
        ),
    );
    farm.finished(second, Duration::from_secs(60));
    assert_eq!(farm.got("two.txt"), expected);
    let third = farm.submit(
        &input,
        &["three.txt"],
        &[("pool", "warm")],
        &format!("{check} > three.txt"),
    );
    farm.finished(third, Duration::from_secs(60));
    assert_eq!(farm.got("three.txt"), expected);
    let warm = farm.log("w-warm");
    assert_eq!(warm.matches("done exit 0").count(), 3, "{warm}");

    // The same inputs on a worker with an empty cache: they come from the server, damaged.
    let cold = farm.submit(
        &input,
        &["cold.txt"],
        &[("pool", "cold")],
        &format!("{check} > cold.txt"),
    );
    let (_, out) = farm.ended(cold, Duration::from_secs(60));
    let log = farm.log("w-cold");
    assert!(
        log.contains("failed in") && log.contains("does not match its digest"),
        "{out}\n{}",
        farm.logs()
    );
    assert!(out.contains("does not match its digest"), "{out}");
    assert!(!farm.path("got/cold.txt").exists(), "{out}");
}

#[test]
fn a_stopped_worker_whose_server_is_gone_exits() {
    let mut farm = Farm::new();
    farm.start_worker("w-orphan", &[]);
    farm.wait_for("the worker's session", Duration::from_secs(30), |f| {
        f.log("w-orphan").contains("serving")
    });
    farm.grid.kill();
    let pid = farm.worker("w-orphan").id() as i32;
    // SAFETY: signalling the worker this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    farm.exits_cleanly("w-orphan", Duration::from_secs(15));
}

#[test]
fn a_daemon_an_action_leaves_behind_holds_neither_the_action_nor_its_timeout() {
    let mut farm = Farm::new();
    farm.start_worker("w-daemon", &[]);
    let script = farm.path("submit.py");
    std::fs::write(&script, SUBMIT_WITH_TIMEOUT).unwrap();
    let submit = |timeout: &str, script_text: &str| {
        let started = Instant::now();
        let out = Command::new(Farm::venv_bin("python"))
            .arg(&script)
            .arg(format!("127.0.0.1:{}", farm.grid.port()))
            .arg(timeout)
            .args(["/bin/sh", "-c", script_text])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (text, started.elapsed())
    };
    let marker = format!("6161.{}", std::process::id());
    let (text, took) = submit("20", &format!("(setsid sleep {marker} &); echo started"));
    assert!(text.starts_with("0 0"), "{text}\n{}", farm.logs());
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (text, took) = submit("1.5", &format!("(setsid sleep {marker} &); sleep 30"));
    assert!(
        text.starts_with("4 137 the action ran past its timeout"),
        "{text}\n{}",
        farm.logs()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The daemon is named by its command line as the scan finds it: still the subshell
    // that starts it, or `sleep` itself, alone or beside the action's own `sleep 30`.
    let log = farm.log("w-daemon");
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("sleep {marker}"))
                && l.contains("left the group of action")),
        "{log}"
    );
}
