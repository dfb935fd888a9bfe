//! The durable spool against real files in temp dirs: order, removal, reopening, a crash
//! (`abort()` in a child process mid-write), the size and age limits, the high-water mark, the
//! delivery log, corrupt files, file mode, locking, write failures (RLIMIT_FSIZE in a child
//! process) and the spooler task with the bus's durability watermark (group commit counted).
//!
//! Child processes run this test binary again on one `child_*` test, selected by the
//! `PILOT_SPOOL_CHILD` environment variable; without it those tests return at once.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pilot_core::bus::DurabilityError;
use pilot_core::{Bus, Event, Pattern};
use pilot_spool::{
    run_spooler, Spool, SpoolError, SpoolLimits, SpoolRecord, SpoolerReport, SPOOL_FILE,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "PILOT_SPOOL_CHILD";

/// The record ids the spooler gives here: pilot-webhook's durable `webhook-id` format.
fn durable_webhook_id(event: &Event) -> String {
    format!("msg_{}_{}", event.node_id, event.event_id)
}
const DIR_ENV: &str = "PILOT_SPOOL_DIR";

fn payload(id: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"event_id":{id},"event":"test.event","node_id":3,"timestamp":"2026-01-15T12:34:56Z","data":{{"pad":"{}"}}}}"#,
        "x".repeat((id % 50) as usize)
    ))
}

fn rec(id: u64) -> SpoolRecord {
    SpoolRecord {
        event_id: id,
        webhook_id: format!("msg_3_{id}"),
        accepted_at_ms: 1_000_000 + id,
        attempts: 0,
        payload: payload(id),
    }
}

fn recs(ids: impl IntoIterator<Item = u64>) -> Vec<SpoolRecord> {
    ids.into_iter().map(rec).collect()
}

fn spool_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(SPOOL_FILE)
}

fn open(path: &Path) -> Spool {
    Spool::open(path, SpoolLimits::default()).unwrap()
}

/// Every record, in order, paging with `after`.
fn all(spool: &Spool) -> Vec<SpoolRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = spool.peek(after, 777).unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = Some(last.event_id);
        out.extend(page);
    }
}

fn ids(records: &[SpoolRecord]) -> Vec<u64> {
    records.iter().map(|r| r.event_id).collect()
}

fn stored(records: &[SpoolRecord]) -> u64 {
    records.iter().map(SpoolRecord::stored_len).sum()
}

#[test]
fn ten_thousand_records_in_batches_come_back_in_order_one_commit_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&spool_path(&dir));
    let commits = spool.commits();
    for batch in 0..20u64 {
        let out = spool
            .append(&recs(batch * 500 + 1..=batch * 500 + 500))
            .unwrap();
        assert_eq!((out.appended, out.dropped_for_space), (500, 0));
    }
    assert_eq!(spool.commits() - commits, 20, "one commit per batch");
    let back = all(&spool);
    assert_eq!(back, recs(1..=10_000), "same records, same order");
    let stats = spool.stats();
    assert_eq!((stats.depth, stats.last_event_id), (10_000, 10_000));
    assert_eq!(stats.bytes, stored(&back));
    assert_eq!(
        ids(&spool.peek(Some(9_998), 10).unwrap()),
        vec![9_999, 10_000]
    );
    assert!(spool.peek(Some(10_000), 10).unwrap().is_empty());
    assert!(spool.peek(Some(u64::MAX), 10).unwrap().is_empty());
    assert_eq!(spool.peek(None, 0).unwrap(), vec![]);
    assert_eq!(spool.get(4_321).unwrap(), Some(rec(4_321)));
    assert_eq!(spool.get(10_001).unwrap(), None);
}

#[test]
fn remove_deletes_delivered_records_and_ignores_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&spool_path(&dir));
    spool.append(&recs(1..=10)).unwrap();
    spool.remove(&[1, 2, 5, 99]).unwrap();
    assert_eq!(ids(&all(&spool)), vec![3, 4, 6, 7, 8, 9, 10]);
    let stats = spool.stats();
    assert_eq!(stats.depth, 7);
    assert_eq!(stats.bytes, stored(&all(&spool)));
    let before = spool.commits();
    spool.remove(&[]).unwrap();
    assert_eq!(spool.commits(), before, "nothing to do, no commit");

    let entry = Bytes::from_static(br#"{"event_id":3,"status":200}"#);
    spool
        .remove_and_log(&[3, 4], std::slice::from_ref(&entry), 1000)
        .unwrap();
    assert_eq!(spool.commits(), before + 1, "removal and log in one commit");
    assert_eq!(ids(&all(&spool)), vec![6, 7, 8, 9, 10]);
    assert_eq!(spool.recent_log(10).unwrap(), vec![entry]);
    spool.remove(&[6, 7, 8, 9, 10]).unwrap();
    assert_eq!((spool.stats().depth, spool.stats().bytes), (0, 0));
}

