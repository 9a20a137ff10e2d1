//! `kloset`: the command line for Kloset stores (see `klosetd::cli`).

fn main() {
    std::process::exit(klosetd::cli::main());
}
