//! The closed loop: connections, clients, and the requests each workload makes.
//!
//! `--conns` connections are dialled up front (each a tonic `Channel`, so each its own
//! HTTP/2 connection), round-robin over the endpoints. Client `i` uses connection
//! `i % conns` and keeps one request in flight: it takes the next request number from a
//! shared counter, sends it, waits, records the latency, and repeats until `--total`
//! numbers are taken or the deadline passes. A request still in flight at the deadline is
//! dropped and not counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, ClientConfig, Service};
use cairn_proto::etcdserverpb::{
    compare, kv_client::KvClient, request_op, AuthenticateRequest, Compare, DefragmentRequest,
    PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use tokio::time::Instant;

use crate::args::{Args, Consistency, KeyArgs, Workload};
use crate::report::Report;
use crate::Error;

/// One request kind with everything needed to build request number `n`.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put {
        keys: KeyGen,
        value: Vec<u8>,
    },
    Range {
        keys: KeyGen,
        serializable: bool,
    },
    Txn {
        keys: KeyGen,
        value: Vec<u8>,
    },
    /// The same (large, nested) txn each time.
    Fixed(Box<TxnRequest>),
    PutPrefixed {
        prefix: Vec<u8>,
        key_size: usize,
        value: Vec<u8>,
    },
    /// Logs in over the client's connection.
    Authenticate(AuthenticateRequest),
    /// Dials a new connection with this configuration (its endpoints taken round-robin)
    /// and asks for the member's status over it.
    Connect(ClientConfig),
}

/// Picks the key of request number `n`: in order or at random over the key space.
#[derive(Debug, Clone)]
pub(crate) struct KeyGen {
    pub key_size: usize,
    pub space: u64,
    pub sequential: bool,
}

impl KeyGen {
    pub(crate) fn from_args(k: &KeyArgs) -> KeyGen {
        KeyGen {
            key_size: k.key_size,
            space: k.key_space_size,
            sequential: k.sequential_keys,
        }
    }

    pub(crate) fn key(&self, n: u64, rng: &mut Rng) -> Vec<u8> {
        let index = if self.sequential {
            n % self.space
        } else {
            rng.below(self.space)
        };
        key_bytes(index, self.key_size)
    }
}

/// `index` big-endian in the last (up to 8) bytes of a zero-filled key of `size` bytes.
pub(crate) fn key_bytes(index: u64, size: usize) -> Vec<u8> {
    let mut key = vec![0u8; size];
    let be = index.to_be_bytes();
    let n = size.min(8);
    key[size - n..].copy_from_slice(&be[8 - n..]);
    key
}

/// splitmix64: a small, fast generator, plenty for picking keys.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` pseudo-random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

impl Op {
    pub(crate) async fn send(
        &self,
        conn: &Client,
        kv: &mut KvClient<Service>,
        n: u64,
        rng: &mut Rng,
    ) -> Result<(), tonic::Status> {
        match self {
            Op::Authenticate(req) => conn.auth().authenticate(req.clone()).await.map(drop),
            Op::Connect(config) => {
                let Some(ep) = config
                    .endpoints
                    .get(n as usize % config.endpoints.len().max(1))
                else {
                    return Err(tonic::Status::invalid_argument("--endpoints is empty"));
                };
                let mut config = config.clone();
                config.endpoints = vec![ep.clone()];
                let fresh = Client::connect_direct(config)
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                fresh
                    .maintenance()
                    .status(StatusRequest::default())
                    .await
                    .map(drop)
            }
            Op::Put { keys, value } => {
                let req = PutRequest {
                    key: keys.key(n, rng),
                    value: value.clone(),
                    ..PutRequest::default()
                };
                kv.put(req).await.map(drop)
            }
            Op::PutPrefixed {
                prefix,
                key_size,
                value,
            } => {
                let mut key = prefix.clone();
                key.extend_from_slice(&rng.bytes(*key_size));
                let req = PutRequest {
                    key,
                    value: value.clone(),
                    ..PutRequest::default()
                };
                kv.put(req).await.map(drop)
            }
            Op::Range { keys, serializable } => {
                let req = RangeRequest {
                    key: keys.key(n, rng),
                    serializable: *serializable,
                    ..RangeRequest::default()
                };
                kv.range(req).await.map(drop)
            }
            Op::Txn { keys, value } => {
                let key = keys.key(n, rng);
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: compare::CompareResult::Less as i32,
                        target: compare::CompareTarget::Mod as i32,
                        key: key.clone(),
                        target_union: Some(compare::TargetUnion::ModRevision(i64::MAX)),
                        ..Compare::default()
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key,
                            value: value.clone(),
                            ..PutRequest::default()
                        })),
                    }],
                    failure: Vec::new(),
                };
                kv.txn(req).await.map(drop)
            }
            Op::Fixed(req) => kv.txn((**req).clone()).await.map(drop),
        }
    }
}