#[test]
fn everything_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    {
        let spool = open(&path);
        spool.append(&recs(1..=100)).unwrap();
        spool.remove(&[1, 2]).unwrap();
        spool.set_attempts(3, 4).unwrap();
        spool.set_attempts(2, 9).unwrap(); // gone: ignored
        spool
            .append_log(&[Bytes::from_static(b"{\"a\":1}")], 1000)
            .unwrap();
    }
    let spool = open(&path);
    let back = all(&spool);
    assert_eq!(ids(&back), (3..=100).collect::<Vec<_>>());
    assert_eq!(back[0].attempts, 4, "attempts persist");
    assert_eq!(back[1], rec(4));
    let stats = spool.stats();
    assert_eq!((stats.depth, stats.last_event_id), (98, 100));
    assert_eq!(stats.bytes, stored(&back));
    assert_eq!(
        spool.recent_log(5).unwrap(),
        vec![Bytes::from_static(b"{\"a\":1}")]
    );
}

#[test]
fn the_high_water_mark_survives_emptying_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    {
        let spool = open(&path);
        spool.append(&recs(1..=5)).unwrap();
        spool.remove(&[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(spool.stats().depth, 0);
        assert_eq!(spool.last_event_id(), 5);
    }
    let spool = open(&path);
    assert_eq!(spool.last_event_id(), 5);
    assert_eq!(spool.stats().depth, 0);
    for bad in [recs([5]), recs([3]), recs([7, 6]), recs([6, 6])] {
        let err = spool.append(&bad).unwrap_err();
        assert!(matches!(err, SpoolError::OutOfOrder { .. }), "{err:?}");
        assert_eq!(err.path(), path);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    assert_eq!(spool.stats().depth, 0, "a refused batch writes nothing");
    spool.append(&recs(6..=7)).unwrap();
    assert_eq!(spool.last_event_id(), 7);
    assert_eq!(spool.append(&[]).unwrap().appended, 0);
}

#[test]
fn past_max_bytes_the_oldest_records_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let one = rec(1).stored_len(); // ids 1..=10 have different pads, so compute exactly
    let limit = stored(&recs(1..=10));
    let limits = SpoolLimits {
        max_bytes: limit,
        ..SpoolLimits::default()
    };
    {
        let spool = Spool::open(&path, limits).unwrap();
        let out = spool.append(&recs(1..=10)).unwrap();
        assert_eq!(
            (out.appended, out.dropped_for_space),
            (10, 0),
            "exactly full fits"
        );
        let out = spool.append(&recs(11..=13)).unwrap();
        assert_eq!(out.appended, 3);
        assert!(out.dropped_for_space >= 3, "{out:?}");
        let back = all(&spool);
        assert_eq!(*back.last().unwrap(), rec(13), "the newest are kept");
        assert_eq!(
            back[0].event_id,
            1 + out.dropped_for_space,
            "the oldest went first"
        );
        assert!(spool.stats().bytes <= limit);
        assert_eq!(spool.stats().bytes, stored(&back));
        assert_eq!(spool.stats().dropped_for_space, out.dropped_for_space);
    }
    // A spool too small for a whole batch keeps the batch's newest records.
    let tiny = SpoolLimits {
        max_bytes: one * 2 + 5,
        ..SpoolLimits::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let spool = Spool::open(&spool_path(&dir2), tiny).unwrap();
    let batch: Vec<SpoolRecord> = (1..=6)
        .map(|id| SpoolRecord {
            payload: payload(1),
            ..rec(id)
        })
        .collect();
    let out = spool.append(&batch).unwrap();
    assert_eq!((out.appended, out.dropped_for_space), (2, 4));
    assert_eq!(ids(&all(&spool)), vec![5, 6]);
    assert_eq!(spool.last_event_id(), 6);
    drop(spool);
    // The lifetime counter is kept on disk.
    let reopened = Spool::open(&path, limits).unwrap();
    assert!(reopened.stats().dropped_for_space >= 3);
}

#[test]
fn expire_drops_records_older_than_discard_after() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SpoolLimits {
        discard_after: Duration::from_secs(60),
        ..SpoolLimits::default()
    };
    let spool = Spool::open(&spool_path(&dir), limits).unwrap();
    let at = |id: u64, ms: u64| SpoolRecord {
        accepted_at_ms: ms,
        ..rec(id)
    };
    spool
        .append(&[at(1, 10_000), at(2, 20_000), at(3, 30_000), at(4, 90_000)])
        .unwrap();
    let before = spool.commits();
    assert_eq!(
        spool.expire(70_000).unwrap(),
        0,
        "exactly 60 s old is not older"
    );
    assert_eq!(spool.commits(), before, "nothing due, nothing written");
    assert_eq!(spool.expire(85_000).unwrap(), 2);
    assert_eq!(ids(&all(&spool)), vec![3, 4]);
    assert_eq!(spool.stats().expired, 2);
    assert_eq!(spool.expire(u64::MAX).unwrap(), 2);
    assert_eq!(spool.stats().depth, 0);
    assert_eq!(spool.stats().bytes, 0);
    assert_eq!(spool.expire(u64::MAX).unwrap(), 0);
    assert_eq!(spool.stats().expired, 4);
}

#[test]
fn the_delivery_log_keeps_the_newest_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let entry = |i: u32| Bytes::from(format!("{{\"n\":{i}}}"));
    {
        let spool = open(&path);
        assert!(spool.recent_log(10).unwrap().is_empty());
        for chunk in (0..25u32).collect::<Vec<_>>().chunks(4) {
            let entries: Vec<Bytes> = chunk.iter().map(|i| entry(*i)).collect();
            spool.append_log(&entries, 10).unwrap();
        }
        let log = spool.recent_log(100).unwrap();
        assert_eq!(
            log,
            (15..25).map(entry).collect::<Vec<_>>(),
            "newest 10, newest last"
        );
        assert_eq!(
            spool.recent_log(3).unwrap(),
            (22..25).map(entry).collect::<Vec<_>>()
        );
        // More entries than `keep` in one call: only the newest are kept.
        spool
            .append_log(&(100..130).map(entry).collect::<Vec<_>>(), 10)
            .unwrap();
        assert_eq!(
            spool.recent_log(100).unwrap(),
            (120..130).map(entry).collect::<Vec<_>>()
        );
    }
    let spool = open(&path);
    assert_eq!(spool.recent_log(2).unwrap(), vec![entry(128), entry(129)]);
    spool.append_log(&[entry(130)], 3).unwrap();
    assert_eq!(
        spool.recent_log(100).unwrap(),
        vec![entry(128), entry(129), entry(130)]
    );
}

