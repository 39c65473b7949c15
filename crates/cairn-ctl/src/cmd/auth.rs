//! `auth enable|disable|status`, `user ...` and `role ...`: etcd's authentication and
//! RBAC administration, printed as etcdctl 3.5.1 prints it.
//!
//! Every response is printed after its request succeeded, so a format that cannot print
//! it (`-w table` for all of them; `-w fields` for `user get`, `user list` and `auth
//! status`) fails with exit 4 after the change was made, as in etcdctl. JSON is Go's
//! encoding of the gogo structs (`permType` as a number, keys in base64); protobuf is the
//! response's encoding.

use cairn_proto::authpb::{Permission, UserAddOptions};
use cairn_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthStatusRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest, ResponseHeader,
};
use prost::Message;

use crate::global::{CtlError, Ctx, Format};
use crate::go::flags::{Kind, Spec};
use crate::go::{gofmt, prompt};
use crate::output::json::{self, Obj};
use crate::output::printer::{fields, out, protobuf};

/// etcd's error when `auth enable` finds the root user without the root role; etcdctl
/// then adds the role, grants it and tries again.
const ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";

/// `user add`'s flags.
pub const USER_ADD_FLAGS: &[Spec] = &[
    Spec::new(
        "interactive",
        Kind::Bool,
        "true",
        "Read password from stdin instead of interactive terminal",
    ),
    Spec::new(
        "new-user-password",
        Kind::Str,
        "",
        "Supply password from the command line flag",
    ),
    Spec::new(
        "no-password",
        Kind::Bool,
        "false",
        "Create a user without password (CN based auth only)",
    ),
];

/// `user passwd`'s flags.
pub const USER_PASSWD_FLAGS: &[Spec] = &[Spec::new(
    "interactive",
    Kind::Bool,
    "true",
    "If true, read password from stdin instead of interactive terminal",
)];

/// `user get`'s flags.
pub const USER_GET_FLAGS: &[Spec] = &[Spec::new(
    "detail",
    Kind::Bool,
    "false",
    "Show permissions of roles granted to the user",
)];

/// `role grant-permission`'s flags.
pub const GRANT_FLAGS: &[Spec] = &[
    Spec::new("from-key", Kind::Bool, "false", "grant a permission of keys that are greater than or equal to the given key using byte compare"),
    Spec::new("prefix", Kind::Bool, "false", "grant a prefix permission"),
];

/// `role revoke-permission`'s flags.
pub const REVOKE_FLAGS: &[Spec] = &[
    Spec::new("from-key", Kind::Bool, "false", "revoke a permission of keys that are greater than or equal to the given key using byte compare"),
    Spec::new("prefix", Kind::Bool, "false", "revoke a prefix permission"),
];

/// The names of etcd's permission types, by value.
const PERM_NAMES: [&str; 3] = ["READ", "WRITE", "READWRITE"];

/// Prints a response that carries only its header: `simple` as given, the header in
/// `fields` and `json`, the encoding in `protobuf`; no table.
fn print_header_only<M: Message>(
    ctx: &Ctx,
    simple: String,
    header: &Option<ResponseHeader>,
    resp: &M,
) -> Result<(), CtlError> {
    match ctx.format()? {
        Format::Simple => out(simple.as_bytes()),
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, header);
            out(s.as_bytes());
        }
        Format::Json => {
            let s = Obj::new().obj("header", json::header(header)).end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => protobuf(resp),
        Format::Table => return Err(Format::Table.unsupported()),
    }
    Ok(())
}

/// The one argument of a command that takes exactly one.
fn one_arg<'a>(args: &'a [String], what: &str) -> Result<&'a str, CtlError> {
    match args {
        [one] => Ok(one),
        _ => Err(CtlError::bad_args(what.to_string())),
    }
}

// ---------------------------------------------------------------------------------------
// auth

