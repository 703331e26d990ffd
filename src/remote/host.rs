//! This machine as REAPI sees it: its name, and its OS and instruction set in the platform
//! lexicon's words (`OSFamily = "linux"`, `ISA = "x86-64"`).

/// This machine's instruction set in the REAPI platform lexicon's words.
pub fn isa() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86-32",
        "aarch64" => "arm-a64",
        "arm" => "arm-a32",
        other => other,
    }
}

/// `OSFamily` and `ISA` of this machine.
pub fn platform() -> [(&'static str, &'static str); 2] {
    [("OSFamily", std::env::consts::OS), ("ISA", isa())]
}

/// Whether this machine has the OS and instruction set that properties ask for (other
/// properties, such as a pool, say nothing about what a result is).
pub fn satisfies<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let here = platform();
    properties.into_iter().all(|(name, value)| {
        here.iter()
            .find(|(key, _)| *key == name)
            .is_none_or(|(_, ours)| *ours == value)
    })
}

/// This machine's name.
pub fn name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is what gethostname is told.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_os_and_instruction_set_are_checked() {
        assert!(satisfies([
            ("OSFamily", std::env::consts::OS),
            ("pool", "large")
        ]));
        assert!(!satisfies([("OSFamily", "plan9")]));
        assert!(satisfies([]));
    }
}
