//! The command line as typed: flags and subcommands, before anything is resolved.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// strata: container storage on pluggable backends.
///
/// The store options come before the command, as containers-storage's do
/// (`strata --root DIR layers`): clap copies a "global" option into every one of the
/// sixty-odd subcommands on each start, which costs more than a whole listing.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Flags {
    /// Where the store keeps its data and catalog (default: `strata/` under the
    /// graphroot of containers-storage's storage.conf when there is one, else
    /// /var/lib/strata as root, $XDG_DATA_HOME/strata otherwise). containers-storage's
    /// `-g/--graph` is the same.
    #[arg(long, short = 'g', visible_alias = "graph", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where per-boot state goes: mount counts, locks (default: `strata/` under
    /// storage.conf's runroot, else /run/strata as root, $XDG_RUNTIME_DIR/strata
    /// otherwise). containers-storage's `-R/--run` is the same.
    #[arg(long, short = 'R', visible_alias = "run", value_name = "DIR")]
    pub run_root: Option<PathBuf>,
    /// The backend of the store at the root, as containers-storage's driver: overlay (the
    /// default, or storage.conf's driver), vhd or vmdk. Its other drivers (vfs, btrfs,
    /// zfs, …) are not strata's: named in a system storage.conf they are passed over
    /// (`status` says so), in the file $CONTAINERS_STORAGE_CONF names they are refused.
    #[arg(long, short = 's', value_name = "DRIVER")]
    pub storage_driver: Option<String>,
    /// A store option, KEY=VALUE (repeatable); a `DRIVER.` prefix, as containers-storage
    /// writes them, is dropped. Options the backend does not read are refused.
    #[arg(long = "storage-opt", value_name = "KEY=VALUE")]
    pub storage_opts: Vec<String>,
    /// The store: a URL such as overlay:///var/lib/strata, or a name from the config file
    /// (default: an overlay store at the root).
    #[arg(long, value_name = "URL|NAME")]
    pub store: Option<String>,
    /// A read-only additional store root whose layers and images may be used, never
    /// written (repeatable); storage.conf's `additionalimagestores` are added.
    #[arg(long = "additional-store", value_name = "DIR")]
    pub additional_stores: Vec<PathBuf>,
    /// A TOML file of named stores.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands, in containers-storage's words.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a layer from a tar stream (plain, gzip or zstd) and print its id.
    ///
    /// strata's shape is `import-layer [--parent P] [FILE|-]`; containers-storage's,
    /// `import-layer [-f FILE] [PARENT]`, works too: with `-f`, the argument is the
    /// parent, and without it an argument that is not a file (nor `-`) is taken as the
    /// parent, the tar then read from standard input.
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
        /// The new layer's id (64 lowercase hex digits) instead of a random one.
        #[arg(short = 'i', long = "id")]
        id: Option<String>,
        /// The tar file (containers-storage's spelling; the argument is then the parent).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        from_file: Option<String>,
        /// The tar file, or - for standard input (the parent, with `-f`).
        #[arg(value_name = "FILE|PARENT")]
        file: Option<String>,
    },
    /// Pull a whole image from an OCI layout (oci:DIR[:TAG|@DIGEST]), an OCI archive
    /// (oci-archive:FILE[:TAG]) or a docker archive (docker-archive:FILE[:REF]) and print
    /// its id. Layers the store holds are not imported again.
    Pull {
        /// Names for the image (repeatable); by default the source's tag or RepoTags. A
        /// name another image holds moves to this one once it is whole.
        #[arg(short = 'n', long = "name")]
        names: Vec<String>,
        /// The platform to pick from a multi-platform index, OS/ARCH[/VARIANT] (default:
        /// this host's).
        #[arg(long)]
        platform: Option<String>,
        /// The source.
        source: String,
    },
    /// Copy a containers-storage overlay store into this store, ids, names, metadata,
    /// creation times, digests and big data kept.
    ///
    /// Every layer goes in as the tar it was imported from, then every image with its
    /// big data, then every container with its files. The source is read under its
    /// own locks and never written; a migrate waits while a containers-storage writer
    /// holds them, and keeps them (shared) until it is done. What this store already
    /// holds is skipped, so an interrupted migrate is finished by running it again. A
    /// container's read-write layer keeps its id too (its files are copied into it). A
    /// container whose layer is mounted in the source (in --from-run's mountpoints.json,
    /// or in the mount table) is skipped with a warning naming it, and the command then
    /// fails after copying everything else.
    Migrate {
        /// The containers-storage graph root (its --graph / graphroot).
        #[arg(long, value_name = "GRAPHROOT")]
        from: PathBuf,
        /// Its run root (--run / runroot), to see which of its layers are mounted.
        #[arg(long, value_name = "RUNROOT")]
        from_run: Option<PathBuf>,
    },
    /// Push an image to an OCI layout (oci:DIR[:TAG]) or OCI archive
    /// (oci-archive:FILE[:TAG]) and print its manifest's digest.
    Push {
        /// How layers are compressed: gzip, zstd or none.
        #[arg(long, default_value = "gzip")]
        compress: String,
        /// The image.
        image: String,
        /// The destination.
        dest: String,
    },
    /// Create an empty layer and print its id.
    CreateLayer {
        /// The new layer's parent.
        #[arg(long = "parent", value_name = "PARENT")]
        parent_flag: Option<String>,
        /// A read-write (container) layer.
        #[arg(long)]
        rw: bool,
        /// A name for the layer (repeatable).
        #[arg(short = 'n', long = "name")]
        names: Vec<String>,
        /// The parent, as containers-storage takes it.
        #[arg(value_name = "PARENT", conflicts_with = "parent_flag")]
        parent: Option<String>,
    },
    /// Apply a tar stream to an existing layer (`applydiff LAYER [FILE|-]`, or
    /// containers-storage's `applydiff -f FILE LAYER`).
    Applydiff {
        /// The layer.
        id: String,
        /// The tar file (containers-storage's spelling).
        #[arg(
            short = 'f',
            long = "file",
            value_name = "FILE",
            conflicts_with = "file"
        )]
        from_file: Option<String>,
        /// The tar file, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Mount a layer with its parents and print the mount point.
    Mount {
        /// The layers or containers.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Mount read-only.
        #[arg(short = 'r', long)]
        read_only: bool,
        /// Print JSON: `id`, `mountpoint` and `error` for each (as containers-storage).
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Print the disk files a VM needs for a layer or a container, topmost first (for
    /// backends whose layers are disks).
    LayerDisks {
        /// The layer or container.
        id: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
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
        /// Compare with this layer instead of the parent (containers-storage's second
        /// argument).
        #[arg(value_name = "REFERENCE", conflicts_with = "from")]
        reference: Option<String>,
        /// Compare with this layer instead of the parent.
        #[arg(long)]
        from: Option<String>,
        /// Filters and renames.
        #[command(flatten)]
        filter: FilterFlags,
        /// Write headers only, each with its change type.
        #[arg(long)]
        no_data: bool,
        /// Write to this file (whole, or not at all) instead of standard output.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        output: Option<String>,
        /// Compress with gzip.
        #[arg(short = 'c', long = "gzip", conflicts_with = "uncompressed")]
        gzip: bool,
        /// Write the tar uncompressed (the default).
        #[arg(short = 'u', long)]
        uncompressed: bool,
    },
    /// List a layer's changes.
    Changes {
        /// The layer.
        id: String,
        /// Compare with this layer instead of the parent.
        #[arg(long)]
        from: Option<String>,
        /// Print JSON.
        #[arg(short = 'j', long)]
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
    /// Delete layers, in the order given; stops at the first that cannot go.
    DeleteLayer {
        /// The layers.
        #[arg(required = true, value_name = "LAYER")]
        ids: Vec<String>,
    },
    /// List layers.
    Layers {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
        /// Print the layers as a tree of parents and children.
        #[arg(short = 't', long, conflicts_with = "json")]
        tree: bool,
    },
    /// The owners (UIDs and GIDs) in these layers' parents that the layers' ID mappings
    /// leave unmapped. strata keeps no ID mappings, so every owner maps to itself and
    /// the sets are empty, as containers-storage answers for unmapped layers.
    LayerParentOwners {
        /// The layers.
        #[arg(required = true, value_name = "LAYER")]
        ids: Vec<String>,
        /// Print JSON: `ID`, `UIDs`, `GIDs`.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// `layer-parent-owners` of these containers' layers.
    ContainerParentOwners {
        /// The containers.
        #[arg(required = true, value_name = "CONTAINER")]
        ids: Vec<String>,
        /// Print JSON: `ID`, `UIDs`, `GIDs`.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Copy files or directories into a layer, from the host or from another layer:
    /// `copy [LAYER:]PATH... LAYER:PATH`. A directory's contents go into the target
    /// path; a file goes to the target path, or into it when it is a directory or ends
    /// with `/`. Owners, modes, times, xattrs and links are kept; nothing lands outside
    /// the target layer, and a layer's source path is looked up without leaving it.
    Copy {
        /// The sources, then the target.
        #[arg(required = true, num_args = 2.., value_name = "[LAYER:]PATH")]
        paths: Vec<String>,
    },
    /// Say which of these layers or containers are mounted (`ID mounted`).
    Mounted {
        /// Layers or containers.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Print JSON: `id`, `mounted` and `error` (empty, or why it could not be told).
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Print strata's version.
    Version {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Show one layer.
    Layer {
        /// The layer.
        id: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Show the store's status.
    Status {
        /// Print JSON: `[key, value]` pairs, as containers-storage prints them.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// List the disks attached as block devices in this store's run root (by any store
    /// or `diskimg` using it): device, format, mode, users, server, broken or not.
    Attachments {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Create an image whose top layer is LAYER and print its id.
    CreateImage {
        /// The top layer (none for an image of no layers).
        layer: Option<String>,
        /// The image's id (default: a random one).
        #[arg(short = 'i', long)]
        id: Option<String>,
        /// A name for the image (repeatable).
        #[arg(short = 'n', long = "name")]
        names: Vec<String>,
        /// The image's digest.
        #[arg(short = 'd', long)]
        digest: Option<String>,
        /// Metadata.
        #[command(flatten)]
        metadata: MetadataFlags,
    },
    /// Create a container of IMAGE and print its id.
    CreateContainer {
        /// The image.
        image: String,
        /// A volume of this store the container uses (repeatable): `volume rm` refuses it
        /// until the container is deleted.
        #[arg(long = "volume", value_name = "ID")]
        volumes: Vec<String>,
        /// The container's id (default: a random one).
        #[arg(short = 'i', long)]
        id: Option<String>,
        /// A name for the container (repeatable).
        #[arg(short = 'n', long = "name")]
        names: Vec<String>,
        /// Metadata.
        #[command(flatten)]
        metadata: MetadataFlags,
    },
    /// List images.
    Images {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
        /// Print ids only.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Show images.
    Image {
        /// The images.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// List the images with a digest.
    ImagesByDigest {
        /// The digest (sha256:HEX).
        digest: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
        /// Print ids only.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// List containers.
    Containers {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Show containers.
    Container {
        /// The containers.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Check that layers, images or containers exist (exit status 1 when one does not).
    Exists {
        /// What to look for.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Only succeed for layers.
        #[arg(short = 'l', long, conflicts_with_all = ["image", "container"])]
        layer: bool,
        /// Only succeed for images.
        #[arg(short = 'i', long, conflicts_with = "container")]
        image: bool,
        /// Only succeed for containers.
        #[arg(short = 'c', long)]
        container: bool,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
        /// Print nothing.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Delete images and the layers nobody else needs (refused while containers use them).
    DeleteImage {
        /// The images.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Only say what would be removed.
        #[arg(short = 't', long)]
        test: bool,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Delete containers with their read-write layers.
    DeleteContainer {
        /// The containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete layers, images or containers (an image's layers stay).
    Delete {
        /// What to delete.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete every container, image and layer.
    Wipe,
    /// Unmount the store's layers and release its resources.
    Shutdown {
        /// Unmount mounted layers instead of refusing.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Print the metadata of layers, images or containers.
    Metadata {
        /// What to read.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
        /// Print the metadata alone.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Set the metadata of a layer, image or container.
    SetMetadata {
        /// What to change.
        id: String,
        /// The metadata.
        #[command(flatten)]
        metadata: MetadataFlags,
    },
    /// Print the names of a layer, image or container.
    GetNames {
        /// The object.
        id: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Add names to a layer, image or container (a name moves from its old holder).
    AddNames(NamesArgs),
    /// Replace the names of a layer, image or container.
    SetNames(NamesArgs),
    /// Remove names from a layer, image or container.
    RemoveNames(NamesArgs),
    /// List the big-data items of a layer.
    ListLayerData(ListDataArgs),
    /// Write a layer's big-data item to standard output (or --file).
    GetLayerData(DataArgs),
    /// Set a layer's big-data item from standard input (or --file).
    SetLayerData(DataArgs),
    /// List the big-data items of an image.
    ListImageData(ListDataArgs),
    /// Write an image's big-data item to standard output (or --file).
    GetImageData(DataArgs),
    /// Set an image's big-data item from standard input (or --file).
    SetImageData(DataArgs),
    /// Print the size of an image's big-data item.
    GetImageDataSize(DataArgs),
    /// Print the digest of an image's big-data item.
    GetImageDataDigest(DataArgs),
    /// List the big-data items of a container.
    ListContainerData(ListDataArgs),
    /// Write a container's big-data item to standard output (or --file).
    GetContainerData(DataArgs),
    /// Set a container's big-data item from standard input (or --file).
    SetContainerData(DataArgs),
    /// Print the size of a container's big-data item.
    GetContainerDataSize(DataArgs),
    /// Print the digest of a container's big-data item.
    GetContainerDataDigest(DataArgs),
    /// Print a container's data directory.
    GetContainerDir {
        /// The container.
        id: String,
    },
    /// Print a container's run directory.
    GetContainerRunDir {
        /// The container.
        id: String,
    },
    /// Port layer: manage image stores.
    #[command(subcommand)]
    ImageStore(ImageStoreCommand),
    /// Port layer: write an image from a tar stream onto its parent in an image store.
    WriteImage {
        /// The new image's id within the store.
        id: String,
        /// The parent image.
        #[arg(long, default_value = "scratch")]
        parent: String,
        /// The image store.
        #[arg(short = 's', long, default_value = "default")]
        image_store: String,
        /// Metadata KEY=VALUE (repeatable).
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        meta: Vec<String>,
        /// The sha256 the stream must have, as sha256:HEX.
        #[arg(long)]
        sum: Option<String>,
        /// The tar file, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
        /// Print the image as JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Port layer: delete an image and the ancestors only it needed.
    DeleteBranch {
        /// The leaf image.
        id: String,
        /// The image store.
        #[arg(short = 's', long, default_value = "default")]
        image_store: String,
        /// Ancestors to keep (repeatable).
        #[arg(long)]
        keep: Vec<String>,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Port layer: write an image (or its difference from an ancestor) as a tar stream.
    Export {
        /// The image.
        id: String,
        /// The image store.
        #[arg(short = 's', long, default_value = "default")]
        image_store: String,
        /// Export only the difference from this ancestor.
        #[arg(long)]
        ancestor: Option<String>,
        /// Filters and renames.
        #[command(flatten)]
        filter: FilterFlags,
        /// Write headers only, each with its change type.
        #[arg(long)]
        no_data: bool,
    },
    /// Port layer: show facts about a path inside an image.
    Stat {
        /// The path inside the image.
        path: String,
        /// The image.
        id: String,
        /// The image store.
        #[arg(short = 's', long, default_value = "default")]
        image_store: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// List the backends compiled in.
    Backends {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Unmount everything this store mounted.
    Cleanup,
    /// Check that the catalog and the data agree: every layer's data present and readable,
    /// big data matching its digests, nothing unreferenced, nothing left half-done. Exits
    /// with 1 when a problem is left.
    Check {
        /// Remove what nothing refers to and finish what was left half-done.
        #[arg(short = 'r', long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Volumes: create, list, remove, import, export, stat (any store that has volumes).
    Volume {
        /// What to do with volumes.
        #[command(subcommand)]
        command: VolumeCommand,
    },
}

impl Command {
    /// Whether the command streams layer or volume data (a tar in or out), where a
    /// multi-threaded runtime keeps the transfer's stages running side by side. The
    /// rest are short catalog operations, for which starting worker threads costs more
    /// than it gives.
    pub fn moves_data(&self) -> bool {
        matches!(
            self,
            Command::ImportLayer { .. }
                | Command::Pull { .. }
                | Command::Migrate { .. }
                | Command::Push { .. }
                | Command::Applydiff { .. }
                | Command::Diff { .. }
                | Command::Changes { .. }
                | Command::Diffsize { .. }
                | Command::WriteImage { .. }
                | Command::Export { .. }
                | Command::Volume {
                    command: VolumeCommand::Import { .. } | VolumeCommand::Export { .. }
                }
        )
    }
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
    /// Show one path's metadata inside a volume (mode, owner, size, time, link target),
    /// without following a symlink at the end or leaving the volume.
    Stat {
        /// The volume's id.
        id: String,
        /// The path inside the volume.
        path: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
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

/// `-m JSON` / `-f FILE` of the metadata commands.
#[derive(Debug, Args)]
pub struct MetadataFlags {
    /// The metadata.
    #[arg(short = 'm', long, conflicts_with = "metadata_file")]
    pub metadata: Option<String>,
    /// Read the metadata from a file.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
}

/// `-n NAME... ID` of the name commands.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// The layer, image or container.
    pub id: String,
    /// A name (repeatable).
    #[arg(short = 'n', long = "name", required = true)]
    pub names: Vec<String>,
    /// Print the names afterwards as JSON.
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `ID KEY [-f FILE]` of the big-data commands.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// The owner.
    pub id: String,
    /// The item's key.
    pub key: String,
    /// Read (set) or write (get) the data from or to this file instead of standard I/O.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `ID` of the big-data listings.
#[derive(Debug, Args)]
pub struct ListDataArgs {
    /// The owner.
    pub id: String,
    /// Print JSON.
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `image-store` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageStoreCommand {
    /// Create an image store with its scratch root.
    Create {
        /// The store's name.
        name: String,
    },
    /// List image stores.
    #[command(alias = "ls")]
    List {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Delete an image store (refused while it holds images).
    Rm {
        /// The store's name.
        name: String,
    },
    /// List the images of an image store.
    Images {
        /// The store's name.
        name: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
}
