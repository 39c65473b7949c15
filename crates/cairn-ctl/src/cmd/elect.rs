//! `elect <election-name> [proposal]`: campaigns with a session and etcd's election
//! recipe, prints the leader key once elected and holds it until SIGINT or SIGTERM, then
//! resigns; with `-l`, prints the leader and every change of it until interrupted.
//!
//! Both modes use a session with etcd's default TTL (60 s), as etcdctl 3.5 does (it has no
//! `--ttl` flag for `elect`).

use cairn_client::concurrency::{Election, Session};
use cairn_proto::etcdserverpb::RangeRequest;

use super::lock::recipe_error;
use super::process::Interrupts;
use crate::global::{status_message, CtlError, Ctx, Format};
use crate::go::flags::{Kind, Spec};
use crate::output::printer::{print_kv, KvResponse, Simple};

/// `elect`'s flags.
pub const FLAGS: &[Spec] = &[Spec::short(
    "listen",
    'l',
    Kind::Bool,
    "false",
    "observation mode",
)];

/// The TTL of etcd's sessions when none is given.
const DEFAULT_TTL: i64 = 60;

/// `etcdctl elect <election-name> [proposal]`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 && args.len() != 2 {
        return Err(CtlError::bad_args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    let client = ctx.client()?;
    let listen = ctx.flags.bool("listen");
    if args.len() == 1 && !listen {
        return Err(CtlError::bad_args("no proposal argument but -l not set"));
    }
    if args.len() == 2 && listen {
        return Err(CtlError::bad_args("proposal given but -l is set"));
    }
    let format = ctx.format()?;
    let simple = Simple {
        hex: ctx.hex(),
        value_only: false,
    };
    let name = args[0].clone();
    let proposal = args.get(1).cloned();
    ctx.block_on(async move {
        let session = super::lock::session(&client, DEFAULT_TTL).await?;
        let mut election = Election::new(client.clone(), name.as_bytes());
        let mut interrupts = Interrupts::new().map_err(|e| CtlError::error(e.to_string()))?;
        match proposal {
            None => observe(&election, &mut interrupts, format, simple).await,
            Some(p) => {
                campaign(
                    &client,
                    &session,
                    &mut election,
                    &mut interrupts,
                    &p,
                    format,
                    simple,
                )
                .await
            }
        }
    })?
}

async fn observe(
    election: &Election,
    interrupts: &mut Interrupts,
    format: Format,
    simple: Simple,
) -> Result<(), CtlError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let print = async {
        while let Some(resp) = rx.recv().await {
            print_kv(format, simple, KvResponse::Get(&resp))?;
        }
        Ok::<(), CtlError>(())
    };
    tokio::select! {
        _ = interrupts.recv() => Ok(()),
        (_, printed) = async { tokio::join!(election.observe_ranges(tx), print) } => {
            printed?;
            Err(CtlError::error("elect: observer lost"))
        }
    }
}

async fn campaign(
    client: &cairn_client::Client,
    session: &Session,
    election: &mut Election,
    interrupts: &mut Interrupts,
    proposal: &str,
    format: Format,
    simple: Simple,
) -> Result<(), CtlError> {
    let won = tokio::select! {
        won = election.campaign(session.lease(), proposal.as_bytes()) => Some(won),
        _ = interrupts.recv() => None,
    };
    match won {
        Some(won) => won.map_err(recipe_error)?,
        None => {
            let _ = election.resign().await;
            return Err(CtlError::error("context canceled"));
        }
    }
    let got = client
        .kv()
        .range(RangeRequest {
            key: election.key().to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|s| status_message(&s))?
        .into_inner();
    print_kv(format, simple, KvResponse::Get(&got))?;
    tokio::select! {
        _ = interrupts.recv() => {}
        _ = session.done() => return Err(CtlError::error("elect: session expired")),
    }
    election.resign().await.map_err(recipe_error)
}
