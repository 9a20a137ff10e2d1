//! A TCP proxy on a loopback port in front of a real server, for fault
//! tests: it forwards both ways at a bandwidth cap, so a transfer lasts long
//! enough to break the server in the middle of it, and a server that is
//! down behind it looks like one that is down (connections are closed).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The proxy; stops accepting when dropped.
pub struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Bytes per second, each way and per connection (0: no cap).
    rate: Arc<AtomicU64>,
    /// The most bytes one connection has sent upstream so far.
    largest_upload: Arc<AtomicU64>,
    /// Answers the client closed its connection on before they were
    /// whole (a client's request time-out).
    client_aborts: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards `127.0.0.1:PORT` to `127.0.0.1:upstream` at `rate` bytes
    /// per second each way per connection.
    pub fn start(upstream: u16, rate: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let rate = Arc::new(AtomicU64::new(rate));
        let largest_upload = Arc::new(AtomicU64::new(0));
        let client_aborts = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), rate.clone());
        let (l, a) = (largest_upload.clone(), client_aborts.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (r, l, a) = (r.clone(), l.clone(), a.clone());
                        std::thread::spawn(move || forward(client, upstream, r, l, a));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            stop,
            rate,
            largest_upload,
            client_aborts,
        }
    }

    /// How many answers the client stopped reading before they were whole
    /// (it closed the connection while the server was still sending).
    pub fn client_aborts(&self) -> u64 {
        self.client_aborts.load(Ordering::Relaxed)
    }

    /// The most bytes one connection has sent upstream since the last
    /// [`Proxy::reset_uploads`]: a large value means a big request body
    /// is (or was) on its way.
    pub fn largest_upload(&self) -> u64 {
        self.largest_upload.load(Ordering::Relaxed)
    }

    /// Forgets the uploads so far.
    pub fn reset_uploads(&self) {
        self.largest_upload.store(0, Ordering::Relaxed);
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the cap (0: none) for data forwarded from now on.
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward(
    client: TcpStream,
    upstream: u16,
    rate: Arc<AtomicU64>,
    uploads: Arc<AtomicU64>,
    aborts: Arc<AtomicU64>,
) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let r2 = rate.clone();
    let up = std::thread::spawn(move || pump(client, server, rate, Count::Uploads(uploads)));
    pump(s2, c2, r2, Count::Aborts(aborts));
    let _ = up.join();
}

/// What one direction of a connection counts.
enum Count {
    /// Client to server: the most bytes sent.
    Uploads(Arc<AtomicU64>),
    /// Server to client: answers the client closed on.
    Aborts(Arc<AtomicU64>),
}

/// Copies `from` to `to` at the cap, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream, rate: Arc<AtomicU64>, count: Count) {
    let mut buf = [0u8; 16 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            if let Count::Aborts(a) = &count {
                a.fetch_add(1, Ordering::Relaxed);
            }
            break;
        }
        sent += n as u64;
        if let Count::Uploads(u) = &count {
            u.fetch_max(sent, Ordering::Relaxed);
        }
        let cap = rate.load(Ordering::Relaxed);
        if cap > 0 {
            let due = Duration::from_secs_f64(sent as f64 / cap as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
