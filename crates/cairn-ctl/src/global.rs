//! Global flags, `ETCDCTL_*` environment variables, exit codes, the client, and how
//! errors are reported.
//!
//! As in etcdctl, the environment is read only when a command builds its client: a
//! variable fills a global flag not given on the command line, a variable that shadows a
//! given flag is fatal, and an unknown `ETCDCTL_*` variable is warned about. Each failed
//! RPC logs the Go client's `retrying of unary invoker failed` warning before the
//! `Error: ...` line.
//!
//! Uses only the Go layer ([`crate::go`]); the printers and the commands build on it.

use std::future::Future;
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig};

use crate::go::flags::{Kind, Spec, Values};
use crate::go::{gofmt, prompt};

/// etcdctl's exit codes (its `ExitIO`, 6, is one no cairnctl command exits with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// A request failed.
    Error = 1,
    /// The cluster could not be reached.
    BadConnection = 2,
    /// Malformed input (e.g. a txn line).
    InvalidInput = 3,
    /// An unsupported output format or feature.
    BadFeature = 4,
    /// Interrupted.
    Interrupted = 5,
    /// Wrong arguments.
    BadArgs = 128,
}

/// An error that ends the command: shown on stderr (as `Error: msg` unless it says
/// otherwise), then cairnctl exits with `code`.
#[derive(Debug, Clone)]
pub struct CtlError {
    /// Exit code.
    pub code: ExitCode,
    /// Message after `Error: `.
    pub msg: String,
    /// An exit status other than `code`'s: a user command's, which `lock` passes on, or
    /// Go's 2 for a panic.
    pub status: Option<u8>,
    /// How the error is shown.
    shown: Shown,
}

/// What the user sees of a [`CtlError`] before cairnctl exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// `Error: msg`, as etcdctl's `ExitWithError` prints it.
    Error,
    /// `panic: msg`: the start of the Go runtime's report of a panic etcdctl dies of (its
    /// goroutine traces are not reproduced).
    Panic,
    /// Nothing more: the command has printed its failure, as etcdctl does before an
    /// `os.Exit` of its own.
    Nothing,
}

impl CtlError {
    /// An error with the given code.
    pub fn new(code: ExitCode, msg: impl Into<String>) -> CtlError {
        CtlError {
            code,
            msg: msg.into(),
            status: None,
            shown: Shown::Error,
        }
    }

    /// An error (exit code 1 in kind) that exits with `status` instead.
    pub fn exit_with(status: u8, msg: impl Into<String>) -> CtlError {
        CtlError {
            status: Some(status),
            ..CtlError::error(msg)
        }
    }

    /// Bad arguments (exit 128).
    pub fn bad_args(msg: impl Into<String>) -> CtlError {
        CtlError::new(ExitCode::BadArgs, msg)
    }

    /// A failed request (exit 1).
    pub fn error(msg: impl Into<String>) -> CtlError {
        CtlError::new(ExitCode::Error, msg)
    }

    /// The end of a command that has printed its failure itself: exit with `code`,
    /// printing nothing more.
    pub fn printed(code: ExitCode) -> CtlError {
        CtlError {
            shown: Shown::Nothing,
            ..CtlError::new(code, "")
        }
    }

    /// A Go panic etcdctl dies of: `panic: msg` (`msg` as far as cairnctl reproduces
    /// Go's report), exit status 2.
    pub fn go_panic(msg: impl Into<String>) -> CtlError {
        CtlError {
            status: Some(2),
            shown: Shown::Panic,
            ..CtlError::error(msg)
        }
    }

    /// What the error prints on stderr.
    pub fn text(&self) -> String {
        match self.shown {
            Shown::Error => format!("Error: {}\n", self.msg),
            Shown::Panic => format!("panic: {}\n", self.msg),
            Shown::Nothing => String::new(),
        }
    }

    /// The exit code.
    pub fn exit_code(&self) -> i32 {
        self.status.map_or(self.code as i32, i32::from)
    }

    /// Prints the error and returns the exit code.
    pub fn report(&self) -> i32 {
        eprint!("{}", self.text());
        self.exit_code()
    }

    /// Prints the error now; returns it as printed, to end the command with its exit
    /// code.
    pub fn reported(self) -> CtlError {
        eprint!("{}", self.text());
        CtlError {
            shown: Shown::Nothing,
            ..self
        }
    }
}

