//! A real `redis-server` for one test, on a free loopback port, with no persistence; stopped when
//! dropped. It can be killed and started again on the same port, and frozen (SIGSTOP) and thawed, to
//! test what the gateway does when its store goes away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed) redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    /// Arguments given to every start (TLS, a password).
    extra: Vec<String>,
    /// Whether the port speaks TLS (readiness is then a TCP accept, not PING).
    tls: bool,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING. Panics with what to
    /// install when the binary is missing (`.ci/run` installs the Debian package).
    pub fn start() -> RedisServer {
        Self::start_with(&[], false)
    }

    /// Starts redis-server with `extra` arguments. With `tls`, the free port is its `--tls-port`
    /// (the plain port is off) and `extra` must give the certificate options.
    pub fn start_with(extra: &[&str], tls: bool) -> RedisServer {
        let port = crate::free_port();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if tls {
            args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]);
        }
        let mut r = RedisServer {
            port,
            child: None,
            extra: args,
            tls,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]), empty.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        if !self.tls {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (Debian: apt-get install redis-server)")
            });
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        let ready = |r: &RedisServer| match r.tls {
            true => TcpStream::connect(("127.0.0.1", r.port)).is_ok(),
            // A server with a password answers -NOAUTH: up all the same.
            false => r
                .command("PING")
                .is_some_and(|a| a == "+PONG" || a.starts_with("-NOAUTH")),
        };
        while !ready(self) {
            assert!(Instant::now() < end, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Thaws a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} redis-server");
    }

    /// Bytes that clients sent the server and it has not read yet (the receive queues of its
    /// connections, from `/proc/net/tcp`): while it is frozen, a command sent shows here.
    pub fn unread_bytes(&self) -> u64 {
        let tcp = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        tcp.lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                let rx = f.get(4)?.split(':').nth(1)?;
                (port == self.port && f.get(3) == Some(&"01"))
                    .then(|| u64::from_str_radix(rx, 16).ok())
                    .flatten()
            })
            .sum()
    }

    /// Sends one inline command and returns the first line of the answer (`+PONG`, `:3`, `$5`), or
    /// `None` when the server does not answer within a second.
    pub fn command(&self, cmd: &str) -> Option<String> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        Some(text.split("\r\n").next().unwrap_or_default().to_owned())
    }

    /// The number of keys in database 0.
    pub fn dbsize(&self) -> u64 {
        let answer = self.command("DBSIZE").expect("redis answers DBSIZE");
        answer.trim_start_matches(':').parse().expect("an integer")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen server would not die of SIGTERM; SIGKILL works either way.
            let _ = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}
