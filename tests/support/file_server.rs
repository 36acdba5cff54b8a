//! A directory served over HTTP on a free loopback port by Python's
//! `http.server`, as a stand-in for a release download site. Stopped when
//! dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long the server may take to accept its first connection.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `python3 -m http.server`.
pub struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    /// Serves `dir` (read at each request, so files may change meanwhile).
    pub fn start(dir: &Path) -> FileServer {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = super::tool("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let mut server = FileServer { child, port };
        let start = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("python3 -m http.server exited: {status}");
            }
            assert!(
                start.elapsed() < STARTUP_TIMEOUT,
                "http.server did not start"
            );
            sleep(Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
