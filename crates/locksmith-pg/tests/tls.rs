//! TLS against a real server with a certificate made for the test: each
//! `sslmode` encrypts, checks the chain and checks the name exactly as libpq does.

use std::path::Path;
use std::process::Command;

use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::cluster::{ClusterOptions, SUPERUSER_PASSWORD};
use locksmith_sandbox::Cluster;

/// A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for ca in ["ca", "other-ca"] {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    // The server runs as another OS user when we are root: it must be able to read its key, and only it.
    let postgres = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    if unsafe_geteuid() == 0 && postgres.status.success() {
        for f in ["server.crt", "server.key"] {
            let st = Command::new("chown")
                .args(["postgres", f])
                .current_dir(dir)
                .status()
                .unwrap();
            assert!(st.success());
        }
        Command::new("chmod")
            .args(["755"])
            .arg(dir)
            .status()
            .unwrap();
    }
    Command::new("chmod")
        .args(["600", "server.key"])
        .current_dir(dir)
        .status()
        .unwrap();
}

fn unsafe_geteuid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn is_encrypted(settings: &ConnectionSettings) -> Result<bool, String> {
    let client = settings.connect().await.map_err(|e| e.to_string())?;
    // The backend key is read back through the TLS negotiation too: a direct
    // server is never taken for a pooler, whatever the sslmode.
    assert_eq!(client.pooler(), None, "{settings:?}");
    let pid = client.backend_pid().await.unwrap();
    assert_eq!(client.announced_pid(), Some(pid), "{settings:?}");
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmodes_behave_like_libpq() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let path = |f: &str| dir.path().join(f).display().to_string();
    let cluster = Cluster::start_with(ClusterOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), path("server.crt")),
            ("ssl_key_file".into(), path("server.key")),
        ],
        ..ClusterOptions::default()
    })
    .unwrap();
    let url = |host: &str, params: &str| {
        format!(
            "postgresql://postgres:{SUPERUSER_PASSWORD}@{host}:{}/postgres?{params}",
            cluster.port()
        )
    };
    let settings = |u: String| ConnectionSettings::resolve_with(Some(&u), &|_| None).unwrap();

    assert_eq!(
        is_encrypted(&settings(url("127.0.0.1", "sslmode=disable"))).await,
        Ok(false)
    );
    assert_eq!(
        is_encrypted(&settings(url("127.0.0.1", "sslmode=prefer"))).await,
        Ok(true)
    );
    assert_eq!(
        is_encrypted(&settings(url("127.0.0.1", "sslmode=require"))).await,
        Ok(true)
    );
    let ca = path("ca.crt");
    let other = path("other-ca.crt");
    assert_eq!(
        is_encrypted(&settings(url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}")
        )))
        .await,
        Ok(true)
    );
    assert_eq!(
        is_encrypted(&settings(url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        )))
        .await,
        Ok(true)
    );

    // The certificate names 127.0.0.1, not localhost: verify-ca accepts it, verify-full does not.
    assert_eq!(
        is_encrypted(&settings(url(
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        )))
        .await,
        Ok(true)
    );
    let err = is_encrypted(&settings(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )))
    .await
    .unwrap_err();
    assert!(err.contains("localhost"), "{err}");
    assert!(!err.contains(SUPERUSER_PASSWORD), "{err}");

    // A chain to another CA is refused by both verifying modes, and by require once a root is given.
    for mode in ["verify-ca", "verify-full", "require"] {
        let err = is_encrypted(&settings(url(
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={other}"),
        )))
        .await
        .unwrap_err();
        assert!(err.to_lowercase().contains("certificate"), "{mode}: {err}");
    }

    // Verifying without any root certificate is a clear configuration error.
    let env = |k: &str| (k == "HOME").then(|| "/nonexistent".to_string());
    let s = ConnectionSettings::resolve_with(Some(&url("127.0.0.1", "sslmode=verify-full")), &env)
        .unwrap();
    let err = s.connect().await.unwrap_err().to_string();
    assert!(err.contains("sslrootcert"), "{err}");
}

/// Runs `openssl` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether psql (libpq + OpenSSL) connects with `conninfo`: the reference.
fn psql_connects(cluster: &Cluster, conninfo: &str) -> bool {
    Command::new(cluster.bin().tool("psql"))
        .args([conninfo, "-Atc", "SELECT 1"])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .output()
        .unwrap()
        .status
        .success()
}

/// Certificates psql accepts and webpki alone refuses: an X.509 v1 server
/// certificate signed by a CA (what `openssl x509 -req` makes without
/// extensions), and a self-signed certificate, v3 with `CA:TRUE` or v1, used
/// as its own root. locksmith accepts and refuses exactly where psql does,
/// host name checked under verify-full.
#[tokio::test]
async fn v1_and_self_signed_certificates_are_accepted_where_psql_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let d = dir.path();
    // v1: no extensions, so no subjectAltName; the name is in the Common Name.
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "v1.crt",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "self.key",
            "-out",
            "self.crt",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-signkey",
            "server.key",
            "-days",
            "2",
            "-out",
            "self-v1.crt",
        ],
    );
    // The server (maybe another OS user) reads every certificate and key.
    for f in ["v1.crt", "self.crt", "self.key", "self-v1.crt"] {
        let _ = Command::new("chown")
            .args(["--reference=server.key", f])
            .current_dir(d)
            .status();
    }
    let _ = Command::new("chmod")
        .args(["600", "self.key"])
        .current_dir(d)
        .status();
    let path = |f: &str| d.join(f).display().to_string();

    // (server certificate, its key, root given to the client)
    let servers = [
        ("v1.crt", "server.key", "ca.crt"),
        ("self.crt", "self.key", "self.crt"),
        ("self-v1.crt", "server.key", "self-v1.crt"),
    ];
    for (cert, key, root) in servers {
        let cluster = Cluster::start_with(ClusterOptions {
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), path(cert)),
                ("ssl_key_file".into(), path(key)),
            ],
            ..ClusterOptions::default()
        })
        .unwrap();
        let cases = [
            ("127.0.0.1", "verify-full", root, true),
            ("127.0.0.1", "verify-ca", root, true),
            ("localhost", "verify-ca", root, true),
            ("localhost", "verify-full", root, false),
            ("127.0.0.1", "verify-ca", "other-ca.crt", false),
        ];
        for (host, mode, trusted, accepted) in cases {
            let conninfo = format!(
                "host={host} port={} user=postgres dbname=postgres sslmode={mode} sslrootcert={}",
                cluster.port(),
                path(trusted)
            );
            let what = format!("server {cert}, {host}, {mode}, root {trusted}");
            assert_eq!(psql_connects(&cluster, &conninfo), accepted, "psql: {what}");
            let url = format!(
                "postgresql://postgres:{SUPERUSER_PASSWORD}@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
                cluster.port(),
                path(trusted)
            );
            let settings = ConnectionSettings::resolve_with(Some(&url), &|_| None).unwrap();
            let result = is_encrypted(&settings).await;
            match accepted {
                true => assert_eq!(result, Ok(true), "{what}"),
                false => assert!(result.is_err(), "{what}: accepted"),
            }
        }
    }
}
