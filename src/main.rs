fn main() {
    std::process::exit(volspike::cli::main());
}