/// `etcdctl auth enable`: as etcdctl, when the root user lacks the root role, the role is
/// added and granted and enabling is tried again.
pub fn enable(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args(
            "auth enable command does not accept any arguments",
        ));
    }
    let client = ctx.client()?;
    loop {
        let c = client.clone();
        match ctx.unary_status(|| {
            let mut a = c.auth();
            async move { a.auth_enable(AuthEnableRequest {}).await }
        })? {
            Ok(_) => break,
            Err(status) if status.message() == ROOT_ROLE_NOT_EXIST => {
                let c = client.clone();
                ctx.unary(|| {
                    let mut a = c.auth();
                    async move {
                        a.role_add(AuthRoleAddRequest {
                            name: "root".into(),
                        })
                        .await
                    }
                })?;
                let c = client.clone();
                ctx.unary(|| {
                    let mut a = c.auth();
                    async move {
                        a.user_grant_role(AuthUserGrantRoleRequest {
                            user: "root".into(),
                            role: "root".into(),
                        })
                        .await
                    }
                })?;
            }
            Err(status) => return Err(crate::global::status_message(&status)),
        }
    }
    out(b"Authentication Enabled\n");
    Ok(())
}

/// `etcdctl auth disable`.
pub fn disable(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args(
            "auth disable command does not accept any arguments",
        ));
    }
    let client = ctx.client()?;
    ctx.unary(|| {
        let mut a = client.auth();
        async move { a.auth_disable(AuthDisableRequest {}).await }
    })?;
    out(b"Authentication Disabled\n");
    Ok(())
}

/// `etcdctl auth status`.
pub fn status(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args(
            "auth status command does not accept any arguments",
        ));
    }
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        async move { a.auth_status(AuthStatusRequest {}).await }
    })?;
    match ctx.format()? {
        Format::Simple => out(format!(
            "Authentication Status: {}\nAuthRevision: {}\n",
            resp.enabled, resp.auth_revision
        )
        .as_bytes()),
        Format::Json => {
            let s = Obj::new()
                .obj("header", json::header(&resp.header))
                .flag("enabled", resp.enabled)
                .num("authRevision", resp.auth_revision)
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => protobuf(&resp),
        f @ (Format::Fields | Format::Table) => return Err(f.unsupported()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// user

/// Asks for a new password twice on the terminal, as etcdctl's `readPasswordInteractive`.
fn read_password_interactive(name: &str) -> Result<String, CtlError> {
    let first = prompt::ask(&format!("Password of {name}: "));
    if first.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    let second = prompt::ask(&format!("Type password of {name} again for confirmation: "));
    if first != second {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// `etcdctl user add <name or name:password>`.
pub fn user_add(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let arg = one_arg(args, "user add command requires user name as its argument")?;
    let no_password = ctx.flags.bool("no-password");
    let (user, password) = if no_password {
        (arg.to_string(), String::new())
    } else {
        let from_flag = ctx.flags.str("new-user-password");
        if !from_flag.is_empty() {
            (arg.to_string(), from_flag.to_string())
        } else {
            match arg.split_once(':') {
                Some((user, password)) => {
                    if user.is_empty() {
                        return Err(CtlError::bad_args("empty user name is not allowed"));
                    }
                    (user.to_string(), password.to_string())
                }
                None if !ctx.flags.bool("interactive") => (arg.to_string(), prompt::scan_word()),
                None => (arg.to_string(), read_password_interactive(arg)?),
            }
        }
    };
    let client = ctx.client()?;
    let name = user.clone();
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthUserAddRequest {
            name: user.clone(),
            password: password.clone(),
            options: Some(UserAddOptions { no_password }),
            hashed_password: String::new(),
        };
        async move { a.user_add(req).await }
    })?;
    print_header_only(ctx, format!("User {name} created\n"), &resp.header, &resp)
}

/// `etcdctl user delete <name>`.
pub fn user_delete(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let name = one_arg(
        args,
        "user delete command requires user name as its argument",
    )?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthUserDeleteRequest { name: name.into() };
        async move { a.user_delete(req).await }
    })?;
    print_header_only(ctx, format!("User {name} deleted\n"), &resp.header, &resp)
}

/// `etcdctl user get <name> [--detail]`: with `--detail`, each role's permissions as
/// `role get` prints them.
pub fn user_get(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let name = one_arg(args, "user get command requires user name as its argument")?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthUserGetRequest { name: name.into() };
        async move { a.user_get(req).await }
    })?;
    if ctx.flags.bool("detail") {
        out(format!("User: {name}\n").as_bytes());
        for role in &resp.roles {
            out(b"\n");
            let r = ctx.unary(|| {
                let mut a = client.auth();
                let req = AuthRoleGetRequest { role: role.clone() };
                async move { a.role_get(req).await }
            })?;
            print_role(ctx, role, &r)?;
        }
        return Ok(());
    }
    match ctx.format()? {
        Format::Simple => {
            let mut s = format!("User: {name}\nRoles:");
            for role in &resp.roles {
                s.push(' ');
                s.push_str(role);
            }
            s.push('\n');
            out(s.as_bytes());
        }
        Format::Json => names_json(&resp.header, "roles", &resp.roles),
        Format::Protobuf => protobuf(&resp),
        f @ (Format::Fields | Format::Table) => return Err(f.unsupported()),
    }
    Ok(())
}

