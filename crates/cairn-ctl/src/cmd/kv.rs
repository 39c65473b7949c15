//! `get`, `put` and `del`: their flags, argument checks (in etcdctl's order, with its
//! messages and exit codes) and the requests they build, which `txn` reuses.

use std::io::Read;

use cairn_proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    DeleteRangeRequest, PutRequest, RangeRequest,
};

use cairn_client::concurrency::prefix_end;

use crate::global::{CtlError, Ctx, ExitCode, Format};
use crate::go::flags::{self, Kind, Spec, Values};
use crate::output::printer::{print_kv, KvResponse, Simple};

/// `get`'s flags.
pub const GET_FLAGS: &[Spec] = &[
    Spec::new(
        "consistency",
        Kind::Str,
        "l",
        "Linearizable(l) or Serializable(s)",
    ),
    Spec::new("count-only", Kind::Bool, "false", "Get only the count"),
    Spec::new(
        "from-key",
        Kind::Bool,
        "false",
        "Get keys that are greater than or equal to the given key using byte compare",
    ),
    Spec::new("keys-only", Kind::Bool, "false", "Get only the keys"),
    Spec::new("limit", Kind::Int, "0", "Maximum number of results"),
    Spec::new(
        "order",
        Kind::Str,
        "",
        "Order of results; ASCEND or DESCEND (ASCEND by default)",
    ),
    Spec::new(
        "prefix",
        Kind::Bool,
        "false",
        "Get keys with matching prefix",
    ),
    Spec::new(
        "print-value-only",
        Kind::Bool,
        "false",
        "Only write values when using the \"simple\" output format",
    ),
    Spec::new("rev", Kind::Int, "0", "Specify the kv revision"),
    Spec::new(
        "sort-by",
        Kind::Str,
        "",
        "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION",
    ),
];

/// `put`'s flags.
pub const PUT_FLAGS: &[Spec] = &[
    Spec::new(
        "ignore-lease",
        Kind::Bool,
        "false",
        "updates the key using its current lease",
    ),
    Spec::new(
        "ignore-value",
        Kind::Bool,
        "false",
        "updates the key using its current value",
    ),
    Spec::new(
        "lease",
        Kind::Str,
        "0",
        "lease ID (in hexadecimal) to attach to the key",
    ),
    Spec::new(
        "prev-kv",
        Kind::Bool,
        "false",
        "return the previous key-value pair before modification",
    ),
];

/// `del`'s flags.
pub const DEL_FLAGS: &[Spec] = &[
    Spec::new(
        "from-key",
        Kind::Bool,
        "false",
        "delete keys that are greater than or equal to the given key using byte compare",
    ),
    Spec::new(
        "prefix",
        Kind::Bool,
        "false",
        "delete keys with matching prefix",
    ),
    Spec::new(
        "prev-kv",
        Kind::Bool,
        "false",
        "return deleted key-value pairs",
    ),
];

/// `put`'s long description.
pub const PUT_LONG: &str = "
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
";

/// Reads `--prefix` and `--from-key`, which etcdctl refuses together.
fn prefix_or_from_key(f: &Values) -> Result<(bool, bool), CtlError> {
    let (prefix, from_key) = (f.bool("prefix"), f.bool("from-key"));
    if prefix && from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    Ok((prefix, from_key))
}

