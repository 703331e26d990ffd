//! Quoting for a POSIX shell: the one place that turns a word into shell syntax.
//!
//! A leaf module: it imports nothing from the crate, so config, exec, hooks and ci may all
//! use it without depending on each other.

/// POSIX single-quoting: everything is literal inside `'…'`; a `'` becomes `'\''`.
/// Always quotes, so the result is safe wherever a word may stand.
pub fn quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// [`quote`] for text that people read (generated CI files): a word made only of
/// characters the shell never treats specially stays bare.
pub fn quote_word(s: &str) -> String {
    if is_plain_word(s) {
        return s.to_string();
    }
    // Quoting only inserts ASCII around and inside valid UTF-8, so nothing is lost here.
    String::from_utf8_lossy(&quote(s.as_bytes())).into_owned()
}

/// Whether a shell passes `word` on as it is: it is made only of characters the shell never
/// treats specially (no quoting, expansion, globbing, redirection, operator or comment).
pub fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+:/@=,".contains(&b))
}

/// Words a shell runs itself, keywords and builtins (POSIX, dash and bash): never looked up
/// on the PATH, or run differently from the program of the same name (`echo`, `test`).
/// `true` and `false` are not here: their programs do exactly what the builtins do.
pub const SHELL_WORDS: &[&str] = &[
    "alias", "bg", "break", "builtin", "case", "cd", "chdir", "command", "continue", "declare",
    "do", "done", "echo", "elif", "else", "enable", "esac", "eval", "exec", "exit", "export", "fc",
    "fg", "fi", "for", "function", "getopts", "hash", "if", "in", "jobs", "kill", "let", "local",
    "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source", "test",
    "then", "time", "times", "trap", "type", "typeset", "ulimit", "umask", "unalias", "unset",
    "until", "wait", "while",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_keeps_every_byte_literal() {
        assert_eq!(quote(b"plain"), b"'plain'");
        assert_eq!(quote(b"it's"), b"'it'\\''s'");
        assert_eq!(quote(b""), b"''");
        assert_eq!(quote(b"a\xffb"), b"'a\xffb'");
    }

    #[test]
    fn quote_word_leaves_safe_words_bare() {
        assert_eq!(quote_word("it's"), "'it'\\''s'");
        assert_eq!(quote_word("ci/preflight.toml"), "ci/preflight.toml");
        assert_eq!(quote_word(""), "''");
        assert_eq!(quote_word("a b"), "'a b'");
        assert_eq!(quote_word("$HOME"), "'$HOME'");
    }
}
