# klosetd-package.nix: klosetd and kloset built from this workspace with
# rustPlatform.buildRustPackage (the NixOS counterpart of the Debian package
# of scripts/package). Used by klosetd.nix as
#   package = pkgs.callPackage ./klosetd-package.nix { };
# tests/ops_examples.rs parses it with `nix-instantiate --parse`.
{ lib, rustPlatform, pkg-config, openssl, installShellFiles }:

rustPlatform.buildRustPackage {
  pname = "klosetd";
  version = "0.1.0";
  # The repository root (this file is docs/examples/nixos/).
  src = lib.cleanSource ../../..;
  cargoLock.lockFile = ../../../Cargo.lock;
  # Only the shipped package; xtask/ (the man page generator) runs below.
  cargoBuildFlags = [ "-p" "klosetd" ];
  # The end-to-end tests need servers and root; scripts/test runs them.
  doCheck = false;
  nativeBuildInputs = [ pkg-config installShellFiles ];
  buildInputs = [ openssl ];
  postInstall = ''
    cargo run --release --offline -p xtask -- package-assets "$TMPDIR/assets"
    installManPage "$TMPDIR"/assets/man/*.gz
    installShellCompletion --bash "$TMPDIR"/assets/completions/bash/*
    installShellCompletion --zsh "$TMPDIR"/assets/completions/zsh/*
    installShellCompletion --fish "$TMPDIR"/assets/completions/fish/*
    install -Dm0644 systemd/klosetd.service $out/lib/systemd/system/klosetd.service
  '';
  meta = {
    description = "Declarative backup daemon and the kloset command line";
    license = lib.licenses.asl20;
    mainProgram = "klosetd";
  };
}