#[test]
fn a_garbage_file_is_an_error_naming_it_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let garbage: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Spool::open(&path, SpoolLimits::default()).unwrap_err();
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err:?}");
    assert_eq!(err.path(), path);
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("corrupt"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is untouched"
    );
}

#[test]
fn a_damaged_spool_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    {
        let spool = open(&path);
        for b in 0..20u64 {
            spool.append(&recs(b * 100 + 1..=b * 100 + 100)).unwrap();
        }
    }
    let mut bytes = std::fs::read(&path).unwrap();
    // Scribble over every page but the first (the header stays valid, the B-trees do not).
    for page in bytes.chunks_mut(4096).skip(1) {
        for b in page.iter_mut().skip(64).take(64) {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    match Spool::open(&path, SpoolLimits::default()) {
        Err(err) => {
            println!("damaged spool: {err}");
            assert_eq!(err.path(), path);
            assert!(matches!(err, SpoolError::Corrupt { .. }), "{err:?}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "the file is untouched"
            );
        }
        // The scribble may have hit only free pages; then everything must still read back.
        Ok(spool) => assert_eq!(all(&spool), recs(1..=2000)),
    }
}

#[test]
fn the_file_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    drop(open(&path));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(open(&path));
    assert_eq!(mode(&path), 0o600, "an existing file is made 0600 again");
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let _first = open(&path);
    let err = Spool::open(&path, SpoolLimits::default()).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn a_missing_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope").join(SPOOL_FILE);
    let err = Spool::open(&path, SpoolLimits::default()).unwrap_err();
    assert_eq!(err.path(), path);
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn spool_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Spool>();
    check::<Arc<Spool>>();
}

// ---- child processes ----

/// Runs this test binary on the one test `name`, as a child of this process.
fn run_child(name: &str, dir: &Path) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .env(DIR_ENV, dir)
        .output()
        .unwrap()
}

