//! TLS through rustls against a server with ssl=on and a self-signed certificate.

use crate::common;
use ruleiq_db::sandbox::{self_signed_certificate, Cluster, ClusterOptions};

fn status(url: &str) -> (i32, String) {
    let run = common::run_bare(&["--database-url", url, "--format", "json", "status"], &[]);
    (run.code, run.stderr)
}

#[test]
fn every_sslmode_behaves_as_libpq_documents() {
    let cluster = Cluster::start(&ClusterOptions {
        ssl: true,
        ..Default::default()
    })
    .expect("cluster with ssl");
    let url = cluster
        .url("postgres")
        .replace("sslmode=disable", "sslmode=require");
    let target =
        ruleiq_db::db::config::Target::resolve(Some(&url), &ruleiq_db::db::config::ProcessEnv)
            .unwrap();
    let mut client = ruleiq_db::db::connect(&target).unwrap();
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted, "sslmode=require encrypts");

    // The binary too, end to end.
    let (code, stderr) = status(&url);
    assert_eq!(code, 0, "{stderr}");

    // verify-ca: the server's own certificate is its root; the host name is not checked.
    let root = cluster.certificate();
    let with_root = |mode: &str, host: &str, root: &std::path::Path| {
        format!(
            "{}&sslrootcert={}",
            url.replace("sslmode=require", &format!("sslmode={mode}"))
                .replace("127.0.0.1", host),
            root.display()
        )
    };
    let (code, stderr) = status(&with_root("verify-ca", "127.0.0.1", &root));
    assert_eq!(code, 0, "{stderr}");
    // verify-full also checks the name: the certificate says localhost, not 127.0.0.1.
    let (code, stderr) = status(&with_root("verify-full", "127.0.0.1", &root));
    assert_eq!(code, 1, "{stderr}");
    let (code, stderr) = status(&with_root("verify-full", "localhost", &root));
    assert_eq!(code, 0, "{stderr}");

    // A root that did not sign the server's certificate is refused, and says nothing secret.
    let dir = tempfile::tempdir().unwrap();
    let other_root = dir.path().join("root.crt");
    self_signed_certificate(&dir.path().join("k"), &other_root, "other").unwrap();
    let (code, stderr) = status(&with_root("verify-ca", "127.0.0.1", &other_root));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
    assert!(!stderr.contains(cluster.password()), "{stderr}");
}
