//! A real `nats-server` with JetStream for the NATS endpoint tests, and an independent reader
//! of what reached its streams (the official `async-nats` client, never the code under test).
//!
//! Every [`NatsServer`] listens on a free loopback port with its own store directory, and is
//! killed when dropped. [`NatsServer::stop`] and [`NatsServer::start_again`] make an outage
//! with the same port and store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::stream::RawMessageErrorKind;

use crate::{free_port, wait_until};

/// The server binary (Debian's `nats-server` package), or `NATS_SERVER`.
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return p.into();
    }
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "nats-server".into()
}

/// One `nats-server -js` process on 127.0.0.1.
pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct Msg {
    pub sequence: u64,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Msg {
    /// The value of header `name` (exact case, as NATS keeps it).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl NatsServer {
    /// A server with JetStream and nothing else configured.
    pub fn start() -> NatsServer {
        Self::with_config("")
    }

    /// A server with `extra` appended to its config file (accounts, users, permissions).
    pub fn with_config(extra: &str) -> NatsServer {
        Self::on_port(free_port(), extra)
    }

    /// `n` servers clustered on loopback (cluster `pilot-test`, servers `n1`, `n2`, ...), each
    /// with its own store; returns once every one accepts clients.
    pub fn cluster(n: usize) -> Vec<NatsServer> {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let all: Vec<String> = routes
            .iter()
            .map(|p| format!("\"nats://127.0.0.1:{p}\""))
            .collect();
        routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let extra = format!(
                    "server_name: n{}\ncluster {{ name: pilot-test, listen: 127.0.0.1:{route}, \
                     routes: [{}] }}\n",
                    i + 1,
                    all.join(", ")
                );
                Self::on_port(free_port(), &extra)
            })
            .collect()
    }

    /// The server's name in a cluster (`n1`...), from its config.
    pub fn name(&self) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("server_name: "))
            .unwrap_or_default()
            .to_string()
    }

    /// Whether the server process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn on_port(port: u16, extra: &str) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("pilot-nats-")
            .tempdir()
            .expect("nats temp dir");
        let store = dir.path().join("store");
        let config = dir.path().join("nats.conf");
        let text = format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n{extra}\n",
            store.display().to_string()
        );
        std::fs::write(&config, text).expect("write nats.conf");
        let mut s = NatsServer {
            port,
            dir,
            config,
            child: None,
        };
        s.start_again();
        s
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's own log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Starts the (stopped) server again on the same port and store; returns once it accepts.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("open nats.log");
        let child = Command::new(server_bin())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", server_bin().display()));
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "nats-server did not listen on {port}:\n{}",
            self.log()
        );
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `f` with an anonymous JetStream client of this server.
    pub fn block_on<T>(&self, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
        runtime().block_on(async {
            let client = async_nats::connect(format!("127.0.0.1:{}", self.port))
                .await
                .expect("test client connects");
            let js = async_nats::jetstream::new(client);
            f(js).await
        })
    }

    /// Creates stream `name` for `subjects` (the test's own setup, not pilot's).
    pub fn create_stream(&self, name: &str, subjects: &[&str]) {
        self.create_replicated_stream(name, subjects, 1);
    }

    /// Creates stream `name` for `subjects` with `replicas` replicas (a cluster's).
    pub fn create_replicated_stream(&self, name: &str, subjects: &[&str], replicas: usize) {
        let config = async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            num_replicas: replicas,
            ..Default::default()
        };
        // A new cluster elects its JetStream leader first: retry for a while.
        let result = self.block_on(async move |js| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match js.create_stream(config.clone()).await {
                    Ok(_) => return Ok(()),
                    Err(e) if tokio::time::Instant::now() > deadline => return Err(e.to_string()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        });
        if let Err(e) = result {
            panic!("create stream {name}: {e}\n{}", self.log());
        }
    }

    /// The name of stream `name`'s leader in a cluster, if known now.
    pub fn stream_leader(&self, name: &str) -> Option<String> {
        self.block_on(async move |js| {
            let mut s = js.get_stream(name).await.ok()?;
            let info = s.info().await.ok()?;
            info.cluster.as_ref()?.leader.clone()
        })
    }

    /// How many messages stream `name` holds (0 when it does not exist).
    pub fn count(&self, name: &str) -> u64 {
        self.block_on(async move |js| match js.get_stream(name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        })
    }

    /// Every message of stream `name`, in stream order.
    pub fn messages(&self, name: &str) -> Vec<Msg> {
        self.block_on(async move |js| {
            let mut stream = js.get_stream(name).await.expect("the stream exists");
            let info = stream.info().await.expect("stream info").clone();
            let mut out = Vec::new();
            if info.state.messages == 0 {
                return out;
            }
            for seq in info.state.first_sequence.max(1)..=info.state.last_sequence {
                let mut tries = 0;
                let m = loop {
                    match stream.get_raw_message(seq).await {
                        Ok(m) => break Some(m),
                        // A message removed since (limits): gone for good.
                        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break None,
                        Err(e) if tries >= 5 => panic!("reading message {seq}: {e}"),
                        Err(_) => tries += 1,
                    }
                };
                let Some(m) = m else { continue };
                let headers = m
                    .headers
                    .iter()
                    .flat_map(|(n, vs)| {
                        vs.iter()
                            .map(move |v| (n.to_string(), v.as_str().to_string()))
                    })
                    .collect();
                out.push(Msg {
                    sequence: m.sequence,
                    subject: m.subject.to_string(),
                    headers,
                    body: m.payload.to_vec(),
                });
            }
            out
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Creates stream `name` for `subjects` with a client authenticated as `user`/`password`.
pub fn create_stream_as(
    server: &NatsServer,
    user: &str,
    password: &str,
    name: &str,
    subjects: &[&str],
) {
    let config = async_nats::jetstream::stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let (user, password) = (user.to_string(), password.to_string());
    runtime().block_on(async move {
        let client = async_nats::ConnectOptions::new()
            .user_and_password(user, password)
            .connect(format!("127.0.0.1:{}", server.port))
            .await
            .expect("test client connects");
        let js = async_nats::jetstream::new(client);
        js.create_stream(config).await.expect("create stream");
    });
}
