//! Go behaviour that etcdctl's output and errors depend on, reproduced byte for byte:
//! pflag's parsing and messages ([`flags`]), `text/tabwriter` for help ([`tabwriter`]),
//! Go's formatting of strings, durations, sizes and times ([`gofmt`]), and the Go
//! client's peer URL checks over `net/url` ([`url`]), and reading passwords as
//! speakeasy and `fmt.Scanf` do ([`prompt`]).
//!
//! Nothing here knows about the client, the printers or the commands: this module uses
//! nothing else in the crate, so everything else can build on it.

pub(crate) mod flags;
pub(crate) mod gofmt;
pub(crate) mod prompt;
pub(crate) mod tabwriter;
pub(crate) mod url;
