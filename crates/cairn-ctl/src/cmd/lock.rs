//! `lock <lockname> [exec-command ...]`: takes the named lock with a session and etcd's
//! mutex recipe; prints the lock's key and holds it until SIGINT or SIGTERM, or runs the
//! command with `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` set and releases it after.
//!
//! As etcdctl, the session's lease is not revoked at the end: releasing deletes the key,
//! and the lease expires on its own once nothing keeps it alive.

use cairn_client::concurrency::{self, Mutex, Session};
use cairn_proto::etcdserverpb::RangeRequest;

use super::process::{self, Interrupts};
use crate::global::{status_message, CtlError, Ctx, ExitCode};
use crate::go::flags::{Kind, Spec};
use crate::output::printer::{print_kv, KvResponse, Simple};

/// `lock`'s flags.
pub const FLAGS: &[Spec] = &[Spec::new("ttl", Kind::Int, "10", "timeout for session")];

/// The text etcdctl prints for a failed recipe step.
pub fn recipe_error(e: concurrency::Error) -> CtlError {
    match e {
        concurrency::Error::Status(s) => status_message(&s),
        other => CtlError::error(other.to_string()),
    }
}

/// The session TTL etcd's concurrency package uses for `ttl`: its default of 60 s unless
/// `ttl` is positive.
pub fn session_ttl(ttl: i64) -> i64 {
    if ttl > 0 {
        ttl
    } else {
        60
    }
}

/// A session with a lease of `ttl` seconds. Like clientv3, whose calls wait for a
/// connection, an unreachable cluster is waited for rather than reported.
pub async fn session(client: &cairn_client::Client, ttl: i64) -> Result<Session, CtlError> {
    loop {
        match Session::new(client.clone(), ttl).await {
            Err(concurrency::Error::Status(s)) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other.map_err(recipe_error),
        }
    }
}

/// `etcdctl lock <lockname> [exec-command arg1 arg2 ...]`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.is_empty() {
        return Err(CtlError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    }
    let client = ctx.client()?;
    let format = ctx.format()?;
    let simple = Simple {
        hex: ctx.hex(),
        value_only: false,
    };
    let ttl = session_ttl(ctx.flags.int("ttl"));
    let name = args[0].clone();
    let command = args[1..].to_vec();
    ctx.block_on(async move {
        let session = session(&client, ttl).await?;
        let mut interrupts = Interrupts::new().map_err(|e| CtlError::error(e.to_string()))?;
        let mut mutex = Mutex::new(client.clone(), name.as_bytes());
        tokio::select! {
            locked = mutex.lock(session.lease()) => locked.map_err(recipe_error)?,
            _ = interrupts.recv() => {
                let _ = mutex.unlock().await;
                return Err(CtlError::error("context canceled"));
            }
        }
        if !command.is_empty() {
            let rev = mutex.header().map_or(0, |h| h.revision);
            let env = vec![
                (
                    "ETCD_LOCK_KEY".to_string(),
                    String::from_utf8_lossy(mutex.key()).into_owned(),
                ),
                ("ETCD_LOCK_REV".to_string(), rev.to_string()),
            ];
            let ran = tokio::task::spawn_blocking(move || process::run(&command, &env, true))
                .await
                .map_err(|e| CtlError::error(e.to_string()))?;
            let unlocked = mutex.unlock().await;
            if let Err(e) = ran {
                let code = match e.exit_code {
                    Some(c) => return Err(CtlError::exit_with((c & 0xff) as u8, e.msg)),
                    None => ExitCode::Error,
                };
                return Err(CtlError::new(code, e.msg));
            }
            return unlocked.map(|_| ()).map_err(recipe_error);
        }
        let got = client
            .kv()
            .range(RangeRequest {
                key: mutex.key().to_vec(),
                ..Default::default()
            })
            .await
            .map_err(|s| status_message(&s))?
            .into_inner();
        if got.kvs.is_empty() {
            return Err(CtlError::error("lock lost on init"));
        }
        print_kv(format, simple, KvResponse::Get(&got))?;
        tokio::select! {
            _ = interrupts.recv() => {
                mutex.unlock().await.map(|_| ()).map_err(recipe_error)
            }
            _ = session.done() => Err(CtlError::error("session expired")),
        }
    })?
}