fn child_dir(name: &str) -> Option<PathBuf> {
    (std::env::var(CHILD_ENV).ok()? == name).then(|| PathBuf::from(std::env::var(DIR_ENV).unwrap()))
}

/// In the child: appends batches as fast as it can and reports each commit on stdout, while
/// another thread calls `abort()` at a moment it picks, usually in the middle of a write.
#[test]
fn child_crash_appender() {
    let Some(dir) = child_dir("child_crash_appender") else {
        return;
    };
    let spool = open(&dir.join(SPOOL_FILE));
    let start = spool.last_event_id();
    let delay = 80 + (std::process::id() as u64 % 7) * 20 + start % 13;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(delay));
        std::process::abort();
    });
    let mut out = std::io::stdout().lock();
    let mut next = start + 1;
    loop {
        spool.append(&recs(next..next + 50)).unwrap();
        next += 50;
        if next % 500 == 1 {
            spool.remove(&[next - 500]).unwrap();
        }
        writeln!(out, "committed {}", next - 1).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn records_committed_before_a_crash_are_all_there_and_the_file_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for round in 0..3 {
        let out = run_child("child_crash_appender", dir.path());
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "round {round}: the child aborts; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let committed: u64 = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("committed "))
            .filter_map(|n| n.parse().ok())
            .next_back()
            .unwrap_or(0);
        let spool = Spool::open(&path, SpoolLimits::default())
            .unwrap_or_else(|e| panic!("round {round}: reopening after the crash: {e}"));
        let last = spool.last_event_id();
        assert!(
            last >= committed,
            "round {round}: every committed batch is there ({last} < {committed})"
        );
        assert_eq!(last % 50, 0, "round {round}: batches are all or nothing");
        let back = all(&spool);
        // The child removes id 500k-499 right after the batch ending at 500k: when that batch
        // is the last one on disk, the abort may have come before or after the removal.
        // Once that case is seen either way it is settled: a record the child did not get to
        // remove stays (nobody removes it later), so it must not count as removed next round.
        for k in 1..=last / 500 {
            let id = k * 500 - 499;
            if removed.contains(&id) || kept.contains(&id) {
                continue;
            }
            let certain = k * 500 < last;
            if certain || !back.iter().any(|r| r.event_id == id) {
                removed.push(id);
            } else {
                kept.push(id);
            }
        }
        let expected: Vec<SpoolRecord> = recs(1..=last)
            .into_iter()
            .filter(|r| !removed.contains(&r.event_id))
            .collect();
        assert_eq!(
            back, expected,
            "round {round}: exactly the committed records"
        );
        assert_eq!(spool.stats().depth, back.len() as u64);
        assert_eq!(spool.stats().bytes, stored(&back));
        spool.append(&recs(last + 1..=last + 50)).unwrap();
        if (last + 50).is_multiple_of(500) {
            // Do as the child does, so the bookkeeping above holds.
            spool.remove(&[last + 50 - 499]).unwrap();
        }
        println!("round {round}: {committed} reported, {last} on disk");
    }
}

