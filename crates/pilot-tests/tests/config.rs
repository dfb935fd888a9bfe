//! config.json under concurrent writers and crashes: fifty `set-webhook`s at once leave a
//! valid file that the running daemon agrees with, and a `pilotctl` killed mid-write leaves the
//! old file or the new one, never a part.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pilot_tests::Env;
use serde_json::Value;

/// What config.json says the webhook is; panics when the file is not a JSON object.
fn webhook_in(text: &str) -> String {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("config.json is not valid JSON ({e}): {text:?}"));
    assert!(v.is_object(), "config.json is not an object: {text:?}");
    v["webhook"].as_str().unwrap_or_default().to_string()
}

#[test]
fn fifty_concurrent_set_webhooks_leave_a_valid_file_the_daemon_agrees_with() {
    const WRITERS: u16 = 50;
    const ROUNDS: u16 = 4;
    let env = Env::new();
    env.write_config("{\"registry\": \"r:1\", \"webhook\": \"http://127.0.0.1:8999/events\"}");
    env.start(&[]);

    // Read the file as fast as possible while the writers run: it must parse every time.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (path, stop, reads) = (env.config_path(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).expect("config.json is always there");
                webhook_in(&text);
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for round in 0..ROUNDS {
        let urls: Vec<String> = (0..WRITERS)
            .map(|i| format!("http://127.0.0.1:{}/events", 9000 + round * 100 + i))
            .collect();
        let writers: Vec<_> = urls
            .iter()
            .map(|url| {
                env.command(&env.pilotctl_bin())
                    .args(["--json", "set-webhook", url])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for w in writers {
            let out = w.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["data"]["applied"], true, "{v}");
        }
        let last = webhook_in(&env.read_config());
        assert!(
            urls.contains(&last),
            "round {round}: {last} is none of the URLs set"
        );
        assert_eq!(env.config()["registry"], "r:1", "a writer lost another key");
        assert_eq!(
            env.info()["webhook"]["url"],
            last.as_str(),
            "round {round}: the daemon's webhook is not the file's"
        );
    }
    stop.store(true, Ordering::Relaxed);
    poller
        .join()
        .expect("config.json was invalid during the run");
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_set_webhook_killed_mid_write_leaves_the_old_file_or_the_new_one() {
    const ROUNDS: u64 = 60;
    let env = Env::new();
    env.write_config("{\"registry\": \"r:1\", \"webhook\": \"http://127.0.0.1:1/start\"}");
    let mut current = webhook_in(&env.read_config());
    let (mut old_kept, mut new_written) = (0, 0);
    for round in 0..ROUNDS {
        let url = format!("http://127.0.0.1:{}/round", 2000 + round);
        let mut child = env
            .command(&env.pilotctl_bin())
            .args([
                "set-webhook",
                &url,
                "--events",
                "a.*,b.*",
                "--header",
                "X-Round: r",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the process's life: before, during and after the write.
        std::thread::sleep(Duration::from_micros((round * 7919) % 20_000));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let text = env.read_config();
        let now = webhook_in(&text);
        if now == url {
            new_written += 1;
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["webhook_settings"]["events"][1], "b.*", "{text}");
        } else {
            assert_eq!(
                now, current,
                "round {round}: neither the old nor the new URL: {text}"
            );
            old_kept += 1;
        }
        assert_eq!(env.config()["registry"], "r:1", "round {round}: {text}");
        current = now;
    }
    let litter = temp_files(&env);
    eprintln!(
        "{ROUNDS} kills: old file kept {old_kept} times, new file written {new_written} times, \
         {litter} temp files left by killed writers"
    );
    // The lock died with each killed writer: the next one is not stuck.
    let run = env.ctl_json(&["set-webhook", "http://127.0.0.1:3000/after"]);
    run.data();
    assert_eq!(
        webhook_in(&env.read_config()),
        "http://127.0.0.1:3000/after"
    );
    // ... and it swept the temp files the killed writers left.
    assert_eq!(temp_files(&env), 0);
}

/// The temp files of atomic writes left in the pilot home.
fn temp_files(env: &Env) -> usize {
    std::fs::read_dir(&env.pilot_home)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".tmp")
        })
        .count()
}
