//! Files an admin gets wrong, through the real `mimi-bridge serve`: a signing key path naming a
//! FIFO, a device, a directory or a huge file is refused at once naming `mimi.signing_key`
//! (before the data directory is touched); a key open to others is used, with a warning; a
//! `database.path` full of someone else's files is refused and left as it was.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use mimi_bridge::event::ServerKey;
use mimi_bridge::store::{Store, StoreError};

use crate::common::{bin, text};

fn config(dir: &Path, key: &Path, data: &Path, hs_port: u16) -> PathBuf {
    let as_port = crate::ports::consecutive(2);
    let yaml = format!(
        "homeserver:\n  address: http://127.0.0.1:{hs_port}\n  domain: hs.test\n\
         appservice:\n  address: http://127.0.0.1:{as_port}\n  port: {as_port}\n  \
         as_token: as_0123456789abcdef0123456789abcdef\n  hs_token: hs_0123456789abcdef0123456789abcdef\n\
         mimi:\n  server_name: mimi.hs.test\n  signing_key: {key}\n  federation_listen: 127.0.0.1:{fed}\n\
         database:\n  path: {data}\n",
        key = key.display(),
        data = data.display(),
        fed = as_port + 1,
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `mimi-bridge args`; a process still running after a minute is killed and fails the
/// test (a hang, the failure this file guards against, not a slow run).
fn run_bounded(args: &[&str]) -> Output {
    let mut child = bin()
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_mins(1) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("mimi-bridge {args:?} hung; stderr: {}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A homeserver that refuses every request's token: `serve` stops right after opening storage.
fn refusing_homeserver() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = r#"{"errcode":"M_UNKNOWN_TOKEN","error":"no"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn write_key(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, ServerKey::from_seed("k1", [3; 32]).unwrap().to_synapse_line()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_signing_key_path_that_cannot_be_a_key_file_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("key.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let big = dir.path().join("big.key");
    std::fs::write(&big, vec![b'#'; 1 << 20]).unwrap();
    let directory = dir.path().join("keys");
    std::fs::create_dir(&directory).unwrap();
    let cases = [
        (fifo.clone(), "is a FIFO, not a regular file"),
        (PathBuf::from("/dev/zero"), "is a character device, not a regular file"),
        (big.clone(), "holds 1048576 bytes or more, more than a signing key file can (4096 at most)"),
        (directory.clone(), "is a directory, not a regular file"),
    ];
    let data = dir.path().join("data");
    for (key, expected) in &cases {
        let config = config(dir.path(), key, &data, 1);
        let out = run_bounded(&["serve", "-c", config.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", key.display());
        assert!(stderr.contains("mimi.signing_key: "), "{stderr}");
        assert!(stderr.contains(&format!("{} {expected}", key.display())), "{stderr}");
        assert!(stderr.contains("mimi-bridge keygen"), "{stderr}");
        assert!(!data.exists(), "refused before the data directory was created");

        let out = run_bounded(&["event", "sign", "--server-name", "s", "--key-file", key.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains(&format!("--key-file {} {expected}", key.display())),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_key_open_to_others_is_used_with_a_warning() {
    let hs_port = refusing_homeserver();
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false), (0o400, false)] {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing.key");
        write_key(&key, mode);
        let config = config(dir.path(), &key, &dir.path().join("data"), hs_port);
        let out = run_bounded(&["serve", "-c", config.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        // Past the key and the store: stopped by the homeserver refusing the token.
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("appservice.as_token"), "{mode:o}: {stderr}");
        assert!(Store::open_existing(&dir.path().join("data")).is_ok());
        let warning = format!("mimi.signing_key: {} has mode {mode:03o}", key.display());
        assert_eq!(stderr.contains(&warning), warned, "{mode:o}: {stderr}");
        if warned {
            let line = stderr.lines().find(|l| l.contains(&warning)).unwrap();
            assert!(line.contains("WARN") && line.contains(&format!("chmod 600 {}", key.display())), "{line}");
        }
    }
}

fn entries(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = walk(dir);
    found.sort();
    found
}

fn walk(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let path = e.unwrap().path();
            let name = path.display().to_string();
            if path.is_dir() {
                [vec![(name, Vec::new())], walk(&path)].concat()
            } else {
                vec![(name, std::fs::read(&path).unwrap())]
            }
        })
        .collect()
}

#[test]
fn a_non_empty_foreign_data_directory_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    write_key(&key, 0o600);
    let foreign = dir.path().join("home");
    std::fs::create_dir_all(foreign.join("photos")).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    std::fs::write(foreign.join("photos/cat.jpg"), [0xff, 0xd8]).unwrap();
    let before = entries(&foreign);

    let config = config(dir.path(), &key, &foreign, 1);
    let out = run_bounded(&["serve", "-c", config.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("database.path: {} is not a mimi-bridge data directory", foreign.display())),
        "{stderr}"
    );
    assert!(stderr.contains("notes.txt, photos"), "{stderr}");
    assert_eq!(entries(&foreign), before, "nothing written into it");

    let err = Store::open(&foreign).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert_eq!(entries(&foreign), before);
    // RocksDB's own files without CURRENT: a first open cut short, opened again.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    for name in ["LOCK", "LOG", "IDENTITY", "MANIFEST-000001", "000001.dbtmp"] {
        std::fs::write(interrupted.join(name), b"").unwrap();
    }
    drop(Store::open(&interrupted).unwrap());
    // An empty directory (made by the admin beforehand) is fine, and so is the store it becomes.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    drop(Store::open(&empty).unwrap());
    drop(Store::open(&empty).unwrap());
}
