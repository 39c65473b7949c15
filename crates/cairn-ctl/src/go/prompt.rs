//! Reading passwords as etcdctl does: `speakeasy.Ask` for a prompt without echo, and
//! `fmt.Scanf("%s")` for `--interactive=false`.
//!
//! speakeasy writes the prompt on stdout, turns the terminal's echo off by running
//! `/bin/stty -echo` on the same standard streams, reads one line a byte at a time, turns
//! echo back on with `/bin/stty echo` and ends the prompt's line. Running the same `stty`
//! keeps what the user sees identical, including stty's complaints when standard input is
//! not a terminal (then the line is read from the pipe all the same). No terminal call is
//! made from this process.

use std::io::{Read, Write};
use std::process::Command;

/// The `stty` speakeasy runs.
const STTY: &str = "/bin/stty";

/// Reads one byte of standard input; `None` at its end or on an error.
fn read_byte() -> Option<u8> {
    let mut b = [0u8; 1];
    match std::io::stdin().lock().read(&mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

/// Runs `stty` with `arg` on this process's standard streams; its exit status is not
/// looked at, as speakeasy does not look at it.
fn stty(arg: &str) {
    use std::os::unix::process::CommandExt;
    // speakeasy names it `stty` in its argv, which is how stty signs its complaints.
    let _ = Command::new(STTY).arg0("stty").arg(arg).status();
}

/// Shows `prompt` and reads a line without echo: the line without its `\n` (and a `\r`
/// before it), as speakeasy's `Ask`.
pub fn ask(prompt: &str) -> String {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(prompt.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    stty("-echo");
    let mut line = Vec::new();
    while let Some(b) = read_byte() {
        if b == b'\n' {
            break;
        }
        line.push(b);
    }
    stty("echo");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8_lossy(&line).into_owned()
}
/// Reads a word from standard input as Go's `fmt.Scanf("%s", &w)` does: spaces before it
/// are skipped, a newline before it ends the scan with nothing, and the word ends at the
/// next space or newline (which stays unread as far as the caller cares).
pub fn scan_word() -> String {
    let mut word = Vec::new();
    while let Some(b) = read_byte() {
        let space = matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
        if word.is_empty() {
            if b == b'\n' {
                // Scanf: "unexpected newline" (a "\r\n" too); the word stays empty.
                return String::new();
            }
            if space {
                continue;
            }
        } else if space {
            break;
        }
        word.push(b);
    }
    String::from_utf8_lossy(&word).into_owned()
}
