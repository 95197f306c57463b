//! The command line as typed: flags and subcommands, before anything is resolved.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// strata: container storage on pluggable backends.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Flags {
    /// Where the store keeps its data and catalog (default: /var/lib/strata as root,
    /// $XDG_DATA_HOME/strata otherwise).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where per-boot state goes: mount counts, locks (default: /run/strata as root,
    /// $XDG_RUNTIME_DIR/strata otherwise).
    #[arg(long, global = true, value_name = "DIR")]
    pub run_root: Option<PathBuf>,
    /// The store: a URL such as overlay:///var/lib/strata, or a name from the config file
    /// (default: an overlay store at the root).
    #[arg(long, global = true, value_name = "URL|NAME")]
    pub store: Option<String>,
    /// A TOML file of named stores.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands, in containers-storage's words.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a layer from a tar stream (plain, gzip or zstd) and print its id.
    ImportLayer {
        /// The new layer's parent.
        #[arg(long)]
        parent: Option<String>,
        /// The sha256 the stream must have, as sha256:HEX.
        #[arg(long)]
        sum: Option<String>,
        /// A name for the layer (repeatable).
        #[arg(short = 'n', long = "name")]
        names: Vec<String>,
        /// The tar file, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Create an empty layer and print its id.
    CreateLayer {
        /// The new layer's parent.
        #[arg(long)]
        parent: Option<String>,
        /// A read-write (container) layer.
        #[arg(long)]
        rw: bool,
        /// A name for the layer (repeatable).
        #[arg(short = 'n', long = "name")]
        names: Vec<String>,
    },
    /// Apply a tar stream to an existing layer.
    Applydiff {
        /// The layer.
        id: String,
        /// The tar file, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Mount a layer with its parents and print the mount point.
    Mount {
        /// The layer.
        id: String,
        /// Mount read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Release one mount of a layer.
    Unmount {
        /// The layer.
        id: String,
    },
    /// Write a layer's changes as a tar stream to standard output.
    Diff {
        /// The layer.
        id: String,
        /// Compare with this layer instead of the parent.
        #[arg(long)]
        from: Option<String>,
        /// Filters and renames.
        #[command(flatten)]
        filter: FilterFlags,
        /// Write headers only, each with its change type.
        #[arg(long)]
        no_data: bool,
    },
    /// List a layer's changes.
    Changes {
        /// The layer.
        id: String,
        /// Compare with this layer instead of the parent.
        #[arg(long)]
        from: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the size of a layer's changes.
    Diffsize {
        /// The layer.
        id: String,
        /// Compare with this layer instead of the parent.
        #[arg(long)]
        from: Option<String>,
    },
    /// Delete a layer.
    DeleteLayer {
        /// The layer.
        id: String,
    },
    /// List layers.
    Layers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one layer.
    Layer {
        /// The layer.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the store's status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the backends compiled in.
    Backends {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unmount everything this store mounted.
    Cleanup,
    /// Volumes: create, list, remove, import, export (any store that has volumes).
    Volume {
        /// What to do with volumes.
        #[command(subcommand)]
        command: VolumeCommand,
    },
}

/// `volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        /// The volume's id.
        id: String,
        /// An info entry stored with the volume (repeatable).
        #[arg(long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
    },
    /// List volumes.
    Ls {
        /// Print JSON: an array of objects with `id` and `info`.
        #[arg(long)]
        json: bool,
    },
    /// Remove a volume and its info.
    Rm {
        /// The volume's id.
        id: String,
    },
    /// Apply a tar stream (plain, gzip or zstd) to a volume.
    Import {
        /// The volume's id.
        id: String,
        /// The tar file, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Write a volume as a tar stream to standard output.
    Export {
        /// The volume's id.
        id: String,
        /// Which entries, renamed how.
        #[command(flatten)]
        filter: FilterFlags,
        /// Headers only, each with its change type.
        #[arg(long)]
        no_data: bool,
    },
}

/// FilterSpec flags of `diff`.
#[derive(Debug, Args)]
pub struct FilterFlags {
    /// Include this path's subtree (repeatable).
    #[arg(long = "include", value_name = "PATH")]
    pub include: Vec<String>,
    /// Exclude this path's subtree (repeatable).
    #[arg(long = "exclude", value_name = "PATH")]
    pub exclude: Vec<String>,
    /// Remove this prefix from names.
    #[arg(long, value_name = "PATH")]
    pub strip: Option<String>,
    /// Put this prefix in front of names.
    #[arg(long, value_name = "PATH")]
    pub rebase: Option<String>,
}