/// In the child: the spool's file may not grow past a limit (RLIMIT_FSIZE, SIGXFSZ ignored),
/// so appends fail with EFBIG; after the limit is lifted the spool writes again, and the
/// spooler's waiters see the failure and then the recovery.
#[test]
fn child_write_failures() {
    let Some(dir) = child_dir("child_write_failures") else {
        return;
    };
    let set_limit = |bytes: u64| {
        let lim = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain libc calls with valid arguments; this child process runs one test.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
    };
    let path = dir.join(SPOOL_FILE);
    let spool = Arc::new(open(&path));
    let size = std::fs::metadata(&path).unwrap().len();
    set_limit(size + 64 * 1024);
    let mut next = 1;
    let err = loop {
        match spool.append(&recs(next..next + 200)) {
            Ok(_) => next += 200,
            Err(e) => break e,
        }
        assert!(next < 1_000_000, "the file limit never hit");
    };
    println!("append failed as expected: {err}");
    assert_eq!(err.path(), path);
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(
        spool.last_event_id(),
        next - 1,
        "the failed batch is not counted"
    );
    let err2 = spool.append(&recs(next..next + 200)).unwrap_err();
    println!("again: {err2}");

    // The spooler: events wait in memory, emits fail, then all is written once the disk is back.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = Bus::starting_after(3, spool.last_event_id());
        let (sub, sink) = bus.subscribe_durable("spool", Pattern::All, 4096, Arc::default());
        let stop = CancellationToken::new();
        let notify = Arc::new(Notify::new());
        // No room to grow at all now, and events too big for the free pages left.
        set_limit(std::fs::metadata(&path).unwrap().len());
        let big = || {
            let pad = "y".repeat(60_000);
            Some(pilot_core::event::parse_data(&format!(r#"{{"pad":"{pad}"}}"#)).unwrap())
        };
        let task = tokio::spawn(run_spooler(sub, spool.clone(), sink, notify, stop.clone(), durable_webhook_id));
        let first = bus.publish("test.event", big()).event_id;
        let res = tokio::time::timeout(Duration::from_secs(10), bus.wait_durable(first))
            .await
            .unwrap();
        assert!(
            matches!(&res, Err(DurabilityError::Failed { sink, reason }) if sink == "spool" && reason.contains(&path.display().to_string())),
            "{res:?}"
        );
        println!("emit sees: {}", res.unwrap_err());
        for _ in 0..99 {
            bus.publish("test.event", big());
        }
        set_limit(u64::MAX);
        let last = bus.last_event_id();
        // Emits fail until the spooler's next retry succeeds, then the backlog is durable.
        let retried = async {
            loop {
                match bus.wait_durable(last).await {
                    Ok(()) => break,
                    Err(DurabilityError::Failed { .. }) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), retried)
            .await
            .unwrap();
        stop.cancel();
        let report = task.await.unwrap();
        assert!(report.append_failures >= 1, "{report:?}");
        assert_eq!(report.spooled, 100, "{report:?}");
        assert_eq!(report.lost, 0, "{report:?}");
        let back = spool.peek(Some(first - 1), 1000).unwrap();
        assert_eq!(ids(&back), (first..=last).collect::<Vec<_>>());
    });
    println!("child ok");
}

#[test]
fn write_failures_are_reported_and_the_spool_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("child_write_failures", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child ok"),
        "status {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The file is fine afterwards.
    let spool = open(&spool_path(&dir));
    let back = all(&spool);
    assert_eq!(back.len() as u64, spool.stats().depth);
    assert!(back.windows(2).all(|w| w[0].event_id < w[1].event_id));
}

// ---- the spooler and the bus ----

struct Running {
    bus: Bus,
    spool: Arc<Spool>,
    notify: Arc<Notify>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<SpoolerReport>,
    _dir: tempfile::TempDir,
}

fn start(pattern: Pattern, capacity: usize) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(&spool_path(&dir)));
    let bus = Bus::starting_after(3, spool.last_event_id());
    let (sub, sink) = bus.subscribe_durable("webhook spool", pattern, capacity, Arc::default());
    let notify = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_spooler(
        sub,
        spool.clone(),
        sink,
        notify.clone(),
        stop.clone(),
        durable_webhook_id,
    ));
    Running {
        bus,
        spool,
        notify,
        stop,
        task,
        _dir: dir,
    }
}

