//! A TCP relay on loopback between pgmon and its store, which a test can freeze (connections stay
//! open, nothing is forwarded: a black hole, as a dead route or a dropping firewall looks to the
//! client) or cut (every connection closed, new ones closed at once: the store is gone).

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Frozen,
    Cut,
}

pub struct Relay {
    pub port: u16,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let (mode, _) = watch::channel(Mode::Open);
        let rx = mode.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Cut {
                    continue; // dropped: closed at once
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (ur, uw) = upstream.into_split();
                    let a = tokio::spawn(pipe(cr, uw, rx.clone()));
                    let b = tokio::spawn(pipe(ur, cw, rx));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Self { port, mode, task }
    }

    /// `url` with its host and port replaced by the relay's.
    pub fn url_for(&self, url: &str, target: &str) -> String {
        url.replace(target, &format!("127.0.0.1:{}", self.port))
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.task.abort();
    }
}

/// Waits while frozen; false once cut.
async fn open(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Open => return true,
            Mode::Cut => return false,
            Mode::Frozen => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !open(&mut mode).await {
            return;
        }
        tokio::select! {
            r = from.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // Read while open but the relay froze meanwhile: hold the bytes.
                if !open(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
