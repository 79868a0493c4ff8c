//! Error texts for people: one sentence per failure, what failed, where, and what to do.

use std::io;

/// The reason in an I/O error, in words, without the OS's `(os error N)` suffix repeated.
pub(crate) fn io_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => {
            "the address is already in use (another uns, or another program, listens there)"
                .to_owned()
        }
        io::ErrorKind::AddrNotAvailable => "no interface of this machine has that address".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; files need write access)"
                .to_owned()
        }
        io::ErrorKind::NotFound => "it does not exist".to_owned(),
        _ => {
            let text = err.to_string();
            // `Os { .. }` errors end in " (os error N)"; keep the words only.
            match text.rfind(" (os error") {
                Some(idx) => text[..idx].to_owned(),
                None => text,
            }
        }
    }
}

/// An error and its causes on one line, leaving out a cause whose text the line already says
/// (libraries that embed their source's text in their own would repeat it).
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_causes_are_said_once() {
        let os = io::Error::from(io::ErrorKind::AddrInUse);
        let err = anyhow::Error::new(os).context("binding 127.0.0.1:8080: address in use");
        assert_eq!(one_line(&err).matches("address in use").count(), 1);
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&err), "outer: inner");
        assert!(io_reason(&io::Error::from_raw_os_error(98)).contains("already in use"));
        assert!(!io_reason(&io::Error::from_raw_os_error(28)).contains("os error"));
    }
}
