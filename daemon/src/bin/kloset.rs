//! `kloset`: the command line for Kloset stores (see `klosetd::cli`).

fn main() {
    kloset::malloc::tune();
    kloset::dirfd::raise_fd_limit();
    std::process::exit(klosetd::cli::main());
}
