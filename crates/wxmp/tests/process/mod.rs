//! Harness of the tests that run the real binary: `wxmp serve` as a child process with a
//! config file of the test's own, its stderr collected line by line, signals sent with
//! `kill`, and an optional lowered open-files limit (`prlimit`).
//!
//! It lives in a folder so cargo does not take it for a test of its own; the tests that need
//! it say `mod process;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a child may take to start serving on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A `wxmp serve` child process, killed on drop.
pub struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub addr: SocketAddr,
}

/// How to start one.
pub struct Options {
    /// `prlimit --nofile=N:N` before exec, when set.
    pub nofile: Option<u64>,
    /// `RUST_LOG` of the child.
    pub log: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nofile: None,
            log: "info".to_owned(),
        }
    }
}

impl Serve {
    /// Starts `wxmp serve --config <file with config>` on a free loopback port.
    pub fn start(config: &str) -> Serve {
        Self::start_with(config, Options::default())
    }

    /// Like [`Serve::start`], with options.
    pub fn start_with(config: &str, options: Options) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxmp.toml");
        std::fs::write(&path, config).unwrap();
        let bin = env!("CARGO_BIN_EXE_wxmp");
        let mut command = match options.nofile {
            Some(n) => {
                let mut c = Command::new("/usr/bin/prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", &options.log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        let (list, ready) = &*sink;
                        list.lock().unwrap().push(text);
                        ready.notify_all();
                    }
                }
            }
        });
        let mut serve = Serve {
            child,
            dir,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let serving = serve
            .wait_line(START_LIMIT, |l| l.contains("wxmp serving"))
            .unwrap_or_else(|| panic!("wxmp serve did not start:\n{}", serve.log()));
        let addr = serving
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no listen= in {serving:?}"));
        serve.addr = addr.parse().unwrap();
        serve
    }

    /// The config file; rewrite it and send `HUP` to reload.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("wxmp.toml")
    }

    /// The process's folder (its working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a signal (`HUP`, `TERM`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// The whole log so far, for assertion messages (long lines cut).
    pub fn log(&self) -> String {
        self.lines()
            .iter()
            .map(|l| {
                if l.len() > 400 {
                    let mut cut = 400;
                    while !l.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    format!("{}… ({} bytes)", &l[..cut], l.len())
                } else {
                    l.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for a stderr line matching `matches` (any line so far counts).
    pub fn wait_line(&self, within: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_line_after(0, within, matches)
    }

    /// Waits for a matching line among those after the first `skip`.
    pub fn wait_line_after(
        &self,
        skip: usize,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        let (list, ready) = &*self.lines;
        let mut guard = list.lock().unwrap();
        loop {
            if let Some(line) = guard.iter().skip(skip).find(|l| matches(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = ready.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// `GET path` on a new connection; the status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        http_exchange(
            &mut stream,
            &format!("GET {path} HTTP/1.1\r\nHost: wxmp\r\nConnection: close\r\n\r\n"),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `request` and reads one response (headers and a `Content-Length` body): the status
/// and the body. Leaves the connection open for the next request when the server keeps it.
pub fn http_exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream)
}

/// Reads one response from `stream`.
pub fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "connection closed mid-response: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until the server closes `stream` (EOF or reset), reading and discarding anything it
/// sends first; how long that took, or `None` when it is still open after `within`.
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if started.elapsed() >= within {
                    return None;
                }
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

/// A config file of one plain-mode app `demo` (Token `pamtest`, no secret), a memory store,
/// and `extra` appended (a `[server]` section, more apps).
pub fn plain_config(extra: &str) -> String {
    format!(
        "upstream = \"http://127.0.0.1:9\"\n\
         [store]\nbackend = \"memory\"\n\
         [apps.demo]\nappid = \"wx0123456789abcdef\"\ntoken = \"pamtest\"\nmode = \"plain\"\n\
         [apps.demo.auto_reply.keywords]\nping = \"pong\"\n\
         {extra}"
    )
}

/// The query of a plain push signed with Token `pamtest`.
pub fn signed_query(token: &str) -> String {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let nonce = format!("{}", rand::random::<u32>());
    let token = wxmp_proto::signature::Token::new(token).unwrap();
    let signature = wxmp_proto::signature::signature(&token, &timestamp, &nonce);
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
}

/// A plain-mode POST of `xml` to `/wx/{app}` as raw HTTP/1.1.
pub fn push_request(app: &str, token: &str, xml: &str, keep_alive: bool) -> String {
    format!(
        "POST /wx/{app}?{} HTTP/1.1\r\nHost: wxmp\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\nConnection: {}\r\n\r\n{xml}",
        signed_query(token),
        xml.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
}

/// A text message from `from`.
pub fn text_xml(from: &str, content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    )
}

/// A subscribe event from `from`.
pub fn subscribe_xml(from: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[subscribe]]></Event></xml>",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    )
}

/// `wxmp serve --dev` on a free port in a folder of the test's, as the README runs it: started,
/// and read up to the end of its banner (which names its in-process emulator). Killed on drop.
pub struct DevServer {
    pub child: Child,
    pub port: u16,
    pub banner: Vec<String>,
}

impl DevServer {
    /// Starts it in `dir` with `stderr` where the test wants it and `env` set. Its stdout is
    /// read on a thread of its own for as long as it runs, so it can never block on a full
    /// pipe. A `stderr.log` in `dir`, if the test sent stderr there, is shown when the banner
    /// does not come.
    pub fn start(dir: &Path, stderr: Stdio, env: &[(&str, &str)]) -> DevServer {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxmp"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("wxmp serve --dev starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = DevServer {
            child,
            port,
            banner: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // After the banner nobody listens; keep draining.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let done = line.contains("Ctrl-C to stop");
            server.banner.push(line);
            if done {
                return server;
            }
        }
        panic!(
            "serve --dev printed no complete banner: {:#?}\n{}",
            server.banner,
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
        );
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The in-process emulator's URL, as the banner names it.
    pub fn emulator_url(&self) -> String {
        self.banner
            .iter()
            .find_map(|l| {
                l.split_once("emulated WeChat at ")
                    .and_then(|(_, rest)| rest.split(';').next())
            })
            .unwrap_or_else(|| panic!("no emulator URL in the banner: {:#?}", self.banner))
            .to_owned()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
