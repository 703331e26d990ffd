//! A real REAPI server for the remote cache and remote execution tests: BuildGrid 0.4.4 from
//! PyPI (the newest that runs on Debian 12's Python 3.11), and for execution a private
//! PostgreSQL cluster, because BuildGrid's scheduler accepts no other database.
//!
//! Each `BuildGrid` has its own port, temp dir and database, so tests can run side by side.
//! Dropping it (also when the test panics) kills the server and stops the database.

use crate::common::tools;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Pinned, so that every run tests against the same server. SQLAlchemy 2.1 works too with the
/// psycopg2 URL, but later BuildGrid releases cap it below 2.1: stay on the range they test.
const REQUIREMENTS: &[&str] = &[
    "buildgrid==0.4.4",
    "psycopg2-binary==2.9.13",
    "SQLAlchemy>=2.0,<2.1",
];

/// How long a server may take to answer; a first start compiles BuildGrid's .pyc files.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A start that loses its port to another process is retried on a new one this many times.
const PORT_ATTEMPTS: usize = 5;

/// Prefix of the temp dirs, so that those of a killed test run can be found and cleaned.
const DIR_PREFIX: &str = "preflight-buildgrid-";

/// A running BuildGrid server on 127.0.0.1, killed when dropped. Belongs to one test: it is
/// not meant to be shared through a static (statics are never dropped).
pub struct BuildGrid {
    child: Option<Child>,
    port: u16,
    bgd: PathBuf,
    // Declared before `dir`: the database stops before its files are removed.
    postgres: Option<Postgres>,
    /// Serving TLS with a certificate for 127.0.0.1 and localhost, signed by `ca_pem()`.
    tls: bool,
    /// The name of the one instance the server serves (`""` by default).
    instance: String,
    dir: tempfile::TempDir,
}

impl BuildGrid {
    /// The cache over TLS (`grpcs://`), with a certificate from a private CA made for it:
    /// a client must be given that CA to connect.
    pub fn cache_only_tls() -> BuildGrid {
        let mut grid = BuildGrid::new();
        grid.make_certificates();
        grid.tls = true;
        grid.start();
        grid
    }

    /// The cache under a named instance: clients must give `instance_name`, and resource
    /// names (ByteStream) carry it.
    pub fn cache_only_instance(name: &str) -> BuildGrid {
        let mut grid = BuildGrid::new();
        grid.instance = name.to_string();
        grid.start();
        grid
    }