/// A txn nested as `shape` says (`[a, b, c]`: `a` txns of `b` txns of `c` puts), its
/// puts on distinct keys: the decimal number of each put, padded to `key_size` bytes.
fn nested_txn(shape: &[usize], key_size: usize, value: &[u8]) -> TxnRequest {
    fn level(shape: &[usize], next: &mut u64, key_size: usize, value: &[u8]) -> Vec<RequestOp> {
        let Some((&n, rest)) = shape.split_first() else {
            return Vec::new();
        };
        (0..n)
            .map(|_| {
                let request = if rest.is_empty() {
                    *next += 1;
                    request_op::Request::RequestPut(PutRequest {
                        key: format!("{:0key_size$}", *next).into_bytes(),
                        value: value.to_vec(),
                        ..PutRequest::default()
                    })
                } else {
                    request_op::Request::RequestTxn(TxnRequest {
                        success: level(rest, next, key_size, value),
                        ..TxnRequest::default()
                    })
                };
                RequestOp {
                    request: Some(request),
                }
            })
            .collect()
    }
    TxnRequest {
        success: level(shape, &mut 0, key_size, value),
        ..TxnRequest::default()
    }
}

/// How to reach the servers: endpoints, dial timeout, user and CA bundle.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dial<'a> {
    pub endpoints: &'a [String],
    pub dial_timeout: Duration,
    /// `name:password`.
    pub user: Option<&'a str>,
    pub cacert: Option<&'a str>,
}

impl<'a> Dial<'a> {
    pub(crate) fn from_args(args: &'a Args) -> Dial<'a> {
        Dial {
            endpoints: &args.endpoints,
            dial_timeout: args.dial_timeout,
            user: args.user.as_deref(),
            cacert: args.cacert.as_deref(),
        }
    }

    /// The user's name and password.
    fn credentials(&self) -> Result<Option<(String, String)>, Error> {
        match self.user {
            None => Ok(None),
            Some(u) => match u.split_once(':') {
                Some((n, p)) => Ok(Some((n.to_string(), p.to_string()))),
                None => Err(Error::Args("--user must be name:password".to_string())),
            },
        }
    }

    /// A client configuration for `endpoints`, logged in as the user when `log_in`.
    fn config(&self, endpoints: Vec<String>, log_in: bool) -> Result<ClientConfig, Error> {
        let mut cfg = ClientConfig::new(endpoints);
        cfg.dial_timeout = self.dial_timeout;
        cfg.cacert = self.cacert.map(str::to_string);
        if let (true, Some((user, password))) = (log_in, self.credentials()?) {
            cfg.user = Some(user);
            cfg.password = Some(password);
        }
        Ok(cfg)
    }
}

/// Dials `conns` connections round-robin over the endpoints.
pub(crate) async fn connect(dial: &Dial<'_>, conns: usize) -> Result<Vec<Client>, Error> {
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        let Some(ep) = dial.endpoints.get(i % dial.endpoints.len().max(1)) else {
            return Err(Error::Args("--endpoints is empty".to_string()));
        };
        out.push(Client::connect_direct(dial.config(vec![ep.clone()], true)?).await?);
    }
    Ok(out)
}

/// How many requests to make and when to stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub clients: usize,
    pub total: u64,
    pub deadline: Instant,
    pub request_timeout: Duration,
}

/// What one client saw.
struct ClientResult {
    latencies: Vec<f64>,
    /// When each successful request began, seconds from the run's start (same order).
    began: Vec<f64>,
    errors: BTreeMap<String, u64>,
    cut: bool,
}

/// The text an error is counted under.
pub(crate) fn error_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Runs the closed loop and reports it.
pub(crate) async fn drive(name: &str, conns: &[Client], op: Op, bounds: Bounds) -> Report {
    let never = Arc::new(AtomicBool::new(false));
    drive_until(name, conns, op, bounds, never, Instant::now())
        .await
        .0
}

