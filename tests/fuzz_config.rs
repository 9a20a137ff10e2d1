//! Fuzzes configuration loading and validation: TOML text (seeds in
//! `daemon/fuzz-corpus/config/`, from `config.example.d/` and
//! `docs/reference.d/`) written as the one file of a configuration
//! directory, then `klosetd::config::load_and_validate`, as the daemon and
//! `klosetd validate` read it. Any outcome but a panic is fine; the seeds
//! must load (valid) or fail with errors (invalid), never panic.

use std::path::Path;

#[test]
fn fuzz_config_load_and_validate() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus/config");
    let corpus = kloset::fuzz::load_corpus(&seeds).expect("config seed corpus");
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("00-fuzz.toml");
    let (mut valid, mut invalid) = (0u64, 0u64);
    kloset::fuzz::run("config", &corpus, |input| {
        std::fs::write(&file, input).expect("write the config file");
        match klosetd::config::load_and_validate(tmp.path()) {
            Ok(_) => valid += 1,
            Err(errors) => {
                assert!(!errors.is_empty(), "an invalid config with no error");
                invalid += 1;
            }
        }
    });
    assert!(
        invalid > 0,
        "no input was refused: the target checks nothing"
    );
    eprintln!("config: {valid} valid, {invalid} refused");
}