/// The flags every command inherits from the root.
pub const GLOBAL_FLAGS: &[Spec] = &[
    Spec::new("cacert", Kind::Str, "", "verify certificates of TLS-enabled secure servers using this CA bundle"),
    Spec::new("cert", Kind::Str, "", "identify secure client using this TLS certificate file"),
    Spec::new("command-timeout", Kind::Duration, "5s", "timeout for short running command (excluding dial timeout)"),
    Spec::new("debug", Kind::Bool, "false", "enable client-side debug logging"),
    Spec::new("dial-timeout", Kind::Duration, "2s", "dial timeout for client connections"),
    Spec::short("discovery-srv", 'd', Kind::Str, "", "domain name to query for SRV records describing cluster endpoints"),
    Spec::new("discovery-srv-name", Kind::Str, "", "service name to query when using DNS discovery"),
    Spec::new("endpoints", Kind::StrSlice, "[127.0.0.1:2379]", "gRPC endpoints"),
    Spec::new("hex", Kind::Bool, "false", "print byte strings as hex encoded strings"),
    Spec::new("insecure-discovery", Kind::Bool, "true", "accept insecure SRV records describing cluster endpoints"),
    Spec::new("insecure-skip-tls-verify", Kind::Bool, "false", "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)"),
    Spec::new("insecure-transport", Kind::Bool, "true", "disable transport security for client connections"),
    Spec::new("keepalive-time", Kind::Duration, "2s", "keepalive time for client connections"),
    Spec::new("keepalive-timeout", Kind::Duration, "6s", "keepalive timeout for client connections"),
    Spec::new("key", Kind::Str, "", "identify secure client using this TLS key file"),
    Spec::new("password", Kind::Str, "", "password for authentication (if this option is used, --user option shouldn't include password)"),
    Spec::new("user", Kind::Str, "", "username[:password] for authentication (prompt if password is not supplied)"),
    Spec::short("write-out", 'w', Kind::Str, "simple", "set the output format (fields, json, protobuf, simple, table)"),
];

/// An output format (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `simple`.
    Simple,
    /// `json`.
    Json,
    /// `fields`.
    Fields,
    /// `table`.
    Table,
    /// `protobuf`.
    Protobuf,
}

impl Format {
    /// The name as given to `-w`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }

    /// The error etcdctl gives when this format cannot print a response.
    pub fn unsupported(self) -> CtlError {
        CtlError::new(
            ExitCode::BadFeature,
            format!("{} not supported as output format", self.name()),
        )
    }
}

/// Escapes a string as zap's JSON encoder does.
pub fn zap_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Go stack trace etcdctl 3.5.1's zap logger attaches to a fatal environment
/// conflict, with `caller_frames` (the command's own frames) in the middle.
pub fn go_stack(caller_frames: &str) -> String {
    const RELEASE: &str = "/tmp/etcd-release-3.5.1/etcd/release/etcd";
    const COBRA: &str =
        "/home/remote/sbatsche/.gvm/pkgsets/go1.16.3/global/pkg/mod/github.com/spf13/cobra@v1.1.3/command.go";
    format!(
        "go.etcd.io/etcd/pkg/v3/flags.verifyEnv\n\t{RELEASE}/pkg/flags/flag.go:85\n\
         go.etcd.io/etcd/pkg/v3/flags.SetPflagsFromEnv\n\t{RELEASE}/pkg/flags/flag.go:63\n\
         go.etcd.io/etcd/etcdctl/v3/ctlv3/command.clientConfigFromCmd\n\t{RELEASE}/etcdctl/ctlv3/command/global.go:128\n\
         {caller_frames}\
         github.com/spf13/cobra.(*Command).execute\n\t{COBRA}:856\n\
         github.com/spf13/cobra.(*Command).ExecuteC\n\t{COBRA}:960\n\
         github.com/spf13/cobra.(*Command).Execute\n\t{COBRA}:897\n\
         go.etcd.io/etcd/etcdctl/v3/ctlv3.Start\n\t{RELEASE}/etcdctl/ctlv3/ctl.go:107\n\
         go.etcd.io/etcd/etcdctl/v3/ctlv3.MustStart\n\t{RELEASE}/etcdctl/ctlv3/ctl.go:111\n\
         main.main\n\t{RELEASE}/etcdctl/main.go:59\n\
         runtime.main\n\t/home/remote/sbatsche/.gvm/gos/go1.16.3/src/runtime/proc.go:225"
    )
}

