//! The `preflight` binary: parse the command line, run it, turn the outcome into an exit code.

fn main() {
    let code = preflight::commands::main(std::env::args_os());
    std::process::exit(code);
}
