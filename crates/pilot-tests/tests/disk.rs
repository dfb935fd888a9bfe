//! Durable spooling when the disk fills up or the pilot home cannot be written: emits are
//! refused with a clear error (never acknowledged without being on disk), the daemon keeps
//! serving, the spool is never corrupt (it reopens after a `kill -9` on a full disk), and
//! everything acknowledged is delivered once there is room again.
//!
//! A real full disk needs root (a small tmpfs); without it the tests use a file-size limit
//! (RLIMIT_FSIZE) on the daemon instead, and say so. Read-only homes use a read-only bind
//! mount as root (root ignores permission bits) and chmod otherwise.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pilot_tests::{accounting, free_port, raw, wait_until, Env, Receiver};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// Fast retries, so delivery resumes soon after the receiver comes up.
const FAST: [&str; 4] = ["--backoff", "20ms", "--circuit-cooldown", "200ms"];

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A mount made for one test; lazily unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) -> bool {
        Command::new(args[0])
            .args(&args[1..])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        Mount::run(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

/// How a test runs out of space.
enum Space {
    /// A 4 MiB tmpfs on the pilot home, filled by a file the test writes; unmounted when
    /// dropped.
    Tmpfs { _mount: Mount },
    /// The daemon may not grow any file (RLIMIT_FSIZE at the spool's size).
    FileSizeLimit,
}

impl Space {
    fn filler(env: &Env) -> PathBuf {
        env.pilot_home.join("filler")
    }

    /// Takes away the room to grow.
    fn fill(&self, env: &Env) {
        match self {
            Space::Tmpfs { .. } => {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(Self::filler(env))
                    .unwrap();
                let chunk = vec![0u8; 4096];
                while f.write_all(&chunk).is_ok() {}
            }
            Space::FileSizeLimit => {
                let size = std::fs::metadata(env.pilot_home.join("webhook-spool.redb"))
                    .unwrap()
                    .len();
                set_fsize(env, Some(size));
            }
        }
    }

    /// Gives the room back.
    fn free(&self, env: &Env) {
        match self {
            Space::Tmpfs { .. } => std::fs::remove_file(Self::filler(env)).unwrap(),
            Space::FileSizeLimit => set_fsize(env, None),
        }
    }
}

fn set_fsize(env: &Env, limit: Option<u64>) {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let pid = Pid::from_raw(env.pid().expect("daemon pid")).unwrap();
    prlimit(
        Some(pid),
        Resource::Fsize,
        Rlimit {
            current: limit,
            maximum: None,
        },
    )
    .unwrap();
}

/// A 4 MiB tmpfs on the (new) pilot home, if we are root and may mount.
fn tmpfs_on(env: &Env) -> Option<Space> {
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    let home = env.pilot_home.to_str().unwrap();
    let mounted = is_root()
        && Mount::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=4m,mode=0700",
            "tmpfs",
            home,
        ]);
    mounted.then(|| Space::Tmpfs {
        _mount: Mount(env.pilot_home.clone()),
    })
}

/// Emits `test.disk` events with 8 KiB of data over one connection until one is refused;
/// returns the acknowledged ids and the refusal.
fn emit_until_refused(env: &Env, limit: usize) -> (Vec<u64>, Value) {
    let mut s = raw::connect(&env.socket_path(), Duration::from_secs(30)).unwrap();
    assert_eq!(raw::hello(&mut s).unwrap()["type"], "hello");
    let pad = "d".repeat(8 * 1024);
    let mut acked = Vec::new();
    for i in 0..limit {
        let emit = json!({"type": "emit", "event": "test.disk", "data": {"i": i, "pad": pad}});
        raw::send(&mut s, &emit).unwrap();
        let r = raw::recv(&mut s).expect("the daemon answers");
        if r["type"] == "ok" {
            acked.push(r["data"]["event_id"].as_u64().unwrap());
        } else {
            return (acked, r);
        }
    }
    panic!("{limit} emits of 8 KiB were all accepted: the disk never filled");
}

/// One `test.disk` emit, retried until the spool takes it again (the spooler retries with
/// backoff up to 5 s); returns its id.
fn emit_when_writable(env: &Env) -> u64 {
    let mut id = None;
    let ok = wait_until(WAIT, || {
        let run = env.ctl_json(&["emit", "test.disk", "--data", "{\"after\":true}"]);
        id = (run.code == 0).then(|| run.data()["event_id"].as_u64().unwrap());
        id.is_some()
    });
    assert!(ok, "the spool never took events again; log:\n{}", env.log());
    id.unwrap()
}

#[test]
fn a_full_disk_refuses_emits_and_loses_nothing_acknowledged() {
    let env = Env::new();
    let Some(space) = tmpfs_on(&env) else {
        eprintln!("SKIPPED: needs root and `mount -t tmpfs` for a real full disk (the file-size limit test still runs)");
        return;
    };
    full_disk(&env, space);
}

