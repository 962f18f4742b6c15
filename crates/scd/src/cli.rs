//! The command line (`scd run|status|demo|lb`) and the TOML configuration file with the same key names.
//!
//! Every `run` flag is an `Option` so that "not given" can be told from "given as the default":
//! the value comes from the flag, else from the file, else from [`NodeConfig::with_name`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use node::config::{NodeConfig, WriteMode};
use serde::Deserialize;

/// scd — a session clustering daemon: keeps web sessions in a cluster, speaks Redis and memcached.
#[derive(Debug, Parser)]
#[command(name = "scd", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of the contract in DESIGN.md.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Run(Box<RunArgs>),
    /// Print the cluster as a running node sees it.
    Status(StatusArgs),
    /// Start a local 3-node cluster on loopback, for a first look; Ctrl-C stops it.
    Demo(DemoArgs),
    /// Print a load-balancer configuration (HAProxy, nginx, Apache httpd) for the cluster's
    /// nodes, as a running node sees them.
    Lb(LbArgs),
}

/// `scd lb` arguments.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// The load balancer to configure.
    #[arg(value_enum)]
    pub balancer: Balancer,
    /// Admin address of the node to ask.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:34580")]
    pub admin: String,
    /// What the balancer sends traffic to: the web servers beside the scd nodes, or the nodes'
    /// Redis or memcached ports (HAProxy only).
    #[arg(long, value_enum, default_value_t = LbService::Web)]
    pub service: LbService,
    /// Port of the web server beside each node (`--service web`).
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub web_port: u16,
    /// Address the balancer listens on [default: *:80, *:6379 or *:11211 by service].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

/// Load balancers `scd lb` configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Balancer {
    /// HAProxy: a complete configuration, health-checked through each node's admin port.
    Haproxy,
    /// nginx: a complete configuration (web servers only).
    Nginx,
    /// Apache httpd: a virtual host with mod_proxy_balancer (web servers only).
    Apache,
}

impl Balancer {
    pub fn label(self) -> &'static str {
        match self {
            Balancer::Haproxy => "haproxy",
            Balancer::Nginx => "nginx",
            Balancer::Apache => "apache",
        }
    }
}

/// What `scd lb` balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LbService {
    /// The web servers, one beside each scd node, on `--web-port`.
    Web,
    /// The nodes' Redis (client) ports.
    Redis,
    /// The nodes' memcached ports.
    Memcached,
}

impl LbService {
    pub fn label(self) -> &'static str {
        match self {
            LbService::Web => "web",
            LbService::Redis => "redis",
            LbService::Memcached => "memcached",
        }
    }

    /// Where the balancer listens unless `--bind` says.
    pub fn default_bind(self) -> String {
        match self {
            LbService::Web => "*:80",
            LbService::Redis => "*:6379",
            LbService::Memcached => "*:11211",
        }
        .to_string()
    }
}

/// `scd status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Admin address of the node to ask.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:34580")]
    pub admin: String,
    /// Print the raw JSON of `GET /cluster` instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `scd demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Client (Redis) port of the first node; node i adds i. The memcached ports start at
    /// base + 10, the peer ports (TCP and UDP) at base + 100, the admin ports at base + 200.
    /// Every port must be free.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub nodes: u8,
}

/// Storage model on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteModeArg {
    /// Acknowledge a write after every live backup has it.
    Through,
    /// Acknowledge at once, replicate within --max-lag-ms.
    Delayed,
}

