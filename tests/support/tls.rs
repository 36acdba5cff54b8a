//! Throw-away TLS material for a test registry, made with the `openssl` CLI.
//!
//! A private CA signs a server certificate valid for `127.0.0.1` and
//! `localhost`. Clients trust the CA certificate ([`TlsMaterial::ca_cert`]).
//! A separate CA (rather than one self-signed leaf) keeps strict verifiers
//! such as webpki/rustls happy: they reject a certificate marked `CA:TRUE`
//! when it is presented as the server's own certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::require_tool;

/// Paths of the PEM files produced by [`generate`].
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// CA certificate that clients must trust.
    pub ca_cert: PathBuf,
    /// Server certificate (leaf, signed by the CA).
    pub server_cert: PathBuf,
    /// Unencrypted server private key.
    pub server_key: PathBuf,
}

/// Generates a CA and a server certificate for `127.0.0.1`/`localhost`,
/// valid for two days, into `dir`.
pub fn generate(dir: &Path) -> TlsMaterial {
    require_tool("openssl");
    let material = TlsMaterial {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    let ca_key = dir.join("ca.key");
    let csr = dir.join("server.csr");
    let extensions = dir.join("server.ext");
    std::fs::write(
        &extensions,
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .expect("write certificate extensions");

    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ocistep test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path_str(&ca_key),
            "-out",
            path_str(&material.ca_cert),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            path_str(&material.server_key),
            "-out",
            path_str(&csr),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-set_serial",
            "2",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&material.ca_cert),
            "-CAkey",
            path_str(&ca_key),
            "-extfile",
            path_str(&extensions),
            "-out",
            path_str(&material.server_cert),
        ],
    );
    material
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("RANDFILE", dir.join(".rnd"))
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