#[test]
fn a_file_size_limit_refuses_emits_and_loses_nothing_acknowledged() {
    let env = Env::new();
    full_disk(&env, Space::FileSizeLimit);
}

/// Fills the disk (`space`) under a durable daemon whose receiver is down, twice: once to see
/// the spool recover in place, once to `kill -9` the daemon while the disk is full; then
/// checks that every acknowledged event is delivered, in order, and the counters balance.
fn full_disk(env: &Env, space: Space) {
    let spool_path = env.pilot_home.join("webhook-spool.redb");
    let port = free_port();
    env.ctl_json(&[
        "set-webhook",
        &format!("http://127.0.0.1:{port}/events"),
        "--durable",
        "--max-backoff",
        "100ms",
    ])
    .data();
    env.start(&FAST);
    let mut acked: Vec<u64> = (0..20).map(|_| env.emit("test.disk", None)).collect();

    // Full: the emit that cannot be written is refused, naming the spool and the cause.
    space.fill(env);
    let (more, refusal) = emit_until_refused(env, 2000);
    acked.extend(more);
    assert_eq!(refusal["code"], "not_durable", "{refusal}");
    let msg = refusal["message"].as_str().unwrap();
    assert!(msg.contains(spool_path.to_str().unwrap()), "{msg}");
    if matches!(space, Space::Tmpfs { .. }) {
        assert!(msg.contains("disk is full"), "{msg}");
    }
    eprintln!(
        "{} events acknowledged before the disk was full: {msg}",
        acked.len()
    );
    // The daemon keeps serving.
    assert_eq!(
        env.info()["webhook"]["spool"]["path"],
        spool_path.to_str().unwrap()
    );

    // Room again: the spool writes again in place.
    space.free(env);
    acked.push(emit_when_writable(env));

    // Full again, and killed while full: the spool must reopen whole.
    space.fill(env);
    let (more, refusal) = emit_until_refused(env, 2000);
    assert_eq!(refusal["code"], "not_durable", "{refusal}");
    acked.extend(more);
    env.kill_9();
    space.free(env);
    env.start(&FAST);
    assert_eq!(
        env.info()["webhook"]["spool"]["path"],
        spool_path.to_str().unwrap(),
        "the spool did not reopen; log:\n{}",
        env.log()
    );

    // Everything acknowledged arrives, in order.
    let rx = Receiver::on_port(port);
    let got = wait_delivered(&rx, &acked, "");
    let mut first = got.clone();
    first.dedup();
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "out of order: {got:?}"
    );
    assert!(wait_until(WAIT, || env.info()["webhook"]["queue_depth"] == 0));
    accounting::wait_balanced(env, WAIT);
    env.stop();
}