/// [`drive`], also ending once `stop` is set (requests in flight then finish and count),
/// and returning each successful request's (start, latency), seconds from `start`.
async fn drive_until(
    name: &str,
    conns: &[Client],
    op: Op,
    bounds: Bounds,
    stop: Arc<AtomicBool>,
    start: Instant,
) -> (Report, Vec<(f64, f64)>) {
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let per_client = usize::try_from(bounds.total / bounds.clients.max(1) as u64 + 1)
        .unwrap_or(0)
        .min(1 << 20);
    let mut tasks = Vec::with_capacity(bounds.clients);
    for i in 0..bounds.clients {
        let Some(conn) = conns.get(i % conns.len().max(1)) else {
            break;
        };
        let conn = conn.clone();
        let mut kv = conn.kv();
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(i as u64 + 1);
            let mut res = ClientResult {
                latencies: Vec::with_capacity(per_client),
                began: Vec::with_capacity(per_client),
                errors: BTreeMap::new(),
                cut: false,
            };
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.total {
                    break;
                }
                let began = Instant::now();
                if began >= bounds.deadline {
                    res.cut = true;
                    break;
                }
                let limit = (began + bounds.request_timeout).min(bounds.deadline);
                match tokio::time::timeout_at(limit, op.send(&conn, &mut kv, n, &mut rng)).await {
                    Ok(Ok(())) => {
                        res.latencies.push(began.elapsed().as_secs_f64());
                        res.began.push((began - start).as_secs_f64());
                    }
                    Ok(Err(status)) => *res.errors.entry(error_text(&status)).or_insert(0) += 1,
                    Err(_) if limit == bounds.deadline => {
                        res.cut = true;
                        break;
                    }
                    Err(_) => {
                        *res.errors
                            .entry("request timed out".to_string())
                            .or_insert(0) += 1
                    }
                }
            }
            res
        }));
    }
    let mut latencies = Vec::with_capacity(usize::try_from(bounds.total).unwrap_or(0).min(1 << 24));
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut cut = false;
    let mut spans = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => {
                spans.extend(r.began.iter().copied().zip(r.latencies.iter().copied()));
                latencies.extend(r.latencies);
                for (e, n) in r.errors {
                    *errors.entry(e).or_insert(0) += n;
                }
                cut |= r.cut;
            }
            Err(e) => {
                *errors
                    .entry(format!("client task failed: {e}"))
                    .or_insert(0) += 1
            }
        }
    }
    let elapsed = start.elapsed();
    (Report::new(name, latencies, errors, elapsed, cut), spans)
}

/// The latencies of the requests (start, latency) in flight at some point of [from, to].
fn overlapping(spans: &[(f64, f64)], from: f64, to: f64) -> Vec<f64> {
    spans
        .iter()
        .filter(|(began, took)| *began <= to && began + took >= from)
        .map(|(_, took)| *took)
        .collect()
}

/// Runs the put loop and, `around` after it starts, a Defragment of the first connection's
/// member; ends the loop `around` after the Defragment returns.
async fn drive_with_defrag(
    conns: &[Client],
    op: Op,
    bounds: Bounds,
    around: Duration,
) -> Result<Report, Error> {
    let Some(first) = conns.first() else {
        return Err(Error::Args("--endpoints is empty".to_string()));
    };
    let mut maintenance = first.maintenance();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let run = {
        let (conns, stop) = (conns.to_vec(), Arc::clone(&stop));
        tokio::spawn(async move { drive_until("put", &conns, op, bounds, stop, start).await })
    };
    tokio::time::sleep(around).await;
    let from = start.elapsed().as_secs_f64();
    let result = maintenance.defragment(DefragmentRequest {}).await;
    let to = start.elapsed().as_secs_f64();
    tokio::time::sleep(around).await;
    stop.store(true, Ordering::Relaxed);
    let (mut report, spans) = run
        .await
        .map_err(|e| Error::Args(format!("the put loop failed: {e}")))?;
    let during = overlapping(&spans, from, to);
    let error = result.err().map(|s| error_text(&s));
    if let Some(e) = &error {
        *report.errors.entry(format!("defragment: {e}")).or_insert(0) += 1;
    }
    report.defrag = Some(crate::report::DefragFigures {
        took: to - from,
        slowest_put: during.iter().copied().fold(0.0, f64::max),
        puts: during.len() as u64,
        error,
    });
    Ok(report)
}

