//! Shared by the integration tests: start the real `switchyard` binary on port 0 and a temp data
//! dir, read its address from the stdout line, and speak raw HTTP/1.1 over `std::net::TcpStream`.
//! Every wait is bounded; a `Server` is SIGKILLed when dropped, so no test leaves a process.
//!
//! Every response the request helpers receive is checked against the OpenAPI document
//! ([`contract`]): a status, content type or body the document does not state fails the test.
//! Only [`raw`] skips that (its bytes need not be HTTP). The helpers every test file needs are
//! here once: [`start`] (cheap argon2, the admin token [`ADMIN`]), [`sign_up`], [`login`],
//! [`register`].

#![allow(dead_code)] // each test file uses a different subset

pub mod contract;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the binary may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the engine may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket read/write timeout for test requests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A running (or exited) server process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// The binary exited before printing its listening line.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

impl Server {
    /// Starts the binary; panics (with its stderr) if it does not come up.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
        match Server::try_start(data_dir, extra_args) {
            Ok(server) => server,
            Err(exited) => panic!("server exited at start-up: {exited:?}"),
        }
    }

    /// Starts the binary and waits for its listening line; `Err` if it exits first.
    pub fn try_start(data_dir: &Path, extra_args: &[&str]) -> Result<Server, Exited> {
        Server::try_start_with_env(data_dir, extra_args, &[])
    }

    /// [`Server::start`] with extra environment variables (`FAILPOINTS`, `SWITCHYARD_JWT_SECRET`,
    /// say; they may override `RUST_LOG`).
    pub fn start_with_env(data_dir: &Path, extra_args: &[&str], envs: &[(&str, &str)]) -> Server {
        match Server::try_start_with_env(data_dir, extra_args, envs) {
            Ok(server) => server,
            Err(exited) => panic!("server exited at start-up: {exited:?}"),
        }
    }

    /// [`Server::try_start`] with extra environment variables.
    pub fn try_start_with_env(
        data_dir: &Path,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Server, Exited> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the switchyard binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut text = stderr.lock().expect("stderr lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            })
        };
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = sender.send(first);
            }
            for _ in lines {} // drain until the process exits
        });
        let line = receiver.recv_timeout(START_TIMEOUT);
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: data_dir.to_path_buf(),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let line = match line {
            Ok(line) => line,
            Err(_) => {
                let status = server.wait_exit(START_TIMEOUT).unwrap_or_else(|| {
                    panic!("no listening line and no exit: {}", server.stderr())
                });
                return Err(Exited {
                    status,
                    stderr: server.stderr(),
                });
            }
        };
        let addr = line
            .strip_prefix("switchyard listening on http://")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
        server.addr = addr.parse().expect("listening address");
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` until 200; panics after [`READY_TIMEOUT`].
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = try_request(self.addr, "GET", "/readyz", None) {
                if response.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready after {READY_TIMEOUT:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/readyz` until 200, or until the process exits (`Err`, with its stderr: an engine
    /// that refuses to open exits after printing its listening line); panics after
    /// [`READY_TIMEOUT`].
    pub fn wait_ready_or_exit(&mut self) -> Result<(), Exited> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = try_request(self.addr, "GET", "/readyz", None) {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.wait_exit(Duration::ZERO) {
                return Err(Exited {
                    status,
                    stderr: self.stderr(),
                });
            }
            assert!(
                Instant::now() < deadline,
                "server not ready after {READY_TIMEOUT:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join(); // EOF follows the exit
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        signal(self.pid(), libc::SIGTERM);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` to `pid` (a child this test started).
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}) failed");
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The API.md error code of an error body, if the body is one.
    pub fn json_code(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_string)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`); panics on IO errors.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    try_request(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut connection = Connection::open(addr)?;
    connection.send(method, path, body, false)
}

/// The admin token of [`start`]'s servers.
pub const ADMIN: &str = "admin-secret";
/// The password of [`sign_up`]'s users.
pub const PASSWORD: &str = "correct horse";

/// Starts the binary with cheap argon2 ([`FAST_HASH`]), the admin token [`ADMIN`] and `extra`
/// arguments, and waits until it is ready.
pub fn start(dir: &Path, extra: &[&str]) -> Server {
    start_with_env(dir, extra, &[])
}

/// [`start`] with extra environment variables.
pub fn start_with_env(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut args: Vec<&str> = FAST_HASH.to_vec();
    args.extend_from_slice(&["--admin-token", ADMIN]);
    args.extend_from_slice(extra);
    let server = Server::start_with_env(dir, &args, envs);
    server.wait_ready();
    server
}

/// Signs up `email` with [`PASSWORD`] (201 expected) and returns the user's id.
pub fn sign_up(addr: SocketAddr, email: &str) -> u64 {
    let body = serde_json::json!({"email": email, "password": PASSWORD}).to_string();
    let response = call(addr, "POST", "/api/v1/users", None, Some(&body));
    check(&response, 201, None);
    response.json()["id"].as_u64().expect("a user id")
}

/// Logs `email` in with [`PASSWORD`] (200 expected) and returns its token.
pub fn login(addr: SocketAddr, email: &str) -> String {
    let body = serde_json::json!({"email": email, "password": PASSWORD}).to_string();
    let response = call(addr, "POST", "/api/v1/auth/login", None, Some(&body));
    check(&response, 200, None);
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"]
        .as_u64()
        .is_some_and(|seconds| seconds > 0));
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// One row of an error-code table: who sends it (a bearer token, or none), method, path, body,
/// then the status expected and its API.md code (`""` for a success).
pub type Row<'a> = (
    Option<&'a str>,
    &'a str,
    &'a str,
    Option<&'a str>,
    u16,
    &'a str,
);

/// Sends each row in order and checks its status and code; a failure names the row.
pub fn check_table(addr: SocketAddr, rows: &[Row]) {
    for (index, (who, method, path, body, status, code)) in rows.iter().enumerate() {
        let response = call(addr, method, path, *who, *body);
        let code = (!code.is_empty()).then_some(*code);
        let seen = (response.status, response.json_code());
        assert!(
            seen.0 == *status && (code.is_none() || seen.1.as_deref() == code),
            "row {index}: {method} {path} {body:?} as {who:?}: expected {status} {code:?}, \
             got {} {}",
            response.status,
            response.text()
        );
    }
}

/// Registers a work client (any status: the caller checks it).
pub fn register(addr: SocketAddr, screen_name: &str, external_id: &str) -> Response {
    let body =
        serde_json::json!({"screen_name": screen_name, "external_id": external_id}).to_string();
    call(addr, "POST", "/api/v1/work/clients", None, Some(&body))
}

/// Server arguments that make argon2 cheap, so sign-ups do not dominate test time.
pub const FAST_HASH: [&str; 4] = [
    "--set",
    "auth.password_hash_memory_kib=64",
    "--set",
    "auth.password_hash_iterations=1",
];

/// Asserts the status and, for errors, the API.md error code.
pub fn check(response: &Response, status: u16, code: Option<&str>) {
    assert_eq!(response.status, status, "body: {}", response.text());
    if let Some(code) = code {
        assert_eq!(
            response.json()["error"]["code"],
            code,
            "body: {}",
            response.text()
        );
    }
}

/// One request with an optional bearer token on a fresh connection (`Connection: close`).
pub fn try_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<Response> {
    let body = body.unwrap_or("");
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = raw(addr, request.as_bytes())?;
    contract::check(method, path, &response);
    Ok(response)
}

/// [`try_call`] that panics on an IO error.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    try_call(addr, method, path, token, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One request with the given extra header lines (`("Authorization", "Bearer x")`, repeatable)
/// and body on a fresh connection; panics on an IO error.
pub fn call_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let response = raw(addr, request.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    contract::check(method, path, &response);
    response
}

/// A `HEAD` request on a fresh connection (`Connection: close`): the response head, and as its
/// body every byte the server sent after it until it closed (there must be none).
pub fn head(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = format!("HEAD {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut connection = Connection::open(addr).expect("connect");
    connection
        .stream
        .write_all(request.as_bytes())
        .expect("send HEAD");
    let mut bytes = Vec::new();
    connection
        .stream
        .read_to_end(&mut bytes)
        .expect("read until the server closes");
    let head_end = find(&bytes, b"\r\n\r\n").expect("a response head");
    let text = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let response = Response {
        status,
        headers,
        body: bytes[head_end + 4..].to_vec(),
    };
    contract::check("HEAD", path, &response);
    response
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    let mut connection = Connection::open(addr)?;
    connection.stream.write_all(bytes)?;
    connection.read_response()
}

/// [`call`] from another loopback source address (`127.0.0.2`, ...), so per-address limits can
/// be told from per-e-mail ones: the socket is bound to `source` before it connects.
pub fn call_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Response {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(target) = addr else {
        panic!("IPv4 only")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the addresses are valid
    // sockaddr_in values that outlive the calls; the descriptor goes to a TcpStream once set up.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let local = sockaddr(source, 0);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), length);
        assert_eq!(
            bound,
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let remote = sockaddr(*target.ip(), target.port());
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), length);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut connection = Connection {
        stream,
        buffer: Vec::new(),
    };
    connection
        .send(method, path, body, false)
        .unwrap_or_else(|e| panic!("{method} {path} from {source}: {e}"))
}

/// A client connection that may carry several requests (keep-alive).
pub struct Connection {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::new(),
        })
    }

    /// Sends one request and reads its response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        keep_alive: bool,
    ) -> std::io::Result<Response> {
        let body = body.unwrap_or("");
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes())?;
        let response = self.read_response()?;
        contract::check(method, path, &response);
        Ok(response)
    }

    /// Reads one response: head, then `Content-Length` bytes (or to EOF without one).
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head ({} bytes)",
                        self.buffer.len()
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
            .collect();
        self.buffer.drain(..head_end + 4);
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse::<usize>().ok());
        let body = match length {
            Some(length) => {
                while self.buffer.len() < length {
                    if self.fill()? == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "connection closed inside a body",
                        ));
                    }
                }
                self.buffer.drain(..length).collect()
            }
            None => {
                while self.fill()? > 0 {}
                std::mem::take(&mut self.buffer)
            }
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// True when the server has closed the connection (EOF) within `IO_TIMEOUT`.
    pub fn is_closed_by_server(&mut self) -> bool {
        matches!(self.fill(), Ok(0) | Err(_))
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk)?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Every file under `dir` with its size, one per line (for failure messages about a data dir).
pub fn describe_dir(dir: &Path) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            out.push(format!("{} (unreadable)", dir.display()));
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => {
                    out.push(format!("{relative}/"));
                    walk(&path, root, out);
                }
                Ok(metadata) => out.push(format!("{relative} {} bytes", metadata.len())),
                Err(error) => out.push(format!("{relative} ({error})")),
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.join("\n")
}

/// Copies the tree at `from` to `to` (created), regular files and directories only.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
