//! Throwaway clusters: start, connect, stop, clean up — including when the
//! owning process panics or is killed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use locksmith_sandbox::Cluster;

fn data_dir_of(cluster: &Cluster) -> PathBuf {
    cluster.data_dir()
}

#[tokio::test]
async fn starts_serves_and_cleans_up_on_drop() {
    let cluster = Cluster::start().unwrap();
    assert!(cluster.ready_in() < Duration::from_secs(20));
    let client = cluster
        .settings("postgres", "test")
        .connect()
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), inet_server_addr()::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "off");
    let db = cluster.create_database("scratch").await.unwrap();
    let other = db.connect().await.unwrap();
    let name: String = other
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "scratch");
    let data = data_dir_of(&cluster);
    let root = data.parent().unwrap().to_path_buf();
    assert!(data.join("PG_VERSION").exists());
    drop(client);
    drop(other);
    drop(cluster);
    assert!(!root.exists(), "{} left behind", root.display());
}

#[tokio::test]
async fn wrong_password_is_refused_without_echoing_it() {
    let cluster = Cluster::start().unwrap();
    let err = cluster
        .settings("postgres", "test")
        .with_password("hunter2-wrong")
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", cluster.port())),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn many_clusters_at_once_do_not_clash() {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| Cluster::start().unwrap()))
        .collect();
    let clusters: Vec<Cluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ports: Vec<u16> = clusters.iter().map(|c| c.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    for c in &clusters {
        c.settings("postgres", "test").connect().await.unwrap();
    }
}

/// A child process starts a cluster, prints its port and folder, then panics
/// (or is killed): the guardian must stop the server and delete the folder.
#[test]
fn cleans_up_after_panic_and_kill() {
    for mode in ["panic", "kill"] {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_that_dies",
                "--nocapture",
                "--include-ignored",
            ])
            .env("LOCKSMITH_TEST_DIE", mode)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = String::new();
        use std::io::Read;
        if mode == "kill" {
            // Wait for the child to report its cluster, then kill -9 it.
            let mut stdout = child.stdout.take().unwrap();
            let mut buf = [0u8; 1];
            while !out.contains("END") {
                if stdout.read(&mut buf).unwrap() == 0 {
                    break;
                }
                out.push(buf[0] as char);
            }
            child.kill().unwrap();
            child.wait().unwrap();
        } else {
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child.wait().unwrap();
        }
        let line = out
            .lines()
            .find(|l| l.starts_with("CLUSTER "))
            .unwrap_or_else(|| panic!("{mode}: {out}"));
        let mut parts = line.split_whitespace().skip(1);
        let port: u16 = parts.next().unwrap().parse().unwrap();
        let root = PathBuf::from(parts.next().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (root.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!root.exists(), "{mode}: {} left behind", root.display());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{mode}: server still listening"
        );
    }
}

#[test]
#[ignore = "run by cleans_up_after_panic_and_kill in a child process"]
fn child_that_dies() {
    let Ok(mode) = std::env::var("LOCKSMITH_TEST_DIE") else {
        return;
    };
    let cluster = Cluster::start().unwrap();
    let root = data_dir_of(&cluster).parent().unwrap().to_path_buf();
    println!("CLUSTER {} {} END", cluster.port(), root.display());
    if mode == "panic" {
        // A panic inside a test unwinds and drops; abort does not. Either way nothing may remain.
        std::mem::forget(cluster);
        panic!("dying with the cluster leaked");
    }
    std::thread::sleep(Duration::from_secs(60));
}