/// Prints `{"header":...,"<key>":[names]}` as etcdctl's JSON printer does.
fn names_json(header: &Option<ResponseHeader>, key: &str, names: &[String]) {
    let s = Obj::new()
        .obj("header", json::header(header))
        .list(key, names.iter().map(|n| json::string(n)).collect())
        .end();
    out(format!("{s}\n").as_bytes());
}

/// Prints a list of user or role names in `format`: one a line, JSON under `key`, the
/// `fields` line `"<fields_key>" : "a" "b"` where etcdctl has one, or the encoding.
fn print_names<M: Message>(
    format: Format,
    resp: &M,
    header: &Option<ResponseHeader>,
    key: &str,
    fields_key: Option<&str>,
    names: &[String],
) -> Result<(), CtlError> {
    match (format, fields_key) {
        (Format::Simple, _) => {
            let s: String = names.iter().map(|n| format!("{n}\n")).collect();
            out(s.as_bytes());
        }
        (Format::Fields, Some(label)) => {
            let mut s = String::new();
            fields::hdr(&mut s, header);
            s.push_str(&format!("\"{label}\" :"));
            for n in names {
                s.push(' ');
                s.push_str(&gofmt::quote(n.as_bytes()));
            }
            s.push('\n');
            out(s.as_bytes());
        }
        (Format::Json, _) => names_json(header, key, names),
        (Format::Protobuf, _) => protobuf(resp),
        (f @ (Format::Fields | Format::Table), _) => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl user list`.
pub fn user_list(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args(
            "user list command requires no arguments",
        ));
    }
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        async move { a.user_list(AuthUserListRequest {}).await }
    })?;
    print_names(
        ctx.format()?,
        &resp,
        &resp.header,
        "users",
        None,
        &resp.users,
    )
}

/// `etcdctl user passwd <name>`.
pub fn user_passwd(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let name = one_arg(
        args,
        "user passwd command requires user name as its argument",
    )?;
    let password = if ctx.flags.bool("interactive") {
        read_password_interactive(name)?
    } else {
        prompt::scan_word()
    };
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthUserChangePasswordRequest {
            name: name.into(),
            password: password.clone(),
            hashed_password: String::new(),
        };
        async move { a.user_change_password(req).await }
    })?;
    print_header_only(ctx, "Password updated\n".to_string(), &resp.header, &resp)
}

/// The two arguments of `grant-role` and `revoke-role`.
fn two_args<'a>(args: &'a [String], what: &str) -> Result<(&'a str, &'a str), CtlError> {
    match args {
        [a, b] => Ok((a, b)),
        _ => Err(CtlError::bad_args(what.to_string())),
    }
}

/// `etcdctl user grant-role <user> <role>`.
pub fn user_grant_role(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let (user, role) = two_args(
        args,
        "user grant command requires user name and role name as its argument",
    )?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        async move { a.user_grant_role(req).await }
    })?;
    let simple = format!("Role {role} is granted to user {user}\n");
    print_header_only(ctx, simple, &resp.header, &resp)
}

/// `etcdctl user revoke-role <user> <role>`.
pub fn user_revoke_role(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let (user, role) = two_args(
        args,
        "user revoke-role requires user name and role name as its argument",
    )?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthUserRevokeRoleRequest {
            name: user.into(),
            role: role.into(),
        };
        async move { a.user_revoke_role(req).await }
    })?;
    let simple = format!("Role {role} is revoked from user {user}\n");
    print_header_only(ctx, simple, &resp.header, &resp)
}

// ---------------------------------------------------------------------------------------
// role

/// `etcdctl role add <name>`.
pub fn role_add(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let name = one_arg(args, "role add command requires role name as its argument")?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthRoleAddRequest { name: name.into() };
        async move { a.role_add(req).await }
    })?;
    print_header_only(ctx, format!("Role {name} created\n"), &resp.header, &resp)
}

/// `etcdctl role delete <name>`.
pub fn role_delete(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let name = one_arg(
        args,
        "role delete command requires role name as its argument",
    )?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthRoleDeleteRequest { role: name.into() };
        async move { a.role_delete(req).await }
    })?;
    print_header_only(ctx, format!("Role {name} deleted\n"), &resp.header, &resp)
}

/// `etcdctl role get <name>`.
pub fn role_get(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let name = one_arg(args, "role get command requires role name as its argument")?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthRoleGetRequest { role: name.into() };
        async move { a.role_get(req).await }
    })?;
    print_role(ctx, name, &resp)
}

/// clientv3's `GetPrefixRangeEnd`: the key after every key starting with `key`
/// (`"\0"`, every key, when there is none).
fn prefix_range_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A role's permissions as etcdctl's printers show them.
fn print_role(ctx: &Ctx, role: &str, r: &AuthRoleGetResponse) -> Result<(), CtlError> {
    match ctx.format()? {
        Format::Simple => {
            let mut s = format!("Role {role}\nKV Read:\n").into_bytes();
            let line = |s: &mut Vec<u8>, p: &Permission| {
                s.push(b'\t');
                if p.range_end.is_empty() {
                    s.extend_from_slice(&p.key);
                    s.push(b'\n');
                    return;
                }
                s.push(b'[');
                s.extend_from_slice(&p.key);
                s.extend_from_slice(b", ");
                if p.range_end == b"\0" {
                    s.extend_from_slice(b"<open ended>");
                } else {
                    s.extend_from_slice(&p.range_end);
                    s.push(b')');
                }
                if prefix_range_end(&p.key) == p.range_end {
                    s.extend_from_slice(b" (prefix ");
                    s.extend_from_slice(&p.key);
                    s.push(b')');
                }
                s.push(b'\n');
            };
            // READ = 0, WRITE = 1, READWRITE = 2.
            for p in r
                .perm
                .iter()
                .filter(|p| p.perm_type == 0 || p.perm_type == 2)
            {
                line(&mut s, p);
            }
            s.extend_from_slice(b"KV Write:\n");
            for p in r
                .perm
                .iter()
                .filter(|p| p.perm_type == 1 || p.perm_type == 2)
            {
                line(&mut s, p);
            }
            out(&s);
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &r.header);
            for p in &r.perm {
                let name = usize::try_from(p.perm_type)
                    .ok()
                    .and_then(|i| PERM_NAMES.get(i))
                    .map_or_else(|| p.perm_type.to_string(), |n| n.to_string());
                s.push_str(&format!("\"PermType\" :  {name}\n"));
                s.push_str(&format!("\"Key\" : {}\n", gofmt::quote(&p.key)));
                s.push_str(&format!("\"RangeEnd\" : {}\n", gofmt::quote(&p.range_end)));
            }
            out(s.as_bytes());
        }
        Format::Json => {
            let perms = r
                .perm
                .iter()
                .map(|p| {
                    Obj::new()
                        .num("permType", p.perm_type)
                        .bytes("key", &p.key)
                        .bytes("range_end", &p.range_end)
                        .end()
                })
                .collect();
            let s = Obj::new()
                .obj("header", json::header(&r.header))
                .list("perm", perms)
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => protobuf(r),
        Format::Table => return Err(Format::Table.unsupported()),
    }
    Ok(())
}

/// `etcdctl role list`.
pub fn role_list(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args(
            "role list command requires no arguments",
        ));
    }
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        async move { a.role_list(AuthRoleListRequest {}).await }
    })?;
    let format = ctx.format()?;
    print_names(
        format,
        &resp,
        &resp.header,
        "roles",
        Some("Roles"),
        &resp.roles,
    )
}

/// The key and range end of a permission, from the arguments after the role (and type),
/// as etcdctl's `permRange` reads them with `--prefix` and `--from-key`.
fn perm_range(ctx: &Ctx, args: &[String]) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let prefix = ctx.flags.bool("prefix");
    let from_key = ctx.flags.bool("from-key");
    let key = args.first().map(String::as_bytes).unwrap_or_default();
    if key.is_empty() {
        if prefix && from_key {
            return Err(CtlError::bad_args(
                "--from-key and --prefix flags are mutually exclusive",
            ));
        }
        // The empty key means every key: ["\0", "\0") with either flag.
        let end = if prefix || from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    let end = match args {
        [_] if prefix && from_key => {
            return Err(CtlError::bad_args(
                "--from-key and --prefix flags are mutually exclusive",
            ))
        }
        [k] if prefix => prefix_range_end(k.as_bytes()),
        [_] if from_key => vec![0],
        [_] => Vec::new(),
        _ if prefix => {
            return Err(CtlError::bad_args(
                "unexpected endkey argument with --prefix flag",
            ))
        }
        _ if from_key => {
            return Err(CtlError::bad_args(
                "unexpected endkey argument with --from-key flag",
            ))
        }
        [_, end, ..] => end.as_bytes().to_vec(),
        [] => Vec::new(),
    };
    Ok((key.to_vec(), end))
}

/// `etcdctl role grant-permission [options] <role> <read|write|readwrite> <key> [endkey]`.
pub fn grant_permission(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() < 3 {
        return Err(CtlError::bad_args(
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        ));
    }
    let perm_type = PERM_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(&args[1]))
        .ok_or_else(|| CtlError::bad_args(format!("invalid permission type: {}", args[1])))?;
    let (key, range_end) = perm_range(ctx, &args[2..])?;
    let role = args[0].clone();
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthRoleGrantPermissionRequest {
            name: role.clone(),
            perm: Some(Permission {
                perm_type: perm_type as i32,
                key: key.clone(),
                range_end: range_end.clone(),
            }),
        };
        async move { a.role_grant_permission(req).await }
    })?;
    print_header_only(ctx, format!("Role {role} updated\n"), &resp.header, &resp)
}

/// `etcdctl role revoke-permission <role> <key> [endkey]`.
pub fn revoke_permission(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() < 2 {
        return Err(CtlError::bad_args(
            "role revoke-permission command requires role name and key [endkey] as its argument",
        ));
    }
    let (key, range_end) = perm_range(ctx, &args[1..])?;
    let role = args[0].clone();
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut a = client.auth();
        let req = AuthRoleRevokePermissionRequest {
            role: role.clone(),
            key: key.clone(),
            range_end: range_end.clone(),
        };
        async move { a.role_revoke_permission(req).await }
    })?;
    // etcdctl names the key as given (not the "\0" an empty one becomes).
    let mut simple = Vec::new();
    let given = args[1].as_bytes();
    if range_end.is_empty() {
        simple.extend_from_slice(b"Permission of key ");
        simple.extend_from_slice(given);
        simple.extend_from_slice(format!(" is revoked from role {role}\n").as_bytes());
    } else {
        simple.extend_from_slice(b"Permission of range [");
        simple.extend_from_slice(given);
        if range_end == b"\0" {
            simple.extend_from_slice(b", <open ended>");
        } else {
            simple.extend_from_slice(b", ");
            simple.extend_from_slice(&range_end);
            simple.push(b')');
        }
        simple.extend_from_slice(format!(" is revoked from role {role}\n").as_bytes());
    }
    if ctx.format()? == Format::Simple {
        out(&simple);
        return Ok(());
    }
    print_header_only(ctx, String::new(), &resp.header, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_as_clientv3() {
        assert_eq!(prefix_range_end(b"/app/"), b"/app0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }
}
