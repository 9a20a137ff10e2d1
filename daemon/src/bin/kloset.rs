//! `kloset`: the command line for Kloset stores (see `klosetd::cli`).

fn main() {
    kloset::malloc::limit_arenas();
    kloset::dirfd::raise_fd_limit();
    std::process::exit(klosetd::cli::main());
}