    /// The private CA's certificate (PEM), for `ca_cert`.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    fn make_certificates(&self) {
        let tls = self.dir.path().join("tls");
        std::fs::create_dir_all(&tls).expect("mkdir tls");
        std::fs::write(
            tls.join("san.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write san.cnf");
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=preflight test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.cnf",
                "-out",
                "server.pem",
            ],
        ];
        let openssl = crate::common::tools::apt("openssl", "openssl");
        for args in steps {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(&tls)
                .stdin(Stdio::null())
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}:\n{}",
                output_text(&out)
            );
        }
    }

    /// CAS + ByteStream + ActionCache, no database. Blobs live on disk in the temp dir, so a
    /// test can corrupt one; the action cache accepts updates from clients.
    pub fn cache_only() -> BuildGrid {
        let mut grid = BuildGrid::new();
        grid.start();
        grid
    }

    /// The cache, plus Execution, Operations and Bots over a private PostgreSQL cluster. Jobs
    /// of a worker that stops answering go back to the queue after 10–11 s, and jobs are handed
    /// out every ~0.1 s instead of every 1–2 s, to keep the tests short.
    pub fn with_execution() -> BuildGrid {
        let mut grid = BuildGrid::new();
        let postgres = grid
            .postgres
            .insert(Postgres::new(grid.dir.path().join("pg")));
        postgres.start();
        let url = postgres.url();
        let migrate = Command::new(&grid.bgd)
            .args(["migrate", "apply", &url])
            .stdin(Stdio::null())
            .output()
            .expect("bgd migrate runs");
        assert!(
            migrate.status.success(),
            "bgd migrate apply {url} failed:\n{}",
            output_text(&migrate)
        );
        grid.start();
        grid
    }

    /// The address clients are given, e.g. `grpc://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server at once (SIGKILL), as if it crashed: for tests of a server dying
    /// mid-run. The database, if any, stays up until the drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the server printed so far (stdout and stderr, in order), for failure messages.
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default();
        if let Some(postgres) = &self.postgres {
            log.push_str("\n--- postgres\n");
            log.push_str(&postgres.log());
        }
        log
    }

    /// Where the server keeps the blob with this SHA-256 (hex): BuildGrid's disk storage
    /// splits the hash after two characters under `<path>/cas/objects`. Blobs are not checked
    /// when they are read, so a test can overwrite this file to serve corrupt content.
    pub fn cas_blob_path(&self, hash: &str) -> PathBuf {
        self.storage()
            .join("cas/objects")
            .join(&hash[..2])
            .join(&hash[2..])
    }

    /// The server's capabilities as `bgd capabilities` prints them (JSON).
    pub fn capabilities(&self) -> String {
        let out = self.capabilities_call();
        assert!(
            out.status.success(),
            "bgd capabilities failed:\n{}\n--- server log\n{}",
            output_text(&out),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn new() -> BuildGrid {
        reap_leftovers();
        let bgd = install();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("owner"), std::process::id().to_string())
            .expect("write owner");
        BuildGrid {
            child: None,
            port: 0,
            bgd,
            postgres: None,
            tls: false,
            instance: String::new(),
            dir,
        }
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Starts the server on a free port and waits until it answers. Another process can take
    /// the port between our probe and the server's bind: then it starts again on a new one.
    fn start(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            let config = self.dir.path().join("bgd.yml");
            std::fs::write(&config, self.config()).expect("write bgd.yml");
            let log = File::create(self.dir.path().join("bgd.log")).expect("create bgd.log");
            let child = Command::new(&self.bgd)
                .args(["server", "start", "-vv"])
                .arg(&config)
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .expect("bgd server starts");
            std::fs::write(self.dir.path().join("bgd.pid"), child.id().to_string())
                .expect("write bgd.pid");
            self.child = Some(child);
            match self.wait_until_ready() {
                Ok(()) => return,
                Err(()) if attempt < PORT_ATTEMPTS && self.log().contains("Failed to bind") => {
                    self.kill();
                }
                Err(()) => panic!(
                    "BuildGrid did not start on port {}:\n{}",
                    self.port,
                    self.log()
                ),
            }
        }
    }

    /// Ok once a capabilities call succeeds; Err if the server exits first. Panics after
    /// START_TIMEOUT.
    fn wait_until_ready(&mut self) -> Result<(), ()> {
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            let child = self.child.as_mut().expect("server started");
            if child.try_wait().expect("poll bgd").is_some() {
                return Err(());
            }
            // A TCP probe is cheap; the capabilities call (a Python start) only once it connects.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.capabilities_call().status.success()
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "BuildGrid did not answer on port {} within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn capabilities_call(&self) -> Output {
        let mut call = Command::new(&self.bgd);
        call.args(["capabilities", "--remote"]);
        if self.tls {
            call.arg(format!("https://127.0.0.1:{}", self.port))
                .arg("--server-cert")
                .arg(self.ca_pem());
        } else {
            call.arg(format!("http://127.0.0.1:{}", self.port));
        }
        call.arg("--instance-name").arg(&self.instance);
        call.stdin(Stdio::null())
            .output()
            .expect("bgd capabilities runs")
    }

    fn config(&self) -> String {
        let storage = self.storage();
        // SO_REUSEPORT is on by default in gRPC: two servers could then share one port
        // silently. Off, a lost port race fails the bind, and the start is retried.
        // The default thread pool (5 per core) also caps concurrent calls, and every waiting
        // Execute stream and worker long-poll holds one: allow many.
        let mut config = format!(
            r#"thread-pool-size: 64
grpc-server-options:
  grpc.so_reuseport: 0
server:
  - !channel
    address: "127.0.0.1:{port}"
{security}
authorization:
  method: none
"#,
            port = self.port,
            security = if self.tls {
                let tls = self.dir.path().join("tls");
                format!(
                    "    insecure-mode: false\n    credentials:\n      tls-server-key: {}\n      tls-server-cert: {}",
                    tls.join("server.key").display(),
                    tls.join("server.pem").display()
                )
            } else {
                "    insecure-mode: true".to_string()
            }
        );
        if let Some(postgres) = &self.postgres {
            config.push_str(&format!(
                r#"connections:
  - !sql-connection &sql
    connection-string: {url}
    pool-size: 5
    max-overflow: 10
"#,
                url = postgres.url()
            ));
        }
        config.push_str(&format!(
            r#"storages:
  - !disk-storage &cas
    path: {storage}
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: true
"#,
            storage = storage.display()
        ));
        if self.postgres.is_some() {
            // The keepalive must stay above 3.75 s: BuildGrid long-polls a worker for 80% of
            // it and hands out no work at all when that is under 3 s. Its reaper checks every
            // `session-expiry-timer-interval`.
            config.push_str(
                r#"schedulers:
  - !sql-scheduler &sched
    sql: *sql
    storage: *cas
    action-cache: *ac
    bot-session-keepalive-timeout: 10
    session-expiry-timer-interval: 1
    assigners:
      - !priority-age-assigner
        interval: 0.1
        jitter-factor: 0.1
    property-set: !dynamic-property-set
      match-property-keys: [OSFamily, ISA, pool, preflight-tools]
      wildcard-property-keys: []
"#,
            );
        }
        config.push_str(&format!(
            r#"instances:
  - name: "{}"
    services:
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      - !action-cache
        cache: *ac
"#,
            self.instance
        ));
        if self.postgres.is_some() {
            config.push_str("      - !execution\n        scheduler: *sched\n");
        }
        config
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        self.kill();
        // The fields drop next: the database stops, then the temp dir goes.
    }
}

