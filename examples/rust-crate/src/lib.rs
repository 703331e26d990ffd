//! A tiny library: turn text into a URL slug.

/// Turns `text` into a slug: lowercase ASCII letters and digits, with a
/// single `-` between words.
///
/// ```
/// assert_eq!(tiny_example::slugify("Hello, World!"), "hello-world");
/// ```
pub fn slugify(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    if slug.ends_with('-') {
        slug.pop();
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn joins_words_with_single_dashes() {
        assert_eq!(slugify("  Rust -- is  fun! "), "rust-is-fun");
    }

    #[test]
    fn keeps_digits_and_drops_other_characters() {
        assert_eq!(slugify("Version 2.0 (beta)"), "version-2-0-beta");
        assert_eq!(slugify("?!"), "");
    }
}