/// `scd run` flags. Each has a key of the same name in the `--config` file.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunArgs {
    /// TOML file with any of the keys below (same names as the flags); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Stable node name; partitions are placed by it [default: node-<peer port>].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Cluster name: nodes only cluster with nodes of the same name and secret [default: scd].
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// RESP2/RESP3 listener for applications [default: 127.0.0.1:6379].
    #[arg(long, value_name = "ADDR")]
    pub client: Option<String>,

    /// memcached (text and binary) listener, e.g. 127.0.0.1:11211 [default: off].
    #[arg(long, value_name = "ADDR")]
    pub memcached: Option<String>,

    /// TCP listener for other nodes; heartbeats use UDP on the same address [default: 127.0.0.1:34567].
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<String>,

    /// Peer addresses of nodes to join (any subset; the rest is learned), comma-separated.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
    #[serde(default, deserialize_with = "list_or_comma_string")]
    pub join: Option<Vec<String>>,

    /// HTTP admin API, metrics and dashboard; "off" disables it [default: 127.0.0.1:34580].
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,

    /// Copies of each partition besides its primary, 0 to 3 [default: 1].
    #[arg(long, value_name = "N")]
    pub backups: Option<u8>,

    /// through: acknowledge after the backups have a write; delayed: at once [default: through].
    #[arg(long, value_name = "MODE")]
    pub write_mode: Option<WriteModeArg>,

    /// Delayed-write mode: the bound on replication lag in milliseconds [default: 100].
    #[arg(long, value_name = "MS")]
    pub max_lag_ms: Option<u64>,

    /// How long deleted and expired keys are remembered, in milliseconds (60000 to 86400000), so
    /// that an older copy cannot bring them back when a split or a pause heals: longer than any
    /// split to be survived, and the same on every node [default: 600000].
    #[arg(long, value_name = "MS")]
    pub tombstone_ttl_ms: Option<u64>,

    /// File holding the cluster secret that authenticates heartbeats and peer links.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Networks allowed to connect to any port, comma-separated CIDRs (e.g. 10.0.0.0/24,127.0.0.1/32)
    /// [default: everyone]. Others are disconnected and logged.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    #[serde(default, deserialize_with = "list_or_comma_string")]
    pub allow: Option<Vec<String>>,

    /// Password clients must give with AUTH (or HELLO ... AUTH, or SASL on the memcached port).
    #[arg(long, value_name = "PASSWORD")]
    pub requirepass: Option<String>,

    /// Run with unauthenticated peers on a non-loopback peer address (not recommended).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_peers: Option<bool>,

    /// Bound on dataset memory, e.g. 512mb, 4gb; writes beyond it get -OOM, nothing is evicted
    /// [default: 0 = no bound].
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<ByteSize>,

    /// Largest value a client may store, e.g. 1mb [default: 1mb].
    #[arg(long, value_name = "SIZE")]
    pub max_value_bytes: Option<ByteSize>,

    /// Most client connections open at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,

    /// Threads serving client connections [default: half the CPUs, at least 1].
    #[arg(long, value_name = "N")]
    pub client_threads: Option<usize>,

    /// Partition count, a power of two, the same on every node [default: 1024].
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,

    /// Interval between heartbeats to each peer in milliseconds, 10 to 10000 [default: 100].
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,

    /// Phi-accrual threshold above which a silent peer is declared dead, 1 to 30 [default: 8].
    #[arg(long, value_name = "PHI")]
    pub phi_threshold: Option<f64>,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// A byte count written as `1048576`, `512kb`, `64mb` or `2gb` (powers of 1024; `k`/`m`/`g` too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (digits, unit) = lower.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("'{text}' is not a size (examples: 1048576, 512kb, 64mb, 2gb)"))?;
        let multiplier: u64 = match unit.trim() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit '{other}' in '{text}' (use kb, mb or gb)"
                ));
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size '{text}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(number) => Ok(ByteSize(number)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Lists in the file may be TOML arrays or one comma-separated string, like the flags.
fn list_or_comma_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(Some(match Raw::deserialize(deserializer)? {
        Raw::List(list) => list,
        Raw::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
    }))
}

