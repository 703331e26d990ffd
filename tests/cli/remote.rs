//! `[remote]` as a shared cache, against a real BuildGrid server: one machine fills it, a
//! fresh clone with an empty local cache gets the results, and a server that breaks never
//! fails a run.

use crate::buildgrid::BuildGrid;
use crate::common::Repo;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Steps with a folder output (files, a subfolder, a symlink, an executable) and a file
/// output that needs it, plus a step kept local.
fn config(endpoint: &str, cache: &str) -> String {
    format!(
        r#"
[remote]
endpoint = "{endpoint}"
cache = "{cache}"

[steps.gen]
run = "mkdir -p out/sub && for i in 1 2 3; do echo file $i > out/f$i.txt; done && echo deep > out/sub/d.txt && ln -sf f1.txt out/link && printf '#!/bin/sh\necho hi\n' > out/tool && chmod +x out/tool && head -c 20000000 /dev/urandom > out/big.bin && echo generated"
inputs = ["src/**"]
outputs = ["out"]

[steps.build]
run = "cat out/f1.txt src/a.txt > result.txt && echo built"
inputs = ["src/**"]
outputs = ["result.txt"]
needs = ["gen"]

[steps.local]
run = "echo local > local.txt"
inputs = ["src/**"]
outputs = ["local.txt"]
remote = false
"#
    )
}

