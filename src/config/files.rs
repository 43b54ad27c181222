//! Files the configuration points at: access tokens, access keys, TLS certificates and keys.
//!
//! Formats:
//! - token file: the Graph API access token, nothing else; surrounding whitespace (the
//!   newline an editor adds) is trimmed.
//! - access keys file: one key per line; blank lines and lines starting with `#` are
//!   ignored; surrounding whitespace is trimmed.
//! - TLS: a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 RSA or
//!   SEC1 EC), which must belong together. Loaded into the `CertifiedKey` the TLS acceptor
//!   serves, so what `check-config` accepted is exactly what the gateway uses.
//!
//! Messages name the file and what is wrong with it, never its content.
//!
//! File modes: a token or key file that every user may read is not refused (git checkouts,
//! like this repository's examples, cannot carry mode 0600, and refusing would make the
//! shipped example fail), but it is reported as a note in `check-config`'s output and in
//! `Config::notes`.

use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::secret::Secret;

/// Why a file cannot be used: a message and what to do.
#[derive(Debug)]
pub(crate) struct FileIssue {
    pub message: String,
    pub hint: String,
}

impl FileIssue {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> FileIssue {
        FileIssue {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

const TOKEN_HINT: &str = "create it with the pixel's access token from Events Manager \
     (the pixel → Settings → Conversions API → Generate access token), mode 0600";

fn read_text(path: &Path, hint: &str) -> Result<String, FileIssue> {
    let bytes = std::fs::read(path)
        .map_err(|e| FileIssue::new(format!("cannot read `{}`: {e}", path.display()), hint))?;
    String::from_utf8(bytes)
        .map_err(|_| FileIssue::new(format!("`{}` is not UTF-8 text", path.display()), hint))
}

/// Reads a Graph API access token.
pub(crate) fn read_token(path: &Path) -> Result<Secret, FileIssue> {
    let text = read_text(path, TOKEN_HINT)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(FileIssue::new(
            format!("`{}` is empty", path.display()),
            TOKEN_HINT,
        ));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(FileIssue::new(
            format!(
                "`{}` holds more than one word; it must hold only the access token",
                path.display()
            ),
            "remove everything but the token from the file",
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FileIssue::new(
            format!(
                "`{}` holds characters that an access token cannot contain",
                path.display()
            ),
            "copy the token again from Events Manager into the file",
        ));
    }
    Ok(Secret::new(token))
}

/// Reads server-to-gateway access keys.
pub(crate) fn read_access_keys(path: &Path) -> Result<Vec<Secret>, FileIssue> {
    let hint = "write one access key per line (lines starting with # are comments), mode 0600";
    let text = read_text(path, hint)?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.chars().any(char::is_whitespace) || !line.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FileIssue::new(
                format!(
                    "line {} of `{}` is not one key: keys are printable ASCII without spaces",
                    n + 1,
                    path.display()
                ),
                hint,
            ));
        }
        keys.push(Secret::new(line));
    }
    if keys.is_empty() {
        return Err(FileIssue::new(
            format!("`{}` holds no access keys", path.display()),
            format!(
                "{hint}; or remove access_keys_file, which turns the server API off for this pixel"
            ),
        ));
    }
    Ok(keys)
}

/// A note when a secret file can be read by every user of the machine.
pub(crate) fn mode_note(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "`{}` is readable by every user (mode {:04o}): chmod 600 it (or 640 with group capig)",
            path.display(),
            mode & 0o7777
        )
    })
}

/// Which of the two TLS settings a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsPart {
    Cert,
    Key,
}

/// Loads a certificate chain and its private key and checks that they belong together.
pub(crate) fn load_certified_key(
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, (TlsPart, FileIssue)> {
    let cert_hint =
        "point tls_cert at a PEM file with the certificate chain, the domain's certificate first";
    let key_hint = "point tls_key at the PEM private key (PKCS#8, RSA or EC) of that certificate";
    let open = |path: &Path, part: TlsPart, hint: &str| {
        std::fs::File::open(path).map(BufReader::new).map_err(|e| {
            (
                part,
                FileIssue::new(format!("cannot read `{}`: {e}", path.display()), hint),
            )
        })
    };

    let mut reader = open(cert, TlsPart::Cert, cert_hint)?;
    let chain = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            (
                TlsPart::Cert,
                FileIssue::new(
                    format!("`{}` is not valid PEM: {e}", cert.display()),
                    cert_hint,
                ),
            )
        })?;
    if chain.is_empty() {
        let message = format!(
            "`{}` holds no certificate (no BEGIN CERTIFICATE block)",
            cert.display()
        );
        return Err((TlsPart::Cert, FileIssue::new(message, cert_hint)));
    }

    let mut reader = open(key, TlsPart::Key, key_hint)?;
    let private_key = rustls_pemfile::private_key(&mut reader)
        .map_err(|e| {
            (
                TlsPart::Key,
                FileIssue::new(
                    format!("`{}` is not valid PEM: {e}", key.display()),
                    key_hint,
                ),
            )
        })?
        .ok_or_else(|| {
            let message = format!(
                "`{}` holds no private key (no BEGIN … PRIVATE KEY block)",
                key.display()
            );
            (TlsPart::Key, FileIssue::new(message, key_hint))
        })?;

    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private_key, &provider)
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                let message = format!(
                    "the private key in `{}` does not belong to the certificate in `{}`",
                    key.display(),
                    cert.display()
                );
                (
                    TlsPart::Key,
                    FileIssue::new(
                        message,
                        "use the key that was generated with this certificate",
                    ),
                )
            }
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                let message = format!(
                    "the certificate in `{}` cannot be used: {e}",
                    cert.display()
                );
                (TlsPart::Cert, FileIssue::new(message, cert_hint))
            }
            other => {
                let message = format!(
                    "the private key in `{}` cannot be used: {other}",
                    key.display()
                );
                (TlsPart::Key, FileIssue::new(message, key_hint))
            }
        })
}
