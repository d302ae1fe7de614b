//! The remotecommand WebSocket subprotocols (`*.channel.k8s.io`) spoken by exec: which one to
//! use, and the frames. Every binary message starts with its channel byte. Shared by the
//! kubelet server and the API server's relay.

use serde::Deserialize;
use serde_json::{json, Value};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Status of the command: a `metav1.Status` (v4+) or plain text (v1).
pub const ERROR: u8 = 3;
/// Terminal size, JSON `{"Width":80,"Height":24}`.
pub const RESIZE: u8 = 4;
/// v5: the peer closes one of its streams; the payload is the channel number.
pub const CLOSE: u8 = 255;

/// The subprotocols served, worst to best (the derive orders them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// `channel.k8s.io`: channels 0-3, errors as text; also what a client offering none gets.
    V1,
    /// `v4.channel.k8s.io`: Status JSON on channel 3, resize on 4.
    V4,
    /// `v5.channel.k8s.io`: v4 plus stream close (channel 255).
    V5,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        [Protocol::V1, Protocol::V4, Protocol::V5]
            .into_iter()
            .find(|p| p.name() == s)
    }

    /// The best protocol among the offered `Sec-WebSocket-Protocol` header values (each a
    /// comma-separated list). `Ok(None)`: nothing offered; `Err`: only unknown ones offered.
    pub fn negotiate<'a>(
        offered: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Self>, String> {
        let names: Vec<&str> = offered
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        names
            .iter()
            .filter_map(|n| Self::from_name(n))
            .max()
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "requested protocol(s) are not supported: {names:?}; supports [{}, {}, {}]",
                    Protocol::V5.name(),
                    Protocol::V4.name(),
                    Protocol::V1.name()
                )
            })
    }
}

/// `data` on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 1);
    f.push(channel);
    f.extend_from_slice(data);
    f
}

/// How an exec ended, as sent on the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// The command could not be run at all.
    Failed(String),
}

/// The error-channel payload for `outcome` (without the channel byte); `None`: send nothing
/// (v1 reports only failures).
pub fn status_payload(proto: Protocol, outcome: &Outcome, command: &[String]) -> Option<Vec<u8>> {
    let status = match outcome {
        Outcome::Exited(0) if proto == Protocol::V1 => return None,
        Outcome::Exited(0) => json!({ "metadata": {}, "status": "Success" }),
        Outcome::Exited(code) => {
            let message = format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            );
            if proto == Protocol::V1 {
                return Some(message.into_bytes());
            }
            json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "NonZeroExitCode",
                "details": { "causes": [ { "reason": "ExitCode", "message": code.to_string() } ] },
            })
        }
        Outcome::Failed(message) => {
            if proto == Protocol::V1 {
                return Some(message.clone().into_bytes());
            }
            json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
                "code": 500,
            })
        }
    };
    Some(status.to_string().into_bytes())
}

/// The exit code in an error-channel payload: 0 for Success, the ExitCode cause for
/// NonZeroExitCode; `None` for anything else (a failure to run).
pub fn exit_code(payload: &[u8]) -> Option<i32> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    match v.get("status").and_then(Value::as_str)? {
        "Success" => Some(0),
        _ if v.get("reason").and_then(Value::as_str) == Some("NonZeroExitCode") => v
            .pointer("/details/causes")?
            .as_array()?
            .iter()
            .find(|c| c.get("reason").and_then(Value::as_str) == Some("ExitCode"))?
            .get("message")?
            .as_str()?
            .parse()
            .ok(),
        _ => None,
    }
}

/// The close every finished session ends with: client-go takes any other close (even one
/// without a code) as an error on every stream.
pub fn normal_close() -> actix_ws::CloseReason {
    actix_ws::CloseReason {
        code: actix_ws::CloseCode::Normal,
        description: None,
    }
}

/// A resize message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Size {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_best_offered_protocol() {
        assert_eq!(
            Protocol::negotiate(["channel.k8s.io, v5.channel.k8s.io", "v4.channel.k8s.io"]),
            Ok(Some(Protocol::V5))
        );
        assert_eq!(
            Protocol::negotiate(["base64.channel.k8s.io,v4.channel.k8s.io"]),
            Ok(Some(Protocol::V4))
        );
        assert_eq!(Protocol::negotiate([]), Ok(None));
        assert!(Protocol::negotiate(["base64.channel.k8s.io"]).is_err());
    }

    #[test]
    fn exit_status_round_trips() {
        let cmd = vec!["sh".to_string()];
        for code in [0, 3, 137] {
            let p = status_payload(Protocol::V5, &Outcome::Exited(code), &cmd).unwrap();
            assert_eq!(exit_code(&p), Some(code));
        }
        let failed = status_payload(Protocol::V4, &Outcome::Failed("boom".into()), &cmd).unwrap();
        assert_eq!(exit_code(&failed), None);
        assert_eq!(
            status_payload(Protocol::V1, &Outcome::Exited(0), &cmd),
            None
        );
    }

    #[test]
    fn resize_reads_kubectl_json() {
        let s: Size = serde_json::from_str(r#"{"Width":120,"Height":40}"#).unwrap();
        assert_eq!((s.width, s.height), (120, 40));
    }
}