async fn settle<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_on_disk_when_wait_durable_returns() {
    let r = start(Pattern::All, 1024);
    for i in 0..20 {
        let data = pilot_core::event::parse_data(&format!(r#"{{"i":{i}}}"#)).unwrap();
        let ev = r.bus.publish("handshake.received", Some(data));
        settle(r.bus.wait_durable(ev.event_id)).await.unwrap();
        let rec = r
            .spool
            .get(ev.event_id)
            .unwrap()
            .expect("spooled before the wait returns");
        assert_eq!(rec.payload, ev.payload());
        assert_eq!(rec.webhook_id, durable_webhook_id(&ev));
        assert_eq!(rec.webhook_id, format!("msg_3_{}", ev.event_id));
        assert_eq!(rec.attempts, 0);
        assert_eq!(
            rec.accepted_at_ms as i64,
            ev.timestamp.as_millisecond(),
            "accepted when the bus stamped it"
        );
    }
    settle(r.notify.notified()).await; // the delivery side is woken
    r.stop.cancel();
    let report = settle(r.task).await.unwrap();
    assert_eq!(
        (report.spooled, report.lost, report.append_failures),
        (20, 0, 0)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_events_take_one_commit_per_batch() {
    let r = start(Pattern::All, 16_384);
    let commits = r.spool.commits();
    let mut last = 0;
    // Published before the spooler runs (it cannot before this task yields): a backlog.
    for _ in 0..10_000 {
        last = r.bus.publish("test.event", None).event_id;
    }
    settle(r.bus.wait_durable(last)).await.unwrap();
    let used = r.spool.commits() - commits;
    println!("10000 events spooled in {used} commits");
    assert_eq!(used, 10_000u64.div_ceil(pilot_spool::SPOOLER_BATCH as u64));
    assert_eq!(r.spool.stats().depth, 10_000);
    let back = all(&r.spool);
    assert_eq!(ids(&back), (1..=10_000).collect::<Vec<_>>());
    r.stop.cancel();
    let report = settle(r.task).await.unwrap();
    assert_eq!(report.spooled, 10_000);
    assert_eq!(report.batches, used);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emitters_share_commits() {
    let r = start(Pattern::All, 4096);
    let commits = r.spool.commits();
    let emitters: Vec<_> = (0..8)
        .map(|_| {
            let bus = r.bus.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    let id = bus.publish("test.event", None).event_id;
                    bus.wait_durable(id).await.unwrap();
                }
            })
        })
        .collect();
    for e in emitters {
        settle(e).await.unwrap();
    }
    let used = r.spool.commits() - commits;
    println!("1600 acknowledged emits from 8 emitters in {used} commits");
    assert!(used < 1600, "{used}");
    assert_eq!(r.spool.stats().depth, 1600);
    r.stop.cancel();
    settle(r.task).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_pattern_leaves_out_does_not_hang_its_emitter() {
    let r = start("handshake.*".parse().unwrap(), 64);
    let skipped = r.bus.publish("trust.changed", None).event_id;
    settle(r.bus.wait_durable(skipped)).await.unwrap();
    let kept = r.bus.publish("handshake.received", None).event_id;
    settle(r.bus.wait_durable(kept)).await.unwrap();
    assert_eq!(ids(&all(&r.spool)), vec![kept]);
    r.stop.cancel();
    let report = settle(r.task).await.unwrap();
    assert_eq!((report.spooled, report.lost), (1, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn events_dropped_by_a_full_buffer_are_reported_lost() {
    let r = start(Pattern::All, 4);
    // The spooler cannot run before this task yields: 4 events fit, 16 are dropped.
    for _ in 0..20 {
        r.bus.publish("test.event", None);
    }
    settle(r.bus.wait_durable(4)).await.unwrap();
    for id in [5, 12, 20] {
        let err = settle(r.bus.wait_durable(id)).await.unwrap_err();
        assert!(
            matches!(&err, DurabilityError::Lost { event_id, .. } if *event_id == id),
            "{err:?}"
        );
    }
    // Later events are fine again.
    let next = r.bus.publish("test.event", None).event_id;
    settle(r.bus.wait_durable(next)).await.unwrap();
    assert_eq!(ids(&all(&r.spool)), vec![1, 2, 3, 4, next]);
    r.stop.cancel();
    let report = settle(r.task).await.unwrap();
    assert_eq!((report.spooled, report.lost), (5, 16), "{report:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn stop_writes_what_is_buffered_then_returns() {
    let r = start(Pattern::All, 1024);
    for _ in 0..300 {
        r.bus.publish("test.event", None);
    }
    r.stop.cancel(); // before the spooler ever ran
    let report = settle(r.task).await.unwrap();
    assert_eq!((report.spooled, report.lost), (300, 0), "{report:?}");
    assert_eq!(r.spool.stats().depth, 300);
    assert_eq!(r.spool.last_event_id(), 300);
    // The sink is gone with the spooler: nothing waits any more.
    assert!(r.bus.durable_sinks().is_empty());
    let after = r.bus.publish("test.event", None).event_id;
    settle(r.bus.wait_durable(after)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bus_continues_after_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    for round in 0..2u64 {
        let spool = Arc::new(open(&path));
        let bus = Bus::starting_after(3, spool.last_event_id());
        let (sub, sink) = bus.subscribe_durable("spool", Pattern::All, 64, Arc::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_spooler(
            sub,
            spool.clone(),
            sink,
            Arc::new(Notify::new()),
            stop.clone(),
            durable_webhook_id,
        ));
        let ev = bus.publish("test.event", None);
        assert_eq!(ev.event_id, round + 1, "ids continue across restarts");
        settle(bus.wait_durable(ev.event_id)).await.unwrap();
        stop.cancel();
        settle(task).await.unwrap();
        drop(spool);
    }
    let spool = open(&path);
    let back = all(&spool);
    assert_eq!(ids(&back), vec![1, 2]);
    assert_ne!(back[0].webhook_id, back[1].webhook_id);
}
