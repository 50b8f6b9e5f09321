//! TLS through rustls against a server with ssl=on and a self-signed certificate.

use ruleiq_db::sandbox::{Cluster, ClusterOptions};

#[test]
fn sslmode_require_connects_encrypted_and_verify_full_rejects_an_untrusted_certificate() {
    let cluster = Cluster::start(&ClusterOptions { ssl: true }).expect("cluster with ssl");
    let url = cluster
        .url("postgres")
        .replace("sslmode=disable", "sslmode=require");
    let target =
        ruleiq_db::config::Target::resolve(Some(&url), &ruleiq_db::config::ProcessEnv).unwrap();
    let mut client = ruleiq_db::db::connect(&target).unwrap();
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted, "the session is encrypted");

    // The binary too, end to end.
    let out = assert_cmd::Command::cargo_bin("ruleiq-db")
        .unwrap()
        .args(["--database-url", &url, "--format", "json", "status"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // verify-full with a root that did not sign the server's certificate must refuse.
    let dir = tempfile::tempdir().unwrap();
    let other_root = dir.path().join("root.crt");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(dir.path().join("k"))
        .arg("-out")
        .arg(&other_root)
        .output()
        .unwrap();
    assert!(made.status.success());
    let strict = format!(
        "{}&sslrootcert={}",
        url.replace("sslmode=require", "sslmode=verify-full"),
        other_root.display()
    );
    let out = assert_cmd::Command::cargo_bin("ruleiq-db")
        .unwrap()
        .args(["--database-url", &strict, "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains(cluster.password()), "{stderr}");
}
