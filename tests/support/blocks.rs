//! Address blocks: every test owns one second octet, `127.B.0.x`, so that tests run in parallel
//! (and test binaries one after another) without two agents wanting the same address and port.
//!
//! The blocks are the variants of one enum, so the compiler keeps them apart: two variants with
//! the same number do not compile (E0081, "discriminant value assigned more than once"). A new
//! test adds a variant at the end without a number and takes the next free one.

/// A `127.B.0.0/16` block of loopback addresses, owned by one test (or one bench).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// 127.0.x.x: the benches (three members on 127.0.0.1–3; the autoscale bench's rounds on
    /// 127.0.1–3.x) and the tests that must bind 127.0.0.1 itself (`-dev`, host names), which
    /// keep apart by port.
    Loopback = 0,
    // tests/gossip_cluster.rs
    FiveAgents = 10,
    Encryption = 11,
    Datacenters = 12,
    NameConflict = 13,
    // tests/robustness.rs
    GarbagePackets = 14,
    // tests/gossip_cluster.rs
    JoinCli = 15,
    HttpErrors = 16,
    Signals = 17,
    RetryJoin = 18,
    RetryMax = 19,
    // tests/gossip_tags.rs (the gossip layer as a library)
    GossipTags = 20,
    // tests/gossip_cluster.rs
    StartJoinFails = 21,
    // tests/config_cli.rs
    ConfigCli = 22,
    // tests/gossip_cluster.rs
    HostNames = 23,
    ForceLeave = 24,
    // bench/gossip_bench.rs
    GossipBench = 30,
    // tests/servers.rs
    BootstrapGuide = 40,
    FormThree = 41,
    FormFive = 42,
    Trial0 = 43,
    Trial1 = 44,
    Trial2 = 45,
    Trial3 = 46,
    ConflictingExpect = 48,
    OldSurvivors = 49,
    Restarts = 50,
    KilledLeader = 51,
    BootstrapMode = 52,
    ClientLearnsLeader = 53,
    FormSeven = 55,
    // tests/kv.rs
    KvHttp = 60,
    KvCli = 61,
    Catalog = 62,
    ClientFailover = 63,
    AckedWrites = 64,
    SnapshotCatchUp = 65,
    SnapshotSaveRestore = 66,
    ConcurrentWrites = 67,
    LargeValues = 68,
    // tests/providers.rs
    JoinThroughProvider = 70,
    Rediscovery = 71,
    CustomProvider = 72,
    // tests/aws.rs
    Ec2Discovery = 73,
    Ec2LegacyFlags = 74,
    // tests/autoscaling_aws.rs
    Ec2Group = 75,
    // tests/gce.rs
    GceDiscovery = 76,
    GceThrottled = 77,
    // tests/aws.rs
    Ec2Imds = 78,
    // tests/autoscaling_aws.rs
    Ec2Herd = 79,
    // tests/autoscaling.rs
    NewIp = 80,
    ColdRestart = 81,
    DeadServer = 82,
    AutopilotSettings = 83,
    LeavingLeader = 84,
    OutageRecovery = 85,
    RollingThree = 86,
    RollingFive = 87,
    // tests/providers.rs
    Dns = 90,
    // tests/gce.rs
    GceLegacyFlags,
    // tests/providers.rs (refused before anything is bound)
    BadProviderArgs,
    // tests/servers.rs
    LoneOldLeader,
    // tests/rpc_limits.rs
    RpcLimits = 100,
    StoppedServer = 101,
    FullDisk = 102,
    // tests/faults (each in a network namespace of its own, numbered apart all the same)
    RetriedLock = 105,
    FaultSuite = 110,
    PartitionedLeader = 111,
    PausedLeader = 112,
    LargeRestore = 130,
    // tests/reap.rs
    Reap = 140,
    // tests/kv_tombstones.rs
    KvTombstones = 145,
    // tests/faults/main.rs: gossip healing after a split (issue 10 item 9)
    HealedSplit = 150,
    // tests/tls.rs (issue 11: TLS on the server port)
    TlsCluster = 160,
    TlsRotation = 161,
    // tests/secure_guide.rs (docs/secure-datacenter.md)
    SecureGuide = 162,
    // tests/keyring.rs
    Keyring = 170,
    KeyringEnable = 172,
    // tests/rpc_fuzz.rs: the server port as a hostile network (issue 11 item 6)
    ForgedTerm = 175,
    GarbageSnapshot = 176,
    RpcFuzz = 177,
    // tests/https.rs (issue 11 item 2: the HTTPS API and the CLI's TLS flags)
    HttpsApi = 180,
    // tests/identity.rs (issue 11 item 5: claims in gossip checked at the server port)
    ForgedClaims = 185,
    // tests/secrets.rs (issue 12 items 3 and 4: the Host check, secrets kept out of sight)
    Secrets = 186,
    HostCheck = 187,
    // tests/acl_port.rs (issue 12 item 2: tokens checked on the server's doors)
    AclPort = 188,
    // tests/acl.rs (issue 12: ACLs through real processes and the CLI)
    AclCli = 189,
    // tests/acl_guide.rs (docs/acl-guide.md)
    AclGuide = 190,
    // tests/acl_compat.rs (issue 12: py-consul's ACL calls; tokens across a leader change)
    AclPyConsul = 191,
    AclLeaderChange = 192,
    // tests/reload.rs (issue 14 item 1: SIGHUP and `muster reload`)
    Reload = 193,
    // tests/monitor.rs (issue 14 item 3: `muster monitor`)
    Monitor = 194,
    // tests/metrics.rs (issue 14 item 2: /v1/agent/metrics, scraped by a real Prometheus)
    MetricsPrometheus = 210,
    MetricsShapes = 211,
    MetricsAcl = 212,
    // tests/ops_cli.rs (issue 14: operators' comforts)
    OpsPidFile = 200,
    OpsLogFile = 201,
    OpsNodeMeta = 202,
    // tests/servers.rs (issue 14 item 5: status words, transfer-leader)
    TransferLeader = 220,
    // tests/messages.rs (issue 14 item 4: messages that say the fix)
    Messages = 225,
}

impl Block {
    /// The second octet, B.
    pub const fn octet(self) -> u8 {
        self as u8
    }

    /// The `i`-th address of the block: 127.B.0.i.
    pub fn ip(self, i: u8) -> String {
        self.ip_in(0, i)
    }

    /// An address of another /24 of the block: 127.B.net.i.
    pub fn ip_in(self, net: u8, i: u8) -> String {
        format!("127.{}.{net}.{i}", self.octet())
    }

    /// The first three octets, `127.B.0`, as the fixtures take them.
    pub fn prefix(self) -> String {
        format!("127.{}.0", self.octet())
    }
}
