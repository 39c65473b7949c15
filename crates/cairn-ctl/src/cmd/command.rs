//! The command tree, cobra's dispatch and etcdctl's help template.
//!
//! A [`Command`] is a name, its usage line, help texts, flags and a run function. Finding
//! the command, parsing flags, printing help and reporting flag errors follow cobra as
//! etcdctl 3.5 configures it: help goes to stdout; a flag error prints `Error: ...` and a
//! blank line to stderr, the command's usage to stdout, `Error: ...` again, and exits 1.

use crate::global::{CtlError, Ctx, ExitCode};
use crate::go::flags::{self, Kind, Spec};
use crate::go::tabwriter;

/// A command's body: gets the context (flags, client factory) and positional args.
pub type RunFn = fn(&mut Ctx, &[String]) -> Result<(), CtlError>;

/// One command or command group.
pub struct Command {
    /// The word that selects it.
    pub name: &'static str,
    /// cobra's `Use`: the name and what follows it.
    pub usage: &'static str,
    /// One-line description.
    pub short: &'static str,
    /// Longer description, shown under DESCRIPTION.
    pub long: &'static str,
    /// Flags of this command only.
    pub flags: &'static [Spec],
    /// Flags this command passes down to its subcommands (and has itself).
    pub persistent: &'static [Spec],
    /// The body; `None` for groups.
    pub run: Option<RunFn>,
    /// Subcommands, sorted by name.
    pub children: Vec<Command>,
}

impl Command {
    /// A runnable command.
    pub fn leaf(
        name: &'static str,
        usage: &'static str,
        short: &'static str,
        flags: &'static [Spec],
        run: RunFn,
    ) -> Command {
        Command {
            name,
            usage,
            short,
            long: "",
            flags,
            persistent: &[],
            run: Some(run),
            children: Vec::new(),
        }
    }

    /// A group of subcommands.
    pub fn group(
        name: &'static str,
        usage: &'static str,
        short: &'static str,
        mut children: Vec<Command>,
    ) -> Command {
        children.sort_by_key(|c| c.name);
        Command {
            name,
            usage,
            short,
            long: "",
            flags: &[],
            persistent: &[],
            run: None,
            children,
        }
    }

    /// Sets the long description.
    pub fn long(mut self, long: &'static str) -> Command {
        self.long = long;
        self
    }

    /// Sets flags inherited by subcommands.
    pub fn persistent(mut self, flags: &'static [Spec]) -> Command {
        self.persistent = flags;
        self
    }
}

fn help_spec(name: &str) -> Spec {
    let usage: &'static str = Box::leak(format!("help for {name}").into_boxed_str());
    Spec::short("help", 'h', Kind::Bool, "false", usage)
}

/// The path from the root to the selected command.
struct Path<'a> {
    chain: Vec<&'a Command>,
}

impl Path<'_> {
    fn cmd(&self) -> &Command {
        self.chain[self.chain.len() - 1]
    }

    fn is_root(&self) -> bool {
        self.chain.len() == 1
    }

    /// Names below the root, e.g. `endpoint status`.
    fn name_below_root(&self) -> String {
        self.chain[1..]
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command_path(&self) -> String {
        self.chain
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn local_flags(&self) -> Vec<Spec> {
        let cmd = self.cmd();
        let mut specs: Vec<Spec> = cmd.flags.iter().chain(cmd.persistent).copied().collect();
        specs.push(help_spec(cmd.name));
        specs
    }

    fn inherited_flags(&self) -> Vec<Spec> {
        let n = self.chain.len();
        self.chain[..n - 1]
            .iter()
            .rev()
            .flat_map(|c| c.persistent.iter().copied())
            .collect()
    }

    fn all_flags(&self) -> Vec<Spec> {
        let mut all = self.local_flags();
        all.extend(self.inherited_flags());
        all
    }

    /// etcdctl's usage text for this command.
    fn usage_text(&self) -> String {
        let cmd = self.cmd();
        let mut t = String::from("NAME:\n");
        if self.is_root() {
            t.push_str(&format!("\t{} - {}\n", cmd.name, cmd.short));
        } else {
            t.push_str(&format!("\t{} - {}\n", self.name_below_root(), cmd.short));
        }
        let parent_path = self.chain[..self.chain.len() - 1]
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" ");
        let mut use_line = if self.is_root() {
            cmd.usage.to_string()
        } else {
            format!("{parent_path} {}", cmd.usage)
        };
        if !use_line.contains("[flags]") {
            use_line.push_str(" [flags]");
        }
        t.push_str(&format!("\nUSAGE:\n\t{use_line}\n"));
        if self.is_root() {
            t.push_str(&format!("\nVERSION:\n\t{}\n", super::version::VERSION));
        }
        if !cmd.children.is_empty() {
            t.push_str(&format!(
                "\nAPI VERSION:\n\t{}\n",
                super::version::API_VERSION
            ));
            t.push_str("\n\nCOMMANDS:\n");
            fn walk(cmd: &Command, prefix: &str, t: &mut String) {
                for child in &cmd.children {
                    let name = if prefix.is_empty() {
                        child.name.to_string()
                    } else {
                        format!("{prefix} {}", child.name)
                    };
                    if child.run.is_some() {
                        t.push_str(&format!("\t{name}\t{}\n", child.short));
                    }
                    walk(child, &name, t);
                }
            }
            walk(cmd, "", &mut t);
        }
        if !cmd.long.is_empty() {
            t.push_str("\nDESCRIPTION:\n");
            for line in cmd
                .long
                .trim_matches(|c| c == '\n' || c == '\t' || c == ' ')
                .split('\n')
            {
                t.push_str(&format!("\t{line}\n"));
            }
        }
        let local = self.local_flags();
        t.push_str("\nOPTIONS:\n");
        t.push_str(&flags::usages(&local.iter().collect::<Vec<_>>()));
        let inherited = self.inherited_flags();
        if !inherited.is_empty() {
            t.push_str("\nGLOBAL OPTIONS:\n");
            t.push_str(&flags::usages(&inherited.iter().collect::<Vec<_>>()));
        }
        t.push('\n');
        tabwriter::align(&t)
    }
}

