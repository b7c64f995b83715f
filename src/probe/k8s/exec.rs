//! Exec credential plugins (`users[].user.exec` in a kubeconfig): run the command through
//! Talon's subprocess runner (its own process group, killed with it at a timeout or when the
//! check is abandoned), read the `ExecCredential` it prints (JSON, or YAML as client-go also
//! accepts), and say when its token expires.

use super::kubeconfig::Exec;
use crate::proc::{Cmd, End};
use base64::Engine as _;
use serde::Deserialize;
use std::time::Duration;

/// What a plugin returned.
#[derive(Clone)]
pub(super) struct Credential {
    pub token: Option<String>,
    /// Client certificate and key, PEM, when the plugin hands out a certificate.
    pub identity_pem: Option<Vec<u8>>,
    /// Unix seconds after which the credential must be fetched again; `None` = never.
    pub expires: Option<i64>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "identity_pem",
                &self.identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("expires", &self.expires)
            .finish()
    }
}

#[derive(Deserialize)]
struct ExecCredential {
    #[serde(default)]
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    expiration_timestamp: Option<String>,
}

/// Run the plugin; the error is one line for "auth error: …".
pub(super) async fn run(exec: &Exec, timeout: Duration) -> Result<Credential, String> {
    let api_version = exec
        .api_version
        .clone()
        .unwrap_or_else(|| "client.authentication.k8s.io/v1".to_string());
    let info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    let cmd = Cmd::new(exec.command.clone())
        .args(exec.args.clone().unwrap_or_default())
        .envs(
            exec.env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone())),
        )
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .timeout(timeout);
    let done = cmd.run().await.map_err(|e| {
        format!(
            "exec credential plugin {} could not be started: {e}",
            exec.command
        )
    })?;
    if !done.end.success() {
        let said = if done.stderr.text().trim().is_empty() {
            done.stdout.text()
        } else {
            done.stderr.text()
        };
        let end = match done.end {
            End::Exited(c) => format!("exit status: {c}"),
            other => other.to_string(),
        };
        return Err(format!(
            "exec credential plugin failed ({end}): {}",
            super::text::clip(said.trim(), 200)
        ));
    }
    parse(&done.stdout.bytes).map_err(|e| {
        format!(
            "exec credential plugin {} printed no ExecCredential: {e}",
            exec.command
        )
    })
}

fn parse(out: &[u8]) -> Result<Credential, String> {
    let cred: ExecCredential = match serde_json::from_slice(out) {
        Ok(c) => c,
        Err(json) => serde_saphyr::from_slice(out).map_err(|_| json.to_string())?,
    };
    let s = cred.status.ok_or("no status")?;
    let b64 = |d: &str| base64::engine::general_purpose::STANDARD.decode(d.trim());
    let identity_pem = match (s.client_certificate_data, s.client_key_data) {
        // The ExecCredential carries PEM text; some plugins base64 it once more.
        (Some(c), Some(k)) => {
            let pem = |v: String| {
                if v.contains("-----BEGIN") {
                    v.into_bytes()
                } else {
                    b64(&v).unwrap_or_default()
                }
            };
            let mut p = pem(c);
            p.push(b'\n');
            p.extend(pem(k));
            Some(p)
        }
        _ => None,
    };
    let token = s.token.filter(|t| !t.is_empty());
    if token.is_none() && identity_pem.is_none() {
        return Err("neither a token nor a client certificate in its status".to_string());
    }
    let expires = match s.expiration_timestamp.filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            t.parse::<jiff::Timestamp>()
                .map_err(|e| format!("expirationTimestamp `{t}`: {e}"))?
                .as_second(),
        ),
    };
    Ok(Credential {
        token,
        identity_pem,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_credentials_read_as_json_or_yaml_with_expiry() {
        let c = parse(br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"2025-01-01T00:00:00Z"}}"#).unwrap();
        assert_eq!(c.token.as_deref(), Some("t"));
        assert_eq!(c.expires, Some(1_735_689_600));
        let c = parse(b"kind: ExecCredential\nstatus:\n  token: y\n").unwrap();
        assert_eq!((c.token.as_deref(), c.expires), (Some("y"), None));
        assert!(parse(b"{\"status\":{}}").unwrap_err().contains("neither"));
        assert!(parse(b"not: [valid").is_err());
    }

    proptest::proptest! {
        /// Whatever a plugin prints is a credential or an error, never a panic.
        #[test]
        fn any_plugin_output_is_a_credential_or_an_error(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            s in "(\\{|\\}|\"status\"|\"token\"|\"expirationTimestamp\"|: |,|\"x\"|\"2025-01-01T00:00:00Z\"|status|token)*",
        ) {
            let _ = parse(&raw);
            let _ = parse(s.as_bytes());
        }
    }
}