/// The `FlagToEnv` name of a flag: `ETCDCTL_DIAL_TIMEOUT`.
pub fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

/// A command's context: its flags, the runtime, and the client once built.
pub struct Ctx {
    /// All flags of the command (local and inherited).
    pub flags: Values,
    globals: Vec<Spec>,
    /// e.g. `etcdctl endpoint status`.
    pub command_path: String,
    /// The command line as given (without the program name), which `watch` reads as
    /// etcdctl reads `os.Args`.
    pub raw_args: Vec<String>,
    rt: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
    /// The client configuration, once built (it may have asked for a password).
    config: Option<ClientConfig>,
    env_applied: bool,
    log_endpoint: Option<String>,
}

impl Ctx {
    /// A context for a command whose inherited flags are `globals`.
    pub fn new(flags: Values, globals: Vec<Spec>, command_path: String) -> Ctx {
        Ctx {
            flags,
            globals,
            command_path,
            raw_args: Vec::new(),
            rt: None,
            client: None,
            config: None,
            env_applied: false,
            log_endpoint: None,
        }
    }

    /// Runs a future to completion on this command's runtime.
    pub fn block_on<F: Future>(&mut self, fut: F) -> Result<F::Output, CtlError> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| CtlError::error(e.to_string()))?;
            self.rt = Some(rt);
        }
        match &self.rt {
            Some(rt) => Ok(rt.block_on(fut)),
            None => Err(CtlError::error("no runtime")),
        }
    }

    /// Applies `ETCDCTL_*` variables to the inherited flags (once).
    pub fn apply_env(&mut self) -> Result<(), CtlError> {
        if self.env_applied {
            return Ok(());
        }
        self.env_applied = true;
        self.env_pass(None)
    }

    /// Applies the environment a second time, as etcdctl's `move-leader` does when it
    /// builds its configuration again: every variable the first pass used now shadows a
    /// set flag, which is fatal, with the Go stack trace ending in `caller_frames`.
    pub fn apply_env_again(&mut self, caller_frames: &str) -> Result<(), CtlError> {
        self.apply_env()?;
        self.env_pass(Some(caller_frames))
    }

    fn env_pass(&mut self, caller_frames: Option<&str>) -> Result<(), CtlError> {
        let mut used = Vec::new();
        let mut already = Vec::new();
        let mut sorted = self.globals.clone();
        sorted.sort_by_key(|s| s.name);
        let mut err = None;
        for spec in &sorted {
            let key = env_name(spec.name);
            if self.flags.changed(spec.name) {
                already.push(key);
                continue;
            }
            if let Ok(val) = std::env::var(&key) {
                if !val.is_empty() {
                    used.push(key.clone());
                    if let Err(e) = self.flags.set(spec, &val) {
                        err = Some(format!(
                            "invalid value {} for {key}: {e}",
                            gofmt::quote(val.as_bytes())
                        ));
                    }
                }
            }
        }
        for (k, v) in std::env::vars_os() {
            let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
                continue;
            };
            if used.iter().any(|u| u == k) {
                continue;
            }
            // `watch` reads these itself; etcdctl unsets them before this check.
            if self.command_path == "etcdctl watch"
                && (k == "ETCDCTL_WATCH_KEY" || k == "ETCDCTL_WATCH_RANGE_END")
            {
                continue;
            }
            if already.iter().any(|a| a == k) {
                let stack = caller_frames
                    .map(|frames| format!(",\"stacktrace\":{}", zap_string(&go_stack(frames))))
                    .unwrap_or_default();
                eprintln!(
                    "{{\"level\":\"fatal\",\"ts\":{},\"caller\":\"flags/flag.go:85\",\"msg\":\"conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))\",\"environment-variable\":{}{stack}}}",
                    gofmt::epoch_now(),
                    zap_string(k)
                );
                // zap's Fatal exits 1 once the line is logged.
                return Err(CtlError::printed(ExitCode::Error));
            }
            if k.starts_with("ETCDCTL_") && k != "ETCDCTL_API" {
                eprintln!(
                    "{{\"level\":\"warn\",\"ts\":{},\"caller\":\"flags/flag.go:93\",\"msg\":\"unrecognized environment variable\",\"environment-variable\":{}}}",
                    gofmt::epoch_now(),
                    zap_string(&format!("{k}={v}"))
                );
            }
        }
        match err {
            Some(e) => Err(CtlError::bad_args(e)),
            None => Ok(()),
        }
    }

    /// The output format, validated as etcdctl's `initDisplayFromCmd` does.
    pub fn format(&self) -> Result<Format, CtlError> {
        match self.flags.str("write-out") {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "fields" => Ok(Format::Fields),
            "table" => Ok(Format::Table),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(CtlError::new(
                ExitCode::BadFeature,
                "unsupported output format",
            )),
        }
    }

    /// Whether `--hex` is set.
    pub fn hex(&self) -> bool {
        self.flags.bool("hex")
    }

    /// The endpoints after the environment is applied.
    pub fn endpoints(&self) -> Vec<String> {
        self.flags.slice("endpoints").to_vec()
    }

    /// The client configuration from the flags (after the environment), as etcdctl's
    /// `clientConfigFromCmd` builds it: the TLS files named (an empty one refused), the user
    /// and password (asked for on the terminal when `--user` has none and `--password` is
    /// not given), and the output format checked. Asked once per command.
    fn client_config(&mut self) -> Result<ClientConfig, CtlError> {
        if let Some(cfg) = &self.config {
            return Ok(cfg.clone());
        }
        for name in ["cert", "key", "cacert"] {
            if self.flags.str(name).is_empty() && self.flags.changed(name) {
                return Err(CtlError::bad_args(format!(
                    "empty string is passed to --{name} option"
                )));
            }
        }
        let file = |name: &str| {
            let v = self.flags.str(name);
            (!v.is_empty()).then(|| v.to_string())
        };
        let (cert, key, cacert) = (file("cert"), file("key"), file("cacert"));
        let (user, password) = self.user_and_password();
        self.format()?;
        // etcdctl's discovery domain names the servers' certificates only with
        // --insecure-discovery=false.
        let domain = self.flags.str("discovery-srv");
        let server_name = (!self.flags.bool("insecure-discovery") && !domain.is_empty())
            .then(|| domain.to_string());
        let cfg = ClientConfig {
            endpoints: self.endpoints(),
            dial_timeout: self.flags.duration("dial-timeout"),
            user,
            password,
            cacert,
            cert,
            key,
            server_name,
            insecure_skip_tls_verify: self.flags.bool("insecure-skip-tls-verify"),
            insecure_transport: self.flags.bool("insecure-transport"),
        };
        self.config = Some(cfg.clone());
        Ok(cfg)
    }

    /// `--user` and `--password` as etcdctl's `authCfgFromCmd` reads them: `name:password`,
    /// or `name` with `--password`, or `name` alone and the password asked for with the
    /// prompt `Password: `. A user name may hold a colon only with `--password`.
    fn user_and_password(&self) -> (Option<String>, Option<String>) {
        let u = self.flags.str("user");
        if u.is_empty() {
            return (None, None);
        }
        let pw = self.flags.str("password");
        if !pw.is_empty() {
            return (Some(u.to_string()), Some(pw.to_string()));
        }
        match u.split_once(':') {
            Some((name, p)) => (Some(name.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), Some(prompt::ask("Password: "))),
        }
    }

    /// Applies the environment, validates the output format and builds the client, as
    /// etcdctl's `mustClientFromCmd` does: bad TLS files exit 128 with Go's words; with a
    /// user and password the client authenticates within the dial timeout, and a refusal
    /// exits 2 after the Go client's warning.
    pub fn client(&mut self) -> Result<Client, CtlError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        self.apply_env()?;
        let cfg = self.client_config()?;
        let client = self.build_client(&cfg)?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// A client for `cfg`, authenticated when it has credentials.
    fn build_client(&mut self, cfg: &ClientConfig) -> Result<Client, CtlError> {
        let client = self
            .block_on(async { Client::lazy(cfg) })?
            .map_err(|e| match e {
                cairn_client::Error::Tls(msg) => CtlError::bad_args(msg),
                e => CtlError::new(ExitCode::BadConnection, e.to_string()),
            })?;
        let auth = client.clone();
        let result = self.call_until(cfg.dial_timeout, move || {
            let auth = auth.clone();
            async move { auth.authenticate().await.map(tonic::Response::new) }
        })?;
        match result {
            Ok(()) => Ok(client),
            Err(Failure::Status(status)) if status.message() == cairn_client::AUTH_NOT_ENABLED => {
                self.log_rpc_failure(0, &rpc_error_text(&status));
                Ok(client)
            }
            Err(failure) => {
                let e = self.failure_error(failure);
                Err(CtlError::new(ExitCode::BadConnection, e.msg))
            }
        }
    }

    /// A client for another cluster than the command's (`make-mirror`'s destination),
    /// authenticated when `cfg` has credentials, with the same errors as [`Ctx::client`].
    /// A refused authentication is logged against `cfg`'s first endpoint.
    pub fn client_with(&mut self, cfg: &ClientConfig) -> Result<Client, CtlError> {
        let logged = std::mem::replace(&mut self.log_endpoint, cfg.endpoints.first().cloned());
        let client = self.build_client(cfg);
        self.log_endpoint = logged;
        client
    }

    /// Another client with the command's configuration (all its endpoints) and its own
    /// connections, as each `mustClient` call of etcdctl's `check` commands makes one.
    pub fn another_client(&mut self) -> Result<Client, CtlError> {
        self.client()?;
        let cfg = self.client_config()?;
        self.build_client(&cfg)
    }

    /// A client for one endpoint only, as etcd's per-endpoint maintenance calls use. It
    /// authenticates on its own, as the Go client 3.5.1 does on each connection it dials
    /// for one endpoint (each `Authenticate` is a Raft entry, seen in the raft index).
    pub fn client_for(&mut self, endpoint: &str) -> Result<Client, CtlError> {
        self.client()?;
        let mut cfg = self.client_config()?;
        cfg.endpoints = vec![endpoint.to_string()];
        self.build_client(&cfg)
    }

    /// How the command's connections are secured (the TLS the flags set up), for a request
    /// made outside gRPC: `check datascale`'s `/metrics` fetch.
    pub fn security(&mut self) -> Result<cairn_client::Security, CtlError> {
        self.apply_env()?;
        let cfg = self.client_config()?;
        cairn_client::tls::security(&cfg).map_err(|e| match e {
            cairn_client::Error::Tls(msg) => CtlError::bad_args(msg),
            e => CtlError::error(e.to_string()),
        })
    }

    /// The endpoints a maintenance command visits: `--endpoints`, or with `--cluster`
    /// every member's client URLs.
    pub fn endpoints_from_cluster(&mut self) -> Result<Vec<String>, CtlError> {
        if !self.flags.bool("cluster") {
            return Ok(self.endpoints());
        }
        let client = self.client()?;
        let resp = self
            .unary(|| {
                let mut c = client.cluster();
                async move {
                    c.member_list(cairn_proto::etcdserverpb::MemberListRequest {
                        linearizable: true,
                    })
                    .await
                }
            })
            .map_err(|e| {
                CtlError::error(format!(
                    "failed to fetch endpoints from etcd cluster member list: {}",
                    e.msg
                ))
            })?;
        Ok(resp
            .members
            .into_iter()
            .flat_map(|m| m.client_ur_ls)
            .collect())
    }

    /// Names `endpoint` as the target of failed calls from now on, as the Go client's
    /// per-endpoint clients log it.
    pub fn log_against(&mut self, endpoint: &str) {
        self.log_endpoint = Some(endpoint.to_string());
    }

    /// The `--command-timeout` value.
    pub fn command_timeout(&self) -> Duration {
        self.flags.duration("command-timeout")
    }

    /// The first endpoint without its scheme, as the Go client names its target.
    fn authority(&self) -> String {
        let ep = match &self.log_endpoint {
            Some(ep) => ep.clone(),
            None => self.endpoints().first().cloned().unwrap_or_default(),
        };
        match ep.split_once("://") {
            Some((_, rest)) => rest.to_string(),
            None => ep,
        }
    }

    /// Logs the Go client's warning for a failed unary call (its `attempt`-th try).
    pub fn log_rpc_failure(&self, attempt: u32, error: &str) {
        self.log_warning(
            "v3/retry_interceptor.go:62",
            "retrying of unary invoker failed",
            &format!(",\"attempt\":{attempt}"),
            error,
        );
    }

    /// Logs the warning of a Go client named `logger` (etcdctl names the clients it makes
    /// for one endpoint's health `client`) for a failed unary call.
    pub fn log_rpc_failure_by(&self, logger: &str, error: &str) {
        self.log_warning_by(
            logger,
            "v3/retry_interceptor.go:62",
            "retrying of unary invoker failed",
            ",\"attempt\":0",
            error,
        );
    }

    /// Logs one of the Go client's retry warnings about the first endpoint.
    fn log_warning(&self, caller: &str, msg: &str, fields: &str, error: &str) {
        self.log_warning_by("etcd-client", caller, msg, fields, error);
    }

    fn log_warning_by(&self, logger: &str, caller: &str, msg: &str, fields: &str, error: &str) {
        let authority = self.authority();
        eprintln!(
            "{{\"level\":\"warn\",\"ts\":\"{}\",\"logger\":{},\"caller\":\"{caller}\",\"msg\":\"{msg}\",\"target\":{}{fields},\"error\":{}}}",
            gofmt::iso8601_now(),
            zap_string(logger),
            zap_string(&format!("etcd-endpoints://0xc000024000/{authority}")),
            zap_string(error)
        );
    }

    /// Runs `call` until it answers or `timeout` passes, trying again while the endpoint
    /// is unreachable.
    fn call_until<T, F, Fut>(
        &mut self,
        timeout: Duration,
        mut call: F,
    ) -> Result<Result<T, Failure>, CtlError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.block_on(async move {
            let deadline = Instant::now() + timeout;
            let mut last_unavailable = None;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, call()).await {
                    Err(_) => return Err(Failure::Deadline(last_unavailable)),
                    Ok(Ok(resp)) => return Ok(resp.into_inner()),
                    Ok(Err(status)) if unreachable(&status) => {
                        last_unavailable = Some(status);
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(Failure::Deadline(last_unavailable));
                        }
                        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
                    }
                    Ok(Err(status)) => return Err(Failure::Status(status)),
                }
            }
        })
    }

    /// Logs a failure as the Go client does and turns it into etcdctl's error.
    fn failure_error(&self, failure: Failure) -> CtlError {
        match failure {
            Failure::Status(status) => self.status_error(&status),
            Failure::Deadline(unavailable) => {
                let detail = match unavailable {
                    Some(status) => format!(
                        "rpc error: code = DeadlineExceeded desc = latest balancer error: {}",
                        self.connection_error(&status)
                    ),
                    None => "context deadline exceeded".to_string(),
                };
                self.log_rpc_failure(0, &detail);
                CtlError::error("context deadline exceeded")
            }
        }
    }

    /// gRPC-Go's words for why a connection could not be made.
    fn connection_error(&self, status: &tonic::Status) -> String {
        let mut source: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(status);
        let mut texts = Vec::new();
        while let Some(e) = source {
            // An io::Error's source is its inner error's source: look at the inner one.
            let handshake = e
                .downcast_ref::<cairn_client::HandshakeError>()
                .or_else(|| {
                    e.downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref())
                        .and_then(|inner| inner.downcast_ref::<cairn_client::HandshakeError>())
                });
            if let Some(h) = handshake {
                return format!(
                    "last connection error: connection error: desc = {}",
                    gofmt::quote(
                        format!("transport: authentication handshake failed: {}", h.go_text)
                            .as_bytes()
                    )
                );
            }
            texts.push(e.to_string());
            source = e.source();
        }
        let refused = texts.iter().any(|t| t.contains("refused"));
        if !refused && !texts.is_empty() {
            // The connection was made, and then closed by the server (a TLS server
            // dialled in the clear, for instance).
            return "last connection error: connection closed".to_string();
        }
        format!(
            "last connection error: connection error: desc = {}",
            gofmt::quote(
                format!(
                    "transport: Error while dialing dial tcp {}: connect: connection refused",
                    self.authority()
                )
                .as_bytes()
            )
        )
    }

    /// Runs one unary call under the command timeout, retrying while the endpoint is
    /// unreachable, and turns a failure into etcdctl's log line and error. When the server
    /// no longer takes the token (etcd's clientv3 `shouldRefreshToken`), the failure is
    /// logged, the client authenticates again and the call is made once more, as the Go
    /// client's retry interceptor does.
    pub fn unary<T, F, Fut>(&mut self, mut call: F) -> Result<T, CtlError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.command_timeout();
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match self.call_until(left, &mut call)? {
                Ok(v) => return Ok(v),
                Err(Failure::Status(status))
                    if attempt == 0
                        && self
                            .client
                            .as_ref()
                            .is_some_and(|c| c.should_refresh_token(&status)) =>
                {
                    self.log_rpc_failure(attempt, &rpc_error_text(&status));
                    attempt += 1;
                    let Some(client) = self.client.clone() else {
                        return Err(self.status_error(&status));
                    };
                    let left = timeout.saturating_sub(started.elapsed());
                    let refreshed = self.call_until(left, move || {
                        let client = client.clone();
                        async move { client.authenticate().await.map(tonic::Response::new) }
                    })?;
                    if let Err(failure) = refreshed {
                        let text = match &failure {
                            Failure::Status(s) => rpc_error_text(s),
                            Failure::Deadline(_) => "context deadline exceeded".to_string(),
                        };
                        self.log_warning(
                            "v3/retry_interceptor.go:79",
                            "retrying of unary invoker failed to fetch new auth token",
                            "",
                            &text,
                        );
                        return Err(match failure {
                            Failure::Status(s) => status_message(&s),
                            Failure::Deadline(_) => CtlError::error("context deadline exceeded"),
                        });
                    }
                }
                Err(Failure::Status(status)) => {
                    let full = rpc_error_text(&status);
                    self.log_rpc_failure(attempt, &full);
                    return Err(status_message(&status));
                }
                Err(failure) => return Err(self.failure_error(failure)),
            }
        }
    }

    /// Like [`Ctx::unary`], but an error the server answers with is logged (as the Go
    /// client logs it) and handed back, for a command that acts on it.
    pub fn unary_status<T, F, Fut>(
        &mut self,
        mut call: F,
    ) -> Result<Result<T, tonic::Status>, CtlError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.command_timeout();
        match self.call_until(timeout, &mut call)? {
            Ok(v) => Ok(Ok(v)),
            Err(Failure::Status(status)) => {
                self.log_rpc_failure(0, &rpc_error_text(&status));
                Ok(Err(status))
            }
            Err(failure) => Err(self.failure_error(failure)),
        }
    }

    /// Logs a failed call and converts its status into etcdctl's error text.
    pub fn status_error(&self, status: &tonic::Status) -> CtlError {
        self.log_rpc_failure(0, &rpc_error_text(status));
        status_message(status)
    }
}

