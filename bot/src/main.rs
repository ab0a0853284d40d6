//! `switchyard-bot`: see the library ([`switchyard_bot`]) and `switchyard-bot --help`.

fn main() -> std::process::ExitCode {
    switchyard_bot::cli::main()
}