impl RunArgs {
    /// Fills every flag that was not given from `file`.
    fn or_file(self, file: RunArgs) -> RunArgs {
        RunArgs {
            config: self.config,
            name: self.name.or(file.name),
            cluster: self.cluster.or(file.cluster),
            client: self.client.or(file.client),
            memcached: self.memcached.or(file.memcached),
            peer: self.peer.or(file.peer),
            join: self.join.or(file.join),
            admin: self.admin.or(file.admin),
            backups: self.backups.or(file.backups),
            write_mode: self.write_mode.or(file.write_mode),
            max_lag_ms: self.max_lag_ms.or(file.max_lag_ms),
            tombstone_ttl_ms: self.tombstone_ttl_ms.or(file.tombstone_ttl_ms),
            secret_file: self.secret_file.or(file.secret_file),
            allow: self.allow.or(file.allow),
            requirepass: self.requirepass.or(file.requirepass),
            insecure_peers: self.insecure_peers.or(file.insecure_peers),
            max_memory: self.max_memory.or(file.max_memory),
            max_value_bytes: self.max_value_bytes.or(file.max_value_bytes),
            max_clients: self.max_clients.or(file.max_clients),
            client_threads: self.client_threads.or(file.client_threads),
            partitions: self.partitions.or(file.partitions),
            heartbeat_interval_ms: self.heartbeat_interval_ms.or(file.heartbeat_interval_ms),
            phi_threshold: self.phi_threshold.or(file.phi_threshold),
            log_level: self.log_level.or(file.log_level),
        }
    }

    /// Merges the `--config` file under the flags. Relative paths in the file (the secret file)
    /// are taken relative to the file's folder, as a person reading the file would expect.
    pub fn merged_with_file(self) -> anyhow::Result<RunArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut file: RunArgs =
            toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))?;
        if let (Some(secret), Some(folder)) = (&file.secret_file, path.parent())
            && secret.is_relative()
        {
            file.secret_file = Some(folder.join(secret));
        }
        Ok(self.or_file(file))
    }

    /// The node configuration these arguments describe, with the contract's defaults for the rest.
    /// Checks what can be checked before any socket is opened and says how to fix what is wrong.
    pub fn into_node_config(self) -> anyhow::Result<NodeConfig> {
        let peer_addr = resolve_one("--peer", self.peer.as_deref().unwrap_or("127.0.0.1:34567"))?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("node-{}", peer_addr.port()));
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            bail!(
                "--name must be 1 to 64 characters without spaces or control characters, got {name:?}"
            );
        }
        let mut config = NodeConfig::with_name(name);
        config.peer_addr = peer_addr;
        if let Some(cluster) = self.cluster {
            if cluster.is_empty() || cluster.len() > 64 {
                bail!("--cluster must be 1 to 64 characters, got {cluster:?}");
            }
            config.cluster_name = cluster;
        }
        if let Some(client) = &self.client {
            config.client_addr = resolve_one("--client", client)?;
        }
        if let Some(memcached) = &self.memcached {
            config.memcached_addr_opt = Some(resolve_one("--memcached", memcached)?);
        }
        if let Some(join) = &self.join {
            config.join = join
                .iter()
                .map(|addr| resolve_one("--join", addr))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(admin) = &self.admin {
            config.admin_addr_opt = match admin.as_str() {
                "off" | "" => None,
                addr => Some(resolve_one("--admin", addr)?),
            };
        }
        if let Some(backups) = self.backups {
            if backups > 3 {
                bail!("--backups must be between 0 and 3, got {backups}");
            }
            config.backups = backups;
        }
        if let Some(mode) = self.write_mode {
            config.write_mode = match mode {
                WriteModeArg::Through => WriteMode::Through,
                WriteModeArg::Delayed => WriteMode::Delayed,
            };
        }
        if let Some(max_lag_ms) = self.max_lag_ms {
            if !(1..=60_000).contains(&max_lag_ms) {
                bail!("--max-lag-ms must be between 1 and 60000, got {max_lag_ms}");
            }
            config.max_lag_ms = max_lag_ms;
        }
        if let Some(tombstone_ttl_ms) = self.tombstone_ttl_ms {
            if !(60_000..=86_400_000).contains(&tombstone_ttl_ms) {
                bail!(
                    "--tombstone-ttl-ms must be between 60000 and 86400000, got {tombstone_ttl_ms}"
                );
            }
            config.tombstone_ttl_ms = tombstone_ttl_ms;
        }
        if let Some(path) = &self.secret_file {
            config.secret_opt = Some(read_secret(path)?);
        }
        if let Some(allow) = &self.allow {
            config.allow = allow
                .iter()
                .map(|text| parse_cidr(text))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(password) = self.requirepass {
            if password.is_empty() || password.len() > 512 {
                bail!("--requirepass must be 1 to 512 bytes long");
            }
            config.requirepass_opt = Some(password);
        }
        config.insecure_peers = self.insecure_peers.unwrap_or(false);
        if let Some(ByteSize(bytes)) = self.max_memory {
            config.max_memory_bytes = bytes;
        }
        if let Some(ByteSize(bytes)) = self.max_value_bytes {
            if !(1..=512 << 20).contains(&bytes) {
                bail!("--max-value-bytes must be between 1 byte and 512mb, got {bytes}");
            }
            config.max_value_bytes = bytes as usize;
        }
        if let Some(max_clients) = self.max_clients {
            if max_clients == 0 {
                bail!("--max-clients must be at least 1");
            }
            config.max_clients = max_clients;
        }
        if let Some(client_threads) = self.client_threads {
            if !(1..=256).contains(&client_threads) {
                bail!("--client-threads must be between 1 and 256, got {client_threads}");
            }
            config.client_threads = client_threads;
        }
        if let Some(partitions) = self.partitions {
            if !partitions.is_power_of_two() || !(16..=16384).contains(&partitions) {
                bail!("--partitions must be a power of two between 16 and 16384, got {partitions}");
            }
            config.num_partitions = partitions;
        }
        if let Some(interval) = self.heartbeat_interval_ms {
            if !(10..=10_000).contains(&interval) {
                bail!("--heartbeat-interval-ms must be between 10 and 10000, got {interval}");
            }
            config.heartbeat_interval_ms = interval;
        }
        if let Some(phi) = self.phi_threshold {
            // The membership's own bound (`MembershipConfig::validate`), checked here so that
            // the error names the flag.
            if !(1.0..=30.0).contains(&phi) {
                bail!("--phi-threshold must be between 1 and 30, got {phi}");
            }
            config.phi_threshold = phi;
        }
        check_peer_security(&config)?;
        Ok(config)
    }
}