/// Runs one benchmark as `args` describe.
pub(crate) async fn run(args: &Args) -> Result<Report, Error> {
    args.validate()?;
    let dial = Dial::from_args(args);
    let conns = connect(&dial, args.conns).await?;
    let mut rng = Rng::new(0xC0FFEE);
    let name = args.workload.name();
    let bounds = Bounds {
        clients: args.clients,
        total: args.total,
        deadline: Instant::now() + args.max_duration,
        request_timeout: args.request_timeout,
    };
    // Range watchers held open during a put run.
    let mut _held = None;
    let op = match &args.workload {
        Workload::GwPut(p) => return crate::gateway::put(args, p, bounds, &mut rng).await,
        Workload::Watch(w) => return crate::streams::watch_latency(&conns, w, bounds).await,
        Workload::WatchHold(w) => {
            let json = args.json;
            let print = move |r: &Report| {
                if json {
                    println!("{}", r.to_json());
                } else {
                    print!("{r}");
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
            };
            return crate::streams::watch_hold(&conns, w, print).await;
        }
        Workload::LeaseKeepalive(l) => {
            return crate::streams::lease_keepalive(&conns, l, bounds).await
        }
        Workload::Authenticate => {
            let (name, password) = dial.credentials()?.unwrap_or_default();
            Op::Authenticate(AuthenticateRequest { name, password })
        }
        // Each new connection asks without logging in: the cost measured is the dial's.
        Workload::Connect => Op::Connect(dial.config(args.endpoints.clone(), false)?),
        Workload::Put(p) if p.defrag_around.is_some() => {
            let op = Op::Put {
                keys: KeyGen::from_args(&p.keys),
                value: rng.bytes(p.keys.val_size),
            };
            let around = p.defrag_around.unwrap_or_default();
            return drive_with_defrag(&conns, op, bounds, around).await;
        }
        Workload::Put(p) => {
            if p.range_watchers > 0 {
                _held = Some(
                    crate::streams::open_range_watches(&conns, p.range_watchers, p.watch_streams)
                        .await?,
                );
            }
            Op::Put {
                keys: KeyGen::from_args(&p.keys),
                value: rng.bytes(p.keys.val_size),
            }
        }
        Workload::Txn(t) if !t.nested.is_empty() => Op::Fixed(Box::new(nested_txn(
            &t.nested,
            t.keys.key_size,
            &rng.bytes(t.keys.val_size),
        ))),
        Workload::Txn(t) => Op::Txn {
            keys: KeyGen::from_args(&t.keys),
            value: rng.bytes(t.keys.val_size),
        },
        Workload::Range(r) => {
            // Write every key once, in order, before the measured run.
            let load = Op::Put {
                keys: KeyGen {
                    key_size: r.key_size,
                    space: r.key_space_size,
                    sequential: true,
                },
                value: rng.bytes(r.val_size),
            };
            let bounds = Bounds {
                clients: args.clients,
                total: r.key_space_size,
                deadline: Instant::now() + args.max_duration,
                request_timeout: args.request_timeout,
            };
            let pre = drive("preload", &conns, load, bounds).await;
            if pre.failed() > 0 || pre.cut_short {
                return Err(Error::Preload(format!(
                    "{} of {} keys written; errors: {:?}",
                    pre.ok, r.key_space_size, pre.errors
                )));
            }
            Op::Range {
                keys: KeyGen {
                    key_size: r.key_size,
                    space: r.key_space_size,
                    sequential: r.sequential_keys,
                },
                serializable: r.consistency == Consistency::S,
            }
        }
    };
    let bounds = Bounds {
        clients: args.clients,
        total: args.total,
        deadline: Instant::now() + args.max_duration,
        request_timeout: args.request_timeout,
    };
    Ok(drive(name, &conns, op, bounds).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_big_endian_in_the_tail() {
        assert_eq!(key_bytes(0x0102, 4), vec![0, 0, 1, 2]);
        assert_eq!(key_bytes(0x0102, 10), vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(key_bytes(0x0102, 1), vec![2]);
        let g = KeyGen {
            key_size: 8,
            space: 3,
            sequential: true,
        };
        let mut rng = Rng::new(1);
        let seq: Vec<u8> = (0..5).map(|n| g.key(n, &mut rng)[7]).collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1]);
        let r = KeyGen {
            sequential: false,
            ..g
        };
        assert!((0..100).all(|n| r.key(n, &mut rng)[7] < 3));
    }

    #[test]
    fn puts_in_flight_during_the_defragment_are_the_ones_counted() {
        // Defragment from 10 s to 12 s.
        let cases = [
            ((1.0, 2.0), false),  // ended before
            ((9.0, 0.5), false),  // ended just before
            ((9.5, 3.0), true),   // waited through all of it
            ((9.9, 0.2), true),   // ended during
            ((11.0, 0.1), true),  // within
            ((11.9, 1.0), true),  // began during
            ((12.5, 0.1), false), // began after
        ];
        let spans: Vec<_> = cases.iter().map(|(s, _)| *s).collect();
        let want: Vec<f64> = cases.iter().filter(|(_, c)| *c).map(|(s, _)| s.1).collect();
        assert_eq!(overlapping(&spans, 10.0, 12.0), want);
    }

    #[test]
    fn random_bytes_have_the_asked_length() {
        let mut rng = Rng::new(7);
        assert_eq!(rng.bytes(0).len(), 0);
        assert_eq!(rng.bytes(13).len(), 13);
        assert_ne!(rng.bytes(16), rng.bytes(16));
    }
}