/// A throwaway PostgreSQL cluster under `root`, reachable on 127.0.0.1 with trust auth.
/// Stopped when dropped, also after a failed start.
struct Postgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    // initdb and pg_ctl refuse to run as root: then they run as the `postgres` user.
    as_postgres: bool,
}

impl Postgres {
    fn new(root: PathBuf) -> Postgres {
        Postgres {
            bin: postgres_bin(),
            root,
            port: 0,
            // SAFETY: geteuid has no preconditions.
            as_postgres: unsafe { libc::geteuid() } == 0,
        }
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn url(&self) -> String {
        // psycopg2, named: with a plain postgresql:// SQLAlchemy 2.1 picks psycopg 3, and
        // BuildGrid's LISTEN/NOTIFY threads only work with psycopg2.
        format!("postgresql+psycopg2://bgd@127.0.0.1:{}/bgd", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// A postgres program, run as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"])
                .arg(self.bin.join(program));
            cmd
        } else {
            Command::new(self.bin.join(program))
        };
        // Our working dir may be closed to the postgres user.
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    fn run(&self, cmd: &mut Command, what: &str) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}\n--- postgres log\n{}",
            output_text(&out),
            self.log()
        );
        out
    }

    fn start(&mut self) {
        let socket_dir = self.root.join("sock");
        std::fs::create_dir_all(&socket_dir).expect("mkdir pg/sock");
        if self.as_postgres {
            // The temp dir above is root's and private: let postgres through to its own dirs.
            let parent = self.root.parent().expect("pg dir has a parent");
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            let (uid, gid) = (id("-u"), id("-g"));
            for dir in [&self.root, &socket_dir] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let data = self.data();
        self.run(
            self.command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "bgd", "--auth=trust", "-E", "UTF8", "--locale=C"])
                // Throwaway data: no fsync.
                .arg("--no-sync"),
            "initdb",
        );
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB",
                self.port,
                socket_dir.display()
            );
            let out = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(self.root.join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .expect("pg_ctl runs");
            if out.status.success() {
                break;
            }
            let lost_port = self.log().contains("could not bind");
            assert!(
                lost_port && attempt < PORT_ATTEMPTS,
                "pg_ctl start failed:\n{}\n--- postgres log\n{}",
                output_text(&out),
                self.log()
            );
        }
        self.run(
            Command::new(self.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "bgd",
                    "bgd",
                ])
                .stdin(Stdio::null()),
            "createdb",
        );
    }

    /// Stops the cluster without a checkpoint (its data is thrown away).
    fn stop(&self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on now. The OS may hand it to someone else before we bind it:
/// callers retry on a failed bind.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// The bin folder of the newest installed PostgreSQL; installs Debian's when there is none.
fn postgres_bin() -> PathBuf {
    let newest = || {
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
    };
    if let Some(bin) = newest() {
        return bin;
    }
    // Debian keeps initdb off PATH; pg_ctlcluster comes with the server packages.
    tools::apt("postgresql", "pg_ctlcluster");
    newest().expect("apt-get installed postgresql, yet no /usr/lib/postgresql/*/bin/initdb")
}

/// The uid or gid (`flag` `-u`/`-g`) of the postgres user.
fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("id runs");
    assert!(
        out.status.success(),
        "no postgres user: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// BuildGrid in its own venv under target/tools (its pins would clash with the other
/// Python tools), installed once per set of pins; returns the `bgd` program.
fn install() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = tools::dir().join("buildgrid-venv");
    let bgd = venv.join("bin/bgd");
    let marker = venv.join("preflight-installed.txt");
    let wanted = REQUIREMENTS.join("\n");
    let installed = || std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted);
    if installed() && bgd.is_file() {
        return bgd;
    }
    // Another test process (a second `cargo test`) may be installing into the same venv.
    std::fs::create_dir_all(tools::dir()).expect("mkdir target/tools");
    let _lock = FileLock::new(&tools::dir().join("buildgrid-venv.lock"));
    if installed() && bgd.is_file() {
        return bgd;
    }
    let install = |cmd: &mut Command, what: &str| {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}",
            output_text(&out)
        );
    };
    if !venv.join("bin/pip").is_file() {
        install(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating the BuildGrid venv",
        );
    }
    install(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check"])
            .args(REQUIREMENTS),
        "pip install of BuildGrid",
    );
    assert!(
        bgd.is_file(),
        "pip installed BuildGrid, yet there is no {}",
        bgd.display()
    );
    std::fs::write(&marker, wanted).expect("write the install marker");
    bgd
}