/// DESIGN.md, Contract: secure by default. Unauthenticated peers are only accepted on loopback.
fn check_peer_security(config: &NodeConfig) -> anyhow::Result<()> {
    if config.secret_opt.is_some() || config.peer_addr.ip().is_loopback() || config.insecure_peers {
        return Ok(());
    }
    bail!(
        "refusing to listen for peers on {} without a cluster secret: anyone who can reach that address \
         could join the cluster and read every session.\n\
         Fix: create a secret shared by all nodes, e.g. `head -c 32 /dev/urandom | base64 > /etc/scd/secret` \
         (mode 0600), and start every node with `--secret-file /etc/scd/secret`; \
         or, on a network you trust completely, pass `--insecure-peers`.",
        config.peer_addr
    )
}

fn resolve_one(flag: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .with_context(|| format!("{flag}: '{text}' is not a host:port address"))?
        .next()
        .with_context(|| format!("{flag}: '{text}' resolves to no address"))
}

fn parse_cidr(text: &str) -> anyhow::Result<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    // A bare address means that one host.
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| {
            anyhow::anyhow!("--allow: '{text}' is not a CIDR such as 10.0.0.0/24 or an address")
        })
}

/// Reads the cluster secret. Surrounding white space (a trailing newline from `echo`) is not part
/// of it. A secret shorter than 16 bytes is refused: it would be guessable.
fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read --secret-file {}", path.display()))?;
    let secret = bytes.trim_ascii().to_vec();
    if secret.len() < 16 {
        bail!(
            "the secret in {} is {} bytes long; use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)",
            path.display(),
            secret.len()
        );
    }
    if secret.len() > 4096 {
        bail!("the secret in {} is longer than 4096 bytes", path.display());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["scd", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("arguments parse").command {
            Command::Run(run) => *run,
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = parse(&[]).into_node_config().unwrap();
        assert_eq!(config.client_addr.to_string(), "127.0.0.1:6379");
        assert_eq!(config.peer_addr.to_string(), "127.0.0.1:34567");
        assert_eq!(
            config.admin_addr_opt.unwrap().to_string(),
            "127.0.0.1:34580"
        );
        assert_eq!(config.backups, 1);
        assert_eq!(config.write_mode, WriteMode::Through);
        assert_eq!(config.memcached_addr_opt, None);
        assert_eq!(config.name, "node-34567");
        assert_eq!(config.cluster_name, "scd");
        assert_eq!(config.tombstone_ttl_ms, 600_000);
    }

    #[test]
    fn the_tombstone_time_to_live_comes_from_the_flag_or_the_file() {
        let config = parse(&["--tombstone-ttl-ms", "60000"]).into_node_config();
        assert_eq!(config.unwrap().tombstone_ttl_ms, 60_000);
        let file: RunArgs = toml::from_str("tombstone-ttl-ms = 3600000").unwrap();
        let config = parse(&[]).or_file(file).into_node_config();
        assert_eq!(config.unwrap().tombstone_ttl_ms, 3_600_000);
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!("1048576".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("512kb".parse::<ByteSize>(), Ok(ByteSize(512 << 10)));
        assert_eq!("64MB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("2g".parse::<ByteSize>(), Ok(ByteSize(2 << 30)));
        assert!("12xb".parse::<ByteSize>().is_err());
        assert!("mb".parse::<ByteSize>().is_err());
        assert!("99999999999999999999gb".parse::<ByteSize>().is_err());
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let folder = std::env::temp_dir().join(format!("scd-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join("scd.toml");
        std::fs::write(
            &file,
            "name = \"from-file\"\nclient = \"127.0.0.1:7000\"\njoin = \"127.0.0.1:1,127.0.0.1:2\"\n\
             max-memory = \"64mb\"\nwrite-mode = \"delayed\"\nallow = [\"127.0.0.0/8\"]\n",
        )
        .unwrap();
        let config = parse(&["--config", file.to_str().unwrap(), "--name", "from-flag"])
            .merged_with_file()
            .unwrap()
            .into_node_config()
            .unwrap();
        assert_eq!(config.name, "from-flag");
        assert_eq!(config.client_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(config.join.len(), 2);
        assert_eq!(config.max_memory_bytes, 64 << 20);
        assert_eq!(config.write_mode, WriteMode::Delayed);
        assert_eq!(config.allow.len(), 1);
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn unknown_file_keys_are_refused_with_their_name() {
        let error = toml::from_str::<RunArgs>("max-memroy = 5")
            .unwrap_err()
            .to_string();
        assert!(error.contains("max-memroy"), "{error}");
    }

    #[test]
    fn non_loopback_peers_need_a_secret_or_insecure_peers() {
        let error = parse(&["--peer", "0.0.0.0:34567"])
            .into_node_config()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--secret-file"), "{error}");
        assert!(
            parse(&["--peer", "0.0.0.0:34567", "--insecure-peers"])
                .into_node_config()
                .is_ok()
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        let path = std::env::temp_dir().join(format!("scd-secret-test-{}", std::process::id()));
        std::fs::write(&path, "short\n").unwrap();
        let error = read_secret(&path).unwrap_err().to_string();
        assert!(error.contains("at least 16"), "{error}");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"0123456789abcdef0123");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_values_say_which_flag() {
        for (args, flag) in [
            (&["--partitions", "1000"][..], "--partitions"),
            (&["--backups", "9"][..], "--backups"),
            (&["--client", "nowhere"][..], "--client"),
            (&["--allow", "10.0.0.0/99"][..], "--allow"),
            (&["--phi-threshold", "40"][..], "--phi-threshold"),
            (
                &["--heartbeat-interval-ms", "5"][..],
                "--heartbeat-interval-ms",
            ),
            (&["--tombstone-ttl-ms", "5000"][..], "--tombstone-ttl-ms"),
        ] {
            let error = parse(args).into_node_config().unwrap_err();
            assert!(format!("{error:#}").contains(flag), "{args:?}: {error:#}");
        }
    }
}
