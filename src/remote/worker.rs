//! Placeholder: the worker loop.
