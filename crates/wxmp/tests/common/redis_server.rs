//! Redis for the tests: every test that needs one gets one, or fails saying why.
//!
//! [`redis_url`] is the Redis most tests share (each under its own key prefix):
//! `WXMP_TEST_REDIS_URL` when set, otherwise a `redis-server` this test process starts once,
//! on a free port, the first time a test asks. [`RedisServer`] starts one of a test's own, for
//! tests that kill, stall or reconfigure it. Nothing is ever skipped: without the
//! `redis-server` program a test fails with a message that says what to install.
//!
//! Every server runs under a small `sh` guard that holds the read end of a pipe from the test
//! process: when the test process ends — normally, on a panic, or killed — the pipe closes
//! and the guard kills its server. That is what reaps the shared server (statics are never
//! dropped) and keeps `cargo test` from leaving `redis-server` processes behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The guard: starts `redis-server` with the given arguments, prints its pid, then waits for
/// standard input to close and kills the server.
const GUARD: &str = r#"redis-server "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid"
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// The Redis URL the tests share: `WXMP_TEST_REDIS_URL`, or a server of this process.
pub fn redis_url() -> String {
    if let Some(url) = std::env::var("WXMP_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return url;
    }
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(RedisServer::start).url()
}

/// A free TCP port on loopback (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Fails the test with a plain message unless `redis-server` can be run.
fn require_redis_server() {
    match Command::new("redis-server").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`redis-server --version` failed ({}): the tests that need Redis cannot run",
            out.status
        ),
        Err(e) => panic!(
            "these tests need Redis, and the `redis-server` program cannot be run ({e}). \
             Install Debian's redis-server package (`apt-get install redis-server`), or set \
             WXMP_TEST_REDIS_URL to a Redis they may use."
        ),
    }
}

/// A `redis-server` of the test's own, killed when dropped (and when the test process ends).
pub struct RedisServer {
    port: u16,
    /// Everything after the program name, so that [`RedisServer::restart`] repeats it.
    args: Vec<String>,
    guard: Option<Guarded>,
}

struct Guarded {
    sh: Child,
    /// Closing it tells the guard to kill the server.
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl RedisServer {
    /// A plain, memory-only server on a free loopback port.
    pub fn start() -> RedisServer {
        let port = free_port();
        Self::start_with(port, Self::plain_args(port))
    }

    /// The arguments of a plain memory-only server on `port`.
    pub fn plain_args(port: u16) -> Vec<String> {
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// `redis-server ARGS`, expected to accept TCP connections on `port`.
    pub fn start_with(port: u16, args: Vec<String>) -> RedisServer {
        require_redis_server();
        let mut server = RedisServer {
            port,
            args,
            guard: None,
        };
        server.spawn();
        server
    }

    /// `redis-server CONFIG_FILE [--sentinel]`, listening on `port`.
    pub fn start_config(port: u16, config: &Path, sentinel: bool) -> RedisServer {
        let mut args = vec![config.display().to_string()];
        if sentinel {
            args.push("--sentinel".to_owned());
        }
        Self::start_with(port, args)
    }

    fn spawn(&mut self) {
        let mut sh = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("sh")
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run sh to start redis-server");
        let mut line = String::new();
        let stdout = sh.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the pid of redis-server");
        let pid = line.trim().parse().expect("the guard prints a pid");
        self.guard = Some(Guarded {
            stdin: sh.stdin.take(),
            sh,
            pid,
        });
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self
                .guard
                .as_mut()
                .and_then(|g| g.sh.try_wait().ok().flatten())
                .is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "redis-server {} did not start listening on port {}",
                self.args.join(" "),
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.guard.as_ref().map(|g| g.pid)
    }

    /// Kills the server (SIGKILL: no shutdown, as a crash) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            drop(guard.stdin.take());
            let _ = guard.sh.wait();
        }
    }

    /// Starts it again with the same arguments on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("the server is running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway certificate authority and a server certificate it signed for `127.0.0.1` and
/// `localhost`, made with the `openssl` program in a temporary folder.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA and the server certificate (EC P-256, valid for a day).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "the TLS tests make their certificates with the `openssl` program, \
                         which cannot be run ({e}): install Debian's openssl package"
                    )
                });
            assert!(
                out.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca = vec!["req", "-x509", "-nodes", "-days", "1"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        ca.extend(["-subj", "/CN=wxmp test CA"]);
        openssl(&ca);
        let mut csr = vec!["req", "-nodes"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        csr.extend(["-subj", "/CN=localhost"]);
        openssl(&csr);
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
             basicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n",
        )
        .expect("writing server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ]);
        TestCa { dir }
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The arguments that make a `redis-server` (or Sentinel) serve TLS on `port` only, with
    /// this CA's server certificate, not asking clients for certificates.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }
}

impl RedisServer {
    /// A memory-only server that speaks only TLS, with `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> RedisServer {
        let port = free_port();
        let mut args = ca.server_args(port);
        args.extend(
            ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        Self::start_with(port, args)
    }

    /// `rediss://127.0.0.1:PORT/0`, for a server started with [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }
}
