//! The `contain` binary: everything happens in [`contain::app`].

fn main() -> std::process::ExitCode {
    contain::app::main()
}
