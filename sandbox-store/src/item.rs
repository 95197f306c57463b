//! The items a sandbox or container stores, and where each one lives.

use std::fmt;

/// One piece of a sandbox's or container's state, stored as one JSON file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Item {
    /// The configuration the sandbox or container was created with. The only item kept
    /// under the persistent root: it survives a reboot.
    Configuration,
    /// The run state (created, running, paused, …).
    State,
    /// Network namespace, interfaces and routes.
    Network,
    /// The hypervisor's run-time state (pid, sockets, hotplugged slots).
    Hypervisor,
    /// The agent's connection state.
    Agent,
    /// The container's process (pid, token, start time).
    Process,
    /// The mounts made for a container.
    Mounts,
    /// The devices attached; see [`Device`](super::Device) for the stored shape.
    Devices,
    /// The VM's UUID.
    Uuid,
}

/// Which root an item is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// The persistent root (`/var/lib/strata/sbs`): survives a reboot.
    Persistent,
    /// The run root (`/run/strata/sbs`, on tmpfs): gone after a reboot.
    Volatile,
}

impl Item {
    /// Every item, in declaration order.
    pub const ALL: [Item; 9] = [
        Item::Configuration,
        Item::State,
        Item::Network,
        Item::Hypervisor,
        Item::Agent,
        Item::Process,
        Item::Mounts,
        Item::Devices,
        Item::Uuid,
    ];

    /// The item's short name: its file stem and its lock's name.
    pub fn name(self) -> &'static str {
        match self {
            Item::Configuration => "config",
            Item::State => "state",
            Item::Network => "network",
            Item::Hypervisor => "hypervisor",
            Item::Agent => "agent",
            Item::Process => "process",
            Item::Mounts => "mounts",
            Item::Devices => "devices",
            Item::Uuid => "uuid",
        }
    }

    /// The item's file name in its directory (`state.json`, …).
    pub fn file_name(self) -> &'static str {
        match self {
            Item::Configuration => "config.json",
            Item::State => "state.json",
            Item::Network => "network.json",
            Item::Hypervisor => "hypervisor.json",
            Item::Agent => "agent.json",
            Item::Process => "process.json",
            Item::Mounts => "mounts.json",
            Item::Devices => "devices.json",
            Item::Uuid => "uuid.json",
        }
    }

    /// Which root the item is stored under: only the configuration persists.
    pub fn persistence(self) -> Persistence {
        match self {
            Item::Configuration => Persistence::Persistent,
            _ => Persistence::Volatile,
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