/// Builds the range request of `get`, checking arguments as etcdctl's `getGetOp`.
pub fn get_op(f: &Values, args: &[String]) -> Result<RangeRequest, CtlError> {
    if args.is_empty() {
        return Err(CtlError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    let (prefix, from_key) = prefix_or_from_key(f)?;
    let mut req = RangeRequest::default();
    match f.str("consistency") {
        "s" => req.serializable = true,
        "l" => {}
        other => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!(
                    "unknown consistency flag {}",
                    crate::go::gofmt::quote(other.as_bytes())
                ),
            ))
        }
    }
    let mut key = args[0].as_bytes().to_vec();
    if args.len() > 1 {
        if prefix || from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = args[1].as_bytes().to_vec();
    }
    req.limit = f.int("limit");
    if f.int("rev") > 0 {
        req.revision = f.int("rev");
    }
    let order = match f.str("order").to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort order {}", f.str("order")),
            ))
        }
    };
    let target = match f.str("sort-by").to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort target {}", f.str("sort-by")),
            ))
        }
    };
    // clientv3's WithSort drops an ascending order on keys: the server's default.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend {
        SortOrder::None
    } else {
        order
    };
    req.sort_order = order as i32;
    req.sort_target = target as i32;
    if prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.keys_only = f.bool("keys-only");
    req.count_only = f.bool("count-only");
    req.key = key;
    Ok(req)
}

/// Builds the put request, checking arguments as etcdctl's `getPutOp`. `stdin` is read
/// only when the value is not given.
pub fn put_op(f: &Values, args: &[String], stdin: &mut dyn Read) -> Result<PutRequest, CtlError> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    if args.is_empty() {
        return Err(CtlError::bad_args(NEEDS));
    }
    let ignore_value = f.bool("ignore-value");
    if ignore_value && args.len() > 1 {
        return Err(CtlError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !ignore_value {
        if args.len() > 1 {
            value = args[1].as_bytes().to_vec();
        } else {
            let read = stdin.read_to_end(&mut value);
            if read.is_err() || value.is_empty() {
                return Err(CtlError::bad_args(NEEDS));
            }
        }
    }
    let lease = flags::parse_int_base(f.str("lease"), 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: args[0].as_bytes().to_vec(),
        value,
        lease,
        prev_kv: f.bool("prev-kv"),
        ignore_value,
        ignore_lease: f.bool("ignore-lease"),
    })
}

/// Builds the delete request, checking arguments as etcdctl's `getDelOp`.
pub fn del_op(f: &Values, args: &[String]) -> Result<DeleteRangeRequest, CtlError> {
    if args.is_empty() || args.len() > 2 {
        return Err(CtlError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    let (prefix, from_key) = prefix_or_from_key(f)?;
    let mut req = DeleteRangeRequest::default();
    let mut key = args[0].as_bytes().to_vec();
    if args.len() > 1 {
        if prefix || from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = args[1].as_bytes().to_vec();
    }
    if prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&key);
        }
    }
    req.prev_kv = f.bool("prev-kv");
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.key = key;
    Ok(req)
}

/// `etcdctl get`.
pub fn get(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let req = get_op(&ctx.flags, args)?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut kv = client.kv();
        let req = req.clone();
        async move { kv.range(req).await }
    })?;
    let format = ctx.format()?;
    if ctx.flags.bool("count-only") && format != Format::Fields {
        return Err(CtlError::bad_args(
            "--count-only is only for `--write-out=fields`",
        ));
    }
    let value_only = ctx.flags.bool("print-value-only");
    if value_only && format != Format::Simple {
        return Err(CtlError::bad_args(
            "print-value-only is only for `--write-out=simple`",
        ));
    }
    let simple = Simple {
        hex: ctx.hex(),
        value_only,
    };
    print_kv(format, simple, KvResponse::Get(&resp))
}

/// `etcdctl put`.
pub fn put(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let req = put_op(&ctx.flags, args, &mut std::io::stdin())?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut kv = client.kv();
        let req = req.clone();
        async move { kv.put(req).await }
    })?;
    let simple = Simple {
        hex: ctx.hex(),
        value_only: false,
    };
    print_kv(ctx.format()?, simple, KvResponse::Put(&resp))
}

/// `etcdctl del`.
pub fn del(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let req = del_op(&ctx.flags, args)?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut kv = client.kv();
        let req = req.clone();
        async move { kv.delete_range(req).await }
    })?;
    let simple = Simple {
        hex: ctx.hex(),
        value_only: false,
    };
    print_kv(ctx.format()?, simple, KvResponse::Del(&resp))
}