fn repo_with(endpoint: &str, cache: &str) -> Repo {
    let repo = Repo::with_config(&config(endpoint, cache));
    repo.write("src/a.txt", "hello\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "init"]);
    repo
}

#[test]
fn a_clone_with_an_empty_cache_gets_the_results_of_another_machine() {
    let grid = BuildGrid::cache_only();
    let laptop = repo_with(&grid.endpoint(), "read-write");
    let first = laptop.run(&["run"]);
    first.code(0);
    assert_eq!(first.status_of("gen"), "passed", "{}", first.stdout);
    assert!(!first.stdout.contains("warning"), "{}", first.stdout);

    let other = Repo::clone_of(&laptop);
    let run = other.run(&["run", "--explain"]);
    run.code(0);
    for step in ["gen", "build"] {
        assert_eq!(run.status_of(step), "cached (remote)", "{}", run.stdout);
    }
    assert!(
        run.stdout.contains("remote cache hit (action "),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.status_of("local"),
        "passed",
        "a `remote = false` step never uses it"
    );
    // The logs come back too.
    let json = other.run(&["run", "--format", "json", "--force", "local"]);
    assert!(
        json.stdout.contains(r#""status":"cached""#),
        "{}",
        json.stdout
    );

    for file in [
        "out/big.bin",
        "out/f1.txt",
        "out/f2.txt",
        "out/f3.txt",
        "out/sub/d.txt",
        "out/tool",
        "result.txt",
    ] {
        assert_eq!(other.read(file), laptop.read(file), "{file}");
    }
    let link = std::fs::read_link(other.path().join("out/link")).unwrap();
    assert_eq!(link.to_str(), Some("f1.txt"));
    let mode = std::fs::metadata(other.path().join("out/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit survives");

    // A third machine that only reads also hits; one that switches it off runs.
    let reader = Repo::clone_of(&laptop);
    let off = reader.run(&["run", "--remote-cache", "off", "gen"]);
    assert_eq!(off.status_of("gen"), "passed", "{}", off.stdout);
    let reader = Repo::clone_of(&laptop);
    let no_remote = reader.run(&["run", "--no-remote", "gen"]);
    assert_eq!(no_remote.status_of("gen"), "passed", "{}", no_remote.stdout);
    // --no-cache leaves both caches alone: nothing is fetched into the local one.
    let bare = Repo::clone_of(&laptop);
    let no_cache = bare.run(&["run", "--no-cache", "gen"]);
    assert_eq!(no_cache.status_of("gen"), "passed", "{}", no_cache.stdout);
    let local_only = bare.run(&["run", "--no-remote", "gen"]);
    assert_eq!(
        local_only.status_of("gen"),
        "passed",
        "{}",
        local_only.stdout
    );
}

#[test]
fn a_read_only_cache_uploads_nothing() {
    let grid = BuildGrid::cache_only();
    let laptop = repo_with(&grid.endpoint(), "read");
    laptop.run(&["run"]).code(0);
    let other = Repo::clone_of(&laptop);
    let run = other.run(&["run"]);
    run.code(0);
    assert_eq!(
        run.status_of("gen"),
        "passed",
        "nothing was uploaded:\n{}",
        run.stdout
    );

    // CI overrides the file's mode through the environment and fills the cache.
    let ci = Repo::clone_of(&laptop);
    let filled = ci
        .cmd()
        .args(["run"])
        .env("PREFLIGHT_REMOTE_CACHE", "read-write")
        .output()
        .unwrap();
    assert!(filled.status.success());
    let last = Repo::clone_of(&laptop);
    let run = last.run(&["run", "gen"]);
    assert_eq!(run.status_of("gen"), "cached (remote)", "{}", run.stdout);
}

#[test]
fn a_corrupt_blob_in_the_remote_cache_is_refused() {
    let grid = BuildGrid::cache_only();
    let laptop = repo_with(&grid.endpoint(), "read-write");
    laptop.run(&["run"]).code(0);
    // Damage the stored content of out/f2.txt on the server.
    let content = laptop.read("out/f2.txt");
    let hash = crate::common::sha256_hex(&content);
    let blob = grid.cas_blob_path(&hash);
    assert!(
        blob.is_file(),
        "the server stores {hash} at {}",
        blob.display()
    );
    std::fs::write(&blob, b"file 666\n").unwrap();

    let other = Repo::clone_of(&laptop);
    let run = other.run(&["run", "gen"]);
    run.code(0);
    assert_eq!(
        run.status_of("gen"),
        "passed",
        "the step ran here:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("does not match its digest"),
        "the damage is reported:\n{}",
        run.stdout
    );
    assert_eq!(other.read("out/f2.txt"), b"file 2\n");
    assert!(
        !run.stdout.contains("the rest of the run is local"),
        "one bad blob does not turn the remote off:\n{}",
        run.stdout
    );
}

#[test]
fn a_server_that_dies_mid_run_gives_one_warning_and_the_run_passes() {
    let mut grid = BuildGrid::cache_only();
    let repo = Repo::with_config(&format!(
        r#"
[remote]
endpoint = "{}"

[steps.slow]
run = "touch started && sleep 2 && echo slow > slow.txt"
inputs = ["src/**"]
outputs = ["slow.txt"]

[steps.after]
run = "cat slow.txt > after.txt"
inputs = ["src/**"]
outputs = ["after.txt"]
needs = ["slow"]

[steps.last]
run = "cat after.txt > last.txt"
inputs = ["src/**"]
outputs = ["last.txt"]
needs = ["after"]
"#,
        grid.endpoint()
    ));
    repo.write("src/a.txt", "x\n");
    repo.add_all();
    let child = repo
        .cmd()
        .args(["run"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !repo.path().join("started").exists() {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    grid.kill();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches("warning:").count(),
        1,
        "one warning:\n{stdout}"
    );
    assert!(stdout.contains("the rest of the run is local"), "{stdout}");
    assert_eq!(repo.read("last.txt"), b"slow\n");
}

#[test]
fn a_server_that_is_down_at_the_start_gives_one_warning() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = repo_with(&format!("grpc://127.0.0.1:{port}"), "read-write");
    let run = repo.run(&["run"]);
    run.code(0);
    assert_eq!(run.stdout.matches("warning:").count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("cannot reach the remote"),
        "{}",
        run.stdout
    );
}

/// `preflight worker` processes serving a farm, killed when dropped. Their logs go with them,
/// unless the test failed.
pub(crate) struct Workers {
    children: Vec<std::process::Child>,
    logs: Option<tempfile::TempDir>,
}

impl Workers {
    pub(crate) fn start(endpoint: &str, specs: &[(&str, &str)]) -> Workers {
        let logs = tempfile::tempdir().unwrap();
        let dir = logs.path();
        let children = specs
            .iter()
            .map(|(name, property)| {
                let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
                std::process::Command::new(crate::common::BIN)
                    .args(["worker", "--endpoint", endpoint, "--name", name])
                    .args(["--property", property])
                    .stdin(std::process::Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        Workers {
            children,
            logs: Some(logs),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking()
            && let Some(logs) = self.logs.take()
        {
            eprintln!("the workers' logs are kept in {}", logs.keep().display());
        }
    }
}

/// Seconds since the epoch as the step's shell sees them, from a file it wrote.
fn interval(text: &str) -> (f64, f64) {
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn steps_run_on_two_workers_at_once_each_where_its_platform_says() {
    let grid = BuildGrid::with_execution();
    let _workers = Workers::start(
        &grid.endpoint(),
        &[("worker-a", "pool=a"), ("worker-b", "pool=b")],
    );
    let step = |name: &str, pool: &str| {
        format!(
            r#"
[steps.{name}]
run = "start=$(date +%s.%N) && sleep 2 && mkdir -p out && cat src/in.txt > out/{name}.txt && echo $start $(date +%s.%N) > out/{name}.time && echo ran {name}"
inputs = ["src/**"]
outputs = ["out/{name}.txt", "out/{name}.time"]
platform = {{ pool = "{pool}" }}
"#
        )
    };
    // `sum` runs on a worker too, with the outputs of the two it needs in its input root.
    let config = format!(
        "[remote]\nendpoint = \"{}\"\nexecute = true\n{}{}{}",
        grid.endpoint(),
        step("first", "a"),
        step("second", "b"),
        r#"
[steps.sum]
run = "cat out/first.txt out/second.txt > total.txt"
inputs = ["src/**"]
outputs = ["total.txt"]
needs = ["first", "second"]
platform = { pool = "a" }
"#
    );
    let repo = Repo::with_config(&config);
    repo.write("src/in.txt", "input\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "init"]);
    let run = repo.run(&["run", "-j", "2", "--format", "json"]);
    run.code(0);
    for (name, worker) in [("first", "worker-a"), ("second", "worker-b")] {
        let line = run
            .stdout
            .lines()
            .find(|l| {
                l.contains(r#""event":"step_finished""#)
                    && l.contains(&format!(r#""step":"{name}""#))
            })
            .unwrap_or_else(|| panic!("no result for {name}:\n{}", run.stdout));
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["status"], "passed", "{line}");
        assert_eq!(event["remote"]["executed"], true, "{line}");
        assert_eq!(event["remote"]["worker"], worker, "{line}\n{}", grid.log());
        assert_eq!(event["output"], format!("ran {name}\n"), "{line}");
        assert_eq!(repo.read(format!("out/{name}.txt")), b"input\n");
    }
    assert_eq!(repo.read("total.txt"), b"input\ninput\n");
    assert!(run.stdout.contains(r#""stage":"queued""#), "{}", run.stdout);
    assert!(
        run.stdout.contains(r#""stage":"executing""#),
        "{}",
        run.stdout
    );
    let (a0, a1) = interval(&repo.read_string("out/first.time"));
    let (b0, b1) = interval(&repo.read_string("out/second.time"));
    assert!(
        a0 < b1 && b0 < a1,
        "the two ran at the same time: {a0}-{a1} and {b0}-{b1}"
    );

    // What the farm built is in its cache: a laptop that only reads gets it.
    let laptop = Repo::clone_of(&repo);
    let read = laptop.run(&["run", "--remote-cache", "read", "--format", "json"]);
    read.code(0);
    assert_eq!(
        read.stdout.matches(r#""status":"cached""#).count(),
        3,
        "{}",
        read.stdout
    );
    // (`--format json` above; the human line says `cached (remote)`.)
    let again = Repo::clone_of(&repo);
    let human = again.run(&["run", "--remote-cache", "read"]);
    assert_eq!(
        human.status_of("first"),
        "cached (remote)",
        "{}",
        human.stdout
    );
}

#[test]
fn a_step_that_fails_on_a_worker_fails_the_run_with_its_log() {
    let grid = BuildGrid::with_execution();
    let _workers = Workers::start(&grid.endpoint(), &[("worker-x", "pool=x")]);
    let repo = Repo::with_config(&format!(
        r#"
[remote]
endpoint = "{}"
execute = true

[steps.check]
run = "echo checking src/in.txt && exit 3"
inputs = ["src/**"]

[steps.lint]
run = "echo no inputs"
"#,
        grid.endpoint()
    ));
    repo.write("src/in.txt", "input\n");
    repo.add_all();
    let run = repo.run(&["run", "--explain"]);
    run.code(1);
    assert_eq!(run.status_of("check"), "failed (remote)", "{}", run.stdout);
    assert!(run.stdout.contains("checking src/in.txt"), "{}", run.stdout);
    assert_eq!(
        run.status_of("lint"),
        "passed",
        "a step without inputs runs here"
    );
    assert!(
        run.stdout
            .contains("remote lint → runs here: it declares no `inputs`"),
        "with a note saying why:\n{}",
        run.stdout
    );
}

#[test]
fn a_tls_server_is_trusted_through_the_ca_it_is_given() {
    let grid = BuildGrid::cache_only_tls();
    assert!(grid.endpoint().starts_with("grpcs://"));
    let ca = grid.ca_pem().display().to_string();
    let with_ca = |repo: &Repo, ca: Option<&str>| {
        let ca_line = ca
            .map(|c| format!("ca_cert = \"{c}\"\n"))
            .unwrap_or_default();
        repo.write(
            "preflight.toml",
            config(&grid.endpoint(), "read-write").replace(
                "cache = \"read-write\"\n",
                &format!("cache = \"read-write\"\n{ca_line}"),
            ),
        );
    };
    let laptop = repo_with(&grid.endpoint(), "read-write");
    // Without the CA the server's certificate is not trusted: one warning, a local run.
    with_ca(&laptop, None);
    let untrusted = laptop.run(&["run", "gen"]);
    untrusted.code(0);
    assert_eq!(
        untrusted.stdout.matches("warning:").count(),
        1,
        "{}",
        untrusted.stdout
    );
    assert!(
        untrusted.stdout.contains("cannot reach the remote"),
        "{}",
        untrusted.stdout
    );

    with_ca(&laptop, Some(&ca));
    laptop.run(&["run", "--force", "gen"]).code(0);
    let other = Repo::clone_of(&laptop);
    with_ca(&other, Some(&ca));
    let run = other.run(&["run", "gen"]);
    run.code(0);
    assert_eq!(run.status_of("gen"), "cached (remote)", "{}", run.stdout);
}

#[test]
fn a_header_takes_its_value_from_the_variable_it_names() {
    let grid = BuildGrid::cache_only();
    let repo = repo_with(&grid.endpoint(), "read-write");
    let config = repo.read_string("preflight.toml").replace(
        "cache = \"read-write\"\n",
        "cache = \"read-write\"\nheaders = { x-api-key = \"TEST_REMOTE_KEY\" }\n",
    );
    repo.write("preflight.toml", config);
    let unset = repo
        .cmd()
        .args(["run", "gen"])
        .env_remove("TEST_REMOTE_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&unset.stdout);
    assert!(unset.status.success(), "{stdout}");
    assert!(
        stdout
            .contains("header `x-api-key` takes its value from $TEST_REMOTE_KEY, which is not set"),
        "{stdout}"
    );
    let set = repo
        .cmd()
        .args(["run", "--force", "gen"])
        .env("TEST_REMOTE_KEY", "k-123")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&set.stdout);
    assert!(
        set.status.success() && !stdout.contains("warning"),
        "{stdout}"
    );
    assert!(!stdout.contains("k-123"), "the value is never printed");
}

#[test]
fn ctrl_c_stops_waiting_for_the_farm() {
    use std::io::BufRead;
    let grid = BuildGrid::with_execution();
    let _workers = Workers::start(&grid.endpoint(), &[("worker-slow", "pool=slow")]);
    let repo = Repo::with_config(&format!(
        r#"
[remote]
endpoint = "{}"
execute = true

[steps.long]
run = "sleep 60"
inputs = ["src/**"]
"#,
        grid.endpoint()
    ));
    repo.write("src/in.txt", "input\n");
    repo.add_all();
    let mut child = repo
        .cmd()
        .args(["run", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains(r#""stage":"executing""#) {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("executing")),
        "{seen:#?}"
    );
    let asked = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "it stopped waiting at once"
    );
    assert!(!status.success());
    let finished = rest
        .iter()
        .find(|l| l.contains("step_finished"))
        .expect("a result");
    assert!(finished.contains(r#""status":"cancelled""#), "{finished}");
}

#[test]
fn a_server_that_never_answers_costs_the_connect_timeout_and_one_warning() {
    // Accepts connections and says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let repo = repo_with(&format!("grpc://127.0.0.1:{port}"), "read-write");
    let config = repo.read_string("preflight.toml").replace(
        "cache = \"read-write\"\n",
        "cache = \"read-write\"\nconnect_timeout = \"1s\"\n",
    );
    repo.write("preflight.toml", config);
    let started = Instant::now();
    let run = repo.run(&["run"]);
    run.code(0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.stdout.matches("warning:").count(), 1, "{}", run.stdout);
}

#[test]
fn a_named_instance_is_used_for_every_call_streams_included() {
    let grid = BuildGrid::cache_only_instance("ci/main");
    let laptop = repo_with(&grid.endpoint(), "read-write");
    let config = laptop.read_string("preflight.toml").replace(
        "cache = \"read-write\"\n",
        "cache = \"read-write\"\ninstance_name = \"ci/main\"\n",
    );
    laptop.write("preflight.toml", &config);
    let first = laptop.run(&["run", "gen"]);
    first.code(0);
    assert!(!first.stdout.contains("warning"), "{}", first.stdout);
    let other = Repo::clone_of(&laptop);
    other.write("preflight.toml", &config);
    let run = other.run(&["run", "gen"]);
    assert_eq!(run.status_of("gen"), "cached (remote)", "{}", run.stdout);
    assert_eq!(other.read("out/big.bin"), laptop.read("out/big.bin"));
}

#[test]
fn laptops_read_and_ci_writes_with_one_config() {
    let grid = BuildGrid::cache_only();
    let laptop = repo_with(&grid.endpoint(), "read");
    let config = laptop.read_string("preflight.toml").replace(
        "cache = \"read\"\n",
        "cache = \"read\"\nci_cache = \"read-write\"\n",
    );
    laptop.write("preflight.toml", &config);
    laptop.add_all();
    laptop.git(&["commit", "-q", "-m", "ci writes"]);
    laptop.run(&["run", "gen"]).code(0);
    let ci = Repo::clone_of(&laptop);
    let run = ci
        .cmd()
        .args(["run", "--ci", "gen"])
        .env("CI", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(
        stdout.contains("passed gen"),
        "the laptop wrote nothing:\n{stdout}"
    );
    let other = Repo::clone_of(&laptop);
    let hit = other.run(&["run", "gen"]);
    assert_eq!(
        hit.status_of("gen"),
        "cached (remote)",
        "CI wrote it:\n{}",
        hit.stdout
    );
}

#[test]
fn a_commit_hook_uses_the_remote_unless_the_environment_says_off() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = Repo::with_config(&format!(
        r#"
[remote]
endpoint = "grpc://127.0.0.1:{port}"

[steps.check]
run = "cat src/*.txt"
inputs = ["src/**"]

[hooks]
pre-commit = ["check"]
"#
    ));
    repo.write("src/a.txt", "a\n");
    repo.run(&["install"]).code(0);
    repo.add_all();
    let commit = repo.commit("first");
    assert_eq!(commit.code, 0, "{}{}", commit.stdout, commit.stderr);
    let said = format!("{}{}", commit.stdout, commit.stderr);
    assert_eq!(said.matches("warning:").count(), 1, "{said}");

    repo.write("src/b.txt", "b\n");
    repo.add_all();
    let quiet = crate::common::git_command(repo.path())
        .args(["commit", "-q", "-m", "second"])
        .env("PREFLIGHT_REMOTE_CACHE", "off")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&quiet.stdout),
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(quiet.status.success(), "{said}");
    assert!(!said.contains("warning"), "{said}");
}

#[test]
fn a_step_no_worker_takes_runs_here_after_the_queue_timeout() {
    let grid = BuildGrid::with_execution();
    let _workers = Workers::start(&grid.endpoint(), &[("worker-a", "pool=a")]);
    let repo = Repo::with_config(&format!(
        r#"
[remote]
endpoint = "{}"
execute = true
queue_timeout = "2s"

[steps.odd]
run = "echo here > odd.txt"
inputs = ["src/**"]
outputs = ["odd.txt"]
platform = {{ pool = "nobody" }}
"#,
        grid.endpoint()
    ));
    repo.write("src/in.txt", "input\n");
    repo.add_all();
    let started = Instant::now();
    let run = repo.run(&["run"]);
    run.code(0);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(run.status_of("odd"), "passed", "{}", run.stdout);
    assert!(
        run.stdout.contains("step `odd`: it could not run remotely")
            && run.stdout.contains("no worker took it within 2"),
        "{}",
        run.stdout
    );
    assert_eq!(repo.read("odd.txt"), b"here\n");
}