/// Makes `path` read-only for the daemon: a read-only bind mount as root (root ignores
/// permission bits), chmod otherwise. The returned guard undoes the mount.
fn read_only(path: &Path) -> Option<Mount> {
    let p = path.to_str().unwrap();
    if is_root() {
        assert!(
            Mount::run(&["mount", "--bind", p, p]),
            "root but `mount --bind` refused"
        );
        let guard = Mount(path.to_path_buf());
        assert!(Mount::run(&["mount", "-o", "remount,bind,ro", p, p]));
        Some(guard)
    } else {
        let mode = if path.is_dir() { 0o500 } else { 0o400 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        None
    }
}

fn writable(path: &Path, guard: Option<Mount>) {
    drop(guard);
    let mode = if path.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_home_or_spool_is_a_clear_error_that_changes_nothing() {
    let env = Env::new();
    let rx_port = free_port();
    let url = format!("http://127.0.0.1:{rx_port}/events");
    env.ctl_json(&["set-webhook", &url, "--durable", "--max-backoff", "100ms"])
        .data();
    env.start(&FAST);
    let first = env.emit("test.readonly", None);
    env.stop();
    let config = env.read_config();

    // A read-only home: set-webhook cannot save, start cannot take the pid file.
    let guard = read_only(&env.pilot_home);
    let run = env.ctl_json(&["set-webhook", "http://127.0.0.1:1/other"]);
    let code = run.error_code();
    assert!(code == "config_error" || code == "io_error", "{run:?}");
    assert!(run.stderr.contains(".pilot"), "names the place: {run:?}");
    assert_eq!(env.read_config(), config);
    let run = env.ctl_json(&["daemon", "start"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(".pilot"), "names the place: {run:?}");
    assert!(env.pid().is_none());
    writable(&env.pilot_home, guard);

    // A read-only spool: the daemon does not start, and says which file and why.
    let spool = env.pilot_home.join("webhook-spool.redb");
    let guard = read_only(&spool);
    let run = env.ctl_json(&["daemon", "start"]);
    assert_eq!(run.error_code(), "start_failed", "{run:?}");
    assert!(run.stderr.contains("webhook-spool.redb"), "{run:?}");
    assert!(run.stderr.contains("cannot be written"), "{run:?}");
    writable(&spool, guard);

    // Writable again: what was accepted before is delivered.
    env.start(&FAST);
    let rx = Receiver::on_port(rx_port);
    assert!(wait_until(WAIT, || rx
        .received()
        .iter()
        .any(|r| r.json()["event_id"] == first)));
    accounting::wait_balanced(&env, WAIT);
}

/// A daemon killed while its disk is full starts again on the still-full disk: the spool opens
/// (read-mostly if it must), `info` shows why it cannot be written, durable emits are refused,
/// and everything acknowledged is delivered; with room again the spool empties and writes.
#[test]
fn a_daemon_restarted_on_a_full_disk_delivers_what_its_spool_holds() {
    let env = Env::new();
    let Some(space) = tmpfs_on(&env) else {
        eprintln!("SKIPPED: needs root and `mount -t tmpfs` for a real full disk");
        return;
    };
    let spool_path = env.pilot_home.join("webhook-spool.redb");
    let port = free_port();
    env.ctl_json(&[
        "set-webhook",
        &format!("http://127.0.0.1:{port}/events"),
        "--durable",
        "--max-backoff",
        "100ms",
    ])
    .data();
    env.start(&FAST);
    let mut acked: Vec<u64> = (0..20).map(|_| env.emit("test.disk", None)).collect();
    space.fill(&env);
    let (more, refusal) = emit_until_refused(&env, 2000);
    assert_eq!(refusal["code"], "not_durable", "{refusal}");
    acked.extend(more);
    env.kill_9();

    // Still full: the daemon starts anyway and says what state its spool is in.
    env.start(&FAST);
    let info = env.info();
    let spool = &info["webhook"]["spool"];
    assert_eq!(spool["path"], spool_path.to_str().unwrap(), "{info}");
    // The acknowledged events, and the daemons' own `daemon.started` (small events still fit).
    assert!(
        spool["depth"].as_u64() >= Some(acked.len() as u64),
        "{info}"
    );
    let refused = emit_until_refused(&env, 2000).1;
    assert_eq!(refused["code"], "not_durable", "{refused}");
    let info = env.info();
    let condition = info["webhook"]["spool"]["write_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(condition.contains("disk is full"), "{info}");

    // The receiver comes up: everything acknowledged arrives, and the spool empties.
    let rx = Receiver::on_port(port);
    let delivered = || disk_events(&rx);
    wait_delivered(&rx, &acked, &env.log());
    // A copy-on-write commit needs free pages even to delete: the spool releases its reserve
    // (`<spool>.reserve`, written while there was room) so the delivered events are removed
    // while the disk is still full, freeing pages inside the spool for new events.
    assert!(
        wait_until(WAIT, || env.info()["webhook"]["spool"]["depth"] == 0),
        "the spool never emptied on the full disk: {}\nlog:\n{}",
        env.info(),
        env.log()
    );
    // (The log reaches its file through the log writer thread: wait for the line.)
    assert!(
        wait_until(WAIT, || env.log().contains("released the spool's reserve")),
        "{}",
        env.log()
    );
    // Room again: it writes again, and its condition clears.
    space.free(&env);
    let after = emit_when_writable(&env);
    assert!(wait_until(WAIT, || delivered().contains(&after)));
    assert!(wait_until(WAIT, || env.info()["webhook"]["spool"]
        ["write_error"]
        .is_null()));
    accounting::wait_balanced(&env, WAIT);
    env.stop();
    drop(space);
}

/// The event ids of the `test.disk` events `rx` received, in arrival order.
fn disk_events(rx: &Receiver) -> Vec<u64> {
    rx.received()
        .iter()
        .flat_map(|r| r.events())
        .filter(|e| e["event"] == "test.disk")
        .map(|e| e["event_id"].as_u64().unwrap())
        .collect()
}

/// Waits until `rx` has received every id of `acked`; panics naming the missing ones (and
/// `context`). Returns what it received.
fn wait_delivered(rx: &Receiver, acked: &[u64], context: &str) -> Vec<u64> {
    let all = wait_until(WAIT, || {
        let got = disk_events(rx);
        acked.iter().all(|id| got.contains(id))
    });
    let got = disk_events(rx);
    let lost: Vec<&u64> = acked.iter().filter(|id| !got.contains(id)).collect();
    assert!(all, "acknowledged but never delivered: {lost:?}\n{context}");
    got
}