/// An exclusive lock on a file, across processes, held until dropped.
struct FileLock {
    _file: File,
}

impl FileLock {
    fn new(path: &Path) -> FileLock {
        let file = File::create(path).expect("create lock file");
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; it is released when the file is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        FileLock { _file: file }
    }
}

/// Cleans up after test runs that were killed before their drops ran (Ctrl-C, a timeout):
/// their servers and databases would otherwise run on. Only dirs whose owner process is gone.
fn reap_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let named = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX);
            let owner = std::fs::read_to_string(dir.join("owner")).unwrap_or_default();
            if !named || owner.is_empty() || Path::new("/proc").join(owner.trim()).exists() {
                continue;
            }
            let pid = std::fs::read_to_string(dir.join("bgd.pid")).unwrap_or_default();
            let cmdline = std::fs::read(Path::new("/proc").join(pid.trim()).join("cmdline"))
                .unwrap_or_default();
            // The pid may have been reused: only kill a bgd started with this dir's config.
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                // SAFETY: signalling a process this harness started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if dir.join("pg").is_dir() {
                drop(Postgres {
                    bin: postgres_bin(),
                    root: dir.join("pg"),
                    port: 0,
                    // SAFETY: geteuid has no preconditions.
                    as_postgres: unsafe { libc::geteuid() } == 0,
                });
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn capabilities_json(grid: &BuildGrid) -> serde_json::Value {
    serde_json::from_str(&grid.capabilities()).expect("capabilities are JSON")
}

#[test]
fn buildgrid_cache_server_answers() {
    let started = Instant::now();
    let mut grid = BuildGrid::cache_only();
    eprintln!(
        "cache-only BuildGrid answered after {:?}",
        started.elapsed()
    );
    assert!(grid.endpoint().ends_with(&format!(":{}", grid.port())));

    let caps = capabilities_json(&grid);
    assert_eq!(
        caps.pointer("/cacheCapabilities/actionCacheUpdateCapabilities/updateEnabled"),
        Some(&serde_json::Value::Bool(true)),
        "{caps}"
    );
    assert_ne!(
        caps.pointer("/executionCapabilities/execEnabled"),
        Some(&serde_json::Value::Bool(true)),
        "{caps}"
    );

    // A blob sent through the real client lands where cas_blob_path says.
    let content = b"harness blob\n";
    let file = grid.dir.path().join("upload.txt");
    std::fs::write(&file, content).unwrap();
    let upload = Command::new(&grid.bgd)
        .args(["cas", "--remote"])
        .arg(format!("http://127.0.0.1:{}", grid.port()))
        .arg("upload-file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(upload.status.success(), "{}", output_text(&upload));
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(std::fs::read(grid.cas_blob_path(&hash)).unwrap(), content);

    grid.kill();
    assert!(
        TcpStream::connect(("127.0.0.1", grid.port())).is_err(),
        "the port still answers after kill:\n{}",
        grid.log()
    );
}

#[test]
fn buildgrid_execution_server_answers() {
    let started = Instant::now();
    let grid = BuildGrid::with_execution();
    eprintln!(
        "BuildGrid with execution answered after {:?}",
        started.elapsed()
    );
    let caps = capabilities_json(&grid);
    assert_eq!(
        caps.pointer("/executionCapabilities/execEnabled"),
        Some(&serde_json::Value::Bool(true)),
        "{caps}\n{}",
        grid.log()
    );
}