/// Whether `arg` is a flag that takes the next argument as its value.
fn takes_value(arg: &str, specs: &[Spec]) -> bool {
    if let Some(long) = arg.strip_prefix("--") {
        if long.contains('=') {
            return false;
        }
        return specs.iter().any(|s| s.name == long && s.kind != Kind::Bool);
    }
    if let Some(short) = arg.strip_prefix('-') {
        if short.chars().count() == 1 {
            let c = short.chars().next();
            return specs.iter().any(|s| s.short == c && s.kind != Kind::Bool);
        }
    }
    false
}

/// Finds the command named by the leading non-flag words, as cobra's `Find` does, and
/// returns it with the arguments left once those words are removed.
fn find<'a>(root: &'a Command, args: &[String]) -> (Path<'a>, Vec<String>) {
    let mut path = Path { chain: vec![root] };
    let mut rest: Vec<String> = args.to_vec();
    loop {
        let specs = path.all_flags();
        let mut i = 0;
        let mut word = None;
        while i < rest.len() {
            let a = &rest[i];
            if a == "--" {
                break;
            }
            if a.starts_with('-') && a.len() > 1 {
                i += if takes_value(a, &specs) { 2 } else { 1 };
                continue;
            }
            word = Some(i);
            break;
        }
        let Some(idx) = word else { break };
        let current: &'a Command = path.chain[path.chain.len() - 1];
        let Some(child) = current.children.iter().find(|c| c.name == rest[idx]) else {
            break;
        };
        rest.remove(idx);
        path.chain.push(child);
    }
    (path, rest)
}

/// The first argument that is not a flag or a flag's value.
fn first_word<'a>(args: &'a [String], specs: &[Spec]) -> Option<&'a String> {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return args.get(i + 1);
        }
        if a.starts_with('-') && a.len() > 1 {
            i += if takes_value(a, specs) { 2 } else { 1 };
            continue;
        }
        return Some(a);
    }
    None
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Runs etcdctl's command line; returns the exit code.
pub fn run(root: &Command, args: &[String]) -> i32 {
    let (path, rest) = find(root, args);
    let cmd = path.cmd();
    if path.is_root() {
        if let Some(word) = first_word(&rest, &path.all_flags()) {
            let mut msg = format!("unknown command \"{word}\" for \"{}\"", cmd.name);
            let suggestions: Vec<&str> = cmd
                .children
                .iter()
                .filter(|c| c.run.is_some() || !c.children.is_empty())
                .map(|c| c.name)
                .filter(|n| {
                    levenshtein(&n.to_lowercase(), &word.to_lowercase()) <= 2
                        || n.to_lowercase().starts_with(&word.to_lowercase())
                })
                .collect();
            if !suggestions.is_empty() {
                msg.push_str("\n\nDid you mean this?\n");
                for s in suggestions {
                    msg.push_str(&format!("\t{s}\n"));
                }
            }
            eprintln!("Error: {msg}\nRun '{} --help' for usage.", cmd.name);
            eprintln!("Error: {msg}");
            return ExitCode::Error as i32;
        }
    }
    let specs = path.all_flags();
    let parsed = match flags::parse(&specs, &rest) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("Error: {msg}\n");
            print!("{}", path.usage_text());
            eprintln!("Error: {msg}");
            return ExitCode::Error as i32;
        }
    };
    if parsed.help {
        print!("{}", path.usage_text());
        return 0;
    }
    let Some(run) = cmd.run else {
        print!("{}", path.usage_text());
        return 0;
    };
    let mut ctx = Ctx::new(parsed.values, path.inherited_flags(), path.command_path());
    ctx.raw_args = args.to_vec();
    match run(&mut ctx, &parsed.args) {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

/// `etcdctl help [command]`: prints the named command's usage.
pub fn help_for(root: &Command, words: &[String]) -> String {
    let (path, _) = find(root, words);
    path.usage_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_commands_around_flags() {
        let root = super::super::root();
        let args: Vec<String> = ["-w", "json", "endpoint", "--cluster", "status", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (path, rest) = find(&root, &args);
        assert_eq!(path.command_path(), "etcdctl endpoint status");
        assert_eq!(rest, vec!["-w", "json", "--cluster", "x"]);
    }
}
