fn main() -> std::process::ExitCode {
    volspike::cli::main()
}