/// Whether a failed call did not reach the server: no connection could be made, or the
/// connection broke before an answer (tonic's `Unknown: transport error` or hyper's
/// `Cancelled: operation was canceled`, as when a TLS server is dialled in the clear).
fn unreachable(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown => status.message() == "transport error",
        // hyper's request dropped with its connection.
        tonic::Code::Cancelled => status.message() == "operation was canceled",
        _ => false,
    }
}

/// How a call failed.
enum Failure {
    /// The server answered with an error.
    Status(tonic::Status),
    /// No answer in time; the last error of an unreachable endpoint, if there was one.
    Deadline(Option<tonic::Status>),
}

/// gRPC-Go's text of a failed call: `rpc error: code = ... desc = ...`.
pub fn rpc_error_text(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        cairn_proto::grpc_code_name(status.code()),
        status.message()
    )
}

/// The text etcdctl prints for a failed call: etcd's own message when it is one of
/// etcd's errors, else gRPC's `rpc error: ...` form.
pub fn status_message(status: &tonic::Status) -> CtlError {
    if cairn_proto::EtcdError::from_message(status.message()).is_some() {
        CtlError::error(status.message())
    } else {
        CtlError::error(format!(
            "rpc error: code = {} desc = {}",
            cairn_proto::grpc_code_name(status.code()),
            status.message()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each kind of error prints and exits with. Commands that printed their failure
    /// or hit one of etcdctl's Go panics used to call `process::exit` themselves; they now
    /// return these, and only the binary exits.
    #[test]
    fn errors_show_and_exit_as_etcdctl() {
        let cases = [
            (CtlError::error("boom"), "Error: boom\n", 1),
            (CtlError::bad_args("bad"), "Error: bad\n", 128),
            (
                CtlError::exit_with(7, "exit status 7"),
                "Error: exit status 7\n",
                7,
            ),
            (CtlError::printed(ExitCode::Error), "", 1),
            (
                CtlError::go_panic("Unknown result op\n"),
                "panic: Unknown result op\n\n",
                2,
            ),
            (CtlError::go_panic("nil").reported(), "", 2),
        ];
        for (e, text, code) in cases {
            assert_eq!((e.text().as_str(), e.exit_code()), (text, code), "{e:?}");
        }
    }
}
