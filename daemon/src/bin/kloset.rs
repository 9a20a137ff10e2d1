//! `kloset`: the command line for Kloset stores (see `klosetd::cli`).

fn main() {
    kloset::malloc::tune();
    kloset::dirfd::raise_fd_limit();
    klosetd::redact::install_panic_hook();
    klosetd::redact::remember_cli_sources();
    std::process::exit(klosetd::cli::main());
}
