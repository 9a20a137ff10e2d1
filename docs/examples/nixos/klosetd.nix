# klosetd.nix: a NixOS module for klosetd (see docs/operations.md, "NixOS").
#
#   imports = [ ./klosetd.nix ];
#   services.klosetd = {
#     enable = true;
#     package = pkgs.callPackage ./klosetd-package.nix { };  # provides bin/klosetd
#     settings = import ./klosetd-settings.nix;
#     credentials."offsite.passphrase" = "/run/keys/klosetd-offsite.passphrase";
#   };
#
# `settings` is rendered to TOML with pkgs.formats.toml into a store path,
# and /etc/klosetd/conf.d points at it through environment.etc. A rebuild
# swaps that symlink chain atomically (/etc/static -> new generation); the
# daemon watches every symlink on the path, and the unit is reloaded too, so
# the new configuration applies without a restart. tests/ops_examples.rs
# parses this file with `nix-instantiate --parse`.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.klosetd;
  toml = pkgs.formats.toml { };

  # The config directory: one TOML file, a symlink into the store (klosetd
  # follows symlinks). Secrets never go here: the store is world-readable.
  confDir = pkgs.linkFarm "klosetd-conf.d" [
    {
      name = "00-nixos.toml";
      path = toml.generate "klosetd.toml" cfg.settings;
    }
  ];

  # `klosetd validate` at build time. Credentials are not readable in the
  # build sandbox, so each declared credential is replaced by a placeholder
  # file: this checks syntax, keys, references and cron, and that every
  # $CREDENTIALS_DIRECTORY/NAME the settings use is declared.
  checkedConfDir = pkgs.runCommand "klosetd-conf.d-checked" { } ''
    export CREDENTIALS_DIRECTORY="$PWD/credentials"
    mkdir -p "$CREDENTIALS_DIRECTORY"
    ${lib.concatMapStrings (name: ''
      echo placeholder > "$CREDENTIALS_DIRECTORY/${name}"
    '') (lib.attrNames cfg.credentials)}
    ${cfg.package}/bin/klosetd validate ${confDir}
    ln -s ${confDir} $out
  '';
in
{
  options.services.klosetd = {
    enable = lib.mkEnableOption "klosetd, the declarative backup daemon";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The klosetd package; it must provide bin/klosetd (and bin/kloset).";
    };

    settings = lib.mkOption {
      type = toml.type;
      default = { };
      description = ''
        The configuration, as the tables of docs/configuration.md:
        `daemon`, `resource.NAME`, `store.NAME`, `source.NAME`,
        `destination.NAME`, `schedule.NAME`, `task.NAME`. Use absolute paths,
        and "$CREDENTIALS_DIRECTORY/NAME" for secrets (see `credentials`).
      '';
      example = lib.literalExpression ''
        {
          # The S3 service once; each store on it adds bucket and prefix.
          resource.offsite = {
            class = "object-storage";
            subclass = "s3";
            region = "eu-central-1";
            secret_access_key_file = "$CREDENTIALS_DIRECTORY/s3.secret_access_key";
            access_key_id_file = "$CREDENTIALS_DIRECTORY/s3.access_key_id";
          };
          store.offsite = {
            resource = "offsite";
            bucket = "example-backups";
            prefix = config.networking.hostName;
            passphrase_file = "$CREDENTIALS_DIRECTORY/offsite.passphrase";
          };
          source.home.location = "/home";
          schedule.home-nightly = {
            task = "backup";
            source = "home";
            store = "offsite";
            cron = "30 1 * * *";
            catch_up = true;
          };
        }
      '';
    };

    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      description = ''
        Secrets loaded with systemd's LoadCredential=: credential name to an
        absolute path on the host (e.g. from agenix or sops-nix), read as
        "$CREDENTIALS_DIRECTORY/NAME" in the settings. A string, not a Nix
        path, so the secret is never copied into the store. systemd reads
        them at start: a changed secret needs a restart.
      '';
      example = {
        "offsite.passphrase" = "/run/keys/klosetd-offsite.passphrase";
      };
    };

    readWritePaths = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = ''
        Paths the daemon may write besides /var/lib/klosetd: local store
        locations and restore destinations (the rest of the file system is
        read-only to it). They must exist.
      '';
      example = [ "/srv/backups/klosetd" ];
    };

    restoreOwnership = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Grant CAP_CHOWN, CAP_FOWNER and CAP_DAC_OVERRIDE so restores (and
        restore tests) can recreate owners and modes. Without it the daemon
        can read every file but change none it does not own.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Run `klosetd validate` on the rendered settings at build time, so an
        invalid configuration fails the rebuild instead of the deploy.
        Turn it off if the settings read secrets from outside
        $CREDENTIALS_DIRECTORY or from environment variables.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    # A symlink to a store path: switching generations replaces the whole
    # directory at once, never file by file.
    environment.etc."klosetd/conf.d".source =
      if cfg.checkConfig then checkedConfDir else confDir;

    systemd.services.klosetd = {
      description = "klosetd declarative backup daemon";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # A changed configuration is a reload (SIGHUP), not a restart: running
      # tasks go on. The daemon would notice the symlink swap by itself; the
      # reload makes it immediate and retries objects that are not ready.
      reloadTriggers = [ confDir ];
      # New secrets are only loaded at start.
      restartTriggers = [ (builtins.toJSON cfg.credentials) ];

      serviceConfig = {
        # The semantics of systemd/klosetd.service.
        Type = "notify";
        NotifyAccess = "main";
        # The path in /etc, not the store path: the store path changes with
        # every settings change and would force a restart.
        ExecStart = "${cfg.package}/bin/klosetd run --config /etc/klosetd/conf.d";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        WatchdogSec = 60;
        TimeoutStopSec = 45;
        Restart = "on-failure";
        RestartSec = "10s";
        StateDirectory = "klosetd";
        StateDirectoryMode = "0700";
        # /var/cache/kloset: tree packs of remote stores, shared with the
        # kloset CLI run as root; disposable, verified on every read.
        CacheDirectory = "kloset";
        CacheDirectoryMode = "0700";
        # No ConfigurationDirectory=: environment.etc owns /etc/klosetd/conf.d.
        RuntimeDirectory = "klosetd";
        UMask = "0077";
        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;

        # Root, to read everything; only CAP_DAC_READ_SEARCH is kept.
        CapabilityBoundingSet =
          [ "CAP_DAC_READ_SEARCH" ]
          ++ lib.optionals cfg.restoreOwnership [ "CAP_CHOWN" "CAP_FOWNER" "CAP_DAC_OVERRIDE" ];
        AmbientCapabilities =
          [ "CAP_DAC_READ_SEARCH" ]
          ++ lib.optionals cfg.restoreOwnership [ "CAP_CHOWN" "CAP_FOWNER" "CAP_DAC_OVERRIDE" ];
        ProtectSystem = "strict";
        ProtectHome = "read-only";
        ReadWritePaths = cfg.readWritePaths;
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        # As systemd/klosetd.service: the system-service call set without
        # @resources, refused calls fail with EPERM; /proc shows only this
        # service's own processes.
        SystemCallFilter = [ "@system-service" "~@resources" ];
        SystemCallErrorNumber = "EPERM";
        ProtectProc = "invisible";
        ProcSubset = "pid";
        PrivateMounts = true;
      };
    };
  };
}
