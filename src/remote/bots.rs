//! Placeholder: the Remote Workers API messages.
